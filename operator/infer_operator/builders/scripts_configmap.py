"""spec -> ConfigMap `<name>-scripts`: the launcher, probe, preStop and gate scripts plus settings.

Settings that only the scripts read (drain times, offline path, role probes) live here rather
than in the pod template, so tuning them reaches running pods without restarting GPU pods
(kubelet refreshes mounted ConfigMaps within about a minute).
"""

from __future__ import annotations

from typing import Any

from infer_operator import kinds
from infer_operator.api.v1alpha1 import InferenceServiceSpec
from infer_operator.builders.common import Owner, scripts_configmap_name
from infer_operator.builders.pod_scripts import PodSettings, pod_scripts_configmap_data
from infer_operator.builders.statefulset import readiness_probe


def build_scripts_configmap(owner: Owner, spec: InferenceServiceSpec, release_url: str | None = None) -> dict[str, Any]:
    """`release_url`: where pods ask the operator whether they left the registry (None: they do
    not wait for it)."""
    # The HTTP check must finish inside the kubelet's probe timeout, shell start-up included.
    settings = PodSettings.from_spec(
        spec, probe_timeout_seconds=max(1, readiness_probe(spec)["timeoutSeconds"] - 1), release_url=release_url
    )
    return {
        "apiVersion": kinds.CONFIG_MAP.api_version,
        "kind": kinds.CONFIG_MAP.kind,
        "metadata": owner.metadata(scripts_configmap_name(owner.name)),
        "data": pod_scripts_configmap_data(settings),
    }
