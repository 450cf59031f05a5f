"""A service's owned objects in the reconcile pass, against an in-memory API: applied once per
generation and again after a transient failure, written only where the object of that name is ours
(a name known to be ours is not read again), the PodDisruptionBudget made and removed with the spec,
drift told from our own writes, the Services targeting the pods' named port once every pod has it,
and rejected or forbidden writes and names the objects cannot carry reported as Degraded."""

from __future__ import annotations

import pytest

from infer_operator import kinds, labels
from infer_operator.reconcile.step import RETRY_SOON_SECONDS
from tests.support.reconcile_world import NAME, NS, World, pod_body, revised

# -- applied by generation, drift, and API faults --------------------------------------------------


async def test_a_spec_change_is_applied_once_by_generation():
    world = World(replicas=2, syncReplicas=1)
    await world.run(apply_objects=True)
    world.patch_spec(replicas=3)
    await world.run()
    assert world.kube.count("apply") == 8
    assert world.kube.obj("apps/v1", "StatefulSet", NS, NAME)["spec"]["replicas"] == 3
    await world.run()
    assert world.kube.count("apply") == 8


async def test_drift_is_told_from_our_own_writes_by_the_kind_marker():
    world = World(replicas=1)
    await world.run(apply_objects=True)
    sts = world.kube.obj("apps/v1", "StatefulSet", NS, NAME)
    service = world.kube.obj("v1", "Service", NS, NAME)
    reconciler = world.reconciler
    assert not reconciler.is_drift(kinds.STATEFUL_SET, NAME, sts, deleted=False)
    assert not reconciler.is_drift(kinds.SERVICE, NAME, service, deleted=False)
    # A status update of the StatefulSet moves its resourceVersion, not its generation: not drift.
    sts["metadata"]["resourceVersion"] = "999999"
    assert not reconciler.is_drift(kinds.STATEFUL_SET, NAME, sts, deleted=False)
    sts["metadata"]["generation"] += 1
    assert reconciler.is_drift(kinds.STATEFUL_SET, NAME, sts, deleted=False)
    service["metadata"]["resourceVersion"] = "999999"
    assert reconciler.is_drift(kinds.SERVICE, NAME, service, deleted=False)
    assert reconciler.is_drift(kinds.CONFIG_MAP, f"{NAME}-scripts", None, deleted=True)


async def test_a_transient_apply_failure_is_retried_soon_without_a_degraded_status():
    world = World(replicas=1)
    world.kube.fail("apply", 503, kind="StatefulSet")
    retry = await world.run(apply_objects=True)
    assert retry == RETRY_SOON_SECONDS
    assert world.condition("Degraded")["status"] == "False"
    assert world.kube.obj("apps/v1", "StatefulSet", NS, NAME) is None
    await world.run()  # objects.pending: applied again although nothing asked for it
    assert world.kube.obj("apps/v1", "StatefulSet", NS, NAME) is not None


