"""Owned objects (kinds.OWNED): put back promptly when edited or deleted, removed when no longer
wanted; whose each one is, as the watch last saw it (ownership.py)."""

from __future__ import annotations

from typing import Any

import kopf

from infer_operator import kinds, labels
from infer_operator.runtime import RUNTIME

OWNED = {labels.LABEL_MANAGED_BY: labels.MANAGED_BY}


def _on_change(kind: kinds.Kind):
    # A coroutine, so it runs on the loop: kopf runs plain functions in threads, and waking a
    # service's loop (an asyncio.Event) is not safe from another thread.
    async def changed(event: dict[str, Any], body: kopf.Body, namespace: str, name: str, **_: Any) -> None:
        deleted = event.get("type") == "DELETED"
        RUNTIME.owned.observe(kind.kind, body, deleted)
        service = (body.get("metadata", {}).get("labels") or {}).get(labels.LABEL_SERVICE)
        record = RUNTIME.services.get(namespace, service) if service else None
        if record is None or record.reconciler is None:
            return
        if record.reconciler.is_drift(kind, name, body, deleted=deleted):
            record.poke(objects=True)
        elif kind is kinds.STATEFUL_SET and record.reconciler.observe_statefulset(body):
            record.poke()  # a new template revision: outdated pods to roll

    changed.__name__ = changed.__qualname__ = f"{kind.plural}_changed"
    return changed


for _kind in kinds.OWNED:
    kopf.on.event(_kind.group, _kind.version, _kind.plural, labels=OWNED)(_on_change(_kind))
