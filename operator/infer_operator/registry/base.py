"""What a registry backend is: the client interface (`Registry`) and its row in the table (`Backend`)."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .model import Instance, Listing, RegistryError, Unreadable


class Registry(abc.ABC):
    """Async registry client. Every call is bounded by the per-call ``timeout`` given at construction."""

    kind: str = "abstract"
    # registry.warmupSeconds, for a registry whose consumers ramp a new instance's traffic by
    # themselves from a start time the entry carries (Dubbo's `timestamp` and `warmup`); the others
    # carry the operator's stepped weight (Instance.weight) and ignore it. Set by the registrar.
    warmup_seconds: float = 0.0

    @abc.abstractmethod
    async def register(self, service: str, instance: Instance) -> None: ...

    @abc.abstractmethod
    async def deregister(self, service: str, ip: str, port: int, uid: str | None = None) -> None:
        """Remove the instance entry at ip:port; an absent entry is success. With `uid` (a pod's),
        only while the entry names that pod: an IP is reused quickly, and the entry of the pod
        that holds it now is not the old pod's to remove."""

    @abc.abstractmethod
    async def claim(self, service: str, instance: Instance) -> None:
        """Register `instance` as the new holder of its IP: a per-IP config written before it
        belongs to a previous holder and is removed first (atomically where the backend can)."""

    @abc.abstractmethod
    async def identity(self) -> str:
        """Where this client's data lives, as physically as the backend can tell (etcd: the cluster
        id and the prefix), so two specs naming one store the same way are recognised as one."""

    @abc.abstractmethod
    async def list_instances(self, service: str) -> Listing: ...

    @abc.abstractmethod
    async def list_config_ips(self, service: str) -> set[str]: ...

    @abc.abstractmethod
    async def delete_config(self, service: str, ip: str) -> None:
        """Remove the per-IP config; absent is success."""

    async def lookup(self, service: str, ip: str, port: int) -> Instance | Unreadable | None:
        """The entry at ip:port as the registry has it now: the read-back after a deregistration.
        None only when nothing is listed at that address; something listed there that is not our
        JSON is `Unreadable`, never None (a listing that leaves out a zero field, a value another
        tool rewrote: still there, whatever it says). Backends that can read one key override
        this; the default reads the whole listing (`Listing.malformed` ids are addresses)."""
        listing = await self.list_instances(service)
        found = next((i for i in listing.instances if i.ip == ip and i.port == port), None)
        if found is None and f"{ip}:{port}" in listing.malformed:
            return Unreadable(f"{ip}:{port}", "not an entry of ours")
        return found

    async def delete_configs(self, service: str, ips: Sequence[str]) -> dict[str, str]:
        """Remove the per-IP configs of `ips` (absent is success); returns {ip: error} for those
        that may still be there. Backends that can batch deletes override this (etcd: bounded
        transactions); the default deletes one after another."""
        errors: dict[str, str] = {}
        for ip in ips:
            try:
                await self.delete_config(service, ip)
            except (RegistryError, ValueError) as exc:
                errors[ip] = str(exc)
        return errors

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    def describe(self) -> str:
        """Safe one-line description (no secrets)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    __str__ = __repr__

    async def __aenter__(self) -> Registry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


@dataclass(frozen=True)
class Backend:
    type: str  # spec.registry.type
    summary: str  # how the type is described in the API docs
    spec: type[Any] | None  # model of spec.registry.<type>; None: no section
    secret_keys: Mapping[str, str]  # Secret data key -> credential name for connect
    connect: Callable[[Any, dict[str, str], float], Registry]  # (section, credentials, timeout)
    # Where a section points, normalised (e.g. etcd: the endpoint set and the prefix), so that two
    # specs naming one registry the same way are one place; () for a backend with no section.
    location: Callable[[Any], tuple[Any, ...]] = lambda _section: ()

    def section(self, registry_spec: Any) -> Any:
        """This backend's section of a RegistrySpec (None when absent or not applicable)."""
        return getattr(registry_spec, self.type, None) if self.spec is not None else None

    def credentials_secret(self, registry_spec: Any) -> str | None:
        """Name of the credentials Secret the section names, if any."""
        reference = getattr(self.section(registry_spec), "credentials_secret", None)
        return reference.name if reference else None
