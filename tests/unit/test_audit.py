"""reconcile/audit.py, pure part: which indexed pods are ghosts (deleted while the watch was away)."""

from __future__ import annotations

import dataclasses

import pytest

from infer_operator.reconcile.audit import vanished_pods
from tests.support.pods import pod


@pytest.mark.parametrize(
    ("indexed", "listed", "vanished"),
    [
        ([0, 1, 2], [0, 1, 2], []),  # nothing missed
        ([0, 1, 2], [0, 2], [1]),  # a deletion the watch never delivered
        ([0, 1], [0, 1, 2], []),  # listed but not indexed yet: not a ghost
        ([0, 1, 2], [], [0, 1, 2]),  # the service's pods are all gone
        ([], [0], []),
    ],
)
def test_vanished_pods_are_the_indexed_ones_a_later_read_does_not_list(indexed, listed, vanished):
    found = vanished_pods([pod(i, "sync") for i in indexed], [pod(i, "sync") for i in listed])
    assert [p.ordinal for p in found] == vanished


def test_a_pod_recreated_under_the_same_name_does_not_hide_its_ghost():
    old = pod(1, "sync", deleting=True)
    new = dataclasses.replace(pod(1, "sync"), uid="uid-1-new")
    assert vanished_pods([old, new], [new]) == [old]
