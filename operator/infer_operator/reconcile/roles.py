"""Role decisions, pure: which label a new pod gets, and which pods must restart to flip roles.

A pod's role is fixed for its lifetime: it is labelled once, when it first appears, from the split
in force at that moment, and its containers start only after that (the gate init container). To
change a pod's role the operator deletes it (through preStop and deregistration) and the
StatefulSet recreates it, to be labelled afresh.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from infer_operator import labels
from infer_operator.api.v1alpha1 import InferenceServiceSpec
from infer_operator.podview import PodView


def role_patch(pod: PodView, spec: InferenceServiceSpec, *, with_finalizer: bool) -> dict[str, Any] | None:
    """The merge patch that gives a new pod its role and frozen split, or None if it has them already."""
    if pod.ordinal is None or pod.deleting:
        return None
    needs_role = pod.role is None
    needs_finalizer = with_finalizer and labels.POD_FINALIZER not in pod.finalizers
    if not needs_role and not needs_finalizer:
        return None
    metadata: dict[str, Any] = {}
    if needs_role:
        metadata["labels"] = {labels.LABEL_ROLE: spec.role_for(pod.ordinal)}
        metadata["annotations"] = {
            labels.ANNOTATION_SYNC_REPLICAS: str(spec.effective_sync_replicas),
            labels.ANNOTATION_REPLICAS: str(spec.replicas),
        }
    if needs_finalizer:
        # A merge patch replaces the list; resourceVersion makes the write conditional so a
        # concurrent change to the finalizers is never lost.
        metadata["finalizers"] = [*pod.finalizers, labels.POD_FINALIZER]
        metadata["resourceVersion"] = pod.resource_version
    return {"metadata": metadata}


@dataclass(frozen=True)
class FlipPlan:
    mismatched: tuple[PodView, ...]   # live pods whose role differs from the current split
    restart_now: tuple[PodView, ...]  # the ones to delete in this pass (within the budget)

    @property
    def pending(self) -> int:
        return len(self.mismatched)


def plan_role_flips(pods: Iterable[PodView], spec: InferenceServiceSpec) -> FlipPlan:
    """Pick pods to restart so their role matches the split, keeping at most maxUnavailable down.

    A pod counts as unavailable while it is terminating, not Ready, or missing (an ordinal below
    replicas with no pod): the budget is spent on those first, so restarts go one after another.
    """
    live = [p for p in pods if p.ordinal is not None and p.ordinal < spec.replicas]
    mismatched = sorted(
        (p for p in live if not p.deleting and p.role is not None and p.role != spec.role_for(p.ordinal)),
        key=lambda p: p.ordinal,
    )
    present = {p.ordinal for p in live}
    unavailable = sum(1 for p in live if p.deleting or not p.ready)
    unavailable += sum(1 for ordinal in range(spec.replicas) if ordinal not in present)
    # Restarting a pod that is not Ready costs no availability, so those never wait for budget
    # (otherwise a mismatched pod stuck loading would block the flip forever).
    not_ready = [p for p in mismatched if not p.ready]
    ready = [p for p in mismatched if p.ready]
    budget = max(0, spec.max_unavailable - unavailable)
    return FlipPlan(mismatched=tuple(mismatched), restart_now=tuple(not_ready + ready[:budget]))
