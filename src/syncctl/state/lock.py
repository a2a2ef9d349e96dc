"""One run at a time: an exclusive `flock` on `state_dir/lock`.

Two runs applying at once (a cron job overlapping a slow run, an operator's
manual run during a timer's) could both see a missing invite and both mint
one. The kernel holds the lock for the open file and frees it when the process
dies, even on kill -9, so a crashed run never leaves a stale lock behind; the
pid and start time written into the file are only there to name the holder in
the error message.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

from syncctl.errors import LockBusy, StateError
from syncctl.state.location import check_state_dir

LOCK_NAME = "lock"

#: How often a waiting run with a timeout retries.
POLL_SECONDS = 0.05

_HINT = "wait for it, or use --wait to queue"


def _open_lock_file(state_dir: Path) -> tuple[Path, int]:
    """Create state_dir (0700) and the lock file (0600); return its descriptor."""
    path = state_dir / LOCK_NAME
    check_state_dir(state_dir)
    try:
        if not state_dir.exists():
            # exist_ok: two runs starting together both get here.
            state_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
            os.chmod(state_dir, 0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StateError(
            f"cannot create the lock file {path}: {exc.strerror or exc}",
            hint="fix the permissions of the state_dir, or point [run] state_dir elsewhere",
        ) from exc
    return path, fd


def _holder(fd: int) -> str:
    """'pid N, started T' as written by the holder, or what is known of it."""
    try:
        raw = os.pread(fd, 4096, 0)
        info = json.loads(raw.decode() or "{}")
        return f"pid {int(info['pid'])}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown"  # the holder has not written its line yet


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _acquire(fd: int, path: Path, *, wait: bool, timeout: float | None) -> None:
    if not wait:
        if not _try_lock(fd):
            raise LockBusy(f"another syncctl run holds {path} ({_holder(fd)})", hint=_HINT)
        return
    if timeout is None:
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocks until the holder releases or dies
        return
    deadline = time.monotonic() + timeout
    while not _try_lock(fd):
        if time.monotonic() >= deadline:
            raise LockBusy(
                f"another syncctl run still holds {path} after {timeout:g} s ({_holder(fd)})",
                hint="wait for it, or raise the timeout",
            )
        time.sleep(POLL_SECONDS)


@contextmanager
def state_lock(
    state_dir: Path, *, wait: bool = False, timeout: float | None = None
) -> Iterator[None]:
    """Hold the state directory's exclusive lock for the duration of the block.

    Without `wait`, a busy lock raises LockBusy at once, naming the holder's
    pid and start time. With `wait`, block until the holder is gone, or
    until `timeout` seconds have passed (then LockBusy). `timeout` alone
    implies `wait`.
    """
    path, fd = _open_lock_file(Path(state_dir))
    try:
        _acquire(fd, path, wait=wait or timeout is not None, timeout=timeout)
        try:
            line = json.dumps(
                {
                    "pid": os.getpid(),
                    "started": datetime.now(UTC).isoformat(timespec="seconds"),
                }
            )
            os.ftruncate(fd, 0)
            os.pwrite(fd, (line + "\n").encode(), 0)
        except OSError as exc:
            fcntl.flock(fd, fcntl.LOCK_UN)
            raise StateError(
                f"cannot write the lock file {path}: {exc.strerror or exc}",
                hint="fix the permissions or free disk space in the state_dir",
            ) from exc
        try:
            yield
        finally:
            with suppress(OSError):
                os.ftruncate(fd, 0)  # while still held: a free lock names no holder
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
