"""The intent journal and run state: one SQLite file in `run.state_dir`.

Why it exists: a vendor write (mint an invite, create a code, send an email)
can be cut off by a crash or a timeout at any point. So an action's row is
committed `in_flight` *before* the call and marked `done` with the external
reference *after* it; at start-up, rows still `in_flight` (or `minted`) are
resolved by looking at the service, never by a blind retry.

The services stay the source of truth: this file is an intent log and a cache
(cursors, a retry queue, run history, small facts such as the Discord bot's
user id). Losing it costs a `reconcile --full`, never a duplicate.

Nothing here takes or stores a secret: keys, subjects, references and
details are identifiers and codes that are safe to show to an operator.
Callers must keep tokens, passwords and API keys out of `detail`.

Every write commits before its method returns (one connection, guarded by a
lock, shared by the reconciler's worker threads). Every SQLite failure becomes
a one-line `StateError` naming the file, the cause and the fix. Opened
read-only (dry runs, `status`, `history`) the journal refuses every write.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from syncctl.errors import StateError
from syncctl.state.location import check_state_dir

DB_NAME = "state.db"

#: Ordered schema migrations: MIGRATIONS[n] takes a database from version n to
#: n + 1. Append only; never edit a released script.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE runs (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at  TEXT NOT NULL,
        finished_at TEXT,
        mode        TEXT NOT NULL,
        dry_run     INTEGER NOT NULL,
        outcome     TEXT,
        summary     TEXT NOT NULL DEFAULT '{}'
    );
    -- One row per attempt at an action; history is never rewritten.
    CREATE TABLE entries (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id      INTEGER REFERENCES runs (id),
        key         TEXT NOT NULL,
        kind        TEXT NOT NULL,
        subject     TEXT NOT NULL,
        subject_ci  TEXT NOT NULL,
        state       TEXT NOT NULL,
        ref         TEXT,
        detail      TEXT NOT NULL DEFAULT '{}',
        error       TEXT,
        started_at  TEXT NOT NULL,
        finished_at TEXT
    );
    CREATE INDEX entries_key ON entries (key, id);
    CREATE INDEX entries_subject ON entries (subject_ci, id);
    CREATE INDEX entries_started ON entries (started_at);
    CREATE INDEX entries_failed ON entries (id) WHERE state = 'failed';
    -- The latest entry per key, kept in the same transaction as `entries`, so
    -- "what is the state of key K" never scans the history.
    CREATE TABLE current (
        key      TEXT PRIMARY KEY,
        entry_id INTEGER NOT NULL REFERENCES entries (id),
        state    TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX current_unresolved ON current (state) WHERE state IN ('in_flight', 'minted');
    CREATE INDEX current_state_key ON current (state, key);
    CREATE TABLE cursors (
        name       TEXT PRIMARY KEY,
        value      TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE pending (
        kind       TEXT NOT NULL,
        ref        TEXT NOT NULL,
        reason     TEXT NOT NULL,
        attempts   INTEGER NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen  TEXT NOT NULL,
        PRIMARY KEY (kind, ref)
    );
    """,
    # 1 -> 2: operator holds (desired-state rule 18). One row per held subject
    # (a lower-cased email or a Checkout Session id as Stripe spells it); the
    # trail of holding and releasing lives in `entries` (kinds hold/release).
    """
    CREATE TABLE holds (
        subject    TEXT PRIMARY KEY,
        kind       TEXT NOT NULL CHECK (kind IN ('email', 'session')),
        reason     TEXT NOT NULL DEFAULT '',
        held_by    TEXT NOT NULL DEFAULT '',
        held_at    TEXT NOT NULL,
        held_since TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)

#: `meta` rows the journal owns; `set_meta` refuses them.
_RESERVED_META = frozenset({"schema_version"})

#: Bound parameters per `IN (...)` query; below SQLite's historic limit of 999.
_CHUNK = 900

_BUSY_TIMEOUT_SECONDS = 10.0

_FIX_PERMISSIONS = "fix the permissions of the state_dir, or point [run] state_dir elsewhere"
_FIX_SPACE = "free disk space where the state_dir lives, or point [run] state_dir elsewhere"
_FIX_CORRUPT = (
    "move the file aside and run `syncctl reconcile --full`: "
    "the services hold the truth and the journal is rebuilt from them"
)
_FIX_BUSY = "another process holds the database; wait for it, or check for a stuck syncctl"
_FIX_OTHER = "check the state_dir, or point [run] state_dir elsewhere"


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


_UNRESOLVED = (EntryState.IN_FLIGHT.value, EntryState.MINTED.value)
#: Stored state text -> EntryState, without the enum's slower call per row.
_STATES = {state.value: state for state in EntryState}
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


class PurchaseFacts(NamedTuple):
    """One purchase as the journal knows it, in one joined row (`syncctl export`).

    The newest entries of its coupon and its refund fact, the coupon email
    sent with its code, and the buyer's contact. A state is None where no
    attempt exists; times are UTC ISO-8601 text to the second.
    """

    session_id: str
    #: The subject its facts were written under: the buyer's email, lower-cased.
    email: str
    coupon_state: EntryState | None
    #: The code Shopware answered (the ref), else the one it was to get.
    code: str | None
    #: Found in Shopware (a lost state dir, the old workflows), not created by syncctl.
    coupon_observed: bool
    #: What a run read from Stripe (`refund:<session>`, done): refunded, disputed, cleared.
    refund: str | None
    #: The buyer's contact: the one the coupon email was sent to (`mail:<email id>:
    #: <contact>:<code>`, done, under the buyer's email), else the one syncctl created
    #: for the buyer (`contact:<email>`), else the one it gave the code (`vip:<contact>:
    #: <code>`).
    contact_id: int | None
    #: When that coupon email went out (the time Mautic logged, else when the send
    #: finished); None until one is sent.
    mail_sent_at: str | None


class ContactFacts(NamedTuple):
    """One invite of one contact, with its email and the person's lead (`syncctl export`).

    With `tier` None: a lead that no invite row shows (a contact syncctl made
    a lead for without an invite, e.g. on the Do-Not-Contact list). Times
    are UTC ISO-8601 text to the second.
    """

    contact_id: int | None
    tier: str | None
    #: The subject the invite (or lead) was written under: the email, lower-cased.
    email: str
    #: The invite attempt's entry id (the newest of a contact's tiers wins a tie).
    invite_id: int | None
    invite_state: EntryState | None
    invite_code: str | None
    #: When the invite was issued (its attempt finished).
    invite_at: str | None
    #: syncctl revoked this invite (`revoke:<code>`, done).
    revoked: bool
    #: The invite's email (`mail:<tier's email id>:<contact>:<code>`): its ref (a
    #: deliberately unsent one is marked so) and, once done, when it went out.
    mail_ref: str | None
    mail_sent_at: str | None
    #: The lead of the email (`lead:<email>`).
    lead_state: EntryState | None
    lead_ref: str | None
    lead_observed: bool
    lead_contact_id: int | None


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


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    """Fixed-width ISO-8601 UTC text, so text order is time order."""
    if moment.tzinfo is None:
        raise ValueError("journal datetimes must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _parse(text: str | None) -> datetime | None:
    """Stored text always carries +00:00, so this is already aware UTC."""
    return None if text is None else datetime.fromisoformat(text)


def _dump(detail: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(detail or {}), sort_keys=True, separators=(",", ":"))


def _load(text: str) -> dict[str, Any]:
    return {} if text == "{}" else json.loads(text)


def _statements(script: str) -> Iterator[str]:
    """Split a migration script into statements (executescript would COMMIT first)."""
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\n;"):
                yield buffer.strip()
            buffer = ""
    if buffer.strip(" \t\n;"):
        yield buffer.strip()


def _prefix_upper(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix`.

    Lets prefix queries use the key index as a range (`key >= p AND key < upper`).
    None when no such bound is cheap to compute; callers then filter in Python.
    """
    if not prefix:
        return None
    last = ord(prefix[-1])
    if last >= 0x10FFFF or 0xD7FF <= last <= 0xDFFF:
        return None
    return prefix[:-1] + chr(last + 1)


