"""Pods of InferenceServices: an index for the reconcilers, prompt wake-ups and releases on change,
and pods that left the watch while still holding our finalizer."""

from __future__ import annotations

from typing import Any

import kopf

from infer_operator import labels
from infer_operator.podview import PodView
from infer_operator.registration.sharing import Views
from infer_operator.runtime import RUNTIME

OWNED = {labels.LABEL_MANAGED_BY: labels.MANAGED_BY}


@kopf.index("pods", labels=OWNED)
async def pods_by_service(body: kopf.Body, namespace: str, **_: Any) -> dict[tuple[str, str], PodView]:
    # A coroutine, so that it runs on the loop: kopf runs plain functions in a thread pool, and the
    # hop there and back for every pod event cost more than the function itself.
    pod = PodView.from_body(body)
    return {(namespace, pod.service): pod}


@kopf.on.event("pods", labels=OWNED)
async def pod_changed(event: dict[str, Any], body: kopf.Body, namespace: str, pods_by_service: kopf.Index,
                      services_by_place: kopf.Index, **_: Any) -> None:
    pod = PodView.from_body(body)
    if not pod.service:
        return
    views = Views(pods_by_service, services_by_place)
    if event.get("type") == "DELETED" and labels.POD_FINALIZER in pod.finalizers and not pod.deleting:
        # A pod is only ever removed after its deletion started: one that was never deleted but
        # leaves the watch holding our finalizer had its labels changed. Take it back (the event
        # shows it as it was before the change, so it is read again first).
        await RUNTIME.releaser.reclaim(pod, views, read_first=True)
    elif pod.deleting:
        # Deregistration starts at once, not on the service loop's next pass.
        RUNTIME.releaser.handle(pod, views)
    RUNTIME.services.poke(namespace, pod.service)
