"""The warm-up as real consumers see it: a new sync pod's share of their calls over
`registry.warmupSeconds`, next to three warm pods.

What runs: the operator's own `Registrar.sync` (the code a reconcile pass calls, with the pass's
wake-ups: `retry_in`) writing to a real etcd; four real gRPC servers on loopback (127.0.0.2-5, the
pods); CoreDNS with its etcd plugin; and two consumers calling all the time:

- **DNS SRV**: each call asks CoreDNS for the SRV records of `instances.<service>.`, orders them as
  RFC 2782 says (priority, then a random draw weighted by `weight`: dnspython's
  `processing_order()`, a client library nobody here wrote) and connects to the first one's
  address (a TCP connection to the pod's gRPC server);
- **gRPC, etcd resolver**: gRPC-Go through etcd's naming resolver, round robin (devtools/consumers:
  the client the lossless harness takes).

The baseline, same run: the same pods and consumers with warmupSeconds 0 (what the operator did
before: registerDelaySeconds only, then the full share at once). Writes bench/results/warmup.json.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import socket
import threading
import time

from bench.common import PREFIX, Result, etcd_version, isvc, log, start_etcd
from devtools.consumers import CoreDNS, GrpcResolverConsumer, GrpcServers, shares
from devtools.harness import free_port
from infer_operator import labels
from infer_operator.api.v1alpha1 import parse_spec
from infer_operator.podview import PodView
from infer_operator.registration.plans import WARMUP_STEPS
from infer_operator.registration.registrar import Registrar
from infer_operator.registry.model import ServiceRef

SERVICE = "warm"
NAMESPACE = "bench"


def pod(ordinal: int, port: int, serving_since: datetime.datetime) -> PodView:
    return PodView(
        name=f"{SERVICE}-{ordinal}",
        namespace=NAMESPACE,
        uid=f"uid-{ordinal}",
        service=SERVICE,
        ordinal=ordinal,
        role=labels.ROLE_SYNC,
        ip=f"127.0.0.{ordinal + 2}",
        ready=True,
        serving=True,
        serving_since=serving_since,
        deleting=False,
        finalizers=(),
        resource_version="1",
        gate_open=True,
        sync_port=port,
    )


class SrvConsumer:
    """A DNS SRV client: per call one SRV query, dnspython's RFC 2782 order, a TCP connection to the
    first target. Calls `rate` times a second on a thread; `calls`: (time, "ip:port", ok)."""

    def __init__(self, dns: CoreDNS, name: str, rate: float) -> None:
        self.dns, self.name, self.rate = dns, name, rate
        self.calls: list[tuple[float, str, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _one(self) -> tuple[str, bool]:
        answer = self.dns.resolver().resolve(self.name, "SRV")
        first = answer.rrset.processing_order()[0]
        addresses = {
            rrset.name: rr.address for rrset in answer.response.additional for rr in rrset if hasattr(rr, "address")
        }
        address = f"{addresses[first.target]}:{first.port}"
        with socket.create_connection((addresses[first.target], first.port), timeout=2):
            pass
        return address, True

    def _run(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            started = time.time()
            try:
                address, ok = self._one()
            except Exception:  # noqa: BLE001 - a failed call is counted, whatever failed
                address, ok = "", False
            self.calls.append((started, address, ok))
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> SrvConsumer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


async def one_run(etcd, servers_port: int, warmup: int, seconds: float, rate: float, bucket: float) -> dict:
    """Three warm pods listed, a fourth one becomes ready at t0; the operator's registrar runs as
    its pass would; both consumers call throughout. The new pod's share per `bucket` seconds."""
    spec = parse_spec(isvc(SERVICE, NAMESPACE, 4, 4, etcd.client_url)["spec"])
    registry_spec = spec.registry.model_copy(update={"warmup_seconds": warmup})
    owner = ServiceRef(NAMESPACE, SERVICE, "bench-owner-uid")
    registrar = Registrar(None, NAMESPACE, SERVICE, 5.0)  # type: ignore[arg-type] - no Secret to read
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    warm = [pod(i, servers_port, long_ago) for i in range(3)]
    now = datetime.datetime.now(datetime.UTC)
    first = await registrar.sync(registry_spec, warm, servers_port, 0, now, owner, warmup=warmup)
    assert first.condition.ok, first.condition
    client = await registrar.client(registry_spec)
    writes: collections.Counter = collections.Counter()
    inner = client.inner
    for method in ("register", "claim"):
        original = getattr(inner, method)

        async def counted(service, instance, _original=original):
            writes[instance.address] += 1
            return await _original(service, instance)

        setattr(inner, method, counted)
    new_address = f"127.0.0.5:{servers_port}"
    with (
        CoreDNS(etcd.client_url, prefix=PREFIX) as dns,
        GrpcResolverConsumer(etcd.client_url, SERVICE, prefix=PREFIX, rate=rate) as grpc,
    ):
        with SrvConsumer(dns, f"instances.{SERVICE}.", rate) as srv:
            grpc.wait_for_calls(20)
            t0 = time.time()
            ready_at = datetime.datetime.now(datetime.UTC)
            pods = [*warm, pod(3, servers_port, ready_at)]
            passes = 0
            while time.time() - t0 < seconds:
                result = await registrar.sync(
                    registry_spec, pods, servers_port, 0, datetime.datetime.now(datetime.UTC), owner, warmup=warmup
                )
                passes += 1
                await asyncio.sleep(min(result.retry_in or 1.0, 1.0))
            end = time.time()
    await registrar.close()

    def curve(calls) -> list[dict]:
        return [
            {"from_s": round(start, 1), "new_pod_share": round(share.get(new_address, 0.0), 3)}
            for start, share in shares(calls, bucket, t0)
            if start + bucket <= end - t0 + 1e-9
        ]

    srv_calls = [c for c in (_as_call(t, a, ok) for t, a, ok in srv.calls) if c.t >= t0]
    return {
        "warmup_seconds": warmup,
        "passes": passes,
        "writes_of_the_new_pod": writes[new_address],
        "srv_failures": sum(1 for c in srv_calls if not c.ok),
        "grpc_failures": len(grpc.failures(since=t0)),
        "srv_calls": len(srv_calls),
        "grpc_calls": len(grpc.calls_since(t0)),
        "srv_curve": curve(srv_calls),
        "grpc_curve": curve(grpc.calls_since(t0)),
    }


