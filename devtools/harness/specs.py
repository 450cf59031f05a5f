"""Sample InferenceService manifests for tests, the demo and the benchmarks: small, valid, easy to vary."""

from __future__ import annotations

import copy
from typing import Any

from infer_operator import labels


def isvc_body(name: str = "llm", namespace: str = "default", **spec_overrides: Any) -> dict[str, Any]:
    """An InferenceService manifest (a dict). ``spec_overrides`` replace whole top-level spec fields
    (``**{"async": ...}`` for the keyword); ``None`` leaves the field unset. The fields given come
    first, in the order given, so that a printed manifest reads as the caller wrote it."""
    defaults: dict[str, Any] = {
        "replicas": 5,
        "syncReplicas": 2,
        # Short grace: the local control plane honours it, and tests should not wait a minute per pod.
        "lifecycle": {"drainSeconds": 1, "terminationGracePeriodSeconds": 3},
        "template": {
            "metadata": {"labels": {"team": "ml"}},
            "spec": {
                "containers": [
                    {
                        "name": "model",
                        "image": "registry.example/llm:1",
                        "command": ["python", "-m", "app"],
                        "resources": {"limits": {"nvidia.com/gpu": 1}},
                    }
                ]
            },
        },
    }
    spec = {**copy.deepcopy(spec_overrides), **{k: v for k, v in defaults.items() if k not in spec_overrides}}
    spec = {key: value for key, value in spec.items() if value is not None}
    return {
        "apiVersion": labels.API_VERSION,
        "kind": labels.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def etcd_registry(endpoint: str, prefix: str = "/services", **extra: Any) -> dict[str, Any]:
    """``spec.registry`` for one etcd endpoint (``http://host:port``) under ``prefix``; ``extra``
    adds fields such as ``service`` or ``registerDelaySeconds``."""
    return {"type": "etcd", "etcd": {"endpoints": [endpoint], "prefix": prefix}, **extra}
