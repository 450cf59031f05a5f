"""Pods of InferenceServices: an index for the reconcilers, and prompt wake-ups on change."""

from __future__ import annotations

from typing import Any

import kopf

from infer_operator import labels
from infer_operator.podview import PodView
from infer_operator.runtime import RUNTIME

OWNED = {labels.LABEL_MANAGED_BY: labels.MANAGED_BY}


@kopf.index("pods", labels=OWNED)
def pods_by_service(body: kopf.Body, namespace: str, **_: Any) -> dict[tuple[str, str], PodView]:
    pod = PodView.from_body(body)
    return {(namespace, pod.service): pod}


@kopf.on.event("pods", labels=OWNED)
async def pod_changed(body: kopf.Body, namespace: str, pods_by_service: kopf.Index, **_: Any) -> None:
    pod = PodView.from_body(body)
    if not pod.service:
        return
    if pod.deleting:
        # Deregistration starts at once, not on the service loop's next pass.
        RUNTIME.releaser.handle(pod, lambda: pods_by_service.get((namespace, pod.service), ()))
    RUNTIME.services.poke(namespace, pod.service)
