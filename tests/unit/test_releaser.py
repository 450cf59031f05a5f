"""Releasing deleted pods against an in-memory API and registry: confirmed deregistration, the
per-IP config, the bound on an unreachable registry, and the finalizer always let go."""

from __future__ import annotations

import asyncio
import datetime
import time
from types import SimpleNamespace

from devtools.harness import isvc_body
from infer_operator import labels
from infer_operator.podview import PodView
from infer_operator.reconcile.schedule import Schedule
from infer_operator.records import ServiceRecords
from infer_operator.registration.registrar import Registrar
from infer_operator.registration.releaser import PodReleaser
from infer_operator.registration.sharing import NO_VIEWS, Views
from infer_operator.registry.model import Instance, ServiceRef
from tests.support.fakes import FakeKube, StubRegistry

NS, NAME, PORT = "team", "llm", 8000
ETCD = {"type": "etcd", "etcd": {"endpoints": ["http://etcd:2379"]}}


class Setup:
    def __init__(self, registry: dict | None = ETCD, timeout: float = 1.0, with_service: bool = True):
        self.kube = FakeKube()
        self.registry = StubRegistry()
        self.connects = 0
        self.events: list[tuple[str, str, str]] = []
        if with_service:
            self.kube.put(isvc_body(NAME, NS, replicas=2, syncReplicas=2, registry=registry or {"type": "none"}))

        def connect(*_):
            self.connects += 1
            return self.registry

        self.services = ServiceRecords(lambda ns, name: Registrar(self.kube, ns, name, 1.0, connect=connect))
        self.releaser = PodReleaser(
            self.kube, self.services, lambda ref, *event: self.events.append(event), timeout=lambda: timeout
        )

    def deleted_pod(self, ordinal: int = 0, ip: str = "10.0.0.10", role: str = "sync") -> PodView:
        body = self.kube.put(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{NAME}-{ordinal}",
                    "namespace": NS,
                    "labels": {**labels.common_labels(NAME), labels.LABEL_ROLE: role},
                    "finalizers": [labels.POD_FINALIZER, "other.example/keep"],
                    "deletionTimestamp": "2026-01-01T00:00:00Z",
                },
                "status": {"podIP": ip},
            }
        )
        return PodView.from_body(body)

    def register(self, pod: PodView) -> None:
        instance = Instance(
            pod=pod.name,
            namespace=NS,
            uid=pod.uid,
            ip=pod.ip,
            port=PORT,
            role="sync",
            ordinal=pod.ordinal,
            owner=ServiceRef(NS, NAME, "uid-llm"),
        )
        self.registry.instances.setdefault(NAME, {})[instance.address] = instance
        self.registry.configs.setdefault(NAME, set()).add(pod.ip)

    async def release(self, pod: PodView, siblings: tuple[PodView, ...] = ()) -> None:
        self.releaser.handle(pod, Views({(NS, NAME): siblings}, {}))
        await asyncio.gather(*self.releaser.tasks.values())

    def finalizers(self, pod: PodView) -> list[str]:
        return self.kube.obj("v1", "Pod", NS, pod.name)["metadata"]["finalizers"]


async def test_a_deleted_pod_is_deregistered_its_config_removed_and_only_our_finalizer_released():
    setup = Setup()
    pod = setup.deleted_pod()
    setup.register(pod)
    await setup.release(pod)
    assert setup.registry.instances[NAME] == {}
    assert setup.registry.configs[NAME] == set()
    assert setup.finalizers(pod) == ["other.example/keep"]
    assert setup.events == []  # the quiet normal case


async def test_settings_come_from_the_service_record_and_its_one_registrar_client():
    setup = Setup()
    first, second = setup.deleted_pod(0, "10.0.0.10"), setup.deleted_pod(1, "10.0.0.11")
    async with setup.services.held(NS, NAME):  # as the service's loop holds its record while it runs
        await setup.release(first)
        await setup.release(second)
        assert setup.kube.count("get", labels.KIND) == 1  # read once, then remembered in the record
        assert setup.connects == 1  # one client per service, owned by its registrar, reused
        assert not setup.registry.closed


async def test_an_entry_still_listed_after_the_delete_is_removed_again_and_said_so():
    setup = Setup()
    pod = setup.deleted_pod()
    setup.register(pod)
    setup.registry.ignore_deletes = 1
    await setup.release(pod)
    assert setup.registry.instances[NAME] == {}
    assert [e[1] for e in setup.events] == ["DeregisteredOnSecondConfirmation"]


