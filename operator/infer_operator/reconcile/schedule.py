"""When a service's periodic work is due: the resync (re-apply owned objects), the audit (read the
pods from the API) and the sweep (stale registry entries).

The reconciler times this work itself instead of treating every wake-up as a resync: a wake-up
for one due task (a sweep, a warm-up ending) must not redo the others. Tasks due within
`DUE_SLACK_SECONDS` of a pass run in it, so the three share one wake-up instead of each waking the
loop a few milliseconds apart. Times are `time.monotonic()` seconds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

DUE_SLACK_SECONDS = 1.0


def _due(now: float, last: float, interval: float) -> bool:
    return now >= last + interval - DUE_SLACK_SECONDS


@dataclass(frozen=True)
class Due:
    resync: bool  # re-apply the owned objects
    sweep: bool   # sweep the registry (implies a fresh read of the pods)


@dataclass
class Schedule:
    resync_seconds: float = 60.0
    audit_seconds: float = 60.0
    sweep_seconds: float = 60.0
    # The first pass applies and sweeps anyway; the first audit waits, as kopf's index was just
    # listed and has no ghosts yet.
    last_resync: float = field(default_factory=time.monotonic)
    last_read: float = field(default_factory=time.monotonic)  # audit or sweep
    last_sweep: float = -math.inf  # never swept: due at once, however long ago the clock started

    def take(self, now: float, *, sweeps: bool) -> Due:
        """What is due now (`sweeps`: the service uses a registry); marks it as done."""
        resync = _due(now, self.last_resync, self.resync_seconds)
        if resync:
            self.last_resync = now
        sweep = sweeps and _due(now, self.last_sweep, self.sweep_seconds)
        if sweep:
            self.last_sweep = now
        return Due(resync, sweep)

    def take_read(self, now: float, *, force: bool) -> bool:
        """Whether the pods are to be read from the API now (forced for a sweep); marks it as done."""
        if force or _due(now, self.last_read, self.audit_seconds):
            self.last_read = now
            return True
        return False

    def next_in(self, now: float, *, sweeps: bool) -> float:
        """Seconds until the earliest periodic task is due."""
        due = [self.last_resync + self.resync_seconds, self.last_read + self.audit_seconds]
        if sweeps:
            due.append(self.last_sweep + self.sweep_seconds)
        return max(0.0, min(due) - now)
