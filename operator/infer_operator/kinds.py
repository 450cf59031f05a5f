"""Every Kubernetes kind the operator touches, declared once: API path, drift marker, ownership.

`OWNED` are the kinds the operator creates for an InferenceService (server-side apply, drift
repair, garbage-collected with it); `WATCHED` are those it watches with its managed-by label
selector. Builders, handlers, the Kubernetes client and the reconciler's drift check all read
these rows; adding an owned kind is one row here plus its builder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infer_operator import labels


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    # The metadata field that moves on every write of the object's desired state. A StatefulSet's
    # status churn leaves `generation` alone, so its drift is told by generation.
    drift_marker: str = "resourceVersion"

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def path_prefix(self) -> str:
        return f"/apis/{self.api_version}" if self.group else f"/api/{self.api_version}"

    def marker(self, body: Any) -> str:
        """The drift marker of an object of this kind, e.g. "7" (generation) or "123456" (rv)."""
        meta = (body or {}).get("metadata") or {}
        return str(meta.get(self.drift_marker, ""))


CONFIG_MAP = Kind("v1", "ConfigMap", "configmaps")
SERVICE = Kind("v1", "Service", "services")
STATEFUL_SET = Kind("apps/v1", "StatefulSet", "statefulsets", drift_marker="generation")
POD = Kind("v1", "Pod", "pods")
SECRET = Kind("v1", "Secret", "secrets")
EVENT = Kind("v1", "Event", "events")
NAMESPACE = Kind("v1", "Namespace", "namespaces")
NODE = Kind("v1", "Node", "nodes")
CONTROLLER_REVISION = Kind("apps/v1", "ControllerRevision", "controllerrevisions")
POD_DISRUPTION_BUDGET = Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", drift_marker="generation")
INFERENCE_SERVICE = Kind(labels.API_VERSION, labels.KIND, labels.PLURAL)

OWNED: tuple[Kind, ...] = (CONFIG_MAP, SERVICE, STATEFUL_SET, POD_DISRUPTION_BUDGET)
WATCHED: tuple[Kind, ...] = (POD, *OWNED)

BY_NAME: dict[tuple[str, str], Kind] = {
    (k.api_version, k.kind): k
    for k in (
        CONFIG_MAP,
        SERVICE,
        STATEFUL_SET,
        POD,
        SECRET,
        EVENT,
        NAMESPACE,
        CONTROLLER_REVISION,
        POD_DISRUPTION_BUDGET,
        INFERENCE_SERVICE,
    )
}


def of(api_version: str, kind: str) -> Kind:
    """The row for an apiVersion and kind; KeyError for a kind the operator never touches."""
    return BY_NAME[(api_version, kind)]
