"""Registry-client faults met with real servers (issue 24). Each test uses only what the registry
clients offered before the fix (EtcdRegistry, HttpRegistry, deregister_confirmed), so it can be
run against an older checkout of them: each failed there.

- an etcd member answering 503 (a learner) or 429 (rate limited) listed before a healthy one;
- an HTTP admin controller whose listing leaves out `ordinal: 0` (Go's `omitempty`): the
  read-back must not take the pod's entry for gone;
- (the registry moved away from and unreachable for good: tests/registry/test_conformance.py,
  `test_a_place_moved_away_from_that_stays_unreachable_is_given_up_within_a_bound`).
"""

from __future__ import annotations

import time

import pytest

from infer_operator.registration.actions import deregister_confirmed
from infer_operator.registry.etcd import EtcdRegistry
from infer_operator.registry.http import HttpRegistry
from infer_operator.registry.model import Instance, RegistryError
from tests.support.admin_controller import AdminController
from tests.support.faulty_etcd import FaultyEtcdMember

pytestmark = pytest.mark.registry

SVC = "llm"
POD0 = Instance(pod="llm-0", namespace="ns", uid="u-0", ip="10.0.0.1", port=8080, role="sync", ordinal=0)


@pytest.mark.parametrize("status", [503, 429])
async def test_an_etcd_member_that_cannot_serve_does_not_block_registration(etcd, status):
    async with FaultyEtcdMember(status) as member:
        registry = EtcdRegistry([member.url, etcd.client_url], timeout=2.0)
        try:
            started = time.monotonic()
            await registry.register(SVC, POD0)  # the learner / rate-limited member first
            failover = time.monotonic() - started
            assert etcd.get("/services/llm/instances/10.0.0.1:8080") is not None
            assert [i.pod for i in (await registry.list_instances(SVC)).instances] == ["llm-0"]
            await registry.deregister(SVC, POD0.ip, POD0.port, POD0.uid)
            assert etcd.get("/services/llm/instances/10.0.0.1:8080") is None
            # it answered once; the healthy member is preferred from then on
            assert member.requests == 1 and failover < 1.0
        finally:
            await registry.close()


async def test_only_members_that_cannot_serve_is_an_error_naming_each(etcd):
    async with FaultyEtcdMember(503) as learner, FaultyEtcdMember(429) as busy:
        registry = EtcdRegistry([learner.url, busy.url], timeout=2.0)
        try:
            with pytest.raises(RegistryError) as failed:
                await registry.register(SVC, POD0)
            assert "rpc not supported for learner" in str(failed.value) and "too many requests" in str(failed.value)
        finally:
            await registry.close()


async def test_an_admin_controller_omitting_ordinal_zero_does_not_release_a_listed_pod():
    async with AdminController() as controller:
        controller.omit_zero = True  # lists {"pod":"llm-0",...} without "ordinal": 0, as Go's omitempty does
        registry = HttpRegistry(controller.url, timeout=2.0)
        try:
            await registry.register(SVC, POD0)
            result = await deregister_confirmed(registry, SVC, POD0.ip, POD0.port, POD0.uid, backoff=0.01)
            # confirmed only once the entry is really gone: never "gone" while it is listed
            assert result.confirmed
            assert controller.instances(SVC) == {}
        finally:
            await registry.close()


async def test_an_entry_listed_at_the_address_that_is_not_ours_to_read_is_never_taken_as_gone():
    async with AdminController() as controller:
        registry = HttpRegistry(controller.url, timeout=2.0)
        try:
            # whatever sits at the pod's address, the read-back cannot say it is gone
            controller.seed_raw_instance(SVC, "10.0.0.1:8080", {"ip": "10.0.0.1", "port": 8080, "name": "llm-0"})
            result = await deregister_confirmed(registry, SVC, POD0.ip, POD0.port, POD0.uid, attempts=2, backoff=0.01)
            assert not result.confirmed and "still listed" in (result.last_error or "")
        finally:
            await registry.close()
