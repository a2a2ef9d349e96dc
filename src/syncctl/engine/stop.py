"""Stopping a run early without losing or repeating anything.

Ctrl-C or SIGTERM while a run reads changes nothing: the run simply ends.
Once it applies, stopping at once could cut a vendor call in half; so the
run finishes the calls in flight, records them, starts no new one, and ends
with its summary. What it did not start stays pending for the next run.
"""

from __future__ import annotations

import threading


class StopRequest:
    """Set by a signal handler; read by the applier before each action."""

    def __init__(self) -> None:
        self._event = threading.Event()
        #: The run is applying: a stop waits for the calls in flight.
        self.applying = False
        #: The run only reads the services (observe): it may be abandoned at
        #: once, nothing it did needs recording (`syncctl watch` does so).
        self.reading = False
        #: The signal's name, for the summary ("SIGINT", "SIGTERM").
        self.reason = ""

    def set(self, reason: str = "stop") -> None:
        self.reason = self.reason or reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


#: The outcome message of an action a stopped run did not start.
NOT_STARTED = "not started: the run was asked to stop; the next run does it"
