"""What belongs in the registry, and what a pass or a sweep changes there: pure decisions.

Registered set == sync pods whose containers are ready (the app answers its readiness probe), not
terminating, and so for registerDelaySeconds. The pod's own Ready condition waits for the
registration (the readiness gate, labels.CONDITION_READY), so it cannot be the test here.
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
from infer_operator.registry.model import Instance, ServiceRef, is_ip


def instance_for(pod: PodView, port: int, owner: ServiceRef | None) -> Instance:
    return Instance(
        pod=pod.name,
        namespace=pod.namespace,
        uid=pod.uid,
        ip=pod.ip or "",
        port=port,
        role=pod.role or "",
        ordinal=pod.ordinal if pod.ordinal is not None else -1,
        owner=owner,
    )


def owns(owner: ServiceRef, instance: Instance) -> bool:
    """Whether `owner` wrote this entry: it names the owner's uid. An entry written before entries
    named their owner is adopted when its pod is one of the owner's, by namespace and name."""
    if instance.owner is not None:
        return instance.owner.uid == owner.uid
    return (
        instance.namespace == owner.namespace
        and instance.pod.startswith(f"{owner.name}-")
        and instance.pod[len(owner.name) + 1 :].isdigit()
    )


@dataclass(frozen=True)
class Desired:
    instances: dict[str, Instance]  # address -> instance
    next_due: float | None  # seconds until a warming-up pod becomes due, if any
    warming: dict[str, Instance] = dataclasses.field(default_factory=dict)  # Ready, not yet due


def desired_instances(
    pods: Iterable[PodView], port: int, register_delay: float, now: datetime.datetime, owner: ServiceRef | None = None
) -> Desired:
    """The instances of the due, serving sync pods. Each is registered at the port it was started
    with (its named container port), `port` (spec.sync.port) for pods made before ports were named."""
    instances: dict[str, Instance] = {}
    warming: dict[str, Instance] = {}
    next_due: float | None = None
    for pod in pods:
        if pod.deleting or not pod.serving or pod.role != labels.ROLE_SYNC or not pod.ip or pod.ordinal is None:
            continue
        if register_delay > 0:
            since = pod.serving_since or now
            wait = register_delay - (now - since).total_seconds()
            if wait > 0:
                next_due = wait if next_due is None else min(next_due, wait)
                warming[f"{pod.ip}:{pod.sync_port or port}"] = instance_for(pod, pod.sync_port or port, owner)
                continue
        instance = instance_for(pod, pod.sync_port or port, owner)
        instances[instance.address] = instance
    return Desired(instances, next_due, warming)


@dataclass(frozen=True)
class RegistrationPlan:
    claim: tuple[Instance, ...]  # new holders of their IP: the IP's older per-IP config goes first
    register: tuple[Instance, ...]  # written again (missing after a deregistration, or differing)
    deregister: tuple[Instance, ...]  # our entries of known pods (or at their IPs) not wanted now


def plan_registration(
    desired: dict[str, Instance],
    listed: Iterable[Instance],
    known_pods: Iterable[PodView],
    warming: dict[str, Instance] | None = None,
    owner: ServiceRef | None = None,
) -> RegistrationPlan:
    """Register what is missing or differs; deregister our entries of known pods that are not wanted.

    A pod registered for the first time claims its IP: a per-IP config written
    before then belongs to a previous holder. A pod is new when it carries no registration mark
    and no listed entry names it (an entry of an earlier operator run is adopted instead).
    Entries of other owners are never removed here, and an entry whose IP no known pod holds is
    left alone: the pod index may lag, and only the sweep (with a fresh read of the pods) may
    call such an entry stale. An entry that is exactly a warming-up pod's stays: it was registered
    before (e.g. before an operator restart), and pulling it for the warm-up would be a needless blip.
    """
    warming = warming or {}
    listed = list(listed)
    known = list(known_pods)
    listed_by_address = {i.address: i for i in listed}
    listed_uids = {i.uid for i in listed}
    marked = {p.uid for p in known if p.registered}
    claim, register = [], []
    for address, inst in sorted(desired.items()):
        if listed_by_address.get(address) == inst:
            continue
        (register if inst.uid in marked or inst.uid in listed_uids else claim).append(inst)
    known_ips = {p.ip for p in known if p.ip}
    deregister = tuple(
        inst
        for inst in listed
        if (owner is None or owns(owner, inst))
        and inst.address not in desired
        and inst.ip in known_ips
        and warming.get(inst.address) != inst
    )
    return RegistrationPlan(tuple(claim), tuple(register), deregister)


@dataclass(frozen=True)
class SweepPlan:
    stale_instances: tuple[Instance, ...] = ()
    stale_config_ips: tuple[str, ...] = ()
    skipped_reason: str | None = None  # set when nothing may be removed (live pods unknown)

    @property
    def empty(self) -> bool:
        return not self.stale_instances and not self.stale_config_ips


def plan_sweep(
    instances: Iterable[Instance],
    config_ips: Iterable[str],
    live_uids: set[str] | None,
    live_ips: set[str] | None,
    owner: ServiceRef | None = None,
) -> SweepPlan:
    """What a sweep removes, from a fresh read of the pods. None for either set (the pods could
    not be read) -> an empty plan: when in doubt, keep.

    - an instance entry goes when it is ours (`owns`) and names no live pod of ours (`live_uids`),
      also when its IP has a new holder: the entry belongs to the pod it names;
    - a per-IP config goes when its key is an IP (other keys belong to other tools), no live pod
      of any InferenceService sharing the registry service holds it (`live_ips`), and no entry of
      another owner sits at that IP (whoever wrote it may have live pods we cannot see).
    With `owner` None every entry counts as ours (a tool's view of one service).
    """
    if live_uids is None or live_ips is None:
        return SweepPlan(skipped_reason="live pods unknown; keeping everything")
    instances = list(instances)
    ours = [i for i in instances if owner is None or owns(owner, i)]
    foreign_ips = {i.ip for i in instances if owner is not None and not owns(owner, i)}
    stale_inst = sorted({i for i in ours if i.uid not in live_uids}, key=lambda i: (i.ip, i.port, i.pod))
    stale_cfg = sorted({ip for ip in config_ips if is_ip(ip) and ip not in live_ips and ip not in foreign_ips})
    return SweepPlan(tuple(stale_inst), tuple(stale_cfg))
