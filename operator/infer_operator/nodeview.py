"""A small, immutable view of a node: whether pods on it can be reached.

The node lifecycle controller marks a node whose kubelet stopped reporting (a partition, a kernel
panic, a dead kubelet) `Ready=Unknown`, taints it `node.kubernetes.io/unreachable` (or
`not-ready` for `Ready=False`), and marks its pods' `Ready` condition False; their containers'
own readiness (`ContainersReady`) stays as the kubelet last reported it. The pods are deleted only
after their toleration of the taint (300 s by default): meanwhile they cannot answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Taints the node lifecycle controller puts on a node whose pods cannot be reached.
UNREACHABLE_TAINTS = ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")


@dataclass(frozen=True)
class NodeView:
    name: str
    ready: str | None  # the Ready condition's status: "True", "False", "Unknown"; None when not reported
    taints: tuple[str, ...] = ()  # keys of the unreachable taints it carries (UNREACHABLE_TAINTS)

    @classmethod
    def from_body(cls, body: Any) -> NodeView:
        meta = body.get("metadata") or {}
        status = body.get("status") or {}
        ready = next(
            (
                c.get("status")
                for c in status.get("conditions") or []
                if isinstance(c, dict) and c.get("type") == "Ready"
            ),
            None,
        )
        taints = tuple(
            sorted(
                {
                    t.get("key")
                    for t in (body.get("spec") or {}).get("taints") or []
                    if isinstance(t, dict) and t.get("key") in UNREACHABLE_TAINTS
                }
            )
        )
        return cls(name=meta.get("name", ""), ready=ready, taints=taints)

    @property
    def lost(self) -> str | None:
        """Why pods on this node cannot be reached, or None while it is Ready and untainted."""
        if self.ready in ("False", "Unknown"):
            return f"node {self.name} is not Ready ({self.ready})"
        if self.taints:
            return f"node {self.name} is tainted {', '.join(self.taints)}"
        return None


class NodeStates:
    """Whether each node seen was lost, as last seen: a change is worth a look at its pods."""

    def __init__(self) -> None:
        self._lost: dict[str, str | None] = {}

    def changed(self, name: str, lost: str | None) -> bool:
        """Record the node's state (None: not lost; a node deleted counts as not lost and is
        forgotten); whether it differs from the last one recorded (a node first seen lost does)."""
        before = self._lost.get(name)
        if lost is None:
            self._lost.pop(name, None)
        else:
            self._lost[name] = lost
        return before != lost
