"""The reconcile pass against an in-memory API and registry: what it writes, when, and how it
takes API faults (404, 409, 422, 5xx). The real API server runs these paths in tests/integration."""

from __future__ import annotations

import dataclasses
import logging
import time
import types

import pytest

from devtools.harness import isvc_body
from infer_operator import kinds, labels
from infer_operator.podview import PodView
from infer_operator.reconcile import reconciler as reconciler_module
from infer_operator.reconcile.reconciler import RETRY_SOON_SECONDS, ServiceReconciler
from infer_operator.reconcile.schedule import Schedule
from infer_operator.registration.registrar import Registrar
from infer_operator.registration.releaser import PodReleaser
from infer_operator.runtime import ServiceRecords
from tests.support.fakes import FakeKube, StubRegistry

NS = "team"
NAME = "llm"
ETCD = {"type": "etcd", "etcd": {"endpoints": ["http://etcd:2379"]}}


def pod_body(ordinal: int, role: str | None = None, *, ready: bool = True, ip: str | None = None,
             finalizers: tuple[str, ...] = (), registered: bool = False, gated: bool = False) -> dict:
    """A running pod; `ready`: its containers are ready. `gated`: it carries the operator's
    readiness gate, still closed (Ready waits for it, as the kubelet rules); otherwise Ready = `ready`."""
    meta_labels = {**labels.common_labels(NAME), labels.LABEL_POD_INDEX: str(ordinal)}
    if role:
        meta_labels[labels.LABEL_ROLE] = role
    since = "2026-01-01T00:00:00Z"
    conditions = [{"type": "Ready", "status": "True" if ready and not gated else "False", "lastTransitionTime": since},
                  {"type": "ContainersReady", "status": "True" if ready else "False", "lastTransitionTime": since}]
    if registered:
        conditions.append({"type": labels.CONDITION_REGISTERED, "status": "True"})
    if not gated:
        conditions.append({"type": labels.CONDITION_READY, "status": "True"})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{NAME}-{ordinal}", "namespace": NS, "labels": meta_labels,
                         "finalizers": list(finalizers)},
            "spec": {"readinessGates": [{"conditionType": labels.CONDITION_READY}]},
            "status": {"phase": "Running", "podIP": ip or f"10.0.0.{ordinal + 10}", "conditions": conditions}}


class World:
    """An InferenceService, its pods and a stub registry, with the operator's objects wired up."""

    def __init__(self, **spec):
        self.kube = FakeKube()
        self.registry = StubRegistry()
        self.events: list[tuple[str, str, str]] = []
        self.pod_events: list[tuple[str, str, str]] = []
        body = isvc_body(NAME, NS, **{"syncReplicas": None, **spec})
        self.kube.put(body)
        self.services = ServiceRecords(lambda ns, name: Registrar(self.kube, ns, name, 1.0,
                                                                  connect=lambda *_: self.registry))
        self.releaser = PodReleaser(self.kube, self.services,
                                    lambda ref, *event: self.pod_events.append(event), timeout=lambda: 1.0)
        self.reconciler = ServiceReconciler(self.kube, self.services.record(NS, NAME), logging.getLogger("test"),
                                            lambda *event: self.events.append(event), releaser=self.releaser,
                                            schedule=Schedule(resync_seconds=3600, audit_seconds=3600,
                                                              sweep_seconds=3600),
                                            status_interval=0.0)

    def body(self) -> dict:
        return self.kube.obj(kinds.INFERENCE_SERVICE.api_version, labels.KIND, NS, NAME)

    def finalizers(self) -> list[str]:
        return self.body()["metadata"].get("finalizers") or []

    def patch_spec(self, **changes) -> None:
        key = (kinds.INFERENCE_SERVICE.api_version, labels.KIND, NS, NAME)
        body = self.kube.objects[key]
        body["spec"].update(changes)
        body["metadata"]["generation"] += 1

    def add_pods(self, *bodies: dict) -> None:
        for body in bodies:
            self.kube.put(body)

    def index(self) -> list[PodView]:
        return [PodView.from_body(b) for (_, kind, _, _), b in sorted(self.kube.objects.items()) if kind == "Pod"]

    async def run(self, apply_objects: bool = False):
        return await self.reconciler.run_pass(self.body(), self.index(), apply_objects)

    def status(self) -> dict:
        return self.body().get("status") or {}

    def condition(self, type_: str) -> dict:
        return next(c for c in self.status()["conditions"] if c["type"] == type_)

    def pod(self, ordinal: int) -> dict | None:
        return self.kube.obj("v1", "Pod", NS, f"{NAME}-{ordinal}")