def _as_call(t: float, address: str, ok: bool):
    from devtools.consumers import Call

    return Call(t, address, ok)


def expected_share(warmup: int, bucket_start: float, bucket: float) -> float:
    """What the weights promise a weighted consumer: the new pod's weight over the total (3 x 100
    beside it), averaged over the bucket."""
    from infer_operator.registration.plans import warmup_weight

    samples = [bucket_start + bucket * (i + 0.5) / 20 for i in range(20)]
    return round(sum(w / (300 + w) for w in (warmup_weight(s, warmup)[0] for s in samples)) / len(samples), 3)


async def main(args, name: str = "warmup") -> Result:
    params = {
        "warmup_seconds": args.warmup,
        "seconds": args.seconds,
        "calls_per_second_per_consumer": args.rate,
        "bucket_seconds": args.bucket,
        "warm_pods": 3,
        "steps": WARMUP_STEPS,
        "what_runs": "Registrar.sync (operator code, its retry_in as the pass's wake-up) against a real etcd; "
        "4 gRPC-Go servers on 127.0.0.2-5; CoreDNS (etcd plugin); consumers: DNS SRV with dnspython's RFC 2782 "
        "order + a TCP connection, and gRPC-Go on etcd's naming resolver (round_robin)",
        "baseline": "the same with warmupSeconds 0 (registerDelaySeconds only: the full share at once), same run",
    }
    result = Result(name, params)
    etcd = start_etcd()
    port = free_port()
    try:
        result.data["versions"]["etcd_registry"] = etcd_version(etcd.client_url)
        with GrpcServers([f"127.0.0.{i}:{port}" for i in (2, 3, 4, 5)]):
            log(f"warm-up {args.warmup}s: the new pod's share over {args.seconds}s")
            ours = await one_run(etcd, port, args.warmup, args.seconds, args.rate, args.bucket)
            etcd.delete_all()
            log("baseline: warmupSeconds 0")
            baseline = await one_run(etcd, port, 0, args.baseline_seconds, args.rate, args.bucket)
        for point in ours["srv_curve"]:
            point["expected"] = expected_share(args.warmup, point["from_s"], args.bucket)
        result.figures.update({"warmup": ours, "baseline": baseline})
    finally:
        etcd.stop()
    rows = [
        (
            f"{p['from_s']:>5.0f}-{p['from_s'] + args.bucket:.0f} s",
            f"SRV {p['new_pod_share']:.3f} (weights promise {p['expected']:.3f})   gRPC {g['new_pod_share']:.3f}",
        )
        for p, g in zip(ours["srv_curve"], ours["grpc_curve"], strict=False)
    ]
    rows.append(
        (
            "baseline first bucket",
            f"SRV {baseline['srv_curve'][0]['new_pod_share']:.3f}   "
            f"gRPC {baseline['grpc_curve'][0]['new_pod_share']:.3f}",
        )
    )
    rows.append(
        (
            "writes of the new pod's entry",
            f"{ours['writes_of_the_new_pod']} (baseline {baseline['writes_of_the_new_pod']})",
        )
    )
    rows.append(("failed calls (SRV / gRPC)", f"{ours['srv_failures']} / {ours['grpc_failures']}"))
    result.write(rows)
    return result
