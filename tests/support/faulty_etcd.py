"""An etcd member that answers but cannot serve: every call to its JSON gateway gets one fixed
error, as a real member gives it (a learner: HTTP 503, gRPC code 14 `rpc not supported for
learner`; rate limiting: HTTP 429, code 8 `too many requests`). Listed before a healthy member,
it shows whether a client moves on.

    async with FaultyEtcdMember(503) as member:
        EtcdRegistry([member.url, etcd.client_url])
        member.requests    # how many calls it answered
"""

from __future__ import annotations

from aiohttp import web

ANSWERS = {
    503: (14, "etcdserver: rpc not supported for learner"),
    429: (8, "etcdserver: too many requests"),
    500: (2, "etcdserver: internal error"),
}


class FaultyEtcdMember:
    def __init__(self, status: int, *, echo_auth: bool = False) -> None:
        self.status = status
        self.echo_auth = echo_auth  # repeat the request's token and body in the message (a careless proxy)
        self.requests = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _answer(self, request: web.Request) -> web.Response:
        self.requests += 1
        code, message = ANSWERS[self.status]
        if self.echo_auth:  # the request's token and body (a password, on authenticate)
            message += f" (token {request.headers.get('Authorization')}, request {await request.text()})"
        return web.json_response({"error": message, "code": code, "message": message}, status=self.status)

    async def __aenter__(self) -> FaultyEtcdMember:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
