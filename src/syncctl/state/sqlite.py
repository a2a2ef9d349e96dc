"""The SQLite backend: one file, `state_dir/state.db`, and `flock` on `state_dir/lock`.

The default store, for one host. One connection (WAL, synchronous=FULL, so
an in-flight row survives a power cut), shared by the reconciler's worker
threads under the journal's lock; every write is its own `BEGIN IMMEDIATE`
transaction. Opened read-only (dry runs, `status`, `history`), a missing
file reads as empty and one from an older syncctl is migrated in memory,
so the file is never touched. Every SQLite failure becomes a one-line
`StateError` naming the file, the cause and the fix.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from urllib.parse import quote

from syncctl.errors import StateError
from syncctl.state import lock as flock
from syncctl.state.location import check_state_dir
from syncctl.state.migrations import sqlite as migrations
from syncctl.state.records import Holder
from syncctl.state.store import Session

DB_NAME = "state.db"

_BUSY_TIMEOUT_SECONDS = 10.0

_FIX_PERMISSIONS = "fix the permissions of the state_dir, or point [run] state_dir elsewhere"
_FIX_SPACE = "free disk space where the state_dir lives, or point [run] state_dir elsewhere"
_FIX_CORRUPT = (
    "move the file aside and run `syncctl reconcile --full`: "
    "the services hold the truth and the journal is rebuilt from them"
)
_FIX_BUSY = "another process holds the database; wait for it, or check for a stuck syncctl"
_FIX_OTHER = "check the state_dir, or point [run] state_dir elsewhere"


def schema_target() -> int:
    """The version this syncctl migrates a SQLite file to."""
    return len(migrations.MIGRATIONS)


class SQLiteStore:
    """`StateStore` on a SQLite file (see `state.store`)."""

    kind = "sqlite"
    shared = False
    lost = False

    def __init__(
        self, conn: sqlite3.Connection, state_dir: Path, *, readonly: bool, name: str = ""
    ) -> None:
        """Use `SQLiteStore.open`; this wraps an already migrated connection.

        `name`: what messages call the store, if not the file (an empty
        in-memory view of a PostgreSQL store that has no tables yet)."""
        self.conn: sqlite3.Connection | None = conn
        self.state_dir = state_dir
        self.path = state_dir / DB_NAME
        self._name = name or str(self.path)
        self._readonly = readonly

    @classmethod
    def open(cls, state_dir: Path, *, readonly: bool = False) -> SQLiteStore:
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
        return cls(conn, state_dir, readonly=readonly)

    @staticmethod
    def exists(state_dir: Path) -> bool:
        return (Path(state_dir) / DB_NAME).exists()

    @staticmethod
    def _connect(target: str, *, uri: bool = False) -> sqlite3.Connection:
        return sqlite3.connect(
            target,
            uri=uri,
            isolation_level=None,  # explicit BEGIN/COMMIT: every write commits at once
            check_same_thread=False,  # shared by worker threads, serialised by the journal
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
            raise state_error(path, "create", exc) from exc
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
                raise state_error(path, "write", exc) from exc
            raise
        return conn

    @classmethod
    def _open_readonly(cls, path: Path) -> sqlite3.Connection:
        if not path.exists():
            return cls.empty(path)
        conn: sqlite3.Connection | None = None
        try:
            conn = cls._connect(f"file:{quote(str(path))}?mode=ro", uri=True)
            version = _read_version(conn, path)
            _refuse_newer(version, path)
            if version < schema_target():
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
                raise state_error(path, "read", exc) from exc
            raise
        return conn

    @classmethod
    def empty(cls, path: Path) -> sqlite3.Connection:
        """An empty journal in memory (a read-only view of a store not made yet)."""
        conn = cls._connect(":memory:")
        _migrate(conn, path)
        return conn

    # -- StateStore -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def readonly(self) -> bool:
        return self._readonly

    def _live(self) -> sqlite3.Connection:
        if self.conn is None:
            raise StateError(f"the journal {self._name} is closed")
        return self.conn

    @contextmanager
    def reading(self, what: str = "read") -> Iterator[sqlite3.Connection]:
        conn = self._live()
        try:
            yield conn
        except sqlite3.Error as exc:
            raise state_error(self.path, what, exc) from exc

    @contextmanager
    def transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        conn = self._live()
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise state_error(self.path, "write", exc) from exc
            raise

    def json_value(self, column: str, field: str) -> str:
        return f"json_extract({column}, '$.{field}')"

    def json_text(self, column: str, field: str) -> str:
        return f"json_extract({column}, '$.{field}')"

    def schema_version(self) -> int:
        with self.reading() as conn:
            row = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        return int(row[0])

    def after_import(self, session: Session) -> None:
        """Nothing: AUTOINCREMENT remembers the largest id inserted, given or not."""

    def run_lock(
        self,
        *,
        wait: bool = False,
        timeout: float | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> AbstractContextManager[None]:
        return flock.state_lock(self.state_dir, wait=wait, timeout=timeout, on_wait=on_wait)

    def lock_holder(self) -> Holder | None:
        return flock.running_holder(self.state_dir)

    def leading_for(self) -> float | None:
        return None

    def check_leadership(self) -> None:
        """A flock is held until the process dies or lets it go: nothing to prove."""

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def state_error(path: Path, action: str, exc: BaseException) -> StateError:
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
    if version > schema_target():
        raise StateError(
            f"{path} was written by a newer syncctl (schema {version}; "
            f"this one knows up to {schema_target()}); the file was left untouched",
            hint="upgrade syncctl, or point [run] state_dir elsewhere",
        )


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Apply pending migrations in one transaction; always writes (the write probe)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _read_version(conn, path)  # again, under the write lock
        _refuse_newer(version, path)
        for script in migrations.MIGRATIONS[version:]:
            for statement in _statements(script):
                conn.execute(statement)
        # Rewritten even when unchanged: proves the file is writable before any vendor call.
        conn.execute(
            "INSERT INTO meta (name, value) VALUES ('schema_version', ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (str(schema_target()),),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
