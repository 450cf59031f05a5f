"""What the reconcile pass writes to a service's pods, against an in-memory API and registry: the
role label on new pods (not sent again before the index shows it, sent again to the version shown
once its memory expires), restarts for role flips and rollouts (one pod down at a time, through the
Eviction API, waiting while a PodDisruptionBudget refuses, left to the user under OnDelete), and the
pod conditions (the readiness gate of a sync pod opened once it is registered)."""

from __future__ import annotations

import dataclasses
import time
import types

from infer_operator import labels
from infer_operator.reconcile import podwrites, reconciler, status_writer
from infer_operator.reconcile.step import RETRY_SOON_SECONDS
from tests.support.reconcile_world import ETCD, NAME, NS, World, pod_body, revised

# -- role labels -----------------------------------------------------------------------------------


async def test_a_pod_that_changed_or_vanished_under_the_label_patch_is_skipped():
    world = World(replicas=2, syncReplicas=1)
    world.add_pods(pod_body(0), pod_body(1))
    world.kube.fail("patch", 409, kind="Pod", name=f"{NAME}-0")
    world.kube.fail("patch", 404, kind="Pod", name=f"{NAME}-1")
    retry = await world.run(apply_objects=True)
    assert retry != RETRY_SOON_SECONDS
    await world.run()
    assert world.pod(0)["metadata"]["labels"][labels.LABEL_ROLE] == "sync"


async def test_a_failing_api_while_labelling_pods_retries_soon():
    world = World(replicas=1)
    world.add_pods(pod_body(0))
    world.kube.fail("patch", 500, kind="Pod")
    assert await world.run(apply_objects=True) == RETRY_SOON_SECONDS


async def test_a_role_patch_is_not_sent_again_before_the_index_shows_it():
    world = World(replicas=1, registry=ETCD)
    world.add_pods(pod_body(0))
    stale = world.index()
    await world.run(apply_objects=True)
    await world.reconciler.run_pass(world.body(), stale, False)  # the pod's event has not come yet
    # A version from between (the kubelet wrote its status before our patch landed): still unlabelled.
    between = [dataclasses.replace(p, resource_version="between") for p in stale]
    await world.reconciler.run_pass(world.body(), between, False)
    assert world.kube.count("patch", "Pod") == 1
    await world.run()  # the index shows the label: the write is done
    world.kube.objects[("v1", "Pod", NS, f"{NAME}-0")]["metadata"]["labels"].pop(labels.LABEL_ROLE)
    world.kube.objects[("v1", "Pod", NS, f"{NAME}-0")]["metadata"]["resourceVersion"] = "9999"
    await world.run()  # someone took the label off afterwards: labelled again
    assert world.kube.count("patch", "Pod") == 2


async def test_a_role_patch_the_index_never_shows_is_sent_again_when_its_memory_expires(monkeypatch):
    world = World(replicas=1, registry=ETCD)
    world.add_pods(pod_body(0))
    stale = world.index()
    await world.run(apply_objects=True)
    retry = await world.reconciler.run_pass(world.body(), stale, False)
    assert retry is not None and retry <= world.reconciler.pods.labelled.expiry  # the loop looks again by then
    later = time.monotonic() + world.reconciler.pods.labelled.expiry + 1
    clock = types.SimpleNamespace(monotonic=lambda: later)
    for module in (reconciler, podwrites, status_writer):  # the next pass runs `later`
        monkeypatch.setattr(module, "time", clock)
    # Sent again, but only to the version the view shows: a stale view (here: the pod has its role
    # since) conflicts and changes nothing, so a split changed meanwhile never relabels a pod.
    world.patch_spec(syncReplicas=0)
    await world.reconciler.run_pass(world.body(), stale, False)
    assert world.kube.count("patch", "Pod") == 2
    assert world.kube.objects[("v1", "Pod", NS, f"{NAME}-0")]["metadata"]["labels"][labels.LABEL_ROLE] == "sync"
    # And a failed resend does not make the loop spin: nothing is waiting to expire any more.
    assert world.reconciler.pods.labelled.next_expiry(later) is None


# -- restarts: role flips and rollouts share one budget --------------------------------------------


async def test_a_split_change_restarts_one_ready_pod_at_a_time_with_a_uid_precondition():
    world = World(replicas=4, syncReplicas=2)
    world.add_pods(*(pod_body(i, "sync" if i < 2 else "async") for i in range(4)))
    world.patch_spec(syncReplicas=4)
    await world.run(apply_objects=True)
    deleted = [name for verb, kind, name in world.kube.calls if verb == "delete"]
    assert deleted == [f"{NAME}-3"]
    assert world.pod(3)["metadata"].get("deletionTimestamp")
    assert [e[1] for e in world.events] == ["RoleChange"]
    assert world.condition("Progressing")["reason"] == "ChangingSplit"
    # The next pass sees pod 3 terminating: the budget is spent, nobody else goes.
    await world.run()
    assert [name for verb, _, name in world.kube.calls if verb == "delete"] == [f"{NAME}-3"]


