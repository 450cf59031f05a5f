"""Bounded polling: wait for a condition, or check that one keeps holding (never a bare sleep to synchronise)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    interval: float = 0.2,
    message: str | Callable[[], str] = "condition not met",
    *,
    ignore: tuple[type[Exception], ...] = (),
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns a truthy value (which is
    returned) or ``timeout`` seconds pass; then raise AssertionError with ``message`` (a string or
    a callable producing one, e.g. to include the last observed state).

    Exceptions raised by the predicate propagate, except those of the types in ``ignore``: they
    count as "not yet" (a reader polling through transient API errors), and the last one is named
    in the timeout message. An AssertionError always propagates: a failed check is final.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = predicate()
        except AssertionError:
            raise
        except ignore as exc:
            result, last_error = None, exc
        if result:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            text = message() if callable(message) else message
            if last_error is not None:
                text = f"{text} (last error: {last_error})"
            raise AssertionError(f"timed out after {timeout:g}s: {text}")
        time.sleep(min(interval, remaining))


def assert_stays(
    predicate: Callable[[], object],
    duration: float,
    interval: float = 0.2,
    message: str | Callable[[], str] = "condition stopped holding",
) -> None:
    """Assert ``predicate`` stays truthy for an observation window of ``duration`` seconds (for
    checking that something does NOT happen, e.g. a pod held by a finalizer is not deleted)."""
    deadline = time.monotonic() + duration
    while True:
        if not predicate():
            text = message() if callable(message) else message
            raise AssertionError(text)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(interval, remaining))
