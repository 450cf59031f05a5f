"""Role labelling and split changes: which pods restart, and how many at once."""

import dataclasses

import pytest

from devtools.harness import isvc_body
from infer_operator import labels
from infer_operator.api.v1alpha1 import parse_spec
from infer_operator.podview import PodView
from infer_operator.reconcile.roles import plan_restarts, role_patch
from tests.support.pods import pod


def spec(**overrides):
    return parse_spec(isvc_body(**overrides)["spec"])


def settled(replicas, sync):
    return [pod(i, "sync" if i < sync else "async") for i in range(replicas)]


@pytest.mark.parametrize(
    ("ordinal", "replicas", "sync", "role"),
    [(0, 5, 2, "sync"), (1, 5, 2, "sync"), (2, 5, 2, "async"), (4, 5, 2, "async"), (3, 4, None, "sync")],
)
def test_new_pod_is_labelled_with_its_role_and_frozen_split(ordinal, replicas, sync, role):
    result = role_patch(pod(ordinal, None), spec(replicas=replicas, syncReplicas=sync), with_finalizer=False)
    assert result["metadata"]["labels"] == {labels.LABEL_ROLE: role}
    assert result["metadata"]["annotations"] == {
        labels.ANNOTATION_SYNC_REPLICAS: str(sync if sync is not None else replicas),
        labels.ANNOTATION_REPLICAS: str(replicas),
    }
    assert "finalizers" not in result["metadata"]


def test_labelled_pod_is_left_alone_and_finalizer_added_only_when_needed():
    s = spec()
    assert role_patch(pod(0, "sync"), s, with_finalizer=False) is None
    patch = role_patch(pod(0, "sync", finalizers=("other/x",)), s, with_finalizer=True)
    # A strategic merge patch: the list is merged into the pod's, no precondition needed.
    assert patch["metadata"]["finalizers"] == [labels.POD_FINALIZER]
    assert "resourceVersion" not in patch["metadata"]
    assert "labels" not in patch["metadata"]
    assert role_patch(pod(0, "sync", finalizers=(labels.POD_FINALIZER,)), s, with_finalizer=True) is None
    assert role_patch(pod(0, None, deleting=True), s, with_finalizer=True) is None


@pytest.mark.parametrize(
    ("pods", "overrides", "restart", "pending"),
    [
        # settled: nothing to do
        (settled(5, 2), {"replicas": 5, "syncReplicas": 2}, [], 0),
        # 2 -> 3: only pod 2 flips
        (settled(5, 2), {"replicas": 5, "syncReplicas": 3}, ["llm-2"], 1),
        # 2 -> 4: two flip, one at a time, highest ordinal first
        (settled(5, 2), {"replicas": 5, "syncReplicas": 4}, ["llm-3"], 2),
        # ... up to maxUnavailable at once
        (
            settled(5, 2),
            {"replicas": 5, "syncReplicas": 4, "updateStrategy": {"rollingUpdate": {"maxUnavailable": 2}}},
            ["llm-3", "llm-2"],
            2,
        ),
        # one pod already restarting: wait for it
        (
            settled(5, 2)[:2] + [pod(2, None, ready=False)] + settled(5, 2)[3:],
            {"replicas": 5, "syncReplicas": 4},
            [],
            1,
        ),
        # a mismatched pod that is not Ready costs nothing to restart
        (
            settled(5, 2)[:3] + [pod(3, "async", ready=False), pod(4, "async")],
            {"replicas": 5, "syncReplicas": 4},
            ["llm-3"],
            2,
        ),
        # scaling up: new ordinals are not flips; missing pods use the budget
        (settled(3, 3), {"replicas": 5, "syncReplicas": 3}, [], 0),
        # scaling down: pods above replicas are the StatefulSet's to remove, not ours to flip
        (settled(5, 5), {"replicas": 3, "syncReplicas": 3}, [], 0),
        # 4 -> 2: sync pods 2 and 3 become async, one at a time
        (settled(4, 4), {"replicas": 4, "syncReplicas": 2}, ["llm-3"], 2),
        # syncReplicas above replicas (an HPA scaled down): all sync, nobody flips
        (settled(2, 2), {"replicas": 2, "syncReplicas": 5}, [], 0),
    ],
)
def test_role_flip_plan(pods, overrides, restart, pending):
    plan = plan_restarts(pods, spec(**overrides), "llm-new")
    assert [p.name for p in plan.restart_now] == restart
    assert plan.pending == pending


