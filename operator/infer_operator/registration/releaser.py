"""Letting go of deleted objects: pods (deregister, confirmed; remove the per-IP config) and
InferenceServices (remove all their registry data). Each holds one of our finalizers until that
is done, and never longer than a bound.

A pod's release starts as soon as it gets its deletionTimestamp, in parallel with its preStop
drain, so the instance leaves the registry before SIGTERM. It does not depend on the
InferenceService's loop (which stops when the service is deleted); it needs only the pod and its
service's record: the registry settings last synced (or read from the InferenceService) and the
service's registrar. If the registry stays unreachable past the deregistration timeout, the pod
is released anyway (never held hostage), a Warning event says so, and the sweep removes the
leftovers later.

An InferenceService's release removes its entries and the per-IP configs no sharer holds, at
the registry in use and at every registry it moved away from without cleaning up yet (both
remembered in its status). It ends at `--cleanup-timeout` after the deletion at the latest
(at once when the namespace itself is going and the registry cannot be used), with an event
and a metric for whatever was left behind.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from infer_operator import kinds, labels, metrics
from infer_operator.api.v1alpha1 import RegistrySpec, RetiredRegistry, parse_spec
from infer_operator.backoff import Backoff
from infer_operator.clients.events import reference
from infer_operator.clients.finalizers import remove_finalizer
from infer_operator.clients.kube import KubeClient, KubeError
from infer_operator.notes import Note
from infer_operator.podview import PodView, parse_time
from infer_operator.records import RegistrySettings, ServiceRecord, ServiceRecords
from infer_operator.registration.actions import deregister_confirmed
from infer_operator.registration.registrar import RegistryConfigError
from infer_operator.registration.sharing import NO_VIEWS, Views, live_ips, read_pods
from infer_operator.registry.model import RegistryError, ServiceRef

log = logging.getLogger(__name__)

# (involved object: clients/events.reference, event type, reason, message); never blocks.
PostEvent = Callable[[dict[str, Any], str, str, str], None]


def pod_reference(pod: PodView) -> dict[str, Any]:
    return reference("v1", "Pod", pod.namespace, pod.name, pod.uid)


RECLAIM_AUDIT_SECONDS = 5.0  # a pod that left the watch and could not be taken back: audited this soon
RECENT_SECONDS = 300.0  # a pod released this recently is not started again by a late event


class Releases:
    """Background releases, one task per object uid at a time, each holding its service's record
    while it runs; an object just released is not started again for a while (late events still
    show the finalizer that was just removed)."""

    def __init__(self, services: ServiceRecords) -> None:
        self.services = services
        self.tasks: dict[str, asyncio.Task] = {}
        self.recently_released: dict[str, float] = {}  # uid -> when its release finished
        self.pruned_at = time.monotonic()

    def started(self, uid: str) -> bool:
        """Whether the object's release runs or finished lately."""
        if uid in self.tasks:
            return True
        return time.monotonic() - self.recently_released.get(uid, -RECENT_SECONDS) < RECENT_SECONDS

    def start(
        self,
        uid: str,
        name: str,
        service: tuple[str, str, str | None],
        release: Callable[[ServiceRecord], Awaitable[bool]],
    ) -> None:
        """Run `release(record)` in the background, unless this object's release has started;
        `service` (namespace, name, uid or None) names the record it holds meanwhile."""
        if self.started(uid):
            return
        now = time.monotonic()
        if now - self.pruned_at > RECENT_SECONDS:  # forget old releases now and then, not on every event
            self.recently_released = {u: at for u, at in self.recently_released.items() if now - at < RECENT_SECONDS}
            self.pruned_at = now
        record = self.services.hold(*service)  # before the task starts: no gap for the record to be forgotten

        async def run() -> bool:
            try:
                return await release(record)
            finally:
                await self.services.let_go(record)

        task = asyncio.create_task(run(), name=name)
        self.tasks[uid] = task

        def done(_: asyncio.Task) -> None:
            self.tasks.pop(uid, None)
            if not task.cancelled() and task.exception() is None and task.result():
                self.recently_released[uid] = time.monotonic()

        task.add_done_callback(done)

    async def close(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)


