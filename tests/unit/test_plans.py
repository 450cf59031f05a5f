"""registration/plans.py, pure: which instances belong in the registry, what one pass registers or
removes, what a sweep removes, and whose an entry is."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from infer_operator.registration.plans import (
    SweepPlan,
    desired_instances,
    instance_for,
    owns,
    plan_registration,
    plan_sweep,
    warmup_weight,
)
from infer_operator.registry.model import Instance, ServiceRef
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
    assert instance.to_obj() == {
        "pod": "llm-3",
        "namespace": "default",
        "uid": "uid-3",
        "ip": "10.1.1.1",
        "port": 9000,
        "role": "sync",
        "ordinal": 3,
        "inferenceService": {"namespace": "default", "name": "llm", "uid": "uid-llm"},
        "weight": 100,
    }


def test_plan_registers_missing_and_changed_and_removes_only_our_known_unwanted():
    p0, p1, p2 = pod(0, "sync"), pod(1, "sync", ready=False), pod(2, "async")
    stranger = instance_for(pod(7, "sync", ip="10.9.9.9"), 8000, OWNER)  # IP of no known pod: sweep's job
    stale_p1 = instance_for(p1, 8000, OWNER)  # known, not Ready
    async_entry = instance_for(p2, 8000, OWNER)  # known, async
    foreign = instance_for(dataclasses.replace(p1, uid="green-1"), 8000, OTHER)  # at p1's IP, not ours
    reused = dataclasses.replace(instance_for(p0, 8000, OWNER), uid="old-uid")  # p0's IP, another pod's entry
    desired = desired_instances([p0, p1, p2], 8000, 0, NOW, OWNER).instances
    plan = plan_registration(desired, [stranger, stale_p1, async_entry, reused, foreign], [p0, p1, p2], owner=OWNER)
    # p0 was never registered: it claims its IP (the old pod's per-IP config goes with the write)
    assert plan.claim == (instance_for(p0, 8000, OWNER),) and plan.register == ()
    assert set(plan.deregister) == {stale_p1, async_entry}


@pytest.mark.parametrize(
    ("marked", "listed_uid", "claims"),
    [
        (False, None, True),  # a new pod: claims its IP
        (True, None, False),  # registered before, deregistered while not Ready: just registered again
        (False, "uid-0", False),  # an entry of an earlier run names it: adopted, not a new holder
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
    assert (plan.claim, plan.register) == (
        ((desired[f"{p0.ip}:8000"],), ()) if claims else ((), (desired[f"{p0.ip}:8000"],))
    )


def test_warming_pod_already_registered_is_kept():
    warm = at(pod(0, "sync"), 1)
    desired = desired_instances([warm], 8000, 30, NOW, OWNER)
    listed = [instance_for(warm, 8000, OWNER)]
    plan = plan_registration(desired.instances, listed, [warm], desired.warming, OWNER)
    assert plan.register == () and plan.claim == () and plan.deregister == ()


def test_a_warming_pod_whose_entry_has_a_ramp_weight_is_kept_as_it_is():
    warm = at(pod(0, "sync"), 1)
    desired = desired_instances([warm], 8000, 30, NOW, OWNER, warmup=60)
    listed = [dataclasses.replace(instance_for(warm, 8000, OWNER), weight=38)]
    plan = plan_registration(desired.instances, listed, [warm], desired.warming, OWNER)
    assert plan.register == () and plan.claim == () and plan.deregister == ()


@pytest.mark.parametrize(
    ("elapsed", "weight", "next_in"),
    [(0, 12, 15.0), (14.9, 12, 0.1), (15, 38, 15.0), (30, 62, 15.0), (59, 88, 1.0), (60, 100, None), (600, 100, None)],
)
def test_the_warm_up_ramps_in_four_steps_each_at_the_linear_ramps_mean(elapsed, weight, next_in):
    got, step_in = warmup_weight(elapsed, 60)
    assert got == weight
    assert step_in == pytest.approx(next_in) if next_in is not None else step_in is None
    assert warmup_weight(5, 0) == (100, None)  # no warm-up: full weight at once


def test_a_pod_past_its_register_delay_ramps_in_and_the_pass_wakes_for_each_step():
    fresh, warm = at(pod(0, "sync"), 12), at(pod(1, "sync", ip="10.0.0.2"), 100)
    desired = desired_instances([fresh, warm], 8000, 10, NOW, OWNER, warmup=40)  # 2 s into the ramp
    weights = {i.pod: i.weight for i in desired.instances.values()}
    assert weights == {"llm-0": 12, "llm-1": 100} and desired.next_due == pytest.approx(8.0)


def test_a_listed_weight_is_never_lowered_and_an_entry_of_an_earlier_layout_is_written_again():
    p0 = dataclasses.replace(at(pod(0, "sync"), 0), registered=True)  # the operator restarted: the clock is new
    desired = desired_instances([p0], 8000, 0, NOW, OWNER, warmup=60).instances
    assert next(iter(desired.values())).weight == 12
    warm = instance_for(p0, 8000, OWNER)  # listed at full weight before the restart
    plan = plan_registration(desired, [warm], [p0], owner=OWNER)
    assert plan.register == () and plan.claim == () and plan.deregister == ()
    plan = plan_registration(desired, [dataclasses.replace(warm, stale_layout=True)], [p0], owner=OWNER)
    assert plan.register == (warm,) and plan.claim == ()


# -- the sweep and ownership -------------------------------------------------------------------

BLUE = ServiceRef("ns", "llm-blue", "uid-blue")
GREEN = ServiceRef("ns", "llm-green", "uid-green")


def inst(ip: str, port: int = 8080, pod: str = "a", owner: ServiceRef | None = BLUE) -> Instance:
    return Instance(
        pod=f"{owner.name if owner else 'llm-blue'}-{pod}",
        namespace="ns",
        uid="u-" + pod,
        ip=ip,
        port=port,
        role="sync",
        ordinal=0,
        owner=owner,
    )


I1, I2, I3 = inst("10.0.0.1", pod="1"), inst("10.0.0.2", pod="2"), inst("10.0.0.3", pod="3")
I1b = inst("10.0.0.1", 9090, pod="1")
G4 = inst("10.0.0.4", pod="4", owner=GREEN)
LEGACY = dataclasses.replace(inst("10.0.0.5", pod="5"), owner=None)  # written before owners were named
STRANGER = dataclasses.replace(inst("10.0.0.6", pod="6"), owner=None, pod="other-0")  # someone else's pod

CASES = [
    # (name, instances, config ids, live own uids, live ips of all sharers, stale instances, stale configs)
    ("pods unreadable -> keep all", [I1, I2], {"10.0.0.1", "10.0.0.9"}, None, None, [], []),
    ("all live", [I1, I2], {"10.0.0.1", "10.0.0.2"}, {"u-1", "u-2"}, {"10.0.0.1", "10.0.0.2"}, [], []),
    ("one gone", [I1, I2], {"10.0.0.1", "10.0.0.2"}, {"u-1"}, {"10.0.0.1"}, [I2], ["10.0.0.2"]),
    ("no pods at all -> all ours stale", [I1, I2], {"10.0.0.1"}, set(), set(), [I1, I2], ["10.0.0.1"]),
    ("config only (crashed before register)", [], {"10.0.0.7", "10.0.0.1"}, {"u-1"}, {"10.0.0.1"}, [], ["10.0.0.7"]),
    # the entry names a pod that is gone, although a new pod holds its IP now: the entry goes, the
    # config stays (the new holder's, or removed when it registers first)
    (
        "reused ip: the old pod's entry goes",
        [inst("10.0.0.1", pod="old")],
        {"10.0.0.1"},
        {"u-1"},
        {"10.0.0.1"},
        [inst("10.0.0.1", pod="old")],
        [],
    ),
    ("two ports same stale pod", [I1, I1b, I3], set(), {"u-3"}, {"10.0.0.3"}, [I1, I1b], []),
    ("another service's entries are never ours", [I1, G4], {"10.0.0.4"}, set(), set(), [I1], []),
    ("a config at a sharer's live IP stays", [], {"10.0.0.8"}, set(), {"10.0.0.8"}, [], []),
    (
        "keys that are not IPs stay",
        [],
        {"defaults", "10.0.0.9", "fe80::1", "10.0.0"},
        set(),
        set(),
        [],
        ["10.0.0.9", "fe80::1"],
    ),
    (
        "entries of earlier versions are adopted by pod name",
        [LEGACY, STRANGER],
        {"10.0.0.6"},
        set(),
        set(),
        [LEGACY],
        [],
    ),
]


@pytest.mark.parametrize(
    "name,instances,config_ids,live_uids,live_ips,want_inst,want_cfg", CASES, ids=[c[0] for c in CASES]
)
def test_plan_sweep(name, instances, config_ids, live_uids, live_ips, want_inst, want_cfg):
    # Live pods whose address these cases leave open (None): only whether they live decides.
    live = None if live_uids is None else dict.fromkeys(live_uids)
    plan = plan_sweep(instances, config_ids, live, live_ips, BLUE)
    assert sorted(plan.stale_instances, key=lambda i: (i.ip, i.port)) == want_inst
    assert sorted(plan.stale_config_ips) == want_cfg
    if live_uids is None:
        assert plan.empty and plan.skipped_reason


@pytest.mark.parametrize(
    ("instance", "owner", "expected"),
    [
        (I1, BLUE, True),
        (I1, GREEN, False),
        (dataclasses.replace(I1, owner=ServiceRef("ns", "llm-blue", "uid-of-an-earlier-llm-blue")), BLUE, False),
        (LEGACY, BLUE, True),
        (dataclasses.replace(LEGACY, namespace="other"), BLUE, False),
        (dataclasses.replace(LEGACY, pod="llm-blue-canary-0"), BLUE, False),
        (dataclasses.replace(LEGACY, pod="llm-0"), ServiceRef("ns", "llm", "u"), True),
        (dataclasses.replace(LEGACY, pod="llm-blue-0"), ServiceRef("ns", "llm", "u"), False),
    ],
)
def test_ownership_is_by_uid_and_by_pod_name_for_entries_of_earlier_versions(instance, owner, expected):
    assert owns(owner, instance) is expected


@pytest.mark.parametrize(
    ("live", "stale"),
    [
        ({"u-1": "10.0.0.1"}, []),  # at its address: it stays
        ({"u-1": "10.0.0.7"}, [I1]),  # the pod holds another IP now (its sandbox was re-created)
        ({"u-1": None}, []),  # its address unknown (no IP yet): when in doubt, keep
    ],
)
def test_an_entry_of_a_live_pod_at_an_address_it_no_longer_holds_is_stale(live, stale):
    assert list(plan_sweep([I1], [], live, set(), BLUE).stale_instances) == stale


def test_plan_is_deterministic_and_deduplicated():
    plan = plan_sweep([I3, I1, I1, I2], ["10.0.0.3", "10.0.0.1", "10.0.0.1"], {}, set(), BLUE)
    assert plan.stale_instances == (I1, I2, I3)
    assert plan.stale_config_ips == ("10.0.0.1", "10.0.0.3")
    assert isinstance(plan, SweepPlan) and not plan.empty


def test_plan_does_not_mutate_inputs():
    live, live_ips = {"u-1": "10.0.0.1"}, {"10.0.0.1"}
    insts = [I1, I2]
    plan_sweep(insts, {"10.0.0.2"}, live, live_ips, BLUE)
    assert live == {"u-1": "10.0.0.1"} and live_ips == {"10.0.0.1"} and insts == [I1, I2]
