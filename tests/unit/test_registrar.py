"""One service's registrar against an in-memory API and registry: its client (built from the spec
and its Secret), a registration pass, the sweep and removing everything."""

from __future__ import annotations

import base64
import dataclasses
import datetime

import pytest

from devtools.harness import isvc_body
from infer_operator.api.v1alpha1 import parse_spec
from infer_operator.registration.registrar import Registrar, RegistryConfigError
from infer_operator.registry.model import Instance, RegistryError, ServiceRef
from tests.support.fakes import FakeKube, StubRegistry
from tests.support.pods import pod

NS, NAME, PORT = "default", "llm", 8000
NOW = datetime.datetime.now(datetime.UTC)
OWNER = ServiceRef(NS, NAME, "uid-llm")


def registry_spec(**etcd):
    spec = isvc_body(NAME, registry={"type": "etcd", "etcd": {"endpoints": ["http://etcd:2379"], **etcd}})
    return parse_spec(spec["spec"]).registry


class Setup:
    def __init__(self):
        self.kube = FakeKube()
        self.registries: list[StubRegistry] = []
        self.credentials: list[dict] = []

        def connect(type_, section, credentials, timeout):
            self.credentials.append(credentials)
            self.registries.append(StubRegistry())
            return self.registries[-1]

        self.registrar = Registrar(self.kube, NS, NAME, 1.0, connect=connect)

    @property
    def registry(self) -> StubRegistry:
        return self.registries[-1]

    def secret(self, **data: str) -> None:
        self.kube.put(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "cred", "namespace": NS},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
            }
        )


def entry(p, owner: ServiceRef | None = OWNER) -> Instance:
    return Instance(
        pod=p.name, namespace="default", uid=p.uid, ip=p.ip, port=PORT, role="sync", ordinal=p.ordinal, owner=owner
    )


async def test_the_client_is_built_once_and_rebuilt_only_when_the_secret_or_settings_change():
    setup = Setup()
    setup.secret(username="root", password="pw", token="not-an-etcd-key")
    spec = registry_spec(credentialsSecret={"name": "cred"})
    first = await setup.registrar.client(spec)
    assert await setup.registrar.client(spec) is first
    assert setup.credentials == [{"username": "root", "password": "pw"}]  # only the backend's own keys
    setup.secret(username="root", password="new")
    second = await setup.registrar.client(spec)
    assert second is not first and first.inner.closed
    third = await setup.registrar.client(registry_spec(credentialsSecret={"name": "cred"}, prefix="/other"))
    assert third is not second and second.inner.closed


async def test_a_missing_secret_is_a_configuration_problem_and_an_unreadable_one_is_transient():
    setup = Setup()
    spec = registry_spec(credentialsSecret={"name": "cred"})
    with pytest.raises(RegistryConfigError, match="Secret cred does not exist"):
        await setup.registrar.client(spec)
    result = await setup.registrar.sync(spec, [], PORT, 0, NOW, OWNER)
    assert (result.condition.ok, result.condition.reason) == (False, "InvalidRegistryConfig")
    setup.kube.fail("get", 503, kind="Secret")
    with pytest.raises(RegistryError):
        await setup.registrar.client(spec)


async def test_sync_registers_ready_sync_pods_and_removes_known_pods_that_are_not():
    setup = Setup()
    ready, unready, worker = pod(0, "sync"), pod(1, "sync", ready=False), pod(2, "async")
    stranger = Instance(pod="x-9", namespace="default", uid="u-9", ip="10.9.9.9", port=PORT, role="sync", ordinal=9)
    spec = registry_spec()
    await setup.registrar.client(spec)
    setup.registry.instances[NAME] = {entry(unready).address: entry(unready), stranger.address: stranger}
    setup.registry.configs[NAME] = {ready.ip}  # left by a previous holder of the IP
    result = await setup.registrar.sync(spec, [ready, unready, worker], PORT, 0, NOW, OWNER)
    assert set(setup.registry.instances[NAME]) == {entry(ready).address, stranger.address}
    assert setup.registry.instances[NAME][entry(ready).address] == entry(ready)
    assert setup.registry.configs[NAME] == set()  # the new holder claimed its IP
    assert result.registered == 1 and (result.condition.ok, result.condition.reason) == (True, "InSync")
    assert [p.name for p in result.to_mark] == [ready.name]