async def test_an_unreachable_registry_holds_the_pod_at_most_the_timeout_then_releases_it_with_an_event():
    setup = Setup(timeout=1.0)
    pod = setup.deleted_pod()
    setup.register(pod)
    setup.registry.fail("*", count=1000)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await setup.release(pod)
    assert loop.time() - started < 3.0
    assert setup.finalizers(pod) == ["other.example/keep"]
    assert [e[1] for e in setup.events] == ["DeregistrationTimedOut"]
    assert "the sweep will remove its entry and config" in setup.events[0][2]


async def test_an_ip_taken_by_a_registered_pod_keeps_that_pods_entry_and_config():
    setup = Setup()
    pod = setup.deleted_pod(0, "10.0.0.10")
    holder = PodView(
        name=f"{NAME}-0",
        namespace=NS,
        uid="new-uid",
        service=NAME,
        ordinal=0,
        role="sync",
        ip="10.0.0.10",
        ready=True,
        serving=True,
        serving_since=None,
        deleting=False,
        finalizers=(),
        registered=True,
    )
    setup.register(holder)  # the new holder's entry at the same address, and its config
    await setup.release(pod, (holder,))
    assert setup.registry.instances[NAME]["10.0.0.10:8000"].uid == "new-uid"
    assert setup.registry.configs[NAME] == {"10.0.0.10"}
    assert [e[1] for e in setup.events] == ["IPReused"]
    assert setup.finalizers(pod) == ["other.example/keep"]


async def test_an_ip_taken_by_a_pod_not_registered_yet_loses_the_dead_pods_entry_and_config():
    setup = Setup()
    pod = setup.deleted_pod(0, "10.0.0.10")
    setup.register(pod)  # the dead pod's entry and config: a new pod must not inherit either
    holder = PodView(
        name=f"{NAME}-0",
        namespace=NS,
        uid="new-uid",
        service=NAME,
        ordinal=0,
        role="sync",
        ip="10.0.0.10",
        ready=False,
        serving=False,
        serving_since=None,
        deleting=False,
        finalizers=(),
    )
    await setup.release(pod, (holder,))
    assert setup.registry.instances[NAME] == {} and setup.registry.configs[NAME] == set()
    assert setup.events == []


async def test_a_pod_of_a_service_without_a_registry_or_gone_is_released_without_registry_work():
    for setup in (Setup(registry=None), Setup(with_service=False)):
        pod = setup.deleted_pod()
        await setup.release(pod)
        assert setup.registry.calls == []
        assert setup.finalizers(pod) == ["other.example/keep"]


async def test_a_missing_credentials_secret_releases_at_once_with_an_event():
    setup = Setup(registry={**ETCD, "etcd": {**ETCD["etcd"], "credentialsSecret": {"name": "gone"}}})
    pod = setup.deleted_pod()
    await setup.release(pod)
    assert [e[1] for e in setup.events] == ["DeregistrationSkipped"]
    assert "Secret gone does not exist" in setup.events[0][2]
    assert setup.finalizers(pod) == ["other.example/keep"]


async def test_the_finalizer_patch_survives_conflicts_and_transient_errors():
    setup = Setup()
    pod = setup.deleted_pod()
    setup.kube.fail("patch", 409, kind="Pod")
    setup.kube.fail("patch", 503, kind="Pod")
    await setup.release(pod)
    assert setup.finalizers(pod) == ["other.example/keep"]


async def test_a_release_reads_back_one_address_and_removes_the_finalizer_with_one_write():
    setup = Setup()
    pod = setup.deleted_pod()
    setup.register(pod)
    await setup.release(pod)
    assert [verb for verb, kind, _ in setup.kube.calls if kind == "Pod"] == ["patch"]
    assert [op for op, _ in setup.registry.calls] == ["deregister", "list_instances", "delete_config"]


async def test_a_pod_changed_since_its_deletion_event_is_read_before_its_finalizer_goes():
    setup = Setup()
    pod = setup.deleted_pod()
    setup.kube.objects[("v1", "Pod", NS, pod.name)]["metadata"]["resourceVersion"] = "5000"  # its status moved on
    await setup.release(pod)
    assert setup.finalizers(pod) == ["other.example/keep"]
    assert [verb for verb, kind, _ in setup.kube.calls if kind == "Pod"] == ["patch", "get", "patch"]


