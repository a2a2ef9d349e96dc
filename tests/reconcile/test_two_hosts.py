"""Two hosts, one truth: `reconcile` processes sharing a PostgreSQL state store.

Each "host" is a campaign directory of its own (its own syncctl.toml, .env
and state_dir) whose .env names the same database in SYNCCTL_STATE_URL; the
services are one sandbox. The runs are real processes, as on two machines.
Whatever happens to the leader (another host racing it, its database
connection killed, the server restarted), every side effect is in the
services exactly once at the end (`sandbox.verify`, which reads only the
emulators' records).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from syncctl import config as config_mod
from syncctl.engine.reconcile import reconcile
from syncctl.errors import LockBusy
from syncctl.sandbox.seed import seed_demo
from syncctl.sandbox.stack import VIP_PRICE_ID, VIP_PRODUCT_ID, Sandbox
from syncctl.sandbox.verify import violations
from syncctl.state.journal import Journal, open_for_run
from syncctl.state.postgres import LOCK_CLASS

#: Small on purpose: a run that took over waits this (plus 2 s) before settling
#: what a leader that lost its connection left in flight.
TIMEOUT_SECONDS = 1


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sb:
        seed_demo(sb)
        yield sb


def make_host(sandbox: Sandbox, root: Path, name: str, url: str, **run: Any) -> Path:
    """A campaign directory for one host, pointing at the shared store."""
    directory = root / name
    config_path, env_path = sandbox.write_files(directory)
    settings = {"timeout_seconds": TIMEOUT_SECONDS, **run}
    with config_path.open("a") as f:
        f.writelines(f"{key} = {value}\n" for key, value in settings.items())
    with env_path.open("a") as f:
        f.write(f"SYNCCTL_STATE_URL={url}\n")
    return directory


def start(host: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCCTL_", "STRIPE_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "syncctl", "-q", "reconcile", *args],
        cwd=host,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def converge(host: Path, rounds: int = 3) -> None:
    """Run as `host` until a run ends ok (one right after a takeover may leave rows for
    the next). In this process: the test is the other host, and saves a start-up."""
    config = config_of(host)
    results = []
    for _ in range(rounds):
        result = reconcile(config)
        results.append(result.exit_code(False))
        if result.ok:
            return
    raise AssertionError(f"no run converged: {results}")


def new_buyer(sandbox: Sandbox, n: int) -> None:
    email = f"backer{n}@example.com"
    sandbox.mautic.add_contact(email, firstname="Backer", lastname=str(n), opt_in_confirmed=True)
    sandbox.stripe.add_session(
        email, name=f"Backer {n}", line_items=[(VIP_PRICE_ID, VIP_PRODUCT_ID, 1)]
    )


def config_of(host: Path) -> config_mod.Config:
    return config_mod.load(host / "syncctl.toml", host / ".env")


def writes_after(sandbox: Sandbox, moment: float) -> list[str]:
    """Writes the services received after `moment` (arrival: logged time less the latency)."""
    found = []
    for emulator in sandbox.emulators.values():
        for e in emulator.exchanges():
            arrived = e.at - emulator.latency
            searched = any(re.search(p, e.path) for p in emulator.read_posts)
            if e.is_write and not searched and arrived > moment:
                found.append(f"{e.method} {e.path}")
    return found


def session_gone(pg_server: Any, pid: int, timeout: float = 5) -> float:
    """Wait until the session of syncctl process `pid` is gone; the time it was seen gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with pg_server.admin() as conn:
            rows = conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE application_name LIKE %s",
                (f"syncctl@%:{pid}",),
            ).fetchall()
        if not rows:
            return time.time()
        time.sleep(0.01)
    raise AssertionError(f"the session of pid {pid} is still there")


def wait_for_writes(sandbox: Sandbox, count: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while sandbox.write_count() < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.01)


@pytest.mark.slow
def test_two_hosts_started_together_twenty_times_apply_each_effect_once(
    sandbox: Sandbox, tmp_path: Path, pg_url: str
) -> None:
    a = make_host(sandbox, tmp_path, "host-a", pg_url)
    b = make_host(sandbox, tmp_path, "host-b", pg_url)
    outcomes = []
    for n in range(20):
        new_buyer(sandbox, n)
        first, second = start(a), start(b)
        results = [finish(first), finish(second)]
        codes = sorted(code for code, _ in results)
        outcomes.append(codes)
        assert codes in ([0, 0], [0, 3]), results  # one applies; the other waited its turn
        for _, err in results:
            assert err == "", err  # -q: a busy lock is silent
        assert violations(sandbox, config_of(a)) == []
    assert sum(codes == [0, 3] for codes in outcomes) >= 1, outcomes  # they did meet
    with Journal.open(config_of(a).state, readonly=True) as journal:
        runs = journal.runs(limit=100)
    assert len(runs) == sum(codes.count(0) for codes in outcomes)
    assert all(run.outcome == "ok" for run in runs)


