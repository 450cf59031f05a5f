"""What a pass writes to a service's pods: the role label (and our finalizer) on new pods,
restarts for role flips and rollouts through the Eviction API, and the pod conditions (the
registration mark, the readiness gate).

State: the role patches and condition patches sent and not yet seen in the index
(reconcile/pending.py), the pods this process evicted, and why the Eviction API refuses restarts
while it does.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from infer_operator import kinds, labels, metrics
from infer_operator.api.v1alpha1 import InferenceServiceSpec
from infer_operator.clients.kube import KubeClient, KubeError
from infer_operator.podview import PodView
from infer_operator.reconcile.pending import PendingWrites
from infer_operator.reconcile.readiness import gates_to_open, pod_conditions
from infer_operator.reconcile.roles import RestartPlan, plan_restarts, role_patch
from infer_operator.reconcile.status import now_iso
from infer_operator.reconcile.step import RETRY_SOON_SECONDS, EmitEvent, PassNotes, TransientError


@dataclass
class PodWrites:
    kube: KubeClient
    namespace: str
    name: str
    logger: logging.Logger | logging.LoggerAdapter
    emit: EmitEvent
    # Role patches and pod condition patches sent, not sent again before the index shows them.
    labelled: PendingWrites = field(default_factory=PendingWrites)
    conditioned: PendingWrites = field(default_factory=PendingWrites)
    restarting: set[str] = field(default_factory=set)  # uids this operator evicted to flip roles or roll
    restarts_blocked: str | None = None  # why the Eviction API refuses the restarts due, while it does (refusal())

    async def update(
        self, spec: InferenceServiceSpec, pods: Sequence[PodView], update_revision: str | None, notes: PassNotes
    ) -> None:
        """Label new pods, then restart what must be (role flips, and outdated pods of a rollout)."""
        try:
            await self._label_new_pods(spec, pods, notes)
            plan = await self._restart_pods(spec, pods, update_revision)
            notes.pending_flips, notes.outdated = plan.pending, len(plan.outdated)
            if self.restarts_blocked:
                notes.retry_sooner(RETRY_SOON_SECONDS)  # budgets change with pods' readiness; ask again
        except TransientError as exc:
            self.logger.warning(f"Could not update the pods of {self.name}, will retry: {exc}")
            notes.retry_sooner(RETRY_SOON_SECONDS)

    async def _label_new_pods(self, spec: InferenceServiceSpec, pods: Sequence[PodView], notes: PassNotes) -> None:
        with_finalizer = spec.registry.in_use
        patches = {
            pod.uid: (pod, patch)
            for pod in pods
            if (patch := role_patch(pod, spec, with_finalizer=with_finalizer)) is not None
        }
        self.labelled.keep({uid: patch["metadata"].keys() for uid, (_, patch) in patches.items()})
        now = time.monotonic()
        for pod, patch in patches.values():
            if self.labelled.pending(pod.uid, patch["metadata"].keys(), now):
                continue
            if self.labelled.expired(pod.uid, now):
                # Sent before, and the index never showed it: the view may be stale, and the role
                # must not be set anew from a split changed since. Only that version is patched.
                patch["metadata"]["resourceVersion"] = pod.resource_version
            try:
                await self.kube.strategic_patch(kinds.POD.api_version, kinds.POD.kind, self.namespace, pod.name, patch)
            except KubeError as exc:
                if exc.not_found or exc.conflict or (exc.status == 422 and "being deleted" in exc.message):
                    continue  # gone, or going (no finalizer is added then): the next event tells
                if exc.status == 0 or exc.status >= 500:
                    raise TransientError(f"pod {pod.name}: {exc}") from exc
                self.logger.error(f"Could not label pod {pod.name} of {self.name}: {exc}")
                continue
            self.labelled.record(pod.uid, patch["metadata"].keys(), now)
            role = patch["metadata"].get("labels", {}).get(labels.LABEL_ROLE)
            if role:
                self.logger.info(f"Pod {pod.name} of {self.name} takes the {role} role (ordinal {pod.ordinal}).")
        if (left := self.labelled.next_expiry(now)) is not None:
            notes.retry_sooner(left)  # the index may never show a write: look again when it expires

    async def _restart_pods(
        self, spec: InferenceServiceSpec, pods: Sequence[PodView], update_revision: str | None
    ) -> RestartPlan:
        """Restart pods whose role flips, and (RollingUpdate) outdated ones, within the budget."""
        # A pod evicted by an earlier pass may not show its deletionTimestamp in the index yet:
        # count it as going, so it is neither evicted twice nor leaves room for a second restart.
        self.restarting &= {pod.uid for pod in pods}
        pods = [dataclasses.replace(pod, deleting=True) if pod.uid in self.restarting else pod for pod in pods]
        plan = plan_restarts(pods, spec, update_revision)
        flipping = {pod.uid for pod in plan.flips}
        blocked: str | None = None
        for pod in plan.restart_now:
            try:
                # Eviction, not delete: a PodDisruptionBudget (the spec's, or one of the user's
                # over these pods) has its say, as it has for kubectl drain.
                await self.kube.evict(self.namespace, pod.name, uid=pod.uid)
            except KubeError as exc:
                if exc.not_found or exc.conflict:
                    continue
                if exc.status == 0:
                    raise TransientError(f"pod {pod.name}: {exc}") from exc
                # Refused: by a PodDisruptionBudget (429), or anything else the API server answers
                # (500 when two budgets cover the pod, an admission webhook's denial, ...). The
                # restart waits, and the status and an event say why, as for a budget.
                blocked = blocked or refusal(pod.name, exc)
                continue
            self.restarting.add(pod.uid)
            if pod.uid in flipping:
                metrics.ROLE_RESTARTS.inc()
                message = (
                    f"Restarting pod {pod.name} to change its role from {pod.role} to {spec.role_for(pod.ordinal)}."
                )
                reason = "RoleChange"
            else:
                metrics.ROLLOUT_RESTARTS.inc()
                message = f"Restarting pod {pod.name} to update it to the current template ({update_revision})."
                reason = "RollingUpdate"
            self.logger.info(message)
            self.emit("Normal", reason, message)
        if blocked and blocked != self.restarts_blocked:
            message = f"Restarts of pods of {self.name} wait: {blocked}"
            self.logger.info(f"{message}.")
            self.emit("Normal", "RestartBlocked", message)
        self.restarts_blocked = blocked
        return plan

    async def write_conditions(
        self, pods: Sequence[PodView], *, registry_in_use: bool, registry_service: str, notes: PassNotes
    ) -> None:
        """Mark newly registered pods (from now on their IP's per-IP config is theirs) and open the
        readiness gate of the pods whose part is done (reconcile/readiness.py), one patch per pod."""
        openings = gates_to_open(
            pods,
            registry_in_use=registry_in_use,
            registered_uids=notes.registered_uids,
            registry_service=registry_service,
        )
        writes = pod_conditions(notes.to_mark, openings, registry_service, now_iso())
        self.conditioned.keep({pod.uid: [c["type"] for c in conditions] for pod, conditions in writes.values()})
        now = time.monotonic()
        for name, (pod, conditions) in writes.items():
            types = [c["type"] for c in conditions]
            if self.conditioned.pending(pod.uid, types, now):
                continue  # written already; the pod's event has not come yet
            try:
                await self.kube.strategic_patch(
                    kinds.POD.api_version,
                    kinds.POD.kind,
                    self.namespace,
                    name,
                    {"status": {"conditions": conditions}},
                    subresource="status",
                )
            except KubeError as exc:
                if exc.not_found:
                    continue
                # Not written yet: the next pass finds the pod as it was and writes them then.
                self.logger.warning(f"Could not update the conditions of pod {name} of {self.name}: {exc}")
                notes.retry_sooner(RETRY_SOON_SECONDS)
                continue
            self.conditioned.record(pod.uid, types, now)
            if any(c["type"] == labels.CONDITION_READY for c in conditions):
                self.logger.info(
                    f"Pod {name} of {self.name} may count as Ready: its readiness gate is open "
                    f"({next(o.reason for o in openings if o.pod.name == name)})."
                )
        if (left := self.conditioned.next_expiry(now)) is not None:
            notes.retry_sooner(left)


def refusal(pod: str, error: KubeError) -> str:
    """Why the Eviction API refused to evict `pod`, as the status and the RestartBlocked event say it."""
    if error.status == 429:
        return f"a PodDisruptionBudget refuses evicting pod {pod}: {error.message}"
    return f"the Eviction API refuses evicting pod {pod} (HTTP {error.status}): {error.message}"