async def test_a_namesake_pod_is_never_touched():
    setup = Setup()
    pod = setup.deleted_pod()
    body = setup.kube.obj("v1", "Pod", NS, pod.name)
    body["metadata"]["uid"] = "a-new-pod-of-the-same-name"
    body["metadata"]["resourceVersion"] = "9999"  # another object: another version (they are cluster-wide)
    body["metadata"].pop("deletionTimestamp")
    setup.kube.objects[("v1", "Pod", NS, pod.name)] = body
    await setup.release(pod)
    assert labels.POD_FINALIZER in setup.finalizers(pod)
    # The deleted pod's resourceVersion failed the first write; the read then showed the namesake.
    assert [verb for verb, kind, _ in setup.kube.calls if kind == "Pod"][-2:] == ["patch", "get"]


async def test_a_late_event_of_a_released_pod_starts_nothing():
    setup = Setup()
    pod = setup.deleted_pod()
    await setup.release(pod)
    calls = len(setup.registry.calls)
    setup.releaser.handle(pod)
    assert setup.releaser.tasks == {}
    assert len(setup.registry.calls) == calls


# -- a pod that left the watch ---------------------------------------------------------------------


async def test_a_live_pod_that_lost_its_managed_by_label_gets_it_back():
    setup = Setup()
    body = setup.kube.put(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{NAME}-1",
                "namespace": NS,
                "finalizers": [labels.POD_FINALIZER],
                "labels": {**labels.common_labels(NAME), labels.LABEL_MANAGED_BY: "someone-else"},
            },
            "status": {"podIP": "10.0.0.11"},
        }
    )
    await setup.releaser.reclaim(PodView.from_body(body), Views({}, {}))
    pod_labels = setup.kube.obj("v1", "Pod", NS, f"{NAME}-1")["metadata"]["labels"]
    assert pod_labels[labels.LABEL_MANAGED_BY] == labels.MANAGED_BY
    assert [e[1] for e in setup.events] == ["Relabelled"]


async def test_the_watch_shows_the_pod_as_it_was_so_it_is_read_before_it_is_taken_back():
    # The API server's DELETED event for a pod that stopped matching the label selector carries
    # its previous state: our label still on. Only a read shows the label is gone.
    setup = Setup()
    meta = {
        "name": f"{NAME}-1",
        "namespace": NS,
        "finalizers": [labels.POD_FINALIZER],
        "labels": {**labels.common_labels(NAME), labels.LABEL_MANAGED_BY: "someone-else"},
    }
    body = setup.kube.put({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "status": {"podIP": "10.0.0.11"}})
    as_it_was = PodView.from_body({**body, "metadata": {**body["metadata"], "labels": labels.common_labels(NAME)}})
    assert as_it_was.managed
    await setup.releaser.reclaim(as_it_was, Views({}, {}), read_first=True)
    pod_labels = setup.kube.obj("v1", "Pod", NS, f"{NAME}-1")["metadata"]["labels"]
    assert pod_labels[labels.LABEL_MANAGED_BY] == labels.MANAGED_BY
    assert [e[1] for e in setup.events] == ["Relabelled"]


async def test_a_live_pod_that_lost_labels_of_ours_gets_them_back_while_its_service_runs():
    """No registry, so no finalizer: the pod lost its managed-by (it left the watch) and its
    service label (its StatefulSet let go of it). It is its service's all the same (its name label,
    its name): the labels are put back and an event says which."""
    setup = Setup()
    pod_labels = {labels.LABEL_NAME: NAME}
    body = setup.kube.put(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{NAME}-1", "namespace": NS, "labels": pod_labels}}
    )
    view = PodView.from_body(body)
    assert (view.service, view.lost) == (NAME, (labels.LABEL_MANAGED_BY, labels.LABEL_SERVICE))
    await setup.releaser.reclaim(view, Views({}, {}))
    assert setup.events == [] and setup.kube.obj("v1", "Pod", NS, f"{NAME}-1") == body  # no service runs: left alone
    setup.services.hold(NS, NAME)
    await setup.releaser.reclaim(view, Views({}, {}))
    assert setup.kube.obj("v1", "Pod", NS, f"{NAME}-1")["metadata"]["labels"] == labels.common_labels(NAME)
    ((_, reason, message),) = [e[:3] for e in setup.events]
    assert reason == "Relabelled"
    assert f"{labels.LABEL_MANAGED_BY}={labels.MANAGED_BY}, {labels.LABEL_SERVICE}={NAME}" in message


