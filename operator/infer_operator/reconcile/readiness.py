"""The operator's readiness gate, pure: which pods' gates open now, and the pod conditions it writes.

Every pod carries the readiness gate `infer-operator.io/ready` (labels.CONDITION_READY); the kubelet
counts the pod Ready only when its containers are ready AND that condition is True. The operator
sets it once its own part is done, and never unsets it:

- a sync pod, once it is registered (its entry is in the registry) -- so a rolling update or a role
  flip, which waits for each new pod to be Ready, waits for its registration, and the Service sends
  it nothing before registry consumers see it;
- a sync pod when the service uses no registry, and an async pod, as soon as its containers are
  ready: nothing of theirs is published.

A pod whose containers later fail their probe stops being Ready by the kubelet's own rule; the
registrar deregisters it meanwhile, and registers it again when it answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from dataclasses import dataclass
from typing import Any

from infer_operator import labels
from infer_operator.podview import MARK_AT, PodView


@dataclass(frozen=True)
class Opening:
    pod: PodView
    reason: str  # Registered | NoRegistry | AsyncRole
    message: str


def gates_to_open(
    pods: Iterable[PodView], *, registry_in_use: bool, registered_uids: Set[str], registry_service: str
) -> list[Opening]:
    """The pods whose gate opens in this pass: live, containers ready, role known, gate still
    closed, and (sync pods with a registry) listed in the registry by this pass."""
    openings: list[Opening] = []
    for pod in pods:
        if pod.gate_open or pod.deleting or not pod.serving or pod.role is None:
            continue
        if pod.role == labels.ROLE_ASYNC:
            openings.append(
                Opening(pod, "AsyncRole", "async pods take their work from the queue; the registry does not list them")
            )
        elif not registry_in_use:
            openings.append(Opening(pod, "NoRegistry", "the service publishes no instances (spec.registry.type none)"))
        elif pod.uid in registered_uids:
            openings.append(Opening(pod, "Registered", f"registered as an instance of {registry_service}"))
    return openings


def condition(kind: str, reason: str, message: str, now: str) -> dict[str, Any]:
    """A pod condition the operator writes (status True), e.g. the gate or the registration mark."""
    return {"type": kind, "status": "True", "reason": reason, "message": message, "lastTransitionTime": now}


def pod_conditions(
    marks: Iterable[PodView], openings: Iterable[Opening], registry_service: str, now: str
) -> dict[str, tuple[PodView, list[dict[str, Any]]]]:
    """Conditions to write, per pod name: the registration mark and the gate go in one patch. The
    mark names the IP the pod was registered at (`PodView.registered_ip` reads it back): a pod
    registered at a new IP claims it again."""
    out: dict[str, tuple[PodView, list[dict[str, Any]]]] = {}
    for pod in marks:
        out.setdefault(pod.name, (pod, []))[1].append(
            condition(
                labels.CONDITION_REGISTERED,
                "Registered",
                f"registered as an instance of {registry_service}{MARK_AT}{pod.ip}",
                now,
            )
        )
    for opening in openings:
        out.setdefault(opening.pod.name, (opening.pod, []))[1].append(
            condition(labels.CONDITION_READY, opening.reason, opening.message, now)
        )
    return out
