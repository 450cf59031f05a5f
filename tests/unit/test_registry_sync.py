"""A service's side of the registry in the reconcile pass, against an in-memory API and a stub
registry: our finalizer held exactly while there is registry data to clean (and nothing registered
before it is), Ready sync pods registered at the port they were started with, a pod new at an IP
claiming it, an unreachable registry reported as a condition rather than an error, the sweep
removing only what no live pod of the service (or of one sharing the registry) holds, and a
registry moved away from cleaned, and said so until it is."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from infer_operator import kinds, labels
from infer_operator.podview import PodView
from tests.support.fakes import StubRegistry
from tests.support.reconcile_world import ETCD, NAME, NS, World, pod_body, revised

# -- registration ----------------------------------------------------------------------------------


async def test_ready_sync_pods_are_registered_and_the_condition_says_so():
    world = World(replicas=3, syncReplicas=2, registry=ETCD)
    world.add_pods(
        pod_body(0, "sync", finalizers=(labels.POD_FINALIZER,)),
        pod_body(1, "sync", ready=False, finalizers=(labels.POD_FINALIZER,)),
        pod_body(2, "async", finalizers=(labels.POD_FINALIZER,)),
    )
    await world.run(apply_objects=True)
    assert set(world.registry.instances[NAME]) == {"10.0.0.10:8000"}
    synced = world.condition("RegistrySynced")
    assert synced["status"] == "True" and synced["reason"] == "InSync"
    assert world.status()["registered"] == 1


async def test_an_unreachable_registry_is_a_condition_and_a_soon_retry_not_an_error():
    world = World(replicas=1, registry=ETCD)
    world.add_pods(pod_body(0, "sync", finalizers=(labels.POD_FINALIZER,)))
    world.registry.fail("list_instances", count=1)
    retry = await world.run(apply_objects=True)
    assert 1.0 <= retry <= 2.0  # the first of growing, jittered waits
    assert world.condition("RegistrySynced")["reason"] == "RegistryUnreachable"
    assert world.condition("Degraded")["status"] == "False"


async def test_a_pod_registered_for_the_first_time_claims_its_ip_and_is_marked():
    world = World(replicas=1, registry=ETCD)
    world.add_pods(pod_body(0, "sync", finalizers=(labels.POD_FINALIZER,)))
    world.registry.configs[NAME] = {"10.0.0.10"}  # written for a dead pod that held this IP
    await world.run(apply_objects=True)
    assert world.registry.configs[NAME] == set()
    conditions = {c["type"]: c["status"] for c in world.pod(0)["status"]["conditions"]}
    assert conditions[labels.CONDITION_REGISTERED] == "True"
    entry = world.registry.instances[NAME]["10.0.0.10:8000"]
    assert entry.owner.uid == world.body()["metadata"]["uid"]
    # Config written for the pod from now on is its own: a later pass keeps it.
    world.registry.configs[NAME] = {"10.0.0.10"}
    world.registry.instances[NAME].clear()  # e.g. deregistered while it was not Ready
    await world.run()
    assert world.registry.configs[NAME] == {"10.0.0.10"}
    assert "10.0.0.10:8000" in world.registry.instances[NAME]


async def test_each_pod_is_registered_at_the_port_it_was_started_with():
    world = World(replicas=2, registry=ETCD, sync={"port": 8001})
    world.add_pods(
        revised(pod_body(0, "sync", finalizers=(labels.POD_FINALIZER,)), "llm-1", port=8000),
        revised(pod_body(1, "sync", finalizers=(labels.POD_FINALIZER,)), "llm-2", port=8001),
    )
    await world.run(apply_objects=True)
    assert set(world.registry.instances[NAME]) == {"10.0.0.10:8000", "10.0.0.11:8001"}


async def test_switching_the_registry_off_remembers_it_for_the_releaser():
    world = World(replicas=1, registry=ETCD)
    await world.run(apply_objects=True)
    assert world.services.get(NS, NAME).settings.registry.type == "etcd"
    world.patch_spec(registry={"type": "none"})
    await world.run()
    assert world.services.get(NS, NAME).settings.registry.type == "none"


# -- our finalizer: held exactly while there is registry data to clean -----------------------------


async def test_our_finalizer_is_held_exactly_while_a_registry_is_in_use_and_kopf_leftovers_go():
    world = World(replicas=1, registry=ETCD)
    key = (kinds.INFERENCE_SERVICE.api_version, labels.KIND, NS, NAME)
    world.kube.objects[key]["metadata"]["annotations"] = {labels.LEGACY_ANNOTATIONS[0]: "{...}", "keep": "me"}
    await world.run(apply_objects=True)
    assert labels.CR_FINALIZER in world.finalizers()
    assert world.body()["metadata"]["annotations"] == {"keep": "me"}
    world.patch_spec(registry={"type": "none"})
    await world.run()
    await world.run()  # the old registry is cleaned first: then nothing is left to hold for
    assert labels.CR_FINALIZER not in world.finalizers()


async def test_nothing_is_registered_before_the_finalizer_that_cleans_it_up_is_held():
    world = World(replicas=1, registry=ETCD)
    world.add_pods(pod_body(0, "sync", finalizers=(labels.POD_FINALIZER,)))
    world.kube.fail("patch", 409, kind=labels.KIND, count=2)  # a conflict, and again after reading it
    await world.run(apply_objects=True)
    assert world.registry.instances.get(NAME, {}) == {}
    await world.run()
    assert set(world.registry.instances[NAME]) == {"10.0.0.10:8000"}


async def test_a_conflict_on_the_finalizer_is_resolved_by_reading_the_object_in_the_same_pass():
    world = World(replicas=1, registry=ETCD)
    world.add_pods(pod_body(0, "sync", finalizers=(labels.POD_FINALIZER,)))
    world.kube.fail("patch", 409, kind=labels.KIND)
    await world.run(apply_objects=True)
    assert labels.CR_FINALIZER in world.finalizers()
    assert set(world.registry.instances[NAME]) == {"10.0.0.10:8000"}


# -- the sweep -------------------------------------------------------------------------------------


async def test_the_sweep_removes_only_what_no_live_pod_holds_and_keeps_everything_when_pods_cannot_be_read():
    world = World(replicas=1, registry=ETCD)
    world.add_pods(pod_body(0, "sync", finalizers=(labels.POD_FINALIZER,), registered=True))
    world.registry.configs[NAME] = {"10.0.0.10", "10.9.9.9"}
    world.kube.fail("list", 500, kind="Pod")
    await world.run(apply_objects=True)  # the first pass sweeps; its pod read fails
    assert world.registry.configs[NAME] == {"10.0.0.10", "10.9.9.9"}
    assert world.condition("RegistrySynced")["reason"] == "SweepFailed"
    world.reconciler.schedule.last_sweep = -1e9  # the next sweep is due
    await world.run()
    assert world.registry.configs[NAME] == {"10.0.0.10"}
    assert world.condition("RegistrySynced")["reason"] == "InSync"


async def test_a_sweep_reads_the_pods_from_the_api_only_when_something_may_be_stale():
    world = World(replicas=1, registry=ETCD)
    world.add_pods(pod_body(0, "sync", finalizers=(labels.POD_FINALIZER,), registered=True))
    await world.run(apply_objects=True)  # the first pass audits: one read
    assert world.kube.count("list", "Pod") == 1
    world.reconciler.schedule.last_sweep = -1e9
    await world.run()  # the registry holds only what the index shows live: no read
    assert world.kube.count("list", "Pod") == 1 and world.registry.instances[NAME]
    world.registry.configs[NAME] = {"10.9.9.9"}
    world.reconciler.schedule.last_sweep = -1e9
    await world.run()  # a config no pod in the index holds: read, then removed
    assert world.kube.count("list", "Pod") == 2
    assert world.registry.configs[NAME] == set()


async def test_a_config_the_index_misses_but_the_api_shows_held_is_kept():
    world = World(replicas=2, registry=ETCD)
    world.add_pods(
        pod_body(0, "sync", finalizers=(labels.POD_FINALIZER,), registered=True),
        pod_body(1, "sync", finalizers=(labels.POD_FINALIZER,), registered=True),
    )
    await world.run(apply_objects=True)
    world.registry.configs[NAME] = {"10.0.0.11"}
    world.reconciler.schedule.last_sweep = -1e9
    # The index lags: it does not show llm-1 yet. The API does, and its config stays.
    await world.reconciler.run_pass(world.body(), world.index()[:1], False)
    assert world.registry.configs[NAME] == {"10.0.0.11"}
    assert world.kube.count("list", "Pod") == 2


async def test_the_sweep_keeps_configs_at_ips_of_pods_of_services_sharing_the_registry():
    from infer_operator.registration.sharing import Views

    world = World(replicas=1, registry={**ETCD, "service": "shared"})
    world.add_pods(pod_body(0, "sync", finalizers=(labels.POD_FINALIZER,), registered=True))
    green = pod_body(0, "sync", ip="10.0.1.1")
    green["metadata"].update(name="green-0", labels={**labels.common_labels("green"), labels.LABEL_POD_INDEX: "0"})
    world.add_pods(green)
    world.registry.configs["shared"] = {"10.0.0.10", "10.0.1.1", "10.0.2.2"}
    place = world.kube.obj(kinds.INFERENCE_SERVICE.api_version, labels.KIND, NS, NAME)
    from infer_operator.api.v1alpha1 import parse_spec

    key = parse_spec(place["spec"]).registry.place(NAME)
    views = Views({}, {key: [(NS, NAME), (NS, "green")]})
    await world.reconciler.run_pass(world.body(), world.index()[1:], True, views)
    assert world.registry.configs["shared"] == {"10.0.0.10", "10.0.1.1"}


# -- registries moved away from --------------------------------------------------------------------


async def test_moving_the_registry_cleans_the_old_place_and_says_so_until_it_has():
    world = World(replicas=1, registry=ETCD)
    world.add_pods(pod_body(0, "sync", finalizers=(labels.POD_FINALIZER,), registered=True))
    by_prefix = {"/services": world.registry, "/v2": StubRegistry(place="v2")}
    old, new = by_prefix["/services"], by_prefix["/v2"]
    world.services.get(NS, NAME).registrar._connect = lambda _t, section, _c, _to: by_prefix[section.prefix]
    await world.run(apply_objects=True)
    assert set(old.instances[NAME]) == {"10.0.0.10:8000"}
    assert world.status()["registry"]["etcd"]["prefix"] == "/services"

    # The service moves to another prefix; the old place cannot be reached at first.
    world.patch_spec(registry={"type": "etcd", "etcd": {"endpoints": ["http://etcd:2379"], "prefix": "/v2"}})
    old.fail("*", count=100)
    await world.run()
    assert set(new.instances[NAME]) == {"10.0.0.10:8000"}
    assert old.instances[NAME] != {}
    assert [r["etcd"]["prefix"] for r in world.status()["retiredRegistries"]] == ["/services"]
    synced = world.condition("RegistrySynced")
    assert synced["status"] == "False" and synced["reason"] == "OldRegistryNotCleaned"
    assert labels.CR_FINALIZER in world.finalizers()

    old.failures.clear()
    await world.run()
    assert old.instances[NAME] == {}
    assert "retiredRegistries" not in world.status()
    assert world.condition("RegistrySynced")["reason"] == "InSync"

    # Moving to no registry at all: the place in use is cleaned like any old one, then let go of.
    world.patch_spec(registry={"type": "none"})
    await world.run()
    assert new.instances[NAME] == {}
    assert "registry" not in world.status() and "retiredRegistries" not in world.status()
    await world.run()
    assert labels.CR_FINALIZER not in world.finalizers()


async def test_a_registry_renamed_but_the_same_store_has_nothing_to_clean():
    world = World(replicas=1, registry=ETCD)
    world.add_pods(pod_body(0, "sync", finalizers=(labels.POD_FINALIZER,), registered=True))
    await world.run(apply_objects=True)
    # Another endpoint list for the same etcd cluster: a new place by spec, the same store by identity.
    world.patch_spec(registry={"type": "etcd", "etcd": {"endpoints": ["http://etcd-0:2379", "http://etcd:2379"]}})
    await world.run()
    assert set(world.registry.instances[NAME]) == {"10.0.0.10:8000"}
    assert "retiredRegistries" not in world.status()


# -- can serve (registration/serving.py), in every state of the world ----------------------------


def set_pod(world: World, ordinal: int, **changes) -> None:
    """Change a pod as the kubelet, the node controller or another controller would."""
    body = world.kube.objects[("v1", "Pod", NS, f"{NAME}-{ordinal}")]
    if "ip" in changes:
        body["status"]["podIP"] = changes["ip"]
    for gate, true in changes.get("gates", {}).items():
        for condition in body["status"]["conditions"]:
            if condition["type"] == gate:
                condition["status"] = "True" if true else "False"
    if "ready" in changes:
        for condition in body["status"]["conditions"]:
            if condition["type"] in ("Ready", "ContainersReady"):
                condition["status"] = "True" if changes["ready"] else "False"


async def test_a_pod_on_a_lost_node_leaves_the_registry_at_once_and_comes_back_with_its_node():
    world = World(replicas=2, registry=ETCD)
    world.add_pods(*(pod_body(i, "sync", finalizers=(labels.POD_FINALIZER,), node=f"node-{i}") for i in (0, 1)))
    world.nodes(**{"node-0": "True", "node-1": "True"})
    await world.run(apply_objects=True)
    assert set(world.registry.instances[NAME]) == {"10.0.0.10:8000", "10.0.0.11:8000"}
    world.nodes(**{"node-0": "True", "node-1": "Unknown"})  # the node controller's mark of a lost node
    await world.run()
    assert set(world.registry.instances[NAME]) == {"10.0.0.10:8000"}
    [(pod, kind, reason, message)] = world.posted
    assert (pod, kind, reason) == (f"{NAME}-1", "Warning", "NodeLost") and "node-1 is not Ready (Unknown)" in message
    assert world.condition("RegistrySynced")["status"] == "True" and world.status()["registered"] == 1
    world.nodes(**{"node-0": "True", "node-1": "True"})
    await world.run()
    assert set(world.registry.instances[NAME]) == {"10.0.0.10:8000", "10.0.0.11:8000"}


async def test_a_pod_whose_own_readiness_gate_is_false_is_not_listed_until_it_is_true():
    world = World(replicas=1, registry=ETCD)
    world.add_pods(pod_body(0, "sync", finalizers=(labels.POD_FINALIZER,), gates={"example.com/model-warm": False}))
    await world.run(apply_objects=True)
    assert not world.registry.instances.get(NAME)
    set_pod(world, 0, gates={"example.com/model-warm": True})
    await world.run()
    assert set(world.registry.instances[NAME]) == {"10.0.0.10:8000"}
    set_pod(world, 0, gates={"example.com/model-warm": False})  # the other controller takes it back
    await world.run()
    assert not world.registry.instances[NAME]
    assert [p[2] for p in world.posted] == ["ReadinessGatePending"]


async def test_a_pod_whose_ip_changed_is_listed_at_its_new_address_only():
    world = World(replicas=1, registry=ETCD)
    world.add_pods(pod_body(0, "sync", finalizers=(labels.POD_FINALIZER,)))
    await world.run(apply_objects=True)
    assert set(world.registry.instances[NAME]) == {"10.0.0.10:8000"}
    set_pod(world, 0, ip="10.0.0.99")  # its sandbox was re-created (node reboot, CNI restart)
    world.registry.configs[NAME] = {"10.0.0.99"}  # the new address's config: a previous holder's
    await world.run()
    assert set(world.registry.instances[NAME]) == {"10.0.0.99:8000"}
    assert world.registry.configs[NAME] == set()  # claimed: nothing of a previous holder is inherited
    assert [p[2] for p in world.posted] == ["AddressChanged"]


@pytest.mark.parametrize("blocked_by", ["apply refused", "paused", "invalid spec"])
async def test_registry_upkeep_goes_on_whatever_else_fails(blocked_by):
    world = World(replicas=2, registry=ETCD)
    world.add_pods(*(pod_body(i, "sync", finalizers=(labels.POD_FINALIZER,)) for i in (0, 1)))
    await world.run(apply_objects=True)
    assert set(world.registry.instances[NAME]) == {"10.0.0.10:8000", "10.0.0.11:8000"}
    body = world.kube.objects[(kinds.INFERENCE_SERVICE.api_version, labels.KIND, NS, NAME)]
    if blocked_by == "apply refused":  # e.g. an immutable field, a webhook, a quota
        world.kube.fail("apply", 422, kind="StatefulSet", count=100, message="spec: Forbidden: updates to statefulset")
        world.patch_spec(template={**body["spec"]["template"], "metadata": {"labels": {"team": "other"}}})
    elif blocked_by == "paused":
        body["metadata"]["annotations"] = {labels.ANNOTATION_PAUSED: "true"}
    else:
        world.patch_spec(replicas=-1)
    await world.run(apply_objects=True)
    set_pod(world, 1, ready=False)  # a sync pod stops answering meanwhile
    await world.run()
    assert set(world.registry.instances[NAME]) == {"10.0.0.10:8000"}
    set_pod(world, 1, ready=True)
    await world.run()
    assert set(world.registry.instances[NAME]) == {"10.0.0.10:8000", "10.0.0.11:8000"}
    if blocked_by == "paused":
        assert world.condition("Progressing")["reason"] == "Paused"
    else:
        assert world.condition("Degraded")["status"] == "True"


async def test_the_successor_of_a_deleted_pod_gets_its_role_while_an_apply_is_refused():
    world = World(replicas=2, syncReplicas=1, registry=ETCD)
    world.add_pods(pod_body(0, "sync", finalizers=(labels.POD_FINALIZER,)))
    world.kube.fail("apply", 422, kind="StatefulSet", count=100, message="spec: Forbidden")
    await world.run(apply_objects=True)
    assert world.condition("Degraded")["reason"] == "InvalidPodTemplate"
    world.add_pods(pod_body(1))  # made by the StatefulSet as it was
    await world.run()
    assert world.pod(1)["metadata"]["labels"][labels.LABEL_ROLE] == "async"


def test_the_warm_up_is_counted_on_the_operators_clock_not_the_nodes():
    world = World(replicas=1, registry=ETCD)
    now = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)
    ahead = PodView.from_body(pod_body(0, "sync"))
    ahead = dataclasses.replace(ahead, serving_since=now + datetime.timedelta(hours=1))  # the node's clock
    [seen] = world.reconciler.registry._with_observed_readiness([ahead], now)
    assert seen.serving_since == now
    later = now + datetime.timedelta(seconds=30)
    [again] = world.reconciler.registry._with_observed_readiness([ahead], later)
    assert again.serving_since == now  # first seen then: the warm-up is not restarted


async def test_an_operator_restarted_on_an_invalid_spec_keeps_the_finalizer_of_the_registry_it_recorded():
    world = World(replicas=1, registry=ETCD)
    world.add_pods(pod_body(0, "sync", finalizers=(labels.POD_FINALIZER,)))
    await world.run(apply_objects=True)
    assert labels.CR_FINALIZER in world.finalizers() and world.status()["registry"]["type"] == "etcd"
    world.patch_spec(replicas=-1)
    restarted = World.__new__(World)  # a new operator process: the same objects, no memory of the last spec
    restarted.__dict__.update(world.__dict__)
    restarted.reconciler = type(world.reconciler)(
        world.kube,
        world.record,
        world.reconciler.logger,
        world.reconciler.emit,
        releaser=world.releaser,
        schedule=world.reconciler.schedule,
        status_interval=0.0,
    )
    await restarted.run(apply_objects=True)
    assert restarted.condition("Degraded")["reason"] == "InvalidSpec"
    assert labels.CR_FINALIZER in restarted.finalizers()  # its registry data is still to be cleaned one day