async def test_first_pass_applies_the_owned_objects_labels_pods_and_writes_status():
    world = World(replicas=2, syncReplicas=1)
    world.add_pods(pod_body(0), pod_body(1))
    await world.run(apply_objects=True)

    assert world.kube.count("apply") == 4
    assert world.kube.obj("apps/v1", "StatefulSet", NS, NAME)["spec"]["replicas"] == 2
    assert [world.pod(i)["metadata"]["labels"][labels.LABEL_ROLE] for i in (0, 1)] == ["sync", "async"]
    assert world.pod(0)["metadata"]["annotations"][labels.ANNOTATION_SYNC_REPLICAS] == "1"
    assert labels.POD_FINALIZER not in world.pod(0)["metadata"]["finalizers"]  # registry none: no finalizer
    assert world.status()["observedGeneration"] == 1


async def test_an_unchanged_world_writes_nothing_on_the_next_pass():
    world = World(replicas=2, syncReplicas=1)
    world.add_pods(pod_body(0, "sync"), pod_body(1, "async"))
    await world.run(apply_objects=True)
    await world.run()  # the status write of the first pass is seen now
    writes = len(world.kube.calls)
    await world.run()
    assert world.kube.calls[writes:] == []


async def test_status_writes_are_spaced_unless_the_spec_changed():
    world = World(replicas=2, syncReplicas=1)
    world.reconciler.status_interval = 3600.0
    world.add_pods(pod_body(0, "sync"), pod_body(1, "async", ready=False))
    await world.run(apply_objects=True)  # the first status is written at once
    writes = world.kube.count("patch/status", labels.KIND)
    assert writes == 1
    world.kube.put(pod_body(1, "async"))  # new counts: held back, and the pass says when to write
    retry = await world.run()
    assert world.kube.count("patch/status", labels.KIND) == writes
    assert 3500 < retry <= 3600
    world.patch_spec(replicas=3)  # a spec change is acknowledged at once
    await world.run()
    assert world.kube.count("patch/status", labels.KIND) == writes + 1
    assert world.status()["observedGeneration"] == 2
    world.reconciler.status_written_at -= 3600  # the interval has passed: the held-back counts go out
    world.kube.put(pod_body(2, "async"))
    await world.run()
    assert world.kube.count("patch/status", labels.KIND) == writes + 2


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
    await world.run()  # objects_pending: applied again although nothing asked for it
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


async def test_the_status_write_of_a_deleted_service_ends_the_loop():
    world = World(replicas=1)
    world.kube.fail("patch", 404, kind=labels.KIND)
    assert await world.run(apply_objects=True) is None


async def test_ready_sync_pods_are_registered_and_the_condition_says_so():
    world = World(replicas=3, syncReplicas=2, registry=ETCD)
    world.add_pods(pod_body(0, "sync", finalizers=(labels.POD_FINALIZER,)),
                   pod_body(1, "sync", ready=False, finalizers=(labels.POD_FINALIZER,)),
                   pod_body(2, "async", finalizers=(labels.POD_FINALIZER,)))
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
    world.add_pods(pod_body(0, "sync", finalizers=(labels.POD_FINALIZER,), registered=True),
                   pod_body(1, "sync", finalizers=(labels.POD_FINALIZER,), registered=True))
    await world.run(apply_objects=True)
    world.registry.configs[NAME] = {"10.0.0.11"}
    world.reconciler.schedule.last_sweep = -1e9
    # The index lags: it does not show llm-1 yet. The API does, and its config stays.
    await world.reconciler.run_pass(world.body(), world.index()[:1], False)
    assert world.registry.configs[NAME] == {"10.0.0.11"}
    assert world.kube.count("list", "Pod") == 2


