"""Deregistration latency: pod DELETE -> its instance key gone from etcd.

Ours: one InferenceService (all pods sync, registry etcd) under the operator. Baseline (same run,
same cluster, same etcd, same kind of deletions): a plain StatefulSet whose pods the bench registers
itself, and bench/baseline_watcher.py (a pods watch + one etcd delete per deleted pod, no kopf).

Key removal is observed with etcd's own watch (gateway POST /v3/watch, streamed), so the end time
is when etcd announced the DELETE. Start times: the client's DELETE request and response
(monotonic clock), and the pod's deletion time as the API server recorded it
(deletionTimestamp - deletionGracePeriodSeconds; one-second resolution, so that column is coarse).
Deletions: `singles` one at a time (each waits for its key to go), then `bursts` x `burst` pods
deleted concurrently.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    PORT,
    PREFIX,
    EtcdWatch,
    InstrumentedOperator,
    Kube,
    PodTracker,
    Result,
    apply_isvc,
    cluster_up,
    etcd_version,
    isvc,
    log,
    parse_ts,
    pod_ip,
    pod_ready,
    start_etcd,
    summary,
    workdir,
)
from devtools.harness import terminate
from infer_operator import labels

NS_OURS = "bench-dereg"
NS_BASE = "bench-baseline"
SERVICE = "dereg"
BASE_PREFIX = "/baseline"
BASE_SERVICE = "base"


class Side:
    """One side of the comparison: its pods, its registry keys, how to tell a pod is registered."""

    def __init__(
        self, name: str, kube: Kube, etcdw: EtcdWatch, namespace: str, selector: str, key_base: str, replicas: int
    ):
        self.name = name
        self.kube = kube
        self.etcdw = etcdw
        self.namespace = namespace
        self.tracker = PodTracker(kube, namespace, selector)
        self.key_base = key_base
        self.replicas = replicas
        self.timeline: dict[str, dict[str, float]] = {}  # pod uid -> {"response", "gone"}: monotonic s
        self.bursting = False

    def key(self, pod: dict) -> str:
        return f"{self.key_base}/instances/{pod_ip(pod)}:{PORT}"

    def registered_pods(self) -> list[dict]:
        return [
            p
            for p in self.tracker.pods.values()
            if pod_ip(p)
            and pod_ready(p)
            and not p["metadata"].get("deletionTimestamp")
            and self.key(p) in self.etcdw.present
        ]

    def steady(self) -> bool:
        return len(self.registered_pods()) >= self.replicas

    async def delete_one(self, pod: dict) -> dict[str, float] | None:
        key = self.key(pod)
        seen = len(self.etcdw.deleted_at.get(key, []))
        meta = pod["metadata"]
        wall0, t_req = time.time(), time.monotonic()
        body = await self.kube.req(
            "DELETE",
            f"/api/v1/namespaces/{self.namespace}/pods/{meta['name']}",
            body={"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": meta["uid"]}},
        )
        t_resp = time.monotonic()
        if not await self.etcdw.wait(lambda: len(self.etcdw.deleted_at.get(key, [])) > seen, 60):
            log(f"{self.name}: key {key} not removed within 60s")
            return None
        t_gone = self.etcdw.deleted_at[key][seen]
        out = {"from_request": t_gone - t_req, "from_response": t_gone - t_resp}
        self.timeline[meta["uid"]] = {"response": t_resp, "gone": t_gone, "burst": float(self.bursting)}
        bmeta = (body or {}).get("metadata") or {}
        if bmeta.get("deletionTimestamp"):
            api_time = parse_ts(bmeta["deletionTimestamp"]) - int(bmeta.get("deletionGracePeriodSeconds") or 0)
            out["from_deletion_timestamp"] = wall0 + (t_gone - t_req) - api_time
        return out

    async def wait_steady(self, timeout: float = 120) -> None:
        if not await self.etcdw.wait(self.steady, timeout):
            log(f"{self.name}: only {len(self.registered_pods())}/{self.replicas} registered after {timeout}s")

    async def run(self, singles: int, bursts: int, burst: int) -> dict[str, Any]:
        await self.wait_steady(180)
        single: list[dict[str, float]] = []
        for _ in range(singles):
            if not await self.etcdw.wait(lambda: bool(self.registered_pods()), 60):
                log(f"{self.name}: no registered pod to delete")
                break
            result = await self.delete_one(random.choice(self.registered_pods()))
            if result:
                single.append(result)
        log(f"{self.name}: {len(single)} single deletions done")
        burst_results: list[dict[str, float]] = []
        self.bursting = True
        for _ in range(bursts):
            await self.wait_steady()
            await asyncio.sleep(1)
            victims = self.registered_pods()[:burst]
            results = await asyncio.gather(*(self.delete_one(p) for p in victims))
            burst_results += [r for r in results if r]
        log(f"{self.name}: {len(burst_results)} burst deletions done")

        def figures(rows: list[dict[str, float]]) -> dict[str, Any]:
            return {
                k: summary([r[k] for r in rows if k in r])
                for k in ("from_response", "from_request", "from_deletion_timestamp")
            }

        return {"single": figures(single), "burst": figures(burst_results)}

    def stages(self, trace: Path) -> dict[str, Any]:
        """Where the time went, per deletion, from the controller's trace (bench/instrumented.py,
        baseline_watcher.py --trace) joined by uid: DELETE response -> watch event arrived ->
        release started -> registry delete sent -> that delete returned, and -> key gone."""
        marks: dict[str, dict[str, float]] = {}
        for line in trace.read_text().splitlines() if trace.exists() else []:
            row = json.loads(line)
            marks.setdefault(row["uid"], {}).setdefault(row["stage"], row["t"])
        spans = {
            "response_to_arrived": ("response", "arrived"),
            "arrived_to_handled": ("arrived", "handled"),
            "handled_to_sent": ("handled", "sent"),
            "arrived_to_sent": ("arrived", "sent"),
            "sent_to_deleted": ("sent", "deleted"),
            "sent_to_gone": ("sent", "gone"),
        }
        out: dict[str, Any] = {"single": {}, "burst": {}}
        for mode, flag in (("single", 0.0), ("burst", 1.0)):
            for name, (a, b) in spans.items():
                values = [
                    t[b] - t[a]
                    for uid, times in self.timeline.items()
                    if times["burst"] == flag and a in (t := {**times, **marks.get(uid, {})}) and b in t
                ]
                if values:
                    out[mode][name] = summary(values)
        return out


async def baseline_registrar(side: Side, stop: asyncio.Event) -> None:
    """Plays the operator's registration role for the baseline: registers every Ready pod."""
    done: set[str] = set()
    while not stop.is_set():
        for pod in list(side.tracker.pods.values()):
            meta = pod["metadata"]
            if meta["uid"] in done or not pod_ip(pod) or not pod_ready(pod) or meta.get("deletionTimestamp"):
                continue
            done.add(meta["uid"])
            await side.etcdw.put(side.key(pod), json.dumps({"pod": meta["name"], "ip": pod_ip(pod), "port": PORT}))
        await asyncio.sleep(0.05)


