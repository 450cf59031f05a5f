"""HttpRegistry against the real in-memory admin-controller server."""

from __future__ import annotations

import json
import time

import pytest

from infer_operator.registration.actions import apply_sweep, deregister_confirmed
from infer_operator.registration.plans import plan_sweep
from infer_operator.registry.backends import connect
from infer_operator.registry.http import ATTEMPTS, HttpRegistry
from infer_operator.registry.model import Instance, RegistryError
from tests.support.admin_controller import AdminController

pytestmark = pytest.mark.registry

SVC = "llm"
A = Instance(pod="llm-0", namespace="ns", uid="u-0", ip="10.0.0.1", port=8080, role="sync", ordinal=0)
B = Instance(pod="llm-1", namespace="ns", uid="u-1", ip="10.0.0.2", port=8080, role="async", ordinal=1)


@pytest.fixture
async def reg(admin_controller):
    r = HttpRegistry(admin_controller.url, timeout=2.0)
    yield r
    await r.close()


def seed_other(ac: AdminController) -> None:
    ac.seed_raw_instance("other", "10.0.0.1:8080", {"foreign": True})
    ac.seed_config("other", "10.0.0.1")


def assert_other_untouched(ac: AdminController) -> None:
    assert ac.instances("other") == {"10.0.0.1:8080": {"foreign": True}}
    assert ac.configs("other") == {"10.0.0.1"}


async def test_roundtrip_exact_json(admin_controller, reg):
    ac = admin_controller
    seed_other(ac)
    await reg.register(SVC, A)
    await reg.register(SVC, B)
    assert ac.requests[0] == ("PUT", "/services/llm/instances/10.0.0.1:8080")
    assert (
        ac.instances(SVC)["10.0.0.1:8080"]
        == json.loads(A.to_json())
        == {
            "pod": "llm-0",
            "namespace": "ns",
            "uid": "u-0",
            "ip": "10.0.0.1",
            "port": 8080,
            "role": "sync",
            "ordinal": 0,
            "weight": 100,
        }
    )
    listing = await reg.list_instances(SVC)
    assert sorted(listing.instances, key=lambda i: i.ip) == [A, B] and listing.malformed == []
    await reg.deregister(SVC, A.ip, A.port)
    assert set(ac.instances(SVC)) == {"10.0.0.2:8080"}
    assert_other_untouched(ac)


async def test_base_url_with_path_and_quoting(admin_controller):
    # a base path is kept; '?', '#', '%' in a service name are percent-quoted within one segment
    async with AdminController(base_path="/api/") as ac:
        assert ac.url.endswith("/api")
        r = HttpRegistry(ac.url + "/", timeout=2)
        await r.register("svc?x=1#y%", A)
        assert (await r.list_instances("svc?x=1#y%")).instances == [A]
        await r.close()
    assert ac.requests[0] == ("PUT", "/api/services/svc?x=1#y%/instances/10.0.0.1:8080")
    assert set(ac.instances("svc?x=1#y%")) == {"10.0.0.1:8080"}
    url = HttpRegistry("http://h:1/api").instance_url("s?#%", "fd00::1", 80)
    assert str(url) == "http://h:1/api/services/s%3F%23%25/instances/fd00::1:80"


async def test_deregister_and_delete_config_absent_is_success(reg):
    await reg.deregister(SVC, "10.9.9.9", 1)
    await reg.delete_config(SVC, "10.9.9.9")


async def test_malformed_items_reported_and_kept(admin_controller, reg):
    ac = admin_controller
    await reg.register(SVC, A)
    ac.seed_raw_instance(SVC, "junk1", "just a string")
    ac.seed_raw_instance(SVC, "junk2", {"ip": "10.0.0.6", "port": 80})
    ac.seed_raw_instance(SVC, "junk3", [1, 2])
    listing = await reg.list_instances(SVC)
    assert listing.instances == [A]
    assert sorted(listing.malformed) == sorted(['"just a string"', "10.0.0.6:80", "[1,2]"])
    plan = plan_sweep(listing.instances, await reg.list_config_ips(SVC), {}, set())
    await apply_sweep(reg, SVC, plan)
    assert set(ac.instances(SVC)) == {"junk1", "junk2", "junk3"}


