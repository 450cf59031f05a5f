"""The periodic work of a service's loop: long backstops, the audit at once after a relist."""

from __future__ import annotations

from infer_operator.reconcile.schedule import Schedule


def test_the_first_pass_audits_and_sweeps_then_both_wait_their_interval():
    schedule = Schedule(resync_seconds=3600, audit_seconds=3600, sweep_seconds=60, last_resync=0.0)
    due = schedule.take(0.0, sweeps=True)
    assert (due.resync, due.sweep) == (False, True)  # the first pass applies anyway (spec generation)
    assert schedule.take_audit(0.0)
    assert not schedule.take_audit(10.0)
    assert schedule.next_in(10.0, sweeps=True) == 50.0
    assert schedule.next_in(10.0, sweeps=False) == 3590.0


def test_an_audit_asked_for_comes_when_due_and_once():
    schedule = Schedule(resync_seconds=3600, audit_seconds=3600, sweep_seconds=60, last_resync=0.0)
    schedule.take_audit(0.0)
    schedule.request_audit(5.0)  # after a relist: now
    assert schedule.next_in(5.0, sweeps=False) == 0.0
    assert schedule.take_audit(5.0)
    assert not schedule.take_audit(6.0)
    assert schedule.next_in(6.0, sweeps=False) == 3594.0  # the resync, due an hour after 0
    schedule.request_audit(10.0, 5.0)  # after a failed read: soon, not at once
    assert schedule.next_in(10.0, sweeps=False) == 5.0
    assert not schedule.take_audit(10.0)
    schedule.request_audit(11.0)  # a relist meanwhile: the sooner wins
    assert schedule.take_audit(11.0)
