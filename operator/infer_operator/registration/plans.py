"""What belongs in the registry, and what a pass or a sweep changes there: pure decisions.

Registered set == sync pods that can serve (registration/serving.py: not terminating, containers
ready, the user's readiness gates True, node not lost, at their current IP), and so for
registerDelaySeconds as the operator's clock counts it; then, for warmupSeconds, it asks for a
growing share of the traffic (`warmup_weight`). The per-pass plan touches entries whose IP
is held by a pod the operator knows, and entries naming one of its pods at another address (the
pod's IP changed); entries for unknown IPs are the sweep's business, which re-reads the pods from
the API before removing them.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from infer_operator.podview import PodView
from infer_operator.registration.serving import NodeLookup, Verdict, can_serve, no_nodes
from infer_operator.registry.model import FULL_WEIGHT, Instance, ServiceRef, is_ip

# The warm-up's weight changes in this many steps: each one re-writes the pod's entry, so a pod is
# written WARMUP_STEPS + 1 times over its warm-up (its registration, three raises, full weight).
WARMUP_STEPS = 4


def warmup_weight(elapsed: float, warmup: float) -> tuple[int, float | None]:
    """(the weight of an instance registered `elapsed` seconds ago, seconds until it changes;
    None once it is FULL_WEIGHT). Each of the WARMUP_STEPS equal parts of the warm-up carries the
    linear ramp's mean over that part (12, 38, 62, 88 of 100 for four), so the traffic an instance
    takes over its warm-up is the linear ramp's, with a bounded number of writes."""
    if warmup <= 0 or elapsed >= warmup:
        return FULL_WEIGHT, None
    step = min(WARMUP_STEPS - 1, max(0, int(elapsed * WARMUP_STEPS / warmup)))
    weight = max(1, round(FULL_WEIGHT * (2 * step + 1) / (2 * WARMUP_STEPS)))
    return weight, (step + 1) * warmup / WARMUP_STEPS - elapsed


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
    warming: dict[str, Instance] = dataclasses.field(default_factory=dict)  # can serve, not yet due
    refused: dict[str, Verdict] = dataclasses.field(default_factory=dict)  # uid -> why a sync pod cannot serve


def desired_instances(
    pods: Iterable[PodView],
    port: int,
    register_delay: float,
    now: datetime.datetime,
    owner: ServiceRef | None = None,
    node: NodeLookup = no_nodes,
    warmup: float = 0.0,
) -> Desired:
    """The instances of the sync pods that can serve (registration/serving.py) and are due. Each
    is registered at the port it was started with (its named container port), `port`
    (spec.sync.port) for pods made before ports were named. `node` looks a node up by name. A pod
    due less than `warmup` seconds ago carries a warm-up weight (`warmup_weight`), and `next_due`
    covers its next step."""
    instances: dict[str, Instance] = {}
    warming: dict[str, Instance] = {}
    refused: dict[str, Verdict] = {}
    next_due: float | None = None
    for pod in pods:
        verdict = can_serve(pod, node)
        if not verdict.ok:
            if verdict.reason != "NotSync":
                refused[pod.uid] = verdict
            continue
        since = pod.serving_since or now
        wait = register_delay - (now - since).total_seconds()
        if register_delay > 0 and wait > 0:
            next_due = wait if next_due is None else min(next_due, wait)
            warming[f"{pod.ip}:{pod.sync_port or port}"] = instance_for(pod, pod.sync_port or port, owner)
            continue
        weight, step_in = warmup_weight(-wait, warmup)
        if step_in is not None:
            next_due = step_in if next_due is None else min(next_due, step_in)
        instance = dataclasses.replace(instance_for(pod, pod.sync_port or port, owner), weight=weight)
        instances[instance.address] = instance
    return Desired(instances, next_due, warming, refused)


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

    A pod registered at an IP for the first time claims it: a per-IP config written before then
    belongs to a previous holder. A pod is new at its IP when its registration mark names another
    IP or none and no listed entry names it at that IP (an entry of an earlier operator run is
    adopted instead); so a pod whose IP changed claims the new one. Entries of other owners are
    never removed here. Ours go when they name a known pod at an address it is not wanted at (it
    cannot serve, or its IP changed), or sit at a known pod's IP unwanted; an entry whose IP no
    known pod holds and that names no known pod is left alone: the pod index may lag, and only the
    sweep (with a fresh read of the pods) may call such an entry stale. An entry that is exactly a
    warming-up pod's stays: it was registered before (e.g. before an operator restart), and
    pulling it for the warm-up would be a needless blip. For the same reason a listed entry's
    weight is never lowered: after an operator restart the warm-up's clock starts again, and a
    warm pod keeps its full share (a pod mid-ramp goes on from where it was).
    """
    warming = warming or {}
    listed = list(listed)
    known = list(known_pods)
    listed_by_address = {i.address: i for i in listed}
    listed_at = {(i.uid, i.ip) for i in listed}
    marked_at = {(p.uid, p.registered_ip or p.ip) for p in known if p.registered}
    claim, register = [], []
    for address, inst in sorted(desired.items()):
        listed_inst = listed_by_address.get(address)
        if listed_inst is not None and inst.same_entry(listed_inst) and listed_inst.weight > inst.weight:
            inst = dataclasses.replace(inst, weight=listed_inst.weight)
        if listed_inst == inst:
            continue
        held = (inst.uid, inst.ip) in marked_at or (inst.uid, inst.ip) in listed_at
        (register if held else claim).append(inst)
    known_ips = {p.ip for p in known if p.ip}
    known_uids = {p.uid for p in known}
    deregister = tuple(
        inst
        for inst in listed
        if (owner is None or owns(owner, inst))
        and inst.address not in desired
        and (inst.ip in known_ips or inst.uid in known_uids)
        and not inst.same_entry(warming.get(inst.address))
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
    live_pods: Mapping[str, str | None] | None,
    live_ips: set[str] | None,
    owner: ServiceRef | None = None,
) -> SweepPlan:
    """What a sweep removes, from a fresh read of the pods. None for either set (the pods could
    not be read) -> an empty plan: when in doubt, keep.

    - an instance entry goes when it is ours (`owns`) and names no live pod of ours (`live_pods`:
      uid -> its current IP), also when its IP has a new holder: the entry belongs to the pod it
      names; and when the pod it names holds another IP now (its sandbox was re-created);
    - a per-IP config goes when its key is an IP (other keys belong to other tools), no live pod
      of any InferenceService sharing the registry service holds it (`live_ips`), and no entry of
      another owner sits at that IP (whoever wrote it may have live pods we cannot see).
    With `owner` None every entry counts as ours (a tool's view of one service).
    """
    if live_pods is None or live_ips is None:
        return SweepPlan(skipped_reason="live pods unknown; keeping everything")
    instances = list(instances)
    ours = [i for i in instances if owner is None or owns(owner, i)]
    foreign_ips = {i.ip for i in instances if owner is not None and not owns(owner, i)}
    stale_inst = sorted(
        {i for i in ours if i.uid not in live_pods or live_pods[i.uid] not in (None, i.ip)},
        key=lambda i: (i.ip, i.port, i.pod),
    )
    stale_cfg = sorted({ip for ip in config_ips if is_ip(ip) and ip not in live_ips and ip not in foreign_ips})
    return SweepPlan(tuple(stale_inst), tuple(stale_cfg))
