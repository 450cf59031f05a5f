"""One reconcile pass for one InferenceService: parse -> build -> apply -> pods -> status.

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

from infer_operator import labels, metrics
from infer_operator.api.errors import describe_validation_error
from infer_operator.api.v1alpha1 import InferenceServiceSpec, parse_spec
from infer_operator.builders import BuildError, Owner, build_all
from infer_operator.clients.kube import KubeClient, KubeError
from infer_operator.podview import PodView
from infer_operator.registrar import Registrar
from infer_operator.releaser import PodReleaser
from infer_operator.roles import plan_role_flips, role_patch
from infer_operator.status import Outcome, Problem, compute_status, status_changed

# (event type, reason, message) -> posts a Kubernetes Event on the InferenceService.
EmitEvent = Callable[[str, str, str], None]

RETRY_SOON_SECONDS = 5.0


class TransientError(Exception):
    """The API could not be reached or answered 5xx: try again soon, change no status."""


@dataclass
class ServiceReconciler:
    kube: KubeClient
    namespace: str
    name: str
    logger: logging.Logger | logging.LoggerAdapter
    emit: EmitEvent
    registrar: Registrar
    releaser: PodReleaser
    sweep_seconds: float = 60.0
    resync_seconds: float = 60.0  # re-apply the owned objects at least this often (drift backstop)
    audit_seconds: float = 60.0   # read the pods from the API at least this often (ghost check)
    # What our last apply produced, per owned object, to tell our own writes from drift.
    applied: dict[tuple[str, str], str] = field(default_factory=dict)
    applied_generation: int | None = None
    last_problem: Problem | None = None
    # When this operator first saw each pod Ready. API timestamps have one-second resolution;
    # counting registerDelaySeconds from the later of the two never makes the warm-up shorter.
    ready_seen: dict[str, datetime.datetime] = field(default_factory=dict)
    first_pass: bool = True
    restarting: set[str] = field(default_factory=set)  # uids this operator deleted to flip roles
    # The periodic work is timed here, not by the loop's wake-ups: a wake-up for one due task
    # (a sweep, a warm-up ending) must not redo the others. The first pass applies and sweeps
    # anyway; the first audit waits, as kopf's index was just listed and has no ghosts yet.
    last_resync: float = field(default_factory=time.monotonic)
    last_read: float = field(default_factory=time.monotonic)  # audit or sweep
    last_sweep: float = 0.0
    last_sweep_error: str | None = None
    objects_pending: bool = False  # an apply failed on a transient error: apply on the next pass
    # Pods the index still holds that the API no longer has. kopf relists after a "410 Gone" (an
    # API server restart, a long disconnect) without dropping objects deleted in the gap, so such
    # a ghost would count as unavailable forever and stall every role flip.
    vanished: set[str] = field(default_factory=set)

    # -- drift -------------------------------------------------------------------------------

    def is_drift(self, kind: str, name: str, body: Any, deleted: bool) -> bool:
        if deleted:
            return True
        marker = self.applied.get((kind, name))
        return marker is not None and marker != _marker(kind, body)

    # -- the pass ----------------------------------------------------------------------------

    async def run_pass(self, body: Any, pods: Sequence[PodView], apply_objects: bool) -> float | None:
        """Reconcile once. Returns the seconds until the next pass is due at the latest."""
        meta = body["metadata"]
        generation = int(meta.get("generation") or 0)
        previous_status = dict(body.get("status") or {})
        retry: float | None = None
        problem: Problem | None = None
        spec: InferenceServiceSpec | None = None
        pending_flips = 0
        registered: int | None = None
        registry_condition: tuple[str, str, str] | None = None
        try:
            spec = parse_spec(body.get("spec"))
        except pydantic.ValidationError as exc:
            problem = Problem("InvalidSpec", describe_validation_error(exc))

        now = time.monotonic()
        resync_due = _due(now, self.last_resync, self.resync_seconds)
        if resync_due:
            self.last_resync = now
        registry_in_use = spec is not None and spec.registry.type != "none"
        sweep_due = registry_in_use and _due(now, self.last_sweep, self.sweep_seconds)
        if sweep_due:
            self.last_sweep = now
        pods, fresh, read_error = await self._audit_pods(pods, now, force=sweep_due)

        if spec is not None and (apply_objects or resync_due or self.objects_pending
                                 or generation != self.applied_generation):
            try:
                problem = await self._apply_objects(Owner.from_body(body), spec)
                self.objects_pending = False
                if problem is None:
                    self.applied_generation = generation
            except TransientError as exc:
                self.objects_pending = True
                self.logger.warning(f"Could not apply the owned objects of {self.name}, will retry: {exc}")
                retry = RETRY_SOON_SECONDS

        if spec is not None and problem is None:
            try:
                await self._label_new_pods(spec, pods)
                pending_flips = await self._flip_roles(spec, pods)
            except TransientError as exc:
                self.logger.warning(f"Could not update the pods of {self.name}, will retry: {exc}")
                retry = RETRY_SOON_SECONDS
            if registry_in_use:
                registered, registry_condition, registry_retry = await self._sync_registry(
                    spec, pods, sweep_due, fresh, read_error)
                retry = _sooner(retry, registry_retry)
            else:
                # Forget the previous registry: pods that still carry the finalizer are released
                # at once instead of waiting on a registry the service no longer uses.
                self.releaser.remember(self.namespace, self.name, spec.registry, spec.sync.port)
                registered = 0

        periodic = [self.last_resync + self.resync_seconds, self.last_read + self.audit_seconds]
        if registry_in_use:
            periodic.append(self.last_sweep + self.sweep_seconds)
        retry = _sooner(retry, max(0.0, min(periodic) - time.monotonic()))
        self._report_problem(problem)
        outcome = Outcome(generation=generation, problem=problem, pending_flips=pending_flips,
                          registered=registered, registry_condition=registry_condition)
        desired = compute_status(self.name, spec, pods, outcome, previous_status)
        if status_changed(previous_status, desired):
            try:
                await self.kube.merge_patch(labels.API_VERSION, labels.KIND, self.namespace, self.name,
                                            {"status": desired}, subresource="status")
            except KubeError as exc:
                if exc.not_found:
                    return None
                self.logger.warning(f"Could not write the status of {self.name}, will retry: {exc}")
                retry = RETRY_SOON_SECONDS
        return retry

    async def _apply_objects(self, owner: Owner, spec: InferenceServiceSpec) -> Problem | None:
        try:
            manifests = build_all(owner, spec)
        except BuildError as exc:
            return Problem("InvalidTemplate", str(exc))
        for manifest in manifests:
            kind, name = manifest["kind"], manifest["metadata"]["name"]
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
            self.applied[(kind, name)] = _marker(kind, result)
        return None

    async def _label_new_pods(self, spec: InferenceServiceSpec, pods: Sequence[PodView]) -> None:
        with_finalizer = spec.registry.type != "none"
        for pod in pods:
            patch = role_patch(pod, spec, with_finalizer=with_finalizer)
            if patch is None:
                continue
            try:
                await self.kube.merge_patch("v1", "Pod", self.namespace, pod.name, patch)
            except KubeError as exc:
                if exc.not_found or exc.conflict:
                    continue  # gone, or changed under us: the next event brings the new version
                if exc.status == 0 or exc.status >= 500:
                    raise TransientError(f"pod {pod.name}: {exc}") from exc
                self.logger.error(f"Could not label pod {pod.name} of {self.name}: {exc}")
                continue
            role = patch["metadata"].get("labels", {}).get(labels.LABEL_ROLE)
            if role:
                self.logger.info(f"Pod {pod.name} of {self.name} takes the {role} role (ordinal {pod.ordinal}).")

    async def _flip_roles(self, spec: InferenceServiceSpec, pods: Sequence[PodView]) -> int:
        # A pod deleted by an earlier pass may not show its deletionTimestamp in the index yet:
        # count it as going, so it is neither deleted twice nor leaves room for a second restart.
        self.restarting &= {pod.uid for pod in pods}
        pods = [dataclasses.replace(pod, deleting=True) if pod.uid in self.restarting else pod for pod in pods]
        plan = plan_role_flips(pods, spec)
        for pod in plan.restart_now:
            target = spec.role_for(pod.ordinal)
            try:
                await self.kube.delete("v1", "Pod", self.namespace, pod.name, uid=pod.uid)
            except KubeError as exc:
                if exc.not_found or exc.conflict:
                    continue
                raise TransientError(f"pod {pod.name}: {exc}") from exc
            self.restarting.add(pod.uid)
            metrics.ROLE_RESTARTS.inc()
            message = f"Restarting pod {pod.name} to change its role from {pod.role} to {target}."
            self.logger.info(message)
            self.emit("Normal", "RoleChange", message)
        return plan.pending

    async def _audit_pods(self, pods: Sequence[PodView], now: float, *, force: bool
                          ) -> tuple[list[PodView], list[PodView] | None, str | None]:
        """Every `audit_seconds` (and for each sweep), read the service's pods from the API and drop
        the index's ghosts. Returns the pods to act on, the fresh read (if one was made) and the
        error that prevented it. A failed read drops nothing."""
        self.vanished &= {pod.uid for pod in pods}  # kopf forgot them too
        fresh: list[PodView] | None = None
        error: str | None = None
        if force or _due(now, self.last_read, self.audit_seconds):
            self.last_read = now
            try:
                bodies = await self.kube.list("v1", "Pod", self.namespace,
                                              label_selector=f"{labels.LABEL_SERVICE}={self.name}")
            except KubeError as exc:
                error = str(exc)
            else:
                fresh = [PodView.from_body(body) for body in bodies]
                for pod in vanished_pods(pods, fresh):
                    if pod.uid not in self.vanished:
                        self.vanished.add(pod.uid)
                        metrics.VANISHED_PODS.inc()
                        self.logger.warning(f"Pod {pod.name} ({pod.uid}) of {self.name} is gone from the API but "
                                            f"still in the watch cache (its deletion was missed); ignoring it.")
        return [pod for pod in pods if pod.uid not in self.vanished], fresh, error

    async def _sync_registry(self, spec: InferenceServiceSpec, pods: Sequence[PodView], sweep_due: bool,
                             fresh: list[PodView] | None, read_error: str | None
                             ) -> tuple[int, tuple[str, str, str], float | None]:
        self.releaser.remember(self.namespace, self.name, spec.registry, spec.sync.port)
        for pod in pods:  # level-triggered backstop for deletions whose event was missed
            self.releaser.handle(pod, lambda: pods)
        now = datetime.datetime.now(datetime.UTC)
        result = await self.registrar.sync(spec.registry, self._with_observed_readiness(pods, now), spec.sync.port,
                                           spec.registry.register_delay_seconds, now)
        condition = result.condition
        if sweep_due:
            if fresh is None:
                self.last_sweep_error = f"sweep skipped: {read_error}"
            else:
                self.last_sweep_error = await self.registrar.sweep(spec.registry, fresh)
            if self.last_sweep_error:
                self.logger.warning(f"Registry sweep of {self.name}: {self.last_sweep_error}")
        if condition[0] == "True" and self.last_sweep_error:
            condition = ("False", "SweepFailed", self.last_sweep_error)
        return result.registered, condition, result.retry_in

    def _with_observed_readiness(self, pods: Sequence[PodView], now: datetime.datetime) -> list[PodView]:
        # On the first pass after a (re)start the API's timestamp is all there is to go on.
        default = {pod.uid: (pod.ready_since or now) if self.first_pass else now for pod in pods}
        seen = {pod.uid: self.ready_seen.get(pod.uid, default[pod.uid]) for pod in pods if pod.ready}
        self.ready_seen = seen
        self.first_pass = False
        return [dataclasses.replace(pod, ready_since=max(pod.ready_since or seen[pod.uid], seen[pod.uid]))
                if pod.ready else pod for pod in pods]

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


def vanished_pods(indexed: Sequence[PodView], fresh: Sequence[PodView]) -> list[PodView]:
    """Pods of the index that a later read of the API does not list: deleted (uids never return).

    Only sound when `indexed` was taken before the read started; a pod the read lists but the
    index lacks is merely not seen yet, and is none of this function's business.
    """
    listed = {pod.uid for pod in fresh}
    return [pod for pod in indexed if pod.uid not in listed]


# Periodic tasks whose time comes within this much of a pass run in it: the resync, the audit and
# the sweep share one wake-up instead of each waking the loop a few milliseconds apart.
DUE_SLACK_SECONDS = 1.0


def _due(now: float, last: float, interval: float) -> bool:
    return now >= last + interval - DUE_SLACK_SECONDS


def _sooner(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def _marker(kind: str, body: Any) -> str:
    meta = (body or {}).get("metadata") or {}
    # StatefulSet status updates don't bump generation; only spec edits (ours or someone's) do.
    if kind == "StatefulSet":
        return str(meta.get("generation", ""))
    return str(meta.get("resourceVersion", ""))
