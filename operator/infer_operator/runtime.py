"""Process-wide state of a running operator: options, the API client, and per-service wake-ups.

Handlers stay thin by reaching for these; tests and the CLI set the options before start-up.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

from infer_operator.clients.kube import KubeClient

if TYPE_CHECKING:
    from infer_operator.reconciler import ServiceReconciler
    from infer_operator.registrar import Registrar
    from infer_operator.releaser import PodReleaser


@dataclass
class Options:
    namespaces: list[str] = field(default_factory=list)  # empty: all namespaces
    resync_seconds: float = 60.0
    sweep_seconds: float = 60.0
    registry_timeout_seconds: float = 5.0
    deregister_timeout_seconds: float = 30.0
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


class Runtime:
    def __init__(self) -> None:
        self.options = Options()
        self._kube: KubeClient | None = None
        self.wakeups: dict[tuple[str, str], Wakeup] = {}
        self.reconcilers: dict[tuple[str, str], ServiceReconciler] = {}
        self.registrars: dict[tuple[str, str], Registrar] = {}
        self._releaser: PodReleaser | None = None

    @property
    def kube(self) -> KubeClient:
        if self._kube is None:
            self._kube = KubeClient.from_environment(self.options.kubeconfig)
        return self._kube

    @property
    def releaser(self) -> PodReleaser:
        if self._releaser is None:
            import kopf

            from infer_operator.releaser import PodReleaser

            def post(reference: dict, event_type: str, reason: str, message: str) -> None:
                kopf.event(reference, type=event_type, reason=reason, message=message)

            self._releaser = PodReleaser(self.kube, self.registrars, post,
                                         timeout=lambda: self.options.deregister_timeout_seconds,
                                         registry_timeout=lambda: self.options.registry_timeout_seconds)
        return self._releaser

    def registrar(self, namespace: str, name: str) -> Registrar:
        from infer_operator.registrar import Registrar

        key = (namespace, name)
        if key not in self.registrars:
            self.registrars[key] = Registrar(self.kube, namespace, name, self.options.registry_timeout_seconds)
        return self.registrars[key]

    def wakeup(self, namespace: str, name: str) -> Wakeup:
        key = (namespace, name)
        if key not in self.wakeups:
            self.wakeups[key] = Wakeup()
        return self.wakeups[key]

    def poke(self, namespace: str, name: str, *, objects: bool = False) -> None:
        waker = self.wakeups.get((namespace, name))
        if waker is not None:
            waker.poke(objects=objects)

    async def close(self) -> None:
        if self._releaser is not None:
            await self._releaser.close()
            self._releaser = None
        for registrar in list(self.registrars.values()):
            await registrar.close()
        self.registrars.clear()
        if self._kube is not None:
            await self._kube.close()
            self._kube = None


RUNTIME = Runtime()