async def test_a_relist_makes_the_next_pass_audit():
    world = World(replicas=1)
    await world.run(apply_objects=True)
    await world.run()
    assert world.kube.count("list", "Pod") == 1
    world.reconciler.schedule.request_audit(time.monotonic())
    await world.run()
    assert world.kube.count("list", "Pod") == 2


async def test_switching_the_registry_off_remembers_it_for_the_releaser():
    world = World(replicas=1, registry=ETCD)
    await world.run(apply_objects=True)
    assert world.services.record(NS, NAME).settings.registry.type == "etcd"
    world.patch_spec(registry={"type": "none"})
    await world.run()
    assert world.services.record(NS, NAME).settings.registry.type == "none"


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


# -- issue: touch only what is ours, always let go ------------------------------------------------

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


async def test_moving_the_registry_cleans_the_old_place_and_says_so_until_it_has():
    world = World(replicas=1, registry=ETCD)
    world.add_pods(pod_body(0, "sync", finalizers=(labels.POD_FINALIZER,), registered=True))
    by_prefix = {"/services": world.registry, "/v2": StubRegistry(place="v2")}
    old, new = by_prefix["/services"], by_prefix["/v2"]
    world.services.record(NS, NAME).registrar._connect = lambda _t, section, _c, _to: by_prefix[section.prefix]
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


# -- rollouts: the operator rolls pods itself, sharing one budget with role flips -----------------

def revised(body: dict, revision: str, *, grace: int | None = None, port: int | None = 8000) -> dict:
    body["metadata"]["labels"][labels.LABEL_REVISION] = revision
    spec = body.setdefault("spec", {})
    container = {"name": "model"}
    if port is not None:
        container["ports"] = [{"name": labels.SYNC_PORT_NAME, "containerPort": port}]
    spec["containers"] = [container]
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return body


def statefulset_at(world: World, revision: str, observed: bool = True) -> None:
    sts = world.kube.obj("apps/v1", "StatefulSet", NS, NAME)
    generation = sts["metadata"]["generation"]
    world.reconciler.observe_statefulset({"metadata": {"generation": generation}, "status": {
        "observedGeneration": generation if observed else generation - 1, "updateRevision": revision}})


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


def gate(world: World, ordinal: int) -> tuple[str | None, str | None]:
    """The pod's readiness gate and Ready condition, as (gate status, Ready status)."""
    conditions = {c["type"]: c["status"] for c in world.pod(ordinal)["status"]["conditions"]}
    return conditions.get(labels.CONDITION_READY), conditions.get("Ready")


