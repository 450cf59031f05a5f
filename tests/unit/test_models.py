"""The API models: defaults, derived values and the cross-field rules (mirrors of the CEL rules)."""

import pydantic
import pytest

from devtools.harness import isvc_body
from infer_operator.api.v1alpha1 import parse_spec
from infer_operator.api.errors import describe_validation_error


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
        ({"replicas": 2, "syncReplicas": 3}, "spec.syncReplicas"),
        ({"lifecycle": {"drainSeconds": 60, "terminationGracePeriodSeconds": 60}}, "lifecycle.terminationGracePeriodSeconds"),
        ({"sync": {"args": ["--x"]}}, "spec.sync.args"),
        ({"registry": {"type": "etcd"}}, "spec.registry.etcd"),
        ({"registry": {"type": "http"}}, "spec.registry.http"),
        ({"sync": {"port": 70000}}, "spec.sync.port"),
        ({"replicas": -1}, "spec.replicas"),
        ({"registry": {"type": "zookeeper"}}, "spec.registry.type"),
        ({"sync": {"readinessProbe": {"httpGet": {"port": 1}, "exec": {"command": ["x"]}}}}, "spec.sync.readinessProbe"),
        ({"lifecycle": {"offlinePath": "no-slash"}}, "spec.lifecycle.offlinePath"),
        ({"replicaz": 3}, "spec.replicaz"),
        ({"template": {"spec": {"containers": []}}}, "spec.template.spec.containers"),
    ],
)
def test_invalid_specs_name_the_field(overrides, names):
    with pytest.raises(pydantic.ValidationError) as info:
        spec(**overrides)
    assert names in describe_validation_error(info.value)
