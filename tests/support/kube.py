"""Thin helpers over the official client for integration tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes import client

from infer_operator import labels


@dataclass
class Kube:
    api_client: client.ApiClient

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api_client)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api_client)

    def create_isvc(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "metadata": {**body["metadata"], "namespace": namespace}}
        return self.custom.create_namespaced_custom_object(labels.GROUP, labels.VERSION, namespace, labels.PLURAL, body)

    def get_isvc(self, namespace: str, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(labels.GROUP, labels.VERSION, namespace, labels.PLURAL, name)

    def patch_isvc(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(
            labels.GROUP, labels.VERSION, namespace, labels.PLURAL, name, patch
        )

    def delete_isvc(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(labels.GROUP, labels.VERSION, namespace, labels.PLURAL, name)

    def isvc_exists(self, namespace: str, name: str) -> bool:
        try:
            self.get_isvc(namespace, name)
            return True
        except client.ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def pods(self, namespace: str, service: str) -> dict[str, client.V1Pod]:
        items = self.core.list_namespaced_pod(namespace, label_selector=f"{labels.LABEL_SERVICE}={service}").items
        return {pod.metadata.name: pod for pod in items}

    def events(self, namespace: str, name: str) -> list[client.CoreV1Event]:
        return self.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name},involvedObject.kind={labels.KIND}"
        ).items


def is_ready(pod: client.V1Pod) -> bool:
    return pod.status.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []
    )


def condition(isvc: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (isvc.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def install_crds(cluster, *paths) -> None:
    """Apply CRD files (server-side: the InferenceService CRD is too large for the last-applied
    annotation) and wait, bounded, until every CRD they define is Established. `kubectl wait` fails
    at once on a CRD whose status has no conditions yet, so this polls instead."""
    import yaml

    names = []
    for path in paths:
        result = cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
        assert result.returncode == 0, result.stderr
        names += [doc["metadata"]["name"] for doc in yaml.safe_load_all(open(path)) if doc]
    wait_crds_established(cluster, *names)


def wait_crds_established(cluster, *names: str) -> None:
    """Wait, bounded, until each named CRD is Established (polling: see install_crds)."""
    from devtools.harness import wait_for

    def established(name: str) -> bool:
        result = cluster.kubectl(
            "get", "crd", name, "-o", "jsonpath={.status.conditions[?(@.type=='Established')].status}"
        )
        return result.returncode == 0 and result.stdout.strip() == "True"

    for name in names:
        wait_for(lambda n=name: established(n), timeout=60, interval=0.5, message=f"CRD {name} Established")
