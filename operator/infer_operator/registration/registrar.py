"""The registry side of one InferenceService: a client built from the spec and its Secret,
registration passes, the sweep, and removing everything when the service goes.

Every registry call is bounded (the client's per-call timeout). An error is never taken to mean
"gone": a failed read leaves everything in place and reports RegistrySynced=False.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from infer_operator import kinds, metrics
from infer_operator.api.v1alpha1 import RegistrySpec
from infer_operator.clients.kube import KubeClient, KubeError
from infer_operator.podview import PodView
from infer_operator.registration.actions import apply_sweep
from infer_operator.registration.plans import desired_instances, plan_registration, plan_sweep
from infer_operator.registry.backends import connect
from infer_operator.registry.base import Registry
from infer_operator.registry.model import RegistryError

log = logging.getLogger(__name__)


class RegistryConfigError(Exception):
    """The registry settings cannot be used (missing Secret, bad values): a user must act."""


@dataclass(frozen=True)
class SyncResult:
    registered: int
    condition: tuple[str, str, str]  # status, reason, message
    retry_in: float | None = None


def registry_service_name(spec_registry: RegistrySpec, isvc_name: str) -> str:
    return spec_registry.service or isvc_name


async def read_credentials(kube: KubeClient, namespace: str, secret_name: str,
                           secret_keys: Mapping[str, str]) -> tuple[dict[str, str], str]:
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
    """Registry work for one InferenceService. Rebuilds its client when settings or Secret change."""

    def __init__(self, kube: KubeClient, namespace: str, name: str, timeout: float,
                 connect: Callable[..., Registry] = connect):
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.timeout = timeout
        self._connect = connect  # the backend table's; tests give a stub registry
        self.spec_registry: RegistrySpec | None = None
        self._client: Registry | None = None
        self._fingerprint: str | None = None

    @property
    def service(self) -> str:
        return registry_service_name(self.spec_registry, self.name) if self.spec_registry else self.name

    @property
    def backend(self) -> str:
        return self.spec_registry.type if self.spec_registry else "none"

    async def client(self, spec_registry: RegistrySpec) -> Registry:
        self.spec_registry = spec_registry
        backend = spec_registry.backend
        secret_name = backend.credentials_secret(spec_registry)
        credentials: dict[str, str] = {}
        secret_version = ""
        if secret_name:
            credentials, secret_version = await read_credentials(self.kube, self.namespace, secret_name,
                                                                 backend.secret_keys)
        fingerprint = hashlib.sha256(json.dumps(
            [spec_registry.model_dump(mode="json"), secret_name, secret_version], sort_keys=True).encode()).hexdigest()
        if self._client is None or fingerprint != self._fingerprint:
            await self.close()
            try:
                self._client = self._connect(spec_registry.type, backend.section(spec_registry), credentials,
                                             self.timeout)
            except ValueError as exc:
                raise RegistryConfigError(f"registry settings are not usable: {exc}") from None
            self._fingerprint = fingerprint
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def sync(self, spec_registry: RegistrySpec, pods: list[PodView], port: int, register_delay: float,
                   now: datetime.datetime) -> SyncResult:
        """Make the registry list exactly the due, Ready, sync pods (of those the operator knows)."""
        try:
            registry = await self.client(spec_registry)
        except RegistryConfigError as exc:
            return SyncResult(0, ("False", "InvalidRegistryConfig", str(exc)), None)
        except RegistryError as exc:
            return SyncResult(0, ("False", "RegistryUnreachable", str(exc)), 5.0)
        desired = desired_instances(pods, port, register_delay, now)
        try:
            listing = await registry.list_instances(self.service)
            plan = plan_registration(desired.instances, listing.instances, pods, desired.warming)
            for instance in plan.register:
                await registry.register(self.service, instance)
                metrics.REGISTRATIONS.labels(self.backend).inc()
                log.info(f"Registered {instance.pod} ({instance.address}) as an instance of {self.service}.")
            for instance in plan.deregister:
                await registry.deregister(self.service, instance.ip, instance.port)
                metrics.DEREGISTRATIONS.labels(self.backend, "not-ready").inc()
                log.info(f"Deregistered {instance.pod} ({instance.address}) from {self.service}: it is no "
                         f"longer a Ready sync pod.")
        except RegistryError as exc:
            metrics.REGISTRY_ERRORS.labels(self.backend, "sync").inc()
            return SyncResult(0, ("False", "RegistryUnreachable", str(exc)), 5.0)
        registered = len(desired.instances)
        message = f"{registered} instance(s) registered in {registry.describe()}"
        if listing.malformed:
            message += f"; {len(listing.malformed)} entry(ies) that are not ours were left alone"
        return SyncResult(registered, ("True", "InSync", message), desired.next_due)

    async def sweep(self, spec_registry: RegistrySpec, fresh_pods: list[PodView]) -> str | None:
        """Remove entries and per-IP configs whose IP no live pod of the service holds.

        `fresh_pods` must come from a read of the API made for this sweep (never from a watch
        cache, which may lag): the caller does not sweep at all when that read failed. An error
        in the registry removes nothing. Returns an error message, or None when the sweep ran.
        """
        try:
            registry = await self.client(spec_registry)
        except (RegistryConfigError, RegistryError) as exc:
            return f"sweep skipped: {exc}"
        live_ips = {pod.ip for pod in fresh_pods if pod.ip and not pod.deleting}
        try:
            listing = await registry.list_instances(self.service)
            config_ips = await registry.list_config_ips(self.service)
        except RegistryError as exc:
            metrics.REGISTRY_ERRORS.labels(self.backend, "sweep").inc()
            return f"sweep skipped: {exc}"
        plan = plan_sweep(listing.instances, config_ips, live_ips)
        if plan.empty:
            return None
        result = await apply_sweep(registry, self.service, plan)
        metrics.STALE_REMOVED.labels(self.backend, "instance").inc(result.instances_removed)
        metrics.STALE_REMOVED.labels(self.backend, "config").inc(result.configs_removed)
        log.info(f"Sweep of {self.service} removed {result.instances_removed} stale instance(s) and "
                 f"{result.configs_removed} stale per-IP config(s).")
        return "; ".join(result.errors) or None

    async def remove_everything(self, spec_registry: RegistrySpec) -> None:
        """The InferenceService is going: remove all its instances and per-IP configs. Raises on error."""
        registry = await self.client(spec_registry)
        listing = await registry.list_instances(self.service)
        config_ips = await registry.list_config_ips(self.service)
        plan = plan_sweep(listing.instances, config_ips, live_ips=set())
        result = await apply_sweep(registry, self.service, plan)
        if result.errors:
            raise RegistryError("; ".join(result.errors))
        log.info(f"Removed {result.instances_removed} instance(s) and {result.configs_removed} per-IP "
                 f"config(s) of {self.service} from the registry.")
