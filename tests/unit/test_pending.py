"""PendingWrites: a pod write is not sent again before the index shows it, nor waited on forever."""

from __future__ import annotations

import pytest

from infer_operator.reconcile.pending import PendingWrites


@pytest.mark.parametrize(
    ("sent", "asked", "after", "pending"),
    [
        ({"labels", "finalizers"}, {"labels", "finalizers"}, 0.1, True),  # the same write, its event not here yet
        ({"labels", "finalizers"}, {"finalizers"}, 0.1, True),  # part of what was sent
        ({"Registered"}, {"Registered", "Ready"}, 0.1, False),  # more than was sent: the new part goes
        ({"labels"}, {"labels"}, 31.0, False),  # expired: the index may have skipped it
    ],
)
def test_pending(sent, asked, after, pending):
    writes = PendingWrites(expiry=30.0)
    writes.record("uid-1", sent, now=100.0)
    assert writes.pending("uid-1", asked, now=100.0 + after) is pending
    assert not writes.pending("uid-2", asked, now=100.0 + after)


def test_a_write_the_index_shows_done_is_forgotten_and_expiry_is_counted_from_the_oldest():
    writes = PendingWrites(expiry=30.0)
    writes.record("a", {"labels"}, now=10.0)
    writes.record("b", {"labels"}, now=20.0)
    assert writes.next_expiry(now=25.0) == 15.0
    writes.keep({"b": {"labels"}})  # "a" needs nothing any more
    assert writes.next_expiry(now=25.0) == 25.0
    writes.keep({})
    assert writes.next_expiry(now=25.0) is None


def test_an_expired_write_is_not_waited_for_again():
    writes = PendingWrites(expiry=30.0)
    writes.record("a", {"labels"}, now=0.0)
    writes.record("b", {"labels"}, now=20.0)
    assert writes.expired("a", now=31.0) and not writes.expired("b", now=31.0)
    assert writes.next_expiry(now=31.0) == 19.0  # b's, not a's 0 (which would wake the loop at once, forever)
    assert writes.next_expiry(now=51.0) is None
