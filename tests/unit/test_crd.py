"""The CRD is generated from the models; the committed file must match, and be structural."""

import json
from pathlib import Path

import pytest
import yaml

from infer_operator.api.crd import CRD_FILE, build_crd, render_crd_yaml

ROOT = Path(__file__).resolve().parents[2]


def _walk(node, path="$"):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")


def test_committed_crd_matches_the_models():
    committed = (ROOT / CRD_FILE).read_text()
    assert committed == render_crd_yaml(), f"{CRD_FILE} is stale: regenerate it with `infer-operator crd > {CRD_FILE}`"


def test_schema_is_structural():
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "$ref" not in node and "title" not in node, path
        # anyOf only in the one form a structural schema allows it: IntOrString.
        assert "anyOf" not in node or (
            node.get("x-kubernetes-int-or-string") is True
            and node["anyOf"] == [{"type": "integer"}, {"type": "string"}]
        ), path
        if "properties" in node:
            assert node.get("type") == "object", path
            assert "additionalProperties" not in node, path
        if isinstance(node.get("default"), dict):
            assert node["default"] == {}, path


def test_names_subresources_and_columns():
    crd = yaml.safe_load((ROOT / CRD_FILE).read_text())
    assert crd["metadata"]["name"] == "inferenceservices.serving.infer-operator.io"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "InferenceService",
        "inferenceservices",
        ["infsvc"],
    )
    assert crd["spec"]["scope"] == "Namespaced"
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    default_columns = [c["name"].upper() for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert default_columns == ["REPLICAS", "SYNC", "READY", "SYNC-READY", "ASYNC-READY", "AGE"]


def test_cel_rules_name_their_fields():
    root = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = root["properties"]["spec"]
    template = spec["properties"]["template"]
    # Rules on the template sit on the node they read, so an unchanged template ratchets them.
    containers = template["properties"]["spec"]["properties"]["containers"]["x-kubernetes-validations"]
    assert any(r["message"].startswith("spec.template.spec.containers[0].readinessProbe") for r in containers)
    grace = template["properties"]["spec"]["x-kubernetes-validations"]
    assert grace[0]["fieldPath"] == ".terminationGracePeriodSeconds"
    assert "spec.lifecycle.terminationGracePeriodSeconds" in grace[0]["message"]
    assert not any("syncReplicas" in rule["rule"] for rule in spec.get("x-kubernetes-validations", []))  # HPA to 0
    # The name rules sit on the whole object: transition rules, checked on create only.
    assert all("metadata.name" in r["message"] and r["optionalOldSelf"] for r in root["x-kubernetes-validations"])
    lifecycle_rules = spec["properties"]["lifecycle"]["x-kubernetes-validations"]
    assert any(
        "terminationGracePeriodSeconds" in r["message"] and "drainSeconds" in r["message"] for r in lifecycle_rules
    )


def test_every_spec_field_is_described():
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    missing = [name for name, prop in spec["properties"].items() if not prop.get("description")]
    assert missing == []


def _properties(node, path="spec.template"):
    """Every property below a schema node, as (path, schema)."""
    for name, prop in (node.get("properties") or {}).items():
        yield f"{path}.{name}", prop
        yield from _properties(prop, f"{path}.{name}")
    items = node.get("items")
    if isinstance(items, dict):
        yield from _properties(items, f"{path}[]")


def test_kubectl_explain_has_kubernetes_descriptions_for_the_template():
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    fields = list(_properties(spec["properties"]["template"]))
    undescribed = [path for path, prop in fields if not prop.get("description")]
    assert len(fields) > 1000 and undescribed == [], undescribed[:10]
    # The handlers of the role probes and the update strategy too.
    for path, prop in _properties(spec, "spec"):
        if ".readinessProbe." in path or path.startswith("spec.updateStrategy"):
            assert prop.get("description"), path


# The API server stores a CRD in etcd, whose default request limit is 1.5 MiB (etcd's
# --max-request-bytes); the API server takes request bodies of up to 3 MiB. Kubernetes' descriptions
# make the CRD about 310 KB of JSON: kept below 1 MiB, with room for the API to grow.
CRD_LIMIT = 1024 * 1024


def test_the_crd_fits_what_the_api_server_stores():
    size = len(json.dumps(build_crd(), separators=(",", ":")))
    assert size < CRD_LIMIT, f"the CRD is {size} bytes of JSON"


def test_committed_kubernetes_schemas_match_their_generator():
    from devtools import kube_schemas

    source = kube_schemas.default_input()
    if not source.is_dir():
        pytest.skip(f"Kubernetes' OpenAPI documents are not in the Go module cache ({source}); `make test` gets them")
    committed = json.loads((ROOT / "operator/infer_operator/api/kubernetes.schema.json").read_text())
    assert committed["schemas"] == kube_schemas.embedded(source), (
        "api/kubernetes.schema.json is stale: python -m devtools.kube_schemas crd > "
        "operator/infer_operator/api/kubernetes.schema.json"
    )
