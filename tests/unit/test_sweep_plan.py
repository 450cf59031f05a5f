"""plan_sweep and ownership: pure table tests."""

from __future__ import annotations

import dataclasses

import pytest

from infer_operator.registration.plans import SweepPlan, owns, plan_sweep
from infer_operator.registry.model import Instance, ServiceRef

BLUE = ServiceRef("ns", "llm-blue", "uid-blue")
GREEN = ServiceRef("ns", "llm-green", "uid-green")


def inst(ip: str, port: int = 8080, pod: str = "a", owner: ServiceRef | None = BLUE) -> Instance:
    return Instance(pod=f"{owner.name if owner else 'llm-blue'}-{pod}", namespace="ns", uid="u-" + pod, ip=ip,
                    port=port, role="sync", ordinal=0, owner=owner)


I1, I2, I3 = inst("10.0.0.1", pod="1"), inst("10.0.0.2", pod="2"), inst("10.0.0.3", pod="3")
I1b = inst("10.0.0.1", 9090, pod="1")
G4 = inst("10.0.0.4", pod="4", owner=GREEN)
LEGACY = dataclasses.replace(inst("10.0.0.5", pod="5"), owner=None)            # written before owners were named
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
    ("reused ip: the old pod's entry goes", [inst("10.0.0.1", pod="old")], {"10.0.0.1"}, {"u-1"}, {"10.0.0.1"},
     [inst("10.0.0.1", pod="old")], []),
    ("two ports same stale pod", [I1, I1b, I3], set(), {"u-3"}, {"10.0.0.3"}, [I1, I1b], []),
    ("another service's entries are never ours", [I1, G4], {"10.0.0.4"}, set(), set(), [I1], []),
    ("a config at a sharer's live IP stays", [], {"10.0.0.8"}, set(), {"10.0.0.8"}, [], []),
    ("keys that are not IPs stay", [], {"defaults", "10.0.0.9", "fe80::1", "10.0.0"}, set(), set(), [],
     ["10.0.0.9", "fe80::1"]),
    ("entries of earlier versions are adopted by pod name", [LEGACY, STRANGER], {"10.0.0.6"}, set(), set(),
     [LEGACY], []),
]


@pytest.mark.parametrize("name,instances,config_ids,live_uids,live_ips,want_inst,want_cfg", CASES,
                         ids=[c[0] for c in CASES])
def test_plan_sweep(name, instances, config_ids, live_uids, live_ips, want_inst, want_cfg):
    plan = plan_sweep(instances, config_ids, live_uids, live_ips, BLUE)
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


def test_plan_is_deterministic_and_deduplicated():
    plan = plan_sweep([I3, I1, I1, I2], ["10.0.0.3", "10.0.0.1", "10.0.0.1"], set(), set(), BLUE)
    assert plan.stale_instances == (I1, I2, I3)
    assert plan.stale_config_ips == ("10.0.0.1", "10.0.0.3")
    assert isinstance(plan, SweepPlan) and not plan.empty


def test_plan_does_not_mutate_inputs():
    live_uids, live_ips = {"u-1"}, {"10.0.0.1"}
    insts = [I1, I2]
    plan_sweep(insts, {"10.0.0.2"}, live_uids, live_ips, BLUE)
    assert live_uids == {"u-1"} and live_ips == {"10.0.0.1"} and insts == [I1, I2]
