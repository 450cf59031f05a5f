"""The composition root of a running operator: its options, the API client, the event recorder,
the service records (records.py) and the releasers, made on first use and closed together.

Handlers stay thin by reaching for these; tests and the CLI set the options before start-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from infer_operator import endpoint
from infer_operator.clients.events import EventRecorder
from infer_operator.clients.kube import KubeClient
from infer_operator.nodeview import NodeStates
from infer_operator.ownership import OwnedObjects
from infer_operator.podview import PodView
from infer_operator.reconcile.schedule import AUDIT_SECONDS, RESYNC_SECONDS, SWEEP_SECONDS
from infer_operator.records import ServiceRecords
from infer_operator.registration.registrar import Registrar
from infer_operator.registration.releaser import PodReleaser, ServiceReleaser
from infer_operator.registration.sharing import Views


@dataclass
class Options:
    namespaces: list[str] = field(default_factory=list)  # empty: all namespaces
    resync_seconds: float = RESYNC_SECONDS  # reconcile/schedule.py says why these defaults
    audit_seconds: float = AUDIT_SECONDS
    sweep_seconds: float = SWEEP_SECONDS
    registry_timeout_seconds: float = 5.0
    deregister_timeout_seconds: float = 30.0
    cleanup_timeout_seconds: float = 300.0
    kubeconfig: str | None = None
    metrics_port: int | None = None
    verbose: bool = False
    kopf_hooks: str = "tested"  # kopf_hooks.MODES
    release_port: int = 0  # where pods ask whether they left the registry (endpoint.py); 0: not served
    release_url: str | None = None  # that endpoint as pods reach it
    release_service: str | None = None  # namespace/name of the Service in front of it (its ClusterIP)


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
        self._events: EventRecorder | None = None
        self._services: ServiceRecords | None = None
        self._releaser: PodReleaser | None = None
        self._service_releaser: ServiceReleaser | None = None
        self.owned = OwnedObjects()  # what the owned-kind watches saw (ownership.py)
        self.nodes = NodeStates()  # which nodes were lost, as last seen (handlers/nodes.py)
        self._background: list[asyncio.Task] = []
        self._endpoint: web.AppRunner | None = None
        # kopf's indexes as handlers receive them (the same objects on every call), for the pod
        # releases started from the watch stream itself (handlers/pods.release_early): None until the first
        # pod event reached a handler.
        self.views: Views | None = None
        # Deleted pods seen on the watch stream before that (a restart's first listing): released
        # when the indexes are complete, by the first pod handler. uid -> the pod as seen.
        self.pending_releases: dict[str, PodView] = {}

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
    def events(self) -> EventRecorder:
        if self._events is None:
            self._events = EventRecorder(self.kube)
        return self._events

    @property
    def services(self) -> ServiceRecords:
        if self._services is None:
            self._services = ServiceRecords(
                lambda namespace, name: Registrar(
                    self.kube,
                    namespace,
                    name,
                    self.options.registry_timeout_seconds,
                    recheck_seconds=self.options.sweep_seconds,
                )
            )
        return self._services

    @property
    def releaser(self) -> PodReleaser:
        if self._releaser is None:
            self._releaser = PodReleaser(
                self.kube, self.services, self.events.post, timeout=lambda: self.options.deregister_timeout_seconds
            )
        return self._releaser

    @property
    def service_releaser(self) -> ServiceReleaser:
        if self._service_releaser is None:
            self._service_releaser = ServiceReleaser(
                self.kube, self.services, self.events.post, timeout=lambda: self.options.cleanup_timeout_seconds
            )
        return self._service_releaser

    async def serve_releases(self, port: int) -> None:
        """Serve the pods' release checks (endpoint.py) on `port` until the operator stops."""

        async def answer(namespace: str, name: str) -> bool:
            return await self.releaser.released(namespace, name, self.views)

        self._endpoint = await endpoint.serve(answer, port)

    def start_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` on this loop until the operator stops (close cancels it)."""
        self._background.append(asyncio.get_running_loop().create_task(work))

    async def close(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background = []
        if self._endpoint is not None:
            await self._endpoint.cleanup()
            self._endpoint = None
        for releaser in (self._releaser, self._service_releaser):
            if releaser is not None:
                await releaser.close()
        self._releaser = self._service_releaser = None
        self.views = None
        self.pending_releases = {}
        if self._services is not None:
            await self._services.close()
            self._services = None
        if self._events is not None:
            await self._events.close()
            self._events = None
        if self._kube is not None:
            await self._kube.close()
            self._kube = None


RUNTIME = Runtime()
