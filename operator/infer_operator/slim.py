"""What the operator keeps of an object its watches deliver, before kopf processes it.

kopf wraps, indexes and passes on every watch event's whole object, and at a restart holds every
listed object at once until its handlers have run. Most of a pod is of no use here: the operator's
decisions read the small `PodView`, and `metadata.managedFields` (server-side apply's bookkeeping,
often the largest part of an object) is read by nothing at all. So each object is cut down, in
place, as it leaves the watch stream:

- every kind: `metadata.managedFields` goes; `metadata` stays otherwise whole, as kopf's filters
  and finalizer logic and the ownership records read it;
- pods: of `spec` and `status`, only what `PodView.from_body` reads stays (the first container's
  ports, the grace period, the node, the readiness gates; the phase, the IP, the conditions);
- nodes: their name, taints and Ready condition (`NodeView.from_body`);
- the owned kinds (StatefulSets, Services, ConfigMaps, PodDisruptionBudgets): their watches look
  at the metadata only (drift markers, controllers), and at a StatefulSet's revisions, so their
  spec and data go, and of a status only `observedGeneration` and `updateRevision` stay.

InferenceServices stay whole (but for managedFields): the reconciler reads their spec and status.
"""

from __future__ import annotations

from typing import Any

_POD_SPEC = ("terminationGracePeriodSeconds", "nodeName", "readinessGates")
_POD_STATUS = ("phase", "podIP", "conditions")
_OWNED_STATUS = ("observedGeneration", "updateRevision")

POD, OWNED, NODE, WHOLE = "pod", "owned", "node", "whole"


def slim(obj: Any, shape: str) -> None:
    """Cut a watched object down to what the operator reads of its kind (`shape`: POD, OWNED, NODE
    or WHOLE), in place; anything else is left alone."""
    if not isinstance(obj, dict):
        return
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    if shape == NODE:
        _slim_node(obj)
        return
    if shape == OWNED:
        for key in ("spec", "data", "binaryData"):
            obj.pop(key, None)
        status = obj.get("status")
        if isinstance(status, dict):
            obj["status"] = {key: status[key] for key in _OWNED_STATUS if key in status}
    if shape != POD:
        return
    spec = obj.get("spec")
    if isinstance(spec, dict):
        containers = spec.get("containers")
        kept: dict[str, Any] = {key: spec[key] for key in _POD_SPEC if key in spec}
        if isinstance(containers, list) and containers and isinstance(containers[0], dict):
            first = containers[0]
            kept["containers"] = [{key: first[key] for key in ("name", "ports") if key in first}]
        obj["spec"] = kept
    status = obj.get("status")
    if isinstance(status, dict):
        obj["status"] = {key: status[key] for key in _POD_STATUS if key in status}


def _slim_node(obj: dict[str, Any]) -> None:
    """A node's name and identity, its taints and its Ready condition: its labels, annotations,
    images, addresses and capacity are nobody's business here (a node carries kilobytes of them)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("labels", None)
        meta.pop("annotations", None)
    spec = obj.get("spec")
    obj["spec"] = {"taints": spec["taints"]} if isinstance(spec, dict) and "taints" in spec else {}
    status = obj.get("status")
    if isinstance(status, dict):
        ready = [c for c in status.get("conditions") or [] if isinstance(c, dict) and c.get("type") == "Ready"]
        obj["status"] = {"conditions": ready}
