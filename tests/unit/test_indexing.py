"""handlers/indexing.py: kopf's ToggleSet, patched, wakes its waiters only when its state changes,
and still releases every waiter kopf's own would."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kopf._cogs.aiokits import aiotoggles

from infer_operator.handlers import indexing

BOUND = 5.0  # seconds any waiter may take to be released; they are released at once when right


@pytest.fixture(autouse=True)
def patched() -> None:
    assert indexing.install()


def count_wakeups(toggles: aiotoggles.ToggleSet) -> list[int]:
    calls = [0]
    notify_all = toggles._condition.notify_all

    def counting() -> None:
        calls[0] += 1
        notify_all()

    toggles._condition.notify_all = counting  # type: ignore[method-assign]
    return calls


async def released(waiter: asyncio.Task[Any]) -> bool:
    """Whether the waiter finishes once everything ready on the loop has run."""
    for _ in range(20):
        await asyncio.sleep(0)
    return waiter.done()


async def test_install_is_idempotent() -> None:
    assert indexing.install()
    assert getattr(aiotoggles.ToggleSet, indexing._MARK)


async def test_start_up_indexing_wakes_the_waiting_workers_once() -> None:
    # kopf's pattern (bench/indexing.py): one toggle per listed object, each worker waiting on the
    # set after dropping its own. kopf's own ToggleSet notified on every one of the 2 x 300 changes.
    indexed = aiotoggles.ToggleSet(all)
    listing = await indexed.make_toggle(name="listing")
    wakeups = count_wakeups(indexed)
    ran = 0

    async def worker(own: aiotoggles.Toggle) -> None:
        nonlocal ran
        await asyncio.sleep(0)
        await indexed.drop_toggle(own)
        await indexed.wait_for(True)
        ran += 1

    workers = []
    for i in range(300):
        workers.append(asyncio.create_task(worker(await indexed.make_toggle(name=str(i)))))
        await asyncio.sleep(0)
    for _ in range(5):
        await asyncio.sleep(0)
    assert ran == 0, "no worker may run before the listing is indexed"
    await indexed.drop_toggle(listing)
    await asyncio.wait_for(asyncio.gather(*workers), BOUND)
    assert ran == 300
    assert wakeups[0] == 1


@pytest.mark.parametrize("case", ["last-dropped", "one-of-many-dropped", "dropped-together", "added-to-on"])
async def test_set_waiters_are_released_exactly_when_the_state_changes(case: str) -> None:
    toggles = aiotoggles.ToggleSet(all)
    if case == "added-to-on":
        waiter = asyncio.create_task(toggles.wait_for(False))
        assert not await released(waiter)
        await toggles.make_toggle(False)
        assert await released(waiter)
        return
    a, b = await toggles.make_toggle(False), await toggles.make_toggle(False)
    waiter = asyncio.create_task(toggles.wait_for(True))
    assert not await released(waiter)
    if case == "last-dropped":
        await toggles.drop_toggle(a)
        assert not await released(waiter)
        await toggles.drop_toggle(b)
    elif case == "one-of-many-dropped":
        await b.turn_to(True)
        assert not await released(waiter)
        await toggles.drop_toggle(a)
    else:
        await toggles.drop_toggles([a, b])
    assert await released(waiter)


async def test_any_set_and_member_toggles_still_wake_on_turns() -> None:
    # kopf's pause set (ToggleSet(any)): its members are turned, not only added and dropped.
    paused = aiotoggles.ToggleSet(any)
    peering = await paused.make_toggle(False, name="peering")
    set_on = asyncio.create_task(paused.wait_for(True))
    member_on = asyncio.create_task(peering.wait_for(True))
    await paused.make_toggle(False, name="other")
    assert not await released(set_on) and not await released(member_on)
    await peering.turn_to(True)
    assert await released(set_on) and await released(member_on)
    set_off = asyncio.create_task(paused.wait_for(False))
    await paused.drop_toggle(peering)
    assert await released(set_off)