def baseline_statefulset(replicas: int) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": BASE_SERVICE, "namespace": NS_BASE},
        "spec": {
            "replicas": replicas,
            "podManagementPolicy": "Parallel",
            "serviceName": BASE_SERVICE,
            "selector": {"matchLabels": {"bench": "baseline"}},
            "template": {
                "metadata": {"labels": {"bench": "baseline"}},
                "spec": {"terminationGracePeriodSeconds": 2, "containers": [{"name": "model", "image": "bench:none"}]},
            },
        },
    }


async def main(args, name: str = "deregistration") -> Result:
    params = {
        "replicas": args.replicas,
        "singles": args.singles,
        "bursts": args.bursts,
        "burst_size": args.burst,
        "drain_seconds": 1,
        "termination_grace_seconds": 2,
        "registry": "etcd (separate process)",
        "end_time": "etcd watch DELETE event received (gateway /v3/watch stream)",
    }
    result = Result(name, params)
    kubeconfig = cluster_up()
    kube = Kube(kubeconfig)
    etcd = start_etcd()
    operator = baseline = None
    etcdw = EtcdWatch(etcd.client_url, "/")
    try:
        result.data["versions"]["kube_apiserver"] = await kube.server_version()
        result.data["versions"]["etcd_registry"] = etcd_version(etcd.client_url)
        await kube.install_crd()
        for ns in (NS_OURS, NS_BASE):
            await kube.delete_namespace(ns)
            await kube.ensure_namespace(ns)
        await etcdw.start()
        log_path = workdir() / "operator-dereg.log"
        trace_ours, trace_base = workdir() / "dereg-trace-ours.jsonl", workdir() / "dereg-trace-baseline.jsonl"
        for trace in (trace_ours, trace_base):
            trace.unlink(missing_ok=True)
        operator = InstrumentedOperator(
            kubeconfig, [NS_OURS], log_path, "--sweep-seconds", "600", env={"BENCH_TRACE": str(trace_ours)}
        )
        operator.start()
        log(f"operator pid {operator.pid}; log {log_path}")
        await apply_isvc(kube, isvc(SERVICE, NS_OURS, args.replicas, args.replicas, etcd.client_url))
        ours = Side(
            "ours", kube, etcdw, NS_OURS, f"{labels.LABEL_SERVICE}={SERVICE}", f"{PREFIX}/{SERVICE}", args.replicas
        )
        await ours.tracker.start()
        before = operator.counters()
        figures_ours = await ours.run(args.singles, args.bursts, args.burst)
        figures_ours["stages"] = ours.stages(trace_ours)
        metrics = operator.metrics()
        hist_sum = metrics.get("infer_operator_deregistration_seconds_sum", 0.0)
        hist_n = metrics.get("infer_operator_deregistration_seconds_count", 0.0)
        figures_ours["operator_histogram_mean_ms"] = round(1000 * hist_sum / hist_n, 1) if hist_n else None
        after = operator.counters()
        n = max(1.0, after["deregistrations"] - before["deregistrations"])
        figures_ours["etcd_requests_per_deletion"] = round((after["etcd_requests"] - before["etcd_requests"]) / n, 2)
        figures_ours["kube_requests_per_deletion"] = round((after["kube_requests"] - before["kube_requests"]) / n, 2)
        await ours.tracker.stop()
        operator.stop()

        # Baseline.
        await kube.client.apply(baseline_statefulset(args.replicas), field_manager="bench")
        base = Side("baseline", kube, etcdw, NS_BASE, "bench=baseline", f"{BASE_PREFIX}/{BASE_SERVICE}", args.replicas)
        await base.tracker.start()
        stop = asyncio.Event()
        registrar = asyncio.create_task(baseline_registrar(base, stop))
        baseline = subprocess.Popen(
            [
                sys.executable,
                "bench/baseline_watcher.py",
                "--kubeconfig",
                str(kubeconfig),
                "--namespace",
                NS_BASE,
                "--selector",
                "bench=baseline",
                "--etcd",
                etcd.client_url,
                "--prefix",
                BASE_PREFIX,
                "--service",
                BASE_SERVICE,
                "--port",
                str(PORT),
                "--trace",
                str(trace_base),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(workdir() / "baseline.log", "wb"),
        )
        await asyncio.sleep(1.5)
        figures_base = await base.run(args.singles, args.bursts, args.burst)
        figures_base["stages"] = base.stages(trace_base)
        stop.set()
        await registrar
        await base.tracker.stop()

        ratio = {}
        for mode in ("single", "burst"):
            for q in ("p50_ms", "p90_ms", "p99_ms"):
                a = figures_ours[mode]["from_response"].get(q)
                b = figures_base[mode]["from_response"].get(q)
                if a is not None and b:
                    ratio[f"{mode}_{q[:3]}"] = round(a / b, 2)
        result.figures.update(
            {"ours": figures_ours, "baseline": figures_base, "ratio_ours_over_baseline_from_response": ratio}
        )
    finally:
        if operator:
            operator.stop()
        terminate(baseline, 10)
        await etcdw.stop()
        for ns in (NS_OURS, NS_BASE):
            try:
                await kube.delete_namespace(ns, wait=0)
            except Exception:  # noqa: BLE001
                pass
        await kube.close()
        etcd.stop()

    rows = []
    for side in ("ours", "baseline"):
        for mode in ("single", "burst"):
            s = result.figures[side][mode]["from_response"]
            d = result.figures[side][mode]["from_deletion_timestamp"]
            rows.append(
                (
                    f"{side} {mode} (n={s['n']}) DELETE resp -> key gone",
                    f"p50 {s['p50_ms']} ms  p90 {s['p90_ms']} ms  p99 {s['p99_ms']} ms",
                )
            )
            rows.append(
                (
                    f"{side} {mode} deletionTimestamp(1s res) -> gone",
                    f"p50 {d.get('p50_ms')} ms  p99 {d.get('p99_ms')} ms",
                )
            )
    rows.append(("ratio ours/baseline", result.figures["ratio_ours_over_baseline_from_response"]))
    result.write(rows)
    return result