async def test_the_readiness_gate_opens_for_a_sync_pod_once_it_is_registered():
    world = World(replicas=2, syncReplicas=1, registry=ETCD)
    world.add_pods(pod_body(0, "sync", gated=True, finalizers=(labels.POD_FINALIZER,)),
                   pod_body(1, "async", gated=True, finalizers=(labels.POD_FINALIZER,)))
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
    world.add_pods(*(revised(pod_body(i, "sync", finalizers=(labels.POD_FINALIZER,), registered=True), "llm-1")
                     for i in range(2)))
    await world.run(apply_objects=True)
    statefulset_at(world, "llm-2")
    await world.run()
    assert [name for verb, _, name in world.kube.calls if verb == "delete"] == [f"{NAME}-1"]
    # The StatefulSet makes pod 1 again from the new template: its app answers, but the registry
    # is down, so it is not registered and not Ready; pod 0 must stay.
    world.kube.objects.pop(("v1", "Pod", NS, f"{NAME}-1"))
    world.add_pods(revised(pod_body(1, "sync", gated=True, ip="10.0.0.21", finalizers=(labels.POD_FINALIZER,)),
                           "llm-2"))
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
    world = World(replicas=2, updateStrategy={"type": "OnDelete"},
                  lifecycle={"drainSeconds": 50, "terminationGracePeriodSeconds": 60})
    world.add_pods(*(revised(pod_body(i, "sync"), "llm-1", grace=30) for i in range(2)))
    await world.run(apply_objects=True)
    statefulset_at(world, "llm-2")
    await world.run()
    assert world.kube.count("delete") == 0
    assert world.condition("Ready")["status"] == "True"
    progressing = world.condition("Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "PodsOutdated")
    assert "OnDelete" in progressing["message"] and "2 pod(s) run an older template" in progressing["message"]
    assert "grace period not longer than drainSeconds" in progressing["message"]
    assert world.status()["updatedReplicas"] == 0


async def test_the_services_target_the_named_port_once_every_pod_has_it():
    world = World(replicas=2)
    world.add_pods(revised(pod_body(0, "sync"), "llm-1", port=None), revised(pod_body(1, "sync"), "llm-1"))
    await world.run(apply_objects=True)
    assert world.kube.obj("v1", "Service", NS, NAME)["spec"]["ports"][0]["targetPort"] == 8000
    key = ("v1", "Pod", NS, f"{NAME}-0")
    world.kube.objects[key] = revised(world.kube.objects[key], "llm-2")
    await world.run()
    assert world.kube.obj("v1", "Service", NS, NAME)["spec"]["ports"][0]["targetPort"] == labels.SYNC_PORT_NAME


async def test_each_pod_is_registered_at_the_port_it_was_started_with():
    world = World(replicas=2, registry=ETCD, sync={"port": 8001})
    world.add_pods(revised(pod_body(0, "sync", finalizers=(labels.POD_FINALIZER,)), "llm-1", port=8000),
                   revised(pod_body(1, "sync", finalizers=(labels.POD_FINALIZER,)), "llm-2", port=8001))
    await world.run(apply_objects=True)
    assert set(world.registry.instances[NAME]) == {"10.0.0.10:8000", "10.0.0.11:8001"}


async def test_a_name_the_owned_objects_cannot_carry_is_degraded_naming_it():
    world = World(replicas=1)
    key = (kinds.INFERENCE_SERVICE.api_version, labels.KIND, NS, NAME)
    world.kube.objects[key]["metadata"]["name"] = "x" * 53  # stored under an older CRD
    await world.reconciler.run_pass(world.kube.objects[key], [], True)
    assert world.kube.count("apply") == 0
    assert [e[1] for e in world.events] == ["InvalidSpec"] and "metadata.name" in world.events[0][2]


# -- day one: pause, url, per-service gauges -------------------------------------------------------

async def test_a_paused_service_changes_nothing_says_so_and_resumes():
    world = World(replicas=2, syncReplicas=1)
    key = (kinds.INFERENCE_SERVICE.api_version, labels.KIND, NS, NAME)
    world.kube.objects[key]["metadata"]["annotations"] = {labels.ANNOTATION_PAUSED: "true"}
    world.add_pods(pod_body(0), pod_body(1))
    await world.run(apply_objects=True)
    assert world.kube.count("apply") == 0 and world.kube.count("patch", "Pod") == 0
    progressing = world.condition("Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "Paused")
    assert world.status()["url"] == f"http://{NAME}.{NS}.svc:8000"
    world.kube.objects[key]["metadata"]["annotations"] = {}
    await world.run()
    assert world.kube.count("apply") == 4
    assert world.pod(0)["metadata"]["labels"][labels.LABEL_ROLE] == "sync"
    assert [e[1] for e in world.events] == ["Paused", "Resumed"]


async def test_per_service_gauges_follow_the_status_and_go_with_the_service():
    from infer_operator import metrics

    world = World(replicas=2, syncReplicas=2, registry=ETCD)
    world.add_pods(*(pod_body(i, "sync", finalizers=(labels.POD_FINALIZER,), registered=True) for i in range(2)))
    await world.run(apply_objects=True)
    assert metrics.SERVICE_DESIRED.labels(NS, NAME)._value.get() == 2
    assert metrics.SERVICE_READY.labels(NS, NAME)._value.get() == 2
    assert metrics.SERVICE_REGISTERED.labels(NS, NAME)._value.get() == 2
    metrics.forget_service(NS, NAME)
    assert (NS, NAME) not in metrics.SERVICE_READY._metrics


async def test_a_template_stored_before_the_api_refused_operator_fields_still_works_and_is_reported():
    world = World(replicas=1)
    key = (kinds.INFERENCE_SERVICE.api_version, labels.KIND, NS, NAME)
    world.kube.objects[key]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {
        "httpGet": {"path": "/h", "port": 8000}}
    await world.run(apply_objects=True)
    await world.run(apply_objects=True)
    sts = world.kube.obj("apps/v1", "StatefulSet", NS, NAME)
    assert sts["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]  # ours
    assert [e[1] for e in world.events] == ["TemplateFieldsReplaced"]  # once
    assert "spec.sync.readinessProbe" in world.events[0][2]


# -- only what is ours: owned objects and the PodDisruptionBudget ---------------------------------


def foreign(kind: str, name: str, api_version: str = "v1", **metadata) -> dict:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": NS, **metadata},
            "spec": {"theirs": True}}


@pytest.mark.parametrize(("metadata", "taken"), [
    ({}, True),                                                          # someone else's, unlabelled
    ({"labels": {labels.LABEL_MANAGED_BY: labels.MANAGED_BY, labels.LABEL_SERVICE: "other"}}, True),
    ({"ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u-web",
                           "controller": True}]}, True),                 # another controller's
    ({"labels": {labels.LABEL_MANAGED_BY: labels.MANAGED_BY, labels.LABEL_SERVICE: NAME}}, False),  # our orphan
])
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
    world.reconciler.owned.observe("PodDisruptionBudget", budget, deleted=False)  # as the watch shows it
    world.patch_spec(podDisruptionBudget=None)
    await world.run()
    assert pdb(world) is None


