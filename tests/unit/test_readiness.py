"""The readiness gate, pure: which pods' gates open, for what reason, and the conditions written."""

import pytest

from infer_operator import labels
from infer_operator.reconcile.readiness import gates_to_open, pod_conditions
from tests.support.pods import pod

NOW = "2026-11-29T00:00:00Z"


@pytest.mark.parametrize(
    ("the_pod", "registry_in_use", "registered", "reason"),
    [
        # a sync pod's gate waits for its registration...
        (pod(0, "sync", ready=False, serving=True, gate_open=False), True, set(), None),
        (pod(0, "sync", ready=False, serving=True, gate_open=False), True, {"uid-0"}, "Registered"),
        # ...unless nothing is published
        (pod(0, "sync", ready=False, serving=True, gate_open=False), False, set(), "NoRegistry"),
        # an async pod's opens once its containers are ready
        (pod(4, "async", ready=False, serving=True, gate_open=False), True, set(), "AsyncRole"),
        (pod(4, "async", ready=False, serving=False, gate_open=False), True, set(), None),
        # not before the containers are ready, nor on a pod without a role, going, or already open
        (pod(0, "sync", ready=False, serving=False, gate_open=False), True, {"uid-0"}, None),
        (pod(0, None, ready=False, serving=True, gate_open=False), False, set(), None),
        (pod(0, "sync", ready=False, serving=True, gate_open=False, deleting=True), False, set(), None),
        (pod(0, "sync", ready=True), True, {"uid-0"}, None),
    ],
)
def test_which_gates_open(the_pod, registry_in_use, registered, reason):
    openings = gates_to_open(
        [the_pod], registry_in_use=registry_in_use, registered_uids=registered, registry_service="llm"
    )
    assert [o.reason for o in openings] == ([reason] if reason else [])


def test_the_mark_and_the_gate_go_in_one_patch_per_pod():
    sync = pod(0, "sync", ready=False, serving=True, gate_open=False)
    async_ = pod(4, "async", ready=False, serving=True, gate_open=False)
    openings = gates_to_open([sync, async_], registry_in_use=True, registered_uids={"uid-0"}, registry_service="llm")
    written = pod_conditions([sync], openings, "llm", NOW)
    assert sorted(written) == ["llm-0", "llm-4"]
    assert [c["type"] for c in written["llm-0"][1]] == [labels.CONDITION_REGISTERED, labels.CONDITION_READY]
    assert [(c["type"], c["status"], c["reason"]) for c in written["llm-4"][1]] == [
        (labels.CONDITION_READY, "True", "AsyncRole")
    ]
