"""What belongs in the registry, and what a pass or a sweep changes there: pure decisions.

Registered set == sync pods that are Ready, not terminating, and Ready for registerDelaySeconds.
The per-pass plan only touches entries whose IP is held by a pod the operator knows; entries for
unknown IPs are the sweep's business, which re-reads the pods from the API before removing them.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable
from dataclasses import dataclass

from infer_operator import labels
from infer_operator.podview import PodView
from infer_operator.registry.model import Instance


def instance_for(pod: PodView, port: int) -> Instance:
    return Instance(pod=pod.name, namespace=pod.namespace, uid=pod.uid, ip=pod.ip or "", port=port,
                    role=pod.role or "", ordinal=pod.ordinal if pod.ordinal is not None else -1)


@dataclass(frozen=True)
class Desired:
    instances: dict[str, Instance]      # address -> instance
    next_due: float | None              # seconds until a warming-up pod becomes due, if any
    warming: dict[str, Instance] = dataclasses.field(default_factory=dict)  # Ready, not yet due


def desired_instances(pods: Iterable[PodView], port: int, register_delay: float,
                      now: datetime.datetime) -> Desired:
    instances: dict[str, Instance] = {}
    warming: dict[str, Instance] = {}
    next_due: float | None = None
    for pod in pods:
        if pod.deleting or not pod.ready or pod.role != labels.ROLE_SYNC or not pod.ip or pod.ordinal is None:
            continue
        if register_delay > 0:
            since = pod.ready_since or now
            wait = register_delay - (now - since).total_seconds()
            if wait > 0:
                next_due = wait if next_due is None else min(next_due, wait)
                warming[f"{pod.ip}:{port}"] = instance_for(pod, port)
                continue
        instance = instance_for(pod, port)
        instances[instance.address] = instance
    return Desired(instances, next_due, warming)


@dataclass(frozen=True)
class RegistrationPlan:
    register: tuple[Instance, ...]
    deregister: tuple[Instance, ...]


def plan_registration(desired: dict[str, Instance], listed: Iterable[Instance],
                      known_pods: Iterable[PodView], warming: dict[str, Instance] | None = None
                      ) -> RegistrationPlan:
    """Register what is missing or differs; deregister entries of known pods that are not wanted.

    An entry whose IP no known pod holds is left alone here: the pod index may lag, and only the
    sweep (with a fresh read of the pods) may call such an entry stale. An entry that is exactly a
    warming-up pod's stays: it was registered before (e.g. before an operator restart), and
    pulling it for the warm-up would be a needless blip.
    """
    warming = warming or {}
    listed = list(listed)
    listed_by_address = {i.address: i for i in listed}
    register = tuple(inst for address, inst in sorted(desired.items()) if listed_by_address.get(address) != inst)
    known_ips = {p.ip for p in known_pods if p.ip}
    deregister = tuple(inst for inst in listed if inst.address not in desired and inst.ip in known_ips
                       and warming.get(inst.address) != inst)
    return RegistrationPlan(register, deregister)


@dataclass(frozen=True)
class SweepPlan:
    stale_instances: tuple[Instance, ...] = ()
    stale_config_ips: tuple[str, ...] = ()
    skipped_reason: str | None = None  # set when nothing may be removed (live pods unknown)

    @property
    def empty(self) -> bool:
        return not self.stale_instances and not self.stale_config_ips


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
