"""The schema of spec.template in the CRD: Kubernetes' own core/v1 PodTemplateSpec, embedded.

With it the API server rejects a misspelt field (`resourcez`) at `kubectl apply` naming it (kubectl
asks for strict field validation by default; a client that does not gets the field pruned), and
`kubectl explain inferenceservice.spec.template` shows the pod's fields. The schema is generated
from the published OpenAPI document of the Kubernetes version the project builds against, by
`python -m devtools.podtemplate_schema`, and committed as `podtemplate.schema.json`.
"""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from typing import Any

DESCRIPTION = (
    "The pod as you would write it in a Deployment (core/v1 PodTemplateSpec). The first container "
    "is the main one: the operator adds the role machinery to it (env, readiness probe, preStop, "
    "the launcher when role commands are set) and sets the grace period from spec.lifecycle."
)


@functools.cache
def _committed() -> dict[str, Any]:
    text = resources.files("infer_operator.api").joinpath("podtemplate.schema.json").read_text()
    return json.loads(text)["schema"]


def template_schema() -> dict[str, Any]:
    """The structural schema for spec.template (a fresh copy)."""
    schema = copy.deepcopy(_committed())
    schema["description"] = DESCRIPTION
    schema["required"] = ["spec"]
    containers = schema["properties"]["spec"]["properties"]["containers"]
    containers["minItems"] = 1
    containers["description"] = "The pod's containers; the first is the main one (gets env, probe, hooks)."
    return schema
