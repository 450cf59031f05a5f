"""The operator's endpoint for its pods: `GET /released/{namespace}/{pod}` answers whether the pod
is out of the registry (200 `released`) or not yet (503 `releasing`), with no credentials; and
`GET /readyz` (200 while it serves: the readiness probe of the operator's pod).

A deleted sync pod's preStop asks it before it drains (builders/scripts/prestop.sh): while the
operator is away (killed, upgraded, failing over), nothing confirms, and the pod goes on serving
while consumers may still call it, for as long as its grace period allows; the operator, once
back, releases the pods deleted meanwhile first (their deletion events come with its first
listing), and the next poll confirms. Every replica answers the same from the API (a standby's
answer is as good as the active one's): the Service may send pods to either.

Served with aiohttp (which kopf brings) on `--release-port`; read-only, it tells no more than
whether a pod of that name is still held by the operator's finalizer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from infer_operator.clients.kube import KubeError

log = logging.getLogger(__name__)

# (namespace, pod name) -> whether it is out of the registry; raises KubeError when it cannot tell.
Answer = Callable[[str, str], Awaitable[bool]]


def application(answer: Answer) -> web.Application:
    async def released(request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["pod"]
        try:
            done = await answer(namespace, name)
        except KubeError as exc:
            log.warning(f"Could not tell whether pod {namespace}/{name} left the registry: {exc}")
            return web.Response(status=503, text="unknown\n")
        return web.Response(status=200, text="released\n") if done else web.Response(status=503, text="releasing\n")

    async def ready(request: web.Request) -> web.Response:
        # Serving is being able to answer: the readiness probe of the operator's pod.
        return web.Response(status=200, text="ready\n")

    app = web.Application()
    app.router.add_get("/released/{namespace}/{pod}", released)
    app.router.add_get("/readyz", ready)
    return app


async def serve(answer: Answer, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    """Start serving; returns the runner (`await runner.cleanup()` stops it)."""
    runner = web.AppRunner(application(answer), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info(f"Serving pods' release checks on port {port} (GET /released/NAMESPACE/POD).")
    return runner