async def _settings_for(kube: KubeClient, record: ServiceRecord) -> RegistrySettings | None:
    """The registry settings the service last synced with, else read from the InferenceService."""
    if record.settings is not None:
        return record.settings
    try:
        body = await kube.get(
            kinds.INFERENCE_SERVICE.api_version, kinds.INFERENCE_SERVICE.kind, record.namespace, record.name
        )
    except KubeError as exc:
        if exc.not_found:
            return None
        raise RegistryError(f"could not read InferenceService {record.name}: {exc}") from None
    uid = body["metadata"]["uid"]
    if record.uid is not None and uid != record.uid:
        return None  # a namesake: the service this record is about is gone
    record.remember(parse_spec(body.get("spec")), uid)
    return record.settings


class PodReleaser:
    def __init__(self, kube: KubeClient, services: ServiceRecords, post: PostEvent, timeout: Callable[[], float]):
        self.kube = kube
        self.services = services
        self.post = post
        self.timeout = timeout
        self.releases = Releases(services)
        metrics.PODS_HELD.set_function(lambda: len(self.releases.tasks))

    @property
    def tasks(self) -> dict[str, asyncio.Task]:
        return self.releases.tasks

    async def released(self, namespace: str, name: str, views: Views | None) -> bool:
        """Whether the pod `namespace/name` is out of the registry as far as a deletion goes: its
        release finished (our finalizer is gone), it never held our finalizer (nothing was
        registered, or a service without a registry), it is gone, or it is not being deleted at
        all (a container restarted in place: readiness, not deletion, decides its entry). The
        pods' preStop asks this (`endpoint.py`) before it drains.

        The watch's view answers when it has the pod (a StatefulSet pod's service is its name
        without the ordinal); otherwise the API does. Raises KubeError when neither can tell."""
        pod = (
            next((p for p in views.pods_of(namespace, name.rpartition("-")[0]) if p.name == name), None)
            if views
            else None
        )
        if pod is None:
            try:
                pod = PodView.from_body(await self.kube.get(kinds.POD.api_version, kinds.POD.kind, namespace, name))
            except KubeError as exc:
                if exc.not_found:
                    return True
                raise
        if not pod.deleting or labels.POD_FINALIZER not in pod.finalizers:
            return True
        # Released a moment ago: the watch has not shown the finalizer's removal yet.
        return pod.uid in self.releases.recently_released

    def releasing(self, uid: str) -> bool:
        """Whether the pod's release runs or finished lately (it is not to be registered again)."""
        return self.releases.started(uid)

    def handle(self, pod: PodView, views: Views = NO_VIEWS) -> None:
        """Start releasing a deleted pod that still carries our finalizer (at most once at a time).
        `views` shows the pods of every service sharing its registry (who holds its IP now)."""
        if pod.deleting and labels.POD_FINALIZER in pod.finalizers:
            self.releases.start(
                pod.uid,
                f"release {pod.namespace}/{pod.name}",
                (pod.namespace, pod.service, None),
                lambda record: self._release(pod, record, views),
            )

    async def reclaim(self, pod: PodView, views: Views, *, read_first: bool = False) -> None:
        """A pod of a service the operator runs lost a label of ours (taken off by hand or by
        another controller). Without its managed-by label it left the watch: not counted, and a
        deletion of it holding our finalizer would never be seen; without its service or name label
        it is counted nowhere, and its StatefulSet lets go of it. A deleted one holding our
        finalizer is released like any other; a live one gets the labels back (a `Relabelled`
        event says which), so the watch, the status and the StatefulSet see it again. A pod that
        changed meanwhile is read again (it may be being deleted by now); when that does not settle
        it, the service's loop audits its pods soon, which finds it.

        `read_first`: `pod` is what the watch last saw, not what is there now. The API server's
        DELETED event for an object that stopped matching a label selector carries its previous
        state (our label still on), so the pod is read before anything is decided."""
        if read_first:
            try:
                body = await self.kube.get(kinds.POD.api_version, kinds.POD.kind, pod.namespace, pod.name)
            except KubeError as exc:
                if not exc.not_found:
                    self.services.request_audit(pod.namespace, pod.service, RECLAIM_AUDIT_SECONDS)
                return
            if body["metadata"].get("uid") != pod.uid:
                return  # a namesake: the one that left is gone
            pod = PodView.from_body(body)
        for _ in range(3):
            if pod.deleting:
                self.handle(pod, views)
                return
            if not pod.lost:
                return  # back as it was
            if self.services.get(pod.namespace, pod.service) is None and labels.POD_FINALIZER not in pod.finalizers:
                return  # of no service the operator runs (deleted, orphaned), and nothing of ours holds it
            ours = labels.common_labels(pod.service)
            lost = {name: ours[name] for name in pod.lost}
            patch = {"metadata": {"labels": lost, "resourceVersion": pod.resource_version}}
            try:
                await self.kube.merge_patch(kinds.POD.api_version, kinds.POD.kind, pod.namespace, pod.name, patch)
            except KubeError as exc:
                if exc.not_found:
                    return
                if exc.conflict:
                    try:
                        body = await self.kube.get(kinds.POD.api_version, kinds.POD.kind, pod.namespace, pod.name)
                    except KubeError as again:
                        if again.not_found:
                            return
                        break
                    if body["metadata"].get("uid") != pod.uid:
                        return  # a namesake: the one that left is gone
                    pod = PodView.from_body(body)
                    continue
                log.warning(f"Could not put the labels {', '.join(lost)} back on pod {pod.namespace}/{pod.name}: {exc}")
                break
            put_back = ", ".join(f"{name}={value}" for name, value in lost.items())
            message = (
                f"Pod {pod.name} had lost the label(s) {put_back} of InferenceService {pod.service}; they were "
                f"put back, so that the operator, its status and the StatefulSet count the pod again"
            )
            log.info(f"{message}.")
            self.post(pod_reference(pod), "Normal", "Relabelled", message)
            return
        self.services.request_audit(pod.namespace, pod.service, RECLAIM_AUDIT_SECONDS)

    async def close(self) -> None:
        await self.releases.close()

    async def _release(self, pod: PodView, record: ServiceRecord, views: Views) -> bool:
        """Returns whether the pod is released (our finalizer is gone)."""
        try:
            outcome = await self._deregister(pod, record, views)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - whatever happens, the pod must not be stuck
            log.exception(f"Deregistering pod {pod.namespace}/{pod.name} failed unexpectedly; releasing it.")
            outcome = Note("Warning", "DeregistrationFailed", "unexpected error; the sweep will finish the job")
        released = await self._remove_finalizer(pod)
        if outcome is not None:
            self.post(pod_reference(pod), outcome.type, outcome.reason, f"Pod {pod.name}: {outcome.message}")
            if outcome.warning:
                metrics.INCOMPLETE_CLEANUPS.labels("Pod", outcome.reason).inc()
        return released

    @staticmethod
    def _holder(settings: RegistrySettings, pod: PodView, views: Views) -> PodView | None:
        """A live pod of any service sharing the registry that holds the pod's IP now."""
        for namespace, name in views.sharers(settings.place) or [(pod.namespace, pod.service)]:
            for other in views.pods_of(namespace, name):
                if other.ip == pod.ip and other.uid != pod.uid and not other.deleting:
                    return other
        return None

    async def _deregister(self, pod: PodView, record: ServiceRecord, views: Views) -> Note | None:
        """What is worth an event, or None for the quiet normal case."""
        started = time.monotonic()
        deadline = started + self.timeout()
        backoff = Backoff()
        last_error = "registry unreachable"
        backend = "unknown"  # until the settings are read
        while True:
            try:
                settings = await _settings_for(self.kube, record)
                if settings is None or not settings.registry.in_use:
                    return None  # nothing registered anywhere for this pod
                backend = settings.registry.type
                if not pod.ip:
                    return None  # never had an IP: never registered, no per-IP config
                port = pod.sync_port or settings.port  # the port it was registered at
                registry = await record.registrar.client(settings.registry, keep_if_secret_gone=True)
                service = record.registrar.service_of(settings.registry)
                # The IP's per-IP config is the new holder's once that pod has been registered
                # (it claimed the IP then); until then it is still this pod's.
                holder = self._holder(settings, pod, views)
                keep_config = holder is not None and holder.registered
                remaining = max(0.5, deadline - time.monotonic())
                async with asyncio.timeout(remaining):
                    result = await deregister_confirmed(registry, service, pod.ip, port, pod.uid)
                    if result.confirmed and not keep_config:
                        await registry.delete_config(service, pod.ip)
                if result.confirmed:
                    if pod.role == labels.ROLE_SYNC:
                        metrics.DEREGISTRATIONS.labels(settings.registry.type, "pod-deleted").inc()
                        metrics.DEREGISTRATION_LATENCY.observe(time.monotonic() - started)
                        log.info(
                            f"Deregistered pod {pod.namespace}/{pod.name} ({pod.ip}:{port}) from {service}"
                            + ("." if keep_config else " and removed its per-IP config.")
                        )
                    elif not keep_config:
                        # Async pods are never registered; their per-IP config still goes with them.
                        log.info(
                            f"Removed the per-IP config of pod {pod.namespace}/{pod.name} ({pod.ip}) from {service}."
                        )
                    if keep_config:
                        return Note(
                            "Normal",
                            "IPReused",
                            f"IP {pod.ip} is held by {holder.namespace}/{holder.name}, "
                            f"registered since: its per-IP config is that pod's and was kept",
                        )
                    if result.needed_second_confirmation:
                        return Note(
                            "Normal",
                            "DeregisteredOnSecondConfirmation",
                            f"{pod.ip}:{port} was still listed after the first delete; removed directly",
                        )
                    return None
                last_error = result.last_error or last_error
            except RegistryConfigError as exc:
                return Note("Warning", "DeregistrationSkipped", f"{exc}; released without deregistration")
            except (RegistryError, TimeoutError) as exc:
                last_error = str(exc) or type(exc).__name__
                metrics.REGISTRY_ERRORS.labels(backend, "deregister").inc()
            delay = backoff.next()
            if time.monotonic() + delay >= deadline:
                message = (
                    f"registry unreachable for {self.timeout():g}s ({last_error}); released without "
                    f"confirmed deregistration, the sweep will remove its entry and config"
                )
                log.warning(f"Pod {pod.namespace}/{pod.name}: {message}.")
                return Note("Warning", "DeregistrationTimedOut", message)
            await asyncio.sleep(delay)

    async def _remove_finalizer(self, pod: PodView) -> bool:
        try:
            # The pod as its deletion event showed it: one PATCH, and a GET only when it changed since.
            known = {"uid": pod.uid, "finalizers": list(pod.finalizers), "resourceVersion": pod.resource_version}
            return await remove_finalizer(
                self.kube, kinds.POD, pod.namespace, pod.name, labels.POD_FINALIZER, uid=pod.uid, known=known
            )
        except KubeError as exc:
            log.error(f"Could not release pod {pod.namespace}/{pod.name} from {labels.POD_FINALIZER}: {exc}")
            metrics.INCOMPLETE_CLEANUPS.labels("Pod", "FinalizerNotRemoved").inc()
            return False


