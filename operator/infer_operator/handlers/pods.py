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
async def pod_changed(
    event: dict[str, Any],
    body: kopf.Body,
    namespace: str,
    pods_by_service: kopf.Index,
    services_by_place: kopf.Index,
    nodes_by_name: kopf.Index,
    **_: Any,
) -> None:
    pod = PodView.from_body(body)
    if not pod.service:
        return
    views = Views(pods_by_service, services_by_place, nodes_by_name)
    if RUNTIME.views is None:
        RUNTIME.views = views  # for release_early: kopf's indexes are the same objects on every call
        # The deletions seen before: after a (re)start, pods deleted while the operator was away
        # are released first, as soon as the indexes are complete (kopf runs no handler before).
        for waiting in RUNTIME.pending_releases.values():
            RUNTIME.releaser.handle(waiting, views)
        RUNTIME.pending_releases.clear()
    if event.get("type") == "DELETED" and (labels.POD_FINALIZER in pod.finalizers or not pod.deleting):
        # A pod is removed only once every finalizer is gone, and only after its deletion started:
        # one that leaves the watch holding ours, or not being deleted, had its labels changed
        # (deleted or not). Take it back, or release it if it is being deleted; the event shows it
        # as it was before the change, so it is read again first.
        await RUNTIME.releaser.reclaim(pod, views, read_first=True)
    elif pod.lost and not pod.deleting:
        # Still watched, but a label of ours is gone (its service or name label): put it back.
        await RUNTIME.releaser.reclaim(pod, views)
    elif pod.deleting:
        # Deregistration starts at once, not on the service loop's next pass. (Usually it has
        # started already, as the event passed the watch stream: release_early below.)
        RUNTIME.releaser.handle(pod, views)
    RUNTIME.services.poke(namespace, pod.service)


def release_early(event: dict[str, Any]) -> None:
    """A pod event as it leaves the API client, before kopf queues it: a deleted pod holding our
    finalizer starts its release here. Under a burst of deletions kopf works through its queue one
    event at a time between everything else on the loop; measured (bench deregistration's stages),
    that queue was a large part of the time from the DELETE to the key's removal (bench/README.md).
    kopf's handler (pod_changed) sees the same event later; the release, one per pod, is not
    started twice. Called by the watch stream hook (kopf_hooks/watchstream.py)."""
    body = event.get("object")
    if not isinstance(body, dict) or event.get("type") == "DELETED":
        # A DELETED event that still shows our finalizer is a relabelled pod's previous state:
        # the handler reads it first.
        return
    meta = body.get("metadata") or {}
    if meta.get("deletionTimestamp") and labels.POD_FINALIZER in (meta.get("finalizers") or ()):
        pod = PodView.from_body(body)
        if not pod.service:
            return
        if RUNTIME.views is None:
            # No handler has run yet: kopf is still indexing its first listings (the holder of a
            # reused IP is not known before). The first handler starts it.
            RUNTIME.pending_releases[pod.uid] = pod
        else:
            RUNTIME.releaser.handle(pod, RUNTIME.views)