async def test_a_pod_deleted_by_an_earlier_pass_counts_as_going_before_the_index_shows_it():
    world = World(replicas=4, syncReplicas=2)
    world.add_pods(*(pod_body(i, "sync" if i < 2 else "async") for i in range(4)))
    world.patch_spec(syncReplicas=4)
    stale_index = world.index()
    await world.reconciler.run_pass(world.body(), stale_index, True)
    await world.reconciler.run_pass(world.body(), stale_index, False)  # the index lags
    assert [name for verb, _, name in world.kube.calls if verb == "delete"] == [f"{NAME}-3"]


async def test_restarts_go_through_evictions_and_wait_while_a_budget_refuses():
    world = World(replicas=2, syncReplicas=2)
    world.add_pods(pod_body(0, "sync"), pod_body(1, "sync"))
    await world.run(apply_objects=True)
    world.kube.fail("evict", 429, count=2, message="Cannot evict pod as it would violate the pod's disruption budget.")
    world.patch_spec(syncReplicas=1)
    await world.run()
    await world.run()
    assert world.kube.count("delete") == 0
    progressing = world.condition("Progressing")
    assert f"restarts wait: a PodDisruptionBudget refuses evicting pod {NAME}-1" in progressing["message"]
    assert [e[1] for e in world.events].count("RestartBlocked") == 1  # said once, not every pass
    await world.run()
    assert [(verb, name) for verb, _, name in world.kube.calls if verb in ("evict", "delete")][-2:] == [
        ("evict", f"{NAME}-1"),
        ("delete", f"{NAME}-1"),
    ]
    assert "PodDisruptionBudget" not in world.condition("Progressing")["message"]


async def test_a_restart_the_eviction_api_refuses_for_another_reason_is_named_and_waits():
    """Two PodDisruptionBudgets over one pod (the user's own beside the spec's): the Eviction API
    answers 500 for every restart. The split change waits, and the status and one event say why."""
    world = World(replicas=2, syncReplicas=2)
    world.add_pods(pod_body(0, "sync"), pod_body(1, "sync"))
    await world.run(apply_objects=True)
    two_budgets = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    world.kube.fail("evict", 500, count=2, message=two_budgets)
    world.patch_spec(syncReplicas=1)
    await world.run()
    await world.run()
    assert world.kube.count("delete") == 0
    progressing = world.condition("Progressing")
    assert progressing["status"] == "True" and progressing["reason"] == "ChangingSplit"
    assert f"the Eviction API refuses evicting pod {NAME}-1 (HTTP 500): {two_budgets}" in progressing["message"]
    events = [e for e in world.events if e[1] == "RestartBlocked"]
    assert len(events) == 1 and two_budgets in events[0][2]
    # A webhook's denial is named the same way.
    world.kube.fail("evict", 403, count=1, message='admission webhook "guard.example" denied the request')
    await world.run()
    assert "(HTTP 403): admission webhook" in world.condition("Progressing")["message"]


def statefulset_at(world: World, revision: str, observed: bool = True) -> None:
    sts = world.kube.obj("apps/v1", "StatefulSet", NS, NAME)
    generation = sts["metadata"]["generation"]
    world.reconciler.observe_statefulset(
        {
            "metadata": {"generation": generation},
            "status": {"observedGeneration": generation if observed else generation - 1, "updateRevision": revision},
        }
    )


async def test_a_new_template_rolls_one_pod_at_a_time_highest_ordinal_first():
    world = World(replicas=3, syncReplicas=1)
    world.add_pods(*(revised(pod_body(i, "sync" if i < 1 else "async"), "llm-1") for i in range(3)))
    await world.run(apply_objects=True)
    statefulset_at(world, "llm-2")
    await world.run()
    assert [name for verb, _, name in world.kube.calls if verb == "delete"] == [f"{NAME}-2"]
    assert [e[1] for e in world.events] == ["RollingUpdate"]
    await world.run()
    progressing = world.condition("Progressing")
    assert progressing["status"] == "True" and progressing["reason"] in ("RollingUpdate", "PodsNotReady", "Scaling")
    assert [name for verb, _, name in world.kube.calls if verb == "delete"] == [f"{NAME}-2"]  # budget spent


async def test_an_unobserved_template_is_not_rolled_yet():
    world = World(replicas=2)
    world.add_pods(*(revised(pod_body(i, "sync"), "llm-1") for i in range(2)))
    await world.run(apply_objects=True)
    statefulset_at(world, "llm-2", observed=False)
    await world.run()
    assert world.kube.count("delete") == 0


async def test_one_edit_of_template_and_split_keeps_one_pod_down():
    world = World(replicas=4, syncReplicas=2)
    world.add_pods(*(revised(pod_body(i, "sync" if i < 2 else "async"), "llm-1") for i in range(4)))
    await world.run(apply_objects=True)
    world.patch_spec(syncReplicas=3)
    statefulset_at(world, "llm-2")
    await world.run()
    await world.run()
    assert world.kube.count("delete") == 1


