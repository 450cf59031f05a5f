"""A service's owned objects (StatefulSet, Services, ConfigMap, PodDisruptionBudget): applied from
the spec, only where the object is ours (ownership.py), drift told from our own writes, and the
StatefulSet's update revision noted for the rollout.

State: what this process verified is ours, what the spec no longer wants, the drift marker of each
object after our last apply, the generation and Service targeting last applied, and whether an
apply is owed after a transient error.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from infer_operator import kinds
from infer_operator.api.v1alpha1 import InferenceServiceSpec
from infer_operator.backoff import Backoff
from infer_operator.builders import BuildError, Owner, build_all, unwanted
from infer_operator.clients.kube import KubeClient, KubeError
from infer_operator.ownership import OwnedObjects, not_ours
from infer_operator.reconcile.status import Problem
from infer_operator.reconcile.step import RETRY_SOON_SECONDS, PassNotes, TransientError

ObjectKey = tuple[str, str]  # (kind, name)


@dataclass
class Objects:
    kube: KubeClient
    namespace: str
    name: str
    logger: logging.Logger | logging.LoggerAdapter
    owned: OwnedObjects = field(default_factory=OwnedObjects)  # what the owned-kind watches saw
    # Objects this process has found to be ours (ownership.py), and of those the spec no longer
    # wants (removed if ours).
    verified: set[ObjectKey] = field(default_factory=set)
    unwanted: set[ObjectKey] = field(default_factory=set)
    # What our last apply produced, per owned object, to tell our own writes from drift.
    applied: dict[ObjectKey, str] = field(default_factory=dict)
    applied_generation: int | None = None
    named_target: bool | None = None  # whether the Services last applied target the named port
    pending: bool = False  # an apply failed on a transient error: apply on the next pass
    update_revision: str | None = None  # the StatefulSet's, once its controller has seen our template
    backoff: Backoff = field(default_factory=lambda: Backoff(first=RETRY_SOON_SECONDS, cap=60.0))
    release_url: str | None = None  # the operator's release endpoint as pods reach it (settings.sh)

    def is_drift(self, kind: kinds.Kind, name: str, body: Any, *, deleted: bool) -> bool:
        """Whether a watch event on an owned object shows someone else's change (or a deletion)."""
        if deleted:
            self.verified.discard((kind.kind, name))  # whatever comes next under the name is read first
            return True
        if (kind.kind, name) in self.unwanted:
            return True  # ours, but no longer asked for: the next apply removes it
        marker = self.applied.get((kind.kind, name))
        return marker is not None and marker != kind.marker(body)

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

    def due(self, *, asked: bool, resync: bool, generation: int, named_target: bool) -> bool:
        """Whether this pass applies: asked by a wake-up (drift, first pass), the resync, an apply
        owed, a new generation, or the Services' targeting changing."""
        return (
            asked
            or resync
            or self.pending
            or generation != self.applied_generation
            or named_target != self.named_target
        )

    def forget_generation(self) -> None:
        """The next pass applies the spec as it is then (reconciling resumes after a pause)."""
        self.applied_generation = None

    async def apply(
        self, owner: Owner, spec: InferenceServiceSpec, generation: int, named_target: bool, notes: PassNotes
    ) -> None:
        try:
            notes.problem = await self._apply(owner, spec, named_target)
            self.pending = False
            if notes.problem is None:
                self.applied_generation = generation
                self.named_target = named_target
                self.backoff.reset()
            elif notes.problem.reason == "ObjectNotOwned":
                # Someone else's object is in the way; no event of ours says when it goes.
                notes.retry_sooner(self.backoff.next())
        except TransientError as exc:
            self.pending = True
            self.logger.warning(f"Could not apply the owned objects of {self.name}, will retry: {exc}")
            notes.retry_sooner(RETRY_SOON_SECONDS)

    async def _apply(self, owner: Owner, spec: InferenceServiceSpec, named_target: bool) -> Problem | None:
        try:
            manifests = build_all(owner, spec, named_target=named_target, release_url=self.release_url)
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
                    bad = bad_quantities(spec) if kind == "StatefulSet" else ""
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
        return Problem(
            "ObjectNotOwned",
            f"{row.kind} {name} already exists and is not this InferenceService's: "
            f"{why}. The operator leaves it alone; delete or rename it.",
        )

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


_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")


def bad_quantities(spec: InferenceServiceSpec) -> str:
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
                        found.append(
                            f"spec.template.spec.{group}[{i}].resources.{section}.{key}: "
                            f"invalid quantity {str(value)[:40]!r}"
                        )
    return "; ".join(found)