@pytest.mark.slow
def test_a_leader_whose_connection_is_killed_sends_nothing_after_and_the_other_host_completes(
    tmp_path: Path, pg_url: str, pg_server: Any
) -> None:
    with Sandbox(latency=0.03) as sandbox:
        seed_demo(sandbox)
        for n in range(5):
            new_buyer(sandbox, n)
        a = make_host(sandbox, tmp_path, "host-a", pg_url, concurrency=2)
        b = make_host(sandbox, tmp_path, "host-b", pg_url, concurrency=2)
        leader = start(a)
        wait_for_writes(sandbox, 5, leader)
        assert pg_server.terminate(application_name=f"syncctl@%:{leader.pid}") == 1
        cut = session_gone(pg_server, leader.pid)
        code, err = finish(leader)
        assert code == 1
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in err, err
        assert "lost the connection to the state store postgresql://syncctl:***@" in lines[0]
        assert "s3cret" not in err
        assert writes_after(sandbox, cut + 0.02) == []  # no side effect after the cut
        converge(b)
        assert violations(sandbox, config_of(b)) == []


@pytest.mark.slow
def test_a_server_restart_mid_run_fails_it_cleanly_and_the_next_run_converges(
    tmp_path: Path, pg_url: str, pg_server: Any
) -> None:
    with Sandbox(latency=0.03) as sandbox:
        seed_demo(sandbox)
        for n in range(5):
            new_buyer(sandbox, n)
        a = make_host(sandbox, tmp_path, "host-a", pg_url, concurrency=2)
        run = start(a)
        wait_for_writes(sandbox, 5, run)
        pg_server.restart()
        code, err = finish(run)
        assert code == 1
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in err, err
        assert "the state store postgresql://syncctl:***@" in lines[0]
        converge(a)
        assert violations(sandbox, config_of(a)) == []


def test_a_leader_keeps_the_lock_across_runs_with_a_journal_it_passes_in(
    sandbox: Sandbox, tmp_path: Path, pg_url: str
) -> None:
    """The hook for `watch`: take the lock once (a standby waits for it with a
    timeout, in a loop), then run cycle after cycle on that journal."""
    config = config_of(make_host(sandbox, tmp_path, "host-a", pg_url))
    with open_for_run(config.state, wait=True, timeout=5) as journal:
        assert reconcile(config, journal=journal).ok
        with pytest.raises(LockBusy), open_for_run(config.state):
            pass  # the other host, between two cycles of this one
        new_buyer(sandbox, 1)
        second = reconcile(config, journal=journal)
        assert second.ok and second.applied
        assert journal.leading_for() is not None
    assert violations(sandbox, config) == []


def watch(host: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCCTL_", "STRIPE_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "syncctl", "-q", "watch", "--interval", "1"],
        cwd=host,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def lock_holder_pid(pg_server: Any) -> int | None:
    """The OS pid (from `syncctl@HOST:PID`) of the session holding a syncctl run lock."""
    with pg_server.admin() as conn:
        row = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.classid::bigint = %s AND l.granted",
            (LOCK_CLASS,),
        ).fetchone()
    return int(row[0].rsplit(":", 1)[1]) if row else None


@pytest.mark.slow
def test_two_watch_processes_the_standby_takes_over_when_the_leader_is_killed(
    tmp_path: Path, pg_url: str, pg_server: Any
) -> None:
    with Sandbox(latency=0.03) as sandbox:
        seed_demo(sandbox)
        for n in range(6):
            new_buyer(sandbox, n)
        hosts = [make_host(sandbox, tmp_path, f"host-{h}", pg_url, concurrency=2) for h in "ab"]
        procs = [watch(host) for host in hosts]
        try:
            deadline = time.monotonic() + 30
            while (holder := lock_holder_pid(pg_server)) is None or sandbox.write_count() < 4:
                assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
                time.sleep(0.01)
            leader = next(p for p in procs if p.pid == holder)  # in a busy cycle
            standby = next(p for p in procs if p is not leader)
            leader.kill()
            leader.wait(10)
            killed = datetime.now(UTC)
            config = config_of(hosts[0])
            took = None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                assert standby.poll() is None
                if took is None:
                    with Journal.open(config.state, readonly=True) as journal:
                        runs = [r for r in journal.runs(limit=5) if r.started_at > killed]
                    if runs:
                        took = (min(r.started_at for r in runs) - killed).total_seconds()
                if took is not None and violations(sandbox, config) == []:
                    break
                time.sleep(0.2)
            assert took is not None and took < 15, took  # the standby took over
            assert violations(sandbox, config) == []  # and finished the work, each effect once
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.communicate(timeout=30)
