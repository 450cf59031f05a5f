"""Pure builders: an InferenceService spec in, Kubernetes manifests out. No I/O here."""

from __future__ import annotations

from typing import Any

from infer_operator.api.v1alpha1 import InferenceServiceSpec
from infer_operator.builders.common import BuildError, Owner
from infer_operator.builders.scripts_configmap import build_scripts_configmap
from infer_operator.builders.services import build_headless_service, build_sync_service
from infer_operator.builders.statefulset import build_statefulset


def build_all(owner: Owner, spec: InferenceServiceSpec, *, named_target: bool = True) -> list[dict[str, Any]]:
    """Every object an InferenceService owns, in apply order (the pods' dependencies first).

    `named_target`: the Services target the pods' named sync port; False while some pod was made
    before its port had a name (an operator upgrade), so those are still reached by number.
    """
    return [
        build_scripts_configmap(owner, spec),
        build_headless_service(owner, spec, named_target),
        build_sync_service(owner, spec, named_target),
        build_statefulset(owner, spec),
    ]


__all__ = ["BuildError", "Owner", "build_all"]