def registries_of(body: Any) -> tuple[RegistrySpec | None, list[RegistrySpec]]:
    """(the registry in use, the ones moved away from and not cleaned yet) of an InferenceService.

    The spec says which registry is in use; when it cannot be parsed, the status's record of the
    registry last synced stands in. Unparseable records are skipped (nothing to connect to).
    """
    status = body.get("status") or {}
    current: RegistrySpec | None
    try:
        current = parse_spec(body.get("spec")).registry
    except ValueError:
        current = parse_registry(status.get("registry"))
    retired = [r for r in map(parse_retired, status.get("retiredRegistries") or []) if r is not None and r.in_use]
    return (current if current is not None and current.in_use else None), retired


def parse_registry(data: Any) -> RegistrySpec | None:
    """A registry spec as recorded in a status, or None when absent or unusable."""
    try:
        return RegistrySpec.model_validate(data) if data else None
    except ValueError:
        return None


def parse_retired(data: Any) -> Any:
    """A registry moved away from, as the status records it (a RetiredRegistry: the spec and
    `retiredAt`), or None when absent or unusable."""
    try:
        return RetiredRegistry.model_validate(data) if data else None
    except ValueError:
        return None


def retire(registry: RegistrySpec, at: datetime.datetime) -> Any:
    """`registry` as a place moved away from at `at` (kept when it was retired before)."""
    if isinstance(registry, RetiredRegistry) and registry.retired_at:
        return registry
    fields = registry.model_dump(by_alias=True, exclude_none=True)
    return RetiredRegistry.model_validate({**fields, "retiredAt": at.isoformat().replace("+00:00", "Z")})


