"""Kubernetes Events the operator posts about its objects (InferenceServices, pods), with its own
API client.

Events are what `kubectl describe` shows; they help and never decide anything. So `post` never
waits and never raises: events go into a bounded queue that one background task sends, oldest
first, and an event the API refuses or cannot take is logged and dropped. Every event the
operator posts goes this one way, from a reconcile pass, a release started from the watch stream
or a cleanup after a deletion alike (none needs a kopf handler's context).
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import logging
import os
from typing import Any

from infer_operator import kinds
from infer_operator.clients.kube import KubeClient, KubeError

log = logging.getLogger(__name__)

COMPONENT = "infer-operator"
MAX_MESSAGE = 1024  # the API server refuses longer event messages
MAX_QUEUED = 1000  # events waiting to be sent; beyond that the oldest are dropped
CLOSE_SECONDS = 5.0  # how long closing waits for queued events to go out


def reference(api_version: str, kind: str, namespace: str, name: str, uid: str) -> dict[str, Any]:
    """An Event's involvedObject."""
    return {"apiVersion": api_version, "kind": kind, "namespace": namespace, "name": name, "uid": uid}


def event_body(
    involved: dict[str, Any], event_type: str, reason: str, message: str, now: datetime.datetime, instance: str
) -> dict[str, Any]:
    """A core/v1 Event about `involved` (a reference: apiVersion, kind, namespace, name, uid)."""
    if len(message) > MAX_MESSAGE:
        half = (MAX_MESSAGE - 3) // 2
        message = f"{message[:half]}...{message[-half:]}"
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{involved['name']}.", "namespace": involved["namespace"]},
        "involvedObject": involved,
        "type": event_type,
        "reason": reason,
        "message": message,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class EventRecorder:
    """Posts Events in the background, in order; one per operator process."""

    def __init__(self, kube: KubeClient, *, instance: str | None = None, max_queued: int = MAX_QUEUED):
        self.kube = kube
        self.instance = instance or os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or COMPONENT
        self._queue: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_queued)
        self._ready = asyncio.Event()  # something is queued
        self._idle = asyncio.Event()  # everything queued was sent (or given up on)
        self._sender: asyncio.Task | None = None
        self.dropped = 0  # events dropped because the queue was full (logged once each time it fills)

    def post(self, involved: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        """Queue an event about `involved` (see `reference`). Must be called on the event loop."""
        if involved.get("kind") == kinds.EVENT.kind or not involved.get("namespace"):
            return  # no events about events; every object the operator reports on is namespaced
        if len(self._queue) == self._queue.maxlen:
            if not self.dropped:
                log.warning(
                    f"Events are posted slower than they come; dropping the oldest ({self._queue.maxlen} "
                    f"wait to be sent)."
                )
            self.dropped += 1
        self._queue.append(
            event_body(involved, event_type, reason, message, datetime.datetime.now(datetime.UTC), self.instance)
        )
        self._ready.set()
        self._idle.clear()
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send(), name="post events")

    async def _send(self) -> None:
        while True:
            while self._queue:
                body = self._queue.popleft()
                try:
                    await self.kube.create(body)
                except KubeError as exc:
                    involved = body["involvedObject"]
                    log.warning(
                        f"Could not post the {body['reason']} event about {involved['kind']} "
                        f"{involved['namespace']}/{involved['name']}: {exc}"
                    )
            self.dropped = 0
            self._ready.clear()
            self._idle.set()
            await self._ready.wait()

    async def close(self, timeout: float = CLOSE_SECONDS) -> None:
        """Send what is queued (for at most `timeout` seconds), then stop."""
        if self._sender is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            log.warning(f"{len(self._queue)} event(s) were not posted before the operator stopped.")
        self._sender.cancel()
        await asyncio.gather(self._sender, return_exceptions=True)
        self._sender = None
