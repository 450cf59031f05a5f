"""kopf's start-up indexing, without waking every waiting worker once per object.

With kopf.index handlers (pods_by_service, services_by_place), kopf runs no other handler until
every object of its first listings is indexed. It keeps one toggle per listed object in a
ToggleSet (`kopf._cogs.aiokits.aiotoggles`, `operator_indexed`), and each object's worker, once
its own object is indexed, waits on the set until every toggle is gone. kopf's ToggleSet wakes
every waiter each time a toggle is added or dropped, although what they wait for (the set's
all-or-none state) changes only once: with N objects, about N x N wake-ups before the first
handler. At fleet size a restarted operator spends minutes at full CPU in these wake-ups, and pods
deleted meanwhile stay registered that long (figures in bench/README.md; `python -m bench
indexing` shows the curve).

Here adding or dropping a toggle wakes the waiters only when it changes the set's state. Nothing
else can change what they wait for: a ToggleSet's waiters ask for the set's state, a Toggle's
waiters for that toggle's own state, which only `Toggle.turn_to` changes (and it still wakes
them). So kopf behaves the same, minus the wake-ups that find nothing changed. The defect and a
proposed fix, written for kopf's tracker, are in docs/design.md ("kopf's start-up indexing");
when kopf fixes it, this hook goes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from infer_operator.kopf_hooks.base import MARK, Unavailable


def install() -> None:
    """Make kopf's ToggleSet wake its waiters only on a change of its state (all classes' instances,
    from now on). Idempotent. Raises Unavailable when this kopf's ToggleSet is not as relied on."""
    try:
        from kopf._cogs.aiokits import aiotoggles

        toggle_set, toggle = aiotoggles.ToggleSet, aiotoggles.Toggle
        # What the patch relies on: the set's condition and toggles, a toggle made on a condition.
        probe = toggle_set(all)
        probe._toggles.add(toggle(False, name="probe", condition=probe._condition))
    except (ImportError, AttributeError, TypeError) as exc:
        raise Unavailable(f"kopf._cogs.aiokits.aiotoggles.ToggleSet or Toggle: {exc}") from None
    if getattr(toggle_set, MARK, False):
        return

    async def make_toggle(self: Any, __val: bool = False, *, name: str | None = None) -> Any:
        made = toggle(__val, name=name, condition=self._condition)
        async with self._condition:
            was = self.is_on()
            self._toggles.add(made)
            if self.is_on() != was:
                self._condition.notify_all()
        return made

    async def drop_toggles(self: Any, toggles: Iterable[Any]) -> None:
        async with self._condition:
            was = self.is_on()
            self._toggles.difference_update(toggles)
            if self.is_on() != was:
                self._condition.notify_all()

    async def drop_toggle(self: Any, dropped: Any) -> None:
        await drop_toggles(self, (dropped,))

    toggle_set.make_toggle = make_toggle
    toggle_set.drop_toggles = drop_toggles
    toggle_set.drop_toggle = drop_toggle
    setattr(toggle_set, MARK, True)
