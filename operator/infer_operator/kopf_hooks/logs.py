"""Following what kopf says only in its log lines.

- **Peering state.** kopf pauses a replica for a peer of higher priority and resumes it later, and
  says so only in its peering logger (`kopf._core.engines.peering`): "Pausing operations ...",
  "Pausing all operators ...", "Resuming operations ...". A filter there sets a callback's flag
  (the operator's `infer_operator_active` gauge). It never drops a record.
- **The success line of event handlers.** kopf logs "Handler '<id>' succeeded." at INFO
  (`kopf._core.actions.execution`) for every watch event an on.event handler took: several per pod
  start or deletion, thousands a minute in a large fleet. The operator's handlers only record what
  they saw and wake a loop, which logs what it does. Failures are still logged, and everything
  is with --verbose.

Each follower checks first that kopf's source still says the lines it follows.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable

from infer_operator.kopf_hooks.base import MARK, Unavailable

PEERING_LOGGER = "kopf._core.engines.peering"
PAUSED = ("Pausing operations", "Pausing all operators")
RESUMED = "Resuming operations"
HANDLER_LOGGER = "kopf.objects"
_EXECUTION_MODULE = "kopf._core.actions.execution"


def _source_says(module: str, *phrases: str) -> None:
    try:
        source = inspect.getsource(importlib.import_module(module))
    except (ImportError, OSError, TypeError) as exc:
        raise Unavailable(f"{module}: {exc}") from None
    missing = [phrase for phrase in phrases if phrase not in source]
    if missing:
        raise Unavailable(f"{module} no longer logs {', '.join(repr(p) for p in missing)}")


class PeeringState(logging.Filter):
    """Calls `active(False)` when kopf pauses this replica, `active(True)` when it resumes."""

    def __init__(self, active: Callable[[bool], None]):
        super().__init__()
        self.active = active

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(PAUSED):
            self.active(False)
        elif message.startswith(RESUMED):
            self.active(True)
        return True


def follow_peering(active: Callable[[bool], None]) -> None:
    """Let `active` follow kopf's pauses (its peering messages are INFO: the logger keeps them).
    Idempotent. Raises Unavailable when kopf's peering no longer logs them."""
    _source_says(PEERING_LOGGER, *PAUSED, RESUMED)
    logger = logging.getLogger(PEERING_LOGGER)
    logger.setLevel(logging.INFO)
    for existing in logger.filters:
        if getattr(existing, MARK, False):
            logger.removeFilter(existing)
    state = PeeringState(active)
    setattr(state, MARK, True)
    logger.addFilter(state)


class QuietEventHandlers(logging.Filter):
    """Drops kopf's "Handler '...' succeeded." line at INFO, and nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not isinstance(record.msg, str):
            return True
        return not (record.msg.startswith("Handler '") and record.msg.endswith("' succeeded."))


def quiet_event_handlers() -> None:
    """Drop kopf's success line of handlers from its object logger. Idempotent. Raises Unavailable
    when kopf no longer logs it as followed here."""
    _source_says(_EXECUTION_MODULE, 'f"Handler {self.id!r}"', ' succeeded.")')
    logger = logging.getLogger(HANDLER_LOGGER)
    if not any(isinstance(existing, QuietEventHandlers) for existing in logger.filters):
        logger.addFilter(QuietEventHandlers())
