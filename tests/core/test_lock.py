"""The state lock: one run at a time, a clear line naming the holder, no stale locks."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncctl.errors import LockBusy, StateDirUnusable, StateError
from syncctl.state.lock import state_lock

HOLDER = """
import sys, time
from pathlib import Path
from syncctl.state.lock import state_lock
with state_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def child_holder(state_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock (it sleeps until killed)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_lock_creates_private_dir_and_file(state_dir: Path) -> None:
    with state_lock(state_dir):
        pass
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / "lock").stat().st_mode) == 0o600


def test_lock_is_free_again_after_the_block(state_dir: Path) -> None:
    with state_lock(state_dir):
        pass
    with state_lock(state_dir):
        pass


def test_lock_is_released_when_the_block_raises(state_dir: Path) -> None:
    with pytest.raises(RuntimeError), state_lock(state_dir):
        raise RuntimeError("boom")
    with state_lock(state_dir):
        pass


def test_holder_writes_its_pid_into_the_lock_file(state_dir: Path) -> None:
    with state_lock(state_dir):
        assert f'"pid": {os.getpid()}' in (state_dir / "lock").read_text()


def test_second_lock_in_same_process_is_busy_and_names_the_pid(state_dir: Path) -> None:
    with state_lock(state_dir), pytest.raises(LockBusy) as caught, state_lock(state_dir):
        pass
    message = str(caught.value)
    assert f"pid {os.getpid()}" in message
    assert str(state_dir / "lock") in message
    assert "started " in message
    assert "--wait" in message
    assert caught.value.exit_code == 3


def test_lock_held_by_another_process_is_busy(
    state_dir: Path, child_holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(LockBusy, match=rf"pid {child_holder.pid}\b"), state_lock(state_dir):
        pass


def test_lock_of_a_killed_process_does_not_block(
    state_dir: Path, child_holder: subprocess.Popen[str]
) -> None:
    os.kill(child_holder.pid, signal.SIGKILL)
    child_holder.wait(timeout=10)
    assert f'"pid": {child_holder.pid}' in (state_dir / "lock").read_text()  # stale pid left
    with state_lock(state_dir):
        assert f'"pid": {os.getpid()}' in (state_dir / "lock").read_text()


def test_wait_acquires_once_the_holder_releases(state_dir: Path) -> None:
    held = threading.Event()

    def hold() -> None:
        with state_lock(state_dir):
            held.set()
            time.sleep(0.2)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(5)
        started = time.monotonic()
        with state_lock(state_dir, wait=True):
            waited = time.monotonic() - started
    finally:
        thread.join(5)
    assert waited >= 0.1


def test_wait_with_timeout_gives_up_with_lock_busy(state_dir: Path) -> None:
    with state_lock(state_dir):
        started = time.monotonic()
        with pytest.raises(LockBusy, match=r"after 0\.2 s"), state_lock(state_dir, timeout=0.2):
            pass
        assert 0.15 <= time.monotonic() - started < 2


def test_state_dir_under_a_file_is_refused_as_bad_config(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with (
        pytest.raises(StateDirUnusable, match=r"cannot be created: .*file is a file") as caught,
        state_lock(blocker / "state"),
    ):
        pass
    assert caught.value.exit_code == 2
    assert isinstance(caught.value, StateError)
