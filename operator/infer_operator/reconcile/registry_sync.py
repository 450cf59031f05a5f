"""A service's side of the registry, as a pass keeps it: our finalizer on the InferenceService while
it has registry data to clean, the registered set made to match the pods, the periodic sweep, and
the registries it moved away from cleaned.

State: when this operator first saw each pod's containers ready (the warm-up's clock), the last
sweep's error, and the backoff for a registry moved away from that cannot be cleaned yet.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from infer_operator import labels, metrics
from infer_operator.api.v1alpha1 import InferenceServiceSpec, RegistrySpec
from infer_operator.backoff import Backoff
from infer_operator.clients.events import reference
from infer_operator.clients.kube import KubeClient, KubeError
from infer_operator.notes import Condition
from infer_operator.podview import PodView
from infer_operator.reconcile.audit import read_service_pods
from infer_operator.reconcile.step import RETRY_SOON_SECONDS, PassNotes
from infer_operator.records import ServiceRecord
from infer_operator.registration.registrar import ReadFailed, Registrar, RegistryConfigError
from infer_operator.registration.releaser import PodReleaser, PostEvent, retire, retired_at
from infer_operator.registration.sharing import Views, live_ips, read_pods
from infer_operator.registry.model import RegistryError, ServiceRef


@dataclass
class RegistrySync:
    kube: KubeClient
    record: ServiceRecord
    logger: logging.Logger | logging.LoggerAdapter
    releaser: PodReleaser
    post: PostEvent | None = None  # posts events about the pods
    # When this operator first saw each pod's containers ready: the warm-up's clock.
    serving_seen: dict[str, datetime.datetime] = field(default_factory=dict)
    last_sweep_error: str | None = None
    moved_backoff: Backoff = field(default_factory=lambda: Backoff(first=RETRY_SOON_SECONDS, cap=120.0))
    # A place moved away from that cannot be cleaned is given up this long after the move
    # (--cleanup-timeout): it may be gone for good (an old address of the etcd in use, a
    # decommissioned admin controller), and "not cleaned" must not be reported for ever.
    give_up_after: float = 300.0

    @property
    def namespace(self) -> str:
        return self.record.namespace

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def registrar(self) -> Registrar:
        return self.record.registrar

    def service_of(self, registry: RegistrySpec) -> str:
        return self.registrar.service_of(registry)

    async def hold_finalizer(self, meta: Any, *, wanted: bool) -> bool:
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
                patch["finalizers"] = (
                    [*finalizers, labels.CR_FINALIZER]
                    if wanted
                    else [f for f in finalizers if f != labels.CR_FINALIZER]
                )
                patch["resourceVersion"] = meta.get("resourceVersion")
            if legacy:
                patch["annotations"] = dict.fromkeys(legacy)
            if not patch:
                return holds
            try:
                await self.kube.merge_patch(
                    labels.API_VERSION, labels.KIND, self.namespace, self.name, {"metadata": patch}
                )
                return wanted
            except KubeError as exc:
                if not exc.conflict:
                    self.logger.warning(f"Could not update the finalizers of {self.name}, will retry: {exc}")
                    return holds
            # Changed since this pass read it (kopf's own finalizer, a status write): read it and
            # try once more now, rather than leave registration waiting for another pass.
            if attempt == 0:
                try:
                    meta = (await self.kube.get(labels.API_VERSION, labels.KIND, self.namespace, self.name))["metadata"]
                except KubeError:
                    return holds
        return holds

    async def sync(
        self,
        spec: InferenceServiceSpec,
        pods: Sequence[PodView],
        *,
        holds: bool,
        sweep_due: bool,
        fresh: list[PodView] | None,
        read_error: str | None,
        owner: ServiceRef,
        views: Views,
        notes: PassNotes,
    ) -> None:
        """Make the registry list the pods that should be listed (and sweep, when due); `holds`:
        our finalizer is on the InferenceService (nothing is registered before it is)."""
        self.record.remember(spec, owner.uid)
        if not spec.registry.in_use:
            notes.registered = 0
            return
        if not holds:
            notes.registry_condition = Condition(
                False, "RegistryUnreachable", f"waiting to hold {labels.CR_FINALIZER} before registering anything"
            )
            notes.retry_sooner(RETRY_SOON_SECONDS)
            return
        for pod in pods:  # level-triggered backstop for deletions whose event was missed
            self.releaser.handle(pod, views)
        now = datetime.datetime.now(datetime.UTC)
        result = await self.registrar.sync(
            spec.registry,
            self._with_observed_readiness(pods, now),
            spec.sync.port,
            spec.registry.register_delay_seconds,
            now,
            owner,
            releasing=self.releaser.releasing,
            node=views.node,
            warmup=spec.registry.warmup_seconds,
        )
        for instance, why in result.deregistered if self.post is not None else ():
            # A pod that stopped being able to serve leaves at once, and says why.
            self.post(
                reference("v1", "Pod", instance.namespace, instance.pod, instance.uid),
                "Warning" if why.reason == "NodeLost" else "Normal",
                why.reason,
                f"Pod {instance.pod} left the registry ({instance.address} in {self.service_of(spec.registry)}): "
                f"{why.message}",
            )
        notes.to_mark, notes.registered_uids = result.to_mark, result.registered_uids
        condition = result.condition
        if sweep_due:
            self.last_sweep_error = await self._sweep(spec, pods, fresh, read_error, owner, views)
            if self.last_sweep_error:
                self.logger.warning(f"Registry sweep of {self.name}: {self.last_sweep_error}")
        if condition.ok and self.last_sweep_error:
            condition = Condition(False, "SweepFailed", self.last_sweep_error)
        notes.registered, notes.registry_condition = result.registered, condition
        notes.retry_sooner(result.retry_in)

    async def _sweep(
        self,
        spec: InferenceServiceSpec,
        pods: Sequence[PodView],
        fresh: list[PodView] | None,
        read_error: str | None,
        owner: ServiceRef,
        views: Views,
    ) -> str | None:
        """Sweep the registry. What the watches show (this service's pods, its sharers') only says
        whether anything may be stale; what goes is decided on fresh reads of the API (this
        service's pods, the audit's read when this pass made one, and its sharers'), made only then."""
        others = [key for key in views.sharers(spec.registry.place(self.name)) if key != (self.namespace, self.name)]
        known = [*pods, *(pod for key in others for pod in views.pods_of(*key))]

        async def confirm() -> tuple[list[PodView], set[str]]:
            if fresh is None and read_error is not None:
                raise ReadFailed(read_error)
            try:
                own = fresh if fresh is not None else await read_service_pods(self.kube, self.namespace, self.name)
            except KubeError as exc:
                raise ReadFailed(str(exc)) from None
            try:
                others_pods = await read_pods(self.kube, others) if others else []
            except KubeError as exc:
                raise ReadFailed(
                    f"could not read the pods of {len(others)} service(s) sharing the registry: {exc}"
                ) from None
            return own, live_ips([*own, *others_pods])

        return await self.registrar.sweep(
            spec.registry, [p for p in pods if p.live], live_ips(known), owner, confirm=confirm
        )

    async def clean_moved(
        self, current: RegistrySpec, retired: list[RegistrySpec], owner: ServiceRef, views: Views, notes: PassNotes
    ) -> list[RegistrySpec]:
        """Remove what this service left at registries it moved away from; returns those still to
        clean. A registry that turns out to be the one in use under another spelling (the same
        etcd cluster and prefix) has nothing to clean."""
        left: list[RegistrySpec] = []
        errors: list[str] = []
        now = datetime.datetime.now(datetime.UTC)
        for old in retired:
            try:
                async with self.registrar.connected(old) as registry:
                    if current.in_use and self.service_of(old) == self.service_of(current):
                        in_use = await self.registrar.client(current)
                        if await registry.identity() == await in_use.identity():
                            continue
                    others = [key for key in views.sharers(old.place(self.name)) if key != (self.namespace, self.name)]
                    others_ips = live_ips(await read_pods(self.kube, others)) if others else set()
                    await self.registrar.remove_everything(registry, old, others_ips, owner)
                self.logger.info(
                    f"InferenceService {self.name} moved to another registry; its entries at "
                    f"{self.service_of(old)} ({old.type}) are gone."
                )
            except (RegistryConfigError, RegistryError, KubeError) as exc:
                since = retired_at(old) or now
                if (now - since).total_seconds() < self.give_up_after:
                    left.append(old)
                    errors.append(f"{self.service_of(old)} ({old.type}): {exc}")
                    continue
                message = (
                    f"gave up cleaning {self.service_of(old)} ({old.type}), moved away from "
                    f"{(now - since).total_seconds():.0f}s ago: {exc}; entries and per-IP configs of "
                    f"{self.name} may remain there"
                )
                self.logger.warning(f"InferenceService {self.name}: {message}.")
                metrics.INCOMPLETE_CLEANUPS.labels(labels.KIND, "RegistryCleanupAbandoned").inc()
                if self.post is not None:
                    involved = reference(labels.API_VERSION, labels.KIND, self.namespace, self.name, owner.uid)
                    self.post(involved, "Warning", "RegistryCleanupAbandoned", message)
        if errors:
            message = "entries left at a registry this service moved away from: " + "; ".join(errors)
            notes.registry_condition = Condition(False, "OldRegistryNotCleaned", message)
            notes.retry_sooner(self.moved_backoff.next())
        else:
            self.moved_backoff.reset()
        return left

    def _with_observed_readiness(self, pods: Sequence[PodView], now: datetime.datetime) -> list[PodView]:
        """The pods with `serving_since` as this operator's clock saw it: when it first saw their
        containers ready. The kubelet's `lastTransitionTime` is another machine's clock (a node an
        hour ahead once kept a Ready pod out of the registry for that hour), so it is not used;
        after an operator restart the warm-up of pods not registered yet starts again (registered
        ones stay listed: plans.plan_registration)."""
        seen = {pod.uid: self.serving_seen.get(pod.uid, now) for pod in pods if pod.serving}
        self.serving_seen = seen
        return [dataclasses.replace(pod, serving_since=seen[pod.uid]) if pod.serving else pod for pod in pods]


def registry_moves(
    recorded: RegistrySpec | None, retired: list[RegistrySpec], current: RegistrySpec, name: str
) -> list[RegistrySpec]:
    """The registries still to be cleaned after the spec says `current`: the one last synced
    (`recorded`, from the status) joins them when the spec moved away from it; one moved back to
    leaves them. Places compare type, location and registry service name, not credentials. Each
    carries when it was moved away from (`retiredAt`), so the give-up bound survives restarts."""
    here = current.place(name)
    now = datetime.datetime.now(datetime.UTC)
    out = [retire(r, now) for r in retired]  # recorded by a version that kept no time: from now
    if recorded is not None and recorded.in_use and recorded.place(name) != here:
        if all(r.place(name) != recorded.place(name) for r in out):
            out.append(retire(recorded, now))
    return [r for r in out if r.place(name) != here]


def dump_registry(registry: RegistrySpec | None) -> dict[str, Any] | None:
    """A registry spec as recorded in the status (None for no registry)."""
    return registry.model_dump(by_alias=True, exclude_none=True) if registry is not None and registry.in_use else None
