"""The state store interface: what a backend gives the journal.

Everything syncctl remembers (runs, journal entries, cursors, pending
retries, holds, small facts and the run lock) is read and written by
`state.journal.Journal`, whose queries are written once, in the SQL that
SQLite and PostgreSQL share. A backend supplies the rest:

- a connection to run those statements on (`?` placeholders; the
  PostgreSQL backend translates them), read with `reading()` and written
  in committed transactions with `transaction()`;
- the few SQL fragments the two spell differently (`json_value`,
  `json_text`);
- versioned migrations (`state.migrations`): an older store is upgraded in
  place when opened for writing, a newer one is refused with one line;
- the run lock: a `flock` on `state_dir/lock` (SQLite), or a session
  advisory lock on the store's own connection (PostgreSQL), with who holds
  it and since when;
- fencing: while the lock is held, every write transaction proves first,
  on that connection, that the lock is still held (`check_leadership`), so
  a run that lost it stops before its next side effect;
- its errors, as one-line `StateError`s naming the store (never a password).

`SQLiteStore` (`state.sqlite`) is the default; `PostgresStore`
(`state.postgres`) is used when `[run] state_url` or `SYNCCTL_STATE_URL`
names a database, so several hosts share one truth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from syncctl.state.records import Holder


class Cursor(Protocol):
    """What a statement returns (sqlite3's and psycopg's cursors both fit)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Session(Protocol):
    """A connection to run the journal's statements on (`?` placeholders)."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...


class StateStore(Protocol):
    """One backend of the state store. The journal serialises every call to it."""

    #: "sqlite" or "postgresql".
    kind: str

    @property
    def name(self) -> str:
        """The store for messages: the SQLite file, or the URL without its password."""
        ...

    @property
    def readonly(self) -> bool:
        """Opened read-only (dry runs, status, history): the journal refuses writes."""
        ...

    @property
    def shared(self) -> bool:
        """Several hosts may use this store at once (PostgreSQL)."""
        ...

    @property
    def lost(self) -> bool:
        """The connection (and with it the run lock) is gone: every call fails now."""
        ...

    def reading(self, what: str = "read") -> AbstractContextManager[Session]:
        """A session for reads; a backend error in the block becomes a StateError."""
        ...

    def transaction(self, what: str) -> AbstractContextManager[Session]:
        """One committed write transaction, fenced while the run lock is held.

        Rolled back if the block raises; a backend error becomes a
        StateError saying what could not be done (`what`).
        """
        ...

    def json_value(self, column: str, field: str) -> str:
        """SQL for a JSON text column's top-level `field`, as its JSON type (int, str...)."""
        ...

    def json_text(self, column: str, field: str) -> str:
        """SQL for a JSON text column's top-level `field`, as text."""
        ...

    def schema_version(self) -> int:
        """The schema version of the open store."""
        ...

    def after_import(self, session: Session) -> None:
        """After rows were copied in with their ids (`state migrate`): new ids follow them."""
        ...

    def run_lock(
        self,
        *,
        wait: bool = False,
        timeout: float | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> AbstractContextManager[None]:
        """Hold the run lock for the block (LockBusy, exit 3, when another run has it).

        `wait`: block until it is free (or `timeout` seconds, then LockBusy);
        `on_wait` hears once who holds it. A standby (`watch`) calls this
        with a timeout in a loop, and takes over once the holder is gone.
        """
        ...

    def lock_holder(self) -> Holder | None:
        """Who holds the run lock now (None: nobody), without taking it."""
        ...

    def leading_for(self) -> float | None:
        """Seconds since this store's session took the run lock (None: it holds none).

        Always None for SQLite: a flock is freed only when its holder died, so
        a new holder need not wait for anything the old one sent.
        """
        ...

    def check_leadership(self) -> None:
        """Raise StoreLost unless this store's connection still holds the run lock.

        A no-op when the lock was never taken through this store, and for
        SQLite (a flock cannot be lost by a living process).
        """
        ...

    def close(self) -> None: ...


#: Keys per `IN (...)`: below SQLite's default of 999 host parameters.
IN_CHUNK = 900


def in_chunks(keys: Iterable[str]) -> Iterator[tuple[list[str], str]]:
    """Distinct `keys` in chunks small enough for one `IN (...)`, with their placeholders."""
    wanted = list(dict.fromkeys(keys))
    for start in range(0, len(wanted), IN_CHUNK):
        chunk = wanted[start : start + IN_CHUNK]
        yield chunk, ",".join("?" * len(chunk))