async def test_a_pod_registered_before_keeps_the_config_written_for_it():
    setup = Setup()
    spec = registry_spec()
    await setup.registrar.client(spec)
    ip = pod(0, "sync").ip
    marked = dataclasses.replace(pod(0, "sync"), registered=True, registered_ip=ip)
    setup.registry.configs[NAME] = {marked.ip}
    result = await setup.registrar.sync(spec, [marked], PORT, 0, NOW, OWNER)
    assert setup.registry.configs[NAME] == {marked.ip} and result.to_mark == ()
    assert ("register", entry(marked).address) in setup.registry.calls


async def test_a_mark_of_an_earlier_version_names_no_ip_keeps_the_config_and_is_written_again_with_it():
    setup = Setup()
    spec = registry_spec()
    await setup.registrar.client(spec)
    marked = dataclasses.replace(pod(0, "sync"), registered=True)  # registered_ip None: an older mark
    setup.registry.configs[NAME] = {marked.ip}
    result = await setup.registrar.sync(spec, [marked], PORT, 0, NOW, OWNER)
    assert setup.registry.configs[NAME] == {marked.ip}  # its IP, as before: nothing claimed
    assert [p.name for p in result.to_mark] == [marked.name]


async def test_a_pod_whose_ip_changed_leaves_its_old_address_and_claims_the_new_one():
    setup = Setup()
    spec = registry_spec()
    await setup.registrar.client(spec)
    before = dataclasses.replace(pod(0, "sync"), registered=True, registered_ip="10.0.9.9")
    setup.registry.instances[NAME] = {f"10.0.9.9:{PORT}": dataclasses.replace(entry(before), ip="10.0.9.9")}
    setup.registry.configs[NAME] = {before.ip, "10.0.9.9"}  # the new IP's: a previous holder's
    result = await setup.registrar.sync(spec, [before], PORT, 0, NOW, OWNER)
    assert set(setup.registry.instances[NAME]) == {entry(before).address}
    assert ("claim", entry(before).address) in setup.registry.calls
    assert before.ip not in setup.registry.configs[NAME]
    [(gone, why)] = result.deregistered
    assert gone.ip == "10.0.9.9" and why.reason == "AddressChanged"
    assert [p.name for p in result.to_mark] == [before.name]


async def test_sync_waits_out_the_warm_up_and_says_when_to_come_back():
    setup = Setup()
    warming = pod(0, "sync", ready_for=2.0)
    result = await setup.registrar.sync(
        registry_spec(), [warming], PORT, 10, warming.serving_since + datetime.timedelta(seconds=2), OWNER
    )
    assert setup.registry.instances.get(NAME, {}) == {}
    assert result.retry_in == pytest.approx(8.0, abs=0.5)


async def test_a_registry_error_during_sync_is_unreachable_not_a_crash():
    setup = Setup()
    spec = registry_spec()
    await setup.registrar.client(spec)
    setup.registry.fail("claim", count=10)
    waits = []
    for _ in range(8):
        result = await setup.registrar.sync(spec, [pod(0, "sync")], PORT, 0, NOW, OWNER)
        assert (result.condition.ok, result.condition.reason) == (False, "RegistryUnreachable")
        waits.append(result.retry_in)
    # growing, jittered (each in [step/2, step]), capped; back to the first step after a success
    assert 1.0 <= waits[0] <= 2.0 and max(waits) <= 60.0 and waits[-1] >= 30.0
    assert len(set(waits)) == len(waits)
    setup.registry.failures.clear()
    await setup.registrar.sync(spec, [pod(0, "sync")], PORT, 0, NOW, OWNER)
    setup.registry.fail("claim")
    setup.registry.instances.clear()
    setup.registrar.recheck_seconds = 0  # emptied behind its back: read again at once
    result = await setup.registrar.sync(spec, [pod(0, "sync")], PORT, 0, NOW, OWNER)
    assert result.retry_in <= 2.0


async def test_a_sync_asked_for_the_same_as_the_last_reads_nothing_until_the_recheck():
    setup = Setup()
    spec = registry_spec()
    pods = [pod(0, "sync")]
    first = await setup.registrar.sync(spec, pods, PORT, 0, NOW, OWNER)
    calls = len(setup.registry.calls)
    again = await setup.registrar.sync(spec, pods, PORT, 0, NOW, OWNER)
    assert len(setup.registry.calls) == calls and again.registered == first.registered == 1
    await setup.registrar.sync(spec, [*pods, pod(1, "sync")], PORT, 0, NOW, OWNER)  # something changed
    assert len(setup.registry.calls) > calls
    calls = len(setup.registry.calls)
    setup.registrar.recheck_seconds = 0  # the recheck is due
    await setup.registrar.sync(spec, [*pods, pod(1, "sync")], PORT, 0, NOW, OWNER)
    assert len(setup.registry.calls) > calls


