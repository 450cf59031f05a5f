"""Make the structural schema of a core/v1 PodTemplateSpec that the CRD embeds under spec.template.

    python -m devtools.podtemplate_schema [OPENAPI_V3_JSON] > operator/infer_operator/api/podtemplate.schema.json

The input is Kubernetes' own published OpenAPI v3 document for core/v1 (`api/openapi-spec/v3/
api__v1_openapi.json` in the k8s.io/kubernetes module the local cluster is built from; the default
path is that module in the Go module cache). The output is what a CRD may hold (a structural
schema): references inlined, no descriptions (size), no defaults (the StatefulSet's own defaulting
applies), no list/map merge markers (the CR is one object to its clients), int-or-string fields
marked as such, and quantities left free (`cpu: 0.5` is valid in a pod; the API server checks the
value when the StatefulSet is applied). The template's metadata keeps what a pod template may
carry: labels, annotations, name, namespace.

A unit test fails when the committed file and this module's output for the committed input
disagree; `make crds` regenerates the CRD from it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

K8S_VERSION = "v1.34.4"
ROOT = "io.k8s.api.core.v1.PodTemplateSpec"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
TEMPLATE_METADATA = ("labels", "annotations", "name", "namespace")
DROP = {
    "description",
    "default",
    "format",
    "x-kubernetes-patch-merge-key",
    "x-kubernetes-patch-strategy",
    "x-kubernetes-unions",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "discriminator",
    "fields-to-discriminateBy",
}


def default_input() -> Path:
    modcache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    return Path(modcache) / f"k8s.io/kubernetes@{K8S_VERSION}/api/openapi-spec/v3/api__v1_openapi.json"


def convert(document: dict[str, Any]) -> dict[str, Any]:
    """The structural schema of a PodTemplateSpec from Kubernetes' OpenAPI v3 document for core/v1."""
    schemas = document["components"]["schemas"]

    def resolve(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [resolve(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        if "allOf" in node and len(node["allOf"]) == 1 and "$ref" in node["allOf"][0]:
            node = {**{k: v for k, v in node.items() if k != "allOf"}, "$ref": node["allOf"][0]["$ref"]}
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            if name in seen:
                raise ValueError(f"{name} refers to itself: a CRD schema cannot hold it")
            if name == QUANTITY:
                return {"x-kubernetes-preserve-unknown-fields": True}
            if name == INT_OR_STRING:
                return {"x-kubernetes-int-or-string": True}
            target = dict(schemas[name])
            if name == OBJECT_META:
                target = {
                    "type": "object",
                    "properties": {k: v for k, v in target["properties"].items() if k in TEMPLATE_METADATA},
                }
            return resolve(target, (*seen, name))
        out = {}
        for key, value in node.items():
            if key in DROP:
                continue
            out[key] = {k: resolve(v, seen) for k, v in value.items()} if key == "properties" else resolve(value, seen)
        return out

    return resolve({"$ref": f"#/components/schemas/{ROOT}"}, ())


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    source = Path(args[0]) if args else default_input()
    schema = convert(json.loads(source.read_text()))
    json.dump(
        {"source": f"k8s.io/kubernetes@{K8S_VERSION} api/openapi-spec/v3/api__v1_openapi.json", "schema": schema},
        sys.stdout,
        indent=1,
        sort_keys=True,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
