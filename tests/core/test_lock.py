"""The state lock: one run at a time, a clear line naming the holder, no stale locks."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncctl.errors import LockBusy, StateDirUnusable, StateError, StoreLost
from syncctl.state.journal import HoldKind, Journal, open_for_run
from syncctl.state.location import StateLocation
from syncctl.state.lock import state_lock
from syncctl.state.postgres import PostgresStore
from tests.core.conftest import POSTGRES_ONLY

HOLDER = """
import sys, time
from pathlib import Path
from syncctl.state.lock import state_lock
with state_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def holding(
    script: str, state_dir: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """Run `script` in another process until it prints "held"; killed afterwards."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(state_dir)], stdout=subprocess.PIPE, text=True, env=env
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


@pytest.fixture
def child_holder(state_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock (it sleeps until killed)."""
    yield from holding(HOLDER, state_dir)


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


# -- the run lock of either store (flock for SQLite, an advisory lock in PostgreSQL) ---------

RUN_HOLDER = """
import os, sys, time
from pathlib import Path
from syncctl.state.journal import open_for_run
from syncctl.state.location import StateLocation
where = StateLocation(Path(sys.argv[1]), os.environ.get("TEST_STATE_URL") or None)
with open_for_run(where) as journal:
    journal.set_meta("child", "here")
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def run_holder(where: Path | StateLocation, state_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the run lock of the store under test (it sleeps until killed)."""
    env = dict(os.environ)
    if isinstance(where, StateLocation):
        env["TEST_STATE_URL"] = str(where.url)
    yield from holding(RUN_HOLDER, state_dir, env)


def test_run_lock_is_free_again_after_the_block_and_after_a_raise(
    where: Path | StateLocation,
) -> None:
    with open_for_run(where):
        pass
    with pytest.raises(RuntimeError), open_for_run(where):
        raise RuntimeError("boom")
    with open_for_run(where) as journal:
        assert journal.lock_holder() is not None


def test_second_run_is_busy_and_names_the_holder(where: Path | StateLocation) -> None:
    with open_for_run(where), pytest.raises(LockBusy) as caught, open_for_run(where):
        pass
    message = str(caught.value)
    assert f"pid {os.getpid()}" in message and "started " in message and "--wait" in message
    assert caught.value.exit_code == 3
    assert "\n" not in message and "s3cret" not in message
    if isinstance(where, StateLocation):
        assert f"syncctl@{socket.gethostname().split('.')[0]} pid {os.getpid()}" in message
        assert "the run lock in postgresql://syncctl:***@127.0.0.1" in message


def test_run_lock_held_by_another_process_is_busy_and_named(
    where: Path | StateLocation, run_holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(LockBusy, match=rf"pid {run_holder.pid}\b"), open_for_run(where):
        pass
    with Journal.open(where, readonly=True) as reader:
        holder = reader.lock_holder()
    assert holder is not None and holder.pid == run_holder.pid


def test_run_lock_of_a_killed_process_is_free_at_once(
    where: Path | StateLocation, run_holder: subprocess.Popen[str]
) -> None:
    os.kill(run_holder.pid, signal.SIGKILL)
    run_holder.wait(timeout=10)
    with open_for_run(where, timeout=5) as journal:  # the server frees it as the socket closes
        assert journal.get_meta("child") == "here"


def test_run_lock_standby_takes_over_once_the_holder_dies(
    where: Path | StateLocation, run_holder: subprocess.Popen[str]
) -> None:
    """What `watch` on a second host does: wait with a timeout, take over when free."""
    heard: list[str] = []
    killer = threading.Timer(0.3, lambda: os.kill(run_holder.pid, signal.SIGKILL))
    killer.start()
    started = time.monotonic()
    try:
        with open_for_run(where, wait=True, timeout=10, on_wait=heard.append):
            took = time.monotonic() - started
    finally:
        killer.cancel()
    assert 0.25 <= took < 3
    assert len(heard) == 1 and f"pid {run_holder.pid}" in heard[0]


def test_run_lock_wait_with_timeout_gives_up_with_lock_busy(where: Path | StateLocation) -> None:
    with open_for_run(where):
        started = time.monotonic()
        with pytest.raises(LockBusy, match=r"after 0\.2 s"), open_for_run(where, timeout=0.2):
            pass
        assert 0.15 <= time.monotonic() - started < 2


def test_writes_without_the_run_lock_go_on_while_a_run_holds_it(
    where: Path | StateLocation, run_holder: subprocess.Popen[str]
) -> None:
    """`syncctl hold` takes no run lock: it is not kept waiting by a run."""
    with Journal.open(where) as operator:
        operator.hold("ada@example.com", HoldKind.EMAIL, "dispute")
        assert [h.subject for h in operator.holds()] == ["ada@example.com"]


# -- fencing (PostgreSQL): a run that lost its connection makes no further write -------------


@POSTGRES_ONLY
def test_a_leader_whose_connection_is_killed_fails_its_next_write_with_one_line(
    where: StateLocation, pg_server: Any
) -> None:
    with open_for_run(where) as journal:
        journal.start("coupon:cs_1", "coupon", "a@example.org", run_id=None)
        assert pg_server.terminate() == 1
        with pytest.raises(StoreLost) as caught:
            journal.start("coupon:cs_2", "coupon", "b@example.org", run_id=None)
        message = str(caught.value)
        assert "lost the connection to the state store postgresql://syncctl:***@" in message
        assert "stopping before its next side effect" in message
        assert "\n" not in message and "s3cret" not in message
        assert journal.lost
        with pytest.raises(StoreLost):  # and every call after it, at once
            journal.latest("coupon:cs_1")
        with pytest.raises(StoreLost):
            journal.check_leadership()
    with Journal.open(where, readonly=True) as reader:
        assert [e.key for e in reader.in_flight()] == ["coupon:cs_1"]  # left for recovery
        assert reader.latest("coupon:cs_2") is None


@POSTGRES_ONLY
def test_the_fence_fails_a_write_once_the_session_no_longer_holds_the_lock(
    where: StateLocation,
) -> None:
    with open_for_run(where) as journal:
        journal.check_leadership()
        store = journal.store
        assert isinstance(store, PostgresStore)
        store.conn.execute("SELECT pg_advisory_unlock_all()")  # what no syncctl code does
        with pytest.raises(StoreLost, match="no longer holds the run lock"):
            journal.set_cursor("stripe", "1")
        with pytest.raises(StoreLost):
            journal.check_leadership()
    with Journal.open(where) as reader:
        assert reader.cursor("stripe") is None


@POSTGRES_ONLY
def test_a_server_restart_ends_the_run_with_one_line_and_the_next_takes_the_lock(
    where: StateLocation, pg_server: Any
) -> None:
    with open_for_run(where) as journal:
        pg_server.restart()
        with pytest.raises(StoreLost, match="lost the connection"):
            journal.begin_run("incremental", dry_run=False)
    with open_for_run(where, timeout=5) as journal:
        assert journal.runs() == []


@POSTGRES_ONLY
def test_sessions_name_themselves_for_pg_stat_activity(where: StateLocation) -> None:
    with open_for_run(where) as journal:
        store = journal.store
        assert isinstance(store, PostgresStore)
        name = store.conn.execute("SHOW application_name").fetchone()
        settings = dict(
            store.conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN"
                " ('statement_timeout', 'tcp_keepalives_idle',"
                " 'idle_in_transaction_session_timeout')"
            ).fetchall()
        )
    assert (
        name is not None
        and name[0] == f"syncctl@{socket.gethostname().split('.')[0]}:{os.getpid()}"
    )
    assert settings == {
        "statement_timeout": "15000",
        "tcp_keepalives_idle": "5",
        "idle_in_transaction_session_timeout": "60000",
    }
