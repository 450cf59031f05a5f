"""What the operator's parts report back to whoever composes them: a condition they found, an
event worth posting. Small and shared, like labels.py: registration, reconcile and the releasers
speak it, and the status and the event recorder turn it into API objects."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Condition:
    """A condition's state as a part found it, before it is stamped with a generation and a time
    (reconcile/status.py): e.g. RegistrySynced True, InSync, "2 instance(s) registered in ..."."""

    ok: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Note:
    """An event worth posting about an object: `type` is "Normal" or "Warning"."""

    type: str
    reason: str
    message: str

    @property
    def warning(self) -> bool:
        return self.type == "Warning"
