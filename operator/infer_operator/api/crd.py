"""Generate the InferenceService CRD from the pydantic models.

pydantic emits JSON Schema with `$ref`s, `anyOf: [X, null]` for optionals and titles; a
Kubernetes structural schema wants everything inlined, no nulls and no titles. `structural()`
does that translation; everything else (descriptions, bounds, patterns, CEL rules, defaults)
comes straight from the models.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from infer_operator import labels
from infer_operator.api.base import attach_rules
from infer_operator.api.kubeschema import template_schema
from infer_operator.api.v1alpha1 import NAME_RULES, InferenceServiceSpec, InferenceServiceStatus

CRD_FILE = f"crds/{labels.GROUP}_{labels.PLURAL}.yaml"

_DROP = {"title", "discriminator"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve({**target, **extra}, defs)
    options = node.get("anyOf")
    if options is not None:
        non_null = [option for option in options if option.get("type") != "null"]
        if len(non_null) == 1:
            merged = {**{k: v for k, v in node.items() if k != "anyOf"}, **non_null[0]}
            # Keep the outer description: it is the field's, the inner one the type's.
            if "description" in node:
                merged["description"] = node["description"]
            return _resolve(merged, defs)
    return {key: _resolve(value, defs) for key, value in node.items() if key != "$defs"}


def _clean(node: Any) -> Any:
    if isinstance(node, list):
        return [_clean(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "default":
            if value is None:
                continue
            # Nested objects get `{}` so the API server applies their own field defaults.
            if isinstance(value, dict):
                value = {}
        # Structural schemas forbid additionalProperties beside properties; preserve-unknown-fields
        # (set explicitly on the models) is the Kubernetes way to say "anything goes here".
        if key == "additionalProperties" and isinstance(value, bool):
            continue
        if key == "properties":
            out[key] = {name: _clean(prop) for name, prop in value.items()}
            continue
        out[key] = _clean(value)
    if out.get("x-kubernetes-preserve-unknown-fields") and "type" not in out:
        out["type"] = "object"
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if "properties" in out and "type" not in out:
        out["type"] = "object"
    return out


def structural(model: type) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    defs = schema.pop("$defs", {})
    return _clean(_resolve(schema, defs))


def openapi_schema() -> dict[str, Any]:
    spec = structural(InferenceServiceSpec)
    spec["properties"]["template"] = template_schema()
    attach_rules(spec, InferenceServiceSpec.rules)
    status = structural(InferenceServiceStatus)
    return {
        "type": "object",
        "x-kubernetes-validations": [rule.as_cel() for rule in NAME_RULES],
        "description": (
            "A GPU inference service: one StatefulSet whose pods run the sync role (ordinal < "
            "syncReplicas) or the async role, kept in step with a service registry."
        ),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            # A bound on the name keeps the cost of the CEL rules on it within the API server's budget.
            "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 253}}},
            "spec": spec,
            "status": status,
        },
    }


PRINTER_COLUMNS = [
    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas", "description": "Desired pods"},
    {
        "name": "Sync",
        "type": "integer",
        "jsonPath": ".status.syncReplicas",
        "description": "Pods that run the sync role",
    },
    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas", "description": "Ready pods"},
    {"name": "Sync-Ready", "type": "integer", "jsonPath": ".status.syncReady", "description": "Ready sync pods"},
    {"name": "Async-Ready", "type": "integer", "jsonPath": ".status.asyncReady", "description": "Ready async pods"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Up-To-Date",
        "type": "integer",
        "jsonPath": ".status.updatedReplicas",
        "priority": 1,
        "description": "Pods of the current template",
    },
    {
        "name": "Registered",
        "type": "integer",
        "jsonPath": ".status.registered",
        "priority": 1,
        "description": "Instances in the registry",
    },
    {"name": "Registry", "type": "string", "jsonPath": ".spec.registry.type", "priority": 1},
    {
        "name": "Status",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        "priority": 1,
        "description": "Reason of the Ready condition",
    },
]


def build_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{labels.PLURAL}.{labels.GROUP}",
            "labels": {labels.LABEL_NAME: "infer-operator", "app.kubernetes.io/part-of": "infer-operator"},
        },
        "spec": {
            "group": labels.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": labels.KIND,
                "listKind": f"{labels.KIND}List",
                "plural": labels.PLURAL,
                "singular": labels.SINGULAR,
                "shortNames": [labels.SHORT_NAME],
                "categories": ["all", "infer-operator"],
            },
            "versions": [
                {
                    "name": labels.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


HEADER = (
    "# GENERATED from operator/infer_operator/api/v1alpha1.py by `infer-operator crd`.\n"
    "# Do not edit by hand: change the models and regenerate (a test fails on drift).\n"
)


def render_crd_yaml() -> str:
    return HEADER + yaml.safe_dump(build_crd(), sort_keys=False, width=100)
