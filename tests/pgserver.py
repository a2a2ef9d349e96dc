"""A throwaway PostgreSQL server for the tests: initdb in a temp dir, a free port.

The binaries come from PATH or Debian's /usr/lib/postgresql/*/bin (`.ci/run`
installs the `postgresql` package when neither has them). PostgreSQL
refuses to run as root, so as root the server runs as the `postgres`
account (or `nobody`), its data and socket in a temp dir that account owns.
fsync is off: a crash of the test machine loses nothing anyone needs.

The database's default collation is ICU's en-US where the server has ICU
(Debian's has), not C: so the store's reliance on byte order (prefix
ranges on keys, ISO timestamps as text) is tested against a collation that
would break it, and the schema's `COLLATE "C"` columns are what keep it right.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

ADMIN = "syncctl_admin"
ADMIN_PASSWORD = "admin-pw-Zq8"
#: The role syncctl connects as in the tests: not a superuser, as in production.
ROLE = "syncctl"
PASSWORD = "s3cret-Pw-Xy7"
#: The database the tests' schemas live in (owned by ROLE).
DATABASE = "syncctl_tests"


def find_bin_dir() -> Path | None:
    """Where initdb, pg_ctl and postgres live: PATH first, then Debian's versioned dirs."""
    found = [shutil.which(name) for name in ("initdb", "postgres")]
    if all(found):
        return Path(os.path.realpath(str(found[0]))).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda d: int(Path(d).parent.name) if Path(d).parent.name.isdigit() else 0,
        reverse=True,
    )
    for directory in candidates:
        if all((Path(directory) / name).exists() for name in ("initdb", "postgres")):
            return Path(directory)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> pwd.struct_passwd | None:
    """The account to run the server as: None when not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a postgres nor a nobody account exists")


class PgServer:
    """One server for the whole test session; a fresh database per test."""

    def __init__(self, bin_dir: Path, *, durable: bool = False) -> None:
        """`durable`: fsync on, as a real server (benchmarks); the tests run without."""
        self.bin_dir = bin_dir
        self.durable = durable
        self.base = Path(tempfile.mkdtemp(prefix="syncctl-pg-"))
        self.data = self.base / "data"
        self.port = _free_port()
        self.account = _run_as()
        self.proc: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)
        self.log = self.base / "server.log"
        if self.account is not None:
            os.chown(self.base, self.account.pw_uid, self.account.pw_gid)
        self.base.chmod(0o700)

    # -- processes ----------------------------------------------------------------------

    def _popen(self, args: list[str], **kw: object) -> subprocess.Popen[bytes]:
        user = {}
        if self.account is not None:
            user = {
                "user": self.account.pw_uid,
                "group": self.account.pw_gid,
                "extra_groups": [],
            }
        return subprocess.Popen(args, cwd=self.base, **user, **kw)  # type: ignore[call-overload]

    def init(self) -> None:
        pwfile = self.base / "pw"
        pwfile.write_text(ADMIN_PASSWORD + "\n")
        if self.account is not None:
            os.chown(pwfile, self.account.pw_uid, self.account.pw_gid)
        common = [
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            ADMIN,
            "--pwfile",
            str(pwfile),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        ]
        for extra in (
            ["--locale=C.UTF-8", "--locale-provider=icu", "--icu-locale=en-US"],
            ["--locale=C.UTF-8"],
            [],
        ):
            shutil.rmtree(self.data, ignore_errors=True)
            with open(self.base / "initdb.log", "wb") as log:
                proc = self._popen([*common, *extra], stdout=log, stderr=subprocess.STDOUT)
                if proc.wait(120) == 0:
                    return
        raise RuntimeError(f"initdb failed: {(self.base / 'initdb.log').read_text()[-2000:]}")

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = self._popen(
                [
                    str(self.bin_dir / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.base),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    *(
                        []
                        if self.durable
                        else [
                            "-c",
                            "fsync=off",
                            "-c",
                            "synchronous_commit=off",
                            "-c",
                            "full_page_writes=off",
                        ]
                    ),
                    "-c",
                    "max_connections=200",
                    "-c",
                    "shared_buffers=32MB",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.admin().close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"PostgreSQL did not start: {self.log.read_text()[-2000:]}"
                    ) from None
                time.sleep(0.05)

    def stop(self, *, mode: int = signal.SIGINT) -> None:
        """SIGINT: fast shutdown (sessions are ended, as in a server restart)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(mode)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop(mode=signal.SIGQUIT)  # immediate: the data is thrown away
        shutil.rmtree(self.base, ignore_errors=True)

    # -- databases ----------------------------------------------------------------------

    def admin(self, dbname: str = "postgres") -> psycopg.Connection:
        """A superuser connection over the unix socket."""
        return psycopg.connect(
            host=str(self.base), port=self.port, user=ADMIN, dbname=dbname, autocommit=True
        )

    def setup_roles(self) -> None:
        with self.admin() as conn:
            conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
            conn.execute(f'CREATE DATABASE "{DATABASE}" OWNER "{ROLE}"')

    def url(
        self,
        schema: str | None = None,
        *,
        user: str = ROLE,
        password: str | None = PASSWORD,
        dbname: str = DATABASE,
    ) -> str:
        """The URL syncctl is given; with `schema`, its tables live in that schema."""
        auth = f"{user}:{password}" if password is not None else user
        options = f"?options=-csearch_path%3D{schema}" if schema else ""
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}{options}"

    def create_schema(self, owner: str = ROLE) -> str:
        """A fresh schema owned by `owner` in the tests' database (far cheaper than a
        database: 1 ms against 300 ms); its name."""
        name = f"t{next(self._names)}"
        with self.admin(DATABASE) as conn:
            conn.execute(f'CREATE SCHEMA "{name}" AUTHORIZATION "{owner}"')
        return name

    def terminate(self, dbname: str = "", *, application_name: str | None = None) -> int:
        """pg_terminate_backend on every syncctl session (of `application_name`, a
        LIKE pattern) in `dbname` (default: the tests' database); how many."""
        dbname = dbname or DATABASE
        with self.admin() as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()"
                " AND application_name LIKE %s",
                (dbname, application_name or "syncctl@%"),
            ).fetchall()
        return len(rows)
