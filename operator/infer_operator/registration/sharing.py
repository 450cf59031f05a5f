"""InferenceServices sharing one registry service (blue/green, two model versions): who they are,
and which IPs their live pods hold.

Instance entries name their owner, so each service only ever removes its own. Per-IP configs
name nobody: one goes only when no live pod of any sharer holds its IP. Sharers come from the
watch of InferenceServices (`Views.sharers`, kopf's index by registry place, complete before any
handler runs); their pods are read fresh from the API wherever something is deleted for good.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from infer_operator import kinds, labels
from infer_operator.clients.kube import KubeClient
from infer_operator.nodeview import NodeView
from infer_operator.podview import PodView

ServiceKey = tuple[str, str]  # (namespace, name) of an InferenceService


@dataclass(frozen=True)
class Views:
    """What the operator's watches show: pods by service, services by registry place, nodes by name."""

    pods: Mapping[ServiceKey, Iterable[PodView]]
    places: Mapping[Any, Iterable[ServiceKey]]
    nodes: Mapping[str, Iterable[NodeView]] = field(default_factory=dict)

    def node(self, name: str) -> NodeView | None:
        """The node as last seen, or None when the operator has not seen it."""
        return next(iter(self.nodes.get(name, ())), None)

    def pods_of(self, namespace: str, name: str) -> list[PodView]:
        return list(self.pods.get((namespace, name), ()))

    def sharers(self, place: Any) -> list[ServiceKey]:
        """Every InferenceService registering at `place` (itself included); [] for no place."""
        return sorted(set(self.places.get(place, ()))) if place is not None else []


NO_VIEWS = Views({}, {})


async def read_pods(kube: KubeClient, services: Iterable[ServiceKey]) -> list[PodView]:
    """The pods of these services, read from the API now (one LIST per namespace). Raises KubeError."""
    by_namespace: dict[str, set[str]] = {}
    for namespace, name in services:
        by_namespace.setdefault(namespace, set()).add(name)
    pods: list[PodView] = []
    for namespace, names in sorted(by_namespace.items()):
        selector = f"{labels.LABEL_SERVICE} in ({','.join(sorted(names))})"
        bodies = await kube.list(kinds.POD.api_version, kinds.POD.kind, namespace, label_selector=selector)
        pods.extend(PodView.from_body(body) for body in bodies)
    return pods


def live_ips(pods: Iterable[PodView]) -> set[str]:
    return {pod.ip for pod in pods if pod.ip and not pod.deleting}
