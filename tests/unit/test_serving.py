"""registration/serving.py: the one definition of a sync pod that can serve, table by table, and the
node and pod facts it reads (nodeview.py, podview.py, slim.py)."""

from __future__ import annotations

import dataclasses

import pytest

from infer_operator import labels
from infer_operator.nodeview import NodeStates, NodeView
from infer_operator.podview import PodView
from infer_operator.registration.serving import can_serve
from infer_operator.slim import NODE, POD, slim
from tests.support.pods import pod

READY_NODE = NodeView("node-a", "True")
NODES = {
    "node-a": READY_NODE,
    "node-unknown": NodeView("node-unknown", "Unknown", ("node.kubernetes.io/unreachable",)),
    "node-false": NodeView("node-false", "False", ("node.kubernetes.io/not-ready",)),
    "node-tainted": NodeView("node-tainted", "True", ("node.kubernetes.io/unreachable",)),
}


def serving(**changes) -> PodView:
    return dataclasses.replace(pod(0, "sync"), **{"node": "node-a", **changes})


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({}, ""),
        ({"deleting": True}, "Terminating"),
        ({"role": labels.ROLE_ASYNC}, "NotSync"),
        ({"ip": None}, "NoAddress"),
        ({"serving": False}, "ContainersNotReady"),
        ({"gates_pending": ("example.com/model-warm",)}, "ReadinessGatePending"),
        ({"node": "node-unknown"}, "NodeLost"),
        ({"node": "node-false"}, "NodeLost"),
        ({"node": "node-tainted"}, "NodeLost"),
        ({"node": "node-never-seen"}, ""),  # a node the operator has not seen is not taken as lost
        ({"node": None}, ""),
    ],
)
def test_a_sync_pod_can_serve_only_when_every_condition_holds(changes, reason):
    verdict = can_serve(serving(**changes), NODES.get)
    assert verdict.ok is (reason == "") and verdict.reason == reason


def test_the_verdict_names_what_is_missing():
    assert "example.com/model-warm" in can_serve(serving(gates_pending=("example.com/model-warm",))).message
    assert "node-unknown is not Ready (Unknown)" in can_serve(serving(node="node-unknown"), NODES.get).message


def node_body(ready: str | None, *taints: str) -> dict:
    conditions = [{"type": "MemoryPressure", "status": "False"}]
    if ready is not None:
        conditions.append({"type": "Ready", "status": ready, "reason": "NodeStatusUnknown"})
    return {
        "metadata": {"name": "n", "labels": {"a": "b"}, "annotations": {"x": "y"}, "managedFields": [{}]},
        "spec": {"podCIDR": "10.0.0.0/24", "taints": [{"key": t, "effect": "NoExecute"} for t in taints]},
        "status": {"conditions": conditions, "images": [{"names": ["big"]}], "capacity": {"cpu": "8"}},
    }


@pytest.mark.parametrize(
    ("body", "lost"),
    [
        (node_body("True"), None),
        (node_body(None), None),
        (node_body("Unknown", "node.kubernetes.io/unreachable"), "node n is not Ready (Unknown)"),
        (node_body("True", "node.kubernetes.io/not-ready"), "node n is tainted node.kubernetes.io/not-ready"),
        (node_body("True", "example.com/gpu-broken"), None),  # someone else's taint: not ours to judge
    ],
)
def test_a_node_is_lost_by_its_ready_condition_or_the_node_controllers_taints(body, lost):
    assert NodeView.from_body(body).lost == lost
    slim(body, NODE)  # what the watch keeps says the same
    assert NodeView.from_body(body).lost == lost
    assert "images" not in body["status"] and "labels" not in body["metadata"] and "podCIDR" not in body["spec"]


def test_a_node_state_change_is_told_once():
    states = NodeStates()
    assert not states.changed("n", None)  # first seen, fine: nothing to look at
    assert states.changed("n", "node n is not Ready (Unknown)")
    assert not states.changed("n", "node n is not Ready (Unknown)")
    assert states.changed("n", None)
    assert states.changed("m", "node m is not Ready (False)")  # first seen lost


def test_a_pod_reads_its_node_and_the_gates_of_others_that_are_not_true():
    body = {
        "metadata": {"name": "llm-0", "namespace": "ns", "uid": "u", "labels": {labels.LABEL_ROLE: "sync"}},
        "spec": {
            "nodeName": "node-a",
            "readinessGates": [
                {"conditionType": labels.CONDITION_READY},
                {"conditionType": "example.com/model-warm"},
                {"conditionType": "target-health.elbv2.k8s.aws/tg"},
            ],
            "containers": [{"name": "m", "image": "x", "env": [{"name": "A"}]}],
        },
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.5",
            "conditions": [
                {"type": "ContainersReady", "status": "True"},
                {"type": "target-health.elbv2.k8s.aws/tg", "status": "True"},
                {"type": "example.com/model-warm", "status": "False"},
            ],
        },
    }
    slim(body, POD)
    view = PodView.from_body(body)
    assert view.node == "node-a" and view.gates_pending == ("example.com/model-warm",)
