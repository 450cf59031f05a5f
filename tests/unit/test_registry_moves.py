"""reconcile/registry_sync.registry_moves: the places moved away from, each with when it was left."""

from __future__ import annotations

import datetime

from infer_operator.api.v1alpha1 import RegistrySpec
from infer_operator.reconcile.registry_sync import dump_registry, registry_moves
from infer_operator.registration.releaser import parse_retired, retired_at


def etcd(endpoint: str, service: str = "llm") -> RegistrySpec:
    return RegistrySpec.model_validate({"type": "etcd", "service": service, "etcd": {"endpoints": [endpoint]}})


def test_a_move_remembers_the_old_place_with_when_it_was_left_and_keeps_that_time():
    old, new = etcd("http://old:2379"), etcd("http://new:2379")
    before = datetime.datetime.now(datetime.UTC)
    retired = registry_moves(old, [], new, "llm")
    assert [r.place("llm") for r in retired] == [old.place("llm")]
    left = retired_at(retired[0])
    assert left is not None and before <= left <= datetime.datetime.now(datetime.UTC)
    # as the status records it, and read back by the next pass: the time stays
    recorded = [parse_retired(dump_registry(r)) for r in retired]
    assert dump_registry(retired[0])["retiredAt"].endswith("Z")
    again = registry_moves(new, recorded, new, "llm")
    assert [retired_at(r) for r in again] == [left]
    # moving back forgets it (and retires the place moved back from)
    assert [r.place("llm") for r in registry_moves(new, again, old, "llm")] == [new.place("llm")]


def test_a_place_recorded_by_an_earlier_version_without_a_time_gets_one():
    old, new = etcd("http://old:2379"), etcd("http://new:2379")
    recorded = parse_retired(old.model_dump(by_alias=True, exclude_none=True))
    assert retired_at(recorded) is None
    assert retired_at(registry_moves(new, [recorded], new, "llm")[0]) is not None
