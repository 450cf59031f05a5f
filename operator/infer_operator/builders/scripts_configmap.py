"""spec -> ConfigMap `<name>-scripts`: the launcher, probe, preStop and gate scripts plus settings.

Settings that only the scripts read (drain times, offline path, role probes) live here rather
than in the pod template, so tuning them reaches running pods without restarting GPU pods
(kubelet refreshes mounted ConfigMaps within about a minute).
"""

from __future__ import annotations

from typing import Any

from infer_operator.api.v1alpha1 import InferenceServiceSpec
from infer_operator.builders.common import Owner, scripts_configmap_name
from infer_operator.builders.pod_scripts import pod_scripts_configmap_data
from infer_operator.builders.statefulset import readiness_probe


def build_scripts_configmap(owner: Owner, spec: InferenceServiceSpec) -> dict[str, Any]:
    def probe(role: Any) -> dict[str, Any] | None:
        return role.readiness_probe.as_kubernetes() if role.readiness_probe else None

    data = pod_scripts_configmap_data(
        sync_port=spec.sync.port,
        drain_seconds=spec.lifecycle.drain_seconds,
        async_drain_seconds=spec.lifecycle.async_drain_seconds,
        offline_path=spec.lifecycle.offline_path,
        sync_probe=probe(spec.sync),
        async_probe=probe(spec.async_),
        # The HTTP check must finish inside the kubelet's probe timeout, shell start-up included.
        probe_timeout_seconds=max(1, readiness_probe(spec)["timeoutSeconds"] - 1),
    )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": owner.metadata(scripts_configmap_name(owner.name)),
        "data": data,
    }
