"""The registry sweep at size: `stale` per-IP configs whose IP no pod holds, plus `live` per-IP configs
(and live instance entries) whose IPs belong to live pods.

What runs: the operator's own Registrar.sweep (the code the reconcile loop calls), against a REAL
etcd (a separate process, JSON gateway). The fresh pod read the loop would hand it is given here:
`live` Running pods holding the live IPs. So the figure is the registry work of one sweep (list
instances, list configs, plan, delete transactions of up to 64 stale configs), not API latency.
The baseline, in the same run against the same etcd: the same sweep deleting one config per
transaction (what the sweep did before).
Checked afterwards by reading etcd: every stale config gone, every live one still there.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import time

from bench.common import PORT, PREFIX, Result, etcd_version, isvc, log, start_etcd
from devtools.cluster.etcd import b64, prefix_end
from infer_operator import labels
from infer_operator.api.v1alpha1 import parse_spec
from infer_operator.podview import PodView
from infer_operator.registration.registrar import Registrar
from infer_operator.registration.sharing import live_ips
from infer_operator.registry.base import Registry
from infer_operator.registry.etcd import CONFIG_DELETES_PER_TXN
from infer_operator.registry.model import ServiceRef

SERVICE = "sweep"


def ips(start: str, n: int) -> list[str]:
    base = int(ipaddress.IPv4Address(start))
    return [str(ipaddress.IPv4Address(base + i)) for i in range(n)]


def live_pods(live: list[str]) -> list[PodView]:
    """The fresh pod read the reconcile loop hands the sweep: Running pods holding the live IPs."""
    return [
        PodView.from_body(
            {
                "metadata": {
                    "name": f"{SERVICE}-{i}",
                    "namespace": "bench",
                    "uid": f"uid-{i}",
                    "labels": {labels.LABEL_SERVICE: SERVICE},
                },
                "status": {"phase": "Running", "podIP": ip},
            }
        )
        for i, ip in enumerate(live)
    ]


def seed(etcd, keys: list[tuple[str, str]]) -> None:
    for i in range(0, len(keys), 100):  # etcd's default --max-txn-ops is 128
        ops = [
            {
                "request_put": {
                    "key": base64.b64encode(k.encode()).decode(),
                    "value": base64.b64encode(v.encode()).decode(),
                }
            }
            for k, v in keys[i : i + 100]
        ]
        etcd.call("/v3/kv/txn", {"compare": [], "success": ops, "failure": []}, timeout=30)


async def sweep_once(etcd, spec, live: list[str], stale: list[str], *, batched: bool) -> dict:
    """Seed the configs and instances, sweep once (batched: the operator's code as it is; not batched:
    one delete transaction per config, as before), check etcd afterwards, and clear the keys."""
    base = f"{PREFIX}/{SERVICE}"
    keys = [(f"{base}/config/{ip}", '{"weight": 1}') for ip in live + stale]
    keys += [
        (
            f"{base}/instances/{ip}:{PORT}",
            json.dumps(
                {
                    "pod": f"{SERVICE}-{i}",
                    "ip": ip,
                    "port": PORT,
                    "namespace": "bench",
                    "uid": f"uid-{i}",
                    "role": "sync",
                    "ordinal": i,
                }
            ),
        )
        for i, ip in enumerate(live)
    ]
    t = time.monotonic()
    seed(etcd, keys)
    log(f"seeded {len(keys)} keys in {time.monotonic() - t:.1f}s")
    registrar = Registrar(None, "bench", SERVICE, 5.0)  # type: ignore[arg-type] - no Secret to read
    pods = live_pods(live)
    owner = ServiceRef("bench", SERVICE, "bench-owner-uid")
    client = await registrar.client(spec.registry)
    saved = None
    if not batched:  # the per-config path: the interface's default, one transaction per config
        saved = type(client.inner).delete_configs
        type(client.inner).delete_configs = Registry.delete_configs
    try:
        t0 = time.monotonic()
        error = await registrar.sweep(spec.registry, pods, live_ips(pods), owner)
        seconds = time.monotonic() - t0
        # A second sweep with nothing stale: the steady-state cost of one sweep at this size.
        t1 = time.monotonic()
        await registrar.sweep(spec.registry, pods, live_ips(pods), owner)
        idle_seconds = time.monotonic() - t1
    finally:
        if saved is not None:
            type(client.inner).delete_configs = saved
        await registrar.close()
    left_ips = {k.rsplit("/", 1)[1] for k in etcd.range_prefix(f"{base}/config/")}
    instances_left = etcd.range_prefix(f"{base}/instances/")
    etcd.call("/v3/kv/deleterange", {"key": b64(base + "/"), "range_end": prefix_end(base + "/")}, timeout=30)
    return {
        "sweep_seconds": round(seconds, 2),
        "stale_removed_per_second": round(len(stale) / seconds, 0) if seconds else None,
        "stale_configs_left": len(set(stale) & left_ips),
        "live_configs_removed": len(set(live) - left_ips),
        "live_instances_removed": len(live) - len(instances_left),
        "sweep_error": error,
        "steady_state_sweep_seconds": round(idle_seconds, 3),
    }


async def main(args, name: str = "sweep") -> Result:
    params = {
        "stale_configs": args.stale,
        "live_configs": args.live,
        "live_instances": args.live,
        "what_runs": "Registrar.sweep (operator code) against a real etcd; the pod list is given "
        "(live pods hold the live IPs)",
        "registry_call_timeout_s": 5.0,
        "configs_per_transaction": CONFIG_DELETES_PER_TXN,
        "baseline": "the same sweep with one delete transaction per config (the code before batching), "
        "same run, same etcd",
    }
    result = Result(name, params)
    etcd = start_etcd()
    try:
        result.data["versions"]["etcd_registry"] = etcd_version(etcd.client_url)
        live = ips("10.1.0.1", args.live)
        stale = ips("10.100.0.1", args.stale)
        spec = parse_spec(isvc(SERVICE, "bench", 8, 4, etcd.client_url)["spec"])
        ours = await sweep_once(etcd, spec, live, stale, batched=True)
        baseline = await sweep_once(etcd, spec, live, stale, batched=False)
        result.figures.update(
            {
                **ours,
                "etcd_requests_for_stale": f"{-(-args.stale // CONFIG_DELETES_PER_TXN)} delete transactions of "
                f"{CONFIG_DELETES_PER_TXN} configs",
                "baseline": baseline,
                "speedup_over_baseline": round(baseline["sweep_seconds"] / ours["sweep_seconds"], 1)
                if ours["sweep_seconds"]
                else None,
            }
        )
    finally:
        etcd.stop()
    f = result.figures
    result.write(
        [
            (
                f"sweep {args.stale} stale + {args.live} live configs",
                f"{f['sweep_seconds']} s ({f['stale_removed_per_second']}/s)",
            ),
            ("baseline (one transaction per config)", f"{f['baseline']['sweep_seconds']} s"),
            ("stale configs left", f["stale_configs_left"]),
            ("live configs / instances removed", f"{f['live_configs_removed']} / {f['live_instances_removed']}"),
            ("second sweep (nothing stale)", f"{f['steady_state_sweep_seconds']} s"),
        ]
    )
    return result
