"""Whose an object is. The operator writes and deletes only objects its InferenceService controls.

An owned object's name is derived from the InferenceService's (`llm`, `llm-headless`,
`llm-scripts`), so it can clash with an object someone else made: a user's Service called `llm`, a
StatefulSet of a Helm chart, a PodDisruptionBudget written by hand. Server-side apply with force
would silently take such an object over, and the garbage collector would later delete it with the
InferenceService. So before its first write of a name the operator reads what is there:

- nothing: it creates the object;
- an object whose controller reference is this InferenceService (by uid): its own, written as
  usual (force takes back fields someone else changed);
- an object with no controller that carries the operator's labels for this service (managed-by and
  service): an orphan of an earlier incarnation (`kubectl delete --cascade=orphan`), adopted;
- anything else (another controller, or no controller and not labelled as ours): left alone, and
  the InferenceService is Degraded with reason ObjectNotOwned naming it.

The watches of the owned kinds tell which names are already known to be ours, so the read is
needed only for names the operator has not seen yet (a new InferenceService, a newly wanted kind).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from infer_operator import labels


def controller_of(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The object's controller reference ({kind, name, uid, ...}), if it has one."""
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def not_ours(body: Mapping[str, Any], service: str, service_uid: str) -> str | None:
    """None when `body` is the InferenceService's to write (controlled by it, or an orphan labelled
    as one of its objects); otherwise why not, in words naming who has it."""
    controller = controller_of(body)
    if controller is not None:
        if controller.get("uid") == service_uid:
            return None
        return f"it is controlled by {controller.get('kind')} {controller.get('name')} (uid {controller.get('uid')})"
    obj_labels = (body.get("metadata") or {}).get("labels") or {}
    if obj_labels.get(labels.LABEL_MANAGED_BY) == labels.MANAGED_BY and obj_labels.get(labels.LABEL_SERVICE) == service:
        return None
    return "it was made by someone else (no controller, and not labelled as this service's)"


@dataclass
class OwnedObjects:
    """What the owned-kind watches last saw: (namespace, kind, name) -> (controller uid, object uid).

    Filled from the watch events (handlers/owned.py); the reconcilers read it to skip the read before
    a write of an object known to be theirs, and to find objects they no longer want.
    """

    seen: dict[tuple[str, str, str], tuple[str | None, str]] = field(default_factory=dict)

    def observe(self, kind: str, body: Mapping[str, Any], deleted: bool) -> None:
        meta = body.get("metadata") or {}
        key = (meta.get("namespace", ""), kind, meta.get("name", ""))
        if deleted:
            self.seen.pop(key, None)
            return
        controller = controller_of(body)
        self.seen[key] = (controller.get("uid") if controller else None, meta.get("uid", ""))

    def controlled_by(self, namespace: str, kind: str, name: str, service_uid: str) -> str | None:
        """The object's uid when the watch saw it controlled by `service_uid`, else None."""
        controller, uid = self.seen.get((namespace, kind, name), (None, ""))
        return uid if controller == service_uid else None
