"""Each registry backend with a real server behind it, as the conformance suite drives it
(tests/registry/test_conformance.py). A new backend brings one class here (and its row in
`HARNESSES`); the suite then holds it to the same contract as the others.

A harness gives the suite:
- `connect(...)`: a client of the backend (the backend table's `connect`) to its real server;
  `first=URL` puts a failing place before the healthy one (another member for etcd; the same
  server failing its next answers where the backend has one address);
- `section(url)`: the spec section pointing at `url` (default: the real server);
- a way to put anything at an instance address (`put_raw`), to seed per-IP config, and to read
  what the server holds (`listed`, `configs`);
- `unavailable(status)`: an async context giving a client whose first try meets `status`
  (5xx/429; a ZooKeeper server that cannot serve closes the connection), and `leaky(status)`: a
  client with credentials whose server (or client library) repeats them in errors;
- `per_ip_config`: whether the layout keeps a per-IP config apart from the instance (Curator's
  does not), and `not_per_ip`: a config id that is no pod's IP (another tool's).

A backend with several layouts has one harness per layout (`VARIANTS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from infer_operator.registry.backends import connect
from infer_operator.registry.base import Registry
from infer_operator.registry.nacos import OWNER_KEY
from infer_operator.registry.zookeeper import ZooKeeperRegistry, encode_node, parse_node
from tests.support.admin_controller import AdminController
from tests.support.faulty_etcd import FaultyEtcdMember


class EtcdHarness:
    type = "etcd"
    secret_name = "password"
    per_ip_config = True
    not_per_ip = "defaults"

    def __init__(self, etcd) -> None:
        self.etcd = etcd

    def section(self, url: str | None = None) -> dict[str, Any]:
        return {"endpoints": [url or self.etcd.client_url], "prefix": "/services"}

    def connect(self, *, first: str | None = None, timeout: float = 2.0, credentials=None) -> Registry:
        endpoints = [first] if first else []
        return connect(
            "etcd", {**self.section(), "endpoints": [*endpoints, self.etcd.client_url]}, credentials, timeout=timeout
        )

    def put_raw(self, service: str, address: str, value: Any) -> None:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        self.etcd.put(f"/services/{service}/instances/{address}", raw)

    def seed_config(self, service: str, ip: str) -> None:
        self.etcd.put(f"/services/{service}/config/{ip}", b'{"weight":0,"enabled":false}')
        self.etcd.put(f"/services/{service}/config/{ip}/extra", b"x")

    def listed(self, service: str) -> dict[str, bytes]:
        prefix = f"/services/{service}/instances/"
        return {k[len(prefix) :]: v for k, v in self.etcd.range_prefix(prefix).items()}

    def configs(self, service: str) -> set[str]:
        prefix = f"/services/{service}/config/"
        return {k[len(prefix) :].split("/", 1)[0] for k in self.etcd.range_prefix(prefix)}

    @contextlib.asynccontextmanager
    async def unavailable(self, status: int) -> AsyncIterator[Registry]:
        async with FaultyEtcdMember(status) as member, self.connect(first=member.url) as registry:
            yield registry

    @contextlib.asynccontextmanager
    async def leaky(self, secret: str) -> AsyncIterator[Registry]:
        async with FaultyEtcdMember(500, echo_auth=True) as member:
            registry = connect(
                "etcd", {"endpoints": [member.url]}, {"username": "root", "password": secret}, timeout=2.0
            )
            async with registry:
                yield registry


class HttpHarness:
    type = "http"
    secret_name = "token"
    per_ip_config = True
    not_per_ip = "defaults"

    def __init__(self, controller: AdminController) -> None:
        self.controller = controller

    def section(self, url: str | None = None) -> dict[str, Any]:
        return {"url": url or self.controller.url}

    def connect(self, *, first: str | None = None, timeout: float = 2.0, credentials=None) -> Registry:
        if first is not None:  # one address: the server itself refuses its next answer instead
            self.controller.fail_next(503)
        return connect("http", self.section(), credentials, timeout=timeout)

    def put_raw(self, service: str, address: str, value: Any) -> None:
        self.controller.seed_raw_instance(service, address, json.loads(value) if isinstance(value, bytes) else value)

    def seed_config(self, service: str, ip: str) -> None:
        self.controller.seed_config(service, ip, {"weight": 0, "enabled": False})

    def listed(self, service: str) -> dict[str, Any]:
        return self.controller.instances(service)

    def configs(self, service: str) -> set[str]:
        return self.controller.configs(service)

    @contextlib.asynccontextmanager
    async def unavailable(self, status: int) -> AsyncIterator[Registry]:
        self.controller.fail_next(status)  # its next answer, whatever the call
        async with self.connect() as registry:
            yield registry

    @contextlib.asynccontextmanager
    async def leaky(self, secret: str) -> AsyncIterator[Registry]:
        self.controller.echo_auth = True
        self.controller.fail_next(500, count=100)
        try:
            async with connect("http", self.section(), {"token": secret}, timeout=2.0) as registry:
                yield registry
        finally:
            self.controller.reset_faults()
            self.controller.echo_auth = False


class _ClosingServer:
    """A TCP server that accepts every connection and closes it at once: a ZooKeeper server that
    cannot serve (no quorum, read-only refused) drops its clients this way."""

    async def __aenter__(self) -> str:
        async def handle(reader, writer):
            writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()


def _echoing_kazoo():
    """A kazoo client whose every request fails with a message repeating its authentication data,
    as a client library's error may: the registry's errors must not show it."""
    import threading

    from kazoo.client import KazooClient
    from kazoo.exceptions import AuthFailedError

    class Echoing(KazooClient):
        def start_async(self):
            started = threading.Event()
            started.set()
            return started

        def _call(self, request, async_object):
            async_object.set_exception(AuthFailedError(f"authentication {sorted(self.auth_data)} refused"))
            return True

    return Echoing


def _hostport(url: str) -> str:
    return url.split("://", 1)[-1].rstrip("/")


class ZooKeeperHarness:
    """Debian's ZooKeeper, in one of the backend's layouts."""

    type = "zookeeper"
    secret_name = "password"
    layout = "dubbo"
    per_ip_config = True
    not_per_ip = "0.0.0.0"  # Dubbo's override rule for every provider

    def __init__(self, server, zk) -> None:
        self._address = server.address
        self.zk = zk  # a started kazoo client of the test's own

    @property
    def root(self) -> str:
        return "/dubbo" if self.layout == "dubbo" else "/services"

    def section(self, url: str | None = None) -> dict[str, Any]:
        return {"servers": [_hostport(url) if url else self.address], "layout": self.layout}

    @property
    def address(self) -> str:
        return self._address

    def connect(self, *, first: str | None = None, timeout: float = 2.0, credentials=None) -> Registry:
        servers = ([_hostport(first)] if first else []) + [self.address]
        return connect("zookeeper", {**self.section(), "servers": servers}, credentials, timeout=timeout)

    def _parent(self, service: str) -> str:
        return f"{self.root}/{service}/providers" if self.layout == "dubbo" else f"{self.root}/{service}"

    def put_raw(self, service: str, address: str, value: Any) -> None:
        ip, port = address.rsplit(":", 1)
        if self.layout == "dubbo":
            name = encode_node(f"tri://{address}/{service}?interface={service}&side=provider")
            raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        else:
            name = address
            instance = {"address": ip, "port": int(port), "payload": value}  # a ServiceInstance
            raw = value if isinstance(value, bytes) else json.dumps(instance).encode()
        self.zk.create(f"{self._parent(service)}/{name}", raw, makepath=True)

    def seed_config(self, service: str, ip: str) -> None:
        # dubbo-admin's override rules: weight and disabled for one provider, a timeout for the IP
        for rule in (
            f"override://{ip}:8080/{service}?category=configurators&dynamic=false&weight=0&disabled=true",
            f"override://{ip}/{service}?category=configurators&dynamic=false&timeout=100",
        ):
            self.zk.create(f"{self.root}/{service}/configurators/{encode_node(rule)}", b"", makepath=True)

    def listed(self, service: str) -> dict[str, bytes]:
        out = {}
        parent = self._parent(service)
        for name in self.zk.get_children(parent) if self.zk.exists(parent) else []:
            data, _ = self.zk.get(f"{parent}/{name}")
            address = parse_node(name).address if self.layout == "dubbo" else name
            out[address] = data
        return out

    def configs(self, service: str) -> set[str]:
        parent = f"{self.root}/{service}/configurators"
        names = self.zk.get_children(parent) if self.zk.exists(parent) else []
        return {parse_node(name).host for name in names}

    @contextlib.asynccontextmanager
    async def unavailable(self, status: int) -> AsyncIterator[Registry]:
        async with _ClosingServer() as closing, self.connect(first=closing) as registry:
            yield registry

    @contextlib.asynccontextmanager
    async def leaky(self, secret: str) -> AsyncIterator[Registry]:
        registry = ZooKeeperRegistry(
            [self.address],
            layout=self.layout,
            username="root",
            password=secret,
            timeout=2.0,
            client_factory=_echoing_kazoo(),
        )
        async with registry:
            yield registry


class CuratorHarness(ZooKeeperHarness):
    layout = "curator"
    per_ip_config = False  # Curator keeps nothing per IP apart from the instance node


class _AnsweringServer:
    """An HTTP server answering every request with `status` (a Nacos node that cannot serve), or,
    with `echo`, logging anyone in and repeating each request's query and form in a 400 (a server
    that quotes what it was sent: the access token)."""

    def __init__(self, status: int = 503, *, echo: bool = False) -> None:
        self.status, self.echo = status, echo

    async def __aenter__(self) -> str:
        from aiohttp import web

        async def handle(request):
            form = await request.post() if request.can_read_body else {}
            if self.echo and request.path.endswith("/auth/login"):
                return web.json_response({"accessToken": f"{form.get('password')}-token", "tokenTtl": 100})
            if self.echo:
                return web.Response(status=400, text=f"bad request {request.query_string} {dict(form)}")
            return web.Response(status=self.status, text="server is starting")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


class NacosHarness:
    """r-nacos with authentication on; each test in a group of its own (the server lives for the session)."""

    type = "nacos"
    secret_name = "password"
    layout = "nacos"
    per_ip_config = True
    # Nacos keeps a deleted instance's ops metadata where no API lists it: the suite's batch test
    # cannot seed configs the listing shows (the IP-reuse tests cover what it does).
    lists_configs = False
    not_per_ip = "defaults"
    groups = 0

    def __init__(self, server) -> None:
        import urllib.request  # noqa: F401 - the raw calls below

        self.server = server
        NacosHarness.groups += 1
        self.group = f"conformance-{NacosHarness.groups}"
        self.seeded: set[tuple[str, str]] = set()

    def section(self, url: str | None = None) -> dict[str, Any]:
        return {"serverAddr": [url or self.server.url], "groupName": self.group}

    def credentials(self) -> dict[str, str]:
        return {"username": self.server.username, "password": self.server.password}

    def connect(self, *, first: str | None = None, timeout: float = 2.0, credentials=None) -> Registry:
        servers = ([first] if first else []) + [self.server.url]
        return connect(
            "nacos", {**self.section(), "serverAddr": servers}, credentials or self.credentials(), timeout=timeout
        )

    # raw OpenAPI calls, as an ops tool or a dead pod's operator made them
    def call(self, method: str, path: str, **params: Any) -> Any:
        import urllib.parse
        import urllib.request

        params = {"groupName": self.group, "accessToken": self.server.token(), **params}
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        request = urllib.request.Request(f"{self.server.url}/nacos{path}?{query}", method=method)
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 500:
                return None  # r-nacos: no such instance
            raise
        try:
            return json.loads(body)
        except ValueError:
            return body.decode()

    def put_raw(self, service: str, address: str, value: Any) -> None:
        ip, port = address.rsplit(":", 1)
        raw = value.decode() if isinstance(value, bytes) else json.dumps(value)
        self.call(
            "POST",
            "/v1/ns/instance",
            serviceName=service,
            ip=ip,
            port=port,
            ephemeral="false",
            metadata=json.dumps({OWNER_KEY: raw}),
        )

    def seed_config(self, service: str, ip: str) -> None:
        """The field's story: a pod's instance, disabled and weighted 0 by an ops tool, then removed
        by someone without a reset (its operator was away): the server keeps its ops metadata."""
        dead = {
            "pod": "llm-9",
            "namespace": "ns",
            "uid": f"u-dead-{ip}",
            "ip": ip,
            "port": 8080,
            "role": "sync",
            "ordinal": 9,
            "inferenceService": {"namespace": "ns", "name": "llm", "uid": "uid-llm"},
        }
        common = {"serviceName": service, "ip": ip, "port": "8080", "ephemeral": "false"}
        self.call("POST", "/v1/ns/instance", **common, metadata=json.dumps({OWNER_KEY: json.dumps(dead)}))
        self.call(
            "PUT",
            "/v1/ns/instance",
            **common,
            weight="0.0001",
            enabled="false",
            metadata=json.dumps({OWNER_KEY: json.dumps(dead), "ops": "drained"}),
        )
        self.call("DELETE", "/v1/ns/instance", **common)
        self.seeded.add((service, ip))

    def instance(self, service: str, address: str) -> dict[str, Any] | None:
        ip, port = address.rsplit(":", 1)
        found = self.call("GET", "/v1/ns/instance", serviceName=service, ip=ip, port=port)
        return found if isinstance(found, dict) and found.get("ip") == ip else None

    def listed(self, service: str) -> dict[str, Any]:
        data = self.call("GET", "/v1/ns/instance/list", serviceName=service, healthyOnly="false")
        hosts = {f"{h['ip']}:{h['port']}": h for h in (data or {}).get("hosts", [])}
        for _, ip in self.seeded:  # disabled instances are not in the list
            found = self.instance(service, f"{ip}:8080")
            if found is not None:
                hosts[f"{ip}:8080"] = found
        return hosts

    def configs(self, service: str) -> set[str]:
        """IPs whose previous holder's ops metadata would still reach a new instance there: seeded
        ones until an instance there shows none of it (what is kept after a deletion is not listed)."""
        out = set()
        for seeded_service, ip in self.seeded:
            if seeded_service != service:
                continue
            found = self.instance(service, f"{ip}:8080")
            metadata = (found or {}).get("metadata") or {}
            if found is None or "ops" in metadata or found.get("enabled") is False or float(found["weight"]) < 1:
                out.add(ip)
        return out

    @contextlib.asynccontextmanager
    async def unavailable(self, status: int) -> AsyncIterator[Registry]:
        async with _AnsweringServer(status) as url, self.connect(first=url) as registry:
            yield registry

    @contextlib.asynccontextmanager
    async def leaky(self, secret: str) -> AsyncIterator[Registry]:
        async with _AnsweringServer(echo=True) as url:
            registry = connect("nacos", self.section(url), {"username": "nacos", "password": secret}, timeout=2.0)
            async with registry:
                yield registry


HARNESSES = {"etcd": EtcdHarness, "http": HttpHarness, "zookeeper": ZooKeeperHarness, "nacos": NacosHarness}
# Every layout of a backend, each held to the contract.
VARIANTS = {
    "etcd": EtcdHarness,
    "http": HttpHarness,
    "zookeeper-dubbo": ZooKeeperHarness,
    "zookeeper-curator": CuratorHarness,
    "nacos": NacosHarness,
}
# Backends the suite does not apply to, and why.
EXEMPT = {"none": "registers nothing: there is nothing to read back, list or clean"}
