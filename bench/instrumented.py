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


if __name__ == "__main__":
    install()
    from infer_operator.cli import main

    sys.exit(main(sys.argv[1:]))
