"""Scale: `services` InferenceServices x `pods` pods (half sync, registry etcd) under ONE operator.

Measures: time to converge from a cold start (all CRs applied at once to an idle operator) and
after an operator restart (while it was down, one sync pod per service was deleted: those wait on
the operator's finalizer); operator RSS at idle and under churn (random pods deleted at
`churn_rate`/s for `churn_seconds`); API requests per reconcile pass and per pod event (every
HTTP request the operator makes is counted inside it by bench.instrumented: kopf's and ours);
CPU seconds (psutil on the operator pid).

Converged = every InferenceService reports readyReplicas == pods, registered == sync pods and
observedGeneration == generation, no pod is terminating, and etcd holds services x sync instance keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.common import (
    PREFIX,
    RESULTS,
    EtcdWatch,
    InstrumentedOperator,
    Kube,
    PodTracker,
    Result,
    apply_isvc,
    checkout,
    cluster_up,
    diff,
    etcd_version,
    gather_limited,
    isvc,
    log,
    start_etcd,
    workdir,
)
from infer_operator import labels

NS = "bench-scale"


class Fleet:
    """N services x P pods in one namespace, one operator, one registry etcd."""

    def __init__(
        self,
        kube: Kube,
        kubeconfig: Path,
        services: int,
        pods: int,
        etcd_url: str,
        tag: str,
        source: Path | None = None,
    ):
        self.kube = kube
        self.source = source  # another version's checkout to run (a baseline); None: this one
        self.kubeconfig = kubeconfig
        self.services = services
        self.pods = pods
        self.sync = max(1, pods // 2)
        self.etcd_url = etcd_url
        self.tag = tag
        self.tracker = PodTracker(kube, NS, labels.MANAGED_SELECTOR)
        self.etcdw = EtcdWatch(etcd_url, PREFIX + "/")
        self.operator: InstrumentedOperator | None = None

    def names(self) -> list[str]:
        return [f"svc-{i:04d}" for i in range(self.services)]

    async def setup(self) -> None:
        await self.kube.install_crd()
        await self.kube.delete_namespace(NS, wait=300)
        await self.kube.ensure_namespace(NS)
        await self.kube.ensure_capacity(self.services * self.pods + 200)
        await self.etcdw.start()
        await self.tracker.start()
        self.start_operator()

    def start_operator(self) -> None:
        self.operator = InstrumentedOperator(
            self.kubeconfig, [NS], workdir() / f"operator-{self.tag}.log", source=self.source
        )
        self.operator.start(timeout=180)
        log(f"operator pid {self.operator.pid}")

    async def apply_all(self) -> None:
        await gather_limited(
            8, [apply_isvc(self.kube, isvc(n, NS, self.pods, self.sync, self.etcd_url)) for n in self.names()]
        )

    async def converged(self) -> tuple[bool, str]:
        items = (await self.kube.req("GET", f"/apis/{labels.API_VERSION}/namespaces/{NS}/{labels.PLURAL}"))["items"]
        good = 0
        for item in items:
            st = item.get("status") or {}
            if (
                st.get("readyReplicas") == self.pods
                and st.get("registered") == self.sync
                and st.get("observedGeneration") == item["metadata"].get("generation")
            ):
                good += 1
        terminating = sum(1 for p in self.tracker.pods.values() if p["metadata"].get("deletionTimestamp"))
        keys = sum(1 for k in self.etcdw.present if "/instances/" in k)
        want_keys = self.services * self.sync
        state = f"{good}/{self.services} services, {terminating} terminating, {keys}/{want_keys} keys"
        return good == self.services and terminating == 0 and keys == want_keys, state

    async def wait_converged(self, timeout: float, rss: list[int] | None = None) -> float | None:
        """Seconds until converged (None: not within `timeout`); the operator's RSS is appended to
        `rss` at each check (about one a second)."""
        t0 = time.monotonic()
        last_log = t0
        while time.monotonic() - t0 < timeout:
            if rss is not None:
                rss.append(self.operator.rss())
            ok, state = await self.converged()
            if ok:
                return time.monotonic() - t0
            if time.monotonic() - last_log > 30:
                log(f"converging: {state}")
                last_log = time.monotonic()
            await asyncio.sleep(1)
        log(f"not converged after {timeout}s: {(await self.converged())[1]}")
        return None

    async def churn(
        self, rate: float, seconds: float, samples: list[tuple[float, int]] | None = None, sample_every: float = 5.0
    ) -> int:
        """Delete random live pods at `rate`/s for `seconds`; returns how many were deleted."""
        deleted = 0
        t0 = time.monotonic()
        next_sample = t0
        tasks: set[asyncio.Task] = set()

        async def delete(pod: dict) -> None:
            meta = pod["metadata"]
            try:
                await self.kube.req(
                    "DELETE",
                    f"/api/v1/namespaces/{NS}/pods/{meta['name']}",
                    body={"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": meta["uid"]}},
                )
            except Exception:  # noqa: BLE001 - gone already: fine
                pass

        i = 0
        while (now := time.monotonic()) - t0 < seconds:
            if samples is not None and now >= next_sample:
                samples.append((round(now - t0, 1), self.operator.rss()))
                next_sample += sample_every
            live = [p for p in self.tracker.pods.values() if not p["metadata"].get("deletionTimestamp")]
            if live:
                task = asyncio.create_task(delete(random.choice(live)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                deleted += 1
            i += 1
            await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        await asyncio.gather(*tasks, return_exceptions=True)
        return deleted

    async def close(self) -> None:
        if self.operator:
            self.operator.stop()
        await self.tracker.stop()
        await self.etcdw.stop()
        try:
            await self.kube.delete_namespace(NS, wait=0)
        except Exception:  # noqa: BLE001
            pass


@contextlib.asynccontextmanager
async def running_fleet(
    result: Result, services: int, pods: int, tag: str, source: Path | None = None
) -> AsyncIterator[Fleet]:
    """The local control plane, a registry etcd and a set-up Fleet (its operator running, of
    `source` if given) for one benchmark, with the API server's and the registry's versions
    recorded; all torn down after (the control plane is left to the caller)."""
    kubeconfig = cluster_up()
    kube = Kube(kubeconfig)
    etcd = start_etcd()
    fleet = Fleet(kube, kubeconfig, services, pods, etcd.client_url, tag, source)
    try:
        result.data["versions"]["kube_apiserver"] = await kube.server_version()
        result.data["versions"]["etcd_registry"] = etcd_version(etcd.client_url)
        await fleet.setup()
        yield fleet
    finally:
        await fleet.close()
        await kube.close()
        etcd.stop()


def py_spy(pid: int, out: Path, seconds: float, fmt: str) -> subprocess.Popen | None:
    exe = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "py-spy"
    if not exe.exists():
        log("py-spy not installed (pip install -e '.[bench]'): no profile")
        return None
    return subprocess.Popen(
        [
            str(exe),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "50",
            "--nonblocking",
            "--format",
            fmt,
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def top_frames(raw: Path, n: int = 12) -> list[dict[str, Any]]:
    """From py-spy's collapsed stacks: the functions with the most samples on-CPU (self time) and
    in total (inclusive)."""
    self_count: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    try:
        lines = raw.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        c = int(count)
        total += c
        frames = stack.split(";")
        for f in set(frames):
            incl[f] = incl.get(f, 0) + c
        self_count[frames[-1]] = self_count.get(frames[-1], 0) + c
    rows = sorted(self_count.items(), key=lambda kv: -kv[1])[:n]
    return [
        {"frame": f, "self_pct": round(100 * c / total, 1), "inclusive_pct": round(100 * incl[f] / total, 1)}
        for f, c in rows
    ]


def top_inclusive(raw: Path, needle: str, n: int = 15) -> list[dict[str, Any]]:
    incl: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines() if raw.exists() else []:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        for f in set(stack.split(";")):
            if needle in f:
                incl[f] = incl.get(f, 0) + int(count)
    return [
        {"frame": f, "inclusive_pct": round(100 * c / total, 1)}
        for f, c in sorted(incl.items(), key=lambda kv: -kv[1])[:n]
    ]


# Kube requests the readiness gate and the ownership check need (issue 17): counted apart.
REQUIRED_KINDS = {
    "kube:PATCH:pods/status": "readiness gate: one status patch per new pod",
    "kube:GET:statefulsets": "ownership check before the first write of a name",
    "kube:GET:services": "ownership check before the first write of a name",
    "kube:GET:configmaps": "ownership check before the first write of a name",
    "kube:GET:poddisruptionbudgets": "ownership check before the first write of a name",
}


def per_service(requests: dict[str, float], services: int) -> dict[str, Any]:
    """Kube requests (watches left out) per service, by kind, the required ones apart."""
    kinds = {
        k: round(v / services, 2) for k, v in sorted(requests.items()) if k.startswith("kube:") and ":WATCH:" not in k
    }
    required = round(sum(v for k, v in kinds.items() if k in REQUIRED_KINDS), 2)
    total = round(sum(kinds.values()), 2)
    return {
        "total": total,
        "required_by_the_readiness_gate_and_ownership_check": required,
        "the_rest": round(total - required, 2),
        "by_kind": kinds,
    }


async def scenario(fleet: Fleet, args, profile: bool) -> dict[str, Any]:
    """Cold start, idle, churn, restart; the figures."""
    f: dict[str, Any] = {}
    op = fleet.operator
    await asyncio.sleep(3)
    f["rss_mb_empty"] = round(op.rss() / 2**20, 1)

    # Cold start.
    c0, cpu0 = op.counters(), op.cpu_seconds()
    profile_cold = None
    if profile:
        profile_cold = py_spy(op.pid, RESULTS / "profile.svg", 90, "flamegraph")
    t0 = time.monotonic()
    await fleet.apply_all()
    f["cold_apply_seconds"] = round(time.monotonic() - t0, 1)
    rss: list[int] = []
    took = await fleet.wait_converged(timeout=1800, rss=rss)
    f["cold_converge_seconds"] = round(time.monotonic() - t0, 1) if took is not None else None
    f["rss_mb_cold_max"] = round(max(rss) / 2**20, 1)
    c1, cpu1 = op.counters(), op.cpu_seconds()
    d = diff(c1, c0)
    f["cold_cpu_seconds"] = round(cpu1 - cpu0, 1)
    f["cold_requests"] = d
    f["cold_kube_requests_per_service"] = round(
        (d.get("kube_requests", 0) - d.get("kube_watch_requests", 0)) / args.services, 1
    )
    f["cold_kube_requests_per_service_breakdown"] = per_service(d, args.services)
    f["cold_reconcile_passes_per_service"] = round(d.get("reconcile_passes", 0) / args.services, 1)
    if profile_cold:
        profile_cold.wait()

    # Idle.
    await asyncio.sleep(5)
    c2, cpu2, ev2 = op.counters(), op.cpu_seconds(), fleet.tracker.events
    await asyncio.sleep(args.idle_seconds)
    c3, cpu3 = op.counters(), op.cpu_seconds()
    f["rss_mb_idle"] = round(op.rss() / 2**20, 1)
    f["idle_seconds"] = args.idle_seconds
    f["idle_cpu_percent"] = round(100 * (cpu3 - cpu2) / args.idle_seconds, 1)
    d = diff(c3, c2)
    per_minute = 60 / args.idle_seconds
    f["idle_requests"] = d
    f["idle_kube_requests_per_minute"] = round(d.get("kube_requests", 0) * per_minute, 1)
    f["idle_kube_requests_per_service_per_minute"] = round(d.get("kube_requests", 0) * per_minute / args.services, 3)
    f["idle_reconcile_passes_per_minute"] = round(d.get("reconcile_passes", 0) * per_minute, 1)
    f["idle_pod_events_per_minute"] = round((fleet.tracker.events - ev2) * per_minute, 1)

    # Churn.
    ev4, c4, cpu4 = fleet.tracker.events, op.counters(), op.cpu_seconds()
    profiler = None
    if profile:
        profiler = py_spy(op.pid, workdir() / "profile-churn.txt", args.churn_seconds, "raw")
    samples: list[tuple[float, int]] = []
    deleted = await fleet.churn(args.churn_rate, args.churn_seconds, samples)
    c5, cpu5, ev5 = op.counters(), op.cpu_seconds(), fleet.tracker.events
    f["churn_pods_deleted"] = deleted
    f["rss_mb_churn_max"] = round(max(s[1] for s in samples) / 2**20, 1)
    f["rss_mb_churn_end"] = round(samples[-1][1] / 2**20, 1)
    f["churn_cpu_percent"] = round(100 * (cpu5 - cpu4) / args.churn_seconds, 1)
    d = diff(c5, c4)
    pod_events = ev5 - ev4
    kube_calls = d.get("kube_requests", 0) - d.get("kube_watch_requests", 0)
    f["churn_requests"] = d
    f["churn_pod_events"] = pod_events
    f["churn_cpu_ms_per_pod_event"] = round(1000 * (cpu5 - cpu4) / max(1, pod_events), 2)
    f["churn_kube_requests_per_pod_event"] = round(kube_calls / max(1, pod_events), 2)
    f["churn_kube_requests_per_reconcile"] = round(kube_calls / max(1, d.get("reconcile_passes", 0)), 2)
    f["churn_kube_requests_per_deleted_pod"] = round(kube_calls / max(1, deleted), 2)
    f["churn_etcd_requests_per_deleted_pod"] = round(d.get("etcd_requests", 0) / max(1, deleted), 2)
    f["churn_reconcile_passes_per_pod_event"] = round(d.get("reconcile_passes", 0) / max(1, pod_events), 2)
    took = await fleet.wait_converged(timeout=900)
    f["after_churn_converge_seconds"] = round(took, 1) if took is not None else None
    if profiler:
        profiler.wait()
        raw = workdir() / "profile-churn.txt"
        f["profile_churn_top_self"] = top_frames(raw)
        f["profile_churn_top_inclusive_operator"] = top_inclusive(raw, "infer_operator")
        f["profile_churn_top_inclusive_kopf"] = top_inclusive(raw, "kopf/", 10)

    # Restart with work pending: one sync pod per service deleted while the operator is down.
    op.stop()
    victims = [f"{n}-0" for n in fleet.names()]
    await gather_limited(16, [fleet.kube.req("DELETE", f"/api/v1/namespaces/{NS}/pods/{v}") for v in victims])
    await asyncio.sleep(2)
    t0 = time.monotonic()
    fleet.start_operator()
    op = fleet.operator
    f["restart_to_healthy_seconds"] = round(time.monotonic() - t0, 1)
    c6, cpu6 = op.counters(), op.cpu_seconds()
    rss = []
    took = await fleet.wait_converged(timeout=1800, rss=rss)
    f["restart_converge_seconds"] = round(time.monotonic() - t0, 1) if took is not None else None
    d = diff(op.counters(), c6)
    f["restart_cpu_seconds"] = round(op.cpu_seconds() - cpu6, 1)
    f["restart_kube_requests"] = d.get("kube_requests", 0)
    f["restart_etcd_requests"] = d.get("etcd_requests", 0)
    f["rss_mb_restart_max"] = round(max(rss) / 2**20, 1)
    f["rss_mb_after_restart"] = round(op.rss() / 2**20, 1)
    await asyncio.sleep(args.idle_seconds)  # settled: what a restarted operator holds from then on
    f["rss_mb_after_restart_idle"] = round(op.rss() / 2**20, 1)
    f["rss_after_restart_over_idle"] = round(f["rss_mb_after_restart_idle"] / f["rss_mb_idle"], 2)
    f["operator_cpu_seconds_total_second_process"] = round(op.cpu_seconds(), 1)
    return f


def rows_of(f: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    return [
        (f"{prefix}cold start -> converged", f"{f.get('cold_converge_seconds')} s (CPU {f.get('cold_cpu_seconds')} s)"),
        (f"{prefix}restart (1 pod/svc deleted while down)", f"{f.get('restart_converge_seconds')} s"),
        (
            f"{prefix}RSS empty / idle / churn max",
            f"{f.get('rss_mb_empty')} / {f.get('rss_mb_idle')} / {f.get('rss_mb_churn_max')} MB",
        ),
        (
            f"{prefix}RSS restart max / after restart (settled)",
            f"{f.get('rss_mb_restart_max')} / {f.get('rss_mb_after_restart_idle')} MB "
            f"({f.get('rss_after_restart_over_idle')} x idle)",
        ),
        (f"{prefix}CPU idle / churn", f"{f.get('idle_cpu_percent')} % / {f.get('churn_cpu_percent')} %"),
        (f"{prefix}CPU per pod event (churn)", f"{f.get('churn_cpu_ms_per_pod_event')} ms"),
        (f"{prefix}idle kube requests / service / minute", f.get("idle_kube_requests_per_service_per_minute")),
        (f"{prefix}kube requests / pod event (churn)", f.get("churn_kube_requests_per_pod_event")),
        (
            f"{prefix}kube requests / service (cold)",
            f"{f.get('cold_kube_requests_per_service')} "
            f"({(f.get('cold_kube_requests_per_service_breakdown') or {}).get('the_rest')} besides the gate and "
            f"ownership reads)",
        ),
        (f"{prefix}after churn -> converged", f"{f.get('after_churn_converge_seconds')} s"),
    ]


async def main(args) -> Result:
    scaled_down = args.services * args.pods < 4000
    params = {
        "services": args.services,
        "pods_per_service": args.pods,
        "total_pods": args.services * args.pods,
        "sync_per_service": max(1, args.pods // 2),
        "registry": "etcd",
        "churn_rate_per_s": args.churn_rate,
        "churn_seconds": args.churn_seconds,
        "idle_seconds": args.idle_seconds,
        "operator_flags": "defaults",
        "scaled_down": scaled_down,
        "baseline": args.baseline and f"the operator of {args.baseline}, same scenario, same control plane, run first",
    }
    if scaled_down:
        params["scaled_down_reason"] = args.scaled_down_reason or "reduced size requested"
    result = Result(args.result_name or "scale", params)
    rows: list[tuple[str, Any]] = [
        ("size", f"{args.services} services x {args.pods} pods" + (" (scaled down)" if scaled_down else ""))
    ]
    if args.baseline:
        source = checkout(args.baseline)
        async with running_fleet(result, args.services, args.pods, "scale-baseline", source) as fleet:
            baseline = await scenario(fleet, args, profile=False)
        result.figures["baseline"] = {"revision": args.baseline, **baseline}
        result.data["load_average_after_baseline"] = [round(x, 2) for x in os.getloadavg()]
        rows += rows_of(baseline, "baseline: ")
    async with running_fleet(result, args.services, args.pods, "scale") as fleet:
        result.figures.update(await scenario(fleet, args, profile=args.profile))
    rows += rows_of(result.figures)
    result.write(rows)
    return result
