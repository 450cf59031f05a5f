"""The registry backends, one row each: adding a backend is one module and one line here.

A backend module (`etcd.py`, `http.py`, `zookeeper.py`, `nacos.py`, `none.py`) declares its `BACKEND`: the value of
`spec.registry.type` that selects it, the pydantic model of its spec section
(`spec.registry.<type>`, None when it has none), the Secret keys it reads and how it connects.
The API's `RegistrySpec` (type enum, one section per backend, the "section required" rules),
the CRD, the reference docs and the registrar all derive from `BACKENDS`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from infer_operator import metrics

from .base import Backend, Registry
from .model import Instance, Listing


def _rows() -> tuple[Backend, ...]:
    from . import etcd, http, nacos, none, zookeeper

    return (none.BACKEND, etcd.BACKEND, http.BACKEND, zookeeper.BACKEND, nacos.BACKEND)


BACKENDS: dict[str, Backend] = {backend.type: backend for backend in _rows()}
metrics.start_registry_series([type_ for type_ in BACKENDS if type_ != "none"])


def connect(type_: str, section: Any, credentials: Mapping[str, Any] | None = None, timeout: float = 5.0) -> Registry:
    """A client for one backend. `section` is its spec section (a model, or a mapping in the
    spec's camelCase), `credentials` the credential names of `Backend.secret_keys` (values are
    never shown in errors). Raises ValueError (naming no secret) when unusable."""
    backend = BACKENDS.get(type_)
    if backend is None:
        raise ValueError(f"unknown registry type {type_!r}; expected one of {', '.join(BACKENDS)}")
    if backend.spec is not None:
        if section is None:
            raise ValueError(f"the {type_} registry needs its settings (spec.registry.{type_})")
        if not isinstance(section, backend.spec):
            section = backend.spec.model_validate(section)
    allowed = set(backend.secret_keys.values())
    unknown = set(credentials or {}) - allowed
    if unknown:  # names only, never values
        raise ValueError(f"unknown {type_} registry credential keys: {', '.join(sorted(unknown))}")
    return backend.connect(section, {k: _text(v, k) for k, v in (credentials or {}).items() if _text(v, k)}, timeout)


def _text(value: Any, name: str) -> str | None:
    if value is None or value in ("", b""):
        return None
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"credential {name!r} is not UTF-8 text") from None
    if not isinstance(value, str):
        raise ValueError(f"credential {name!r} must be a string")
    return value


class Measured(Registry):
    """A client whose every call is timed into `infer_operator_registry_request_duration_seconds`
    (by backend and operation, failures included), and counted in `infer_operator_registry_clients`
    while open."""

    def __init__(self, inner: Registry, backend: str):
        self.inner = inner
        self.kind = inner.kind
        self._backend = backend
        self._open = True
        metrics.REGISTRY_CLIENTS.inc()

    async def _timed(self, operation: str, call: Any) -> Any:
        started = time.monotonic()
        try:
            return await call
        finally:
            metrics.REGISTRY_LATENCY.labels(self._backend, operation).observe(time.monotonic() - started)

    async def register(self, service: str, instance: Instance) -> None:
        await self._timed("register", self.inner.register(service, instance))

    async def deregister(self, service: str, ip: str, port: int, uid: str | None = None) -> None:
        await self._timed("deregister", self.inner.deregister(service, ip, port, uid))

    async def claim(self, service: str, instance: Instance) -> None:
        await self._timed("claim", self.inner.claim(service, instance))

    async def list_instances(self, service: str) -> Listing:
        return await self._timed("list_instances", self.inner.list_instances(service))

    async def list_config_ips(self, service: str) -> set[str]:
        return await self._timed("list_configs", self.inner.list_config_ips(service))

    async def delete_config(self, service: str, ip: str) -> None:
        await self._timed("delete_config", self.inner.delete_config(service, ip))

    async def lookup(self, service: str, ip: str, port: int) -> Instance | None:
        return await self._timed("lookup", self.inner.lookup(service, ip, port))

    async def delete_configs(self, service: str, ips: Sequence[str]) -> dict[str, str]:
        return await self._timed("delete_configs", self.inner.delete_configs(service, ips))

    async def identity(self) -> str:
        return await self._timed("identity", self.inner.identity())

    async def close(self) -> None:
        if self._open:
            self._open = False
            metrics.REGISTRY_CLIENTS.dec()
        await self.inner.close()

    def describe(self) -> str:
        return self.inner.describe()
