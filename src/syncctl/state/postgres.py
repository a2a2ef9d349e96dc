"""The PostgreSQL backend: one database shared by several hosts, and the run lock in it.

Why: with the SQLite file and its `flock`, the campaign lives on one host.
With `[run] state_url` (or `SYNCCTL_STATE_URL`, which wins) every host
pointed at one database shares the journal, the cursors, the holds and the
run lock, so one applies and the others wait (reconcile exits 3, or queues
with `--wait`; a standby polls and takes over once the leader is gone).

The lock is a session advisory lock (`pg_try_advisory_lock`) taken on the
store's own connection, as Terraform's `pg` backend does: PostgreSQL frees
it the moment that session ends (a crash, a kill, a cut network once the
server's keepalives notice it). A lock alone is not fencing, since a
leader that lost its connection may still be running: so while the lock
is held, every write transaction first proves, on that same connection and
inside the transaction, that the session still holds it (a `pg_locks` row of
its own backend), and the HTTP layer asks the same before each vendor write.
A leader whose connection is gone fails at its next write or vendor call
with `StoreLost`; it never reconnects (a new session would not hold the
lock). Whichever host leads next settles what it left in flight.

Timeouts make a silent cut show in seconds: connect_timeout, TCP keepalives
and tcp_user_timeout on both ends of the connection, a statement timeout, an
idle-in-transaction timeout. Each session names itself `syncctl@HOST:PID`
(`application_name`), so `pg_stat_activity` and `doctor` say who holds the
lock.

The URL may carry a password; it is never logged: messages name the store
as `postgresql://user:***@host:port/db`, and any error text is scrubbed of it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from syncctl.errors import ConfigError, LockBusy, StateError, StoreLost
from syncctl.state import lock as flock
from syncctl.state.location import StateLocation, redact_url
from syncctl.state.migrations import postgres as migrations
from syncctl.state.records import Holder, iso
from syncctl.state.sqlite import SQLiteStore
from syncctl.state.store import Session

#: The advisory lock's first key ('sync'); the second is derived from the schema,
#: so two campaigns in two schemas of one database do not share a lock.
LOCK_CLASS = 0x73796E63
#: The key serialising schema migrations between hosts opening at once ('synm').
MIGRATION_CLASS = 0x73796E6D
#: How often a waiting run (or a standby) asks for the lock again.
POLL_SECONDS = 0.5

#: libpq's side of the connection (keys of the URL's own query string win).
CLIENT_DEFAULTS: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,  # ms: unacknowledged data gives up after 10 s
}
#: The server's side, per session: a statement never hangs a run, a client
#: that vanished is noticed (and its lock freed) within seconds.
SESSION_SETTINGS: dict[str, str] = {
    "statement_timeout": "15s",
    "lock_timeout": "10s",
    "idle_in_transaction_session_timeout": "60s",
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "10000",
}
#: PostgreSQL 14 and later: a query of a client that went away is cancelled.
SESSION_SETTINGS_14 = {"client_connection_check_interval": "2s"}

#: The tables of the store, parents first (`state migrate` copies in this order).
TABLES = ("meta", "runs", "entries", "current", "cursors", "pending", "holds")

_FIX_CONNECT = (
    "check that PostgreSQL runs and accepts this host, and the URL in SYNCCTL_STATE_URL "
    "or [run] state_url"
)
_FIX_LOST = (
    "whichever host takes the lock next settles what this run left in flight; "
    "check the database server and the network"
)
_FIX_PRIVILEGES = (
    "grant the role syncctl connects as the rights the operator guide lists "
    "(Two hosts: the PostgreSQL state store)"
)
_FIX_OTHER = "check the database server, or the URL in SYNCCTL_STATE_URL or [run] state_url"


def application_name() -> str:
    """`syncctl@HOST:PID`, as `pg_stat_activity` shows each syncctl session (at most 63 bytes)."""
    host = socket.gethostname().split(".")[0] or "localhost"
    pid = str(os.getpid())
    return f"syncctl@{host[: 63 - len('syncctl@:') - len(pid)]}:{pid}"


@lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    """The journal's `?` placeholders as psycopg's `%s` (a literal `%` doubled)."""
    out: list[str] = []
    quoted = False
    for ch in sql:
        if ch == "'":
            quoted = not quoted
            out.append(ch)
        elif ch == "%":
            out.append("%%")
        elif ch == "?" and not quoted:
            out.append("%s")
        else:
            out.append(ch)
    return "".join(out)


class _Session:
    """The journal's statements on a psycopg connection."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        return self._conn.execute(_pg_sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(_pg_sql(sql), [tuple(r) for r in rows])


