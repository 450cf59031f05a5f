"""Role labelling and split changes: which pods restart, and how many at once; which indexed pods
are ghosts."""

import dataclasses

import pytest

from devtools.harness import isvc_body
from infer_operator import labels
from infer_operator.api.v1alpha1 import parse_spec
from infer_operator.podview import PodView
from infer_operator.reconciler import vanished_pods
from infer_operator.roles import plan_role_flips, role_patch
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
    assert patch["metadata"]["finalizers"] == ["other/x", labels.POD_FINALIZER]
    assert patch["metadata"]["resourceVersion"] == "7"
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
        # 2 -> 4: two flip, one at a time
        (settled(5, 2), {"replicas": 5, "syncReplicas": 4}, ["llm-2"], 2),
        # ... up to maxUnavailable at once
        (settled(5, 2), {"replicas": 5, "syncReplicas": 4,
                         "updateStrategy": {"rollingUpdate": {"maxUnavailable": 2}}}, ["llm-2", "llm-3"], 2),
        # one pod already restarting: wait for it
        (settled(5, 2)[:2] + [pod(2, None, ready=False)] + settled(5, 2)[3:], {"replicas": 5, "syncReplicas": 4},
         [], 1),
        # a mismatched pod that is not Ready costs nothing to restart
        (settled(5, 2)[:3] + [pod(3, "async", ready=False), pod(4, "async")], {"replicas": 5, "syncReplicas": 4},
         ["llm-3"], 2),
        # scaling up: new ordinals are not flips; missing pods use the budget
        (settled(3, 3), {"replicas": 5, "syncReplicas": 3}, [], 0),
        # scaling down: pods above replicas are the StatefulSet's to remove, not ours to flip
        (settled(5, 5), {"replicas": 3, "syncReplicas": 3}, [], 0),
        # 4 -> 2: sync pods 2 and 3 become async, one at a time
        (settled(4, 4), {"replicas": 4, "syncReplicas": 2}, ["llm-2"], 2),
    ],
)
def test_role_flip_plan(pods, overrides, restart, pending):
    plan = plan_role_flips(pods, spec(**overrides))
    assert [p.name for p in plan.restart_now] == restart
    assert plan.pending == pending


def test_podview_reads_ordinal_role_readiness():
    body = {
        "metadata": {"name": "llm-3", "namespace": "ns", "uid": "u",
                     "labels": {labels.LABEL_SERVICE: "llm", labels.LABEL_POD_INDEX: "3", labels.LABEL_ROLE: "async"},
                     "finalizers": [labels.POD_FINALIZER], "resourceVersion": "9"},
        "status": {"phase": "Running", "podIP": "10.1.2.3",
                   "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
    }
    view = PodView.from_body(body)
    assert (view.ordinal, view.role, view.ip, view.ready, view.deleting) == (3, "async", "10.1.2.3", True, False)
    assert view.ready_since.year == 2026
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    body["status"]["phase"] = "Pending"
    view = PodView.from_body(body)
    assert view.deleting and not view.ready


@pytest.mark.parametrize(
    ("indexed", "listed", "vanished"),
    [
        ([0, 1, 2], [0, 1, 2], []),          # nothing missed
        ([0, 1, 2], [0, 2], [1]),            # a deletion the watch never delivered
        ([0, 1], [0, 1, 2], []),             # listed but not indexed yet: not a ghost
        ([0, 1, 2], [], [0, 1, 2]),          # the service's pods are all gone
        ([], [0], []),
    ],
)
def test_vanished_pods_are_the_indexed_ones_a_later_read_does_not_list(indexed, listed, vanished):
    found = vanished_pods([pod(i, "sync") for i in indexed], [pod(i, "sync") for i in listed])
    assert [p.ordinal for p in found] == vanished


def test_a_pod_recreated_under_the_same_name_does_not_hide_its_ghost():
    old = pod(1, "sync", deleting=True)
    new = dataclasses.replace(pod(1, "sync"), uid="uid-1-new")
    assert vanished_pods([old, new], [new]) == [old]
