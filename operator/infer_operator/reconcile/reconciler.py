"""One reconcile pass for one InferenceService: parse, what is due, audit, apply, pods, registry, status.

Every step reads the world and moves it one step toward the spec, so a pass may run twice, be
cut off at any line, or run after an operator restart, and the next pass finishes the job.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic

from infer_operator import kinds, labels, metrics
from infer_operator.api.errors import describe_validation_error
from infer_operator.api.v1alpha1 import InferenceServiceSpec, RegistrySpec, name_problems, parse_spec
from infer_operator.backoff import Backoff
from infer_operator.builders import BuildError, Owner, build_all, unwanted
from infer_operator.clients.kube import KubeClient, KubeError
from infer_operator.ownership import OwnedObjects, not_ours
from infer_operator.podview import PodView
from infer_operator.reconcile.pending import PendingWrites
from infer_operator.reconcile.readiness import gates_to_open, pod_conditions
from infer_operator.reconcile.roles import RestartPlan, plan_restarts, role_patch
from infer_operator.reconcile.schedule import Schedule
from infer_operator.reconcile.status import Outcome, Problem, compute_status, now_iso, status_changed
from infer_operator.registration.registrar import ReadFailed, Registrar, RegistryConfigError
from infer_operator.registration.releaser import PodReleaser, parse_registry
from infer_operator.registration.sharing import NO_VIEWS, Views, live_ips, read_pods
from infer_operator.registry.model import RegistryError, ServiceRef
from infer_operator.runtime import ServiceRecord

# (event type, reason, message) -> posts a Kubernetes Event on the InferenceService.
EmitEvent = Callable[[str, str, str], None]

RETRY_SOON_SECONDS = 5.0
# Status writes of one service are at least this far apart, unless the spec changed: while pods
# start or go, every pass saw new counts, and a cold start wrote ~3 statuses per pod. The last
# status is always written, when the interval has passed.
STATUS_INTERVAL_SECONDS = 2.0


class TransientError(Exception):
    """The API could not be reached or answered 5xx: try again soon, change no status."""


@dataclass
class ServiceReconciler:
    kube: KubeClient
    record: ServiceRecord
    logger: logging.Logger | logging.LoggerAdapter
    emit: EmitEvent
    releaser: PodReleaser
    schedule: Schedule = field(default_factory=Schedule)
    owned: OwnedObjects = field(default_factory=OwnedObjects)  # what the owned-kind watches saw
    # (kind, name) of owned objects this process has found to be ours (ownership.py), and of those
    # the spec no longer wants (removed if ours).
    verified: set[tuple[str, str]] = field(default_factory=set)
    unwanted: set[tuple[str, str]] = field(default_factory=set)
    restarts_blocked: str | None = None  # why the Eviction API refuses the restarts due, while it does
    # What our last apply produced, per owned object, to tell our own writes from drift.
    applied: dict[tuple[str, str], str] = field(default_factory=dict)
    applied_generation: int | None = None
    last_problem: Problem | None = None
    # When this operator first saw each pod's containers ready. API timestamps have one-second resolution;
    # counting registerDelaySeconds from the later of the two never makes the warm-up shorter.
    serving_seen: dict[str, datetime.datetime] = field(default_factory=dict)
    first_pass: bool = True
    restarting: set[str] = field(default_factory=set)  # uids this operator deleted to flip roles or roll
    # Role patches and pod condition patches sent, not sent again before the index shows them.
    labelled: PendingWrites = field(default_factory=PendingWrites)
    conditioned: PendingWrites = field(default_factory=PendingWrites)
    update_revision: str | None = None  # the StatefulSet's, once its controller has seen our template
    paused: bool = False
    ratchet_reported: int | None = None  # the generation whose ratcheted fields were reported
    status_pending: bool = False        # the last status write failed: write again soon
    status_interval: float = STATUS_INTERVAL_SECONDS
    status_written_at: float = -float("inf")  # time.monotonic() of the last status write
    status_deferred: float | None = None  # seconds until a status held back by the interval is written
    named_target: bool | None = None    # whether the Services last applied target the named port
    last_sweep_error: str | None = None
    moved_backoff: Backoff = field(default_factory=lambda: Backoff(first=RETRY_SOON_SECONDS, cap=120.0))
    ownership_backoff: Backoff = field(default_factory=lambda: Backoff(first=RETRY_SOON_SECONDS, cap=60.0))
    objects_pending: bool = False  # an apply failed on a transient error: apply on the next pass
    # Pods the index still holds that the API no longer has. kopf relists after a "410 Gone" (an
    # API server restart, a long disconnect) without dropping objects deleted in the gap, so such
    # a ghost would count as unavailable forever and stall every role flip.
    vanished: set[str] = field(default_factory=set)

    @property
    def namespace(self) -> str:
        return self.record.namespace

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def registrar(self) -> Registrar:
        return self.record.registrar

    # -- drift -------------------------------------------------------------------------------

    def is_drift(self, kind: kinds.Kind, name: str, body: Any, deleted: bool) -> bool:
        if deleted:
            self.verified.discard((kind.kind, name))  # whatever comes next under the name is read first
            return True
        if (kind.kind, name) in self.unwanted:
            return True  # ours, but no longer asked for: the next apply removes it
        marker = self.applied.get((kind.kind, name))
        return marker is not None and marker != kind.marker(body)

    # -- the pass ----------------------------------------------------------------------------

    async def run_pass(self, body: Any, pods: Sequence[PodView], apply_objects: bool,
                       views: Views = NO_VIEWS) -> float | None:
        """Reconcile once (`pods`: the index's view of the service's pods; `apply_objects`: a
        wake-up asked for the owned objects to be re-applied; `views`: the watches' view of the
        services sharing its registry). Returns the seconds until the next pass is due at the
        latest, or None when the InferenceService is gone."""
        meta = body["metadata"]
        generation = int(meta.get("generation") or 0)
        previous_status = dict(body.get("status") or {})
        owner = ServiceRef(self.namespace, self.name, meta["uid"])
        step = _Pass()

        # parse
        spec: InferenceServiceSpec | None = None
        try:
            spec = parse_spec(body.get("spec"))
        except pydantic.ValidationError as exc:
            step.problem = Problem("InvalidSpec", describe_validation_error(exc))
        if spec is not None and (bad_name := name_problems(body)):
            spec, step.problem = None, Problem("InvalidSpec", "; ".join(bad_name))
        if spec is not None:
            self._report_ratcheted(spec, generation)
        registry_in_use = spec is not None and spec.registry.in_use
        if self.paused and (meta.get("annotations") or {}).get(labels.ANNOTATION_PAUSED) != "true":
            self.paused = False
            self.logger.info(f"Reconciling {self.name} resumes.")
            self.emit("Normal", "Resumed", f"the {labels.ANNOTATION_PAUSED} annotation is gone")
        paused = (meta.get("annotations") or {}).get(labels.ANNOTATION_PAUSED) == "true"
        if paused and spec is not None:
            return await self._paused(body, spec, pods, generation, previous_status)

        # what is due, and the audit
        due = self.schedule.take(time.monotonic(), sweeps=registry_in_use)
        pods, fresh, read_error = await self._audit_pods(pods, views)

        # apply (the Services target the pods' named port once every pod has it)
        named_target = all(pod.sync_port is not None for pod in pods if not pod.deleting)
        if spec is not None and (apply_objects or due.resync or self.objects_pending
                                 or generation != self.applied_generation or named_target != self.named_target):
            await self._apply(Owner.from_body(body), spec, generation, named_target, step)

        # registry: the one in use, and those moved away from (remembered in the status)
        recorded = parse_registry(previous_status.get("registry"))
        retired = [r for r in map(parse_registry, previous_status.get("retiredRegistries") or []) if r]
        if spec is not None:
            retired = registry_moves(recorded, retired, spec.registry, self.name)
            recorded = spec.registry
        holds = await self._hold_finalizer(meta, wanted=registry_in_use or bool(retired))

        if spec is not None and step.problem is None:
            # pods
            await self._update_pods(spec, pods, step)
            # registry
            self.record.remember(spec, owner.uid)
            if registry_in_use and holds:
                await self._sync_registry(spec, pods, due.sweep, fresh, read_error, owner, views, step)
            elif registry_in_use:
                step.registry_condition = ("False", "RegistryUnreachable",
                                           f"waiting to hold {labels.CR_FINALIZER} before registering anything")
                step.retry_sooner(RETRY_SOON_SECONDS)
            else:
                step.registered = 0
            await self._write_pod_conditions(spec, pods, step)
        if retired and spec is not None:
            retired = await self._clean_moved(spec.registry, retired, owner, views, step)

        # status
        step.retry_sooner(self.schedule.next_in(time.monotonic(), sweeps=registry_in_use))
        self._report_problem(step.problem)
        outcome = Outcome(generation=generation, problem=step.problem, pending_flips=step.pending_flips,
                          outdated=step.outdated, update_revision=self.update_revision,
                          url=_url(self.namespace, self.name, spec),
                          registered=step.registered, registry_condition=step.registry_condition,
                          registry=_dump(recorded), retired_registries=[_dump(r) for r in retired],
                          restarts_blocked=self.restarts_blocked)
        desired = compute_status(self.name, spec, pods, outcome, previous_status)
        self._export(spec, desired)
        if not await self._write_status(previous_status, desired):
            return None
        if self.status_pending:
            step.retry_sooner(RETRY_SOON_SECONDS)
        step.retry_sooner(self.status_deferred)
        return step.retry

    async def _write_status(self, previous: dict[str, Any], desired: dict[str, Any]) -> bool:
        """Write the status if it changed, at most once per `status_interval` unless the spec
        changed (`status_deferred` says when a held-back write is due); False when the
        InferenceService is gone."""
        self.status_pending = False
        self.status_deferred = None
        if not status_changed(previous, desired):
            return True
        wait = self.status_written_at + self.status_interval - time.monotonic()
        if wait > 0 and previous.get("observedGeneration") == desired.get("observedGeneration"):
            self.status_deferred = wait
            return True
        try:
            await self.kube.merge_patch(labels.API_VERSION, labels.KIND, self.namespace, self.name,
                                        {"status": desired}, subresource="status")
        except KubeError as exc:
            if exc.not_found:
                return False
            self.logger.warning(f"Could not write the status of {self.name}, will retry: {exc}")
            self.status_pending = True
            return True
        self.status_written_at = time.monotonic()
        return True

    def _export(self, spec: InferenceServiceSpec | None, status: dict[str, Any]) -> None:
        """Per-service gauges, from the status just computed."""
        if spec is not None:
            metrics.SERVICE_DESIRED.labels(self.namespace, self.name).set(spec.replicas)
        metrics.SERVICE_READY.labels(self.namespace, self.name).set(status.get("readyReplicas") or 0)
        metrics.SERVICE_REGISTERED.labels(self.namespace, self.name).set(status.get("registered") or 0)

    async def _paused(self, body: Any, spec: InferenceServiceSpec, pods: Sequence[PodView], generation: int,
                      previous_status: dict[str, Any]) -> float | None:
        """The `infer-operator.io/paused` annotation: report what is there, change nothing."""
        if not self.paused:
            self.logger.info(f"Reconciling {self.name} is paused ({labels.ANNOTATION_PAUSED}).")
            self.emit("Normal", "Paused", f"reconciling is paused by the {labels.ANNOTATION_PAUSED} annotation")
        self.paused = True
        self.applied_generation = None  # resuming applies the spec as it is then
        previous = {c.get("type"): c for c in previous_status.get("conditions") or []}
        kept = previous.get("RegistrySynced")
        outcome = Outcome(generation=generation, paused=True, url=_url(self.namespace, self.name, spec),
                          registered=previous_status.get("registered"),
                          registry_condition=(kept["status"], kept["reason"], kept.get("message", "")) if kept else None,
                          registry=previous_status.get("registry"),
                          retired_registries=list(previous_status.get("retiredRegistries") or []))
        desired = compute_status(self.name, spec, pods, outcome, previous_status)
        self._export(spec, desired)
        if not await self._write_status(previous_status, desired):
            return None
        if self.status_pending:
            return RETRY_SOON_SECONDS
        return self.status_deferred if self.status_deferred is not None else self.schedule.resync_seconds

    async def _apply(self, owner: Owner, spec: InferenceServiceSpec, generation: int, named_target: bool,
                     step: _Pass) -> None:
        try:
            step.problem = await self._apply_objects(owner, spec, named_target)
            self.objects_pending = False
            if step.problem is None:
                self.applied_generation = generation
                self.named_target = named_target
                self.ownership_backoff.reset()
            elif step.problem.reason == "ObjectNotOwned":
                # Someone else's object is in the way; no event of ours says when it goes.
                step.retry_sooner(self.ownership_backoff.next())
        except TransientError as exc:
            self.objects_pending = True
            self.logger.warning(f"Could not apply the owned objects of {self.name}, will retry: {exc}")
            step.retry_sooner(RETRY_SOON_SECONDS)

    async def _update_pods(self, spec: InferenceServiceSpec, pods: Sequence[PodView], step: _Pass) -> None:
        try:
            await self._label_new_pods(spec, pods, step)
            plan = await self._restart_pods(spec, pods)
            step.pending_flips, step.outdated = plan.pending, len(plan.outdated)
            if self.restarts_blocked:
                step.retry_sooner(RETRY_SOON_SECONDS)  # budgets change with pods' readiness; ask again
        except TransientError as exc:
            self.logger.warning(f"Could not update the pods of {self.name}, will retry: {exc}")
            step.retry_sooner(RETRY_SOON_SECONDS)

    async def _apply_objects(self, owner: Owner, spec: InferenceServiceSpec, named_target: bool) -> Problem | None:
        try:
            manifests = build_all(owner, spec, named_target=named_target)
        except BuildError as exc:
            return Problem("InvalidTemplate", str(exc))
        for manifest in manifests:
            kind, name = manifest["kind"], manifest["metadata"]["name"]
            row = kinds.of(manifest["apiVersion"], kind)
            if (problem := await self._check_ours(row, name, owner)) is not None:
                return problem
            try:
                result = await self.kube.apply(manifest)
            except KubeError as exc:
                if exc.invalid or exc.status == 403:
                    reason = "InvalidPodTemplate" if kind == "StatefulSet" and exc.invalid else "ApplyFailed"
                    message = exc.message
                    bad = _bad_quantities(spec) if kind == "StatefulSet" else ""
                    if bad:
                        message = f"{bad} ({message})"
                    return Problem(reason, f"{kind} {name} was rejected: {message}")
                raise TransientError(f"{kind} {name}: {exc}") from exc
            self.verified.add((kind, name))
            self.unwanted.discard((kind, name))
            self.applied[(kind, name)] = row.marker(result)
            if row is kinds.STATEFUL_SET:
                self.observe_statefulset(result)
        for row, name in unwanted(owner, spec):
            await self._remove_unwanted(row, name, owner)
        return None

    async def _check_ours(self, row: kinds.Kind, name: str, owner: Owner) -> Problem | None:
        """Before the first write of a name: is what is there ours to write (ownership.py)?"""
        if (row.kind, name) in self.verified or self.owned.controlled_by(self.namespace, row.kind, name, owner.uid):
            return None
        try:
            existing = await self.kube.get(row.api_version, row.kind, self.namespace, name)
        except KubeError as exc:
            if exc.not_found:
                return None
            raise TransientError(f"{row.kind} {name}: {exc}") from exc
        why = not_ours(existing, self.name, owner.uid)
        if why is None:
            return None
        return Problem("ObjectNotOwned", f"{row.kind} {name} already exists and is not this InferenceService's: "
                                         f"{why}. The operator leaves it alone; delete or rename it.")

    async def _remove_unwanted(self, row: kinds.Kind, name: str, owner: Owner) -> None:
        """Delete an owned object the spec no longer asks for, if the watch saw it as ours (only
        that incarnation, by uid). One the watch has not shown yet comes back as drift."""
        self.unwanted.add((row.kind, name))
        self.applied.pop((row.kind, name), None)
        uid = self.owned.controlled_by(self.namespace, row.kind, name, owner.uid)
        if uid is None:
            return
        try:
            await self.kube.delete(row.api_version, row.kind, self.namespace, name, uid=uid)
        except KubeError as exc:
            if exc.not_found or exc.conflict:
                return
            raise TransientError(f"{row.kind} {name}: {exc}") from exc
        self.logger.info(f"Deleted {row.kind} {name} of {self.name}: the spec no longer asks for it.")

    async def _label_new_pods(self, spec: InferenceServiceSpec, pods: Sequence[PodView], step: _Pass) -> None:
        with_finalizer = spec.registry.in_use
        patches = {pod.uid: (pod, patch) for pod in pods
                   if (patch := role_patch(pod, spec, with_finalizer=with_finalizer)) is not None}
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
                await self.kube.strategic_patch(kinds.POD.api_version, kinds.POD.kind, self.namespace, pod.name,
                                                patch)
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
            step.retry_sooner(left)  # the index may never show a write: look again when it expires

    def observe_statefulset(self, body: Any) -> bool:
        """Note the StatefulSet's update revision (pods of another one are outdated). Returns
        whether it changed, i.e. whether a pass has rolling to do."""
        meta, status = (body or {}).get("metadata") or {}, (body or {}).get("status") or {}
        # Until the controller has seen the latest template, its updateRevision is the old one.
        current = meta.get("generation") is not None and status.get("observedGeneration") == meta.get("generation")
        revision = status.get("updateRevision") if current else None
        changed = revision != self.update_revision
        self.update_revision = revision
        return changed and revision is not None

    async def _restart_pods(self, spec: InferenceServiceSpec, pods: Sequence[PodView]) -> RestartPlan:
        """Restart pods whose role flips, and (RollingUpdate) outdated ones, within the budget."""
        # A pod deleted by an earlier pass may not show its deletionTimestamp in the index yet:
        # count it as going, so it is neither deleted twice nor leaves room for a second restart.
        self.restarting &= {pod.uid for pod in pods}
        pods = [dataclasses.replace(pod, deleting=True) if pod.uid in self.restarting else pod for pod in pods]
        plan = plan_restarts(pods, spec, self.update_revision)
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
                if exc.status == 429:
                    blocked = blocked or exc.message
                    continue
                raise TransientError(f"pod {pod.name}: {exc}") from exc
            self.restarting.add(pod.uid)
            if pod.uid in flipping:
                metrics.ROLE_RESTARTS.inc()
                message = f"Restarting pod {pod.name} to change its role from {pod.role} to {spec.role_for(pod.ordinal)}."
                reason = "RoleChange"
            else:
                metrics.ROLLOUT_RESTARTS.inc()
                message = f"Restarting pod {pod.name} to update it to the current template ({self.update_revision})."
                reason = "RollingUpdate"
            self.logger.info(message)
            self.emit("Normal", reason, message)
        if blocked and blocked != self.restarts_blocked:
            message = f"Restarts of pods of {self.name} wait for a PodDisruptionBudget: {blocked}"
            self.logger.info(message)
            self.emit("Normal", "RestartBlocked", message)
        self.restarts_blocked = blocked
        return plan

    async def _audit_pods(self, pods: Sequence[PodView], views: Views = NO_VIEWS
                          ) -> tuple[list[PodView], list[PodView] | None, str | None]:
        """When the schedule says (the first pass, after the pods watch listed again, and as a long
        backstop), read the service's pods from the API, drop the index's ghosts and take back pods
        that left the watch holding our finalizer. Returns the pods to act on, the fresh read (if
        one was made) and the error that prevented it. A failed read drops nothing."""
        self.vanished &= {pod.uid for pod in pods}  # kopf forgot them too
        fresh: list[PodView] | None = None
        error: str | None = None
        if self.schedule.take_audit(time.monotonic()):
            try:
                fresh = await self._read_pods()
            except KubeError as exc:
                error = str(exc)
                self.schedule.request_audit(time.monotonic(), RETRY_SOON_SECONDS)  # not the backstop's hour
            else:
                for stray in (p for p in fresh if not p.managed and labels.POD_FINALIZER in p.finalizers):
                    await self.releaser.reclaim(stray, views)
                for pod in vanished_pods(pods, fresh):
                    if pod.uid not in self.vanished:
                        self.vanished.add(pod.uid)
                        metrics.VANISHED_PODS.inc()
                        self.logger.warning(f"Pod {pod.name} ({pod.uid}) of {self.name} is gone from the API but "
                                            f"still in the watch cache (its deletion was missed); ignoring it.")
        return [pod for pod in pods if pod.uid not in self.vanished], fresh, error

    async def _read_pods(self) -> list[PodView]:
        """The service's pods as the API has them now (by the service label, not the watch's)."""
        bodies = await self.kube.list(kinds.POD.api_version, kinds.POD.kind, self.namespace,
                                      label_selector=f"{labels.LABEL_SERVICE}={self.name}")
        return [PodView.from_body(body) for body in bodies]

    async def _sync_registry(self, spec: InferenceServiceSpec, pods: Sequence[PodView], sweep_due: bool,
                             fresh: list[PodView] | None, read_error: str | None, owner: ServiceRef,
                             views: Views, step: _Pass) -> None:
        for pod in pods:  # level-triggered backstop for deletions whose event was missed
            self.releaser.handle(pod, views)
        now = datetime.datetime.now(datetime.UTC)
        result = await self.registrar.sync(spec.registry, self._with_observed_readiness(pods, now), spec.sync.port,
                                           spec.registry.register_delay_seconds, now, owner,
                                           releasing=self.releaser.releasing)
        step.to_mark, step.registered_uids = result.to_mark, result.registered_uids
        condition = result.condition
        if sweep_due:
            self.last_sweep_error = await self._sweep(spec, pods, fresh, read_error, owner, views)
            if self.last_sweep_error:
                self.logger.warning(f"Registry sweep of {self.name}: {self.last_sweep_error}")
        if condition[0] == "True" and self.last_sweep_error:
            condition = ("False", "SweepFailed", self.last_sweep_error)
        step.registered, step.registry_condition = result.registered, condition
        step.retry_sooner(result.retry_in)

    async def _sweep(self, spec: InferenceServiceSpec, pods: Sequence[PodView], fresh: list[PodView] | None,
                     read_error: str | None, owner: ServiceRef, views: Views) -> str | None:
        """Sweep the registry. What the watches show (this service's pods, its sharers') only says
        whether anything may be stale; what goes is decided on fresh reads of the API (this
        service's pods, the audit's read when this pass made one, and its sharers'), made only then."""
        others = [key for key in views.sharers(spec.registry.place(self.name)) if key != (self.namespace, self.name)]
        known = [*pods, *(pod for key in others for pod in views.pods_of(*key))]

        async def confirm() -> tuple[list[PodView], set[str]]:
            if fresh is None and read_error is not None:
                raise ReadFailed(read_error)
            try:
                own = fresh if fresh is not None else await self._read_pods()
            except KubeError as exc:
                raise ReadFailed(str(exc)) from None
            try:
                others_pods = await read_pods(self.kube, others) if others else []
            except KubeError as exc:
                raise ReadFailed(f"could not read the pods of {len(others)} service(s) sharing the registry: "
                                 f"{exc}") from None
            return own, live_ips([*own, *others_pods])

        return await self.registrar.sweep(spec.registry, [p for p in pods if p.live], live_ips(known), owner,
                                          confirm=confirm)

    async def _write_pod_conditions(self, spec: InferenceServiceSpec, pods: Sequence[PodView], step: _Pass) -> None:
        """Mark newly registered pods (from now on their IP's per-IP config is theirs) and open the
        readiness gate of the pods whose part is done (reconcile/readiness.py), one patch per pod."""
        service = self.registrar.service_of(spec.registry)
        openings = gates_to_open(pods, registry_in_use=spec.registry.in_use, registered_uids=step.registered_uids,
                                 registry_service=service)
        writes = pod_conditions(step.to_mark, openings, service, now_iso())
        self.conditioned.keep({pod.uid: [c["type"] for c in conditions] for pod, conditions in writes.values()})
        now = time.monotonic()
        for name, (pod, conditions) in writes.items():
            types = [c["type"] for c in conditions]
            if self.conditioned.pending(pod.uid, types, now):
                continue  # written already; the pod's event has not come yet
            try:
                await self.kube.strategic_patch(kinds.POD.api_version, kinds.POD.kind, self.namespace, name,
                                                {"status": {"conditions": conditions}}, subresource="status")
            except KubeError as exc:
                if exc.not_found:
                    continue
                # Not written yet: the next pass finds the pod as it was and writes them then.
                self.logger.warning(f"Could not update the conditions of pod {name} of {self.name}: {exc}")
                step.retry_sooner(RETRY_SOON_SECONDS)
                continue
            self.conditioned.record(pod.uid, types, now)
            if any(c["type"] == labels.CONDITION_READY for c in conditions):
                self.logger.info(f"Pod {name} of {self.name} may count as Ready: its readiness gate is open "
                                 f"({next(o.reason for o in openings if o.pod.name == name)}).")
        if (left := self.conditioned.next_expiry(now)) is not None:
            step.retry_sooner(left)

    async def _hold_finalizer(self, meta: Any, *, wanted: bool) -> bool:
        """Keep our finalizer on the InferenceService exactly while it has registry data to clean
        (and drop annotations of kopf's old bookkeeping). Returns whether it holds the finalizer."""
        for attempt in range(2):
            finalizers = list(meta.get("finalizers") or [])
            holds = labels.CR_FINALIZER in finalizers
            legacy = [key for key in labels.LEGACY_ANNOTATIONS if key in (meta.get("annotations") or {})]
            if meta.get("deletionTimestamp"):
                return holds  # never added while deleting; the ServiceReleaser removes it
            patch: dict[str, Any] = {}
            if wanted != holds:
                patch["finalizers"] = ([*finalizers, labels.CR_FINALIZER] if wanted
                                       else [f for f in finalizers if f != labels.CR_FINALIZER])
                patch["resourceVersion"] = meta.get("resourceVersion")
            if legacy:
                patch["annotations"] = dict.fromkeys(legacy)
            if not patch:
                return holds
            try:
                await self.kube.merge_patch(labels.API_VERSION, labels.KIND, self.namespace, self.name,
                                            {"metadata": patch})
                return wanted
            except KubeError as exc:
                if not exc.conflict:
                    self.logger.warning(f"Could not update the finalizers of {self.name}, will retry: {exc}")
                    return holds
            # Changed since this pass read it (kopf's own finalizer, a status write): read it and
            # try once more now, rather than leave registration waiting for another pass.
            if attempt == 0:
                try:
                    meta = (await self.kube.get(labels.API_VERSION, labels.KIND, self.namespace,
                                                self.name))["metadata"]
                except KubeError:
                    return holds
        return holds

    async def _clean_moved(self, current: RegistrySpec, retired: list[RegistrySpec], owner: ServiceRef,
                           views: Views, step: _Pass) -> list[RegistrySpec]:
        """Remove what this service left at registries it moved away from; returns those still to
        clean. A registry that turns out to be the one in use under another spelling (the same
        etcd cluster and prefix) has nothing to clean."""
        left: list[RegistrySpec] = []
        errors: list[str] = []
        for old in retired:
            try:
                async with self.registrar.connected(old) as registry:
                    if current.in_use and self.registrar.service_of(old) == self.registrar.service_of(current):
                        in_use = await self.registrar.client(current)
                        if await registry.identity() == await in_use.identity():
                            continue
                    others = [key for key in views.sharers(old.place(self.name)) if key != (self.namespace, self.name)]
                    others_ips = live_ips(await read_pods(self.kube, others)) if others else set()
                    await self.registrar.remove_everything(registry, old, others_ips, owner)
                self.logger.info(f"InferenceService {self.name} moved to another registry; its entries at "
                                 f"{self.registrar.service_of(old)} ({old.type}) are gone.")
            except (RegistryConfigError, RegistryError, KubeError) as exc:
                left.append(old)
                errors.append(f"{self.registrar.service_of(old)} ({old.type}): {exc}")
        if errors:
            message = "entries left at a registry this service moved away from: " + "; ".join(errors)
            step.registry_condition = ("False", "OldRegistryNotCleaned", message)
            step.retry_sooner(self.moved_backoff.next())
        else:
            self.moved_backoff.reset()
        return left

    def _with_observed_readiness(self, pods: Sequence[PodView], now: datetime.datetime) -> list[PodView]:
        # registerDelaySeconds counts from when this operator saw the containers ready (a clock it
        # trusts); on the first pass after a (re)start the API's timestamp is all there is to go on.
        default = {pod.uid: (pod.serving_since or now) if self.first_pass else now for pod in pods}
        seen = {pod.uid: self.serving_seen.get(pod.uid, default[pod.uid]) for pod in pods if pod.serving}
        self.serving_seen = seen
        self.first_pass = False
        return [dataclasses.replace(pod, serving_since=max(pod.serving_since or seen[pod.uid], seen[pod.uid]))
                if pod.serving else pod for pod in pods]

    def _report_ratcheted(self, spec: InferenceServiceSpec, generation: int) -> None:
        """A template stored before the API refused fields the operator sets: it still works (the
        operator's values win, as they did then), and is reported once per generation."""
        found = spec.reported()
        if found and self.ratchet_reported != generation:
            message = "; ".join(found) + " (the operator's values are used)"
            self.logger.warning(f"InferenceService {self.name}: {message}.")
            self.emit("Warning", "TemplateFieldsReplaced", message)
        self.ratchet_reported = generation if found else None

    def _report_problem(self, problem: Problem | None) -> None:
        if problem == self.last_problem:
            return
        if problem is not None:
            self.logger.error(f"InferenceService {self.name} is degraded: {problem.reason}: {problem.message}")
            self.emit("Warning", problem.reason, problem.message)
        elif self.last_problem is not None:
            self.logger.info(f"InferenceService {self.name} recovered from {self.last_problem.reason}.")
            self.emit("Normal", "Recovered", f"recovered from {self.last_problem.reason}")
        self.last_problem = problem


_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")


def _bad_quantities(spec: InferenceServiceSpec) -> str:
    """The API server reports an unparseable quantity as a conversion error that names no field:
    name the fields ourselves ("spec.template.spec.containers[0].resources.limits.memory: ...")."""
    template = spec.template.model_dump(by_alias=True, exclude_none=True)
    found = []
    pod = template.get("spec") or {}
    for group in ("initContainers", "containers"):
        for i, container in enumerate(pod.get(group) or []):
            for section in ("limits", "requests"):
                for key, value in ((container.get("resources") or {}).get(section) or {}).items():
                    if not _QUANTITY.match(str(value)):
                        found.append(f"spec.template.spec.{group}[{i}].resources.{section}.{key}: "
                                     f"invalid quantity {str(value)[:40]!r}")
    return "; ".join(found)


def registry_moves(recorded: RegistrySpec | None, retired: list[RegistrySpec], current: RegistrySpec,
                   name: str) -> list[RegistrySpec]:
    """The registries still to be cleaned after the spec says `current`: the one last synced
    (`recorded`, from the status) joins them when the spec moved away from it; one moved back to
    leaves them. Places compare type, location and registry service name, not credentials."""
    here = current.place(name)
    out = list(retired)
    if recorded is not None and recorded.in_use and recorded.place(name) != here:
        if all(r.place(name) != recorded.place(name) for r in out):
            out.append(recorded)
    return [r for r in out if r.place(name) != here]


def _url(namespace: str, name: str, spec: InferenceServiceSpec | None) -> str | None:
    """Where the sync role is reached inside the cluster: the ClusterIP Service `<name>`."""
    return f"http://{name}.{namespace}.svc:{spec.sync.port}" if spec is not None else None


def _dump(registry: RegistrySpec | None) -> dict[str, Any] | None:
    """A registry spec as recorded in the status (None for no registry)."""
    return registry.model_dump(by_alias=True, exclude_none=True) if registry is not None and registry.in_use else None


def vanished_pods(indexed: Sequence[PodView], fresh: Sequence[PodView]) -> list[PodView]:
    """Pods of the index that a later read of the API does not list: deleted (uids never return).

    Only sound when `indexed` was taken before the read started; a pod the read lists but the
    index lacks is merely not seen yet, and is none of this function's business.
    """
    listed = {pod.uid for pod in fresh}
    return [pod for pod in indexed if pod.uid not in listed]


@dataclass
class _Pass:
    """What one pass found along the way, for its status and its next wake-up."""

    problem: Problem | None = None
    pending_flips: int = 0
    outdated: int = 0
    registered: int | None = None
    registry_condition: tuple[str, str, str] | None = None
    to_mark: tuple[PodView, ...] = ()          # pods registered for the first time (the registration mark)
    registered_uids: frozenset[str] = frozenset()  # pods listed in the registry by this pass
    retry: float | None = None  # seconds until the next pass at the latest

    def retry_sooner(self, seconds: float | None) -> None:
        if seconds is not None and (self.retry is None or seconds < self.retry):
            self.retry = seconds
