"""`infer-operator run`, with every HTTP request it makes counted (kopf's watches and patches, our
own client's calls, the etcd registry's calls) and reconcile passes counted, exported on the
operator's own Prometheus endpoint as bench_http_requests_total{target,verb,resource} and
bench_reconcile_passes_total. Used by the benchmarks only: `python -m bench.instrumented run ...`.

All of the operator's clients use aiohttp, so one wrapper around ClientSession._request sees them all.
"""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

import aiohttp
from prometheus_client import Counter

REQUESTS = Counter("bench_http_requests", "HTTP requests made by the operator", ["target", "verb", "resource"])
PASSES = Counter("bench_reconcile_passes", "ServiceReconciler.run_pass calls")


def classify(method: str, url: str, params) -> tuple[str, str, str]:
    parts = urlsplit(url)
    path = parts.path
    query = parts.query + "&" + "&".join(f"{k}={v}" for k, v in (dict(params or {})).items())
    if path.startswith("/v3/"):
        return "etcd", method, path[4:]
    segments = [s for s in path.split("/") if s]
    resource = "?"
    if segments[:1] == ["api"]:
        rest = segments[2:]
    elif segments[:1] == ["apis"]:
        rest = segments[3:]
    else:
        rest = segments
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    if rest:
        resource = rest[0] + ("/" + rest[2] if len(rest) >= 3 else "")
    verb = "WATCH" if "watch=true" in query else method
    return "kube", verb, resource


_original = aiohttp.ClientSession._request


async def _counted(self, method, str_or_url, *args, **kwargs):
    try:
        url = str(str_or_url)
        if self._base_url is not None and not url.startswith("http"):
            url = str(self._base_url.join(aiohttp.client.URL(url)))
        REQUESTS.labels(*classify(method, url, kwargs.get("params"))).inc()
    except Exception:  # noqa: BLE001 - counting must never break a request
        pass
    return await _original(self, method, str_or_url, *args, **kwargs)


def install() -> None:
    aiohttp.ClientSession._request = _counted
    from infer_operator.reconcile.reconciler import ServiceReconciler

    original_pass = ServiceReconciler.run_pass

    async def run_pass(self, *args, **kwargs):
        PASSES.inc()
        return await original_pass(self, *args, **kwargs)

    ServiceReconciler.run_pass = run_pass


def trace_deletions(path: str) -> None:
    """BENCH_TRACE=path: one JSON line per stage of each pod deletion, in the operator's monotonic
    clock (CLOCK_MONOTONIC, shared with the bench process): `arrived` (the watch event with the
    deletionTimestamp leaves the API client), `handled` (the release starts), `sent` (the first
    registry delete is issued), `deleted` (that delete returned). The bench joins them by pod uid."""
    import json
    import time

    from kopf._cogs.clients import watching

    from infer_operator.registration import releaser
    from infer_operator.registry.etcd import EtcdRegistry

    out = open(path, "a", buffering=1)  # line-buffered: the bench reads it while we run
    seen: set[tuple[str, str]] = set()

    def mark(stage: str, uid: str) -> None:
        if (stage, uid) not in seen:
            seen.add((stage, uid))
            out.write(json.dumps({"stage": stage, "uid": uid, "t": time.monotonic()}) + "\n")

    original_watch = watching.infinite_watch

    async def infinite_watch(*args, **kwargs):
        async for item in original_watch(*args, **kwargs):
            if isinstance(item, dict):
                meta = (item.get("object") or {}).get("metadata") or {}
                if meta.get("deletionTimestamp") and item.get("object", {}).get("kind") in (None, "Pod"):
                    mark("arrived", meta.get("uid", ""))
            yield item

    watching.infinite_watch = infinite_watch
    original_handle = releaser.PodReleaser.handle

    def handle(self, pod, *args, **kwargs):
        if pod.deleting:
            mark("handled", pod.uid)
        return original_handle(self, pod, *args, **kwargs)

    releaser.PodReleaser.handle = handle
    original_deregister = EtcdRegistry.deregister

    async def deregister(self, service, ip, port, uid=None):
        mark("sent", uid or "")
        try:
            return await original_deregister(self, service, ip, port, uid)
        finally:
            mark("deleted", uid or "")

    EtcdRegistry.deregister = deregister


def memory_report_on_signal(path: str) -> None:
    """BENCH_MEMORY_REPORT=path: trace allocations (tracemalloc, slower) and, on SIGUSR2, write
    where the live memory was allocated (by line and by traceback) and a census of live objects."""
    import collections
    import gc
    import signal
    import tracemalloc

    tracemalloc.start(12)

    def report(*_) -> None:
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        counts = collections.Counter(type(o).__name__ for o in gc.get_objects())
        with open(path, "w") as out:
            current, peak = tracemalloc.get_traced_memory()
            out.write(f"traced now {current / 2**20:.1f} MB, peak {peak / 2**20:.1f} MB\n\n== by line\n")
            for stat in snapshot.statistics("lineno")[:40]:
                out.write(f"{stat}\n")
            out.write("\n== by traceback\n")
            for stat in snapshot.statistics("traceback")[:15]:
                out.write(f"\n{stat.size / 2**20:.1f} MB in {stat.count} blocks\n")
                for line in stat.traceback.format()[-24:]:
                    out.write(f"{line}\n")
            out.write("\n== gc-tracked objects by type\n")
            for name, n in counts.most_common(40):
                out.write(f"{n:>9}  {name}\n")

    signal.signal(signal.SIGUSR2, report)


if __name__ == "__main__":
    import os

    if os.environ.get("BENCH_MEMORY_REPORT"):
        memory_report_on_signal(os.environ["BENCH_MEMORY_REPORT"])
    if os.environ.get("BENCH_TRACE"):
        trace_deletions(os.environ["BENCH_TRACE"])
    install()
    from infer_operator.cli import main

    sys.exit(main(sys.argv[1:]))
