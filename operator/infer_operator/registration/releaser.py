"""Deleted pods: deregister (confirmed), remove the per-IP config, then release the finalizer.

This runs as soon as a pod gets its deletionTimestamp, in parallel with its preStop drain, so the
instance leaves the registry before SIGTERM. It does not depend on the InferenceService's loop
(which stops when the service is deleted); it needs only the pod and its service's record: the
registry settings last synced (or read from the InferenceService) and the service's registrar.

If the registry stays unreachable past the deregistration timeout, the pod is released anyway
(never held hostage), a Warning event says so, and the sweep removes the leftovers later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from infer_operator import kinds, labels, metrics
from infer_operator.api.v1alpha1 import parse_spec
from infer_operator.clients.finalizers import remove_finalizer
from infer_operator.clients.kube import KubeClient, KubeError
from infer_operator.podview import PodView
from infer_operator.registration.actions import deregister_confirmed
from infer_operator.registration.registrar import RegistryConfigError
from infer_operator.registry.model import RegistryError
from infer_operator.runtime import RegistrySettings, ServiceRecord, ServiceRecords

log = logging.getLogger(__name__)

# (object reference, event type, reason, message)
PostEvent = Callable[[dict[str, Any], str, str, str], None]


def pod_reference(pod: PodView) -> dict[str, Any]:
    """Enough of a pod body for an Event's involvedObject."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid}}


class PodReleaser:
    def __init__(self, kube: KubeClient, services: ServiceRecords, post: PostEvent, timeout: Callable[[], float]):
        self.kube = kube
        self.services = services
        self.post = post
        self.timeout = timeout
        self.tasks: dict[str, asyncio.Task] = {}
        self.recently_released: dict[str, float] = {}  # uid -> when its release finished

    def handle(self, pod: PodView, siblings: Callable[[], Iterable[PodView]]) -> None:
        """Start releasing a deleted pod that still carries our finalizer (at most once at a time)."""
        if not pod.deleting or labels.POD_FINALIZER not in pod.finalizers or pod.uid in self.tasks:
            return
        now = time.monotonic()
        self.recently_released = {uid: at for uid, at in self.recently_released.items() if now - at < 300}
        if pod.uid in self.recently_released:
            return  # a late event still showing the finalizer we have just removed
        task = asyncio.create_task(self._release(pod, siblings), name=f"release {pod.namespace}/{pod.name}")
        self.tasks[pod.uid] = task

        def done(_: asyncio.Task) -> None:
            self.tasks.pop(pod.uid, None)
            if not task.cancelled() and task.exception() is None and task.result():
                self.recently_released[pod.uid] = time.monotonic()

        task.add_done_callback(done)

    async def close(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    async def _release(self, pod: PodView, siblings: Callable[[], Iterable[PodView]]) -> bool:
        """Returns whether the pod is released (our finalizer is gone)."""
        try:
            outcome = await self._deregister(pod, siblings)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - whatever happens, the pod must not be stuck
            log.exception(f"Deregistering pod {pod.namespace}/{pod.name} failed unexpectedly; releasing it.")
            outcome = ("Warning", "DeregistrationFailed", "unexpected error; the sweep will finish the job")
        released = await self._remove_finalizer(pod)
        if outcome is not None:
            event_type, reason, message = outcome
            self.post(pod_reference(pod), event_type, reason, f"Pod {pod.name}: {message}")
        return released

    async def _settings_for(self, record: ServiceRecord) -> RegistrySettings | None:
        if record.settings is not None:
            return record.settings
        try:
            body = await self.kube.get(kinds.INFERENCE_SERVICE.api_version, kinds.INFERENCE_SERVICE.kind,
                                       record.namespace, record.name)
        except KubeError as exc:
            if exc.not_found:
                return None
            raise RegistryError(f"could not read InferenceService {record.name}: {exc}") from None
        record.remember(parse_spec(body.get("spec")))
        return record.settings

    async def _deregister(self, pod: PodView, siblings: Callable[[], Iterable[PodView]]):
        """Returns (event type, reason, message) worth an event, or None for the quiet normal case."""
        started = time.monotonic()
        deadline = started + self.timeout()
        delay = 0.5
        last_error = "registry unreachable"
        record = self.services.record(pod.namespace, pod.service)
        while True:
            try:
                settings = await self._settings_for(record)
                if settings is None or not settings.registry.in_use:
                    return None  # nothing registered anywhere for this pod
                if not pod.ip:
                    return None  # never had an IP: never registered, no per-IP config
                if any(s.ip == pod.ip and s.uid != pod.uid and not s.deleting for s in siblings()):
                    # The IP already belongs to a live pod of the same service: its entry and
                    # config are that pod's now. Removing them would hurt a live instance.
                    return ("Normal", "IPReused", f"IP {pod.ip} is held by a live pod; its entry and config were kept")
                port = settings.port
                registry = await record.registrar.client(settings.registry)
                service = record.registrar.service
                remaining = max(0.5, deadline - time.monotonic())
                async with asyncio.timeout(remaining):
                    result = await deregister_confirmed(registry, service, pod.ip, port)
                    if result.confirmed:
                        await registry.delete_config(service, pod.ip)
                if result.confirmed:
                    if pod.role == labels.ROLE_SYNC:
                        metrics.DEREGISTRATIONS.labels(settings.registry.type, "pod-deleted").inc()
                        metrics.DEREGISTRATION_LATENCY.observe(time.monotonic() - started)
                        log.info(f"Deregistered pod {pod.namespace}/{pod.name} ({pod.ip}:{port}) from {service} "
                                 f"and removed its per-IP config.")
                    else:
                        # Async pods are never registered; their per-IP config still goes with them.
                        log.info(f"Removed the per-IP config of pod {pod.namespace}/{pod.name} ({pod.ip}) "
                                 f"from {service}.")
                    if result.needed_second_confirmation:
                        return ("Normal", "DeregisteredOnSecondConfirmation",
                                f"{pod.ip}:{port} was still listed after the first delete; removed directly")
                    return None
                last_error = result.last_error or last_error
            except RegistryConfigError as exc:
                return ("Warning", "DeregistrationSkipped", f"{exc}; released without deregistration")
            except (RegistryError, TimeoutError) as exc:
                last_error = str(exc) or type(exc).__name__
                metrics.REGISTRY_ERRORS.labels("unknown", "deregister").inc()
            if time.monotonic() + delay >= deadline:
                message = (f"registry unreachable for {self.timeout():g}s ({last_error}); released without "
                           f"confirmed deregistration, the sweep will remove its entry and config")
                log.warning(f"Pod {pod.namespace}/{pod.name}: {message}.")
                return ("Warning", "DeregistrationTimedOut", message)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _remove_finalizer(self, pod: PodView) -> bool:
        try:
            return await remove_finalizer(self.kube, kinds.POD, pod.namespace, pod.name, labels.POD_FINALIZER,
                                          uid=pod.uid)
        except KubeError as exc:
            log.error(f"Could not release pod {pod.namespace}/{pod.name} from {labels.POD_FINALIZER}: {exc}")
            return False
