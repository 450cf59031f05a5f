"""The ``none`` backend: registry work disabled. Writes do nothing, lists are empty."""

from __future__ import annotations

from .base import Backend, Registry
from .model import Instance, Listing, validate_port, validate_segment


class NoneRegistry(Registry):
    kind = "none"

    def __init__(self, *, timeout: float | None = None) -> None:
        self._timeout = timeout

    def describe(self) -> str:
        return "none (registry disabled)"

    async def register(self, service: str, instance: Instance) -> None:
        validate_segment("service", service)
        instance.validate()

    async def deregister(self, service: str, ip: str, port: int, uid: str | None = None) -> None:
        validate_segment("service", service)
        validate_segment("ip", ip)
        validate_port(port)

    async def claim(self, service: str, instance: Instance) -> None:
        await self.register(service, instance)

    async def identity(self) -> str:
        return "none"

    async def list_instances(self, service: str) -> Listing:
        validate_segment("service", service)
        return Listing()

    async def list_config_ips(self, service: str) -> set[str]:
        validate_segment("service", service)
        return set()

    async def delete_config(self, service: str, ip: str) -> None:
        validate_segment("service", service)
        validate_segment("ip", ip)

    async def close(self) -> None:
        return None


BACKEND = Backend(
    type="none",
    summary="none (Kubernetes Services only)",
    spec=None,
    secret_keys={},
    connect=lambda _spec, _credentials, timeout: NoneRegistry(timeout=timeout),
)