def test_whose_pod_it_is_when_a_label_of_ours_is_gone():
    def view(name: str, pod_labels: dict, owner: str | None = None) -> PodView:
        refs = [{"kind": "StatefulSet", "name": owner, "controller": True}] if owner else []
        return PodView.from_body({"metadata": {"name": name, "labels": pod_labels, "ownerReferences": refs}})

    assert (view("llm-0", labels.common_labels("llm")).service, view("llm-0", labels.common_labels("llm")).lost) == (
        "llm",
        (),
    )
    assert view("llm-0", {labels.LABEL_NAME: "llm"}).service == "llm"
    assert view("llm-3", {}, owner="llm").service == "llm"
    # Another app's pod that happens to carry a like name label: not ours.
    assert view("web-0", {labels.LABEL_NAME: "llm"}).service == ""
    assert view("llm-canary", {labels.LABEL_NAME: "llm"}).service == ""


async def test_a_pod_read_back_with_our_label_is_left_alone():
    setup = Setup()
    body = setup.kube.put(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{NAME}-1",
                "namespace": NS,
                "finalizers": [labels.POD_FINALIZER],
                "labels": labels.common_labels(NAME),
            },
            "status": {"podIP": "10.0.0.11"},
        }
    )
    await setup.releaser.reclaim(PodView.from_body(body), Views({}, {}), read_first=True)
    assert setup.events == [] and setup.kube.obj("v1", "Pod", NS, f"{NAME}-1") == body


async def test_a_deleted_pod_that_left_the_watch_is_released():
    setup = Setup()
    pod = setup.deleted_pod()
    await setup.releaser.reclaim(pod, Views({}, {}))
    await asyncio.gather(*setup.releaser.tasks.values())
    assert setup.finalizers(pod) == ["other.example/keep"]


async def test_a_pod_deleted_before_its_label_could_be_put_back_is_released():
    setup = Setup()
    body = setup.kube.put(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{NAME}-1",
                "namespace": NS,
                "finalizers": [labels.POD_FINALIZER, "other.example/keep"],
                "labels": {**labels.common_labels(NAME), labels.LABEL_MANAGED_BY: "someone-else"},
            },
            "status": {"podIP": "10.0.0.11"},
        }
    )
    left = PodView.from_body(body)  # as the watch's DELETED event showed it
    await setup.kube.delete("v1", "Pod", NS, f"{NAME}-1")  # deleted meanwhile: the label patch conflicts
    await setup.releaser.reclaim(left, Views({}, {}))
    await asyncio.gather(*setup.releaser.tasks.values())
    assert setup.finalizers(left) == ["other.example/keep"]


async def test_a_pod_that_could_not_be_taken_back_has_its_service_audited_soon():
    setup = Setup()
    record = setup.services.hold(NS, NAME)
    schedule = Schedule(last_read=time.monotonic())
    record.reconciler = SimpleNamespace(schedule=schedule, request_audit=schedule.request_audit)
    body = setup.kube.put(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{NAME}-1",
                "namespace": NS,
                "finalizers": [labels.POD_FINALIZER],
                "labels": {**labels.common_labels(NAME), labels.LABEL_MANAGED_BY: "someone-else"},
            },
            "status": {"podIP": "10.0.0.11"},
        }
    )
    setup.kube.fail("patch", 503, kind="Pod")
    await setup.releaser.reclaim(PodView.from_body(body), Views({}, {}))
    assert 0 < record.reconciler.schedule.next_in(time.monotonic(), sweeps=False) <= 5.0


# -- deleted InferenceServices -------------------------------------------------------------------