async def test_a_rejected_statefulset_is_degraded_with_one_event_naming_the_object():
    world = World(replicas=1)
    world.kube.fail("apply", 422, kind="StatefulSet", count=2, message="spec.template: bad")
    await world.run(apply_objects=True)
    degraded = world.condition("Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "InvalidPodTemplate"
    assert "StatefulSet llm was rejected: spec.template: bad" in degraded["message"]
    await world.run(apply_objects=True)
    assert [e[1] for e in world.events] == ["InvalidPodTemplate"]  # once, not on every pass
    await world.run(apply_objects=True)
    assert world.condition("Degraded")["status"] == "False"
    assert [e[1] for e in world.events] == ["InvalidPodTemplate", "Recovered"]


@pytest.mark.parametrize("verb", ["apply", "patch"])
async def test_forbidden_writes_are_reported_not_retried_blindly(verb):
    world = World(replicas=1)
    world.add_pods(pod_body(0))
    if verb == "apply":
        world.kube.fail("apply", 403, kind="Service", message="forbidden")
        await world.run(apply_objects=True)
        assert world.condition("Degraded")["reason"] == "ApplyFailed"
    else:
        world.kube.fail("patch", 403, kind="Pod", message="forbidden")
        retry = await world.run(apply_objects=True)
        assert retry != RETRY_SOON_SECONDS and world.condition("Degraded")["status"] == "False"


async def test_a_name_the_owned_objects_cannot_carry_is_degraded_naming_it():
    world = World(replicas=1)
    key = (kinds.INFERENCE_SERVICE.api_version, labels.KIND, NS, NAME)
    world.kube.objects[key]["metadata"]["name"] = "x" * 53  # stored under an older CRD
    await world.reconciler.run_pass(world.kube.objects[key], [], True)
    assert world.kube.count("apply") == 0
    assert [e[1] for e in world.events] == ["InvalidSpec"] and "metadata.name" in world.events[0][2]


async def test_the_services_target_the_named_port_once_every_pod_has_it():
    world = World(replicas=2)
    world.add_pods(revised(pod_body(0, "sync"), "llm-1", port=None), revised(pod_body(1, "sync"), "llm-1"))
    await world.run(apply_objects=True)
    assert world.kube.obj("v1", "Service", NS, NAME)["spec"]["ports"][0]["targetPort"] == 8000
    key = ("v1", "Pod", NS, f"{NAME}-0")
    world.kube.objects[key] = revised(world.kube.objects[key], "llm-2")
    await world.run()
    assert world.kube.obj("v1", "Service", NS, NAME)["spec"]["ports"][0]["targetPort"] == labels.SYNC_PORT_NAME


# -- only what is ours: owned objects and the PodDisruptionBudget ----------------------------------


def foreign(kind: str, name: str, api_version: str = "v1", **metadata) -> dict:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": NS, **metadata},
        "spec": {"theirs": True},
    }


@pytest.mark.parametrize(
    ("metadata", "taken"),
    [
        ({}, True),  # someone else's, unlabelled
        ({"labels": {labels.LABEL_MANAGED_BY: labels.MANAGED_BY, labels.LABEL_SERVICE: "other"}}, True),
        (
            {
                "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u-web", "controller": True}
                ]
            },
            True,
        ),  # another controller's
        ({"labels": {labels.LABEL_MANAGED_BY: labels.MANAGED_BY, labels.LABEL_SERVICE: NAME}}, False),  # our orphan
    ],
)
async def test_an_object_of_the_same_name_is_written_only_if_ours(metadata, taken):
    world = World(replicas=1)
    world.kube.put(foreign("Service", NAME, **metadata))
    await world.run(apply_objects=True)
    service = world.kube.obj("v1", "Service", NS, NAME)
    if taken:
        assert service["spec"] == {"theirs": True}
        degraded = world.condition("Degraded")
        assert (degraded["status"], degraded["reason"]) == ("True", "ObjectNotOwned")
        assert f"Service {NAME} already exists" in degraded["message"]
        assert world.kube.obj("apps/v1", "StatefulSet", NS, NAME) is None  # nothing applied past it
    else:
        assert service["metadata"]["ownerReferences"][0]["uid"] == world.body()["metadata"]["uid"]
        assert world.condition("Degraded")["status"] == "False"


async def test_names_known_to_be_ours_are_not_read_again():
    world = World(replicas=1)
    await world.run(apply_objects=True)
    assert world.kube.count("get") == 4  # one read per name, before its first write
    world.patch_spec(replicas=2)
    await world.run()
    assert world.kube.count("get") == 4


def pdb(world: World) -> dict | None:
    return world.kube.obj("policy/v1", "PodDisruptionBudget", NS, NAME)


async def test_the_disruption_budget_is_made_and_removed_with_the_spec():
    world = World(replicas=4, podDisruptionBudget={})
    await world.run(apply_objects=True)
    budget = pdb(world)
    assert budget["spec"]["maxUnavailable"] == 1 and budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert budget["spec"]["selector"]["matchLabels"] == labels.selector_labels(NAME)
    world.reconciler.objects.owned.observe("PodDisruptionBudget", budget, deleted=False)  # as the watch shows it
    world.patch_spec(podDisruptionBudget=None)
    await world.run()
    assert pdb(world) is None


async def test_a_budget_of_the_same_name_that_is_not_ours_stays():
    world = World(replicas=2)
    theirs = world.kube.put(foreign("PodDisruptionBudget", NAME, "policy/v1"))
    world.reconciler.objects.owned.observe("PodDisruptionBudget", theirs, deleted=False)
    await world.run(apply_objects=True)
    assert pdb(world)["spec"] == {"theirs": True}
