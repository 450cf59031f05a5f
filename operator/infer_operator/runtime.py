"""Process-wide state of a running operator: its options, the API client, and one record per
InferenceService (its wake-up, its reconciler, its registrar, the registry settings it last
synced with), in the spirit of kopf's own per-object memory.

Handlers stay thin by reaching for these; tests and the CLI set the options before start-up.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from infer_operator.clients.kube import KubeClient
from infer_operator.ownership import OwnedObjects
from infer_operator.registry.model import ServiceRef

if TYPE_CHECKING:
    from infer_operator.api.v1alpha1 import InferenceServiceSpec, RegistrySpec
    from infer_operator.reconcile.reconciler import ServiceReconciler
    from infer_operator.registration.registrar import Registrar
    from infer_operator.registration.releaser import PodReleaser, ServiceReleaser
    from infer_operator.registration.sharing import Views


@dataclass
class Options:
    namespaces: list[str] = field(default_factory=list)  # empty: all namespaces
    resync_seconds: float = 3600.0   # reconcile/schedule.py says why these defaults
    audit_seconds: float = 3600.0
    sweep_seconds: float = 60.0
    registry_timeout_seconds: float = 5.0
    deregister_timeout_seconds: float = 30.0
    cleanup_timeout_seconds: float = 300.0
    kubeconfig: str | None = None
    metrics_port: int | None = None


@dataclass
class Wakeup:
    """Coalesces bursts of events into one reconcile pass; says what needs another look."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    objects: bool = True  # re-apply owned objects (spec changed, drift, first pass)

    def poke(self, *, objects: bool = False) -> None:
        self.objects = self.objects or objects
        self.event.set()

    def take(self) -> bool:
        """Clear the wake-up and say whether owned objects must be re-applied."""
        objects, self.objects = self.objects, False
        self.event.clear()
        return objects


@dataclass(frozen=True)
class RegistrySettings:
    """Where and how a service's pods are registered: its registry spec, the sync port, and the
    InferenceService that owns the entries."""

    registry: RegistrySpec
    port: int
    owner: ServiceRef

    @property
    def place(self) -> tuple[Any, ...] | None:
        return self.registry.place(self.owner.name)


@dataclass
class ServiceRecord:
    """What the operator keeps about one InferenceService between passes.

    It outlives the service's reconcile loop: pods of a deleted service are still deregistered
    with the settings last synced, by the same registrar (one registry client per service).
    """

    namespace: str
    name: str
    registrar: Registrar
    wakeup: Wakeup = field(default_factory=Wakeup)
    reconciler: ServiceReconciler | None = None  # while the service's reconcile loop runs
    settings: RegistrySettings | None = None     # what the service last synced with

    def remember(self, spec: InferenceServiceSpec, uid: str) -> None:
        self.settings = RegistrySettings(spec.registry, spec.sync.port, ServiceRef(self.namespace, self.name, uid))

    def poke(self, *, objects: bool = False) -> None:
        self.wakeup.poke(objects=objects)


class ServiceRecords:
    """One ServiceRecord per (namespace, name), made on first use."""

    def __init__(self, make_registrar: Callable[[str, str], Registrar]):
        self._make_registrar = make_registrar
        self._records: dict[tuple[str, str], ServiceRecord] = {}

    def get(self, namespace: str, name: str) -> ServiceRecord | None:
        return self._records.get((namespace, name))

    def record(self, namespace: str, name: str) -> ServiceRecord:
        key = (namespace, name)
        if key not in self._records:
            self._records[key] = ServiceRecord(namespace, name, self._make_registrar(namespace, name))
        return self._records[key]

    def poke(self, namespace: str, name: str, *, objects: bool = False) -> None:
        """Wake the service's loop, if it runs."""
        record = self._records.get((namespace, name))
        if record is not None and record.reconciler is not None:
            record.poke(objects=objects)

    def relisted(self, namespace: str | None) -> None:
        """The pods watch of `namespace` (None: of every namespace) listed everything again: each
        running loop there audits its pod index on its next pass, which comes at once."""
        for record in self:
            if record.reconciler is not None and namespace in (None, record.namespace):
                record.reconciler.schedule.request_audit(time.monotonic())
                record.poke()

    def request_audit(self, namespace: str, name: str, delay: float) -> None:
        """Have the service's loop audit its pods `delay` seconds from now (if it runs; a loop
        that starts audits on its first pass)."""
        record = self._records.get((namespace, name))
        if record is not None and record.reconciler is not None:
            record.reconciler.schedule.request_audit(time.monotonic(), delay)
            record.poke()

    def sharing(self, place: tuple[Any, ...] | None) -> list[ServiceRecord]:
        """The services whose pods are registered at `place` (one registry service), as last synced."""
        if place is None:
            return []
        return [r for r in self if r.settings is not None and r.settings.place == place]

    def __iter__(self) -> Iterator[ServiceRecord]:
        return iter(list(self._records.values()))

    async def close(self) -> None:
        for record in self:
            await record.registrar.close()
        self._records.clear()