async def test_configs_listing_deletion_and_sweep(admin_controller, reg):
    ac = admin_controller
    seed_other(ac)
    await reg.register(SVC, A)
    await reg.register(SVC, B)
    for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        ac.seed_config(SVC, ip)
    assert await reg.list_config_ips(SVC) == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}
    await reg.delete_config(SVC, "10.0.0.3")
    assert ac.configs(SVC) == {"10.0.0.1", "10.0.0.2"}
    plan = plan_sweep(
        (await reg.list_instances(SVC)).instances, await reg.list_config_ips(SVC), {B.uid: B.ip}, {"10.0.0.2"}
    )
    res = await apply_sweep(reg, SVC, plan)
    assert (res.instances_removed, res.configs_removed, res.errors) == (1, 1, [])
    assert set(ac.instances(SVC)) == {"10.0.0.2:8080"} and ac.configs(SVC) == {"10.0.0.2"}
    assert_other_untouched(ac)


async def test_sweep_continues_past_errors(admin_controller, reg):
    ac = admin_controller
    await reg.register(SVC, A)
    await reg.register(SVC, B)
    ac.seed_config(SVC, "10.0.0.1")
    plan = plan_sweep((await reg.list_instances(SVC)).instances, await reg.list_config_ips(SVC), {}, set())
    ac.fail_next(500, count=ATTEMPTS, method="DELETE")  # every attempt of one call
    res = await apply_sweep(reg, SVC, plan)
    assert res.instances_removed == 1 and res.configs_removed == 1 and len(res.errors) == 1
    assert "HTTP 500" in res.errors[0]


async def test_deregister_confirmed_first_delete_does_not_take(admin_controller, reg):
    ac = admin_controller
    await reg.register(SVC, A)
    ac.ignore_deletes = 1
    res = await deregister_confirmed(reg, SVC, A.ip, A.port, backoff=0.01)
    assert res.confirmed and res.needed_second_confirmation and res.attempts == 2
    assert ac.instances(SVC) == {}
    assert [m for m, p in ac.requests if p.endswith("10.0.0.1:8080")] == ["PUT", "DELETE", "DELETE"]


async def test_deregister_confirmed_retries_errors(admin_controller, reg):
    await reg.register(SVC, A)
    admin_controller.fail_next(503, count=2 * ATTEMPTS, method="DELETE")  # two calls fail whole
    res = await deregister_confirmed(reg, SVC, A.ip, A.port, backoff=0.01)
    assert res.confirmed and res.attempts == 3 and not res.needed_second_confirmation
    assert "HTTP 503" in res.last_error


async def test_server_down(dead_url):
    reg = HttpRegistry(dead_url, timeout=3)
    t0 = time.monotonic()
    with pytest.raises(RegistryError):
        await reg.register(SVC, A)
    assert time.monotonic() - t0 < 2
    res = await deregister_confirmed(reg, SVC, A.ip, A.port, attempts=3, backoff=0.01)
    assert not res.confirmed and res.attempts == 3 and res.last_error
    await reg.close()


async def test_slow_server_bounded(admin_controller):
    admin_controller.delay = 5
    reg = HttpRegistry(admin_controller.url, timeout=0.4)
    t0 = time.monotonic()
    with pytest.raises(RegistryError, match="timed out"):
        await reg.list_instances(SVC)
    res = await deregister_confirmed(reg, SVC, A.ip, A.port, attempts=2, backoff=0.01)
    assert not res.confirmed
    assert time.monotonic() - t0 < 2.5
    await reg.close()


@pytest.mark.parametrize("status", [500, 502, 503, 429, 400, 409, 418])
async def test_error_statuses(admin_controller, reg, status):
    # 5xx and 429 are tried again within the call (ATTEMPTS times); other statuses fail at once
    count = ATTEMPTS if status >= 500 or status == 429 else 1
    for call in (
        lambda: reg.register(SVC, A),
        lambda: reg.list_instances(SVC),
        lambda: reg.list_config_ips(SVC),
        lambda: reg.deregister(SVC, A.ip, A.port),
        lambda: reg.delete_config(SVC, A.ip),
    ):
        admin_controller.fail_next(status, count=count)
        with pytest.raises(RegistryError, match=f"HTTP {status}"):
            await call()
        assert not admin_controller._faults  # each attempt met its fault: no more, no fewer


