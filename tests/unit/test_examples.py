"""Every example InferenceService parses through the models and builds into manifests."""

from pathlib import Path

import pytest
import yaml

from infer_operator import labels
from infer_operator.api.v1alpha1 import parse_spec
from infer_operator.builders import Owner, build_all

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def _documents(path):
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_there_are_examples():
    names = {path.name for path in EXAMPLES}
    assert {"inferenceservice.yaml", "inferenceservice-etcd.yaml", "inferenceservice-http.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_parses_and_builds(path):
    docs = _documents(path)
    services = [doc for doc in docs if doc.get("kind") == labels.KIND]
    assert services, f"{path.name} holds no {labels.KIND}"
    secrets = {doc["metadata"]["name"] for doc in docs if doc.get("kind") == "Secret"}
    for body in services:
        assert body["apiVersion"] == labels.API_VERSION
        spec = parse_spec(body["spec"])
        owner = Owner(body["metadata"]["name"], body["metadata"].get("namespace", "default"), "uid-example")
        manifests = build_all(owner, spec)
        budget = ["PodDisruptionBudget"] if spec.pod_disruption_budget is not None else []
        assert [m["kind"] for m in manifests] == ["ConfigMap", "Service", "Service", *budget, "StatefulSet"]
        backend = spec.registry.etcd if spec.registry.type == "etcd" else spec.registry.http
        reference = getattr(backend, "credentials_secret", None)
        if reference is not None:
            assert reference.name in secrets, f"{path.name}: Secret {reference.name} is not in the example"


def test_main_example_is_a_two_role_service():
    body = next(d for d in _documents(EXAMPLES[0].parent / "inferenceservice.yaml") if d["kind"] == labels.KIND)
    spec = parse_spec(body["spec"])
    assert (spec.replicas, spec.effective_sync_replicas, spec.registry.type) == (4, 2, "none")
    assert spec.sync.command and spec.async_.command
    assert [spec.role_for(i) for i in range(4)] == ["sync", "sync", "async", "async"]


def test_examples_can_be_applied_together():
    """`kubectl apply -f examples/` makes each of them: no two share a kind and a name (nor the
    names of what the operator makes for them)."""
    names: dict[tuple[str, str], str] = {}
    for path in EXAMPLES:
        for doc in _documents(path):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in names, f"{path.name} and {names[key]} both hold {key}"
            names[key] = path.name
    services = [name for kind, name in names if kind == labels.KIND]
    owned = [f"{name}{suffix}" for name in services for suffix in ("", "-headless", "-scripts")]
    assert len(owned) == len(set(owned))