# Passes of different services that run at once. A pass waits on I/O most of the time, so a few
# keep both cores busy; after a restart every service's first pass is due together, and without a
# bound all of them held their responses and objects at the same time (the process's memory stays
# at its peak: Python rarely gives freed memory back), and the releases of deleted pods waited
# behind them for the event loop.
PASSES_AT_ONCE = 16


class Runtime:
    def __init__(self) -> None:
        self.options = Options()
        self._pass_slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self._kube: KubeClient | None = None
        self._services: ServiceRecords | None = None
        self._releaser: PodReleaser | None = None
        self._service_releaser: ServiceReleaser | None = None
        self.owned = OwnedObjects()  # what the owned-kind watches saw (ownership.py)
        self._background: list[asyncio.Task] = []
        # kopf's indexes as handlers receive them (the same objects on every call), for the pod
        # releases started from the watch stream itself (handlers/pods.release_early): None until the first
        # pod event reached a handler.
        self.views: Views | None = None
        self.handler_context: contextvars.Context | None = None  # a pod handler's (handlers/pods.py)

    @property
    def pass_slots(self) -> asyncio.Semaphore:
        """Held by a reconcile pass while it runs (PASSES_AT_ONCE); one per event loop."""
        loop = asyncio.get_running_loop()
        if self._pass_slots is None or self._pass_slots[0] is not loop:
            self._pass_slots = (loop, asyncio.Semaphore(PASSES_AT_ONCE))
        return self._pass_slots[1]

    @property
    def kube(self) -> KubeClient:
        if self._kube is None:
            self._kube = KubeClient.from_environment(self.options.kubeconfig)
        return self._kube

    @property
    def services(self) -> ServiceRecords:
        if self._services is None:
            from infer_operator.registration.registrar import Registrar

            self._services = ServiceRecords(
                lambda namespace, name: Registrar(self.kube, namespace, name, self.options.registry_timeout_seconds,
                                                  recheck_seconds=self.options.sweep_seconds))
        return self._services

    @staticmethod
    def _post(reference: dict, event_type: str, reason: str, message: str) -> None:
        import kopf

        kopf.event(reference, type=event_type, reason=reason, message=message)

    @property
    def releaser(self) -> PodReleaser:
        if self._releaser is None:
            from infer_operator.registration.releaser import PodReleaser

            self._releaser = PodReleaser(self.kube, self.services, self._post,
                                         timeout=lambda: self.options.deregister_timeout_seconds)
        return self._releaser

    @property
    def service_releaser(self) -> ServiceReleaser:
        if self._service_releaser is None:
            from infer_operator.registration.releaser import ServiceReleaser

            self._service_releaser = ServiceReleaser(self.kube, self.services, self._post,
                                                     timeout=lambda: self.options.cleanup_timeout_seconds)
        return self._service_releaser

    def start_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` on this loop until the operator stops (close cancels it)."""
        self._background.append(asyncio.get_running_loop().create_task(work))

    async def close(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background = []
        for releaser in (self._releaser, self._service_releaser):
            if releaser is not None:
                await releaser.close()
        self._releaser = self._service_releaser = None
        self.views = self.handler_context = None
        if self._services is not None:
            await self._services.close()
            self._services = None
        if self._kube is not None:
            await self._kube.close()
            self._kube = None


RUNTIME = Runtime()