def _state_error(path: Path, action: str, exc: BaseException) -> StateError:
    """One line: what failed on which file, the cause, and the fix."""
    if isinstance(exc, OSError) and exc.strerror:
        cause = exc.strerror  # str(exc) would repeat the path
    else:
        cause = str(exc).strip() or type(exc).__name__
    lowered = cause.lower()
    if isinstance(exc, PermissionError) or any(
        marker in lowered
        for marker in ("readonly", "read-only", "permission", "unable to open", "access")
    ):
        fix = _FIX_PERMISSIONS
    elif "full" in lowered or "no space" in lowered or "quota" in lowered:
        fix = _FIX_SPACE
    elif "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        fix = _FIX_CORRUPT
    elif "locked" in lowered or "busy" in lowered:
        fix = _FIX_BUSY
    else:
        fix = _FIX_OTHER
    return StateError(f"cannot {action} {path}: {cause}", hint=fix)


class Journal:
    """The state database. Open with `Journal.open(state_dir)`; use as a context manager.

    Thread-safe: one connection, serialised by a re-entrant lock. Every write
    commits before returning, so a row written before a vendor call survives a
    crash during that call.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        *,
        readonly: bool,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        """Use `Journal.open`; this wraps an already migrated connection."""
        self._conn: sqlite3.Connection | None = conn
        self._path = path
        self._readonly = readonly
        self._clock = clock
        self._lock = threading.RLock()
        self._batch_depth = 0

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        state_dir: Path,
        *,
        readonly: bool = False,
        clock: Callable[[], datetime] = _utcnow,
    ) -> Journal:
        """Open (creating and migrating) `state_dir/state.db`.

        Opened for writing, a write probe runs at once, so a read-only or full
        disk fails here, before any vendor call. `readonly=True` creates and
        migrates nothing (a dry run must not change state): a missing database
        reads as empty, and one from an older syncctl is migrated in memory.
        """
        state_dir = Path(state_dir)
        check_state_dir(state_dir, write=not readonly)
        path = state_dir / DB_NAME
        conn = cls._open_readonly(path) if readonly else cls._open_writable(state_dir, path)
        return cls(conn, path, readonly=readonly, clock=clock)

    @staticmethod
    def _connect(target: str, *, uri: bool = False) -> sqlite3.Connection:
        return sqlite3.connect(
            target,
            uri=uri,
            isolation_level=None,  # explicit BEGIN/COMMIT: every write commits at once
            check_same_thread=False,  # shared by worker threads, serialised by self._lock
            timeout=_BUSY_TIMEOUT_SECONDS,  # busy_timeout: wait out a concurrent reader
        )

    @classmethod
    def _open_writable(cls, state_dir: Path, path: Path) -> sqlite3.Connection:
        try:
            if not state_dir.exists():
                state_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
                os.chmod(state_dir, 0o700)
            if not path.exists():
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
                os.chmod(path, 0o600)
        except OSError as exc:
            raise _state_error(path, "create", exc) from exc
        conn: sqlite3.Connection | None = None
        try:
            conn = cls._connect(str(path))
            version = _read_version(conn, path)  # before WAL: a newer file stays untouched
            _refuse_newer(version, path)
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: the in_flight row must survive a power cut, not only a crash.
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            _migrate(conn, path)
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.Error):
                raise _state_error(path, "write", exc) from exc
            raise
        return conn

    @classmethod
    def _open_readonly(cls, path: Path) -> sqlite3.Connection:
        if not path.exists():
            empty = cls._connect(":memory:")
            _migrate(empty, path)
            return empty
        conn: sqlite3.Connection | None = None
        try:
            conn = cls._connect(f"file:{quote(str(path))}?mode=ro", uri=True)
            version = _read_version(conn, path)
            _refuse_newer(version, path)
            if version < SCHEMA_VERSION:
                # An older file: read a migrated copy, leave the file as it is.
                memory = cls._connect(":memory:")
                conn.backup(memory)
                conn.close()
                conn = memory
                _migrate(conn, path)
            conn.execute("PRAGMA query_only = ON")
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.Error):
                raise _state_error(path, "read", exc) from exc
            raise
        return conn

    def close(self) -> None:
        """Close the database; further calls raise StateError."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The database file (it may not exist for a read-only, empty view)."""
        return self._path

    @property
    def readonly(self) -> bool:
        """True when every write is refused (dry runs, status)."""
        return self._readonly

    @property
    def schema_version(self) -> int:
        """The schema version of the open database (always the current one)."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        return int(row[0])

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StateError(f"the journal {self._path} is closed")
        return self._conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._live()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise _state_error(self._path, "read", exc) from exc

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One committed transaction (or part of the enclosing `batch`)."""
        if self._readonly:
            raise StateError(
                f"the journal {self._path} is open read-only (dry run or status); "
                f"refusing to {what}"
            )
        with self._lock:
            conn = self._live()
            if self._batch_depth:
                try:
                    yield conn
                except sqlite3.Error as exc:
                    raise _state_error(self._path, "write", exc) from exc
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise _state_error(self._path, "write", exc) from exc
                raise

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group many writes into one transaction (one fsync), e.g. bulk records.

        Not for intents before vendor calls: those must commit one by one.
        Other threads wait until the block ends; an exception rolls it all back.
        """
        with self._write("write a batch"):
            self._batch_depth += 1
            try:
                yield
            finally:
                self._batch_depth -= 1

    # -- runs ------------------------------------------------------------------------------

    def begin_run(self, mode: str, *, dry_run: bool) -> int:
        """Record a run's start; a run without finish_run crashed or was killed."""
        with self._write("begin a run") as conn:
            cur = conn.execute(
                "INSERT INTO runs (started_at, mode, dry_run) VALUES (?, ?, ?)",
                (_iso(self._clock()), mode, int(dry_run)),
            )
        return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, outcome: str, summary: Mapping[str, Any]) -> None:
        """Record how a run ended, with its counts, for `history`."""
        with self._write("finish a run") as conn:
            cur = conn.execute(
                "UPDATE runs SET finished_at = ?, outcome = ?, summary = ? WHERE id = ?",
                (_iso(self._clock()), outcome, _dump(summary), run_id),
            )
            if cur.rowcount == 0:
                raise ValueError(f"no run {run_id} in {self._path}")

    def runs(self, limit: int = 20) -> list[RunRecord]:
        """The latest runs, newest first."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, started_at, finished_at, mode, dry_run, outcome, summary"
                " FROM runs ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            RunRecord(
                id=row[0],
                started_at=_parse(row[1]),  # type: ignore[arg-type]
                finished_at=_parse(row[2]),
                mode=row[3],
                dry_run=bool(row[4]),
                outcome=row[5],
                summary=_load(row[6]),
            )
            for row in rows
        ]

    # -- intents ---------------------------------------------------------------------------

    def start(
        self,
        key: str,
        kind: str,
        subject: str,
        *,
        run_id: int | None,
        detail: Mapping[str, Any] | None = None,
    ) -> int:
        """Record an attempt as in_flight; committed before returning, so call it
        right before the vendor write.

        Refuses a key whose latest entry is still in_flight or minted: that one
        must be resolved against the service (and marked) first; a second
        attempt on top of it would be the blind retry the journal exists to prevent.
        """
        with self._write("record an intent") as conn:
            unresolved = conn.execute(
                "SELECT c.entry_id, c.state, e.run_id FROM current c"
                " JOIN entries e ON e.id = c.entry_id"
                " WHERE c.key = ? AND c.state IN (?, ?)",
                (key, *_UNRESOLVED),
            ).fetchone()
            if unresolved is not None:
                entry_id, state, run_id_then = unresolved
                raise StateError(
                    f"{key} already has an unresolved {state} entry #{entry_id} "
                    f"(run {run_id_then}) in {self._path}",
                    hint="resolve it against the service and mark it before starting again",
                )
            cur = conn.execute(
                "INSERT INTO entries (run_id, key, kind, subject, subject_ci, state, detail,"
                " started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    key,
                    kind,
                    subject,
                    subject.casefold(),
                    EntryState.IN_FLIGHT.value,
                    _dump(detail),
                    _iso(self._clock()),
                ),
            )
            entry_id = int(cur.lastrowid or 0)
            conn.execute(
                "INSERT INTO current (key, entry_id, state) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET entry_id = excluded.entry_id,"
                " state = excluded.state",
                (key, entry_id, EntryState.IN_FLIGHT.value),
            )
        return entry_id

    def mark(
        self,
        entry_id: int,
        state: EntryState,
        *,
        ref: str | None = None,
        detail: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        """Move an attempt on: minted / done (with the external ref) / failed / ...

        `detail` is merged into the stored detail; `ref` and `error` are kept
        when not given. Terminal states set finished_at.
        """
        state = EntryState(state)
        with self._write("update an intent") as conn:
            row = conn.execute(
                "SELECT key, detail FROM entries WHERE id = ?", (entry_id,)
            ).fetchone()
            if row is None:
                raise ValueError(f"no journal entry #{entry_id} in {self._path}")
            key, stored = row
            merged = json.loads(stored)
            merged.update(detail or {})
            conn.execute(
                "UPDATE entries SET state = ?, ref = COALESCE(?, ref), detail = ?,"
                " error = COALESCE(?, error), finished_at = ? WHERE id = ?",
                (
                    state.value,
                    ref,
                    _dump(merged),
                    error,
                    _iso(self._clock()) if state.terminal else None,
                    entry_id,
                ),
            )
            # Only if this attempt is still the key's latest one (by key: the primary key).
            conn.execute(
                "UPDATE current SET state = ? WHERE key = ? AND entry_id = ?",
                (state.value, key, entry_id),
            )

    _ENTRY_COLUMNS = (
        "e.id, e.run_id, e.key, e.kind, e.subject, e.state, e.ref, e.detail, e.error,"
        " e.started_at, e.finished_at"
    )

    @staticmethod
    def _entry(row: tuple[Any, ...]) -> Entry:
        return Entry(
            id=row[0],
            run_id=row[1],
            key=row[2],
            kind=row[3],
            subject=row[4],
            state=EntryState(row[5]),
            ref=row[6],
            detail=_load(row[7]),
            error=row[8],
            started_at=_parse(row[9]),  # type: ignore[arg-type]
            finished_at=_parse(row[10]),
        )

    def latest(self, key: str) -> Entry | None:
        """The current state of one key (its newest entry), or None."""
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {self._ENTRY_COLUMNS} FROM current c JOIN entries e ON e.id = c.entry_id"
                " WHERE c.key = ?",
                (key,),
            ).fetchone()
        return None if row is None else self._entry(row)

    def latest_many(self, keys: Iterable[str]) -> dict[str, Entry]:
        """The newest entry of each known key among `keys` (chunked IN queries)."""
        found: dict[str, Entry] = {}
        with self._read() as conn:
            for chunk, marks in _in_chunks(keys):
                for row in conn.execute(
                    f"SELECT {self._ENTRY_COLUMNS} FROM current c"
                    f" JOIN entries e ON e.id = c.entry_id WHERE c.key IN ({marks})",
                    chunk,
                ):
                    found[row[2]] = self._entry(row)
        return found

    @staticmethod
    def _prefix_clause(column: str, prefix: str) -> tuple[str, tuple[Any, ...]]:
        """A WHERE clause matching keys that start with `prefix`, as an index range."""
        if not prefix:
            return "1", ()
        upper = _prefix_upper(prefix)
        if upper is None:
            return f"{column} >= ? AND substr({column}, 1, ?) = ?", (prefix, len(prefix), prefix)
        return f"{column} >= ? AND {column} < ?", (prefix, upper)

    def done_keys(self, prefix: str = "") -> set[str]:
        """Keys (starting with `prefix`) whose newest entry is done; one indexed query."""
        clause, params = self._prefix_clause("key", prefix)
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT key FROM current WHERE state = ? AND {clause}",
                (EntryState.DONE.value, *params),
            ).fetchall()
        return {row[0] for row in rows}

    def done_times(self, prefix: str, *, except_ref: str | None = None) -> dict[str, datetime]:
        """When each key starting with `prefix` was last done; one indexed query.

        Mautic's stats log a send's time, not its message: these times let
        the sends syncctl recorded claim their stats (see `sends.unclaimed`).
        A row written from what the stats showed (adopted, recovered) holds
        the logged time as `sent_at`: its own finish is much later. Rows done
        with the ref `except_ref` are left out.
        """
        clause, params = self._prefix_clause("c.key", prefix)
        with self._read() as conn:
            rows = conn.execute(
                "SELECT c.key, COALESCE(json_extract(e.detail, '$.sent_at'), e.finished_at), e.ref"
                " FROM current c"
                f" JOIN entries e ON e.id = c.entry_id WHERE c.state = ? AND {clause}",
                (EntryState.DONE.value, *params),
            ).fetchall()
        return {
            key: moment
            for key, finished, ref in rows
            if (moment := _parse(finished)) and (except_ref is None or ref != except_ref)
        }

    def done_refs(self, keys: Iterable[str]) -> dict[str, str]:
        """The external ref of each of `keys` whose newest entry is done with one.

        Only (key, ref) pairs are read: cheaper than `latest_many` when the
        entries' details are not needed.
        """
        found: dict[str, str] = {}
        with self._read() as conn:
            for chunk, marks in _in_chunks(keys):
                for key, ref in conn.execute(
                    "SELECT c.key, e.ref FROM current c JOIN entries e ON e.id = c.entry_id"
                    f" WHERE c.state = ? AND c.key IN ({marks})",
                    (EntryState.DONE.value, *chunk),
                ):
                    if ref:
                        found[key] = ref
        return found

    def leads_made_for(self, contact_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
        """The Lead syncctl created for each of these contacts: id -> (lead id, email).

        Leads are keyed by email; the contact is in the attempt's detail, so a
        contact whose email changed still finds the Lead made for it (rule 22).
        """
        wanted = {int(cid) for cid in contact_ids}
        if not wanted:
            return {}
        found: dict[int, tuple[str, str]] = {}
        with self._read() as conn:
            rows = conn.execute(
                "SELECT c.key, e.ref, json_extract(e.detail, '$.contact_id') FROM current c"
                " JOIN entries e ON e.id = c.entry_id"
                " WHERE c.state = ? AND c.key >= 'lead:' AND c.key < 'lead;'"
                " AND json_extract(e.detail, '$.contact_id') IS NOT NULL",
                (EntryState.DONE.value,),
            ).fetchall()
        for key, ref, contact in rows:
            if ref and isinstance(contact, int) and contact in wanted:
                found[contact] = (ref, key.removeprefix("lead:"))
        return found

    def not_done(self, keys: Iterable[str]) -> list[str]:
        """Those of `keys` whose newest entry is not done (chunked IN queries, in order).

        For checking many keys without loading every done key of a kind.
        """
        missing: list[str] = []
        with self._read() as conn:
            for chunk, marks in _in_chunks(keys):
                done = {
                    row[0]
                    for row in conn.execute(
                        f"SELECT key FROM current WHERE state = ? AND key IN ({marks})",
                        (EntryState.DONE.value, *chunk),
                    )
                }
                missing.extend(k for k in chunk if k not in done)
        return missing

    # -- reports over the whole journal (export) ------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: every read inside sees the journal as it was at the first.

        For a reader that pages through the journal in several queries (`syncctl
        export`) while a run may be writing: in WAL mode the run goes on, and
        the pages agree with each other. Reads only: a write inside fails.
        """
        with self._read() as conn:
            nested = conn.in_transaction  # the outer snapshot holds
            if not nested:
                conn.execute("BEGIN")
        if nested:
            yield
            return
        try:
            yield
        finally:
            with self._read() as conn:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def _pages(self, sql: str, params: Mapping[str, Any], page: int) -> Iterator[list[Any]]:
        """The rows of one read query, `page` at a time, from one cursor (never all at once)."""
        with self._read() as conn:
            cursor = conn.execute(sql, params)
        try:
            while True:
                with self._read():
                    rows = cursor.fetchmany(page)
                if not rows:
                    return
                yield rows
        finally:
            cursor.close()

    def iter_purchase_facts(
        self, coupon_email: int, *, page: int = 500
    ) -> Iterator[list[PurchaseFacts]]:
        """Every purchase the journal knows (`coupon:<session>`, then sessions only a
        `refund:` fact names), by session id, `page` at a time.

        Each purchase is one row joined in SQLite: its coupon, refund and coupon
        email (`coupon_email` is the email's id) come by key or on the subject
        index, so memory stays flat however many purchases there are.
        """
        mail = f"mail:{coupon_email}:"
        params = {
            "mail": mail,
            "mail_end": mail[:-1] + ";",
            "mail_len": len(mail),
            "done": EntryState.DONE.value,
        }
        for rows in self._pages(_PURCHASES_SQL, params, page):
            yield [_purchase_facts(row) for row in rows]
        for rows in self._pages(_REFUND_ONLY_SQL, params, page):
            yield [_purchase_facts(row) for row in rows]

    def iter_contact_facts(
        self, vip_email: int, basic_email: int, *, page: int = 500
    ) -> Iterator[list[ContactFacts]]:
        """Every invite attempt's newest entry (`invite:<contact>:<tier>`, in key order, so a
        contact's tiers come together), then every lead no invite row shows; `page` at a time.

        `vip_email`/`basic_email` are the invite emails' ids. One joined row each.
        """
        params = {
            "vip": vip_email,
            "basic": basic_email,
            "done": EntryState.DONE.value,
            "skipped": EntryState.SKIPPED.value,
        }
        for rows in self._pages(_INVITES_SQL, params, page):
            yield [_contact_facts(row) for row in rows]
        for rows in self._pages(_LONE_LEADS_SQL, params, page):
            yield [_contact_facts(row) for row in rows]

    def latest_by_prefix(self, prefix: str) -> dict[str, Entry]:
        """The newest entry of every key starting with `prefix` (e.g. "invite:")."""
        clause, params = self._prefix_clause("c.key", prefix)
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {self._ENTRY_COLUMNS} FROM current c JOIN entries e ON e.id = c.entry_id"
                f" WHERE {clause}",
                params,
            ).fetchall()
        return {row[2]: self._entry(row) for row in rows}

    def in_flight(self) -> list[Entry]:
        """Newest entries still in_flight or minted: resolve these against the
        services at start-up, before anything is retried. Oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {self._ENTRY_COLUMNS} FROM current c JOIN entries e ON e.id = c.entry_id"
                " WHERE c.state IN (?, ?) ORDER BY e.id",
                _UNRESOLVED,
            ).fetchall()
        return [self._entry(row) for row in rows]

    def history(
        self,
        *,
        subject: str | None = None,
        since: datetime | None = None,
        failed_only: bool = False,
        limit: int | None = None,
    ) -> list[Entry]:
        """Every attempt, newest first; `subject` is compared case-insensitively."""
        where: list[str] = []
        params: list[Any] = []
        if subject is not None:
            where.append("e.subject_ci = ?")
            params.append(subject.casefold())
        if since is not None:
            where.append("e.started_at >= ?")
            params.append(_iso(since))
        if failed_only:
            # Aborted with the attempt's own error (its answer was lost, and
            # recovery found it had not happened): a failure all the same. An
            # attempt only cut short by a crash carries no error of its own.
            # Still in flight with an error: its answer was lost and the next
            # run settles it; right after the run, that is the failure to see.
            where.append(
                "(e.state = ? OR (e.state = ? AND substr(e.error, 1, ?) != ?)"
                " OR (e.state IN (?, ?) AND e.error IS NOT NULL))"
            )
            params += [EntryState.FAILED.value, EntryState.ABORTED.value, len(RECOVERED), RECOVERED]
            params += list(_UNRESOLVED)
        sql = f"SELECT {self._ENTRY_COLUMNS} FROM entries e"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY e.id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._read() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [self._entry(row) for row in rows]

    # -- holds (rule 18) -------------------------------------------------------------------

    _HOLD_COLUMNS = "subject, kind, reason, held_by, held_at, held_since"

    @staticmethod
    def _hold(row: tuple[Any, ...]) -> Hold:
        return Hold(
            subject=row[0],
            kind=HoldKind(row[1]),
            reason=row[2],
            by=row[3],
            at=_parse(row[4]),  # type: ignore[arg-type]
            since=_parse(row[5]),  # type: ignore[arg-type]
        )

    def _hold_event(
        self, conn: sqlite3.Connection, kind: str, subject: str, now: str, detail: dict[str, Any]
    ) -> None:
        """Record holding or releasing in `entries`, so `history` shows it.

        A finished entry outside any run (run_id NULL), keyed `hold:<subject>`:
        no vendor call stands behind it, so it is never in flight.
        """
        key = HOLD_KEY_PREFIX + subject
        cur = conn.execute(
            "INSERT INTO entries (run_id, key, kind, subject, subject_ci, state, detail,"
            " started_at, finished_at) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                kind,
                subject,
                subject.casefold(),
                EntryState.DONE.value,
                _dump(detail),
                now,
                now,
            ),
        )
        conn.execute(
            "INSERT INTO current (key, entry_id, state) VALUES (?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET entry_id = excluded.entry_id,"
            " state = excluded.state",
            (key, int(cur.lastrowid or 0), EntryState.DONE.value),
        )

    def hold(
        self, subject: str, kind: HoldKind | str, reason: str | None = None, by: str = ""
    ) -> Hold:
        """Hold `subject` (an email or a session id; see `hold_subject`).

        Takes effect for every run that plans after this commits: runs read
        holds when they plan, and this writes one short transaction without
        the run lock, so it is not kept waiting by a run in progress.

        Held already: a new `reason` replaces the old one (and `by`/`at`;
        `since` stays) and is recorded as another `hold` event; no reason,
        or the same one, changes and records nothing. Either way the
        returned hold's `previous` is the hold found in place, so the
        caller can say what happened (`reason_changed`).
        """
        kind = HoldKind(kind)
        key = hold_subject(subject)
        if not key or (kind is HoldKind.EMAIL) != ("@" in key):
            raise ValueError(f"{subject!r} is not a {kind} to hold")
        now = self._clock()
        with self._write(f"hold {key}") as conn:
            row = conn.execute(
                f"SELECT {self._HOLD_COLUMNS} FROM holds WHERE subject = ?", (key,)
            ).fetchone()
            before = None if row is None else self._hold(row)
            if before is not None and (reason is None or reason == before.reason):
                return replace(before, previous=before)
            after = Hold(
                subject=key,
                kind=kind,
                reason=reason or "",
                by=by,
                at=now,
                since=before.since if before is not None else now,
                previous=before,
            )
            conn.execute(
                f"INSERT INTO holds ({self._HOLD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (subject) DO UPDATE SET reason = excluded.reason,"
                " held_by = excluded.held_by, held_at = excluded.held_at",
                (key, kind.value, after.reason, by, _iso(now), _iso(after.since)),
            )
            detail: dict[str, Any] = {"hold_kind": kind.value, "reason": after.reason, "by": by}
            if before is not None:
                detail["previous_reason"] = before.reason
            self._hold_event(conn, HOLD_EVENT, key, _iso(now), detail)
        return after

    def release(self, subject: str, by: str = "") -> Hold | None:
        """Lift the hold on `subject`; the hold that was lifted, or None if none was.

        Recorded as a `release` event (with the reason it was held for). The
        next run that plans acts for the subject again; nothing is undone or
        replayed by releasing itself.
        """
        key = hold_subject(subject)
        with self._write(f"release {key}") as conn:
            row = conn.execute(
                f"SELECT {self._HOLD_COLUMNS} FROM holds WHERE subject = ?", (key,)
            ).fetchone()
            if row is None:
                return None
            lifted = self._hold(row)
            conn.execute("DELETE FROM holds WHERE subject = ?", (key,))
            detail = {
                "hold_kind": lifted.kind.value,
                "reason": lifted.reason,
                "by": by,
                "held_by": lifted.by,
                "held_since": _iso(lifted.since),
            }
            self._hold_event(conn, RELEASE_EVENT, key, _iso(self._clock()), detail)
        return lifted

    def holds(self) -> list[Hold]:
        """Every hold in place, the longest-standing first."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {self._HOLD_COLUMNS} FROM holds ORDER BY held_since, subject"
            ).fetchall()
        return [self._hold(row) for row in rows]

    def held(self, subjects: Iterable[str]) -> dict[str, Hold]:
        """The holds on any of `subjects` (emails in any case, session ids), by subject as given.

        For the planner: one query whatever the number of subjects (holds
        are few, so all are read and `subjects` matched in memory), and
        none of `subjects` is looked at when nothing is held.
        """
        table = {h.subject: h for h in self.holds()}
        if not table:
            return {}
        return {given: table[key] for given in subjects if (key := hold_subject(given)) in table}

    def hold_trail(self, subjects: Iterable[str]) -> list[Entry]:
        """The hold and release events of `subjects`, newest first (for one person's history)."""
        keys = [HOLD_KEY_PREFIX + hold_subject(s) for s in subjects]
        found: list[Entry] = []
        with self._read() as conn:
            for chunk, marks in _in_chunks(keys):
                found += [
                    self._entry(row)
                    for row in conn.execute(
                        f"SELECT {self._ENTRY_COLUMNS} FROM entries e WHERE e.key IN ({marks})",
                        chunk,
                    )
                ]
        return sorted(found, key=lambda e: e.id, reverse=True)

    # -- cursors ---------------------------------------------------------------------------

    def cursor(self, name: str) -> str | None:
        """Where an incremental read stopped last time (None: never ran)."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def set_cursor(self, name: str, value: str) -> None:
        """Move a cursor. Only after the work it covers succeeded; never in a dry run."""
        with self._write(f"move the cursor {name}") as conn:
            conn.execute(
                "INSERT INTO cursors (name, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                (name, value, _iso(self._clock())),
            )

    # -- retry queue -----------------------------------------------------------------------

    def add_pending(self, kind: str, ref: str, reason: str) -> None:
        """Queue a failed item for the next runs (upsert; counts attempts)."""
        now = _iso(self._clock())
        with self._write("queue a retry") as conn:
            conn.execute(
                "INSERT INTO pending (kind, ref, reason, attempts, first_seen, last_seen)"
                " VALUES (?, ?, ?, 1, ?, ?)"
                " ON CONFLICT (kind, ref) DO UPDATE SET reason = excluded.reason,"
                " attempts = attempts + 1, last_seen = excluded.last_seen",
                (kind, ref, reason, now, now),
            )

    def remove_pending(self, kind: str, ref: str) -> None:
        """Drop an item from the retry queue once it succeeded (no-op if absent)."""
        with self._write("clear a retry") as conn:
            conn.execute("DELETE FROM pending WHERE kind = ? AND ref = ?", (kind, ref))

    def pending(self, kind: str | None = None) -> list[PendingItem]:
        """Items to retry this run, oldest first."""
        sql = "SELECT kind, ref, reason, attempts, first_seen, last_seen FROM pending"
        params: tuple[str, ...] = ()
        if kind is not None:
            sql += " WHERE kind = ?"
            params = (kind,)
        sql += " ORDER BY first_seen, kind, ref"
        with self._read() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [
            PendingItem(
                kind=row[0],
                ref=row[1],
                reason=row[2],
                attempts=row[3],
                first_seen=_parse(row[4]),  # type: ignore[arg-type]
                last_seen=_parse(row[5]),  # type: ignore[arg-type]
            )
            for row in rows
        ]

    # -- small facts -----------------------------------------------------------------------

    def get_meta(self, name: str) -> str | None:
        """A small cached fact (e.g. the Discord bot's user id), or None."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, name: str, value: str) -> None:
        """Cache a small fact. Never a secret."""
        if name in _RESERVED_META:
            raise ValueError(f"meta {name!r} belongs to the journal itself")
        with self._write(f"store {name}") as conn:
            conn.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )


