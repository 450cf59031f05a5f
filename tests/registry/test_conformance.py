"""One contract every registry backend passes, each against its real server (tests/support/
registry_backends.py): register; deregister with a uid guard; claim on a reused IP; the read-back
by address (something listed there is "present" whatever its JSON, never "gone"); per-IP configs
listed and deleted in batches; failover on 5xx/429 as well as on connection errors; timeouts;
credentials never in errors; a place moved away from that stays unreachable is given up within a
bound, with an event and a metric. A backend added to the table without a harness fails here."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time

import pytest

from infer_operator import labels, metrics
from infer_operator.api.v1alpha1 import RegistrySpec
from infer_operator.reconcile.registry_sync import RegistrySync
from infer_operator.reconcile.step import PassNotes
from infer_operator.records import ServiceRecord
from infer_operator.registration.actions import deregister_confirmed
from infer_operator.registration.registrar import Registrar
from infer_operator.registration.releaser import ServiceReleaser, retire
from infer_operator.registration.sharing import NO_VIEWS
from infer_operator.registry.backends import BACKENDS
from infer_operator.registry.model import Instance, RegistryError, ServiceRef, Unreadable
from tests.support.admin_controller import AdminController
from tests.support.registry_backends import EXEMPT, HARNESSES, VARIANTS, EtcdHarness, HttpHarness

pytestmark = pytest.mark.registry

SVC = "llm"
OWNER = ServiceRef("ns", "llm", "uid-llm")
A = Instance("llm-0", "ns", "u-0", "10.0.0.1", 8080, "sync", 0, OWNER)
B = Instance("llm-1", "ns", "u-1", "10.0.0.2", 8080, "sync", 1, OWNER)


def test_every_backend_is_held_to_the_contract():
    assert set(BACKENDS) == set(HARNESSES) | set(EXEMPT)


async def _backend(request, name):
    harness = VARIANTS[name]
    if harness is EtcdHarness:
        yield EtcdHarness(request.getfixturevalue("etcd"))
    elif harness is HttpHarness:
        async with AdminController() as controller:
            yield HttpHarness(controller)
    elif harness.type == "zookeeper":
        yield harness(request.getfixturevalue("zookeeper_server"), request.getfixturevalue("zookeeper"))
    else:
        yield harness(request.getfixturevalue("nacos"))


# Tests of per-IP config run only over the layouts that keep one (and whose API lists them):
# parameters chosen up front, so nothing is skipped for being inapplicable.
PER_IP = sorted(n for n, h in VARIANTS.items() if h.per_ip_config)
LISTED_CONFIGS = sorted(n for n in PER_IP if getattr(VARIANTS[n], "lists_configs", True))


@pytest.fixture(params=sorted(VARIANTS))
async def backend(request):
    async for harness in _backend(request, request.param):
        yield harness


@pytest.fixture(params=PER_IP)
async def per_ip_backend(request):
    async for harness in _backend(request, request.param):
        yield harness


@pytest.fixture(params=LISTED_CONFIGS)
async def listing_backend(request):
    async for harness in _backend(request, request.param):
        yield harness


@pytest.fixture
async def registry(backend):
    client = backend.connect()
    yield client
    await client.close()


@pytest.fixture
async def per_ip_registry(per_ip_backend):
    client = per_ip_backend.connect()
    yield client
    await client.close()


@pytest.fixture
async def listing_registry(listing_backend):
    client = listing_backend.connect()
    yield client
    await client.close()


async def test_register_list_and_lookup(backend, registry):
    await registry.register(SVC, A)
    await registry.register(SVC, dataclasses.replace(B, weight=38))
    await registry.register(SVC, B)  # an upsert: the warm-up's steps re-write the entry
    assert sorted((await registry.list_instances(SVC)).instances, key=lambda i: i.ip) == [A, B]
    assert await registry.lookup(SVC, A.ip, A.port) == A
    assert await registry.lookup(SVC, "10.0.0.9", 8080) is None
    assert set(backend.listed(SVC)) == {A.address, B.address}


async def test_deregister_removes_only_the_entry_naming_the_pod(backend, registry):
    await registry.register(SVC, A)
    await registry.deregister(SVC, A.ip, A.port, "another-pod")  # the address was reused: kept
    assert set(backend.listed(SVC)) == {A.address}
    await registry.deregister(SVC, A.ip, A.port, A.uid)
    assert backend.listed(SVC) == {}
    await registry.deregister(SVC, A.ip, A.port, A.uid)  # absent: success


async def test_a_new_holder_claims_its_ip_without_the_previous_holders_config(per_ip_backend, per_ip_registry):
    backend, registry = per_ip_backend, per_ip_registry
    backend.seed_config(SVC, A.ip)  # a dead pod's {"weight":0,"enabled":false} at the reused IP
    backend.seed_config(SVC, B.ip)
    await registry.claim(SVC, A)
    assert backend.configs(SVC) == {B.ip} and set(backend.listed(SVC)) == {A.address}


@pytest.mark.parametrize(
    "listed",
    [
        {k: v for k, v in A.to_obj().items() if k != "ordinal"},  # Go's omitempty: pod 0 is still pod 0
        {"ip": "10.0.0.1", "port": 8080, "service": "llm"},  # someone else's shape
        b"not json",
    ],
    ids=["omitted-zero", "foreign", "garbage"],
)
async def test_the_read_back_never_takes_something_listed_at_the_address_for_gone(backend, registry, listed):
    if backend.type == "http" and isinstance(listed, bytes):
        listed = {"ip": A.ip, "port": A.port, "pod": ["garbage"]}  # listed items are objects: garbage inside
    backend.put_raw(SVC, A.address, listed)
    found = await registry.lookup(SVC, A.ip, A.port)
    assert found is not None
    result = await deregister_confirmed(registry, SVC, A.ip, A.port, A.uid, attempts=2, backoff=0.01)
    if isinstance(found, Instance):  # read as the pod's own entry: removed and confirmed
        assert A.same_entry(found) and result.confirmed and backend.listed(SVC) == {}
    else:  # not ours to read: kept, and never confirmed gone
        assert isinstance(found, Unreadable) and not result.confirmed and A.address in backend.listed(SVC)


async def test_configs_are_listed_and_deleted_in_batches(listing_backend, listing_registry):
    backend, registry = listing_backend, listing_registry
    ips = [f"10.1.{i // 250}.{i % 250 + 1}" for i in range(150)]  # more than one etcd transaction holds
    for ip in ips:
        backend.seed_config(SVC, ip)
    other = backend.not_per_ip  # not a pod's IP: another tool's (Dubbo: a rule for every provider)
    backend.seed_config(SVC, other)
    assert await registry.list_config_ips(SVC) == {*ips, other}
    assert await registry.delete_configs(SVC, ips) == {}
    assert backend.configs(SVC) == {other}


@pytest.mark.parametrize("status", [503, 429, 502])
async def test_a_place_that_answers_but_cannot_serve_is_passed_over(backend, status):
    async with backend.unavailable(status) as registry:
        started = time.monotonic()
        await registry.register(SVC, A)
        assert time.monotonic() - started < 1.0
    assert set(backend.listed(SVC)) == {A.address}


async def test_a_place_that_refuses_connections_is_passed_over(backend, dead_url):
    registry = backend.connect(first=dead_url)
    try:
        await registry.register(SVC, A)
        assert [i.pod for i in (await registry.list_instances(SVC)).instances] == ["llm-0"]
    finally:
        await registry.close()


async def test_every_call_is_bounded_by_its_timeout(backend, blackhole_url):
    from infer_operator.registry.backends import connect

    registry = connect(backend.type, backend.section(blackhole_url), None, timeout=0.5)
    try:
        for call in (registry.register(SVC, A), registry.list_instances(SVC), registry.lookup(SVC, A.ip, A.port)):
            started = time.monotonic()
            with pytest.raises(RegistryError, match="timed out|no endpoint|could serve"):
                await call
            assert time.monotonic() - started < 1.5
    finally:
        await registry.close()


async def test_credentials_never_appear_in_errors(backend):
    secret = "s3cret-Cr3dential-42"
    async with backend.leaky(secret) as registry:
        for call in (registry.register(SVC, A), registry.list_instances(SVC), registry.deregister(SVC, A.ip, A.port)):
            with pytest.raises(RegistryError) as failed:
                await call
            text = f"{failed.value} {failed.value!r} {registry!r}"
            assert secret not in text and "***" in str(failed.value)


def _retired(backend, url: str, age: float):
    moved = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=age)
    old = RegistrySpec.model_validate({"type": backend.type, backend.type: backend.section(url), "service": SVC})
    return retire(old, moved)


async def test_a_place_moved_away_from_that_stays_unreachable_is_given_up_within_a_bound(backend, dead_url, caplog):
    """An old address of the registry in use, gone for good: not `OldRegistryNotCleaned` for ever."""
    current = RegistrySpec.model_validate({"type": backend.type, backend.type: backend.section(), "service": SVC})
    record = ServiceRecord("ns", "llm", Registrar(None, "ns", "llm", timeout=1.0))
    events: list[tuple[str, str, str]] = []
    sync = RegistrySync(
        None, record, logging.getLogger("test"), None, lambda ref, kind, reason, msg: events.append((kind, reason, msg))
    )
    sync.give_up_after = 300.0
    abandoned = metrics.INCOMPLETE_CLEANUPS.labels(labels.KIND, "RegistryCleanupAbandoned")
    before = abandoned._value.get()
    try:
        notes = PassNotes()
        young = _retired(backend, dead_url, 10)
        assert await sync.clean_moved(current, [young], OWNER, NO_VIEWS, notes) == [young]
        assert notes.registry_condition.reason == "OldRegistryNotCleaned" and events == []
        notes = PassNotes()
        old = _retired(backend, dead_url, 301)
        assert await sync.clean_moved(current, [old], OWNER, NO_VIEWS, notes) == []
        assert notes.registry_condition is None
        assert [(kind, reason) for kind, reason, _ in events] == [("Warning", "RegistryCleanupAbandoned")]
        assert abandoned._value.get() == before + 1
        # a deletion does not wait --cleanup-timeout for it either: that place's own bound has passed
        releaser = ServiceReleaser(None, None, lambda *args: None, timeout=lambda: 300.0)
        now = datetime.datetime.now(datetime.UTC).isoformat()
        body = {
            "metadata": {"namespace": "ns", "name": "llm", "uid": OWNER.uid, "deletionTimestamp": now},
            "spec": None,
            "status": {"retiredRegistries": [old.model_dump(by_alias=True, exclude_none=True)]},
        }
        started = time.monotonic()
        note = await releaser._clean(body, OWNER, record, NO_VIEWS)
        assert note is not None and note.reason == "RegistryCleanupAbandoned" and time.monotonic() - started < 5
    finally:
        await record.registrar.close()
