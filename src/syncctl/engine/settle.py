"""Settling, in the same run, what vendor trouble left undone.

A write answered 503 or cut off has an unknown outcome; a call that kept
failing left its action (and what depends on it) undone. Waiting for the
next run costs a whole timer interval, so the run backs off, asks the
services what happened with the same checks the start-of-run recovery uses
(the code search, Mautic's email stats, the channel's invites, the lead
search) and runs again only what is verifiably not done: never blindly, and
a bounded number of times. Whatever is still open stays pending for the
next run, exactly as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from syncctl.engine.apply import UNRESOLVED, Applier, Outcome, Status
from syncctl.engine.recover import Recovery, Resolution
from syncctl.net import http

#: Seconds to wait before each round: long enough for a 503 burst to pass,
#: short beside a 15-minute timer. Three rounds at most.
DELAYS = (1.0, 3.0, 8.0)
WAITS_FOR = "waits for "


@dataclass
class Settled:
    """What the settling rounds did."""

    rounds: int = 0
    #: Rows whose answer was lost, as the services showed them (done/aborted/unresolved).
    resolutions: list[Resolution] = field(default_factory=list)
    #: Actions run again after the check.
    retried: int = 0


def unfinished(outcomes: list[Outcome]) -> list[Outcome]:
    """Outcomes worth another attempt this run, in plan order.

    A transient failure, an attempt whose outcome is unknown, and whatever
    waited on one of them; not a refusal, a conflict, or a service whose
    credentials were rejected.
    """
    again: set[str] = set()
    found: list[Outcome] = []
    for o in outcomes:
        if o.status is Status.DONE or o.refused:
            continue
        transient_failure = o.status is Status.FAILED and o.transient
        unknown = o.status is Status.SKIPPED and o.message == UNRESOLVED
        waiting = o.status is Status.SKIPPED and o.message.removeprefix(WAITS_FOR) in again
        if transient_failure or unknown or waiting:
            again.add(o.action.key)
            found.append(o)
    return found


def settle(
    applier: Applier,
    recovery: Callable[[], Recovery],
    outcomes: list[Outcome],
    *,
    stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[Outcome], Settled]:
    """Outcomes after up to len(DELAYS) rounds of check-then-retry."""
    report = Settled()
    current = {o.action.key: o for o in outcomes}
    for delay in DELAYS:
        todo = unfinished(list(current.values()))
        if not todo or stop():
            break
        report.rounds += 1
        sleep(0.0 if http.is_testing() else delay)
        if stop():
            break
        report.resolutions += recovery().run()
        report.retried += len(todo)
        done_before = {k: o for k, o in current.items() if o.status is Status.DONE}
        for outcome in applier.again([o.action for o in todo], done_before):
            current[outcome.action.key] = outcome
    return [current[o.action.key] for o in outcomes], report