# -- the export's joined reads --------------------------------------------------------------
# One row per purchase and per invite, joined in SQLite by key (primary key
# lookups) or on the subject index, read with one cursor: nothing is held
# in Python but the page being read. Parameters: :done, :skipped, and per
# query the email ids (`iter_purchase_facts`, `iter_contact_facts`).

#: Purchases with a coupon attempt, by key. The coupon email is a sent
#: `mail:<id>:<contact>:<code>` ending in this code among the buyer's entries
#: (the subject index; `+` keeps the state out of the index choice); the other
#: ways to the buyer's contact are asked only when no email names one
#: (COALESCE stops at the first value).
_PURCHASES_SQL = """
SELECT p.sid, p.subject_ci, p.state, p.code, p.observed,
    (SELECT re.ref FROM current rc JOIN entries re ON re.id = rc.entry_id
        WHERE rc.key = 'refund:' || p.sid AND rc.state = :done),
    NULLIF(COALESCE(
        CAST(substr(m.key, :mail_len + 1, instr(substr(m.key, :mail_len + 1), ':') - 1)
            AS INTEGER),
        (SELECT CAST(ce.ref AS INTEGER) FROM current cc JOIN entries ce ON ce.id = cc.entry_id
            WHERE cc.key = 'contact:' || p.subject_ci AND cc.state = :done
                AND ce.ref != '' AND ce.ref NOT GLOB '*[^0-9]*'),
        (SELECT CAST(substr(v.key, 5, instr(substr(v.key, 5), ':') - 1) AS INTEGER)
            FROM entries v JOIN current vc ON vc.key = v.key AND vc.entry_id = v.id
            WHERE v.subject_ci = p.subject_ci AND v.key >= 'vip:' AND v.key < 'vip;'
                AND substr(v.key, -length(p.code) - 1) = ':' || p.code
            ORDER BY v.id LIMIT 1)), 0),
    strftime('%Y-%m-%dT%H:%M:%S+00:00', COALESCE(json_extract(m.detail, '$.sent_at'),
        m.finished_at))
FROM (
    SELECT c.key AS key, substr(c.key, 8) AS sid, e.subject_ci AS subject_ci, e.state AS state,
        COALESCE(e.ref, json_extract(e.detail, '$.code')) AS code,
        json_extract(e.detail, '$.observed') IS 1 AS observed
    FROM current c JOIN entries e ON e.id = c.entry_id
    WHERE c.key >= 'coupon:' AND c.key < 'coupon;'
) p
LEFT JOIN entries m ON m.id = (
    SELECT x.id FROM entries x INDEXED BY entries_subject
        JOIN current xc ON xc.key = x.key AND xc.entry_id = x.id
    WHERE x.subject_ci = p.subject_ci AND x.key >= :mail AND x.key < :mail_end
        AND substr(x.key, -length(p.code) - 1) = ':' || p.code AND +xc.state = :done
    LIMIT 1)
ORDER BY p.key
"""

