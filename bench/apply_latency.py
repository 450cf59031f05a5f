"""InferenceService apply -> StatefulSet created, and -> every pod labelled with its role.

`services` CRs (small: `replicas` pods each, half sync), applied one after another (or
`concurrency` at once). Times run from the apply's response to the watch event (bench-side watches
on StatefulSets and pods) that shows the StatefulSet / the last pod's role label.
Pod role-labelling includes the StatefulSet controller creating the pods and the scheduler binding
them (KWOK nodes), i.e. what a user waits for.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.common import (
    InstrumentedOperator,
    Kube,
    PodTracker,
    Result,
    apply_isvc,
    cluster_up,
    isvc,
    log,
    summary,
    workdir,
)
from infer_operator import labels

NS = "bench-apply"


async def main(args, name: str = "apply") -> Result:
    params = {
        "services": args.services,
        "replicas_each": args.replicas,
        "sync_each": max(1, args.replicas // 2),
        "concurrency": args.concurrency,
        "registry": "none",
        "clock": "bench-side watch events (receive time) minus the apply response time",
    }
    result = Result(name, params)
    kubeconfig = cluster_up()
    kube = Kube(kubeconfig)
    operator = None
    sts_seen: dict[str, float] = {}
    labelled_at: dict[str, float] = {}
    labelled: dict[str, set[str]] = {}
    trackers: list[PodTracker] = []
    try:
        result.data["versions"]["kube_apiserver"] = await kube.server_version()
        await kube.install_crd()
        await kube.delete_namespace(NS)
        await kube.ensure_namespace(NS)
        operator = InstrumentedOperator(kubeconfig, [NS], workdir() / "operator-apply.log")
        operator.start()

        pods = PodTracker(kube, NS, labels.MANAGED_SELECTOR)

        def on_pod(now: float, event: dict) -> None:
            meta = event["object"]["metadata"]
            service = (meta.get("labels") or {}).get(labels.LABEL_SERVICE)
            if service and (meta.get("labels") or {}).get(labels.LABEL_ROLE) and event["type"] != "DELETED":
                labelled.setdefault(service, set()).add(meta["name"])
                if len(labelled[service]) >= args.replicas and service not in labelled_at:
                    labelled_at[service] = now

        pods.listeners.append(on_pod)
        await pods.start()
        trackers.append(pods)

        async def watch_sts() -> None:
            async for now, event in kube.watch(
                f"/apis/apps/v1/namespaces/{NS}/statefulsets", {"labelSelector": labels.MANAGED_SELECTOR}
            ):
                sts_seen.setdefault(event["object"]["metadata"]["name"], now)

        sts_task = asyncio.create_task(watch_sts())
        await asyncio.sleep(0.5)
        before = operator.counters()
        cpu0 = operator.cpu_seconds()
        sem = asyncio.Semaphore(args.concurrency)
        to_sts: list[float] = []
        to_labelled: list[float] = []

        async def one(i: int) -> None:
            svc = f"app-{i:04d}"
            async with sem:
                await apply_isvc(kube, isvc(svc, NS, args.replicas, max(1, args.replicas // 2), None))
                t = time.monotonic()
                deadline = t + 120
                while (svc not in sts_seen or svc not in labelled_at) and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
                if svc in sts_seen:
                    to_sts.append(sts_seen[svc] - t)
                if svc in labelled_at:
                    to_labelled.append(labelled_at[svc] - t)

        t0 = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(args.services)))
        wall = time.monotonic() - t0
        after = operator.counters()
        cpu = operator.cpu_seconds() - cpu0
        sts_task.cancel()
        log(f"apply: {len(to_sts)} StatefulSets, {len(to_labelled)} services labelled in {wall:.1f}s")
        kube_req = after["kube_requests"] - before["kube_requests"]
        result.figures.update(
            {
                "apply_to_statefulset": summary(to_sts),
                "apply_to_all_pods_labelled": summary(to_labelled),
                "wall_seconds": round(wall, 1),
                "operator_cpu_seconds": round(cpu, 2),
                "operator_kube_requests_per_service": round(kube_req / max(1, args.services), 1),
                "operator_reconcile_passes_per_service": round(
                    (after["reconcile_passes"] - before["reconcile_passes"]) / max(1, args.services), 1
                ),
                "operator_rss_mb_end": round(operator.rss() / 2**20, 1),
            }
        )
    finally:
        for tr in trackers:
            await tr.stop()
        if operator:
            operator.stop()
        try:
            await kube.delete_namespace(NS, wait=0)
        except Exception:  # noqa: BLE001
            pass
        await kube.close()
    f = result.figures
    rows: list[tuple[str, Any]] = [
        (
            f"apply -> StatefulSet (n={f['apply_to_statefulset']['n']})",
            f"p50 {f['apply_to_statefulset'].get('p50_ms')} ms  p99 {f['apply_to_statefulset'].get('p99_ms')} ms",
        ),
        (
            f"apply -> all pods role-labelled (n={f['apply_to_all_pods_labelled']['n']})",
            f"p50 {f['apply_to_all_pods_labelled'].get('p50_ms')} ms  "
            f"p99 {f['apply_to_all_pods_labelled'].get('p99_ms')} ms",
        ),
        ("operator kube requests / service", f["operator_kube_requests_per_service"]),
        ("reconcile passes / service", f["operator_reconcile_passes_per_service"]),
    ]
    result.write(rows)
    return result
