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
    """The strategic merge patch that gives a new pod its role and frozen split (and our finalizer),
    or None if it has them already."""
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
        # A strategic merge patch adds to the finalizers (ObjectMeta's patch strategy for them is
        # "merge"), so no resourceVersion precondition is needed to keep a concurrent change: the
        # pod's status changes while it starts no longer make the write fail and come back.
        metadata["finalizers"] = [labels.POD_FINALIZER]
    return {"metadata": metadata}


@dataclass(frozen=True)
class RestartPlan:
    flips: tuple[PodView, ...]  # live pods whose role differs from the split in force
    outdated: tuple[PodView, ...]  # live pods of an older template revision
    restart_now: tuple[PodView, ...]  # the ones to delete in this pass (within the budget)

    @property
    def pending(self) -> int:
        return len(self.flips)


def plan_restarts(pods: Iterable[PodView], spec: InferenceServiceSpec, update_revision: str | None) -> RestartPlan:
    """Pick pods to restart, keeping at most maxUnavailable down: those whose role no longer matches
    the split, and, with a RollingUpdate strategy, those of an older template revision at or above
    the partition. Both share one budget, so a change of the split and of the template in one
    edit never has more pods down than either alone. A pod that needs both is restarted once.

    A pod counts as unavailable while it is terminating, not Ready, or missing (an ordinal below
    replicas with no pod): the budget is spent on those first, so restarts go one after another,
    highest ordinal first (as a StatefulSet rolls). `update_revision` is the StatefulSet's
    (None while unknown: no pod counts as outdated).
    """
    live = [p for p in pods if p.ordinal is not None and p.ordinal < spec.replicas]
    current = [p for p in live if not p.deleting]
    flips = [p for p in current if p.role is not None and p.role != spec.role_for(p.ordinal)]
    outdated = [p for p in current if update_revision and p.revision and p.revision != update_revision]
    partition = spec.rolling_partition
    to_roll = [p for p in outdated if partition is not None and p.ordinal >= partition]
    candidates = sorted({p.uid: p for p in flips + to_roll}.values(), key=lambda p: -p.ordinal)
    present = {p.ordinal for p in live}
    unavailable = sum(1 for p in live if p.deleting or not p.ready)
    unavailable += sum(1 for ordinal in range(spec.replicas) if ordinal not in present)
    # Restarting a pod that is not Ready costs no availability, so those never wait for budget
    # (otherwise a pod stuck loading would block the change forever).
    not_ready = [p for p in candidates if not p.ready]
    ready = [p for p in candidates if p.ready]
    budget = max(0, spec.max_unavailable - unavailable)
    return RestartPlan(
        flips=tuple(sorted(flips, key=lambda p: p.ordinal)),
        outdated=tuple(sorted(outdated, key=lambda p: p.ordinal)),
        restart_now=tuple(not_ready + ready[:budget]),
    )
