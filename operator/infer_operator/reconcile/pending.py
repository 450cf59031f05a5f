"""Pod writes sent and not yet seen: a pass does not send them again before the index shows them.

The pod index lags the API by at least one event, and passes come faster than events (a pod's
start brings several). A pod that changed meanwhile (its status, written by the kubelet) arrives
first as a version from before the write, then as the written one; sending the write again for
that in-between version cost a fifth of the cold start's pod patches. So a write is remembered
until the index shows it done (the pod no longer needs it), or for `expiry` seconds at most: kopf
may skip a version, and a write someone undid meanwhile must not be waited on forever.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

EXPIRY_SECONDS = 30.0


@dataclass
class PendingWrites:
    expiry: float = EXPIRY_SECONDS
    sent: dict[str, tuple[float, frozenset[str]]] = field(default_factory=dict)  # uid -> (when, what)

    def keep(self, needed: Mapping[str, Collection[str]]) -> None:
        """Forget every write the index shows done: `needed` is what each pod still needs (pods
        needing nothing, gone ones included, are absent)."""
        self.sent = {uid: entry for uid, entry in self.sent.items() if uid in needed}

    def pending(self, uid: str, what: Collection[str], now: float) -> bool:
        """Whether all of `what` was sent for the pod less than `expiry` seconds before `now`."""
        entry = self.sent.get(uid)
        return entry is not None and now - entry[0] < self.expiry and set(what) <= entry[1]

    def record(self, uid: str, what: Collection[str], now: float) -> None:
        self.sent[uid] = (now, frozenset(what))

    def expired(self, uid: str, now: float) -> bool:
        """Whether a write was sent for the pod and its memory ran out (the index never showed it)."""
        entry = self.sent.get(uid)
        return entry is not None and now - entry[0] >= self.expiry

    def next_expiry(self, now: float) -> float | None:
        """Seconds until the earliest remembered write may be sent again (None: none is waiting).
        Writes whose memory ran out already are not counted: a pass that could not send one again
        retries on its own schedule, not at once and again."""
        waiting = [at + self.expiry - now for at, _ in self.sent.values() if now - at < self.expiry]
        return min(waiting) if waiting else None
