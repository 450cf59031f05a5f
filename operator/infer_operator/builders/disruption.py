"""The optional PodDisruptionBudget of an InferenceService (spec.podDisruptionBudget)."""

from __future__ import annotations

from typing import Any

from infer_operator import kinds, labels
from infer_operator.api.v1alpha1 import InferenceServiceSpec
from infer_operator.builders.common import Owner


def disruption_budget_name(service: str) -> str:
    return service


def build_disruption_budget(owner: Owner, spec: InferenceServiceSpec) -> dict[str, Any] | None:
    """A PDB over all the service's pods, or None when the spec asks for none.

    With neither limit set it allows updateStrategy.rollingUpdate.maxUnavailable, the budget the
    operator's own restarts keep to. `unhealthyPodEvictionPolicy: AlwaysAllow`: a pod that is not
    Ready (loading its model, or stuck) serves nothing, so evicting it costs no availability, and a
    stuck pod must not block a rollout or a drain forever.
    """
    budget = spec.pod_disruption_budget
    if budget is None:
        return None
    if budget.min_available is not None:
        limit: dict[str, Any] = {"minAvailable": budget.min_available}
    elif budget.max_unavailable is not None:
        limit = {"maxUnavailable": budget.max_unavailable}
    else:
        limit = {"maxUnavailable": spec.max_unavailable}
    return {
        "apiVersion": kinds.POD_DISRUPTION_BUDGET.api_version,
        "kind": kinds.POD_DISRUPTION_BUDGET.kind,
        "metadata": owner.metadata(disruption_budget_name(owner.name)),
        "spec": {
            **limit,
            "selector": {"matchLabels": labels.selector_labels(owner.name)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
