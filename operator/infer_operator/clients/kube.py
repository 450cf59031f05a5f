"""A small async Kubernetes client: the handful of calls the operator makes, over aiohttp.

Credentials come from the `kubernetes` package's config loaders (in-cluster or kubeconfig), so
every auth method they support works; requests go through aiohttp (which kopf already uses),
so nothing blocks the event loop and every call has a timeout.
"""

from __future__ import annotations

import json
import logging
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from kubernetes import config as kube_config
from kubernetes.client import Configuration

from infer_operator import jsonwire, kinds, labels

log = logging.getLogger(__name__)


class KubeError(Exception):
    """The API answered with an error (status >= 400) or could not be reached (status 0)."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def invalid(self) -> bool:
        """The request itself is wrong (bad object, forbidden field change): retrying won't help.

        Server-side apply reports an unparseable field value (e.g. a bad resource quantity) as a
        500 conversion failure rather than a 422, so that case counts as invalid too.
        """
        if self.status in (400, 422):
            return True
        return self.status == 500 and "convert" in self.message and "object" in self.message


def resource_path(
    api_version: str, kind: str, namespace: str | None, name: str | None = None, subresource: str | None = None
) -> str:
    row = kinds.of(api_version, kind)
    path = row.path_prefix
    if namespace:
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{row.plural}"
    if name:
        path += f"/{quote(name, safe='')}"
    if subresource:
        path += f"/{subresource}"
    return path


def load_configuration(kubeconfig: str | None = None) -> Configuration:
    cfg = Configuration()
    if kubeconfig is None:
        try:
            kube_config.load_incluster_config(client_configuration=cfg)
            return cfg
        except kube_config.ConfigException:
            pass
    kube_config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    return cfg


@dataclass
class Timeouts:
    connect: float = 5.0
    request: float = 30.0


class KubeClient:
    def __init__(self, cfg: Configuration, timeouts: Timeouts | None = None):
        self._cfg = cfg
        self._timeouts = timeouts or Timeouts()
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None, timeouts: Timeouts | None = None) -> KubeClient:
        return cls(load_configuration(kubeconfig), timeouts)

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self._cfg.verify_ssl:
            return False
        context = ssl.create_default_context(cafile=self._cfg.ssl_ca_cert or None)
        if self._cfg.cert_file:
            context.load_cert_chain(self._cfg.cert_file, self._cfg.key_file)
        return context

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl(), limit=64)
            self._session = aiohttp.ClientSession(base_url=self._cfg.host, connector=connector)
        return self._session

    def _auth_headers(self) -> dict[str, str]:
        if self._cfg.refresh_api_key_hook is not None:
            self._cfg.refresh_api_key_hook(self._cfg)
        token = self._cfg.get_api_key_with_prefix("authorization") or self._cfg.get_api_key_with_prefix("BearerToken")
        return {"Authorization": token} if token else {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Any:
        headers = {"Accept": "application/json", **self._auth_headers()}
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        client_timeout = aiohttp.ClientTimeout(total=timeout or self._timeouts.request, connect=self._timeouts.connect)
        try:
            async with self._session_now().request(
                method, path, params=params, data=data, headers=headers, timeout=client_timeout
            ) as response:
                text = await response.text()
                if response.status >= 400:
                    raise _error_from(response.status, text)
                return jsonwire.loads(text) if text else None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise KubeError(0, "Unreachable", f"{method} {path}: {type(exc).__name__}: {exc}") from exc

    # The few verbs the operator uses -------------------------------------------------------

    async def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Any:
        return await self.request("GET", resource_path(api_version, kind, namespace, name))

    async def list(
        self, api_version: str, kind: str, namespace: str | None, label_selector: str | None = None
    ) -> list[Any]:
        params = {"labelSelector": label_selector} if label_selector else None
        result = await self.request("GET", resource_path(api_version, kind, namespace), params=params)
        return list(result.get("items") or [])

    async def create(self, obj: dict[str, Any]) -> Any:
        """POST a new object (its metadata may use generateName)."""
        meta = obj["metadata"]
        return await self.request(
            "POST", resource_path(obj["apiVersion"], obj["kind"], meta.get("namespace")), body=obj
        )

    async def apply(self, obj: dict[str, Any], *, field_manager: str = labels.FIELD_MANAGER) -> Any:
        """Server-side apply with our one field manager; force takes back fields others changed."""
        meta = obj["metadata"]
        path = resource_path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        return await self.request(
            "PATCH",
            path,
            body=obj,
            content_type="application/apply-patch+yaml",
            params={"fieldManager": field_manager, "force": "true"},
        )

    async def merge_patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        subresource: str | None = None,
    ) -> Any:
        path = resource_path(api_version, kind, namespace, name, subresource)
        return await self.request("PATCH", path, body=patch, content_type="application/merge-patch+json")

    async def strategic_patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        subresource: str | None = None,
    ) -> Any:
        """A strategic merge patch (built-in kinds only): lists such as pod conditions merge by key."""
        path = resource_path(api_version, kind, namespace, name, subresource)
        return await self.request("PATCH", path, body=patch, content_type="application/strategic-merge-patch+json")

    async def delete(
        self, api_version: str, kind: str, namespace: str | None, name: str, *, uid: str | None = None
    ) -> Any:
        """Delete; with `uid`, only that incarnation of the object (never a recreated namesake)."""
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if uid:
            body["preconditions"] = {"uid": uid}
        return await self.request("DELETE", resource_path(api_version, kind, namespace, name), body=body)

    async def evict(self, namespace: str, name: str, *, uid: str | None = None) -> Any:
        """Delete a pod through the Eviction API, so PodDisruptionBudgets are respected: a
        KubeError with status 429 says a budget refuses it now (try again later); with `uid`,
        only that incarnation of the pod."""
        body: dict[str, Any] = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        if uid:
            body["deleteOptions"] = {"preconditions": {"uid": uid}}
        return await self.request("POST", resource_path("v1", "Pod", namespace, name, "eviction"), body=body)


def _error_from(status: int, text: str) -> KubeError:
    try:
        payload = jsonwire.loads(text)
        return KubeError(status, payload.get("reason", ""), payload.get("message", text))
    except (ValueError, AttributeError):
        return KubeError(status, "", text[:500])
