"""plan_sweep: pure table tests."""

from __future__ import annotations

import pytest

from infer_operator.registration.plans import SweepPlan, plan_sweep
from infer_operator.registry.model import Instance


def inst(ip: str, port: int = 8080, pod: str = "p") -> Instance:
    return Instance(pod=pod, namespace="ns", uid="u-" + pod, ip=ip, port=port, role="sync", ordinal=0)


I1, I2, I3 = inst("10.0.0.1", pod="a"), inst("10.0.0.2", pod="b"), inst("10.0.0.3", pod="c")
I1b = inst("10.0.0.1", 9090, pod="a")

CASES = [
    # (name, instances, config_ips, live_ips, stale instances, stale config ips)
    ("pods unreadable -> keep all", [I1, I2], {"10.0.0.1", "10.0.0.9"}, None, [], []),
    ("pods unreadable, empty registry", [], set(), None, [], []),
    ("all live", [I1, I2], {"10.0.0.1", "10.0.0.2"}, {"10.0.0.1", "10.0.0.2"}, [], []),
    ("one gone", [I1, I2], {"10.0.0.1", "10.0.0.2"}, {"10.0.0.1"}, [I2], ["10.0.0.2"]),
    ("no pods at all -> everything stale", [I1, I2], {"10.0.0.1"}, set(), [I1, I2], ["10.0.0.1"]),
    ("config only (crashed before register)", [], {"10.0.0.7", "10.0.0.1"}, {"10.0.0.1"}, [], ["10.0.0.7"]),
    # the entry names pod "a" but the IP is now held by a different live pod: keep it
    ("reused ip held by live pod", [inst("10.0.0.1", pod="old")], {"10.0.0.1"}, {"10.0.0.1"}, [], []),
    ("two ports same stale ip", [I1, I1b, I3], set(), {"10.0.0.3"}, [I1, I1b], []),
    ("live ips not in registry are irrelevant", [I1], set(), {"10.0.0.1", "10.0.0.50"}, [], []),
]


@pytest.mark.parametrize("name,instances,config_ips,live,want_inst,want_cfg", CASES, ids=[c[0] for c in CASES])
def test_plan_sweep(name, instances, config_ips, live, want_inst, want_cfg):
    plan = plan_sweep(instances, config_ips, live)
    assert sorted(plan.stale_instances, key=lambda i: (i.ip, i.port)) == want_inst
    assert sorted(plan.stale_config_ips) == want_cfg
    if live is None:
        assert plan.empty and plan.skipped_reason


def test_plan_is_deterministic_and_deduplicated():
    plan = plan_sweep([I3, I1, I1, I2], ["10.0.0.3", "10.0.0.1", "10.0.0.1"], set())
    assert plan.stale_instances == (I1, I2, I3)
    assert plan.stale_config_ips == ("10.0.0.1", "10.0.0.3")
    assert isinstance(plan, SweepPlan) and not plan.empty


def test_plan_does_not_mutate_inputs():
    live = {"10.0.0.1"}
    insts = [I1, I2]
    plan_sweep(insts, {"10.0.0.2"}, live)
    assert live == {"10.0.0.1"} and insts == [I1, I2]