class ServiceSetup(Setup):
    def __init__(self, registry: dict | None = ETCD, timeout: float = 2.0, retired: list | None = None):
        super().__init__(registry=registry)
        from infer_operator.registration.releaser import ServiceReleaser

        self.service_events: list = []
        self.service_releaser = ServiceReleaser(
            self.kube, self.services, lambda ref, *event: self.service_events.append(event), timeout=lambda: timeout
        )
        key = ("serving.infer-operator.io/v1alpha1", labels.KIND, NS, NAME)
        meta = self.kube.objects[key]["metadata"]
        meta["finalizers"] = [labels.CR_FINALIZER, labels.LOOP_FINALIZER]
        meta["deletionTimestamp"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if retired:
            self.kube.objects[key]["status"] = {"retiredRegistries": retired}
        self.owner = ServiceRef(NS, NAME, meta["uid"])

    def body(self) -> dict:
        return self.kube.obj("serving.infer-operator.io/v1alpha1", labels.KIND, NS, NAME)

    async def clean_up(self, views: Views = NO_VIEWS) -> None:
        self.service_releaser.handle(self.body(), views)
        await asyncio.gather(*self.service_releaser.releases.tasks.values())


def entry(ip: str, owner: ServiceRef, pod: str = "llm-0", uid: str = "u0") -> Instance:
    return Instance(pod=pod, namespace=NS, uid=uid, ip=ip, port=PORT, role="sync", ordinal=0, owner=owner)


async def test_a_deleted_service_removes_its_entries_and_unshared_configs_then_its_finalizer():
    setup = ServiceSetup()
    green = ServiceRef(NS, "green", "uid-green")
    setup.registry.instances[NAME] = {
        "10.0.0.10:8000": entry("10.0.0.10", setup.owner),
        "10.0.1.1:8000": entry("10.0.1.1", green, "green-0", "g0"),
    }
    setup.registry.configs[NAME] = {"10.0.0.10", "10.0.1.1", "10.0.2.2", "defaults"}
    setup.kube.put(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "green-1", "namespace": NS, "labels": labels.common_labels("green")},
            "status": {"podIP": "10.0.2.2"},
        }
    )
    from infer_operator.api.v1alpha1 import parse_spec

    place = parse_spec(setup.body()["spec"]).registry.place(NAME)
    await setup.clean_up(Views({}, {place: [(NS, NAME), (NS, "green")]}))
    assert set(setup.registry.instances[NAME]) == {"10.0.1.1:8000"}  # another service's entry stays
    assert setup.registry.configs[NAME] == {"10.0.1.1", "10.0.2.2", "defaults"}  # held by green, or not an IP
    assert setup.body()["metadata"]["finalizers"] == [labels.LOOP_FINALIZER]
    assert setup.service_events == []


async def test_registries_moved_away_from_are_cleaned_too():
    retired = [{"type": "etcd", "service": "old-name", "etcd": {"endpoints": ["http://etcd:2379"]}}]
    setup = ServiceSetup(retired=retired)
    setup.registry.instances["old-name"] = {"10.0.0.10:8000": entry("10.0.0.10", setup.owner)}
    await setup.clean_up()
    assert setup.registry.instances["old-name"] == {}
    assert labels.CR_FINALIZER not in setup.body()["metadata"]["finalizers"]


async def test_an_unreachable_registry_holds_the_service_until_the_bound_then_an_event_and_a_metric():
    from infer_operator import metrics

    setup = ServiceSetup(timeout=2.0)
    setup.registry.fail("*", count=1000)
    before = metrics.INCOMPLETE_CLEANUPS.labels(labels.KIND, "RegistryCleanupAbandoned")._value.get()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await setup.clean_up()
    assert loop.time() - started < 4.0
    assert [e[1] for e in setup.service_events] == ["RegistryCleanupAbandoned"]
    assert metrics.INCOMPLETE_CLEANUPS.labels(labels.KIND, "RegistryCleanupAbandoned")._value.get() == before + 1
    assert labels.CR_FINALIZER not in setup.body()["metadata"]["finalizers"]


async def test_a_lost_secret_in_a_namespace_being_deleted_lets_go_at_once():
    setup = ServiceSetup(
        registry={**ETCD, "etcd": {**ETCD["etcd"], "credentialsSecret": {"name": "gone"}}}, timeout=600.0
    )
    setup.kube.put(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": NS, "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": "Terminating"},
        }
    )
    await asyncio.wait_for(setup.clean_up(), timeout=5)
    assert [e[1] for e in setup.service_events] == ["RegistryCleanupAbandoned"]
    assert "namespace is being deleted" in setup.service_events[0][2]
    assert labels.CR_FINALIZER not in setup.body()["metadata"]["finalizers"]


async def test_an_unparseable_spec_still_cleans_the_registry_recorded_in_the_status():
    setup = ServiceSetup()
    key = ("serving.infer-operator.io/v1alpha1", labels.KIND, NS, NAME)
    setup.kube.objects[key]["status"] = {"registry": setup.kube.objects[key]["spec"]["registry"]}
    setup.kube.objects[key]["spec"]["replicas"] = -5
    setup.registry.instances[NAME] = {"10.0.0.10:8000": entry("10.0.0.10", setup.owner)}
    await setup.clean_up()
    assert setup.registry.instances[NAME] == {}
