"""EtcdRegistry against a real etcd process."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from infer_operator.registration.actions import apply_sweep, deregister_confirmed
from infer_operator.registration.plans import plan_sweep
from infer_operator.registry.backends import connect
from infer_operator.registry.base import Registry
from infer_operator.registry.etcd import EtcdRegistry
from infer_operator.registry.model import Instance, RegistryError, Unreadable

pytestmark = pytest.mark.registry

SVC = "llm"
A = Instance(pod="llm-0", namespace="ns", uid="u-0", ip="10.0.0.1", port=8080, role="sync", ordinal=0)
B = Instance(pod="llm-1", namespace="ns", uid="u-1", ip="10.0.0.2", port=8080, role="sync", ordinal=1)

OUTSIDE = {
    "/services/other/instances/10.0.0.1:8080": b'{"foreign":true}',
    "/services/llm2/instances/10.0.0.1:8080": b"x",  # shares the string prefix "/services/llm"
    "/services/llm2/config/10.0.0.1": b"cfg",
    "/servicesX/llm/instances/10.0.0.1:8080": b"x",
    "/services/llm": b"bare",
    "/other/llm/config/10.0.0.1": b"cfg",
}


def seed_outside(etcd) -> None:
    for k, v in OUTSIDE.items():
        etcd.put(k, v)


def assert_outside_untouched(etcd) -> None:
    everything = etcd.range_prefix()
    for k, v in OUTSIDE.items():
        assert everything.get(k) == v, k


@pytest.fixture
async def reg(etcd):
    r = EtcdRegistry([etcd.client_url], timeout=2.0)
    yield r
    await r.close()


async def test_roundtrip_exact_layout(etcd, reg):
    seed_outside(etcd)
    await reg.register(SVC, A)
    raw = etcd.get("/services/llm/instances/10.0.0.1:8080")
    assert raw == (
        b'{"pod":"llm-0","namespace":"ns","uid":"u-0","ip":"10.0.0.1","port":8080,"role":"sync","ordinal":0,'
        b'"weight":100,"Addr":"10.0.0.1:8080","Metadata":{"weight":100},"host":"10.0.0.1","ttl":5}'
    )
    assert json.loads(raw) == {
        "pod": "llm-0",
        "namespace": "ns",
        "uid": "u-0",
        "ip": "10.0.0.1",
        "port": 8080,
        "role": "sync",
        "ordinal": 0,
        "weight": 100,  # ours; also SkyDNS's
        "Addr": "10.0.0.1:8080",  # gRPC-Go's etcd naming resolver
        "Metadata": {"weight": 100},
        "host": "10.0.0.1",  # CoreDNS's etcd plugin (SkyDNS), with "port" and "weight"
        "ttl": 5,
    }
    await reg.register(SVC, B)
    listing = await reg.list_instances(SVC)
    assert sorted(listing.instances, key=lambda i: i.ip) == [A, B]
    assert listing.malformed == []
    await reg.deregister(SVC, A.ip, A.port)
    assert etcd.get("/services/llm/instances/10.0.0.1:8080") is None
    assert (await reg.list_instances(SVC)).instances == [B]
    assert_outside_untouched(etcd)


async def test_prefix_normalisation(etcd):
    for prefix in ("services", "/services/", "//services//"):
        r = EtcdRegistry(etcd.client_url, prefix=prefix, timeout=2)
        assert r.instance_key(SVC, "1.2.3.4", 80) == "/services/llm/instances/1.2.3.4:80"
        await r.close()
    r = EtcdRegistry(etcd.client_url, prefix="/a//b/", timeout=2)
    await r.register(SVC, A)
    assert etcd.get("/a/b/llm/instances/10.0.0.1:8080") is not None
    await r.close()


async def test_deregister_absent_is_success(reg):
    await reg.deregister(SVC, "10.9.9.9", 1)
    await reg.delete_config(SVC, "10.9.9.9")


async def test_malformed_reported_and_kept(etcd, reg):
    await reg.register(SVC, A)
    bad = {
        "/services/llm/instances/10.0.0.5:80": b"not json",
        "/services/llm/instances/10.0.0.6:80": b'{"ip":"10.0.0.6","port":80}',
        "/services/llm/instances/10.0.0.7:80": b'{"pod":"p","namespace":"n","uid":"u","ip":"10.0.0.7",'
        b'"port":"80","role":"sync","ordinal":0}',
        # valid JSON but for a different address than the key names
        "/services/llm/instances/10.0.0.8:80": B.to_json().encode(),
        "/services/llm/instances/deeper/key": b"{}",
    }
    for k, v in bad.items():
        etcd.put(k, v)
    listing = await reg.list_instances(SVC)
    assert listing.instances == [A]
    assert sorted(listing.malformed) == sorted(bad)
    # a sweep with nobody alive removes only our valid entries, never the malformed ones
    plan = plan_sweep(listing.instances, await reg.list_config_ips(SVC), {}, set())
    res = await apply_sweep(reg, SVC, plan)
    assert res.instances_removed == 1 and res.errors == []
    for k, v in bad.items():
        assert etcd.get(k) == v


async def test_config_listing_and_deletion(etcd, reg):
    seed_outside(etcd)
    etcd.put("/services/llm/config/10.0.0.1", "w=1")
    etcd.put("/services/llm/config/10.0.0.1/extra", "x")
    etcd.put("/services/llm/config/10.0.0.2", "w=2")
    etcd.put("/services/llm/config/10.0.0.10", "w=10")  # shares the string prefix "10.0.0.1"
    etcd.put("/services/llm/config/10.0.0.1.x", "not 10.0.0.1")
    assert await reg.list_config_ips(SVC) == {"10.0.0.1", "10.0.0.2", "10.0.0.10", "10.0.0.1.x"}
    await reg.delete_config(SVC, "10.0.0.1")
    left = etcd.range_prefix("/services/llm/config/")
    assert set(left) == {
        "/services/llm/config/10.0.0.2",
        "/services/llm/config/10.0.0.10",
        "/services/llm/config/10.0.0.1.x",
    }
    assert await reg.list_config_ips(SVC) == {"10.0.0.2", "10.0.0.10", "10.0.0.1.x"}
    assert_outside_untouched(etcd)


async def test_configs_are_deleted_in_bounded_transactions(etcd, reg, monkeypatch):
    seed_outside(etcd)
    stale = [f"10.1.{i // 250}.{i % 250}" for i in range(150)]
    for ip in stale:
        etcd.put(f"/services/llm/config/{ip}", "w=0")
    etcd.put(f"/services/llm/config/{stale[0]}/extra", "x")
    etcd.put("/services/llm/config/10.0.0.1", "live")
    etcd.put(f"/services/llm/config/{stale[0]}0", "a neighbour sharing the string prefix")
    transactions = []
    original = EtcdRegistry._txn

    async def counted(self, compare, success, what):
        transactions.append(len(success))
        return await original(self, compare, success, what)

    monkeypatch.setattr(EtcdRegistry, "_txn", counted)
    assert await reg.delete_configs(SVC, stale) == {}
    assert transactions == [128, 128, 44]  # 64 configs of two operations each, etcd's default limit 128
    assert set(etcd.range_prefix("/services/llm/config/")) == {
        "/services/llm/config/10.0.0.1",
        f"/services/llm/config/{stale[0]}0",
    }
    assert_outside_untouched(etcd)


async def test_a_failed_batch_reports_each_of_its_configs_and_removes_none(etcd, reg, monkeypatch):
    for ip in ("10.0.0.1", "10.0.0.2"):
        etcd.put(f"/services/llm/config/{ip}", "w")

    async def refused(self, compare, success, what):
        raise RegistryError("etcd txn: injected")

    monkeypatch.setattr(EtcdRegistry, "_txn", refused)
    failed = await reg.delete_configs(SVC, ["10.0.0.1", "10.0.0.2", "a/b"])
    assert set(failed) == {"10.0.0.1", "10.0.0.2", "a/b"}
    assert len(etcd.range_prefix("/services/llm/config/")) == 2


async def test_lookup_reads_one_address(etcd, reg):
    await reg.register(SVC, A)
    etcd.put("/services/llm/instances/10.0.0.9:8080", b"not ours")
    assert await reg.lookup(SVC, A.ip, A.port) == A
    assert await reg.lookup(SVC, B.ip, B.port) is None
    # something listed there that is not our JSON is there all the same: never "gone"
    assert await reg.lookup(SVC, "10.0.0.9", 8080) == Unreadable(
        "10.0.0.9:8080", "not JSON: Expecting value: line 1 column 1 (char 0)"
    )


async def test_sweep_only_inside_prefix(etcd, reg):
    seed_outside(etcd)
    await reg.register(SVC, A)
    await reg.register(SVC, B)
    etcd.put("/services/llm/config/10.0.0.1", "a")
    etcd.put("/services/llm/config/10.0.0.2", "b")
    etcd.put("/services/llm/config/10.0.0.3", "c")
    listing = await reg.list_instances(SVC)
    plan = plan_sweep(listing.instances, await reg.list_config_ips(SVC), {B.uid: B.ip}, {"10.0.0.2"})
    res = await apply_sweep(reg, SVC, plan)
    assert (res.instances_removed, res.configs_removed, res.errors) == (1, 2, [])
    assert set(etcd.range_prefix("/services/llm/")) == {
        "/services/llm/instances/10.0.0.2:8080",
        "/services/llm/config/10.0.0.2",
    }
    assert_outside_untouched(etcd)
    # unreadable pods: nothing is removed
    res = await apply_sweep(
        reg, SVC, plan_sweep((await reg.list_instances(SVC)).instances, await reg.list_config_ips(SVC), None, None)
    )
    assert (res.instances_removed, res.configs_removed) == (0, 0)
    assert len(etcd.range_prefix("/services/llm/")) == 2


@pytest.mark.parametrize(
    "service,ip",
    [("a/b", "1.2.3.4"), ("..", "1.2.3.4"), ("llm", "../x"), ("llm", "1.2.3.4/x"), ("", "1.2.3.4"), ("llm", "a..b")],
)
async def test_path_traversal_rejected(etcd, reg, service, ip):
    seed_outside(etcd)
    with pytest.raises(ValueError):
        await reg.deregister(service, ip, 80)
    with pytest.raises(ValueError):
        await reg.delete_config(service, ip)
    with pytest.raises(ValueError):
        await reg.register(service, Instance("p", "n", "u", ip, 80, "sync", 0))
    assert_outside_untouched(etcd)


class ResurrectingRegistry(Registry):
    """Wraps a registry; the first `n` deregisters are undone by someone re-putting the entry."""

    def __init__(self, inner: Registry, instance: Instance, n: int = 1):
        self.inner, self.instance, self.n = inner, instance, n

    def describe(self):
        return "resurrecting " + self.inner.describe()

    async def register(self, service, instance):
        await self.inner.register(service, instance)

    async def deregister(self, service, ip, port, uid=None):
        await self.inner.deregister(service, ip, port, uid)
        if self.n > 0:
            self.n -= 1
            await self.inner.register(service, self.instance)  # a late heartbeat re-registers it

    async def list_instances(self, service):
        return await self.inner.list_instances(service)

    async def list_config_ips(self, service):
        return await self.inner.list_config_ips(service)

    async def delete_config(self, service, ip):
        await self.inner.delete_config(service, ip)

    async def claim(self, service, instance):
        await self.inner.claim(service, instance)

    async def identity(self):
        return await self.inner.identity()

    async def close(self):
        await self.inner.close()


async def test_deregister_confirmed_simple(etcd, reg):
    await reg.register(SVC, A)
    res = await deregister_confirmed(reg, SVC, A.ip, A.port)
    assert res.confirmed and res.attempts == 1 and not res.needed_second_confirmation
    assert etcd.get("/services/llm/instances/10.0.0.1:8080") is None


async def test_deregister_confirmed_needs_second_confirmation(etcd, reg):
    await reg.register(SVC, A)
    res = await deregister_confirmed(ResurrectingRegistry(reg, A, n=1), SVC, A.ip, A.port, backoff=0.01)
    assert res.confirmed and res.needed_second_confirmation and res.attempts == 2
    assert etcd.get("/services/llm/instances/10.0.0.1:8080") is None


async def test_deregister_confirmed_gives_up(etcd, reg):
    await reg.register(SVC, A)
    res = await deregister_confirmed(ResurrectingRegistry(reg, A, n=99), SVC, A.ip, A.port, attempts=3, backoff=0.01)
    assert not res.confirmed and res.attempts == 3 and res.needed_second_confirmation
    assert "still listed" in res.last_error


async def test_server_down_fast_and_confirmed_false(dead_url):
    reg = EtcdRegistry([dead_url], timeout=3)
    t0 = time.monotonic()
    with pytest.raises(RegistryError) as ei:
        await reg.list_instances(SVC)
    assert time.monotonic() - t0 < 2
    assert "\n" not in str(ei.value)
    res = await deregister_confirmed(reg, SVC, "10.0.0.1", 80, attempts=2, backoff=0.01)
    assert not res.confirmed and res.attempts == 2 and res.last_error
    await reg.close()


async def test_failover_to_next_endpoint(etcd, dead_url):
    reg = EtcdRegistry([dead_url, etcd.client_url], timeout=3)
    await reg.register(SVC, A)
    assert (await reg.list_instances(SVC)).instances == [A]
    await reg.close()


async def test_timeout_bounded(blackhole_url):
    reg = EtcdRegistry([blackhole_url], timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(RegistryError, match="timed out"):
        await reg.register(SVC, A)
    assert time.monotonic() - t0 < 1.5
    await reg.close()


async def test_blackholed_endpoint_then_live_one(etcd, blackhole_url):
    # the black hole accepts TCP but never answers: with two endpoints it may only use half the
    # call's budget before the live endpoint is tried
    reg = EtcdRegistry([blackhole_url, etcd.client_url], timeout=2)
    t0 = time.monotonic()
    await reg.register(SVC, A)
    assert 0.9 < time.monotonic() - t0 < 1.9
    # the endpoint that answered is preferred from now on
    t0 = time.monotonic()
    assert (await reg.list_instances(SVC)).instances == [A]
    assert time.monotonic() - t0 < 0.5
    await reg.close()


async def test_garbage_response(admin_controller):
    # an HTTP server that is not etcd: 404 text for /v3/kv/range
    reg = EtcdRegistry([admin_controller.url], timeout=2)
    with pytest.raises(RegistryError):
        await reg.list_instances(SVC)
    await reg.close()


async def test_auth_user_password(etcd_fresh):
    password = "s3cret-Pa55word"
    etcd_fresh.enable_auth("root", password)
    etcd_fresh.put("/outside", "keep")
    reg = connect("etcd", {"endpoints": [etcd_fresh.client_url]}, {"username": "root", "password": password}, timeout=3)
    assert password not in repr(reg) and password not in str(reg) and password not in reg.describe()
    await reg.register(SVC, A)
    assert (await reg.list_instances(SVC)).instances == [A]
    # an invalid/expired token is replaced once, transparently
    reg._token = type(reg._token)("bogus.1")  # index <= current: etcd rejects at once
    assert (await reg.list_instances(SVC)).instances == [A]
    await reg.deregister(SVC, A.ip, A.port)
    assert etcd_fresh.get("/services/llm/instances/10.0.0.1:8080") is None
    await reg.close()

    # wrong password: a clear RegistryError without the password
    wrong = "wr0ng-Pa55word"
    bad = connect("etcd", {"endpoints": [etcd_fresh.client_url]}, {"username": "root", "password": wrong}, timeout=3)
    with pytest.raises(RegistryError) as ei:
        await bad.list_instances(SVC)
    msg = str(ei.value)
    assert "authentication" in msg and wrong not in msg and wrong not in repr(ei.value)
    assert wrong not in repr(bad)
    await bad.close()

    # no credentials against an auth-enabled etcd: RegistryError
    anon = EtcdRegistry([etcd_fresh.client_url], timeout=3)
    with pytest.raises(RegistryError):
        await anon.list_instances(SVC)
    await anon.close()
    assert etcd_fresh.get("/outside") == b"keep"


async def test_concurrent_calls_share_session(etcd, reg):
    insts = [Instance(f"p-{i}", "ns", f"u{i}", f"10.1.0.{i}", 80, "sync", i) for i in range(1, 30)]
    await asyncio.gather(*(reg.register(SVC, i) for i in insts))
    assert len((await reg.list_instances(SVC)).instances) == len(insts)


# -- ownership: a pod's entry, a new holder's claim, where the data lives --------------------------


async def test_a_conditional_deregistration_keeps_another_pods_entry_at_the_same_address(etcd, reg):
    newer = Instance(pod="llm-0", namespace="ns", uid="u-new", ip=A.ip, port=A.port, role="sync", ordinal=0)
    await reg.register(SVC, newer)  # the IP went to a new pod, which registered
    await reg.deregister(SVC, A.ip, A.port, A.uid)  # the old pod's release
    assert (await reg.list_instances(SVC)).instances == [newer]
    res = await deregister_confirmed(reg, SVC, A.ip, A.port, A.uid, attempts=1)
    assert res.confirmed  # nothing of the old pod's is listed
    await reg.deregister(SVC, A.ip, A.port, newer.uid)
    assert (await reg.list_instances(SVC)).instances == []
    etcd.put("/services/llm/instances/10.0.0.1:8080", "not our json")
    await reg.deregister(SVC, A.ip, A.port, A.uid)  # never removes what is not its entry
    assert etcd.get("/services/llm/instances/10.0.0.1:8080") == b"not our json"


async def test_a_claim_removes_the_previous_holders_config_and_registers_in_one_transaction(etcd, reg):
    seed_outside(etcd)
    etcd.put("/services/llm/config/10.0.0.1", '{"weight":0,"enabled":false}')
    etcd.put("/services/llm/config/10.0.0.1/canary", "1")
    etcd.put("/services/llm/config/10.0.0.10", "a neighbour's")
    await reg.claim(SVC, A)
    assert (await reg.list_instances(SVC)).instances == [A]
    assert await reg.list_config_ips(SVC) == {"10.0.0.10"}
    assert_outside_untouched(etcd)
    # without any config to remove, the claim is a plain registration
    await reg.claim(SVC, B)
    assert sorted(i.ip for i in (await reg.list_instances(SVC)).instances) == ["10.0.0.1", "10.0.0.2"]


async def test_a_config_written_during_a_claim_fails_the_claim_and_survives(etcd, reg, monkeypatch):
    etcd.put("/services/llm/config/10.0.0.1", "old")
    original = reg._txn

    async def racing(compare, success, what):
        etcd.put("/services/llm/config/10.0.0.1", "written meanwhile")
        return await original(compare, success, what)

    monkeypatch.setattr(reg, "_txn", racing)
    with pytest.raises(RegistryError, match="changed while"):
        await reg.claim(SVC, A)
    assert etcd.get("/services/llm/config/10.0.0.1") == b"written meanwhile"
    assert (await reg.list_instances(SVC)).instances == []


async def test_two_spellings_of_one_etcd_are_one_identity(etcd):
    host, port = etcd.client_url.rsplit(":", 1)
    first = EtcdRegistry([etcd.client_url], timeout=2.0)
    second = EtcdRegistry([f"http://localhost:{port}", etcd.client_url], prefix="/services/", timeout=2.0)
    other_prefix = EtcdRegistry([etcd.client_url], prefix="/v2", timeout=2.0)
    try:
        assert await first.identity() == await second.identity()
        assert await first.identity() != await other_prefix.identity()
        assert "cluster" in await first.identity()
    finally:
        for r in (first, second, other_prefix):
            await r.close()


async def test_a_url_without_an_etcd_gateway_says_so(admin_controller):
    # Any HTTP server that is not etcd's JSON gateway answers 404 on /v3/kv/range.
    reg = EtcdRegistry([admin_controller.url], timeout=2.0)
    try:
        with pytest.raises(RegistryError, match="no etcd v3 JSON gateway at this URL"):
            await reg.list_instances(SVC)
    finally:
        await reg.close()


async def test_a_deregistration_of_an_entry_this_client_wrote_is_one_conditional_transaction(etcd, reg, monkeypatch):
    await reg.register(SVC, A)
    calls = []
    original = EtcdRegistry._call

    async def counted(self, path, body, what):
        calls.append(path)
        return await original(self, path, body, what)

    monkeypatch.setattr(EtcdRegistry, "_call", counted)
    await reg.deregister(SVC, A.ip, A.port, A.uid)
    assert calls == ["/v3/kv/txn"]
    assert etcd.get("/services/llm/instances/10.0.0.1:8080") is None


async def test_an_entry_rewritten_since_it_was_known_is_read_before_it_is_deleted(etcd, reg):
    await reg.register(SVC, A)
    other = Instance(pod="llm-9", namespace="ns", uid="u-9", ip=A.ip, port=A.port, role="sync", ordinal=9)
    etcd.put("/services/llm/instances/10.0.0.1:8080", other.to_json())  # a new holder of the address
    await reg.deregister(SVC, A.ip, A.port, A.uid)
    assert json.loads(etcd.get("/services/llm/instances/10.0.0.1:8080"))["uid"] == "u-9"
    etcd.put("/services/llm/instances/10.0.0.1:8080", A.to_json())  # written again for A, by someone else
    await reg.deregister(SVC, A.ip, A.port, A.uid)
    assert etcd.get("/services/llm/instances/10.0.0.1:8080") is None


async def test_a_listing_tells_the_versions_of_entries_written_by_another_client(etcd, reg):
    etcd.put("/services/llm/instances/10.0.0.1:8080", A.to_json())
    await reg.list_instances(SVC)
    await reg.deregister(SVC, A.ip, A.port, A.uid)
    assert etcd.get("/services/llm/instances/10.0.0.1:8080") is None