def _first_line(exc: BaseException, secret: str | None) -> str:
    text = str(exc).strip().splitlines()
    cause = text[0].strip() if text else type(exc).__name__
    cause = cause.removeprefix("connection failed: ")
    if secret:
        cause = cause.replace(secret, "***")
    return cause or type(exc).__name__


def _password(url: str) -> str | None:
    try:
        password = conninfo_to_dict(url).get("password")
        return str(password) if password else None
    except psycopg.ProgrammingError:
        return None


def connect(location: StateLocation, *, readonly: bool) -> psycopg.Connection[Any]:
    """A connection with syncctl's timeouts and name; StateError (one line) if it fails."""
    url = location.url or ""
    name = location.describe()
    try:
        given = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise ConfigError(
            f"{location.source or 'the state URL'} cannot be parsed as a PostgreSQL URL",
            hint="write it as postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE",
        ) from None
    params = {k: v for k, v in CLIENT_DEFAULTS.items() if k not in given}
    params.setdefault("application_name", application_name())
    try:
        conn = psycopg.connect(make_conninfo(url, **params), autocommit=True)
    except psycopg.Error as exc:
        raise StateError(
            f"cannot connect to the state store {name}: {_first_line(exc, _password(url))}",
            hint=_FIX_CONNECT,
        ) from None
    try:
        settings = dict(SESSION_SETTINGS)
        if conn.info.server_version >= 140000:
            settings.update(SESSION_SETTINGS_14)
        if readonly:
            settings["default_transaction_read_only"] = "on"
        calls = ", ".join("set_config(%s, %s, false)" for _ in settings)
        conn.execute(f"SELECT {calls}", [v for pair in settings.items() for v in pair])
    except psycopg.Error as exc:
        conn.close()
        raise StateError(
            f"cannot set up the session on the state store {name}: "
            f"{_first_line(exc, _password(url))}",
            hint=_FIX_OTHER,
        ) from None
    return conn


