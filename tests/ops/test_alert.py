"""Alerting (issue 13, part 4): pings, the lock-busy bound, and the OnFailure= hook.

A loopback receiver plays Healthchecks.io; the sandbox plays the services.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from syncctl.state.lock import state_lock
from tests.loopback import Receiver
from tests.ops.conftest import Run, one_error_line, set_lead_source

TOKEN = "0f4c2b7e-9a1d-4e55-b3c8-7d6e5f4a3b2c"  # a check's uuid: the URL's secret


def set_key(campaign: Path, section: str, key: str, value: object) -> None:
    """Set `[section] key = value` in the campaign's syncctl.toml (adding the section)."""
    config = campaign / "syncctl.toml"
    text = config.read_text()
    line = f"{key} = {json.dumps(value)}\n"
    if re.search(rf"^{key} = ", text, re.M):  # each key used here lives in one section only
        text = re.sub(rf"(?m)^{key} = .*\n", lambda _: line, text)
    elif f"\n[{section}]\n" in text:
        text = text.replace(f"\n[{section}]\n", f"\n[{section}]\n{line}", 1)
    else:
        text += f"\n[{section}]\n{line}"
    config.write_text(text)


@pytest.fixture
def pings(campaign: Path) -> Iterator[Receiver]:
    """A Healthchecks stand-in, set as the campaign's [alert] ping_url."""
    receiver = Receiver()
    set_key(campaign, "alert", "ping_url", f"{receiver.url}/{TOKEN}")
    yield receiver
    receiver.close()


def split(path: str) -> tuple[str, str | None]:
    """(`/start`, `/fail` or `` after the token, the rid)."""
    parts = urlsplit(path)
    assert parts.path.startswith(f"/{TOKEN}")
    rid = parse_qs(parts.query).get("rid", [None])[0]
    return parts.path.removeprefix(f"/{TOKEN}"), rid


def no_token_in(*texts: str) -> bool:
    return all(TOKEN not in text for text in texts)


# -- [alert] ping_url -------------------------------------------------------------------------


def test_a_run_pings_start_then_success_under_one_run_id(run: Run, pings: Receiver) -> None:
    result = run("reconcile")
    assert result.exit_code == 0, result.output
    start, success = pings.received
    assert [split(r.path)[0] for r in (start, success)] == ["/start", ""]
    rid = split(start.path)[1]
    assert rid and split(success.path)[1] == rid
    summary = success.body.decode()
    assert "\n" not in summary and "run" in summary and "API calls:" in summary
    assert no_token_in(result.stdout, result.stderr)


def test_a_failed_run_pings_fail_with_its_summary(run: Run, pings: Receiver, campaign) -> None:
    set_lead_source(campaign, "Bogus")  # Espo refuses the leads (400): exit 1
    result = run("reconcile")
    assert result.exit_code == 1
    start, fail = pings.received
    assert [split(r.path)[0] for r in (start, fail)] == ["/start", "/fail"]
    assert "espocrm" in fail.body.decode() and "failed" in fail.body.decode()


def test_a_dry_run_and_a_routine_busy_lock_ping_nothing(run: Run, pings: Receiver, config) -> None:
    assert run("reconcile", "--dry-run").exit_code == 0
    with state_lock(config.settings.run.state_path):
        assert run("reconcile").exit_code == 3
    assert pings.received == []


def test_a_ping_that_fails_never_fails_the_run_and_is_logged_once(run: Run, campaign) -> None:
    gone = Receiver()
    url = f"{gone.url}/{TOKEN}"
    gone.close()  # connection refused: every ping fails
    set_key(campaign, "alert", "ping_url", url)
    result = run("reconcile")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "alert ping" in line]
    assert len(warnings) == 1, result.stderr
    assert warnings[0].startswith("warning: alert ping (start) to http://127.0.0.1:")
    assert "/[redacted] failed" in warnings[0] and "the run goes on" in warnings[0]
    assert no_token_in(result.stdout, result.stderr)


def test_the_ping_url_is_never_shown_in_full(run: Run, pings: Receiver, campaign) -> None:
    shown = run("config", "show")
    assert shown.exit_code == 0
    assert re.search(r'^ping_url = "http://127\.0\.0\.1:\d+/\[redacted\]"$', shown.stdout, re.M)
    set_key(campaign, "alert", "ping_url", f"hc-ping.com/{TOKEN}")  # no scheme: refused
    result = run("reconcile", "--dry-run")
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "[alert] ping_url must be an http(s) URL" in line and no_token_in(line)


# -- a tick that meets the lock for too long fails ------------------------------------------------


def hold_lock_since(config, started: datetime, pid: int = 4242):
    """Take the state lock and write a holder line as a run started at `started` would."""
    state_dir = config.settings.run.state_path
    lock = state_lock(state_dir)
    lock.__enter__()
    line = json.dumps({"pid": pid, "started": started.isoformat(timespec="seconds")})
    (state_dir / "lock").write_text(line + "\n")
    return lock


