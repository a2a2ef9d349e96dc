"""The cycle loop of `syncctl watch`: when to run the one reconcile engine.

Every cycle is `syncctl.engine.reconcile.reconcile(...)`, the call `syncctl
reconcile` makes: the same lock on the state dir, journal, recovery,
observe, plan, apply and cursors. This module only decides *when*:

- an incremental cycle `interval` seconds after the last one ended, or at
  once when a webhook woke it (`Wakeup`; never sooner than `min_gap` after the
  last cycle started, so a burst makes one cycle, plus one after it for
  what arrived meanwhile);
- the daily `--full` audit at `audit_at`, local time. One missed while
  watch was down (a reboot over the slot) is caught up once at start: the
  journal tells when the last full run finished. An audit counts as done
  once a full cycle returns, whatever its outcome (a service that could
  not be read is read again by the next day's audit; the incremental cycles
  meanwhile retry what is pending);
- one cycle at a time, in this thread; another syncctl run (a timer left
  installed) holding the lock makes the cycle skip, and it tries again
  after `busy_retry` seconds: never two runs applying at once;
- a cycle that fails (a vendor outage, a service that cannot be read, a
  state dir problem, even a bug) is logged and retried after a backoff
  (`backoff_initial`, doubling, capped at `interval`); the loop never dies
  of it, and wake-ups do not shorten the backoff.

Stopping: `request_stop` sets the run's `StopRequest` (the applier finishes
the calls in flight, records them, starts no new one) and ends the loop
after the cycle in progress.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

from syncctl import logs
from syncctl.alert import RunPings, pinger_for
from syncctl.clients.services import Services
from syncctl.config import Config
from syncctl.engine.apply import Outcome
from syncctl.engine.reconcile import RunResult, reconcile
from syncctl.engine.stop import StopRequest
from syncctl.errors import LockBusy, StateError, SyncctlError
from syncctl.net.http import CallStats
from syncctl.service.metrics import Figures, mode_of, pending_counts
from syncctl.service.wakeup import Wakeup
from syncctl.state.journal import Journal
from syncctl.state.location import StateLocation

#: A cycle running longer than this makes /healthz answer 503: the timeouts of
#: the timer units (`syncctl schedule systemd`: 1 h a run, 3 h the audit).
RUN_ALLOWANCE = {"incremental": 3600.0, "full": 3 * 3600.0}
#: How far back the journal is searched for the last full run, at start.
_RUNS_SCANNED = 20000

Runner = Callable[..., RunResult]


@dataclass(frozen=True)
class LoopOptions:
    #: Seconds between cycles when nothing wakes the loop earlier.
    interval: float = 30.0
    #: Local time of the daily full audit; None = none.
    audit_at: dtime | None = None
    #: A wake-up starts a cycle no sooner than this after the last one started.
    min_gap: float = 1.0
    #: The first wait after a failed cycle; it doubles, capped at `interval`.
    backoff_initial: float = 1.0
    #: The wait before trying again while another run holds the lock.
    busy_retry: float = 2.0
    #: /healthz: the last cycle must have ended within 3 x interval + this.
    health_slack: float = 10.0

    @property
    def stale_after(self) -> float:
        return 3 * self.interval + self.health_slack


def parse_audit_at(text: str) -> dtime | None:
    """ "HH:MM" -> a time; "" -> None (validated by the config already)."""
    if not text:
        return None
    hours, minutes = text.split(":")
    return dtime(int(hours), int(minutes))


class AuditClock:
    """When the daily full audit is due: the latest `at` slot not covered by a full run."""

    def __init__(
        self,
        at: dtime | None,
        last_audit: datetime | None,
        *,
        now: Callable[[], datetime] = lambda: datetime.now().astimezone(),
    ) -> None:
        self.at = at
        self.last_audit = last_audit
        self._now = now

    def _slot_on(self, day: datetime) -> datetime:
        assert self.at is not None
        naive = datetime.combine(day.date(), self.at)
        return naive.astimezone()  # local time, its UTC offset of that day

    def last_slot(self, moment: datetime | None = None) -> datetime | None:
        """The latest audit time at or before `moment` (now)."""
        if self.at is None:
            return None
        moment = moment or self._now()
        slot = self._slot_on(moment)
        if slot > moment:
            slot = self._slot_on(moment - timedelta(days=1))
        return slot

    def due(self) -> bool:
        slot = self.last_slot()
        return slot is not None and (self.last_audit is None or self.last_audit < slot)

    def seconds_until_next(self) -> float | None:
        if self.at is None:
            return None
        now = self._now()
        slot = self._slot_on(now)
        if slot <= now:
            slot = self._slot_on(now + timedelta(days=1))
        return max(0.0, (slot - now).total_seconds())

    def done(self, when: datetime | None = None) -> None:
        self.last_audit = when or self._now()


def last_audit(state_dir: Path | StateLocation, since: datetime | None) -> datetime | None:
    """When the last full run that ran through started (journal, read-only), if since `since`.

    A full run counts unless it was interrupted; the first run of a state dir
    is a full read too. None when the journal shows none since `since`
    (or cannot be read: then the audit runs, which is the safe side).
    """
    try:
        with Journal.open(state_dir, readonly=True) as journal:
            runs = journal.runs(limit=_RUNS_SCANNED)
    except StateError:
        return None
    for run in runs:
        if since is not None and run.started_at < since:
            return None
        mode = str(run.summary.get("mode") or run.mode)
        if run.finished_at is not None and run.outcome != "interrupted" and mode_of(mode) == "full":
            return run.started_at
    return None


class CycleLoop:
    """Runs cycles until stopped; meant as a thread's target (`run`)."""

    def __init__(
        self,
        config: Config,
        options: LoopOptions,
        *,
        wakeup: Wakeup,
        figures: Figures,
        audit: AuditClock,
        stop: StopRequest | None = None,
        run: Runner = reconcile,
        on_outcome: Callable[[Outcome], None] | None = None,
        on_cycle: Callable[[RunResult, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.options = options
        self.wakeup = wakeup
        self.figures = figures
        self.audit = audit
        self.stop = stop or StopRequest()
        self._run = run
        self._on_outcome = on_outcome
        self._on_cycle = on_cycle
        self._clock = clock
        #: `[alert] ping_url`: each cycle pings /start, then success or /fail.
        self._pinger = pinger_for(config)
        self._stopping = threading.Event()
        # State read by /healthz (other threads): plain attributes, written here only.
        self.started_at = clock()
        self.alive = False
        self.crashed = ""
        self.cycles = 0
        self.running_since: float | None = None
        self.running_mode = ""
        self.last_finished: float | None = None
        self.last_outcome = ""
        self.last_success: float | None = None
        self.busy_since: float | None = None
        self.busy_holder = ""
        self.failures = 0
        self._next_due = self.started_at
        self._last_start = float("-inf")
        self._audit_called = False

    # -- control ----------------------------------------------------------------------

    def request_stop(self, reason: str = "stop") -> None:
        """End after the cycle in progress, which finishes only the calls in flight."""
        self.stop.set(reason)
        self._stopping.set()
        self.wakeup.close()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self) -> None:
        self.alive = True
        try:
            self._loop()
        except BaseException as exc:  # never expected: say so on /healthz and in the log
            self.crashed = f"{type(exc).__name__}: {exc}"
            logs.event(logs.LOGGER, logging.ERROR, "the cycle loop stopped", error=self.crashed)
            raise
        finally:
            self.alive = False

    # -- scheduling -------------------------------------------------------------------

    def _loop(self) -> None:
        o = self.options
        while not self._stopping.is_set():
            now = self._clock()
            if self.audit.due() and not self._audit_called:
                # The slot came: the next cycle is the audit, now (then it
                # follows the schedule: a failed one backs off, a busy lock waits).
                self._audit_called = True
                self._next_due = min(self._next_due, now)
            due = self._next_due
            if self.wakeup.pending and not self.failures:
                due = min(due, self._last_start + min(o.min_gap, o.interval))
            if due > now:
                if self.wakeup.pending:
                    # Woken: only the gap (or a backoff) is left; a wake-up
                    # does not end this wait, a stop does.
                    self._stopping.wait(due - now)
                else:
                    until_audit = self.audit.seconds_until_next()
                    wait = due - now if until_audit is None else min(due - now, until_audit)
                    self.wakeup.wait(wait)
                continue
            self.wakeup.take()
            full = self.audit.due()
            self._last_start = self._clock()
            outcome = self._cycle(full)
            self._schedule(outcome)

    def _schedule(self, outcome: str) -> None:
        o = self.options
        now = self._clock()
        if outcome == "busy":
            self._next_due = now + min(o.interval, o.busy_retry)
        elif outcome in ("error", "failed"):
            self.failures += 1
            backoff = o.backoff_initial * 2 ** min(self.failures - 1, 30)
            self._next_due = now + min(o.interval, backoff)
        else:
            self.failures = 0
            self._next_due = now + o.interval

    # -- one cycle --------------------------------------------------------------------

    def _cycle(self, full: bool) -> str:
        mode = "full" if full else "incremental"
        stats = CallStats()
        started = self._clock()
        self.running_since, self.running_mode = started, mode
        self.figures.cycle_started()
        pings = RunPings(self._pinger)
        try:
            with Services.connect(self.config, stats=stats) as services:
                result = self._run(
                    self.config,
                    full=full,
                    stop=self.stop,
                    services=services,
                    on_outcome=self._on_outcome,
                    on_start=pings.start,
                )
        except LockBusy as exc:
            self.figures.record_stopped(mode, "busy")
            if self.busy_since is None:
                self.busy_since = started
                self.busy_holder = str(exc)
                logs.event(
                    logs.LOGGER,
                    logging.WARNING if exc.stuck else logging.INFO,
                    "cycle skipped: another syncctl run holds the lock; trying again every "
                    f"{min(self.options.interval, self.options.busy_retry):g} s",
                    holder=str(exc),
                )
            return "busy"
        except Exception as exc:
            pings.fail(f"error: {exc}")
            elapsed = self._clock() - started
            self.figures.record_stopped(
                mode, "error", duration=elapsed, calls=list(stats.services.items())
            )
            self._finished("error")
            self._log_error(exc, mode)
            return "error"
        finally:
            self.running_since = None
            self.figures.cycle_ended()
        self.busy_since = None
        pings.finish(result)
        outcome = self.figures.record_run(result, pending=pending_counts(self.config.state))
        if mode_of(result.mode) == "full" and not result.interrupted:
            self.audit.done()
            self._audit_called = False
        self._finished(outcome)
        if self._on_cycle is not None:
            self._on_cycle(result, outcome)
        return outcome

    def _finished(self, outcome: str) -> None:
        self.cycles += 1
        self.last_finished = self._clock()
        self.last_outcome = outcome
        if outcome in ("ok", "held"):
            self.last_success = self.last_finished

    def _log_error(self, exc: Exception, mode: str) -> None:
        retry = min(self.options.interval, self.options.backoff_initial * 2**self.failures)
        fields: dict[str, Any] = {"mode": mode, "retry_in_s": round(retry, 1)}
        if isinstance(exc, SyncctlError):
            logs.event(logs.LOGGER, logging.WARNING, f"cycle failed: {exc}", **fields)
        else:  # a bug: the traceback helps, and the loop still goes on
            logging.getLogger(logs.LOGGER).error(
                "cycle failed unexpectedly: %s: %s",
                type(exc).__name__,
                exc,
                exc_info=True,
                extra={"fields": fields},
            )

    # -- health -----------------------------------------------------------------------

    def health(self) -> tuple[bool, str]:
        """(healthy, one line why) for /healthz."""
        now = self._clock()
        if not self.alive:
            why = self.crashed or ("stopping" if self.stopping else "not started")
            return False, f"the cycle loop is not running ({why})"
        if self.running_since is not None:
            ran = now - self.running_since
            allowance = RUN_ALLOWANCE[self.running_mode or "incremental"]
            if ran > allowance:
                return False, (
                    f"a {self.running_mode} cycle has been running for {ran:.0f} s "
                    f"(more than {allowance:.0f} s)"
                )
            return True, f"a {self.running_mode} cycle is running ({ran:.1f} s)" + self._last()
        since = self.last_finished if self.last_finished is not None else self.started_at
        age = now - since
        bound = self.options.stale_after
        if age > bound:
            if self.busy_since is not None:
                return False, (
                    f"another syncctl run has held the lock for {now - self.busy_since:.0f} s "
                    f"({self.busy_holder})"
                )
            what = "no cycle has finished" if self.last_finished is not None else "no cycle ran"
            return False, f"{what} for {age:.0f} s (more than {bound:g} s)"
        if self.last_finished is None:
            return True, "starting: no cycle finished yet"
        return True, self._last().removeprefix("; ")

    def _last(self) -> str:
        if self.last_finished is None:
            return ""
        now = self._clock()
        text = f"; last cycle {self.last_outcome} {now - self.last_finished:.1f} s ago"
        if self.last_success is None:
            return text + ", no success yet"
        if self.last_success != self.last_finished:
            text += f", last success {now - self.last_success:.0f} s ago"
        return text
