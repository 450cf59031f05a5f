"""The registry side of one InferenceService: a client built from the spec and its Secret,
registration passes, the sweep, and removing everything when the service goes.

Every registry call is bounded (the client's per-call timeout). An error is never taken to mean
"gone": a failed read leaves everything in place and reports RegistrySynced=False.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from infer_operator import kinds, metrics
from infer_operator.api.v1alpha1 import RegistrySpec
from infer_operator.backoff import Backoff
from infer_operator.clients.kube import KubeClient, KubeError
from infer_operator.notes import Condition
from infer_operator.podview import PodView
from infer_operator.registration.actions import apply_sweep
from infer_operator.registration.plans import Desired, desired_instances, plan_registration, plan_sweep
from infer_operator.registration.serving import NodeLookup, Verdict, no_nodes
from infer_operator.registry.backends import Measured, connect
from infer_operator.registry.base import Registry
from infer_operator.registry.model import Instance, RegistryError, ServiceRef

log = logging.getLogger(__name__)


class RegistryConfigError(Exception):
    """The registry settings cannot be used (missing Secret, bad values): a user must act."""


class ReadFailed(Exception):
    """The pods could not be read from the API for a sweep: nothing is removed."""


# Reads the pods from the API for a sweep: (this service's pods, the IPs live pods of every
# service sharing the registry hold). Raises ReadFailed.
Confirm = Callable[[], Awaitable[tuple[list[PodView], set[str]]]]


@dataclass(frozen=True)
class SyncResult:
    registered: int
    condition: Condition  # RegistrySynced
    retry_in: float | None = None
    to_mark: tuple[PodView, ...] = ()  # registered pods whose registration mark is missing or names another IP
    registered_uids: frozenset[str] = frozenset()  # the pods listed in the registry after this pass
    deregistered: tuple[tuple[Instance, Verdict], ...] = ()  # entries this pass removed, and why


def _why_deregistered(instance: Instance, desired: Desired, pods: list[PodView]) -> Verdict:
    """Why a pass removed an entry of one of the service's pods."""
    if instance.uid in desired.refused:
        return desired.refused[instance.uid]
    pod = next((p for p in pods if p.uid == instance.uid), None)
    if pod is not None and pod.ip and pod.ip != instance.ip:
        return Verdict(False, "AddressChanged", f"its IP is {pod.ip} now")
    if pod is None:
        return Verdict(False, "Replaced", f"another pod holds {instance.ip} now")
    return Verdict(False, "NotWanted", "it is not to be listed now")


def live_pods(pods: list[PodView]) -> dict[str, str | None]:
    """uid -> current IP of the pods that are not terminating (the sweep's view of who lives where)."""
    return {pod.uid: pod.ip for pod in pods if not pod.deleting}


def registry_service_name(spec_registry: RegistrySpec, isvc_name: str) -> str:
    return spec_registry.service or isvc_name


async def read_credentials(
    kube: KubeClient, namespace: str, secret_name: str, secret_keys: Mapping[str, str]
) -> tuple[dict[str, str], str]:
    """The Secret's registry credentials (`secret_keys`: Secret key -> credential name; other keys
    are ignored) and its resourceVersion. Values are never logged."""
    try:
        secret = await kube.get(kinds.SECRET.api_version, kinds.SECRET.kind, namespace, secret_name)
    except KubeError as exc:
        if exc.not_found:
            raise RegistryConfigError(f"registry credentials Secret {secret_name} does not exist") from None
        if exc.status == 403:
            raise RegistryConfigError(f"not allowed to read registry credentials Secret {secret_name}") from None
        raise RegistryError(f"could not read Secret {secret_name}: {exc.reason or exc.status}") from None
    credentials = {}
    for key, value in (secret.get("data") or {}).items():
        if key in secret_keys:
            credentials[secret_keys[key]] = base64.b64decode(value).decode()
    return credentials, secret["metadata"].get("resourceVersion", "")


