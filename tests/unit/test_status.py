"""Status counts and conditions, and that an unchanged world gives an unchanged status."""

from devtools.harness import isvc_body
from infer_operator.api.v1alpha1 import parse_spec
from infer_operator.reconcile.status import Outcome, Problem, compute_status, status_changed
from tests.support.pods import pod

SPEC = parse_spec(isvc_body(replicas=5, syncReplicas=2)["spec"])


def conditions(status):
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_settled_service_is_ready():
    pods = [pod(i, "sync" if i < 2 else "async") for i in range(5)]
    status = compute_status("llm", SPEC, pods, Outcome(generation=3), None, now="T0")
    assert {
        k: status[k]
        for k in ("observedGeneration", "replicas", "readyReplicas", "syncReplicas", "syncReady", "asyncReady")
    } == {
        "observedGeneration": 3,
        "replicas": 5,
        "readyReplicas": 5,
        "syncReplicas": 2,
        "syncReady": 2,
        "asyncReady": 3,
    }
    assert status["selector"] == "app.kubernetes.io/name=llm,infer-operator.io/service=llm"
    assert conditions(status) == {
        "Ready": ("True", "AllReplicasReady"),
        "Progressing": ("False", "Settled"),
        "Degraded": ("False", "AsExpected"),
    }
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])


def test_counts_while_scaling_and_terminating():
    pods = [pod(0, "sync"), pod(1, "sync", ready=False), pod(2, "async", deleting=True)]
    status = compute_status("llm", SPEC, pods, Outcome(generation=1), None, now="T0")
    assert (status["replicas"], status["readyReplicas"], status["syncReady"], status["asyncReady"]) == (2, 1, 1, 0)
    assert conditions(status)["Ready"] == ("False", "Scaling")
    assert conditions(status)["Progressing"] == ("True", "Scaling")


def test_pending_flip_is_reported():
    pods = [pod(i, "sync" if i < 2 else "async") for i in range(5)]
    status = compute_status("llm", SPEC, pods, Outcome(generation=2, pending_flips=1), None, now="T0")
    assert conditions(status)["Progressing"] == ("True", "ChangingSplit")


def test_problem_makes_degraded_with_message():
    outcome = Outcome(
        generation=4, problem=Problem("InvalidPodTemplate", "spec.template.spec.containers[0].image: Required")
    )
    status = compute_status("llm", SPEC, [], outcome, None, now="T0")
    assert conditions(status)["Degraded"] == ("True", "InvalidPodTemplate")
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert "containers[0].image" in degraded["message"]


def test_unchanged_world_means_no_write_and_transition_times_are_kept():
    pods = [pod(i, "sync" if i < 2 else "async") for i in range(5)]
    first = compute_status("llm", SPEC, pods, Outcome(generation=1), None, now="T0")
    second = compute_status("llm", SPEC, pods, Outcome(generation=1), first, now="T1")
    assert not status_changed(first, second)
    pods[0] = pod(0, "sync", ready=False)
    third = compute_status("llm", SPEC, pods, Outcome(generation=1), second, now="T2")
    assert status_changed(second, third)
    times = {c["type"]: c["lastTransitionTime"] for c in third["conditions"]}
    assert times == {"Ready": "T2", "Progressing": "T2", "Degraded": "T0"}