def retired_at(registry: RegistrySpec) -> datetime.datetime | None:
    """When the service moved away from `registry` (None: not a retired place, or not recorded)."""
    return parse_time(getattr(registry, "retired_at", None))


class ServiceReleaser:
    """Deleted InferenceServices: their registry data goes, then our finalizer, within a bound."""

    def __init__(self, kube: KubeClient, services: ServiceRecords, post: PostEvent, timeout: Callable[[], float]):
        self.kube = kube
        self.services = services
        self.post = post
        self.timeout = timeout
        self.releases = Releases(services)

    def handle(self, body: Any, views: Views = NO_VIEWS) -> None:
        """Start cleaning up a deleted InferenceService that still carries our finalizer."""
        meta = body["metadata"]
        if meta.get("deletionTimestamp") and labels.CR_FINALIZER in (meta.get("finalizers") or []):
            snapshot = {"metadata": dict(meta), "spec": body.get("spec"), "status": body.get("status")}
            self.releases.start(
                meta["uid"],
                f"clean up {meta['namespace']}/{meta['name']}",
                (meta["namespace"], meta["name"], meta["uid"]),
                lambda record: self._release(snapshot, record, views),
            )

    async def close(self) -> None:
        await self.releases.close()

    async def _release(self, body: dict[str, Any], record: ServiceRecord, views: Views) -> bool:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        owner = ServiceRef(namespace, name, meta["uid"])
        involved = reference(labels.API_VERSION, labels.KIND, namespace, name, owner.uid)
        try:
            outcome = await self._clean(body, owner, record, views)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - whatever happens, the object must not be stuck
            log.exception(f"Cleaning the registry of InferenceService {namespace}/{name} failed unexpectedly.")
            outcome = Note("Warning", "RegistryCleanupAbandoned", "unexpected error; its registry entries may remain")
        if outcome is not None:
            log.warning(f"InferenceService {namespace}/{name}: {outcome.message}.")
            self.post(involved, outcome.type, outcome.reason, outcome.message)
            metrics.INCOMPLETE_CLEANUPS.labels(labels.KIND, outcome.reason).inc()
        try:
            released = await remove_finalizer(
                self.kube, kinds.INFERENCE_SERVICE, namespace, name, labels.CR_FINALIZER, uid=owner.uid
            )
        except KubeError as exc:
            released = False
            log.error(f"Could not release InferenceService {namespace}/{name} from {labels.CR_FINALIZER}: {exc}")
        if not released:
            self.post(
                involved,
                "Warning",
                "FinalizerNotRemoved",
                f"could not remove {labels.CR_FINALIZER}; `infer-operator cleanup` removes it",
            )
            metrics.INCOMPLETE_CLEANUPS.labels(labels.KIND, "FinalizerNotRemoved").inc()
        return released

    async def _clean(self, body: dict[str, Any], owner: ServiceRef, record: ServiceRecord, views: Views) -> Note | None:
        """Clean every registry the service used; what is worth an event when it gave up."""
        current, retired = registries_of(body)
        left = ([current] if current else []) + retired
        deletion = parse_time(body["metadata"].get("deletionTimestamp")) or datetime.datetime.now(datetime.UTC)
        deadline = deletion + datetime.timedelta(seconds=self.timeout())
        backoff = Backoff(first=1.0, cap=30.0)
        last_error = ""
        abandoned: list[str] = []  # places moved away from, given up at their own bound
        while left:
            spec_registry = left[0]
            # A place moved away from is given up --cleanup-timeout after the move, however long
            # the deletion itself may still wait for the others (it may have been gone for good,
            # e.g. an old address of the etcd in use).
            moved = retired_at(spec_registry) if spec_registry is not current else None
            own_deadline = min(deadline, moved + datetime.timedelta(seconds=self.timeout())) if moved else deadline
            try:
                others = [
                    s for s in views.sharers(spec_registry.place(owner.name)) if s != (owner.namespace, owner.name)
                ]
                others_ips = live_ips(await read_pods(self.kube, others)) if others else set()
                if spec_registry is current:
                    registry = await record.registrar.client(spec_registry, keep_if_secret_gone=True)
                    await record.registrar.remove_everything(registry, spec_registry, others_ips, owner)
                else:
                    async with record.registrar.connected(spec_registry) as registry:
                        await record.registrar.remove_everything(registry, spec_registry, others_ips, owner)
                left.pop(0)
                backoff.reset()
                continue
            except RegistryConfigError as exc:
                last_error = str(exc)
                if await self._namespace_going(owner.namespace):
                    return Note(
                        "Warning",
                        "RegistryCleanupAbandoned",
                        f"the namespace is being deleted and the registry cannot be used ({exc}); "
                        f"entries and per-IP configs of {owner.name} may remain there",
                    )
            except (RegistryError, KubeError, TimeoutError) as exc:
                last_error = str(exc) or type(exc).__name__
            delay = backoff.next()
            now = datetime.datetime.now(datetime.UTC)
            if own_deadline < deadline and now + datetime.timedelta(seconds=delay) >= own_deadline:
                abandoned.append(f"{spec_registry.service or owner.name} ({spec_registry.type}): {last_error}")
                left.pop(0)
                backoff.reset()
                continue
            if now + datetime.timedelta(seconds=delay) >= deadline:
                return Note(
                    "Warning",
                    "RegistryCleanupAbandoned",
                    f"the registry could not be cleaned within {self.timeout():g}s of the deletion "
                    f"({last_error}); entries and per-IP configs of {owner.name} may remain there",
                )
            log.warning(
                f"Cleaning the registry of InferenceService {owner.namespace}/{owner.name} failed, "
                f"retrying in {delay:.1f}s: {last_error}"
            )
            await asyncio.sleep(delay)
        if abandoned:
            return Note(
                "Warning",
                "RegistryCleanupAbandoned",
                f"gave up on registries {owner.name} had moved away from more than {self.timeout():g}s ago "
                f"({'; '.join(abandoned)}); its entries and per-IP configs may remain there",
            )
        return None

    async def _namespace_going(self, namespace: str) -> bool:
        """Whether the namespace is being deleted (a Secret it lost can never come back then)."""
        try:
            ns = await self.kube.get(kinds.NAMESPACE.api_version, kinds.NAMESPACE.kind, None, namespace)
        except KubeError:
            return False  # unknown (e.g. not allowed to read it): wait out the bound instead
        return bool(ns["metadata"].get("deletionTimestamp")) or (ns.get("status") or {}).get("phase") == "Terminating"
