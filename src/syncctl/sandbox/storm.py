"""A seeded storm of vendor trouble: 5xx answers, cut connections, 429 bursts.

Single injected faults test one path each; a storm tests what operators
meet on a bad day, all at once and at random: any call may be answered 503
(before the service acted, or after it did, so the caller cannot know),
cut off, or caught in a burst of 429s. A seed makes the dice repeatable
(the order calls arrive in still varies with threads). The benchmark's
storm phase and tests/reconcile/test_storms.py use it.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

#: What a storm does to one request.
BEFORE_503 = "503 before"
AFTER_503 = "503 after"
RESET_AFTER = "reset after"
THROTTLED = "429"


@dataclass
class Storm:
    """Per request: `rate` of them go wrong; `burst_rate` of them start a 429 burst.

    A wrong answer is a 503 before the service acts, a 503 after it did,
    or (`reset_share` of them) a connection cut after it did. A burst
    answers the next `burst_length` requests 429 with `Retry-After`.
    """

    seed: int
    rate: float = 0.2
    reset_share: float = 0.25
    burst_rate: float = 0.01
    burst_length: int = 5
    retry_after: float = 0.2
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _burst_left: int = field(default=0, init=False)
    #: What was done, for the test's or benchmark's report.
    counts: dict[str, int] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def draw(self) -> str | None:
        """This request's fate (None: answered normally)."""
        with self._lock:
            fate = self._draw()
            if fate is not None:
                self.counts[fate] = self.counts.get(fate, 0) + 1
            return fate

    def _draw(self) -> str | None:
        if self._burst_left > 0:
            self._burst_left -= 1
            return THROTTLED
        if self._rng.random() < self.burst_rate:
            self._burst_left = self.burst_length - 1
            return THROTTLED
        if self._rng.random() >= self.rate:
            return None
        if self._rng.random() < self.reset_share:
            return RESET_AFTER
        return BEFORE_503 if self._rng.random() < 0.5 else AFTER_503