async def test_the_sweep_removes_what_no_live_pod_holds_and_nothing_on_an_error():
    setup = Setup()
    live, gone = pod(0, "sync"), pod(1, "sync", deleting=True)
    green = Instance(
        pod="llm-green-0",
        namespace=NS,
        uid="g-0",
        ip="10.8.8.8",
        port=PORT,
        role="sync",
        ordinal=0,
        owner=ServiceRef(NS, "llm-green", "uid-green"),
    )
    spec = registry_spec()
    await setup.registrar.client(spec)
    setup.registry.instances[NAME] = {
        entry(live).address: entry(live),
        entry(gone).address: entry(gone),
        green.address: green,
    }
    setup.registry.configs[NAME] = {live.ip, gone.ip, "10.7.7.7", "10.6.6.6", green.ip, "defaults"}
    setup.registry.fail("list_config_ips")
    sharers_ips = {live.ip, "10.6.6.6"}  # 10.6.6.6: a live pod of another service at this registry
    assert "sweep skipped" in await setup.registrar.sweep(spec, [live, gone], sharers_ips, OWNER)
    assert len(setup.registry.instances[NAME]) == 3 and len(setup.registry.configs[NAME]) == 6
    assert await setup.registrar.sweep(spec, [live, gone], sharers_ips, OWNER) is None
    assert set(setup.registry.instances[NAME]) == {entry(live).address, green.address}
    assert setup.registry.configs[NAME] == {live.ip, "10.6.6.6", green.ip, "defaults"}


async def test_removing_everything_raises_until_it_is_done():
    setup = Setup()
    spec = registry_spec()
    registry = await setup.registrar.client(spec)
    setup.registry.instances[NAME] = {entry(pod(0, "sync")).address: entry(pod(0, "sync"))}
    setup.registry.configs[NAME] = {"10.0.0.10", "10.0.0.11"}
    setup.registry.fail("delete_config")
    with pytest.raises(RegistryError):
        await setup.registrar.remove_everything(registry, spec, {"10.0.0.11"}, OWNER)
    await setup.registrar.remove_everything(registry, spec, {"10.0.0.11"}, OWNER)
    assert setup.registry.instances[NAME] == {} and setup.registry.configs[NAME] == {"10.0.0.11"}


async def test_a_registry_moved_away_from_gets_a_client_of_its_own_closed_after_use():
    setup = Setup()
    current = await setup.registrar.client(registry_spec())
    async with setup.registrar.connected(registry_spec(prefix="/old")) as old:
        assert old is not current
    assert old.inner.closed and not current.inner.closed
    assert await setup.registrar.client(registry_spec()) is current


async def test_every_registry_call_is_timed_by_backend_and_operation():
    from infer_operator import metrics

    setup = Setup()
    spec = registry_spec()

    def count(operation: str) -> float:
        return metrics.REGISTRY_LATENCY.labels("etcd", operation)._sum.get(), sum(
            b.get() for b in metrics.REGISTRY_LATENCY.labels("etcd", operation)._buckets
        )

    before = count("list_instances")[1]
    await setup.registrar.sync(spec, [pod(0, "sync")], PORT, 0, NOW, OWNER)
    assert count("list_instances")[1] == before + 1
    setup.registry.fail("list_instances")
    await setup.registrar.sync(spec, [], PORT, 0, NOW, OWNER)  # a failed call is timed too
    assert count("list_instances")[1] == before + 2


async def test_a_pod_whose_release_started_is_not_registered_again_though_the_view_shows_it_ready():
    # The release starts from the watch stream, before the index shows the pod deleting; its
    # deregistration may be confirmed by the time this pass writes.
    setup = Setup()
    spec = registry_spec()
    going, staying = pod(0, "sync"), pod(1, "sync")
    await setup.registrar.client(spec)
    result = await setup.registrar.sync(
        spec, [going, staying], PORT, 0, NOW, OWNER, releasing=lambda uid: uid == going.uid
    )
    assert set(setup.registry.instances[NAME]) == {entry(staying).address}
    assert (result.condition.ok, result.condition.reason) == (True, "InSync")
