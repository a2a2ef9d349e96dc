"""`syncctl history`: the journal as lines, a table or JSON; filters; read-only."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from syncctl.commands.history import parse_since
from syncctl.engine.reconcile import reconcile
from syncctl.errors import UsageError
from syncctl.sandbox.stack import Sandbox
from tests.ops.conftest import Run, one_error_line


@pytest.fixture
def ran(config, sandbox: Sandbox):
    """One applied run with one failure (EspoCRM refuses to create leads)."""
    sandbox.espocrm.set_lead_acl(create=False)
    reconcile(config)
    return config


def test_lines_with_when_action_who_outcome_ref_error(run: Run, ran) -> None:
    result = run("history")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    coupon = next(line for line in lines if " create_coupon " in line)
    assert " done ref=VIP-" in coupon and "key=coupon:cs_" in coupon
    failed = next(line for line in lines if " failed " in line)
    assert "create_lead" in failed and "error=espocrm:" in failed
    assert lines[0][:4].isdigit()  # starts with the date


def test_filters_email_failed_limit(run: Run, ran) -> None:
    mine = run("history", "--email", "ADA.Lovelace@example.com").stdout.splitlines()
    assert mine and all("ada.lovelace@example.com" in line for line in mine)
    failed = run("history", "--failed").stdout.splitlines()
    assert failed and all(" failed " in line or " aborted " in line for line in failed)
    assert len(run("history", "--limit", "3").stdout.splitlines()) == 3


def test_json(run: Run, ran) -> None:
    result = run("history", "--json", "--failed", "--since", "1h")
    document = json.loads(result.stdout)
    assert document["format_version"] == 1
    assert document["filters"] == {"failed": True, "since": "1h", "limit": 50}
    entry = document["entries"][0]
    assert set(entry) >= {"when", "action", "who", "outcome", "ref", "error", "key"}
    assert entry["outcome"] == "failed" and entry["error"]


def test_since_in_the_future_matches_nothing(run: Run, ran) -> None:
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    result = run("history", "--since", tomorrow)
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "no journal entries match" in result.stderr


def test_bad_since_is_one_line_exit_2(run: Run) -> None:
    result = run("history", "--since", "last tuesday")
    assert result.exit_code == 2
    assert "--since" in one_error_line(result)


def test_without_a_journal_it_is_empty_and_creates_nothing(run: Run, config) -> None:
    result = run("history", "--json")
    assert json.loads(result.stdout)["entries"] == []
    assert not config.settings.run.state_path.exists()


def test_parse_since() -> None:
    now = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("2024-05-01") == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_since("2024-05-01T08:00+02:00") == datetime(2024, 5, 1, 6, tzinfo=UTC)
    with pytest.raises(UsageError):
        parse_since("soon")


def test_failed_lists_a_send_whose_answer_was_lost_with_its_http_error(
    run: Run, config, sandbox: Sandbox
) -> None:
    sandbox.mautic.inject(method="POST", path=r"/send$", status=500, times=1)
    reconcile(config)  # the run finds it was not sent: aborted, and sent again
    document = json.loads(run("history", "--failed", "--json").stdout)
    (lost,) = [e for e in document["entries"] if e["action"] == "send_email"]
    assert lost["outcome"] == "aborted"
    assert "500" in lost["error"] and "recovered" in lost["error"]


def test_a_waived_email_shows_as_waived(run: Run, config) -> None:
    reconcile(config)
    run("reissue-invite", "grace.hopper@example.com", "--yes", "--no-email")
    lines = run("history", "--email", "grace.hopper@example.com").stdout.splitlines()
    assert any(" send_email " in line and " waived " in line for line in lines), lines


def test_failed_lists_right_after_the_run_a_write_whose_answer_is_still_unknown(
    run: Run, config, sandbox: Sandbox
) -> None:
    # Every send's answer is lost, all run long: the last attempt stays in
    # flight for the next run to settle, and that is what the operator sees.
    sandbox.mautic.inject(method="POST", path=r"/send$", kind="reset", times=None)
    assert not reconcile(config).ok
    document = json.loads(run("history", "--failed", "--json").stdout)
    unknown = [e for e in document["entries"] if e["outcome"] == "unknown"]
    assert unknown and {e["action"] for e in unknown} == {"send_email"}
    assert all("the write may have happened" in e["error"] for e in unknown)
