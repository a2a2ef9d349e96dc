"""What the state store holds, as Python values: the same on every backend.

The backends (`state.sqlite`, `state.postgres`) store these records in the
same columns with the same text forms (ISO-8601 UTC timestamps of fixed
width, JSON details with sorted keys), so a copy between them
(`syncctl state migrate`) is verified row by row with checksums, and text
order is time order on both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any


class EntryState(StrEnum):
    """Where one attempt at an action stands."""

    IN_FLIGHT = "in_flight"  # committed before the vendor call; outcome unknown until resolved
    MINTED = "minted"  # the object exists at the vendor but is not stored yet (invite)
    DONE = "done"
    FAILED = "failed"
    ABORTED = "aborted"  # resolved as "never happened" at the vendor
    SKIPPED = "skipped"

    @property
    def terminal(self) -> bool:
        """Terminal states close the attempt (finished_at is set)."""
        return self not in (EntryState.IN_FLIGHT, EntryState.MINTED)


UNRESOLVED = (EntryState.IN_FLIGHT.value, EntryState.MINTED.value)
#: How recovery's own words start in an entry's error (`history --failed` tells
#: them from the error an attempt met itself).
RECOVERED = "recovered: "


@dataclass(frozen=True)
class Entry:
    """One attempt at an action. Datetimes are aware UTC."""

    id: int
    run_id: int | None
    key: str
    kind: str
    subject: str
    state: EntryState
    ref: str | None
    detail: dict[str, Any]
    error: str | None
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class RunRecord:
    """One run of syncctl, for `history` and for spotting runs that never finished."""

    id: int
    started_at: datetime
    finished_at: datetime | None
    mode: str
    dry_run: bool
    outcome: str | None
    summary: dict[str, Any]


@dataclass(frozen=True)
class PendingItem:
    """An item that failed and is retried every run, whatever the cursor says."""

    kind: str
    ref: str
    reason: str
    attempts: int
    first_seen: datetime
    last_seen: datetime


class HoldKind(StrEnum):
    """What an operator's hold names (desired-state rule 18)."""

    EMAIL = "email"  # a person: everything for this address, in every service
    SESSION = "session"  # one purchase: a Stripe Checkout Session id (`cs_...`)


#: The entry kinds of the hold trail in `entries` (shown by `history`). Both
#: use the key `hold:<subject>`, so `current` holds a subject's latest event.
HOLD_EVENT = "hold"
RELEASE_EVENT = "release"
HOLD_KEY_PREFIX = "hold:"


def hold_subject(subject: str) -> str:
    """The form a hold is stored and looked up in.

    An email is compared case-insensitively everywhere: it is stripped and
    lower-cased exactly as `engine.model.normalize_email` does, so the
    planner's normalized addresses match. A Checkout Session id is kept as
    Stripe spells it (ids are case-sensitive). Only emails contain an `@`,
    which is how a lookup of mixed subjects tells them apart.
    """
    text = subject.strip()
    return text.lower() if "@" in text else text


@dataclass(frozen=True)
class Hold:
    """An operator's hold: nothing is done for `subject` until it is released.

    `at` and `by` tell who set the hold (or last gave it a new reason) and
    when; `since` is when the subject became held, kept when the reason
    changes. Datetimes are aware UTC.
    """

    subject: str
    kind: HoldKind
    reason: str
    by: str
    at: datetime
    since: datetime
    #: Only in what `Journal.hold` returns: the hold it found in place (None:
    #: the subject was not held before).
    previous: Hold | None = None

    @property
    def reason_changed(self) -> bool:
        """Setting the hold again gave it a new reason (an event was recorded)."""
        return self.previous is not None and self.previous.reason != self.reason


#: A lock holder older than this is taken for stuck: the nightly audit of 100k
#: contacts takes about 70 minutes (docs/benchmarks.md), systemd stops it at 3 h.
STUCK_AFTER = timedelta(hours=6)


@dataclass(frozen=True)
class Holder:
    """Who holds the run lock, as far as the store can tell.

    SQLite: the pid and start time the holder wrote into `state_dir/lock`.
    PostgreSQL: the holding session's `application_name` (`syncctl@host:pid`)
    and when it took the lock.
    """

    pid: int | None
    started: datetime | None
    #: The host of the holder, for a lock shared by several hosts (PostgreSQL).
    host: str | None = None

    def describe(self) -> str:
        if self.pid is None or self.started is None:
            return "pid unknown"  # the holder has not written its line yet
        where = f"syncctl@{self.host} " if self.host else ""
        return f"{where}pid {self.pid}, started {self.started.isoformat()}"

    @property
    def stuck(self) -> bool:
        return self.started is not None and datetime.now(UTC) - self.started > STUCK_AFTER


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """Fixed-width ISO-8601 UTC text, so text order is time order."""
    if moment.tzinfo is None:
        raise ValueError("journal datetimes must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse(text: str | None) -> datetime | None:
    """Stored text always carries +00:00, so this is already aware UTC."""
    return None if text is None else datetime.fromisoformat(text)


def dump(detail: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(detail or {}), sort_keys=True, separators=(",", ":"))


def load(text: str) -> dict[str, Any]:
    return {} if text == "{}" else json.loads(text)
