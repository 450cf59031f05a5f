"""The API models: defaults, derived values and the cross-field rules (mirrors of the CEL rules)."""

import pydantic
import pytest

from devtools.harness import isvc_body
from infer_operator import labels
from infer_operator.api.errors import describe_validation_error
from infer_operator.api.v1alpha1 import parse_spec


def spec(**overrides):
    return parse_spec(isvc_body(**overrides)["spec"])


def test_defaults_match_the_design():
    s = parse_spec({"template": {"spec": {"containers": [{"name": "m", "image": "i"}]}}})
    assert s.replicas == 1
    assert s.sync_replicas is None and s.effective_sync_replicas == 1
    assert s.sync.port == 8000
    assert s.lifecycle.drain_seconds == 10
    assert s.lifecycle.termination_grace_period_seconds == 60
    assert s.lifecycle.async_drain_seconds == 0
    assert s.registry.type == "none"
    assert s.pod_management_policy == "Parallel"
    assert s.max_unavailable == 1


@pytest.mark.parametrize(
    ("replicas", "sync_replicas", "roles"),
    [
        (5, 2, ["sync", "sync", "async", "async", "async"]),
        (3, None, ["sync", "sync", "sync"]),
        (3, 0, ["async", "async", "async"]),
        (4, 4, ["sync"] * 4),
        (1, 1, ["sync"]),
    ],
)
def test_role_is_exactly_ordinal_below_sync_replicas(replicas, sync_replicas, roles):
    s = spec(replicas=replicas, syncReplicas=sync_replicas)
    assert [s.role_for(i) for i in range(replicas)] == roles


@pytest.mark.parametrize(
    ("strategy", "replicas", "expected"),
    [
        (None, 10, 1),
        ({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 3}}, 10, 3),
        ({"rollingUpdate": {"maxUnavailable": "50%"}}, 10, 5),
        ({"rollingUpdate": {"maxUnavailable": "1%"}}, 10, 1),
        ({"rollingUpdate": {"maxUnavailable": "junk"}}, 10, 1),
    ],
)
def test_max_unavailable_for_split_changes(strategy, replicas, expected):
    overrides = {"replicas": replicas, "syncReplicas": 1}
    if strategy is not None:
        overrides["updateStrategy"] = strategy
    assert spec(**overrides).max_unavailable == expected


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        (
            {"lifecycle": {"drainSeconds": 60, "terminationGracePeriodSeconds": 60}},
            "lifecycle.terminationGracePeriodSeconds",
        ),
        ({"sync": {"args": ["--x"]}}, "spec.sync.args"),
        ({"registry": {"type": "etcd"}}, "spec.registry.etcd"),
        ({"registry": {"type": "http"}}, "spec.registry.http"),
        ({"sync": {"port": 70000}}, "spec.sync.port"),
        ({"replicas": -1}, "spec.replicas"),
        ({"registry": {"type": "consul"}}, "spec.registry.type"),
        ({"registry": {"type": "zookeeper"}}, "spec.registry.zookeeper"),
        (
            {"sync": {"readinessProbe": {"httpGet": {"port": 1}, "exec": {"command": ["x"]}}}},
            "spec.sync.readinessProbe",
        ),
        ({"lifecycle": {"offlinePath": "no-slash"}}, "spec.lifecycle.offlinePath"),
        ({"replicaz": 3}, "spec.replicaz"),
        ({"template": {"spec": {"containers": []}}}, "spec.template.spec.containers"),
        # Typos in what the operator carries out itself, refused with Kubernetes' own schemas
        # (api/kubeschema.py) instead of being carried out as something else.
        (
            {"updateStrategy": {"rollingUpdate": {"partiton": 2}}},
            'spec.updateStrategy.rollingUpdate.partiton: unknown field "partiton"',
        ),
        ({"updateStrategy": {"type": "Ondelete"}}, 'spec.updateStrategy.type: unsupported value "Ondelete"'),
        (
            {"updateStrategy": {"rollingUpdate": {"partition": -1}}},
            "spec.updateStrategy.rollingUpdate.partition: must be at least 0",
        ),
        (
            {"updateStrategy": {"rollingUpdate": {"partition": "2"}}},
            "spec.updateStrategy.rollingUpdate.partition: must be of type integer",
        ),
        (
            {"sync": {"readinessProbe": {"httpGet": {"paht": "/ready", "port": 8000}}}},
            'spec.sync.readinessProbe.httpGet.paht: unknown field "paht"',
        ),
        (
            {"sync": {"readinessProbe": {"httpGet": {"path": "/ready"}}}},
            "spec.sync.readinessProbe.httpGet.port: required",
        ),
        (
            {"async": {"readinessProbe": {"exec": {"comand": ["true"]}}}},
            'spec.async.readinessProbe.exec.comand: unknown field "comand"',
        ),
        ({"sync": {"readinessProbe": {"tcpSocket": {"prot": 8000}}}}, "spec.sync.readinessProbe.tcpSocket.prot"),
        (
            {"sync": {"readinessProbe": {"grpc": {"port": "8000"}}}},
            "spec.sync.readinessProbe.grpc.port: must be of type integer",
        ),
    ],
)
def test_invalid_specs_name_the_field(overrides, names):
    with pytest.raises(pydantic.ValidationError) as info:
        spec(**overrides)
    assert names in describe_validation_error(info.value)


