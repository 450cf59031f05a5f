"""Case 7a: invalid InferenceServices, the whole surface, one test each (a failure hides no other).

Each is either rejected by the API server (strict field validation, as kubectl asks for) with a
message naming the field, or accepted and reported Degraded (condition and event naming the
field), with no pod made from it. One operator and one namespace serve the whole module.
"""

from __future__ import annotations

import copy
import secrets

import pytest
from kubernetes import client

from devtools.harness import isvc_body, wait_for
from infer_operator import labels
from tests.chaos.helpers import new_operator
from tests.support.kube import condition

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

C = "template.spec.containers"
CASES = [
    # (id, {dotted path under spec: value} or callable, text that must appear in the message)
    ("replicas-string", {"replicas": "three"}, "replicas"),
    ("replicas-negative", {"replicas": -1}, "replicas"),
    ("replicas-float", {"replicas": 1.5}, "replicas"),
    ("sync-negative", {"syncReplicas": -1}, "syncReplicas"),
    ("sync-string", {"syncReplicas": "all"}, "syncReplicas"),
    ("unknown-top-field", {"replicaz": 3}, "replicaz"),
    ("unknown-sync-field", {"sync.prot": 8000}, "prot"),
    ("port-zero", {"sync.port": 0}, "port"),
    ("port-too-big", {"sync.port": 70000}, "port"),
    ("port-string", {"sync.port": "http"}, "port"),
    ("sync-args-without-command", {"sync.args": ["--x"]}, "args"),
    ("async-args-without-command", {"async.args": ["--x"]}, "args"),
    ("sync-command-empty", {"sync.command": []}, "command"),
    ("sync-command-not-list", {"sync.command": "serve"}, "command"),
    (
        "probe-two-handlers",
        {"sync.readinessProbe": {"httpGet": {"port": 8000}, "tcpSocket": {"port": 8000}}},
        "readinessProbe",
    ),
    ("probe-no-handler", {"sync.readinessProbe": {"periodSeconds": 5}}, "readinessProbe"),
    ("probe-period-zero", {"sync.readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 0}}, "periodSeconds"),
    (
        "async-probe-negative-delay",
        {"async.readinessProbe": {"exec": {"command": ["true"]}, "initialDelaySeconds": -1}},
        "initialDelaySeconds",
    ),
    ("probe-unknown-field", {"sync.readinessProbe": {"tcpSocket": {"port": 8000}, "perodSeconds": 3}}, "perodSeconds"),
    ("drain-negative", {"lifecycle.drainSeconds": -5}, "drainSeconds"),
    (
        "grace-not-above-drain",
        {"lifecycle": {"drainSeconds": 30, "terminationGracePeriodSeconds": 30}},
        "terminationGracePeriodSeconds",
    ),
    (
        "async-drain-too-long",
        {"lifecycle": {"asyncDrainSeconds": 50, "terminationGracePeriodSeconds": 40, "drainSeconds": 1}},
        "asyncDrainSeconds",
    ),
    ("offline-path-relative", {"lifecycle.offlinePath": "offline"}, "offlinePath"),
    ("lifecycle-unknown", {"lifecycle.drainSecs": 3}, "drainSecs"),
    ("registry-type-bad", {"registry": {"type": "consul"}}, "type"),
    ("registry-etcd-missing", {"registry": {"type": "etcd"}}, "etcd"),
    ("registry-http-missing", {"registry": {"type": "http"}}, "http"),
    ("registry-etcd-endpoints-empty", {"registry": {"type": "etcd", "etcd": {"endpoints": []}}}, "endpoints"),
    (
        "registry-etcd-endpoint-not-url",
        {"registry": {"type": "etcd", "etcd": {"endpoints": ["etcd:2379"]}}},
        "endpoints",
    ),
    ("registry-http-url-bad", {"registry": {"type": "http", "http": {"url": "ftp://x"}}}, "url"),
    ("registry-delay-negative", {"registry": {"type": "none", "registerDelaySeconds": -1}}, "registerDelaySeconds"),
    ("registry-unknown-field", {"registry": {"type": "none", "endpoint": "x"}}, "endpoint"),
    (
        "registry-secret-no-name",
        {"registry": {"type": "http", "http": {"url": "http://a:1", "credentialsSecret": {}}}},
        "name",
    ),
    ("policy-bad", {"podManagementPolicy": "Sometimes"}, "podManagementPolicy"),
    ("template-missing", {"template": None}, "template"),
    ("containers-empty", {f"{C}": []}, "containers"),
    ("container-no-image", {f"{C}": [{"name": "model"}]}, "image"),
    ("container-no-name", {f"{C}": [{"image": "x:1"}]}, "name"),
    (
        "container-bad-quantity",
        {f"{C}": [{"name": "model", "image": "x:1", "command": ["run"], "resources": {"limits": {"memory": "lots"}}}]},
        "memory",
    ),
    (
        "container-bad-port",
        {f"{C}": [{"name": "model", "image": "x:1", "command": ["run"], "ports": [{"containerPort": 99999}]}]},
        "containerPort",
    ),
    ("container-bad-name", {f"{C}": [{"name": "Model_One", "image": "x:1", "command": ["run"]}]}, "name"),
    ("template-restart-policy", {"template.spec.restartPolicy": "Never"}, "restartPolicy"),
    # issue 13: fields the operator sets, typos in the pod template, names its objects cannot carry
    ("template-typo", {f"{C}": [{"name": "model", "image": "x:1", "command": ["run"], "resourcez": {}}]}, "resourcez"),
    ("template-typo-deep", {"template.spec.securityContxt": {}}, "securityContxt"),
    (
        "template-grace",
        {"template.spec.terminationGracePeriodSeconds": 600},
        "spec.lifecycle.terminationGracePeriodSeconds",
    ),
    (
        "template-readiness-probe",
        {
            f"{C}": [
                {
                    "name": "model",
                    "image": "x:1",
                    "command": ["run"],
                    "readinessProbe": {"httpGet": {"path": "/health", "port": 8000}},
                }
            ]
        },
        "spec.sync.readinessProbe",
    ),
    (
        "template-contract-env",
        {
            f"{C}": [
                {"name": "model", "image": "x:1", "command": ["run"], "env": [{"name": "INFER_ROLE", "value": "sync"}]}
            ]
        },
        "INFER_ROLE",
    ),
    ("template-role-label", {"template.metadata": {"labels": {labels.LABEL_ROLE: "sync"}}}, labels.LABEL_ROLE),
    ("name-too-long", {"@name": "x" * 53}, "metadata.name"),
    ("name-with-dot", {"@name": "llm.v2"}, "metadata.name"),
    # issue 15: the optional PodDisruptionBudget
    ("pdb-both-limits", {"podDisruptionBudget": {"maxUnavailable": 1, "minAvailable": 2}}, "minAvailable"),
    ("pdb-not-a-percentage", {"podDisruptionBudget": {"maxUnavailable": "half"}}, "maxUnavailable"),
    ("pdb-negative", {"podDisruptionBudget": {"minAvailable": -1}}, "minAvailable"),
    ("pdb-unknown-field", {"podDisruptionBudget": {"maxUnavailible": 1}}, "maxUnavailible"),
    (
        "template-bad-volume",
        {
            "template.spec.volumes": [{"name": "v"}],
            f"{C}": [
                {
                    "name": "model",
                    "image": "x:1",
                    "command": ["run"],
                    "volumeMounts": [{"name": "w", "mountPath": "/w"}],
                }
            ],
        },
        "volumeMounts",
    ),
]


def _mutate(spec: dict, changes: dict) -> dict:
    spec = copy.deepcopy(spec)
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = spec
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(leaf, None)
        elif isinstance(value, dict) and isinstance(node.get(leaf), dict) and leaf in ("lifecycle",):
            node[leaf] = {**node[leaf], **value}
        else:
            node[leaf] = value
    return spec


@pytest.fixture(scope="module")
def bad_namespace(kube):
    name = f"t-bad-input-{secrets.token_hex(3)}"
    kube.core.create_namespace({"metadata": {"name": name, "labels": {"infer-operator.io/test": "true"}}})
    yield name
    kube.core.delete_namespace(name)


@pytest.fixture(scope="module")
def bad_input_operator(cluster, crd, tmp_path_factory):
    process = new_operator(cluster, tmp_path_factory.mktemp("bad-input"))
    process.start()
    yield process
    process.kill()


@pytest.mark.parametrize(("case_id", "changes", "field"), CASES, ids=[c[0] for c in CASES])
def test_invalid_inference_service(kube, bad_namespace, bad_input_operator, figures, case_id, changes, field):
    namespace = bad_namespace
    changes = dict(changes)
    name = changes.pop("@name", f"bad-{case_id}")
    body = isvc_body(name)
    body["spec"] = _mutate(body["spec"], changes)
    body["metadata"]["namespace"] = namespace
    try:
        kube.custom.create_namespaced_custom_object(
            labels.GROUP, labels.VERSION, namespace, labels.PLURAL, body, field_validation="Strict"
        )
    except client.ApiException as exc:
        assert exc.status in (400, 422), f"unexpected {exc.status}: {exc.body}"
        assert field in exc.body, f"the rejection does not name {field!r}: {exc.body[:400]}"
        figures.update(outcome="rejected by the API server")
        return

    def degraded():
        cond = condition(kube.get_isvc(namespace, name), "Degraded")
        if not cond or cond["status"] != "True" or field not in cond["message"]:
            return None
        events = [e for e in kube.events(namespace, name) if e.type == "Warning" and field in (e.message or "")]
        return cond if events else None

    wait_for(
        degraded,
        timeout=30,
        message=lambda: f"accepted but not Degraded naming {field!r}: {kube.get_isvc(namespace, name).get('status')}",
    )
    assert not kube.pods(namespace, name), "pods made from an invalid InferenceService"
    figures.update(outcome="Degraded with an event")
