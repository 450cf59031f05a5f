"""When a service's periodic work is due: the resync (re-apply owned objects), the audit (read the
pods from the API) and the sweep (stale registry entries).

The reconciler times this work itself instead of treating every wake-up as a resync: a wake-up
for one due task (a sweep, a warm-up ending) must not redo the others. Tasks due within
`DUE_SLACK_SECONDS` of a pass run in it, so the three share one wake-up instead of each waking the
loop a few milliseconds apart. Times are `time.monotonic()` seconds.

The resync and the audit are long backstops (an hour by default): drift of an owned object is
seen on its watch and repaired at once, and the index can only hold ghosts after the pods watch
listed everything again, which asks for an audit on the next pass (`request_audit`). The sweep reads the
registry only; the pods are read from the API when it has something to remove.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

DUE_SLACK_SECONDS = 1.0

# Defaults of --resync-seconds, --audit-seconds and --sweep-seconds.
RESYNC_SECONDS = 3600.0
AUDIT_SECONDS = 3600.0
SWEEP_SECONDS = 60.0


def _due(now: float, last: float, interval: float) -> bool:
    return now >= last + interval - DUE_SLACK_SECONDS


@dataclass(frozen=True)
class Due:
    resync: bool  # re-apply the owned objects
    sweep: bool  # sweep the registry


@dataclass
class Schedule:
    resync_seconds: float = RESYNC_SECONDS
    audit_seconds: float = AUDIT_SECONDS
    sweep_seconds: float = SWEEP_SECONDS
    # The first pass applies, audits and sweeps: after an operator restart, a pod may have left
    # the watch's selector while holding our finalizer, and only a read of the API finds it.
    last_resync: float = field(default_factory=time.monotonic)
    last_read: float = -math.inf  # audit: never read, due at once
    last_sweep: float = -math.inf  # never swept: due at once, however long ago the clock started
    audit_due_at: float | None = None  # an audit asked for (after a relist, a failed read): when it is due

    def take(self, now: float, *, sweeps: bool) -> Due:
        """What is due now (`sweeps`: the service uses a registry); marks it as done."""
        resync = _due(now, self.last_resync, self.resync_seconds)
        if resync:
            self.last_resync = now
        sweep = sweeps and _due(now, self.last_sweep, self.sweep_seconds)
        if sweep:
            self.last_sweep = now
        return Due(resync, sweep)

    def request_audit(self, now: float, delay: float = 0.0) -> None:
        """Audit `delay` seconds from `now` (or sooner if asked already): after the pods watch
        listed everything again (objects deleted in the gap may be ghosts in the index now), after
        a failed read, or when a pod that left the watch could not be taken back."""
        due = now + delay
        self.audit_due_at = due if self.audit_due_at is None else min(self.audit_due_at, due)

    def take_audit(self, now: float) -> bool:
        """Whether the pods are to be read from the API now to audit the index; marks it as done."""
        asked = self.audit_due_at is not None and now >= self.audit_due_at - DUE_SLACK_SECONDS
        if asked or _due(now, self.last_read, self.audit_seconds):
            self.last_read = now
            self.audit_due_at = None
            return True
        return False

    def next_in(self, now: float, *, sweeps: bool) -> float:
        """Seconds until the earliest periodic task is due."""
        due = [self.last_resync + self.resync_seconds, self.last_read + self.audit_seconds]
        if self.audit_due_at is not None:
            due.append(self.audit_due_at)
        if sweeps:
            due.append(self.last_sweep + self.sweep_seconds)
        return max(0.0, min(due) - now)
