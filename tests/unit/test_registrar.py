"""One service's registrar against an in-memory API and registry: its client (built from the spec
and its Secret), a registration pass, the sweep and removing everything."""

from __future__ import annotations

import base64
import datetime

import pytest

from infer_operator.api.v1alpha1 import parse_spec
from infer_operator.registration.registrar import Registrar, RegistryConfigError
from infer_operator.registry.model import Instance, RegistryError
from tests.support.fakes import FakeKube, StubRegistry
from tests.support.pods import pod
from tests.support.specs import isvc_body

NS, NAME, PORT = "default", "llm", 8000
NOW = datetime.datetime.now(datetime.UTC)


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
        self.kube.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cred", "namespace": NS},
                       "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})


def entry(p) -> Instance:
    return Instance(pod=p.name, namespace="default", uid=p.uid, ip=p.ip, port=PORT, role="sync", ordinal=p.ordinal)


async def test_the_client_is_built_once_and_rebuilt_only_when_the_secret_or_settings_change():
    setup = Setup()
    setup.secret(username="root", password="pw", token="not-an-etcd-key")
    spec = registry_spec(credentialsSecret={"name": "cred"})
    first = await setup.registrar.client(spec)
    assert await setup.registrar.client(spec) is first
    assert setup.credentials == [{"username": "root", "password": "pw"}]  # only the backend's own keys
    setup.secret(username="root", password="new")
    second = await setup.registrar.client(spec)
    assert second is not first and first.closed
    third = await setup.registrar.client(registry_spec(credentialsSecret={"name": "cred"}, prefix="/other"))
    assert third is not second and second.closed


async def test_a_missing_secret_is_a_configuration_problem_and_an_unreadable_one_is_transient():
    setup = Setup()
    spec = registry_spec(credentialsSecret={"name": "cred"})
    with pytest.raises(RegistryConfigError, match="Secret cred does not exist"):
        await setup.registrar.client(spec)
    result = await setup.registrar.sync(spec, [], PORT, 0, NOW)
    assert result.condition[:2] == ("False", "InvalidRegistryConfig")
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
    result = await setup.registrar.sync(spec, [ready, unready, worker], PORT, 0, NOW)
    assert set(setup.registry.instances[NAME]) == {entry(ready).address, stranger.address}
    assert result.registered == 1 and result.condition[:2] == ("True", "InSync")


async def test_sync_waits_out_the_warm_up_and_says_when_to_come_back():
    setup = Setup()
    warming = pod(0, "sync", ready_for=2.0)
    result = await setup.registrar.sync(registry_spec(), [warming], PORT, 10, NOW)
    assert setup.registry.instances.get(NAME, {}) == {}
    assert result.retry_in == pytest.approx(8.0, abs=0.5)


async def test_a_registry_error_during_sync_is_unreachable_not_a_crash():
    setup = Setup()
    spec = registry_spec()
    await setup.registrar.client(spec)
    setup.registry.fail("register")
    result = await setup.registrar.sync(spec, [pod(0, "sync")], PORT, 0, NOW)
    assert result.condition[:2] == ("False", "RegistryUnreachable") and result.retry_in == 5.0


async def test_the_sweep_removes_what_no_live_pod_holds_and_nothing_on_an_error():
    setup = Setup()
    live, gone = pod(0, "sync"), pod(1, "sync", deleting=True)
    spec = registry_spec()
    await setup.registrar.client(spec)
    setup.registry.instances[NAME] = {entry(live).address: entry(live), entry(gone).address: entry(gone)}
    setup.registry.configs[NAME] = {live.ip, gone.ip, "10.7.7.7"}
    setup.registry.fail("list_config_ips")
    assert "sweep skipped" in await setup.registrar.sweep(spec, [live, gone])
    assert len(setup.registry.instances[NAME]) == 2 and len(setup.registry.configs[NAME]) == 3
    assert await setup.registrar.sweep(spec, [live, gone]) is None
    assert set(setup.registry.instances[NAME]) == {entry(live).address}
    assert setup.registry.configs[NAME] == {live.ip}


async def test_removing_everything_raises_until_it_is_done():
    setup = Setup()
    spec = registry_spec()
    await setup.registrar.client(spec)
    setup.registry.instances[NAME] = {entry(pod(0, "sync")).address: entry(pod(0, "sync"))}
    setup.registry.configs[NAME] = {"10.0.0.10"}
    setup.registry.fail("delete_config")
    with pytest.raises(RegistryError):
        await setup.registrar.remove_everything(spec)
    await setup.registrar.remove_everything(spec)
    assert setup.registry.instances[NAME] == {} and setup.registry.configs[NAME] == set()
