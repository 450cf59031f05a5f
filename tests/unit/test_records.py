"""records.py: one record per service, made by its first user and forgotten (its registry client
closed) when the last lets go; a relist reaches every running loop of its namespace."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from infer_operator.reconcile.schedule import Schedule
from infer_operator.records import ServiceRecords
from infer_operator.registration.registrar import Registrar
from tests.support.fakes import FakeKube, StubRegistry


class Made:
    """The registrars the records made, and the registry client each built."""

    def __init__(self) -> None:
        self.kube = FakeKube()
        self.registrars: list[Registrar] = []
        self.registries: list[StubRegistry] = []

    def __call__(self, namespace: str, name: str) -> Registrar:
        def connect(*_: object) -> StubRegistry:
            self.registries.append(StubRegistry())
            return self.registries[-1]

        self.registrars.append(Registrar(self.kube, namespace, name, 1.0, connect=connect))
        return self.registrars[-1]


ETCD = {"type": "etcd", "etcd": {"endpoints": ["http://etcd:2379"]}}


async def _connect(record) -> None:
    from infer_operator.api.v1alpha1 import RegistrySpec

    await record.registrar.client(RegistrySpec.model_validate(ETCD))


async def test_a_record_lives_while_any_user_holds_it_and_its_client_closes_with_the_last():
    made = Made()
    records = ServiceRecords(made)
    loop = records.hold("team", "llm", "uid-1")
    await _connect(loop)
    release = records.hold("team", "llm")  # a pod's release knows only the name: the same record
    assert release is loop and len(records) == 1 and records.get("team", "llm") is loop
    await records.let_go(loop)
    assert records.get("team", "llm") is loop and not made.registries[0].closed
    await records.let_go(release)
    assert records.get("team", "llm") is None and len(records) == 0
    assert made.registries[0].closed


async def test_a_namesake_gets_a_record_of_its_own_while_the_old_one_finishes_its_cleanup():
    made = Made()
    records = ServiceRecords(made)
    old = records.hold("team", "llm", "uid-1")
    await _connect(old)
    new = records.hold("team", "llm", "uid-2")
    assert new is not old and records.get("team", "llm") is new and len(records) == 2
    await records.let_go(old)
    assert made.registries[0].closed and records.get("team", "llm") is new
    # A record made by name learns its uid from the first user that knows it.
    anonymous = records.hold("team", "other")
    assert records.hold("team", "other", "uid-3") is anonymous and anonymous.uid == "uid-3"


async def test_held_lets_go_even_when_the_work_fails():
    records = ServiceRecords(Made())
    with pytest.raises(RuntimeError):
        async with records.held("team", "llm", "uid-1"):
            raise RuntimeError("the release failed")
    assert len(records) == 0


async def test_many_services_created_and_deleted_leave_no_record_or_client_behind():
    made = Made()
    records = ServiceRecords(made)
    for i in range(200):
        loop = records.hold("team", f"svc-{i}", f"uid-{i}")
        await _connect(loop)
        release = records.hold("team", f"svc-{i}")
        await records.let_go(loop)
        await records.let_go(release)
    assert len(records) == 0 and len(made.registries) == 200
    assert all(registry.closed for registry in made.registries)


async def test_closing_closes_every_client_still_held():
    made = Made()
    records = ServiceRecords(made)
    for i in range(3):
        await _connect(records.hold("team", f"svc-{i}", f"uid-{i}"))
    await records.close()
    assert len(records) == 0 and all(registry.closed for registry in made.registries)


async def test_a_relist_reaches_every_running_loop_of_its_namespace():
    records = ServiceRecords(Made())
    a, b, idle = records.hold("team", "a"), records.hold("other", "b"), records.hold("team", "idle")
    for record in (a, b):
        schedule = Schedule()
        record.reconciler = SimpleNamespace(schedule=schedule, request_audit=schedule.request_audit)
        record.wakeup.take()
    records.relisted("team")
    assert a.reconciler.schedule.audit_due_at is not None and a.wakeup.event.is_set()
    assert b.reconciler.schedule.audit_due_at is None and not b.wakeup.event.is_set()
    assert idle.reconciler is None  # its loop audits on its first pass anyway
    records.relisted(None)
    assert b.reconciler.schedule.audit_due_at is not None
