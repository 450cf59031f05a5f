"""One reconcile pass for one InferenceService, composed of its parts: parse, what is due, audit,
apply, pods, registry, status.

Each part keeps its own state and is asked by the pass alone:

| part | module | keeps |
|---|---|---|
| `schedule` | schedule.py | when the resync, the audit and the sweep are due |
| `audit` | audit.py | the pods found gone from the API but still in the index |
| `objects` | objects.py | what is ours, what we applied (drift), the StatefulSet's update revision |
| `pods` | podwrites.py | pod writes sent and not seen yet, pods evicted, why restarts are refused |
| `registry` | registry_sync.py | the warm-up's clock, the last sweep's error, the backoff for moved registries |
| `status` | status_writer.py | when the status was written, the problem last reported |

Every step reads the world and moves it one step toward the spec, so a pass may run twice, be
cut off at any line, or run after an operator restart, and the next pass finishes the job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import pydantic

from infer_operator import kinds, labels
from infer_operator.api.errors import describe_validation_error
from infer_operator.api.v1alpha1 import InferenceServiceSpec, name_problems, parse_spec
from infer_operator.builders import Owner
from infer_operator.clients.kube import KubeClient
from infer_operator.ownership import OwnedObjects
from infer_operator.podview import PodView
from infer_operator.reconcile.audit import PodAudit
from infer_operator.reconcile.objects import Objects
from infer_operator.reconcile.podwrites import PodWrites
from infer_operator.reconcile.registry_sync import RegistrySync, dump_registry, registry_moves
from infer_operator.reconcile.schedule import Schedule
from infer_operator.reconcile.status import Outcome, Problem, compute_status
from infer_operator.reconcile.status_writer import STATUS_INTERVAL_SECONDS, StatusWriter
from infer_operator.reconcile.step import RETRY_SOON_SECONDS, EmitEvent, PassNotes
from infer_operator.records import ServiceRecord
from infer_operator.registration.releaser import PodReleaser, PostEvent, parse_registry, parse_retired
from infer_operator.registration.sharing import NO_VIEWS, Views
from infer_operator.registry.model import ServiceRef

__all__ = ["RETRY_SOON_SECONDS", "ServiceReconciler"]


class ServiceReconciler:
    """The reconcile loop's pass for one InferenceService (`record`), composed of its parts."""

    def __init__(
        self,
        kube: KubeClient,
        record: ServiceRecord,
        logger: logging.Logger | logging.LoggerAdapter,
        emit: EmitEvent,
        *,
        releaser: PodReleaser,
        schedule: Schedule | None = None,
        owned: OwnedObjects | None = None,
        status_interval: float = STATUS_INTERVAL_SECONDS,
        post_event: PostEvent | None = None,
        release_url: str | None = None,
        cleanup_timeout: float = 300.0,
    ):
        self.record = record
        self.logger = logger
        self.emit = emit
        namespace, name = record.namespace, record.name
        self.schedule = schedule or Schedule()
        self.audit = PodAudit(kube, namespace, name, logger, releaser)
        self.objects = Objects(
            kube, namespace, name, logger, owned=owned if owned is not None else OwnedObjects(), release_url=release_url
        )
        self.pods = PodWrites(kube, namespace, name, logger, emit)
        self.registry = RegistrySync(kube, record, logger, releaser, post_event, give_up_after=cleanup_timeout)
        self.status = StatusWriter(kube, namespace, name, logger, emit, interval=status_interval)
        self.paused = False
        self.ratchet_reported: int | None = None  # the generation whose ratcheted fields were reported
        self.last_spec: InferenceServiceSpec | None = None  # the last valid spec: the registry's upkeep goes by it

    @property
    def namespace(self) -> str:
        return self.record.namespace

    @property
    def name(self) -> str:
        return self.record.name

    # -- what the rest of the operator asks of a running loop (records.ServiceLoop) --------------

    def is_drift(self, kind: kinds.Kind, name: str, body: Any, *, deleted: bool) -> bool:
        return self.objects.is_drift(kind, name, body, deleted=deleted)

    def observe_statefulset(self, body: Any) -> bool:
        return self.objects.observe_statefulset(body)

    def request_audit(self, now: float, delay: float = 0.0) -> None:
        self.schedule.request_audit(now, delay)

    # -- the pass ----------------------------------------------------------------------------

    async def run_pass(
        self, body: Any, pods: Sequence[PodView], apply_objects: bool, views: Views = NO_VIEWS
    ) -> float | None:
        """Reconcile once (`pods`: the index's view of the service's pods; `apply_objects`: a
        wake-up asked for the owned objects to be re-applied; `views`: the watches' view of the
        services sharing its registry, and of the nodes). Returns the seconds until the next pass
        is due at the latest, or None when the InferenceService is gone.

        The registry's upkeep (registering the pods that can serve, deregistering those that
        cannot, the sweep) goes on whatever else fails: an apply refused, an invalid spec (it then
        goes by the last valid one), a paused service. Pausing stops the workload's changes only
        (applies, role labels, restarts)."""
        meta = body["metadata"]
        generation = int(meta.get("generation") or 0)
        previous_status = dict(body.get("status") or {})
        owner = ServiceRef(self.namespace, self.name, meta["uid"])
        notes = PassNotes()

        # parse
        spec: InferenceServiceSpec | None = None
        try:
            spec = parse_spec(body.get("spec"))
        except pydantic.ValidationError as exc:
            notes.problem = Problem("InvalidSpec", describe_validation_error(exc))
        if spec is not None and (bad_name := name_problems(body)):
            spec, notes.problem = None, Problem("InvalidSpec", "; ".join(bad_name))
        if spec is not None:
            self._report_ratcheted(spec, generation)
            self.last_spec = spec
        upkeep = self.last_spec  # what the registry's upkeep goes by: the spec, else the last valid one
        registry_in_use = upkeep is not None and upkeep.registry.in_use
        paused = self._paused((meta.get("annotations") or {}).get(labels.ANNOTATION_PAUSED) == "true")
        changes = spec is not None and not paused  # the workload is changed only by a valid, unpaused spec

        # what is due, and the audit
        due = self.schedule.take(time.monotonic(), sweeps=registry_in_use)
        audit = await self.audit.run(pods, views, read=self.schedule.take_audit(time.monotonic()))
        if audit.error is not None:
            self.schedule.request_audit(time.monotonic(), RETRY_SOON_SECONDS)  # not the backstop's hour
        pods = audit.pods

        # apply (the Services target the pods' named port once every pod has it)
        named_target = all(pod.sync_port is not None for pod in pods if not pod.deleting)
        if changes and self.objects.due(
            asked=apply_objects, resync=due.resync, generation=generation, named_target=named_target
        ):
            await self.objects.apply(Owner.from_body(body), spec, generation, named_target, notes)

        # registry: the one in use, and those moved away from (remembered in the status)
        recorded = parse_registry(previous_status.get("registry"))
        retired = [r for r in map(parse_retired, previous_status.get("retiredRegistries") or []) if r]
        if upkeep is not None:
            retired = registry_moves(recorded, retired, upkeep.registry, self.name)
            recorded = upkeep.registry
        # Without a valid spec seen yet (an operator restarted on an invalid one), the registry the
        # status records is still to be cleaned some day: the finalizer stays.
        unknown_in_use = upkeep is None and recorded is not None and recorded.in_use
        holds = await self.registry.hold_finalizer(meta, wanted=registry_in_use or bool(retired) or unknown_in_use)

        # pods, then the registry's upkeep
        if changes:
            await self.pods.update(spec, pods, self.objects.update_revision, notes)
        if upkeep is not None:
            await self.registry.sync(
                upkeep,
                pods,
                holds=holds,
                sweep_due=due.sweep,
                fresh=audit.fresh,
                read_error=audit.error,
                owner=owner,
                views=views,
                notes=notes,
            )
            await self.pods.write_conditions(
                pods,
                registry_in_use=registry_in_use,
                registry_service=self.registry.service_of(upkeep.registry),
                notes=notes,
            )
        if retired and upkeep is not None:
            retired = await self.registry.clean_moved(upkeep.registry, retired, owner, views, notes)

        # status
        notes.retry_sooner(self.schedule.next_in(time.monotonic(), sweeps=registry_in_use))
        self.status.report_problem(notes.problem)
        outcome = Outcome(
            generation=generation,
            problem=notes.problem,
            pending_flips=notes.pending_flips,
            outdated=notes.outdated,
            update_revision=self.objects.update_revision,
            paused=paused,
            url=_url(self.namespace, self.name, spec),
            registered=notes.registered,
            registry_condition=notes.registry_condition,
            registry=dump_registry(recorded),
            retired_registries=[dump_registry(r) for r in retired],
            restarts_blocked=self.pods.restarts_blocked,
        )
        desired = compute_status(self.name, spec, pods, outcome, previous_status)
        if not await self.status.write(previous_status, desired, spec):
            return None
        notes.retry_sooner(self.status.retry_in)
        return notes.retry

    def _paused(self, annotated: bool) -> bool:
        """Follow the `infer-operator.io/paused` annotation: an event and a line when it comes and
        goes; a resumed service applies its spec as it is then."""
        if annotated and not self.paused:
            self.logger.info(
                f"Reconciling {self.name} is paused ({labels.ANNOTATION_PAUSED}); its registry is still kept."
            )
            self.emit("Normal", "Paused", f"reconciling is paused by the {labels.ANNOTATION_PAUSED} annotation")
            self.objects.forget_generation()
        elif not annotated and self.paused:
            self.logger.info(f"Reconciling {self.name} resumes.")
            self.emit("Normal", "Resumed", f"the {labels.ANNOTATION_PAUSED} annotation is gone")
        self.paused = annotated
        return annotated

    def _report_ratcheted(self, spec: InferenceServiceSpec, generation: int) -> None:
        """A template stored before the API refused fields the operator sets: it still works (the
        operator's values win, as they did then), and is reported once per generation."""
        found = spec.reported()
        if found and self.ratchet_reported != generation:
            message = "; ".join(found) + " (the operator's values are used)"
            self.logger.warning(f"InferenceService {self.name}: {message}.")
            self.emit("Warning", "TemplateFieldsReplaced", message)
        self.ratchet_reported = generation if found else None


def _url(namespace: str, name: str, spec: InferenceServiceSpec | None) -> str | None:
    """Where the sync role is reached inside the cluster: the ClusterIP Service `<name>`."""
    return f"http://{name}.{namespace}.svc:{spec.sync.port}" if spec is not None else None
