"""The CRD is generated from the models; the committed file must match, and be structural."""

from pathlib import Path

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