async def test_404_on_put_and_get_is_error(admin_controller, reg):
    admin_controller.fail_next(404, method="PUT")
    with pytest.raises(RegistryError, match="HTTP 404"):
        await reg.register(SVC, A)
    admin_controller.fail_next(404, method="GET")
    with pytest.raises(RegistryError, match="HTTP 404"):
        await reg.list_instances(SVC)
    admin_controller.fail_next(404, method="DELETE")
    await reg.deregister(SVC, A.ip, A.port)


@pytest.mark.parametrize("mode", ["text", "object", "null", "huge", "huge-cl"])
async def test_garbage_and_huge_responses(admin_controller, reg, mode):
    admin_controller.garbage = mode
    with pytest.raises(RegistryError) as ei:
        await reg.list_instances(SVC)
    with pytest.raises(RegistryError):
        await reg.list_config_ips(SVC)
    if mode.startswith("huge"):
        assert "too large" in str(ei.value)
    assert "\n" not in str(ei.value)


async def test_config_list_with_unusable_items(admin_controller, reg):
    admin_controller.seed_config(SVC, "10.0.0.1")
    admin_controller.seed_config(SVC, "../etc")
    assert await reg.list_config_ips(SVC) == {"10.0.0.1"}


async def test_bearer_token():
    token = "tok-3xtra-s3cret"
    async with AdminController(token=token) as ac:
        good = connect("http", {"url": ac.url}, {"token": token}, timeout=2)
        assert token not in repr(good) and token not in good.describe()
        await good.register(SVC, A)
        assert (await good.list_instances(SVC)).instances == [A]
        await good.close()

        wrong = "wr0ng-t0ken-value"
        bad = connect("http", {"url": ac.url}, {"token": wrong}, timeout=2)
        with pytest.raises(RegistryError, match="HTTP 401") as ei:
            await bad.list_instances(SVC)
        assert wrong not in str(ei.value) and wrong not in repr(ei.value) and token not in str(ei.value)
        res = await deregister_confirmed(bad, SVC, A.ip, A.port, attempts=1)
        assert not res.confirmed and wrong not in (res.last_error or "")
        await bad.close()

        anon = HttpRegistry(ac.url, timeout=2)
        with pytest.raises(RegistryError, match="HTTP 401"):
            await anon.register(SVC, B)
        await anon.close()
        assert set(ac.instances(SVC)) == {"10.0.0.1:8080"}


@pytest.mark.parametrize("service,ip", [("a/b", "1.2.3.4"), ("..", "1.2.3.4"), ("llm", "../x"), ("llm", "1.2.3.4/x")])
async def test_path_traversal_rejected(admin_controller, reg, service, ip):
    with pytest.raises(ValueError):
        await reg.deregister(service, ip, 80)
    with pytest.raises(ValueError):
        await reg.delete_config(service, ip)
    assert admin_controller.requests == []


async def test_a_conditional_deregistration_keeps_another_pods_entry(admin_controller, reg):
    ac = admin_controller
    newer = Instance(pod="llm-0", namespace="ns", uid="u-new", ip=A.ip, port=A.port, role="sync", ordinal=0)
    await reg.register(SVC, newer)
    await reg.deregister(SVC, A.ip, A.port, A.uid)
    assert ac.instances(SVC)["10.0.0.1:8080"]["uid"] == "u-new"
    # The contract's own guard (`?uid=`): a controller that answers 409 keeps the entry.
    ac.requests.clear()
    await reg._request(
        "DELETE", reg.instance_url(SVC, A.ip, A.port).with_query(uid=A.uid), ok_404=True, ok_conflict=True
    )
    assert ac.instances(SVC)["10.0.0.1:8080"]["uid"] == "u-new"
    await reg.deregister(SVC, A.ip, A.port, "u-new")
    assert ac.instances(SVC) == {}
    assert ("DELETE", "/services/llm/instances/10.0.0.1:8080") in ac.requests


async def test_a_claim_deletes_the_ips_config_before_registering(admin_controller, reg):
    ac = admin_controller
    ac.seed_config(SVC, A.ip, {"weight": 0})
    ac.seed_config(SVC, B.ip)
    ac.requests.clear()
    await reg.claim(SVC, A)
    assert ac.requests == [
        ("DELETE", "/services/llm/configs/10.0.0.1"),
        ("PUT", "/services/llm/instances/10.0.0.1:8080"),
    ]
    assert ac.configs(SVC) == {B.ip} and set(ac.instances(SVC)) == {"10.0.0.1:8080"}
    assert await reg.identity() == f"http {ac.url}"
