"""Status, pure: counts and conditions from the pods and the last reconcile's outcome.

Conditions carry observedGeneration; lastTransitionTime moves only when a condition's status
flips, so an unchanged world produces an identical status and no write.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from infer_operator import labels
from infer_operator.api.v1alpha1 import InferenceServiceSpec
from infer_operator.notes import Condition
from infer_operator.podview import PodView


@dataclass(frozen=True)
class Problem:
    """Why the operator could not do its job: becomes a Degraded condition and an event."""

    reason: str
    message: str


@dataclass(frozen=True)
class Outcome:
    """What the reconcile pass found beyond the pods."""

    generation: int
    problem: Problem | None = None
    pending_flips: int = 0
    outdated: int = 0  # live pods of an older template revision
    update_revision: str | None = None
    registered: int | None = None
    registry_condition: Condition | None = None  # RegistrySynced
    paused: bool = False  # the infer-operator.io/paused annotation: nothing was changed
    url: str | None = None  # where the sync role is reached inside the cluster
    registry: dict[str, Any] | None = None  # the registry in use, as spec.registry says it
    retired_registries: list[dict[str, Any]] = field(default_factory=list)  # moved away from, not yet clean
    restarts_blocked: str | None = None  # why the Eviction API refused the restarts due (a budget, a webhook, ...)


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(type_: str, ok: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def _keep_transition_times(new: list[dict[str, Any]], old: list[dict[str, Any]] | None, now: str) -> None:
    previous = {c.get("type"): c for c in old or []}
    for condition in new:
        before = previous.get(condition["type"])
        if before is not None and before.get("status") == condition["status"] and before.get("lastTransitionTime"):
            condition["lastTransitionTime"] = before["lastTransitionTime"]
        else:
            condition["lastTransitionTime"] = now


def compute_status(
    name: str,
    spec: InferenceServiceSpec | None,
    pods: Iterable[PodView],
    outcome: Outcome,
    previous: dict[str, Any] | None,
    now: str | None = None,
) -> dict[str, Any]:
    now = now or now_iso()
    gen = outcome.generation
    live = [p for p in pods if not p.deleting]
    ready = [p for p in live if p.ready]
    sync_ready = sum(1 for p in ready if p.role == labels.ROLE_SYNC)
    async_ready = sum(1 for p in ready if p.role == labels.ROLE_ASYNC)
    status: dict[str, Any] = {
        "observedGeneration": gen,
        "replicas": len(live),
        "readyReplicas": len(ready),
        "updatedReplicas": (
            sum(1 for p in live if p.revision == outcome.update_revision) if outcome.update_revision else None
        ),
        "syncReady": sync_ready,
        "asyncReady": async_ready,
        "selector": labels.selector_string(labels.selector_labels(name)),
    }
    if outcome.registered is not None:
        status["registered"] = outcome.registered
    status["url"] = outcome.url
    # None removes the field from the stored status (merge patch): no registry, nothing retired.
    status["registry"] = outcome.registry
    status["retiredRegistries"] = outcome.retired_registries or None

    conditions: list[dict[str, Any]] = []
    if spec is None or outcome.problem is not None:
        problem = outcome.problem or Problem("InvalidSpec", "the spec could not be parsed")
        if spec is not None:
            status["syncReplicas"] = spec.effective_sync_replicas
        conditions += [
            _condition("Ready", False, problem.reason, problem.message, gen),
            _condition("Progressing", False, problem.reason, "waiting for the spec to be fixed", gen),
            _condition("Degraded", True, problem.reason, problem.message, gen),
        ]
    else:
        want_sync = spec.effective_sync_replicas
        want_async = spec.replicas - want_sync
        status["syncReplicas"] = want_sync
        settled = (
            len(live) == spec.replicas
            and sync_ready == want_sync
            and async_ready == want_async
            and outcome.pending_flips == 0
            and all(p.ordinal is not None and p.ordinal < spec.replicas for p in live)
        )
        if outcome.paused:
            ready_msg = f"{sync_ready}/{want_sync} sync and {async_ready}/{want_async} async pods are Ready"
            conditions.append(
                _condition("Ready", settled, "AllReplicasReady" if settled else "PodsNotReady", ready_msg, gen)
            )
            conditions.append(
                _condition(
                    "Progressing",
                    False,
                    "Paused",
                    f"reconciling is paused by the {labels.ANNOTATION_PAUSED} annotation",
                    gen,
                )
            )
        elif settled:
            ready_msg = f"{sync_ready}/{want_sync} sync and {async_ready}/{want_async} async pods are Ready"
            conditions.append(_condition("Ready", True, "AllReplicasReady", ready_msg, gen))
            conditions.append(_progress_of_rollout(spec, live, outcome, gen))
        else:
            if outcome.pending_flips:
                reason = "ChangingSplit"
                message = f"{outcome.pending_flips} pod(s) restarting to change role"
            elif outcome.outdated and spec.rolling_partition is not None:
                reason = "RollingUpdate"
                message = f"{outcome.outdated} of {len(live)} pod(s) run an older template"
            elif len(live) != spec.replicas:
                reason = "Scaling"
                message = f"{len(live)} of {spec.replicas} pods exist"
            else:
                reason = "PodsNotReady"
                message = f"{sync_ready}/{want_sync} sync and {async_ready}/{want_async} async pods are Ready"
            if outcome.outdated and spec.rolling_partition is None:
                message += f"; {on_delete_phrase(outcome.outdated, len(live))}"
            if outcome.restarts_blocked and (outcome.pending_flips or outcome.outdated):
                message += f"; restarts wait: {outcome.restarts_blocked}"
            conditions.append(_condition("Ready", False, reason, message, gen))
            conditions.append(_condition("Progressing", True, reason, message, gen))
        conditions.append(_condition("Degraded", False, "AsExpected", "", gen))
    if (synced := outcome.registry_condition) is not None:
        conditions.append(_condition("RegistrySynced", synced.ok, synced.reason, synced.message, gen))
    _keep_transition_times(conditions, (previous or {}).get("conditions"), now)
    status["conditions"] = conditions
    return status


def _progress_of_rollout(spec: InferenceServiceSpec, live: list[PodView], outcome: Outcome, gen: int) -> dict[str, Any]:
    """Progressing for a service whose pods are all there and Ready: settled, rolling, or waiting
    for someone to delete outdated pods (OnDelete, or below the partition)."""
    if not outcome.outdated:
        return _condition("Progressing", False, "Settled", "nothing to roll out", gen)
    short = [
        p
        for p in live
        if p.grace_seconds is not None
        and p.role == labels.ROLE_SYNC
        and p.grace_seconds <= spec.lifecycle.drain_seconds
    ]
    note = (
        f"; {len(short)} of them have a grace period not longer than drainSeconds "
        f"({spec.lifecycle.drain_seconds} s): their drain is cut to fit it until they are restarted"
        if short
        else ""
    )
    partition = spec.rolling_partition
    if partition is None:
        # The change is not carried out until someone deletes the pods: it is under way, waiting
        # on them, not settled (the reason names the strategy that waits).
        message = on_delete_phrase(outcome.outdated, len(live)) + note
        return _condition("Progressing", True, "OnDelete", message, gen)
    rolling = [
        p for p in live if p.ordinal is not None and p.ordinal >= partition and p.revision != outcome.update_revision
    ]
    if rolling:
        if outcome.restarts_blocked:
            note += f"; restarts wait: {outcome.restarts_blocked}"
        return _condition("Progressing", True, "RollingUpdate", f"{outdated_phrase(outcome.outdated)}{note}", gen)
    return _condition(
        "Progressing",
        False,
        "PodsOutdated",
        f"{outdated_phrase(outcome.outdated)}, below updateStrategy.rollingUpdate.partition ({partition}){note}",
        gen,
    )


def outdated_phrase(count: int) -> str:
    return f"{count} pod(s) run an older template"


def on_delete_phrase(outdated: int, pods: int) -> str:
    return (
        f"{outdated} of {pods} pod(s) run an older template; updateStrategy is OnDelete: deleting them "
        f"applies the change"
    )


def status_changed(current: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    current = current or {}
    return any(current.get(key) != value for key, value in desired.items())
