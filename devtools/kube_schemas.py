"""Kubernetes' own schemas, from the OpenAPI v3 documents of the Kubernetes version the project
builds against, for two uses:

1. The CRD embeds them (`make crds`): spec.template is a core/v1 PodTemplateSpec, spec.updateStrategy
   an apps/v1 StatefulSetUpdateStrategy, and each role's readinessProbe handler (httpGet, tcpSocket,
   exec, grpc) the core/v1 action of that name. `python -m devtools.kube_schemas crd >
   operator/infer_operator/api/kubernetes.schema.json` writes them as the CRD may hold them (a
   structural schema): references inlined, Kubernetes' descriptions kept (they are what
   `kubectl explain` shows), no defaults (the StatefulSet's own defaulting applies), no list/map
   merge markers (the CR is one object to its clients), int-or-string fields marked as such, and
   quantities left free (`cpu: 0.5` is valid in a pod; the API server checks the value when the
   StatefulSet is applied). The template's metadata keeps what a pod template may carry: labels,
   annotations, name, namespace. A unit test fails when the committed file and this module's output
   disagree.

2. kubeconform validates manifests offline (`make test` runs no download): `python -m
   devtools.kube_schemas kubeconform DIR` writes, for every kind of the documents, the standalone
   strict JSON schema kubeconform looks up at `DIR/<version>-standalone-strict/<kind>-<group>-<version>.json`
   (the layout of its default schema location), and the InferenceService CRD's schema beside them.

The input is Kubernetes' published OpenAPI v3 (`api/openapi-spec/v3/` in the k8s.io/kubernetes
module the local cluster is built from; the default is that module in the Go module cache).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

K8S_VERSION = "v1.34.4"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
TEMPLATE_METADATA = ("labels", "annotations", "name", "namespace")
DROP = {
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
# What the CRD embeds: our name -> (OpenAPI document, definition).
CORE = "api__v1_openapi.json"
APPS = "apis__apps__v1_openapi.json"
EMBEDDED = {
    "PodTemplateSpec": (CORE, "io.k8s.api.core.v1.PodTemplateSpec"),
    "StatefulSetUpdateStrategy": (APPS, "io.k8s.api.apps.v1.StatefulSetUpdateStrategy"),
    "HTTPGetAction": (CORE, "io.k8s.api.core.v1.HTTPGetAction"),
    "TCPSocketAction": (CORE, "io.k8s.api.core.v1.TCPSocketAction"),
    "ExecAction": (CORE, "io.k8s.api.core.v1.ExecAction"),
    "GRPCAction": (CORE, "io.k8s.api.core.v1.GRPCAction"),
}


def default_input() -> Path:
    """The OpenAPI v3 folder of the k8s.io/kubernetes module in the Go module cache."""
    modcache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    return Path(modcache) / f"k8s.io/kubernetes@{K8S_VERSION}/api/openapi-spec/v3"


def _ref_name(node: dict[str, Any]) -> str | None:
    if "allOf" in node and len(node["allOf"]) == 1 and "$ref" in node["allOf"][0]:
        return node["allOf"][0]["$ref"].rsplit("/", 1)[-1]
    if "$ref" in node:
        return node["$ref"].rsplit("/", 1)[-1]
    return None


def structural(schemas: dict[str, Any], root: str) -> dict[str, Any]:
    """The structural schema of one definition of an OpenAPI v3 document, as a CRD may embed it."""

    def resolve(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [resolve(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        name = _ref_name(node)
        if name is not None:
            outer = {k: v for k, v in node.items() if k not in ("allOf", "$ref")}
            if name in seen:
                raise ValueError(f"{name} refers to itself: a CRD schema cannot hold it")
            if name == QUANTITY:
                target: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}
            elif name == INT_OR_STRING:
                target = {"x-kubernetes-int-or-string": True}
            else:
                target = dict(schemas[name])
                if name == OBJECT_META:
                    target = {
                        "type": "object",
                        "description": target.get("description", ""),
                        "properties": {k: v for k, v in target["properties"].items() if k in TEMPLATE_METADATA},
                    }
            # The field's own description is the better one (the type's is generic).
            merged = {**target, **{k: v for k, v in outer.items() if k == "description"}}
            return resolve(merged, (*seen, name) if name not in (QUANTITY, INT_OR_STRING) else seen)
        out = {}
        for key, value in node.items():
            if key in DROP:
                continue
            out[key] = {k: resolve(v, seen) for k, v in value.items()} if key == "properties" else resolve(value, seen)
        return out

    return resolve({"$ref": f"#/components/schemas/{root}"}, ())


def embedded(source: Path) -> dict[str, Any]:
    """Every schema the CRD embeds (EMBEDDED), by our name."""
    documents = {name: json.loads((source / name).read_text())["components"]["schemas"] for name in (CORE, APPS)}
    return {ours: structural(documents[document], root) for ours, (document, root) in EMBEDDED.items()}


# -- kubeconform -------------------------------------------------------------------------------


def _json_schema(node: Any) -> Any:
    """A structural (OpenAPI) schema as the strict JSON schema kubeconform checks against: every
    object without preserve-unknown-fields refuses fields it does not name, int-or-string takes
    either, and Kubernetes' nullable markers allow null."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _json_schema(value) for key, value in node.items() if not key.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("anyOf", None)
        out["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    if (
        not node.get("x-kubernetes-preserve-unknown-fields")
        and "properties" in out
        and ("additionalProperties" not in out)
    ):
        out["additionalProperties"] = False
    if "properties" in out:
        out["properties"] = {name: _json_schema(prop) for name, prop in node["properties"].items()}
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _kubeconform_name(kind: str, group: str, version: str) -> str:
    # kubeconform's default layout: <kind>-<group's first label>-<version>, core kinds without a group.
    short = group.split(".")[0] if group else ""
    return f"{kind.lower()}{'-' + short if short else ''}-{version}.json"


