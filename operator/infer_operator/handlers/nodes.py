"""Nodes: an index of what the operator needs to know of each (is it lost?), and a prompt look at
the services with pods on a node whose state changes (registration/serving.py)."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from infer_operator import kinds
from infer_operator.nodeview import NodeView
from infer_operator.runtime import RUNTIME

log = logging.getLogger(__name__)


@kopf.index(kinds.NODE.group, kinds.NODE.version, kinds.NODE.plural)
async def nodes_by_name(body: kopf.Body, name: str, **_: Any) -> dict[str, NodeView]:
    return {name: NodeView.from_body(body)}


@kopf.on.event(kinds.NODE.group, kinds.NODE.version, kinds.NODE.plural)
async def node_changed(
    event: dict[str, Any], body: kopf.Body, name: str, pods_by_service: kopf.Index, **_: Any
) -> None:
    lost = None if event.get("type") == "DELETED" else NodeView.from_body(body).lost
    if not RUNTIME.nodes.changed(name, lost):
        return
    if lost:
        log.warning(f"Node {name} is lost ({lost}): its sync pods leave the registry.")
    else:
        log.info(f"Node {name} is back: its pods that can serve are registered again.")
    for (namespace, service), pods in pods_by_service.items():
        if any(pod.node == name for pod in pods):
            RUNTIME.services.poke(namespace, service)
