"""The intent journal and run state, on a state store (SQLite or PostgreSQL).

Why it exists: a vendor write (mint an invite, create a code, send an email)
can be cut off by a crash or a timeout at any point. So an action's row is
committed `in_flight` *before* the call and marked `done` with the external
reference *after* it; at start-up, rows still `in_flight` (or `minted`) are
resolved by looking at the service, never by a blind retry.

The services stay the source of truth: this is an intent log and a cache
(cursors, a retry queue, run history, small facts such as the Discord bot's
user id). Losing it costs a `reconcile --full`, never a duplicate.

Nothing here takes or stores a secret: keys, subjects, references and
details are identifiers and codes that are safe to show to an operator.
Callers must keep tokens, passwords and API keys out of `detail`.

Where it lives: `Journal.open(state_dir)` opens the SQLite file in the
state directory (the default); `Journal.open(location)` with a
`StateLocation` whose `url` names a PostgreSQL database opens that, shared
by several hosts (`state.store` describes what a backend provides). The
queries below are the same for both.

Every write commits before its method returns (one connection, guarded by a
lock, shared by the reconciler's worker threads). Every store failure becomes
a one-line `StateError` naming the store, the cause and the fix. Opened
read-only (dry runs, `status`, `history`) the journal refuses every write.
A journal that holds the run lock (`open_for_run`, `run_lock`) proves on
every write, on the lock's own connection, that it still holds it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from syncctl.errors import StateError
from syncctl.state.holds import HoldsMixin
from syncctl.state.location import StateLocation
from syncctl.state.lock import state_lock
from syncctl.state.migrations import SCHEMA_VERSION
from syncctl.state.records import (
    HOLD_EVENT,
    HOLD_KEY_PREFIX,
    RECOVERED,
    RELEASE_EVENT,
    UNRESOLVED,
    Entry,
    EntryState,
    Hold,
    Holder,
    HoldKind,
    PendingItem,
    RunRecord,
    dump,
    hold_subject,
    iso,
    load,
    parse,
    utcnow,
)
from syncctl.state.reports import ReportsMixin
from syncctl.state.sqlite import DB_NAME, SQLiteStore
from syncctl.state.store import Session, StateStore, in_chunks

__all__ = [
    "DB_NAME",
    "HOLD_EVENT",
    "HOLD_KEY_PREFIX",
    "RECOVERED",
    "RELEASE_EVENT",
    "SCHEMA_VERSION",
    "Entry",
    "EntryState",
    "Hold",
    "HoldKind",
    "Holder",
    "Journal",
    "PendingItem",
    "RunRecord",
    "StateLocation",
    "hold_subject",
    "open_for_run",
    "open_store",
]

#: `meta` rows the journal owns; `set_meta` refuses them.
_RESERVED_META = frozenset({"schema_version", "lock_holder", "moved_to"})


Where = Path | str | StateLocation


def _location(where: Where) -> StateLocation:
    return where if isinstance(where, StateLocation) else StateLocation(Path(where))


def open_store(where: Where, *, readonly: bool = False) -> StateStore:
    """The backend for `where`: PostgreSQL when it has a URL, else the SQLite file."""
    location = _location(where)
    if location.url:
        from syncctl.state.postgres import PostgresStore  # psycopg only when asked for

        return PostgresStore.open(location, readonly=readonly)
    return SQLiteStore.open(location.state_dir, readonly=readonly)


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


class Journal(HoldsMixin, ReportsMixin):
    """The state database. Open with `Journal.open(where)`; use as a context manager.

    Thread-safe: one connection, serialised by a re-entrant lock. Every write
    commits before returning, so a row written before a vendor call survives a
    crash during that call.
    """

    def __init__(
        self,
        store: StateStore,
        *,
        clock: Callable[[], datetime] = utcnow,
        location: StateLocation | None = None,
    ) -> None:
        """Use `Journal.open`; this wraps an open, migrated store."""
        self._store = store
        self._location = location
        self._closed = False
        self._clock = clock
        self._lock = threading.RLock()
        self._batch_depth = 0

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        where: Where,
        *,
        readonly: bool = False,
        clock: Callable[[], datetime] = utcnow,
    ) -> Journal:
        """Open (creating and migrating) the store at `where`.

        `where` is a state directory (the SQLite file `state.db` in it), or a
        `StateLocation` (`Config.state`): its `url`, when set, names the
        PostgreSQL database instead.

        Opened for writing, the store is migrated and written at once, so a
        read-only or full disk (or a database that refuses writes) fails here,
        before any vendor call. `readonly=True` creates and migrates nothing
        (a dry run must not change state): a missing store reads as empty.
        """
        location = _location(where)
        journal = cls(open_store(location, readonly=readonly), clock=clock, location=location)
        if not readonly:
            try:
                journal._refuse_moved()
            except BaseException:
                journal.close()
                raise
        return journal

    def moved_to(self) -> tuple[str, str] | None:
        """(where, when) the state was moved by `syncctl state migrate`; None if it was not."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE name = 'moved_to'").fetchone()
        if row is None:
            return None
        info = json.loads(row[0])
        return str(info.get("to", "?")), str(info.get("at", "?"))

    def _refuse_moved(self) -> None:
        """A store whose state was moved elsewhere takes no more writes: a host still
        pointed at it would otherwise go on alone, and the two would drift apart."""
        moved = self.moved_to()
        if moved is not None:
            raise StateError(
                f"the state in {self.where} was moved to {moved[0]} by `syncctl state migrate` "
                f"({moved[1]}); this store takes no more writes",
                hint="point this host at the new store ([run] state_url or SYNCCTL_STATE_URL, "
                "or [run] state_dir)",
            )

    @staticmethod
    def exists(where: Where) -> bool:
        """Whether a store was made at `where` already (creates nothing)."""
        location = _location(where)
        if location.url:
            from syncctl.state.postgres import PostgresStore

            return PostgresStore.exists(location)
        return SQLiteStore.exists(location.state_dir)

    def close(self) -> None:
        """Close the store; further calls raise StateError."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._store.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------------

    @property
    def store(self) -> StateStore:
        """The backend (for `doctor` and `state migrate`)."""
        return self._store

    @property
    def path(self) -> Path:
        """The SQLite file (it may not exist for a read-only, empty view);
        for a PostgreSQL store, the state directory of the config."""
        store = self._store
        if isinstance(store, SQLiteStore):
            return store.path
        return self._location.state_dir if self._location else Path()

    @property
    def where(self) -> str:
        """The store, for messages: the SQLite file, or the URL without its password."""
        return self._store.name

    @property
    def readonly(self) -> bool:
        """True when every write is refused (dry runs, status)."""
        return self._store.readonly

    @property
    def shared(self) -> bool:
        """The store may be used by several hosts at once (PostgreSQL)."""
        return self._store.shared

    @property
    def lost(self) -> bool:
        """The store's connection (and with it the run lock) is gone."""
        return self._store.lost

    @property
    def schema_version(self) -> int:
        """The schema version of the open database (always the current one)."""
        with self._lock:
            self._check_open()
            return self._store.schema_version()

    def run_lock(
        self,
        *,
        wait: bool = False,
        timeout: float | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> AbstractContextManager[None]:
        """Hold the run lock for the block; see `StateStore.run_lock`."""
        return self._store.run_lock(wait=wait, timeout=timeout, on_wait=on_wait)

    def leading_for(self) -> float | None:
        """Seconds since this journal took a shared store's run lock; None when it holds
        none, or the store is SQLite (a flock is freed only when its holder is dead, so
        nothing a previous holder sent can still be on its way)."""
        return self._store.leading_for()

    def unfinished_runs(self, run_ids: Iterable[int]) -> set[int]:
        """Those of `run_ids` that began and never finished (crashed, killed, cut off)."""
        wanted = [str(i) for i in set(run_ids)]
        found: set[int] = set()
        with self._read() as conn:
            for chunk, marks in in_chunks(wanted):
                found |= {
                    int(row[0])
                    for row in conn.execute(
                        f"SELECT id FROM runs WHERE finished_at IS NULL AND id IN ({marks})",
                        [int(i) for i in chunk],
                    )
                }
        return found

    def lock_holder(self) -> Holder | None:
        """Who holds the run lock now (None: nobody); never takes it."""
        with self._lock:
            self._check_open()
            return self._store.lock_holder()

    def check_leadership(self) -> None:
        """Raise StoreLost unless this journal still holds the run lock it took.

        For the HTTP layer's write guard: called before each vendor write, so
        a run that lost the lock makes no side effect after the loss.
        """
        with self._lock:
            self._check_open()
            self._store.check_leadership()

    def _check_open(self) -> None:
        if self._closed:
            raise StateError(f"the journal {self._store.name} is closed")

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._lock:
            self._check_open()
            with self._store.reading() as conn:
                yield conn

    @contextmanager
    def _write(self, what: str) -> Iterator[Session]:
        """One committed transaction (or part of the enclosing `batch`)."""
        if self._store.readonly:
            raise StateError(
                f"the journal {self._store.name} is open read-only (dry run or status); "
                f"refusing to {what}"
            )
        with self._lock:
            self._check_open()
            if self._batch_depth:
                with self._store.reading("write") as conn:
                    yield conn
                return
            with self._store.transaction(what) as conn:
                yield conn

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
            row = conn.execute(
                "INSERT INTO runs (started_at, mode, dry_run) VALUES (?, ?, ?) RETURNING id",
                (iso(self._clock()), mode, int(dry_run)),
            ).fetchone()
        return int(row[0])

    def finish_run(self, run_id: int, outcome: str, summary: Mapping[str, Any]) -> None:
        """Record how a run ended, with its counts, for `history`."""
        with self._write("finish a run") as conn:
            cur = conn.execute(
                "UPDATE runs SET finished_at = ?, outcome = ?, summary = ? WHERE id = ?",
                (iso(self._clock()), outcome, dump(summary), run_id),
            )
            if cur.rowcount == 0:
                raise ValueError(f"no run {run_id} in {self.where}")

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
                started_at=parse(row[1]),  # type: ignore[arg-type]
                finished_at=parse(row[2]),
                mode=row[3],
                dry_run=bool(row[4]),
                outcome=row[5],
                summary=load(row[6]),
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
                (key, *UNRESOLVED),
            ).fetchone()
            if unresolved is not None:
                entry_id, state, run_id_then = unresolved
                raise StateError(
                    f"{key} already has an unresolved {state} entry #{entry_id} "
                    f"(run {run_id_then}) in {self.where}",
                    hint="resolve it against the service and mark it before starting again",
                )
            row = conn.execute(
                "INSERT INTO entries (run_id, key, kind, subject, subject_ci, state, detail,"
                " started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    run_id,
                    key,
                    kind,
                    subject,
                    subject.casefold(),
                    EntryState.IN_FLIGHT.value,
                    dump(detail),
                    iso(self._clock()),
                ),
            ).fetchone()
            entry_id = int(row[0])
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
                raise ValueError(f"no journal entry #{entry_id} in {self.where}")
            key, stored = row
            merged = json.loads(stored)
            merged.update(detail or {})
            conn.execute(
                "UPDATE entries SET state = ?, ref = COALESCE(?, ref), detail = ?,"
                " error = COALESCE(?, error), finished_at = ? WHERE id = ?",
                (
                    state.value,
                    ref,
                    dump(merged),
                    error,
                    iso(self._clock()) if state.terminal else None,
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
            detail=load(row[7]),
            error=row[8],
            started_at=parse(row[9]),  # type: ignore[arg-type]
            finished_at=parse(row[10]),
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
            for chunk, marks in in_chunks(keys):
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
            return "TRUE", ()
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
        sent_at = self._store.json_text("e.detail", "sent_at")
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT c.key, COALESCE({sent_at}, e.finished_at), e.ref FROM current c"
                f" JOIN entries e ON e.id = c.entry_id WHERE c.state = ? AND {clause}",
                (EntryState.DONE.value, *params),
            ).fetchall()
        return {
            key: moment
            for key, finished, ref in rows
            if (moment := parse(finished)) and (except_ref is None or ref != except_ref)
        }

    def done_refs(self, keys: Iterable[str]) -> dict[str, str]:
        """The external ref of each of `keys` whose newest entry is done with one.

        Only (key, ref) pairs are read: cheaper than `latest_many` when the
        entries' details are not needed.
        """
        found: dict[str, str] = {}
        with self._read() as conn:
            for chunk, marks in in_chunks(keys):
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
        contact = self._store.json_value("e.detail", "contact_id")
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT c.key, e.ref, {contact} FROM current c"
                " JOIN entries e ON e.id = c.entry_id"
                " WHERE c.state = ? AND c.key >= 'lead:' AND c.key < 'lead;'"
                f" AND {contact} IS NOT NULL",
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
            for chunk, marks in in_chunks(keys):
                done = {
                    row[0]
                    for row in conn.execute(
                        f"SELECT key FROM current WHERE state = ? AND key IN ({marks})",
                        (EntryState.DONE.value, *chunk),
                    )
                }
                missing.extend(k for k in chunk if k not in done)
        return missing

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
                UNRESOLVED,
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
            params.append(iso(since))
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
            params += list(UNRESOLVED)
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
                (name, value, iso(self._clock())),
            )

    # -- retry queue -----------------------------------------------------------------------

    def add_pending(self, kind: str, ref: str, reason: str) -> None:
        """Queue a failed item for the next runs (upsert; counts attempts)."""
        now = iso(self._clock())
        with self._write("queue a retry") as conn:
            conn.execute(
                "INSERT INTO pending (kind, ref, reason, attempts, first_seen, last_seen)"
                " VALUES (?, ?, ?, 1, ?, ?)"
                " ON CONFLICT (kind, ref) DO UPDATE SET reason = excluded.reason,"
                " attempts = pending.attempts + 1, last_seen = excluded.last_seen",
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
                first_seen=parse(row[4]),  # type: ignore[arg-type]
                last_seen=parse(row[5]),  # type: ignore[arg-type]
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


@contextmanager
def open_for_run(
    where: Where,
    *,
    readonly: bool = False,
    wait: bool = False,
    timeout: float | None = None,
    on_wait: Callable[[str], None] | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Iterator[Journal]:
    """The journal of a run that applies, with the run lock held for the block.

    SQLite: the `flock` on `state_dir/lock` is taken first, then the file is
    opened, so a run that finds the lock busy touches nothing. PostgreSQL:
    the lock lives on the store's connection, so the store is opened first
    and the advisory lock taken on it; from then on every write proves on
    that connection that the lock is still held. `readonly` (a dry run):
    no lock, a read-only journal. LockBusy (exit 3) when another run holds
    the lock; `wait`/`timeout`/`on_wait` as in `StateStore.run_lock`.
    """
    location = _location(where)
    if readonly:
        with Journal.open(location, readonly=True, clock=clock) as journal:
            yield journal
        return
    if not location.url:
        with (
            state_lock(location.state_dir, wait=wait, timeout=timeout, on_wait=on_wait),
            Journal.open(location, clock=clock) as journal,
        ):
            yield journal
        return
    with (
        Journal.open(location, clock=clock) as journal,
        journal.run_lock(wait=wait, timeout=timeout, on_wait=on_wait),
    ):
        yield journal