def lock_keys(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """(class, object) of the run lock: the second key is a CRC of the current schema."""
    row = conn.execute("SELECT current_schema()").fetchone()
    schema = (row[0] if row else None) or ""
    return LOCK_CLASS, zlib.crc32(schema.encode()) & 0x7FFFFFFF


def read_version(conn: psycopg.Connection[Any], name: str) -> int:
    """0 for a schema without syncctl's tables; StateError for someone else's tables."""
    found = conn.execute(
        "SELECT " + ", ".join(f"to_regclass('{table}') IS NOT NULL" for table in TABLES)
    ).fetchone()
    present = {table for table, there in zip(TABLES, found or (), strict=True) if there}
    if "meta" not in present:
        if present:
            raise StateError(
                f"{name} holds tables named like syncctl's ({', '.join(sorted(present))}) "
                "but is not a syncctl state store",
                hint="give syncctl a database (or a schema, with ?options=-csearch_path%3D...) "
                "of its own",
            )
        return 0
    row = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    return 0 if row is None else int(row[0])


def _refuse_newer(version: int, name: str) -> None:
    target = len(migrations.MIGRATIONS)
    if version > target:
        raise StateError(
            f"{name} was written by a newer syncctl (schema {version}; "
            f"this one knows up to {target}); the database was left untouched",
            hint="upgrade syncctl on this host, or point it at another database",
        )


def migrate(conn: psycopg.Connection[Any], name: str) -> None:
    """Bring the schema up to date in one transaction, serialised between hosts.

    Always writes (the schema version), which proves at once that the role
    may write, before any vendor call.
    """
    target = len(migrations.MIGRATIONS)
    with conn.transaction():
        _, objid = lock_keys(conn)
        conn.execute("SELECT pg_advisory_xact_lock(%s::int4, %s::int4)", (MIGRATION_CLASS, objid))
        version = read_version(conn, name)  # again, under the migration lock
        _refuse_newer(version, name)
        if version < target:
            conn.execute("SET LOCAL statement_timeout = 0")
            for script in migrations.MIGRATIONS[version:]:
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
        conn.execute(
            "INSERT INTO meta (name, value) VALUES ('schema_version', %s)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (str(target),),
        )


class PostgresStore:
    """`StateStore` on a PostgreSQL database (see `state.store` and this module's notes)."""

    kind = "postgresql"
    shared = True

    def __init__(
        self, conn: psycopg.Connection[Any], location: StateLocation, *, readonly: bool
    ) -> None:
        """Use `PostgresStore.open`; this wraps an already migrated connection."""
        self.conn = conn
        self.location = location
        self._name = location.describe()
        self._secret = _password(location.url or "")
        self._readonly = readonly
        self._lost = False
        self._closed = False
        self._leading = False
        self._acquired = 0.0  # time.monotonic() when the run lock was taken
        self._mutex = threading.RLock()
        self._keys = lock_keys(conn)
        self._session = _Session(conn)

    @classmethod
    def open(
        cls, location: StateLocation, *, readonly: bool = False
    ) -> PostgresStore | SQLiteStore:
        """Connect (and, for writing, migrate). Read-only, an empty database reads as
        empty (an in-memory view; nothing is created), and one an older syncctl made
        is refused until a run upgrades it."""
        name = location.describe()
        conn = connect(location, readonly=readonly)
        try:
            if readonly:
                version = read_version(conn, name)
                _refuse_newer(version, name)
                if version == 0:
                    conn.close()
                    return SQLiteStore(
                        SQLiteStore.empty(location.state_dir),
                        location.state_dir,
                        readonly=True,
                        name=name,
                    )
                if version < len(migrations.MIGRATIONS):
                    raise StateError(
                        f"{name} has schema {version}, older than this syncctl's "
                        f"{len(migrations.MIGRATIONS)}; a read-only view cannot upgrade it",
                        hint="run `syncctl reconcile` (or `syncctl doctor` after it) once: "
                        "a run upgrades the schema in place",
                    )
            else:
                migrate(conn, name)
            return cls(conn, location, readonly=readonly)
        except psycopg.Error as exc:
            conn.close()
            raise _error(name, "open", exc, _password(location.url or ""), lost=False) from None
        except BaseException:
            conn.close()
            raise

    @staticmethod
    def exists(location: StateLocation) -> bool:
        conn = connect(location, readonly=True)
        try:
            return read_version(conn, location.describe()) > 0
        except psycopg.Error as exc:
            raise _error(location.describe(), "read", exc, None, lost=False) from None
        finally:
            conn.close()

    # -- StateStore -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def readonly(self) -> bool:
        return self._readonly

    @property
    def lost(self) -> bool:
        return self._lost

    @property
    def leading(self) -> bool:
        """This store's session took the run lock (and has not let it go)."""
        return self._leading

    def _live(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise StateError(f"the journal {self._name} is closed")
        if self._lost:
            raise StoreLost(
                f"lost the connection to the state store {self._name} earlier in this run: "
                "stopping before any further side effect",
                hint=_FIX_LOST,
            )
        return self.conn

    def _fail(self, what: str, exc: psycopg.Error) -> StateError:
        lost = self.conn.broken or self.conn.closed
        if lost:
            self._lost = True
        return _error(self._name, what, exc, self._secret, lost=lost, leading=self._leading)

    @contextmanager
    def reading(self, what: str = "read") -> Iterator[_Session]:
        with self._mutex:
            self._live()
            try:
                yield self._session
            except psycopg.Error as exc:
                raise self._fail(what, exc) from None

    @contextmanager
    def transaction(self, what: str) -> Iterator[_Session]:
        with self._mutex:
            conn = self._live()
            try:
                with conn.transaction():
                    if self._leading:
                        self._fence(conn)
                    yield self._session
            except psycopg.Error as exc:
                raise self._fail(what, exc) from None

    def _fence(self, conn: psycopg.Connection[Any]) -> None:
        """Inside the caller's transaction: this session still holds the run lock."""
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            " AND pid = pg_backend_pid() AND classid::bigint = %s AND objid::bigint = %s"
            " AND objsubid = 2 AND granted",
            self._keys,
        ).fetchone()
        if not row or not row[0]:
            self._lost = True
            raise StoreLost(
                f"this run no longer holds the run lock in {self._name}: "
                "stopping before its next side effect",
                hint=_FIX_LOST,
            )

    def json_value(self, column: str, field: str) -> str:
        return f"({column}::jsonb -> '{field}')"

    def json_text(self, column: str, field: str) -> str:
        return f"({column}::jsonb ->> '{field}')"

    def schema_version(self) -> int:
        with self.reading() as session:
            row = session.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def leading_for(self) -> float | None:
        return time.monotonic() - self._acquired if self._leading else None

    def after_import(self, session: Session) -> None:
        for table in ("runs", "entries"):
            session.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)"
            )

    def check_leadership(self) -> None:
        if not self._leading:
            return
        with self._mutex:
            conn = self._live()
            try:
                self._fence(conn)
            except psycopg.Error as exc:
                raise self._fail("check the run lock", exc) from None

    def _try_lock(self) -> bool:
        with self.reading("take the run lock") as session:
            row = session.execute(
                "SELECT pg_try_advisory_lock(?::int4, ?::int4)", self._keys
            ).fetchone()
        return bool(row and row[0])

    @contextmanager
    def run_lock(
        self,
        *,
        wait: bool = False,
        timeout: float | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> Iterator[None]:
        if self._readonly:
            raise StateError(f"the journal {self._name} is open read-only; it takes no lock")
        if self._leading:
            raise LockBusy(f"this process holds the run lock in {self._name} already")
        wait = wait or timeout is not None
        if not self._try_lock():
            if not wait:
                raise self._busy(None)
            if on_wait is not None:
                on_wait(
                    f"another syncctl run holds the run lock in {self._name} "
                    f"({self._describe_holder()})"
                )
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._try_lock():
                if deadline is not None and time.monotonic() >= deadline:
                    raise self._busy(timeout)
                time.sleep(POLL_SECONDS)
        self._leading = True
        self._acquired = time.monotonic()
        try:
            self._announce()
            yield
        finally:
            self._leading = False
            self._unlock()

    def _announce(self) -> None:
        """Say who holds the lock since when (for `doctor` and other hosts' messages)."""
        holder = {
            "application_name": application_name(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": iso(datetime.now(UTC)),
        }
        with self.transaction("record the run lock's holder") as session:
            session.execute(
                "INSERT INTO meta (name, value) VALUES ('lock_holder', ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (json.dumps({**holder, "backend_pid": self.conn.info.backend_pid}),),
            )

    def _unlock(self) -> None:
        with self._mutex:
            if self._lost or self._closed or self.conn.broken:
                return  # the session is gone, and its lock with it
            try:
                self.conn.execute("SELECT pg_advisory_unlock(%s::int4, %s::int4)", self._keys)
            except psycopg.Error:
                self._lost = self.conn.broken or self.conn.closed

    def _describe_holder(self) -> str:
        holder = self.lock_holder()
        return holder.describe() if holder else "it was let go just now"

    def _busy(self, after: float | None) -> LockBusy:
        holder = self.lock_holder() or Holder(None, None)
        return flock._busy(f"the run lock in {self._name}", holder, after=after)

    def lock_holder(self) -> Holder | None:
        with self.reading("read who holds the run lock"):
            return lock_holder(self.conn, self._keys)

    def close(self) -> None:
        with self._mutex:
            if not self._closed:
                self._closed = True
                self._leading = False
                self.conn.close()


def lock_holder(conn: psycopg.Connection[Any], keys: tuple[int, int]) -> Holder | None:
    """Who holds the run lock of `keys` in this database: `pg_locks` and
    `pg_stat_activity`, and the time the holder recorded taking it."""
    row = conn.execute(
        "SELECT a.pid, a.application_name, a.backend_start FROM pg_locks l"
        " JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.classid::bigint = %s"
        " AND l.objid::bigint = %s AND l.objsubid = 2 AND l.granted AND l.database ="
        " (SELECT oid FROM pg_database WHERE datname = current_database())",
        keys,
    ).fetchone()
    if row is None:
        return None
    backend_pid, app, connected = row
    found = None
    if conn.execute("SELECT to_regclass('meta')").fetchone() != (None,):
        found = conn.execute("SELECT value FROM meta WHERE name = 'lock_holder'").fetchone()
    return _holder(backend_pid, app or "", connected, found[0] if found else None)


@dataclass(frozen=True)
class Inspection:
    """What `doctor` reports of a PostgreSQL store (read-only; takes no lock)."""

    server_version: str
    schema: str
    version: int  # 0: no tables yet
    missing: list[str]  # rights the role lacks, e.g. "INSERT on entries"
    holder: Holder | None


def inspect(location: StateLocation) -> Inspection:
    """Reach the store and read its schema version, the role's rights and the lock's holder."""
    name = location.describe()
    conn = connect(location, readonly=True)
    try:
        server = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        schema = str(conn.execute("SELECT current_schema()").fetchone()[0])  # type: ignore[index]
        version = read_version(conn, name)
        missing: list[str] = []
        if version < len(migrations.MIGRATIONS):
            row = conn.execute("SELECT has_schema_privilege(%s, 'CREATE')", (schema,)).fetchone()
            if not (row and row[0]):
                missing.append(f"CREATE on schema {schema} (to create or upgrade the tables)")
        if version:
            for table in TABLES:
                if conn.execute(f"SELECT to_regclass('{table}')").fetchone() == (None,):
                    continue
                for right in ("SELECT", "INSERT", "UPDATE", "DELETE"):
                    row = conn.execute(
                        "SELECT has_table_privilege(%s, %s)", (table, right)
                    ).fetchone()
                    if not (row and row[0]):
                        missing.append(f"{right} on {table}")
        holder = lock_holder(conn, lock_keys(conn))
        return Inspection(server, schema, version, missing, holder)
    except psycopg.Error as exc:
        raise _error(name, "inspect", exc, _password(location.url or ""), lost=False) from None
    finally:
        conn.close()


def _holder(backend_pid: int, app: str, connected: datetime | None, recorded: str | None) -> Holder:
    """The holder from its session (`syncctl@HOST:PID`) and, when it is the same
    session, the time it recorded taking the lock."""
    host, pid, since = None, None, connected
    match = re.fullmatch(r"syncctl@(.+):(\d+)", app)
    if match:
        host, pid = match.group(1), int(match.group(2))
    if recorded:
        try:
            info = json.loads(recorded)
            if info.get("backend_pid") == backend_pid:
                since = datetime.fromisoformat(info["since"])
                host = host or info.get("host")
                pid = pid or info.get("pid")
        except (ValueError, KeyError, TypeError):
            pass
    if pid is None:
        host = host or f"{app or 'an unnamed session'} (backend {backend_pid})"
        pid = backend_pid
    return Holder(pid, since.astimezone(UTC) if since else None, host=host)


def _error(
    name: str,
    what: str,
    exc: psycopg.Error,
    secret: str | None,
    *,
    lost: bool,
    leading: bool = False,
) -> StateError:
    """One line: what failed on which store, the cause (never a password), the fix."""
    cause = _first_line(exc, secret)
    if lost:
        stop = "stopping before its next side effect" if leading else "nothing more is written"
        return StoreLost(
            f"lost the connection to the state store {name} ({cause}): {stop}",
            hint=_FIX_LOST,
        )
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        fix = _FIX_PRIVILEGES
    elif isinstance(exc, pg_errors.QueryCanceled):
        fix = "the database is slow or a lock is held long: check the server (pg_stat_activity)"
    else:
        fix = _FIX_OTHER
    return StateError(f"cannot {what} in the state store {name}: {cause}", hint=fix)


__all__ = ["PostgresStore", "application_name", "connect", "migrate", "redact_url"]