class Registrar:
    """Registry work for one InferenceService (`owner`). Keeps one client for the registry in use,
    rebuilt when its settings or Secret change; a registry the service has moved away from is
    reached with a client of its own for the time it takes (`connected`)."""

    def __init__(
        self,
        kube: KubeClient,
        namespace: str,
        name: str,
        timeout: float,
        connect: Callable[..., Registry] = connect,
        recheck_seconds: float = 60.0,
    ):
        self.kube = kube
        # A pass whose pods would give the registry exactly what the last successful sync did
        # reads nothing: the registry is read again at the latest `recheck_seconds` after the
        # last read (a pass comes by then: the sweep's), or as soon as anything it depends on changes.
        self.recheck_seconds = recheck_seconds
        self._synced: tuple[Any, float, SyncResult] | None = None
        self.namespace = namespace
        self.name = name
        self.timeout = timeout
        self._connect = connect  # the backend table's; tests give a stub registry
        # An unreachable registry is retried with waits of its own per service, so many services
        # do not hammer a recovering registry in step.
        self.backoff = Backoff(first=2.0, cap=60.0)
        self.spec_registry: RegistrySpec | None = None
        self._client: Registry | None = None
        self._fingerprint: str | None = None

    def service_of(self, spec_registry: RegistrySpec) -> str:
        return registry_service_name(spec_registry, self.name)

    @property
    def service(self) -> str:
        return self.service_of(self.spec_registry) if self.spec_registry else self.name

    @property
    def backend(self) -> str:
        return self.spec_registry.type if self.spec_registry else "none"

    async def _build(self, spec_registry: RegistrySpec, *, reuse: bool) -> tuple[Registry | None, str]:
        """(a new client, or None when `reuse` and the current one still fits; the fingerprint of the
        settings and Secret version it was built from)."""
        backend = spec_registry.backend
        secret_name = backend.credentials_secret(spec_registry)
        credentials: dict[str, str] = {}
        secret_version = ""
        if secret_name:
            credentials, secret_version = await read_credentials(
                self.kube, self.namespace, secret_name, backend.secret_keys
            )
        fingerprint = hashlib.sha256(
            json.dumps([spec_registry.model_dump(mode="json"), secret_name, secret_version], sort_keys=True).encode()
        ).hexdigest()
        if reuse and self._client is not None and fingerprint == self._fingerprint:
            return None, fingerprint
        try:
            client = self._connect(spec_registry.type, backend.section(spec_registry), credentials, self.timeout)
            client.warmup_seconds = float(spec_registry.warmup_seconds)
            return Measured(client, spec_registry.type), fingerprint
        except ValueError as exc:
            raise RegistryConfigError(f"registry settings are not usable: {exc}") from None

    async def client(self, spec_registry: RegistrySpec, *, keep_if_secret_gone: bool = False) -> Registry:
        """The client for the registry in use (raises RegistryConfigError, RegistryError).

        `keep_if_secret_gone`: when the credentials Secret can no longer be read, go on with the
        client built from it before (for the same registry). Cleaning up after a deletion uses
        this: a namespace being deleted takes its Secrets with it, and the registry may well still
        take the credentials.
        """
        same_place = self.spec_registry is not None and self.spec_registry.place(self.name) == spec_registry.place(
            self.name
        )
        try:
            fresh, fingerprint = await self._build(spec_registry, reuse=True)
        except RegistryConfigError:
            if keep_if_secret_gone and same_place and self._client is not None:
                return self._client
            raise
        self.spec_registry = spec_registry
        if fresh is not None:
            await self.close()
            self._client, self._fingerprint = fresh, fingerprint
            self._synced = None
        assert self._client is not None
        return self._client

    @contextlib.asynccontextmanager
    async def connected(self, spec_registry: RegistrySpec) -> AsyncIterator[Registry]:
        """A client of its own for a registry other than the one in use; closed afterwards."""
        fresh, _ = await self._build(spec_registry, reuse=False)
        assert fresh is not None
        try:
            yield fresh
        finally:
            await fresh.close()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def sync(
        self,
        spec_registry: RegistrySpec,
        pods: list[PodView],
        port: int,
        register_delay: float,
        now: datetime.datetime,
        owner: ServiceRef,
        releasing: Callable[[str], bool] = lambda uid: False,
        node: NodeLookup = no_nodes,
        warmup: float = 0.0,
    ) -> SyncResult:
        """Make the registry list exactly the sync pods that can serve and are due (of those the
        operator knows; registration/serving.py), under `owner`'s name; a pod registered at an
        IP for the first time claims it. `node` looks a node up by name. For `warmup` seconds after
        it is due, a pod's entry carries a growing weight (plans.warmup_weight: a few re-writes).

        `releasing(uid)`: whether the pod's release has started. A release starts from the watch
        stream, before the index (so `pods`) shows the pod deleted; such a pod is never written
        again, even when `pods` still shows it Ready: its deregistration may be confirmed already.
        It is asked right before each write, after the registry was read."""
        try:
            registry = await self.client(spec_registry)
        except RegistryConfigError as exc:
            return SyncResult(0, Condition(False, "InvalidRegistryConfig", str(exc)), None)
        except RegistryError as exc:
            return SyncResult(0, Condition(False, "RegistryUnreachable", str(exc)), self.backoff.next())
        service = self.service_of(spec_registry)
        desired = desired_instances(pods, port, register_delay, now, owner, node, warmup)
        asked = (
            self._fingerprint,
            service,
            frozenset(desired.instances.items()),
            frozenset(desired.warming.items()),
            frozenset((p.uid, p.ip, p.registered, p.registered_ip) for p in pods),
        )
        if self._synced is not None:
            last_asked, read_at, last = self._synced
            if last_asked == asked and time.monotonic() - read_at < self.recheck_seconds:
                return dataclasses.replace(last, retry_in=desired.next_due)
        self._synced = None
        deregistered: list[tuple[Instance, Verdict]] = []
        try:
            listing = await registry.list_instances(service)
            plan = plan_registration(desired.instances, listing.instances, pods, desired.warming, owner)
            for instance in plan.claim:
                if releasing(instance.uid):
                    continue
                await registry.claim(service, instance)
                metrics.REGISTRATIONS.labels(self.backend).inc()
                log.info(
                    f"Registered {instance.pod} ({instance.address}) as an instance of {service}, "
                    f"after removing any per-IP config a previous holder of {instance.ip} left."
                )
            for instance in plan.register:
                if releasing(instance.uid):
                    continue
                await registry.register(service, instance)
                metrics.REGISTRATIONS.labels(self.backend).inc()
                log.info(f"Registered {instance.pod} ({instance.address}) as an instance of {service}.")
            for instance in plan.deregister:
                await registry.deregister(service, instance.ip, instance.port, instance.uid)
                why = _why_deregistered(instance, desired, pods)
                metrics.DEREGISTRATIONS.labels(self.backend, why.reason).inc()
                log.info(f"Deregistered {instance.pod} ({instance.address}) from {service}: {why.message}.")
                deregistered.append((instance, why))
        except RegistryError as exc:
            metrics.REGISTRY_ERRORS.labels(self.backend, "sync").inc()
            return SyncResult(0, Condition(False, "RegistryUnreachable", str(exc)), self.backoff.next())
        self.backoff.reset()
        registered = len(desired.instances)
        message = f"{registered} instance(s) registered in {registry.describe()}"
        if listing.malformed:
            message += f"; {len(listing.malformed)} entry(ies) that are not ours were left alone"
        registered_ips = {i.uid: i.ip for i in desired.instances.values()}
        to_mark = tuple(
            p
            for p in pods
            if p.uid in registered_ips and (not p.registered or p.registered_ip != registered_ips[p.uid])
        )
        result = SyncResult(
            registered,
            Condition(True, "InSync", message),
            desired.next_due,
            to_mark,
            frozenset(registered_ips),
            tuple(deregistered),
        )
        self._synced = (asked, time.monotonic(), result)
        return result

    def forget_sync(self) -> None:
        """The registry was changed by something else of ours (a release, a sweep): read it next time."""
        self._synced = None

    async def sweep(
        self,
        spec_registry: RegistrySpec,
        own_pods: list[PodView],
        live_ips: set[str],
        owner: ServiceRef,
        *,
        confirm: Confirm | None = None,
    ) -> str | None:
        """Remove our entries naming no live pod of ours, and per-IP configs at IPs no live pod of
        any InferenceService sharing the registry service holds.

        Without `confirm`, `own_pods` and `live_ips` must come from reads of the API made for this
        sweep (never from a watch cache, which may lag). With it, they may be the watches' view:
        it only says whether anything may be stale, and `confirm` then reads the API, whose answer
        alone decides what goes. A failed read or an error in the registry removes nothing.
        Returns an error message, or None when the sweep ran.
        """
        try:
            registry = await self.client(spec_registry)
        except (RegistryConfigError, RegistryError) as exc:
            return f"sweep skipped: {exc}"
        return await self._remove(
            registry, self.service_of(spec_registry), live_pods(own_pods), live_ips, owner, "Sweep of", confirm=confirm
        )

    async def remove_everything(
        self, registry: Registry, spec_registry: RegistrySpec, others_ips: set[str], owner: ServiceRef
    ) -> None:
        """Remove all of `owner`'s entries at a registry (`registry` is a client for
        `spec_registry`), and the per-IP configs no other InferenceService sharing it holds
        (`others_ips`, read fresh): the service is going, or has moved away from there.
        Raises RegistryError."""
        error = await self._remove(
            registry, self.service_of(spec_registry), {}, others_ips, owner, "Removing", raise_errors=True
        )
        assert error is None

    async def _remove(
        self,
        registry: Registry,
        service: str,
        live: dict[str, str | None],
        live_ips: set[str],
        owner: ServiceRef,
        doing: str,
        *,
        raise_errors: bool = False,
        confirm: Confirm | None = None,
    ) -> str | None:
        try:
            listing = await registry.list_instances(service)
            config_ips = await registry.list_config_ips(service)
        except RegistryError as exc:
            metrics.REGISTRY_ERRORS.labels(registry.kind, "sweep").inc()
            if raise_errors:
                raise
            return f"sweep skipped: {exc}"
        plan = plan_sweep(listing.instances, config_ips, live, live_ips, owner)
        if plan.empty:
            return None
        if confirm is not None:
            # Something may be stale: only a read of the API made now says what is.
            try:
                own_pods, live_ips = await confirm()
            except ReadFailed as exc:
                return f"sweep skipped: {exc}"
            plan = plan_sweep(listing.instances, config_ips, live_pods(own_pods), live_ips, owner)
            if plan.empty:
                return None
        self.forget_sync()
        result = await apply_sweep(registry, service, plan)
        metrics.STALE_REMOVED.labels(registry.kind, "instance").inc(result.instances_removed)
        metrics.STALE_REMOVED.labels(registry.kind, "config").inc(result.configs_removed)
        log.info(
            f"{doing} {service} in {registry.describe()} removed {result.instances_removed} instance(s) of "
            f"{owner.namespace}/{owner.name} and {result.configs_removed} per-IP config(s)."
        )
        if result.errors and raise_errors:
            raise RegistryError("; ".join(result.errors))
        return "; ".join(result.errors) or None