async def test_on_delete_outdated_pods_wait_and_the_status_says_so():
    world = World(
        replicas=2,
        updateStrategy={"type": "OnDelete"},
        lifecycle={"drainSeconds": 50, "terminationGracePeriodSeconds": 60},
    )
    world.add_pods(*(revised(pod_body(i, "sync"), "llm-1", grace=30) for i in range(2)))
    await world.run(apply_objects=True)
    statefulset_at(world, "llm-2")
    await world.run()
    assert world.kube.count("delete") == 0
    assert world.condition("Ready")["status"] == "True"
    progressing = world.condition("Progressing")
    # Under way, waiting for someone to delete the pods: it says how many, and that deleting applies it.
    assert (progressing["status"], progressing["reason"]) == ("True", "OnDelete")
    assert "2 of 2 pod(s) run an older template" in progressing["message"]
    assert "deleting them applies the change" in progressing["message"]
    assert "grace period not longer than drainSeconds" in progressing["message"]
    assert world.status()["updatedReplicas"] == 0


# -- pod conditions: the registration mark and the readiness gate ----------------------------------


def gate(world: World, ordinal: int) -> tuple[str | None, str | None]:
    """The pod's readiness gate and Ready condition, as (gate status, Ready status)."""
    conditions = {c["type"]: c["status"] for c in world.pod(ordinal)["status"]["conditions"]}
    return conditions.get(labels.CONDITION_READY), conditions.get("Ready")


async def test_the_readiness_gate_opens_for_a_sync_pod_once_it_is_registered():
    world = World(replicas=2, syncReplicas=1, registry=ETCD)
    world.add_pods(
        pod_body(0, "sync", gated=True, finalizers=(labels.POD_FINALIZER,)),
        pod_body(1, "async", gated=True, finalizers=(labels.POD_FINALIZER,)),
    )
    world.registry.fail("*", 100)
    await world.run(apply_objects=True)
    # The registry failed: the sync pod stays out of Ready (no Service traffic, the rollout waits);
    # the async pod publishes nothing and is Ready as soon as its containers are.
    assert gate(world, 0) == (None, "False")
    assert gate(world, 1) == ("True", "True")
    world.registry.failures.clear()
    await world.run()
    assert set(world.registry.instances[NAME]) == {"10.0.0.10:8000"}
    assert gate(world, 0) == ("True", "True")
    assert world.status()["readyReplicas"] == 1  # counted from the index of this pass
    await world.run()
    assert world.status()["readyReplicas"] == 2


async def test_without_a_registry_the_gate_opens_with_the_containers():
    world = World(replicas=1)
    world.add_pods(pod_body(0, "sync", gated=True))
    await world.run(apply_objects=True)
    assert gate(world, 0) == ("True", "True")
    writes = len(world.kube.calls)
    await world.run()
    assert [call for call in world.kube.calls[writes:] if call[0] == "patch/status" and call[1] == "Pod"] == []


async def test_a_rollout_waits_for_the_new_pods_registration():
    world = World(replicas=2, registry=ETCD)
    world.add_pods(
        *(revised(pod_body(i, "sync", finalizers=(labels.POD_FINALIZER,), registered=True), "llm-1") for i in range(2))
    )
    await world.run(apply_objects=True)
    statefulset_at(world, "llm-2")
    await world.run()
    assert [name for verb, _, name in world.kube.calls if verb == "delete"] == [f"{NAME}-1"]
    # The StatefulSet makes pod 1 again from the new template: its app answers, but the registry
    # is down, so it is not registered and not Ready; pod 0 must stay.
    world.kube.objects.pop(("v1", "Pod", NS, f"{NAME}-1"))
    world.add_pods(
        revised(pod_body(1, "sync", gated=True, ip="10.0.0.21", finalizers=(labels.POD_FINALIZER,)), "llm-2")
    )
    world.registry.fail("*", 100)
    await world.run()
    await world.run()
    assert [name for verb, _, name in world.kube.calls if verb == "delete"] == [f"{NAME}-1"]
    assert gate(world, 1) == (None, "False")
    world.registry.failures.clear()
    await world.run()  # the registry is back: pod 1 is registered, its gate opens, it is Ready
    assert gate(world, 1) == ("True", "True")
    await world.run()
    assert [name for verb, _, name in world.kube.calls if verb == "delete"] == [f"{NAME}-1", f"{NAME}-0"]


async def test_pod_conditions_are_not_written_again_before_the_index_shows_them():
    world = World(replicas=1, registry=ETCD)
    world.add_pods(pod_body(0, "sync", finalizers=(labels.POD_FINALIZER,), gated=True))
    stale = world.index()
    await world.run(apply_objects=True)
    assert world.kube.count("patch/status", "Pod") == 1
    await world.reconciler.run_pass(world.body(), stale, False)  # the pod's event has not come yet
    assert world.kube.count("patch/status", "Pod") == 1