#: Purchases only a refund fact names (refunded or disputed before any code was
#: made for them), by key.
_REFUND_ONLY_SQL = """
SELECT substr(c.key, 8), e.subject_ci, NULL, NULL, 0, e.ref, NULL, NULL
FROM current c JOIN entries e ON e.id = c.entry_id
WHERE c.key >= 'refund:' AND c.key < 'refund;' AND c.state = :done
    AND NOT EXISTS (SELECT 1 FROM current x WHERE x.key = 'coupon:' || substr(c.key, 8))
ORDER BY c.key
"""

#: Each invite key's newest attempt, by key (a contact's tiers are neighbours),
#: with whether syncctl revoked it, its email, and the lead of its email.
_INVITES_SQL = """
SELECT i.cid, i.tier, i.subject_ci, i.id, i.state, i.ref, i.at,
    EXISTS (SELECT 1 FROM current rv WHERE rv.key = 'revoke:' || i.ref AND rv.state = :done),
    m.ref, CASE WHEN m.state = :done THEN strftime('%Y-%m-%dT%H:%M:%S+00:00',
        COALESCE(json_extract(m.detail, '$.sent_at'), m.finished_at)) END,
    l.state, l.ref, json_extract(l.detail, '$.observed') IS 1,
    json_extract(l.detail, '$.contact_id')
FROM (
    SELECT c.key AS key,
        substr(c.key, 8, instr(substr(c.key, 8), ':') - 1) AS cid,
        substr(c.key, 8 + instr(substr(c.key, 8), ':')) AS tier,
        e.id AS id, e.subject_ci AS subject_ci, e.state AS state, e.ref AS ref,
        COALESCE(e.finished_at, e.started_at) AS at
    FROM current c JOIN entries e ON e.id = c.entry_id
    WHERE c.key >= 'invite:' AND c.key < 'invite;'
) i
LEFT JOIN current mc ON mc.key = 'mail:' || (CASE i.tier WHEN 'vip' THEN :vip ELSE :basic END)
    || ':' || i.cid || ':' || i.ref
LEFT JOIN entries m ON m.id = mc.entry_id
LEFT JOIN current lc ON lc.key = 'lead:' || i.subject_ci AND lc.state != :skipped
LEFT JOIN entries l ON l.id = lc.entry_id
ORDER BY i.key
"""

