"""What the parts of a reconcile pass share: the notes one pass takes along the way (for its status
and its next wake-up), the error that means "the API is away, try again soon", and the way they
post events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from infer_operator.notes import Condition
from infer_operator.podview import PodView
from infer_operator.reconcile.status import Problem

# (event type, reason, message) -> posts a Kubernetes Event on the InferenceService.
EmitEvent = Callable[[str, str, str], None]

RETRY_SOON_SECONDS = 5.0


class TransientError(Exception):
    """The API could not be reached or answered 5xx: try again soon, change no status."""


@dataclass
class PassNotes:
    """What one pass found along the way, for its status and its next wake-up."""

    problem: Problem | None = None
    pending_flips: int = 0
    outdated: int = 0
    registered: int | None = None
    registry_condition: Condition | None = None
    to_mark: tuple[PodView, ...] = ()  # pods registered for the first time (the registration mark)
    registered_uids: frozenset[str] = frozenset()  # pods listed in the registry by this pass
    retry: float | None = None  # seconds until the next pass at the latest

    def retry_sooner(self, seconds: float | None) -> None:
        if seconds is not None and (self.retry is None or seconds < self.retry):
            self.retry = seconds
