"""Can this state directory be used? Checked before anything is created in it.

A `state_dir` that is a file, lies under a file, or sits where this user
(or a read-only file system) forbids writing is a config mistake: every
command that needs the state refuses it at once, with one line and exit 2,
and `doctor` fails it with the same words. The check creates nothing, so
doctor and dry runs stay read-only.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from syncctl.errors import ConfigError, StateDirUnusable

FIX = "point [run] state_dir at a directory syncctl may create and write, or fix that path"


def state_dir_problem(path: Path, *, write: bool = True) -> str | None:
    """Why `path` cannot be the state directory, or None.

    An existing `path` must be a directory, writable when `write`; a missing
    one needs its nearest existing ancestor to be a directory syncctl may
    create entries in. Permission bits are asked of the kernel (`os.access`),
    so for root only what stops root counts: a file in the way, a read-only
    file system.
    """
    probe = Path(path)
    while True:
        try:
            mode = probe.stat().st_mode
            break
        except (FileNotFoundError, NotADirectoryError):
            if probe.parent == probe:
                return f"{path} cannot be created: none of its folders exists"
            probe = probe.parent
        except OSError as exc:
            return f"{path} cannot be used: {probe}: {exc.strerror or exc}"
    exists = probe == Path(path)
    if not stat.S_ISDIR(mode):
        if exists:
            return f"{path} is a file, not a directory"
        return f"{path} cannot be created: {probe} is a file, not a directory"
    if exists and not write:
        return None
    if not _may_write(probe):
        why = "is on a read-only file system" if _read_only(probe) else "is not writable"
        return f"{path} {why}" if exists else f"{path} cannot be created: {probe} {why}"
    return None


def check_state_dir(path: Path, *, write: bool = True) -> None:
    """Raise StateDirUnusable (exit 2) with one line when `path` cannot be used."""
    problem = state_dir_problem(path, write=write)
    if problem is not None:
        raise StateDirUnusable(f"state_dir {problem}", hint=FIX)


def _may_write(directory: Path) -> bool:
    """May this process create entries in `directory`? (The kernel's answer.)"""
    return os.access(directory, os.W_OK | os.X_OK)


class StateUrlInvalid(ConfigError):
    """`SYNCCTL_STATE_URL` or `[run] state_url` is not a PostgreSQL URL (exit 2)."""


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


# -- where the state lives: a directory (SQLite), or a PostgreSQL database ----------------

#: The URL schemes a shared state store may be given with.
PG_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True)
class StateLocation:
    """Where a syncctl's state lives.

    `state_dir` always exists in the config: with no `url` it holds the
    SQLite journal and the lock file; with a `url` (`[run] state_url`, or
    `SYNCCTL_STATE_URL`, which wins) the journal and the run lock are in
    that PostgreSQL database, shared by every host pointed at it.

    `url` may carry a password: it is never printed, and `describe()`
    shows it with the password masked.
    """

    state_dir: Path
    url: str | None = field(default=None, repr=False)
    #: Where the URL came from, for messages: "SYNCCTL_STATE_URL" or "[run] state_url".
    source: str = ""

    @property
    def shared(self) -> bool:
        """The state is a PostgreSQL database that several hosts may share."""
        return bool(self.url)

    def describe(self) -> str:
        """The store, for messages: the state dir, or the URL without its password."""
        return redact_url(self.url) if self.url else str(self.state_dir)

    def __repr__(self) -> str:
        return f"StateLocation({self.describe()!r})"


def check_state_url(url: str, source: str) -> str:
    """The URL as given, or StateUrlInvalid (exit 2) naming `source` and the fix; never the URL."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - urlsplit checks the range only when asked
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in PG_SCHEMES or not (parts.path.strip("/")):
        raise StateUrlInvalid(
            f"{source} is not a PostgreSQL URL with a database name",
            hint="write it as postgresql://USER@HOST[:PORT]/DATABASE "
            "(the password only in SYNCCTL_STATE_URL, in the environment or .env)",
        )
    return url


def redact_url(url: str) -> str:
    """`postgresql://user:***@host:5432/db`: the password (and any `password=`) masked."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<a state_url that cannot be parsed>"
    netloc = host if ":" not in host else f"[{host}]"
    if port is not None:
        netloc += f":{port}"
    if parts.username is not None:
        user = parts.username + (":***" if parts.password is not None else "")
        netloc = f"{user}@{netloc}"
    query = urlencode(
        [
            (k, "***" if k.lower() in ("password", "sslpassword") else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*/",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