def test_a_lock_held_longer_than_the_bound_exits_1_naming_the_holder(
    run: Run, pings: Receiver, config
) -> None:
    lock = hold_lock_since(config, datetime.now(UTC) - timedelta(hours=1, minutes=5))
    try:
        result = run("reconcile", globals_=("-q",))  # as cron runs it: still said
    finally:
        lock.__exit__(None, None, None)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "has held" in line and "for 1 h 05 min (pid 4242, started" in line
    assert "lock_busy_fail_after = 3600 s" in line
    assert "ps -p 4242" in line and "kill 4242" in line
    [fail] = pings.received  # never held the lock: no /start
    assert split(fail.path)[0] == "/fail" and "pid 4242" in fail.body.decode()


def test_a_short_overlap_still_exits_3(run: Run, campaign, config) -> None:
    set_key(campaign, "run", "lock_busy_fail_after", 600)
    lock = hold_lock_since(config, datetime.now(UTC) - timedelta(minutes=9))
    try:
        assert run("reconcile").exit_code == 3
    finally:
        lock.__exit__(None, None, None)
    lock = hold_lock_since(config, datetime.now(UTC) - timedelta(minutes=11))
    try:
        result = run("reconcile")
    finally:
        lock.__exit__(None, None, None)
    assert result.exit_code == 1
    assert "for 11 min" in one_error_line(result)


def test_bound_0_keeps_exit_3_however_long(run: Run, campaign, lock_held_for_hours) -> None:
    set_key(campaign, "run", "lock_busy_fail_after", 0)
    result = run("reconcile", globals_=("-q",))
    assert result.exit_code == 3
    assert "looks stuck" in one_error_line(result)


# -- syncctl alert --unit: the OnFailure= hook -------------------------------------------------


def test_alert_pings_fail_and_runs_the_command_with_the_line(
    run: Run, pings: Receiver, campaign, tmp_path: Path
) -> None:
    assert run("reconcile").exit_code == 0
    pings.received.clear()
    out = tmp_path / "mail.txt"
    set_key(campaign, "alert", "command", f'cat > {out}; echo "$SYNCCTL_ALERT_UNIT" >> {out}')
    result = run("alert", "--unit", "syncctl.service")
    assert result.exit_code == 0, result.output
    [fail] = pings.received
    assert split(fail.path)[0] == "/fail"
    line = fail.body.decode()
    assert line.startswith("syncctl.service failed on ")
    assert "last run: incremental ok at " in line or "last run: full ok at " in line
    assert "journalctl -u syncctl.service" in line
    assert out.read_text() == f"{line}\nsyncctl.service\n"
    assert f"error: {line}" in result.stderr
    assert no_token_in(result.stdout, result.stderr)


def test_alert_still_alerts_when_the_rest_of_the_config_is_broken(
    run: Run, pings: Receiver, campaign
) -> None:
    config = campaign / "syncctl.toml"
    config.write_text(config.read_text().replace("[discord]\n", "[discord]\nnonsense = 1\n"))
    result = run("alert", "--unit", "syncctl.service")
    assert result.exit_code == 0, result.output
    [fail] = pings.received
    assert "config: " in fail.body.decode() and "unknown key 'nonsense'" in fail.body.decode()


def test_a_failing_alert_command_is_one_line_exit_1(run: Run, campaign) -> None:
    set_key(campaign, "alert", "command", "echo no mail here >&2; exit 3")
    result = run("alert", "--unit", "syncctl-watch.service")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: syncctl-watch.service failed on ")
    assert lines[-1] == (
        "syncctl: error: [alert] command failed: exit 3: no mail here "
        "(run it by hand with the same account to see why)"
    )


def test_ping_targets_keep_the_query_and_add_the_run_id() -> None:
    from syncctl.alert import Pinger

    pinger = Pinger("https://hc-ping.com/ping/key123456/db-backup?create=1")
    assert pinger.target("start", "r1") == (
        "https://hc-ping.com/ping/key123456/db-backup/start?create=1&rid=r1"
    )
    assert pinger.target("success") == "https://hc-ping.com/ping/key123456/db-backup?create=1"
    assert pinger.target("fail", "r1").endswith("/db-backup/fail?create=1&rid=r1")
    assert pinger.shown == "https://hc-ping.com/[redacted]"


def test_a_holder_that_has_not_written_its_line_is_never_judged() -> None:
    from syncctl.errors import LockBusy
    from syncctl.state.lock import held_too_long

    long_ago = datetime.now(UTC) - timedelta(days=1)
    assert held_too_long(LockBusy("busy", pid=None, held_since=None), 60) is None
    assert held_too_long(LockBusy("busy", pid=7, held_since=long_ago), 0) is None
    found = held_too_long(LockBusy("busy", pid=7, held_since=long_ago), 60)
    assert found is not None and found.exit_code == 1 and "looks stuck" in str(found)
