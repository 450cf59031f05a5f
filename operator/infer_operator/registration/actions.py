"""Multi-step registry operations over any client: confirmed deregistration, applying a sweep plan."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from infer_operator.registration.plans import SweepPlan
from infer_operator.registry.base import Registry
from infer_operator.registry.model import RegistryError, Unreadable

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
    uid: str | None = None,
    *,
    attempts: int = 5,
    backoff: float = 0.2,
    max_backoff: float = 2.0,
) -> DeregisterResult:
    """Delete ip:port, read the registry back, delete again while it is still listed.

    With `uid` (a pod's), only the entry naming that pod counts: another pod's entry at the same
    address (a reused IP) is neither deleted nor waited for.

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
            await registry.deregister(service, ip, port, uid)
            # Read back the one address (etcd: one key), not the whole listing.
            # Something listed there that is not our JSON is still there (it may be the entry,
            # as an admin controller re-serialised it): never taken as gone.
            current = await registry.lookup(service, ip, port)
            still_listed = current is not None and (isinstance(current, Unreadable) or uid in (None, current.uid))
        except RegistryError as exc:
            last_error = str(exc)
            log.info("deregister %s %s:%s attempt %d failed: %s", service, ip, port, attempt, exc)
        else:
            if not still_listed:
                return DeregisterResult(True, attempt, needed_second, last_error)
            last_error = f"{ip}:{port} still listed in {service} after delete" + (
                f" (an entry that is not ours to read: {current.reason})" if isinstance(current, Unreadable) else ""
            )
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


@dataclass
class SweepResult:
    instances_removed: int = 0
    configs_removed: int = 0
    errors: list[str] = field(default_factory=list)


async def apply_sweep(registry: Registry, service: str, plan: SweepPlan) -> SweepResult:
    """Remove what the plan says; continue past individual errors and report them."""
    result = SweepResult()
    for inst in plan.stale_instances:
        try:
            await registry.deregister(service, inst.ip, inst.port, inst.uid)
            result.instances_removed += 1
        except (RegistryError, ValueError) as exc:
            result.errors.append(f"instance {inst.address}: {exc}")
    # Batched where the backend can (etcd: bounded transactions); what failed stays for the next sweep.
    failed = await registry.delete_configs(service, plan.stale_config_ips)
    result.configs_removed += len(plan.stale_config_ips) - len(failed)
    result.errors.extend(f"config {ip}: {error}" for ip, error in failed.items())
    return result