async def test_a_budget_of_the_same_name_that_is_not_ours_stays():
    world = World(replicas=2)
    theirs = world.kube.put(foreign("PodDisruptionBudget", NAME, "policy/v1"))
    world.reconciler.owned.observe("PodDisruptionBudget", theirs, deleted=False)
    await world.run(apply_objects=True)
    assert pdb(world)["spec"] == {"theirs": True}


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
    assert "restarts wait for a PodDisruptionBudget" in progressing["message"]
    assert [e[1] for e in world.events].count("RestartBlocked") == 1  # said once, not every pass
    await world.run()
    assert [(verb, name) for verb, _, name in world.kube.calls if verb in ("evict", "delete")][-2:] == [
        ("evict", f"{NAME}-1"), ("delete", f"{NAME}-1")]
    assert "PodDisruptionBudget" not in world.condition("Progressing")["message"]


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
    assert retry is not None and retry <= world.reconciler.labelled.expiry  # the loop looks again by then
    later = time.monotonic() + world.reconciler.labelled.expiry + 1
    monkeypatch.setattr(reconciler_module, "time", types.SimpleNamespace(monotonic=lambda: later))
    # Sent again, but only to the version the view shows: a stale view (here: the pod has its role
    # since) conflicts and changes nothing, so a split changed meanwhile never relabels a pod.
    world.patch_spec(syncReplicas=0)
    await world.reconciler.run_pass(world.body(), stale, False)
    assert world.kube.count("patch", "Pod") == 2
    assert world.kube.objects[("v1", "Pod", NS, f"{NAME}-0")]["metadata"]["labels"][labels.LABEL_ROLE] == "sync"
    # And a failed resend does not make the loop spin: nothing is waiting to expire any more.
    assert world.reconciler.labelled.next_expiry(later) is None


async def test_pod_conditions_are_not_written_again_before_the_index_shows_them():
    world = World(replicas=1, registry=ETCD)
    world.add_pods(pod_body(0, "sync", finalizers=(labels.POD_FINALIZER,), gated=True))
    stale = world.index()
    await world.run(apply_objects=True)
    assert world.kube.count("patch/status", "Pod") == 1
    await world.reconciler.run_pass(world.body(), stale, False)  # the pod's event has not come yet
    assert world.kube.count("patch/status", "Pod") == 1


async def test_an_audit_whose_read_failed_is_tried_again_soon_not_in_an_hour():
    world = World(replicas=1)
    world.kube.fail("list", 500, kind="Pod")
    retry = await world.run(apply_objects=True)
    assert retry is not None and retry <= 5.0
    world.reconciler.schedule.audit_due_at -= 10  # the retry is due
    await world.run()
    assert world.kube.count("list", "Pod") == 2
