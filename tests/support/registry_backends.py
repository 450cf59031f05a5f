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
  (5xx/429), and `leaky(status)`: a client with credentials whose server repeats them in errors.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from infer_operator.registry.backends import connect
from infer_operator.registry.base import Registry
from tests.support.admin_controller import AdminController
from tests.support.faulty_etcd import FaultyEtcdMember


class EtcdHarness:
    type = "etcd"
    secret_name = "password"

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


HARNESSES = {"etcd": EtcdHarness, "http": HttpHarness}
# Backends the suite does not apply to, and why.
EXEMPT = {"none": "registers nothing: there is nothing to read back, list or clean"}
