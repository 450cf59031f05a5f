"""InferenceService bodies for tests: small, valid, easy to vary."""

from __future__ import annotations

import copy
from typing import Any

from infer_operator import labels


def isvc_body(name: str = "llm", namespace: str = "default", **spec_overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
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
    spec.update(copy.deepcopy(spec_overrides))
    spec = {key: value for key, value in spec.items() if value is not None}  # None: leave unset
    return {
        "apiVersion": labels.API_VERSION,
        "kind": labels.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
