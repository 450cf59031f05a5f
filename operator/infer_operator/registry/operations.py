"""Higher-level registry logic: confirmed deregistration and the stale-entry sweep."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from .base import Instance, Registry, RegistryError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeregisterResult:
    confirmed: bool  # the read-back no longer lists ip:port
    attempts: int  # delete+read-back rounds used
    needed_second_confirmation: bool  # a read-back found it still listed after a successful delete
    last_error: str | None = None  # last RegistryError message (or "still listed ...")


async def deregister_confirmed(
    registry: Registry,
    service: str,
    ip: str,
    port: int,
    *,
    attempts: int = 5,
    backoff: float = 0.2,
    max_backoff: float = 2.0,
) -> DeregisterResult:
    """Delete ip:port, read the registry back, delete again while it is still listed.

    Each round = delete + list. After a read-back that still shows the entry, the next delete is
    issued at once the first time ("delete directly again"), later rounds wait with exponential
    backoff (``backoff`` doubling up to ``max_backoff``), as do rounds after an error.
    Never raises RegistryError; ValueError (bad service/ip/port) is raised before any request.
    Wrap the call in ``asyncio.timeout`` for an overall deadline.
    """
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    needed_second = False
    last_error: str | None = None
    delay = backoff
    for attempt in range(1, attempts + 1):
        still_listed = False
        try:
            await registry.deregister(service, ip, port)
            listing = await registry.list_instances(service)
            still_listed = any(i.ip == ip and i.port == port for i in listing.instances)
        except RegistryError as exc:
            last_error = str(exc)
            log.info("deregister %s %s:%s attempt %d failed: %s", service, ip, port, attempt, exc)
        else:
            if not still_listed:
                return DeregisterResult(True, attempt, needed_second, last_error)
            last_error = f"{ip}:{port} still listed in {service} after delete"
            log.info("deregister %s %s:%s: still listed after delete (attempt %d)", service, ip, port, attempt)
        if attempt == attempts:
            break
        if still_listed and not needed_second:
            needed_second = True
            continue  # second confirmation failed: delete directly again, right away
        needed_second = needed_second or still_listed
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_backoff)
    return DeregisterResult(False, attempts, needed_second, last_error)


@dataclass(frozen=True)
class SweepPlan:
    stale_instances: tuple[Instance, ...] = ()
    stale_config_ips: tuple[str, ...] = ()
    skipped_reason: str | None = None  # set when nothing may be removed (live pods unknown)

    @property
    def empty(self) -> bool:
        return not self.stale_instances and not self.stale_config_ips


@dataclass
class SweepResult:
    instances_removed: int = 0
    configs_removed: int = 0
    errors: list[str] = field(default_factory=list)


def plan_sweep(
    instances: Iterable[Instance], config_ips: Iterable[str], live_ips: set[str] | None
) -> SweepPlan:
    """Entries whose IP no live pod holds. ``live_ips=None`` (pods unreadable) -> empty plan.

    An IP reused by a live pod is not stale, whatever pod the entry names. An empty set of live IPs
    means "the service has no pods": everything is stale.
    """
    if live_ips is None:
        return SweepPlan(skipped_reason="live pod IPs unknown; keeping everything")
    live = set(live_ips)
    stale_inst = sorted({i for i in instances if i.ip not in live}, key=lambda i: (i.ip, i.port, i.pod))
    stale_cfg = sorted({ip for ip in config_ips if ip not in live})
    return SweepPlan(tuple(stale_inst), tuple(stale_cfg))


async def apply_sweep(registry: Registry, service: str, plan: SweepPlan) -> SweepResult:
    """Remove what the plan says; continue past individual errors and report them."""
    result = SweepResult()
    for inst in plan.stale_instances:
        try:
            await registry.deregister(service, inst.ip, inst.port)
            result.instances_removed += 1
        except (RegistryError, ValueError) as exc:
            result.errors.append(f"instance {inst.address}: {exc}")
    for ip in plan.stale_config_ips:
        try:
            await registry.delete_config(service, ip)
            result.configs_removed += 1
        except (RegistryError, ValueError) as exc:
            result.errors.append(f"config {ip}: {exc}")
    return result
