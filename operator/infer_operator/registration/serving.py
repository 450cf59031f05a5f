"""Whether a sync pod can serve: the one definition registration, deregistration, the sweep and the
status counts use.

A sync pod is listed in the registry exactly while:

- it is not terminating;
- its containers are ready (`ContainersReady`: the app answers its role's probe);
- every readiness gate of its spec other than the operator's own is True (a model-warm gate,
  a load balancer controller's gate): the pod's own `Ready` waits for the operator's gate, which
  opens on registration, so `Ready` itself cannot be the test;
- its node is not lost: not `Ready=False/Unknown`, not tainted `node.kubernetes.io/unreachable`
  or `not-ready` (the node lifecycle controller's marks of a partition or a dead kubelet);
- it has an address, and its entry is at that address (`status.podIP` now: a pod whose sandbox
  was re-created with another IP is listed at the new one only);
- and it has been ready for `registerDelaySeconds` as the operator's own clock counts it (the
  warm-up: registration/plans.desired_instances).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from infer_operator import labels
from infer_operator.nodeview import NodeView
from infer_operator.podview import PodView

# A node by name (None when the operator has not seen it: not taken as lost).
NodeLookup = Callable[[str], NodeView | None]


def no_nodes(name: str) -> NodeView | None:
    return None


@dataclass(frozen=True)
class Verdict:
    """Whether a pod can serve; when not, why (`reason`: a CamelCase word for events and logs,
    `message`: a sentence fragment naming what is missing)."""

    ok: bool
    reason: str = ""
    message: str = ""


SERVES = Verdict(True)


def can_serve(pod: PodView, node: NodeLookup = no_nodes) -> Verdict:
    """Whether a sync pod may be listed now (all but the warm-up, which counts time)."""
    if pod.deleting:
        return Verdict(False, "Terminating", "it is being deleted")
    if pod.role != labels.ROLE_SYNC or pod.ordinal is None:
        return Verdict(False, "NotSync", "it does not run the sync role")
    if not pod.ip:
        return Verdict(False, "NoAddress", "it has no IP")
    if not pod.serving:
        return Verdict(False, "ContainersNotReady", "its containers are not ready")
    if pod.gates_pending:
        gates = ", ".join(pod.gates_pending)
        return Verdict(False, "ReadinessGatePending", f"its readiness gate {gates} is not True")
    found = node(pod.node) if pod.node else None
    if found is not None and (lost := found.lost):
        return Verdict(False, "NodeLost", lost)
    return SERVES
