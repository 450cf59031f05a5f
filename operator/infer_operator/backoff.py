"""Growing, jittered waits between retries of one piece of work (seconds).

Many services retrying a shared registry in lockstep would hammer it just as it recovers; each
retrier draws its own wait, between half and all of a doubling step, up to a cap.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    first: float = 0.5
    cap: float = 5.0
    factor: float = 2.0
    _step: float = field(default=0.0, init=False)
    _random: random.Random = field(default_factory=random.Random, init=False, repr=False)

    def next(self) -> float:
        """The wait before the next attempt: uniform in [step/2, step], step doubling to `cap`."""
        self._step = self.first if self._step == 0 else min(self._step * self.factor, self.cap)
        return self._random.uniform(self._step / 2, self._step)

    def reset(self) -> None:
        self._step = 0.0
