"""Releasing deleted pods against an in-memory API and registry: confirmed deregistration, the
per-IP config, the bound on an unreachable registry, and the finalizer always let go."""

from __future__ import annotations

import asyncio

from infer_operator import labels
from infer_operator.podview import PodView
from infer_operator.registration.registrar import Registrar
from infer_operator.registration.releaser import PodReleaser
from infer_operator.registry.model import Instance
from infer_operator.runtime import ServiceRecords
from tests.support.fakes import FakeKube, StubRegistry
from tests.support.specs import isvc_body

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
        self.releaser = PodReleaser(self.kube, self.services, lambda ref, *event: self.events.append(event),
                                    timeout=lambda: timeout)

    def deleted_pod(self, ordinal: int = 0, ip: str = "10.0.0.10", role: str = "sync") -> PodView:
        body = self.kube.put({"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": f"{NAME}-{ordinal}", "namespace": NS,
                                           "labels": {**labels.common_labels(NAME), labels.LABEL_ROLE: role},
                                           "finalizers": [labels.POD_FINALIZER, "other.example/keep"],
                                           "deletionTimestamp": "2026-01-01T00:00:00Z"},
                              "status": {"podIP": ip}})
        return PodView.from_body(body)

    def register(self, pod: PodView) -> None:
        instance = Instance(pod=pod.name, namespace=NS, uid=pod.uid, ip=pod.ip, port=PORT, role="sync",
                            ordinal=pod.ordinal)
        self.registry.instances.setdefault(NAME, {})[instance.address] = instance
        self.registry.configs.setdefault(NAME, set()).add(pod.ip)

    async def release(self, pod: PodView, siblings: tuple[PodView, ...] = ()) -> None:
        self.releaser.handle(pod, lambda: siblings)
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


async def test_an_ip_already_held_by_a_live_sibling_keeps_its_entry_and_config():
    setup = Setup()
    pod = setup.deleted_pod(0, "10.0.0.10")
    setup.register(pod)
    sibling = PodView(name=f"{NAME}-0", namespace=NS, uid="new-uid", service=NAME, ordinal=0, role="sync",
                      ip="10.0.0.10", ready=True, ready_since=None, deleting=False, finalizers=())
    await setup.release(pod, (sibling,))
    assert "10.0.0.10:8000" in setup.registry.instances[NAME]
    assert [e[1] for e in setup.events] == ["IPReused"]
    assert setup.finalizers(pod) == ["other.example/keep"]


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


async def test_a_namesake_pod_is_never_touched():
    setup = Setup()
    pod = setup.deleted_pod()
    body = setup.kube.obj("v1", "Pod", NS, pod.name)
    body["metadata"]["uid"] = "a-new-pod-of-the-same-name"
    body["metadata"].pop("deletionTimestamp")
    setup.kube.objects[("v1", "Pod", NS, pod.name)] = body
    await setup.release(pod)
    assert labels.POD_FINALIZER in setup.finalizers(pod)


async def test_a_late_event_of_a_released_pod_starts_nothing():
    setup = Setup()
    pod = setup.deleted_pod()
    await setup.release(pod)
    calls = len(setup.registry.calls)
    setup.releaser.handle(pod, lambda: ())
    assert setup.releaser.tasks == {}
    assert len(setup.registry.calls) == calls