#: Leads no invite row shows: no invite of their email names their contact
#: (or, for a lead found in Espo with no contact, no invite of their email).
_LONE_LEADS_SQL = """
SELECT json_extract(e.detail, '$.contact_id'), NULL, substr(c.key, 6), NULL, NULL, NULL, NULL, 0,
    NULL, NULL,
    e.state, e.ref, json_extract(e.detail, '$.observed') IS 1,
    json_extract(e.detail, '$.contact_id')
FROM current c JOIN entries e ON e.id = c.entry_id
WHERE c.key >= 'lead:' AND c.key < 'lead;' AND c.state != :skipped
    AND NOT EXISTS (
        SELECT 1 FROM entries ie JOIN current ic ON ic.key = ie.key AND ic.entry_id = ie.id
        WHERE ie.subject_ci = substr(c.key, 6) AND ie.key >= 'invite:' AND ie.key < 'invite;'
            AND (json_extract(e.detail, '$.contact_id') IS NULL
                OR substr(ie.key, 8, instr(substr(ie.key, 8), ':') - 1)
                    = CAST(json_extract(e.detail, '$.contact_id') AS TEXT)))
ORDER BY c.key
"""


def _state(text: str | None) -> EntryState | None:
    return None if text is None else _STATES[text]


def _int(value: Any) -> int | None:
    """A contact id from a key (text) or a detail (a JSON number); None for anything else."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _purchase_facts(row: tuple[Any, ...]) -> PurchaseFacts:
    # The query gives each column its type already (the contact: a positive id or NULL).
    states = _STATES
    return PurchaseFacts(
        row[0], row[1], states.get(row[2]), row[3], row[4] == 1, row[5], row[6], row[7]
    )


def _contact_facts(row: tuple[Any, ...]) -> ContactFacts:
    return ContactFacts(
        _int(row[0]),
        row[1],
        row[2],
        row[3],
        _state(row[4]),
        row[5],
        row[6],
        bool(row[7]),
        row[8],
        row[9],
        _state(row[10]),
        row[11],
        bool(row[12]),
        _int(row[13]),
    )


def _read_version(conn: sqlite3.Connection, path: Path) -> int:
    """0 for an empty file; StateError for a SQLite file that is not a journal."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "meta" not in tables:
        if tables - {"sqlite_sequence"}:
            raise StateError(
                f"{path} is a SQLite database but not a syncctl journal",
                hint="point [run] state_dir at a directory of its own",
            )
        return 0
    row = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    return 0 if row is None else int(row[0])


def _refuse_newer(version: int, path: Path) -> None:
    if version > SCHEMA_VERSION:
        raise StateError(
            f"{path} was written by a newer syncctl (schema {version}; "
            f"this one knows up to {SCHEMA_VERSION}); the file was left untouched",
            hint="upgrade syncctl, or point [run] state_dir elsewhere",
        )


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Apply pending migrations in one transaction; always writes (the write probe)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _read_version(conn, path)  # again, under the write lock
        _refuse_newer(version, path)
        for script in MIGRATIONS[version:]:
            for statement in _statements(script):
                conn.execute(statement)
        # Rewritten even when unchanged: proves the file is writable before any vendor call.
        conn.execute(
            "INSERT INTO meta (name, value) VALUES ('schema_version', ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _in_chunks(keys: Iterable[str]) -> Iterator[tuple[list[str], str]]:
    """Distinct `keys` in chunks small enough for one `IN (...)`, with their placeholders."""
    wanted = list(dict.fromkeys(keys))
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        yield chunk, ",".join("?" * len(chunk))
