"""One run at a time: an exclusive `flock` on `state_dir/lock`.

Two runs applying at once (a cron job overlapping a slow run, an operator's
manual run during a timer's) could both see a missing invite and both mint
one. The kernel holds the lock for the open file and frees it when the process
dies, even on kill -9, so a crashed run never leaves a stale lock behind; the
pid and start time written into the file are only there to name the holder in
the error message.

This is the SQLite store's lock (one host). With a PostgreSQL store the run
lock is a session advisory lock on the store's own connection instead
(`state.postgres`); both are reached through `StateStore.run_lock`.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

from syncctl.errors import LockBusy, LockHeldTooLong, StateError
from syncctl.state.location import check_state_dir
from syncctl.state.records import STUCK_AFTER, Holder

__all__ = ["LOCK_NAME", "POLL_SECONDS", "STUCK_AFTER", "Holder", "running_holder", "state_lock"]

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


def _holder(fd: int) -> Holder:
    """The pid and start time the holder wrote, or what is known of them."""
    try:
        raw = os.pread(fd, 4096, 0)
        info = json.loads(raw.decode() or "{}")
        started = datetime.fromisoformat(info["started"])
        if started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
        return Holder(int(info["pid"]), started)
    except (OSError, ValueError, KeyError, TypeError):
        return Holder(None, None)


def _busy(path: Path | str, holder: Holder, *, after: float | None = None) -> LockBusy:
    waited = f" after {after:g} s" if after is not None else ""
    message = f"another syncctl run {'still ' if after else ''}holds {path}{waited}"
    message += f" ({holder.describe()})"
    hint = "wait for it, or raise the timeout" if after else _HINT
    stuck = holder.stuck and holder.started is not None
    if stuck and holder.started is not None:
        hours = (datetime.now(UTC) - holder.started).total_seconds() / 3600
        message = f"{message}, for {hours:.0f} h: that run looks stuck"
        hint = f"check it (ps -p {holder.pid}); if it hangs, stop it (kill {holder.pid})"
    return LockBusy(
        message, hint=hint, stuck=stuck, pid=holder.pid, held_since=holder.started, path=path
    )


def _span(seconds: float) -> str:
    """`45 s`, `12 min`, `2 h 05 min`."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def held_too_long(
    busy: LockBusy, fail_after: float, *, now: datetime | None = None
) -> LockHeldTooLong | None:
    """The failure a run that met `busy` ends with, when one holder has held the
    lock for over `fail_after` seconds (`[run] lock_busy_fail_after`); None for
    a routine overlap, a holder that has not written its line yet, or 0 (off).

    A hung run blocks every later one; each of them exiting 3 would look like
    success to systemd (SuccessExitStatus=3) and say nothing under cron -q.
    """
    if fail_after <= 0 or busy.held_since is None or busy.pid is None:
        return None
    held = ((now or datetime.now(UTC)) - busy.held_since).total_seconds()
    if held <= fail_after:
        return None
    stuck = ": that run looks stuck" if held > STUCK_AFTER.total_seconds() else ""
    where = busy.path if busy.path is not None else "the state directory's lock"
    return LockHeldTooLong(
        f"another syncctl run has held {where} for {_span(held)} (pid {busy.pid}, started "
        f"{busy.held_since.isoformat()}), over [run] lock_busy_fail_after = {fail_after:g} s"
        f"{stuck}",
        hint=f"check it (ps -p {busy.pid}); if it hangs, stop it (kill {busy.pid}: the lock is "
        "freed at once); for a deliberate long run, raise lock_busy_fail_after",
    )


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _acquire(
    fd: int,
    path: Path,
    *,
    wait: bool,
    timeout: float | None,
    on_wait: Callable[[str], None] | None,
) -> None:
    if _try_lock(fd):
        return
    if not wait:
        raise _busy(path, _holder(fd))
    if on_wait is not None:
        on_wait(f"another syncctl run holds {path} ({_holder(fd).describe()})")
    if timeout is None:
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocks until the holder releases or dies
        return
    deadline = time.monotonic() + timeout
    while not _try_lock(fd):
        if time.monotonic() >= deadline:
            raise _busy(path, _holder(fd), after=timeout)
        time.sleep(POLL_SECONDS)


@contextmanager
def state_lock(
    state_dir: Path,
    *,
    wait: bool = False,
    timeout: float | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the state directory's exclusive lock for the duration of the block.

    Without `wait`, a busy lock raises LockBusy at once, naming the holder's
    pid and start time. With `wait`, block until the holder is gone, or
    until `timeout` seconds have passed (then LockBusy); `on_wait` hears
    once, before the wait, who holds it. `timeout` alone implies `wait`.
    """
    path, fd = _open_lock_file(Path(state_dir))
    try:
        _acquire(fd, path, wait=wait or timeout is not None, timeout=timeout, on_wait=on_wait)
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


def running_holder(state_dir: Path) -> Holder | None:
    """The run that holds the lock now, as far as its lock file tells; None if none.

    Never takes the lock, not even for a moment: a run starting at that
    instant would find it busy and exit 3. So this is a best effort for
    messages only (`syncctl hold` saying a run is in progress): the holder
    writes its pid and start time after taking the lock and blanks them
    before freeing it, and a pid that no longer exists (a run killed with
    -9 leaves its line behind) counts as no run.
    """
    try:
        fd = os.open(Path(state_dir) / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        holder = _holder(fd)
    finally:
        os.close(fd)
    if holder.pid is None:
        return None
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, under another account
    return holder
