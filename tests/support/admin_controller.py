"""A real, in-memory admin-controller HTTP server implementing docs/registry-http-api.yaml.

Contract:
    PUT|DELETE /services/{service}/instances/{ip}:{port}   (PUT body = Instance JSON; DELETE ?uid=: 409
                                                           when the entry names another pod)
    GET        /services/{service}/instances               -> JSON list
    GET        /services/{service}/configs                 -> JSON list of IPs
    DELETE     /services/{service}/configs/{ip}

Serialisation as some real controllers do it (knobs): `omit_zero` lists instances without their
zero-valued fields (Go's `omitempty`: `ordinal: 0` left out); `echo_auth` puts the request's
Authorization header in error bodies (a careless controller: the client must not repeat it).

Test/demo extensions (not part of the contract, under /_admin, no auth):
    GET  /_admin/state                                  -> {"instances": {...}, "configs": {...}}
    PUT  /_admin/services/{service}/configs/{ip}        seed a per-IP config
    POST /_admin/faults   {"delay": 1.5, "fail_next": [{"status": 500, "count": 2, "method": "GET"}],
                           "garbage": "text|object|huge|huge-cl|null", "ignore_deletes": 1}

In tests:
    async with AdminController(token="t") as ac:
        ac.url; ac.seed_config("svc", "10.0.0.9"); ac.fail_next(500); ac.delay = 2.0
        ac.ignore_deletes = 1; ac.garbage = "huge"; ac.instances("svc"); ac.requests

Standalone: python -m tests.support.admin_controller --port 8089 [--host 0.0.0.0] [--token T]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

HUGE_BYTES = 17 * 1024 * 1024  # above the client's default 16 MiB cap


@dataclass
class _Fault:
    status: int
    count: int = 1
    method: str | None = None
    path_contains: str | None = None


@dataclass
class _State:
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)  # service -> "ip:port" -> raw JSON
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # service -> ip -> config


class AdminController:
    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None, base_path: str = ""
    ) -> None:
        self.base_path = "/" + base_path.strip("/") if base_path.strip("/") else ""
        self.host = host
        self.port = port
        self.token = token
        self.delay: float = 0.0
        self.garbage: str | None = None
        self.ignore_deletes: int = 0
        self.omit_zero = False
        self.echo_auth = False
        self.requests: list[tuple[str, str]] = []  # (method, path); headers are not kept
        self._faults: deque[_Fault] = deque()
        self.state = _State()
        self._runner: web.AppRunner | None = None
        self.app = self._make_app()

    # ---- knobs & inspection ------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.base_path}"

    def fail_next(
        self, status: int, count: int = 1, method: str | None = None, path_contains: str | None = None
    ) -> None:
        self._faults.append(_Fault(status, count, method.upper() if method else None, path_contains))

    def reset_faults(self) -> None:
        self._faults.clear()
        self.delay = 0.0
        self.garbage = None
        self.ignore_deletes = 0

    def seed_config(self, service: str, ip: str, config: Any = None) -> None:
        self.state.configs.setdefault(service, {})[ip] = config if config is not None else {"weight": 100}

    def seed_raw_instance(self, service: str, key: str, raw: Any) -> None:
        self.state.instances.setdefault(service, {})[key] = raw

    def instances(self, service: str) -> dict[str, Any]:
        return dict(self.state.instances.get(service, {}))

    def configs(self, service: str) -> set[str]:
        return set(self.state.configs.get(service, {}))

    # ---- server ------------------------------------------------------------------------------
    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._faults_mw], client_max_size=1024 * 1024)
        r = app.router
        b = self.base_path
        r.add_put(b + "/services/{service}/instances/{addr}", self._put_instance)
        r.add_delete(b + "/services/{service}/instances/{addr}", self._delete_instance)
        r.add_get(b + "/services/{service}/instances", self._list_instances)
        r.add_get(b + "/services/{service}/configs", self._list_configs)
        r.add_delete(b + "/services/{service}/configs/{ip}", self._delete_config)
        r.add_get(b + "/_admin/state", self._admin_state)
        r.add_put(b + "/_admin/services/{service}/configs/{ip}", self._admin_seed_config)
        r.add_post(b + "/_admin/faults", self._admin_faults)
        return app

    @web.middleware
    async def _faults_mw(self, request: web.Request, handler):
        if request.path.startswith(self.base_path + "/_admin/"):
            return await handler(request)
        self.requests.append((request.method, request.path))
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "unauthorized"}, status=401)
        if self.delay:
            await asyncio.sleep(self.delay)
        for f in list(self._faults):
            if (f.method is None or f.method == request.method) and (
                f.path_contains is None or f.path_contains in request.path
            ):
                f.count -= 1
                if f.count <= 0:
                    self._faults.remove(f)
                error = f"injected {f.status}"
                if self.echo_auth:
                    error += f" for {request.headers.get('Authorization')}"
                return web.json_response({"error": error}, status=f.status)
        return await handler(request)

    async def _put_instance(self, request: web.Request) -> web.Response:
        service, addr = request.match_info["service"], request.match_info["addr"]
        try:
            obj = json.loads(await request.read())
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        if not isinstance(obj, dict) or f"{obj.get('ip')}:{obj.get('port')}" != addr:
            return web.json_response({"error": "body ip:port does not match path"}, status=400)
        self.state.instances.setdefault(service, {})[addr] = obj
        return web.Response(status=204)

    async def _delete_instance(self, request: web.Request) -> web.Response:
        service, addr = request.match_info["service"], request.match_info["addr"]
        if self.ignore_deletes > 0:  # "the delete didn't take": acknowledge but keep the entry
            self.ignore_deletes -= 1
            return web.Response(status=204)
        current = self.state.instances.get(service, {}).get(addr)
        if current is None:
            return web.json_response({"error": "not found"}, status=404)
        uid = request.query.get("uid")
        if uid is not None and isinstance(current, dict) and current.get("uid") != uid:
            return web.json_response({"error": "the entry names another pod"}, status=409)
        del self.state.instances[service][addr]
        return web.Response(status=204)

    async def _garbage_or(self, request: web.Request, payload: Any) -> web.StreamResponse:
        mode = self.garbage
        if mode == "text":
            return web.Response(text="<html>oops</html>", content_type="text/html")
        if mode == "object":
            return web.json_response({"items": payload})
        if mode == "null":
            return web.json_response(None)
        if mode == "huge-cl":
            body = b"[" + b'"x",' * (HUGE_BYTES // 4) + b'"x"]'
            return web.Response(body=body, content_type="application/json")
        if mode == "huge":  # streamed, no Content-Length
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            chunk = b'"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",' * 1024
            try:
                await resp.write(b"[")
                sent = 0
                while sent < HUGE_BYTES:
                    await resp.write(chunk)
                    sent += len(chunk)
                await resp.write(b'"x"]')
                await resp.write_eof()
            except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
                pass
            return resp
        return web.json_response(payload)

    async def _list_instances(self, request: web.Request) -> web.StreamResponse:
        items = list(self.state.instances.get(request.match_info["service"], {}).values())
        if self.omit_zero:
            items = [
                {k: v for k, v in i.items() if v not in (0, "", None, False)} if isinstance(i, dict) else i
                for i in items
            ]
        return await self._garbage_or(request, items)

    async def _list_configs(self, request: web.Request) -> web.StreamResponse:
        ips = sorted(self.state.configs.get(request.match_info["service"], {}))
        return await self._garbage_or(request, ips)

    async def _delete_config(self, request: web.Request) -> web.Response:
        service, ip = request.match_info["service"], request.match_info["ip"]
        if self.state.configs.get(service, {}).pop(ip, None) is None:
            return web.json_response({"error": "not found"}, status=404)
        return web.Response(status=204)

    async def _admin_state(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"instances": self.state.instances, "configs": {s: sorted(c) for s, c in self.state.configs.items()}}
        )

    async def _admin_seed_config(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seed_config(request.match_info["service"], request.match_info["ip"], json.loads(body) if body else None)
        return web.Response(status=204)

    async def _admin_faults(self, request: web.Request) -> web.Response:
        spec = await request.json()
        if "delay" in spec:
            self.delay = float(spec["delay"])
        if "garbage" in spec:
            self.garbage = spec["garbage"]
        if "ignore_deletes" in spec:
            self.ignore_deletes = int(spec["ignore_deletes"])
        for f in spec.get("fail_next", []):
            self.fail_next(int(f["status"]), int(f.get("count", 1)), f.get("method"), f.get("path_contains"))
        if spec.get("reset"):
            self.reset_faults()
        return web.Response(status=204)

    async def start(self) -> AdminController:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> AdminController:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _serve(host: str, port: int, token: str | None, base_path: str) -> None:
    async with AdminController(host=host, port=port, token=token, base_path=base_path) as ac:
        print(f"admin-controller listening on {ac.url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="in-memory admin-controller (registry http contract)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8089)
    p.add_argument("--token", default=None, help="require 'Authorization: Bearer TOKEN'")
    p.add_argument("--base-path", default="", help="serve the contract under this path, e.g. /api")
    args = p.parse_args(argv)
    try:
        asyncio.run(_serve(args.host, args.port, args.token, args.base_path))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
