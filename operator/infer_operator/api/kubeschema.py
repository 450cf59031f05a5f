"""Kubernetes' own schemas that the CRD embeds, and the same schemas checked in Python.

spec.template is a core/v1 PodTemplateSpec, spec.updateStrategy an apps/v1 StatefulSetUpdateStrategy,
and each readinessProbe handler (httpGet, tcpSocket, exec, grpc) the core/v1 action of that name. With
them the API server rejects a misspelt field (`resourcez`, `partiton`) at `kubectl apply` naming it
(kubectl asks for strict field validation by default; a client that does not gets the field pruned),
and `kubectl explain inferenceservice.spec.template` shows the pod's fields with Kubernetes' own
descriptions. The schemas are generated from the published OpenAPI documents of the Kubernetes
version the project builds against, by `python -m devtools.kube_schemas crd`, and committed as
`kubernetes.schema.json`.

The operator checks the parts it reads itself (the update strategy, the probe handlers) with the same
schemas (`problems`), so an object stored under an older CRD, or written past the API server, is
refused with the same field named instead of being carried out as something else (`Ondelete` rolled
like `RollingUpdate`, a probe that checks `/` because `path` was misspelt).
"""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from typing import Any

TEMPLATE_DESCRIPTION = (
    "The pod as you would write it in a Deployment (core/v1 PodTemplateSpec). The first container "
    "is the main one: the operator adds the role machinery to it (env, readiness probe, preStop, "
    "the launcher when role commands are set) and sets the grace period from spec.lifecycle."
)
UPDATE_TYPES = ("RollingUpdate", "OnDelete")
UPDATE_STRATEGY_DESCRIPTION = (
    "How pods are updated to a new template, as for a StatefulSet (apps/v1 StatefulSetUpdateStrategy): "
    "type RollingUpdate (default) or OnDelete, rollingUpdate.partition and rollingUpdate.maxUnavailable "
    "(default 1). The operator carries it out itself, so that template changes and role flips "
    "(syncReplicas changes) share one maxUnavailable budget; with OnDelete it restarts only pods whose "
    "role flips, and status says how many pods are outdated."
)
# Kubernetes' descriptions of the StatefulSet fields speak of the StatefulSet controller (and of
# maxUnavailable as an alpha feature of it); here the operator carries them out.
UPDATE_STRATEGY_FIELDS = {
    ("type",): "RollingUpdate (default): the operator restarts outdated pods itself, highest ordinal first, within "
    "rollingUpdate.maxUnavailable. OnDelete: outdated pods are updated when you delete them (status says how "
    "many); only pods whose role flips are restarted.",
    ("rollingUpdate",): "Parameters of RollingUpdate (only with type RollingUpdate).",
    ("rollingUpdate", "partition"): "Pods with an ordinal below the partition keep their template (a canary); "
    "default 0.",
    ("rollingUpdate", "maxUnavailable"): "Pods that may be down at once for a rollout or a role flip together: a "
    "number or a percentage of replicas; default 1.",
}


@functools.cache
def _committed() -> dict[str, Any]:
    text = resources.files("infer_operator.api").joinpath("kubernetes.schema.json").read_text()
    return json.loads(text)["schemas"]


def schema(name: str) -> dict[str, Any]:
    """One embedded schema (a fresh copy), with the operator's own constraints where it adds any."""
    node = copy.deepcopy(_committed()[name])
    if name == "PodTemplateSpec":
        node["description"] = TEMPLATE_DESCRIPTION
        node["required"] = ["spec"]
        containers = node["properties"]["spec"]["properties"]["containers"]
        containers["minItems"] = 1
        containers["description"] = (
            "The pod's containers; the first is the main one (gets env, probe, hooks). " + containers["description"]
        )
    elif name == "StatefulSetUpdateStrategy":
        node["description"] = UPDATE_STRATEGY_DESCRIPTION
        node["properties"]["type"]["enum"] = list(UPDATE_TYPES)
        node["properties"]["rollingUpdate"]["properties"]["partition"]["minimum"] = 0
        for path, text in UPDATE_STRATEGY_FIELDS.items():
            field = node
            for part in path:
                field = field["properties"][part]
            field["description"] = text
    return node


def template_schema() -> dict[str, Any]:
    """The structural schema for spec.template (a fresh copy)."""
    return schema("PodTemplateSpec")


def problems(name: str, value: Any) -> list[tuple[str, str]]:
    """What in `value` the embedded schema `name` refuses, as (field path below it, message):
    unknown fields, enum values, types, required fields, minimums; [] when it passes."""
    found: list[tuple[str, str]] = []
    _check(schema(name), value, "", found)
    return found


def _check(node: dict[str, Any], value: Any, path: str, found: list[tuple[str, str]]) -> None:
    if node.get("x-kubernetes-int-or-string"):
        if not isinstance(value, int | str) or isinstance(value, bool):
            found.append((path, "must be an integer or a string"))
        return
    kind = node.get("type")
    if kind is None:
        return  # free (a quantity)
    expected = {
        "object": dict,
        "array": list,
        "string": str,
        "integer": int,
        "number": int | float,
        "boolean": bool,
    }[kind]
    if not isinstance(value, expected) or (kind in ("integer", "number") and isinstance(value, bool)):
        found.append((path, f"must be of type {kind}"))
        return
    if "enum" in node and value not in node["enum"]:
        found.append((path, f"unsupported value {json.dumps(value)}: must be one of {', '.join(node['enum'])}"))
    if "minimum" in node and value < node["minimum"]:
        found.append((path, f"must be at least {node['minimum']}"))
    if kind == "array":
        for index, item in enumerate(value):
            _check(node.get("items") or {}, item, f"{path}[{index}]", found)
    elif kind == "object":
        properties = node.get("properties") or {}
        for key, item in value.items():
            if key in properties:
                _check(properties[key], item, f"{path}.{key}", found)
            elif "additionalProperties" in node and isinstance(node["additionalProperties"], dict):
                _check(node["additionalProperties"], item, f"{path}.{key}", found)
            elif properties and not node.get("x-kubernetes-preserve-unknown-fields"):
                found.append((f"{path}.{key}", f'unknown field "{key}"'))
        # After the unknown fields: a misspelt required field is reported by its misspelling first.
        for required in node.get("required") or []:
            if required not in value:
                found.append((f"{path}.{required}", "required"))
