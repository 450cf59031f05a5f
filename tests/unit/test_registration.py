"""Which instances belong in the registry, and what one pass registers or removes."""

import dataclasses
import datetime

import pytest

from infer_operator.registration.plans import desired_instances, instance_for, plan_registration
from infer_operator.registry.model import ServiceRef
from tests.support.pods import pod

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
OWNER = ServiceRef("default", "llm", "uid-llm")
OTHER = ServiceRef("default", "llm-green", "uid-green")


def at(p, seconds_ready):
    return dataclasses.replace(p, serving_since=NOW - datetime.timedelta(seconds=seconds_ready))


@pytest.mark.parametrize(
    ("pods", "delay", "registered", "due"),
    [
        ([pod(0, "sync"), pod(1, "sync"), pod(2, "async")], 0, {"llm-0", "llm-1"}, None),
        ([pod(0, "sync", ready=False), pod(1, "sync")], 0, {"llm-1"}, None),
        ([pod(0, "sync", deleting=True), pod(1, "sync")], 0, {"llm-1"}, None),
        ([dataclasses.replace(pod(0, "sync"), ip=None)], 0, set(), None),
        ([pod(0, None)], 0, set(), None),  # not yet labelled: role unknown
        ([at(pod(0, "sync"), 10), at(pod(1, "sync"), 2)], 5, {"llm-0"}, 3.0),
        ([at(pod(0, "sync"), 5)], 5, {"llm-0"}, None),
    ],
)
def test_desired_is_ready_sync_pods_past_the_warm_up(pods, delay, registered, due):
    desired = desired_instances(pods, 8000, delay, NOW)
    assert {i.pod for i in desired.instances.values()} == registered
    assert desired.next_due == due
    for address, instance in desired.instances.items():
        assert address == f"{instance.ip}:8000" and instance.role == "sync"


def test_instance_json_fields_match_the_contract():
    instance = instance_for(pod(3, "sync", ip="10.1.1.1"), 9000, OWNER)
    assert instance.to_obj() == {"pod": "llm-3", "namespace": "default", "uid": "uid-3", "ip": "10.1.1.1",
                                 "port": 9000, "role": "sync", "ordinal": 3,
                                 "inferenceService": {"namespace": "default", "name": "llm", "uid": "uid-llm"}}


def test_plan_registers_missing_and_changed_and_removes_only_our_known_unwanted():
    p0, p1, p2 = pod(0, "sync"), pod(1, "sync", ready=False), pod(2, "async")
    stranger = instance_for(pod(7, "sync", ip="10.9.9.9"), 8000, OWNER)     # IP of no known pod: sweep's job
    stale_p1 = instance_for(p1, 8000, OWNER)                                 # known, not Ready
    async_entry = instance_for(p2, 8000, OWNER)                              # known, async
    foreign = instance_for(dataclasses.replace(p1, uid="green-1"), 8000, OTHER)  # at p1's IP, not ours
    reused = dataclasses.replace(instance_for(p0, 8000, OWNER), uid="old-uid")   # p0's IP, another pod's entry
    desired = desired_instances([p0, p1, p2], 8000, 0, NOW, OWNER).instances
    plan = plan_registration(desired, [stranger, stale_p1, async_entry, reused, foreign], [p0, p1, p2],
                             owner=OWNER)
    # p0 was never registered: it claims its IP (the old pod's per-IP config goes with the write)
    assert plan.claim == (instance_for(p0, 8000, OWNER),) and plan.register == ()
    assert set(plan.deregister) == {stale_p1, async_entry}


@pytest.mark.parametrize(
    ("marked", "listed_uid", "claims"),
    [
        (False, None, True),       # a new pod: claims its IP
        (True, None, False),       # registered before, deregistered while not Ready: just registered again
        (False, "uid-0", False),   # an entry of an earlier run names it: adopted, not a new holder
        (False, "old-uid", True),  # the entry at its address is a previous holder's
    ],
)
def test_only_a_pod_registered_for_the_first_time_claims_its_ip(marked, listed_uid, claims):
    p0 = dataclasses.replace(pod(0, "sync"), registered=marked)
    listed = []
    if listed_uid is not None:
        listed = [dataclasses.replace(instance_for(p0, 8000, None), uid=listed_uid)]
    desired = desired_instances([p0], 8000, 0, NOW, OWNER).instances
    plan = plan_registration(desired, listed, [p0], owner=OWNER)
    assert (plan.claim, plan.register) == (((desired[f"{p0.ip}:8000"],), ()) if claims
                                           else ((), (desired[f"{p0.ip}:8000"],)))


def test_warming_pod_already_registered_is_kept():
    warm = at(pod(0, "sync"), 1)
    desired = desired_instances([warm], 8000, 30, NOW, OWNER)
    listed = [instance_for(warm, 8000, OWNER)]
    plan = plan_registration(desired.instances, listed, [warm], desired.warming, OWNER)
    assert plan.register == () and plan.claim == () and plan.deregister == ()