def revised(pods, *old: int):
    """The pods, those with the given ordinals still of the old template revision."""
    return [dataclasses.replace(p, revision="llm-old" if p.ordinal in old else "llm-new") for p in pods]


@pytest.mark.parametrize(
    ("pods", "overrides", "update_revision", "restart", "outdated"),
    [
        # a new template: the highest ordinal first, one at a time
        (revised(settled(4, 2), 0, 1, 2, 3), {"replicas": 4, "syncReplicas": 2}, "llm-new", ["llm-3"], 4),
        (
            revised(settled(4, 2), 0, 1, 2, 3),
            {"replicas": 4, "syncReplicas": 2, "updateStrategy": {"rollingUpdate": {"maxUnavailable": "50%"}}},
            "llm-new",
            ["llm-3", "llm-2"],
            4,
        ),
        # the template and the split in one edit share one budget: one pod down, not two
        (revised(settled(4, 2), 0, 1, 2, 3), {"replicas": 4, "syncReplicas": 3}, "llm-new", ["llm-3"], 4),
        (revised(settled(4, 2), 3), {"replicas": 4, "syncReplicas": 3}, "llm-new", ["llm-3"], 1),
        # a pod both outdated and of the wrong role is restarted once
        (revised(settled(4, 2), 2), {"replicas": 4, "syncReplicas": 3}, "llm-new", ["llm-2"], 1),
        # OnDelete: outdated pods wait for someone; only flips are the operator's
        (
            revised(settled(4, 2), 0, 1, 2, 3),
            {"replicas": 4, "syncReplicas": 2, "updateStrategy": {"type": "OnDelete"}},
            "llm-new",
            [],
            4,
        ),
        # a partition keeps the ordinals below it
        (
            revised(settled(4, 2), 0, 1),
            {"replicas": 4, "syncReplicas": 2, "updateStrategy": {"rollingUpdate": {"partition": 2}}},
            "llm-new",
            [],
            2,
        ),
        # the revision unknown (the StatefulSet controller has not seen the template yet): wait
        (revised(settled(4, 2), 0, 1, 2, 3), {"replicas": 4, "syncReplicas": 2}, None, [], 0),
        # a pod down already spends the budget
        (
            revised(settled(4, 2)[:3] + [pod(3, "async", ready=False)], 0, 1, 2),
            {"replicas": 4, "syncReplicas": 2},
            "llm-new",
            [],
            3,
        ),
    ],
)
def test_rollouts_and_flips_share_one_budget(pods, overrides, update_revision, restart, outdated):
    plan = plan_restarts(pods, spec(**overrides), update_revision)
    assert [p.name for p in plan.restart_now] == restart
    assert len(plan.outdated) == outdated


def test_podview_reads_ordinal_role_readiness():
    body = {
        "metadata": {
            "name": "llm-3",
            "namespace": "ns",
            "uid": "u",
            "labels": {labels.LABEL_SERVICE: "llm", labels.LABEL_POD_INDEX: "3", labels.LABEL_ROLE: "async"},
            "finalizers": [labels.POD_FINALIZER],
            "resourceVersion": "9",
        },
        "status": {
            "phase": "Running",
            "podIP": "10.1.2.3",
            "conditions": [
                {"type": "Ready", "status": "False"},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": labels.CONDITION_READY, "status": "False"},
            ],
        },
    }
    view = PodView.from_body(body)
    assert (view.ordinal, view.role, view.ip, view.ready, view.deleting) == (3, "async", "10.1.2.3", False, False)
    # Serving (containers ready) while Ready waits for the operator's readiness gate.
    assert (view.serving, view.gate_open) == (True, False)
    assert view.serving_since.year == 2026
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    body["status"]["phase"] = "Pending"
    view = PodView.from_body(body)
    assert view.deleting and not view.ready