@pytest.mark.parametrize(("replicas", "sync_replicas", "in_force"), [(1, 2, 1), (0, 2, 0), (3, 2, 2), (3, None, 3)])
def test_sync_replicas_may_exceed_replicas_as_an_hpa_scales(replicas, sync_replicas, in_force):
    s = spec(replicas=replicas, syncReplicas=sync_replicas)
    assert s.effective_sync_replicas == in_force
    assert [s.role_for(i) for i in range(replicas)] == ["sync"] * in_force + ["async"] * (replicas - in_force)


def template_with(**main) -> dict:
    body = isvc_body()
    body["spec"]["template"]["spec"]["containers"][0].update(main)
    return body


@pytest.mark.parametrize(
    ("change", "field", "instead"),
    [
        (
            lambda b: b["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=600),
            "spec.template.spec.terminationGracePeriodSeconds",
            "spec.lifecycle.terminationGracePeriodSeconds",
        ),
        (
            lambda b: b["spec"]["template"]["spec"]["containers"][0].update(readinessProbe={"httpGet": {"path": "/h"}}),
            "spec.template.spec.containers[0].readinessProbe",
            "spec.sync.readinessProbe",
        ),
        (
            lambda b: b["spec"]["template"]["spec"]["containers"][0].update(env=[{"name": "INFER_ROLE", "value": "x"}]),
            "spec.template.spec.containers[0].env",
            "INFER_ROLE",
        ),
        (
            lambda b: b["spec"]["template"]["metadata"]["labels"].update({labels.LABEL_ROLE: "sync"}),
            "spec.template.metadata.labels",
            labels.LABEL_ROLE,
        ),
    ],
)
def test_template_fields_the_operator_sets_are_named_with_the_field_to_use(change, field, instead):
    """The API server refuses them (CEL, ratcheted: objects stored before keep working); the
    operator reports an object that has them rather than refusing it."""
    body = isvc_body()
    change(body)
    found = parse_spec(body["spec"]).reported()
    assert len(found) == 1 and field in found[0] and instead in found[0]


def test_other_template_fields_pass_through():
    body = isvc_body()
    main = body["spec"]["template"]["spec"]["containers"][0]
    main.update(
        livenessProbe={"httpGet": {"path": "/live", "port": 8000}},
        lifecycle={"preStop": {"exec": {"command": ["touch", "/tmp/drain"]}}},
        env=[{"name": "MODEL", "value": "llama"}],
    )
    assert parse_spec(body["spec"]).template.spec.containers[0].model_extra["livenessProbe"]


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("llm", True),
        ("a" * 52, True),
        ("a" * 53, False),
        ("llm.v2", False),
        ("7b-chat", False),
        ("Llm", False),
        ("llm-", False),
    ],
)
def test_names_the_owned_objects_can_carry(name, ok):
    from infer_operator.api.v1alpha1 import name_problems

    problems = name_problems({"metadata": {"name": name}})
    assert (problems == []) is ok
    assert all(p.startswith("metadata.name: ") for p in problems)


@pytest.mark.parametrize(
    "strategy",
    [
        {"type": "OnDelete"},
        {"type": "RollingUpdate", "rollingUpdate": {"partition": 2, "maxUnavailable": "25%"}},
        {"rollingUpdate": {"maxUnavailable": 2}},
    ],
)
def test_update_strategies_kubernetes_takes_are_taken(strategy):
    assert spec(updateStrategy=strategy).update_strategy == strategy