def kubeconform_schemas(source: Path, out: Path, crds: list[dict[str, Any]]) -> list[Path]:
    """Write kubeconform's strict standalone schemas for every kind with a
    `x-kubernetes-group-version-kind` in the OpenAPI documents of `source`, and for the CRDs given,
    under `out/<version>-standalone-strict/`. Returns the files written."""
    folder = out / f"{K8S_VERSION}-standalone-strict"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for document in sorted(source.glob("*_openapi.json")):
        schemas = json.loads(document.read_text()).get("components", {}).get("schemas", {})
        for name, schema in schemas.items():
            for gvk in schema.get("x-kubernetes-group-version-kind") or []:
                if name.endswith("List") or gvk["kind"] in ("WatchEvent", "DeleteOptions", "Status", "APIGroup"):
                    continue
                resolved = _standalone(schemas, name)
                path = folder / _kubeconform_name(gvk["kind"], gvk["group"], gvk["version"])
                path.write_text(json.dumps(resolved))
                written.append(path)
    for crd in crds:
        names = crd["spec"]["names"]
        for version in crd["spec"]["versions"]:
            schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
            # apiVersion, kind and metadata are every object's, whatever its schema names.
            properties = schema.setdefault("properties", {})
            properties["metadata"] = {"type": "object"}
            properties.setdefault("apiVersion", {"type": "string"})
            properties.setdefault("kind", {"type": "string"})
            path = folder / _kubeconform_name(names["kind"], crd["spec"]["group"], version["name"])
            path.write_text(json.dumps(_json_schema(schema)))
            written.append(path)
    return written


def _standalone(schemas: dict[str, Any], root: str) -> dict[str, Any]:
    """A built-in kind's strict JSON schema: the definitions it reaches, referred to in the file
    itself (Kubernetes' own recursive types, such as a CRD's JSONSchemaProps, stay references)."""
    reached: dict[str, Any] = {}

    def visit(node: Any) -> Any:
        if isinstance(node, list):
            return [visit(item) for item in node]
        if not isinstance(node, dict):
            return node
        name = _ref_name(node)
        if name is not None:
            if name not in reached:
                reached[name] = None  # taken: a recursive reference ends here
                reached[name] = _definition(schemas, name, visit)
            return {"$ref": f"#/definitions/{name}"}
        out = {}
        for key, value in node.items():
            if key in ("description", "default", "format") or (
                key.startswith("x-kubernetes-")
                and key not in ("x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields")
            ):
                continue
            out[key] = {k: visit(v) for k, v in value.items()} if key == "properties" else visit(value)
        return out

    top = visit({"$ref": f"#/components/schemas/{root}"})
    return {**top, "definitions": reached}


def _definition(schemas: dict[str, Any], name: str, visit: Any) -> dict[str, Any]:
    if name == QUANTITY:
        return {"oneOf": [{"type": "string"}, {"type": "number"}]}
    if name == INT_OR_STRING:
        return {"oneOf": [{"type": "string"}, {"type": "integer"}]}
    return _json_schema(visit(schemas[name]))


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if not args or args[0] not in ("crd", "kubeconform"):
        print(__doc__, file=sys.stderr)
        return 2
    if args[0] == "crd":
        source = Path(args[1]) if len(args) > 1 else default_input()
        document = {
            "source": f"k8s.io/kubernetes@{K8S_VERSION} api/openapi-spec/v3",
            "schemas": embedded(source),
        }
        json.dump(document, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    import yaml

    out = Path(args[1])
    crds = [doc for path in args[2:] for doc in yaml.safe_load_all(Path(path).read_text()) if doc]
    written = kubeconform_schemas(default_input(), out, crds)
    print(f"{len(written)} schemas in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
