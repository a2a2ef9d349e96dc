"""The coalescing trigger between the webhook endpoints and the cycle loop.

A delivery only says "look now": however many arrive, the loop learns one
thing, that something may have changed since its last look. A burst that
lands while the loop is idle starts one cycle; whatever arrives while that
cycle runs makes exactly one more after it, since that cycle may have read
the services before the change. Deliveries never queue up as work.
"""

from __future__ import annotations

import threading
import time
from collections import Counter


class Wakeup:
    """A flag that webhook handlers raise and the loop waits on (thread-safe)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending = False
        self._closed = False
        #: Wake-ups asked for, by source (for /metrics): not cycles.
        self.asked: Counter[str] = Counter()

    def set(self, source: str = "manual") -> None:
        """Ask for a cycle now (a webhook arrived); returns at once."""
        with self._cond:
            self._pending = True
            self.asked[source] += 1
            self._cond.notify_all()

    def close(self) -> None:
        """Release every waiter for good (the service stops)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> bool:
        with self._cond:
            return self._pending

    def wait(self, timeout: float | None) -> bool:
        """Block until a wake-up is pending, the trigger is closed, or `timeout` passes.

        Returns whether a wake-up is pending; it stays pending until `take`.
        """
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with self._cond:
            while not self._pending and not self._closed:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(left)
            return self._pending

    def take(self) -> bool:
        """Clear the flag as a cycle starts; whether a wake-up was pending."""
        with self._cond:
            pending, self._pending = self._pending, False
            return pending
