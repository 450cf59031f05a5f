"""Pure builders: an InferenceService spec in, Kubernetes manifests out. No I/O here."""

from __future__ import annotations

from typing import Any

from infer_operator import kinds
from infer_operator.api.v1alpha1 import InferenceServiceSpec
from infer_operator.builders.common import BuildError, Owner
from infer_operator.builders.disruption import build_disruption_budget, disruption_budget_name
from infer_operator.builders.scripts_configmap import build_scripts_configmap
from infer_operator.builders.services import build_headless_service, build_sync_service
from infer_operator.builders.statefulset import build_statefulset


def build_all(
    owner: Owner, spec: InferenceServiceSpec, *, named_target: bool = True, release_url: str | None = None
) -> list[dict[str, Any]]:
    """Every object an InferenceService owns, in apply order (the pods' dependencies first).

    `named_target`: the Services target the pods' named sync port; False while some pod was made
    before its port had a name (an operator upgrade), so those are still reached by number.
    `release_url`: the operator's release endpoint as pods reach it (their preStop asks it).
    """
    budget = build_disruption_budget(owner, spec)
    return [
        build_scripts_configmap(owner, spec, release_url),
        build_headless_service(owner, spec, named_target),
        build_sync_service(owner, spec, named_target),
        *([budget] if budget else []),
        build_statefulset(owner, spec),
    ]


def unwanted(owner: Owner, spec: InferenceServiceSpec) -> list[tuple[kinds.Kind, str]]:
    """Owned objects this spec does not ask for: the operator removes them if they are its own."""
    if spec.pod_disruption_budget is None:
        return [(kinds.POD_DISRUPTION_BUDGET, disruption_budget_name(owner.name))]
    return []


__all__ = ["BuildError", "Owner", "build_all", "unwanted"]
