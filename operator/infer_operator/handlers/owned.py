"""Owned objects (StatefulSet, Services, ConfigMap): put back promptly when edited or deleted."""

from __future__ import annotations

from typing import Any

import kopf

from infer_operator import labels
from infer_operator.runtime import RUNTIME

OWNED = {labels.LABEL_MANAGED_BY: labels.MANAGED_BY}


def _changed(kind: str, event: dict[str, Any], body: kopf.Body, namespace: str, name: str) -> None:
    service = (body.get("metadata", {}).get("labels") or {}).get(labels.LABEL_SERVICE)
    reconciler = RUNTIME.reconcilers.get((namespace, service)) if service else None
    if reconciler is None:
        return
    if reconciler.is_drift(kind, name, body, deleted=event.get("type") == "DELETED"):
        RUNTIME.poke(namespace, service, objects=True)


@kopf.on.event("apps", "v1", "statefulsets", labels=OWNED)
def statefulset_changed(event: dict[str, Any], body: kopf.Body, namespace: str, name: str, **_: Any) -> None:
    _changed("StatefulSet", event, body, namespace, name)


@kopf.on.event("v1", "services", labels=OWNED)
def service_changed(event: dict[str, Any], body: kopf.Body, namespace: str, name: str, **_: Any) -> None:
    _changed("Service", event, body, namespace, name)


@kopf.on.event("v1", "configmaps", labels=OWNED)
def configmap_changed(event: dict[str, Any], body: kopf.Body, namespace: str, name: str, **_: Any) -> None:
    _changed("ConfigMap", event, body, namespace, name)
