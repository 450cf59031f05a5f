"""Removing one of the operator's finalizers: the one way it is done, for pods and InferenceServices.

A merge patch replaces the whole list, so every write carries the resourceVersion it was computed
from; a conflict means someone changed the object meanwhile, and the list is read again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from infer_operator.clients.kube import KubeClient, KubeError
from infer_operator.kinds import Kind


def without(finalizers: list[str], finalizer: str) -> list[str]:
    return [f for f in finalizers if f != finalizer]


async def remove_finalizer(
    kube: KubeClient,
    kind: Kind,
    namespace: str,
    name: str,
    finalizer: str,
    *,
    uid: str | None = None,
    known: Mapping[str, Any] | None = None,
    attempts: int = 10,
    pause: float = 1.0,
) -> bool:
    """Remove `finalizer` from one object. True once it is gone: removed, never there, the object
    deleted, or replaced by a namesake whose uid differs from `uid` (that one is not ours to touch).

    `known` is the object's metadata if the caller has just read it (saves one GET). Conflicts and
    transient errors (unreachable, 5xx) are retried up to `attempts` times, `pause` seconds apart
    for transient ones; False when they never cleared. Other errors (403, 422) raise KubeError.
    """
    meta = dict(known) if known is not None else None
    for _ in range(attempts):
        if meta is None:
            try:
                meta = (await kube.get(kind.api_version, kind.kind, namespace, name))["metadata"]
            except KubeError as exc:
                if exc.not_found:
                    return True
                if not _transient(exc):
                    raise
                await asyncio.sleep(pause)
                continue
        if uid is not None and meta.get("uid") != uid:
            return True
        finalizers = list(meta.get("finalizers") or [])
        if finalizer not in finalizers:
            return True
        patch = {
            "metadata": {"finalizers": without(finalizers, finalizer), "resourceVersion": meta.get("resourceVersion")}
        }
        try:
            await kube.merge_patch(kind.api_version, kind.kind, namespace, name, patch)
            return True
        except KubeError as exc:
            if exc.not_found:
                return True
            if not exc.conflict and not _transient(exc):
                raise
            if not exc.conflict:
                await asyncio.sleep(pause)
        meta = None
    return False


def _transient(exc: KubeError) -> bool:
    return exc.status == 0 or exc.status >= 500 or exc.status == 429
