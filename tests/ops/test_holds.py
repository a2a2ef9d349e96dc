"""`syncctl hold`, `release`, `holds` (rule 18), and holds in `status` and `history`."""

from __future__ import annotations

import io
import json
import os
import sqlite3
from datetime import UTC, datetime

import pytest
from rich.console import Console

from syncctl import config as config_mod
from syncctl.commands.render import holds_table
from syncctl.config import SECRET_NAMES
from syncctl.engine.reconcile import reconcile
from syncctl.sandbox.stack import Sandbox
from syncctl.state.journal import Hold, HoldKind, Journal
from syncctl.state.lock import state_lock
from tests.ops.conftest import Run, one_error_line, set_secret

ADA = "ada.lovelace@example.com"


@pytest.fixture(autouse=True)
def alice(monkeypatch: pytest.MonkeyPatch) -> str:
    """The operator's OS account, not behind sudo."""
    monkeypatch.setattr("getpass.getuser", lambda: "alice")
    monkeypatch.delenv("SUDO_USER", raising=False)
    return "alice"


def stored(config: config_mod.Config) -> list[Hold]:
    with Journal.open(config.settings.run.state_path, readonly=True) as journal:
        return journal.holds()


def session_of(sandbox: Sandbox, email: str) -> str:
    (found,) = [
        s["id"] for s in sandbox.stripe.sessions if s["customer_details"]["email"].lower() == email
    ]
    return str(found)


# -- hold ----------------------------------------------------------------------------------------


def test_hold_stores_the_email_lower_cased_with_reason_and_os_user(run: Run, config) -> None:
    result = run("hold", "Ada.Lovelace@Example.COM", "--reason", "chargeback dispute")
    assert result.exit_code == 0, result.output
    assert f"held {ADA} (person)" in result.stderr and "chargeback dispute" in result.stderr
    (hold,) = stored(config)
    assert (hold.subject, hold.kind, hold.reason, hold.by) == (
        ADA,
        HoldKind.EMAIL,
        "chargeback dispute",
        "alice",
    )


def test_hold_a_purchase_by_its_session_id(run: Run, config, sandbox: Sandbox) -> None:
    session = session_of(sandbox, ADA)
    result = run("hold", session)
    assert result.exit_code == 0, result.output
    assert f"held {session} (purchase)" in result.stderr and "no reason given" in result.stderr
    assert [(h.subject, h.kind) for h in stored(config)] == [(session, HoldKind.SESSION)]


def test_hold_makes_no_service_call_and_needs_no_secret(
    run: Run, campaign, sandbox: Sandbox
) -> None:
    for name in SECRET_NAMES:
        set_secret(campaign, name, None)
    assert run("hold", ADA).exit_code == 0
    assert sandbox.call_count() == 0


def test_holding_again_with_a_new_reason_says_it_was_updated(run: Run, config) -> None:
    run("hold", ADA, "--reason", "dispute")
    result = run("hold", ADA.upper(), "--reason", "fraud check")
    assert result.exit_code == 0, result.output
    assert "was held already" in result.stderr
    assert "reason updated: fraud check (was: dispute)" in result.stderr
    assert [h.reason for h in stored(config)] == ["fraud check"]


def test_holding_again_without_a_reason_says_nothing_changed(run: Run, config) -> None:
    run("hold", ADA, "--reason", "dispute")
    result = run("hold", ADA)
    assert result.exit_code == 0, result.output
    assert "is held already" in result.stderr and "nothing changed" in result.stderr
    assert [h.reason for h in stored(config)] == ["dispute"]


def test_a_reason_is_kept_on_one_line(run: Run, config) -> None:
    run("hold", ADA, "--reason", "line one\n\tline two \x1b[31m")
    assert [h.reason for h in stored(config)] == ["line one line two [31m"]


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("ada@", "is not an email address"),
        ("ada@example", "is not an email address"),
        ("ada@example.com,", "is not an email address"),
        ("ada@example.com bob@example.com", "is not an email address"),
        ("ada.lovelace", "neither an email address nor a Stripe Checkout Session id"),
        ("cs_", "neither an email address nor a Stripe Checkout Session id"),
        ("CS_test_a1", "neither an email address nor a Stripe Checkout Session id"),
        ("pi_3Mtw", "neither an email address nor a Stripe Checkout Session id"),
        ("cs_test_a1/../x", "neither an email address nor a Stripe Checkout Session id"),
        ("", "neither an email address nor a Stripe Checkout Session id"),
    ],
    ids=lambda v: repr(v)[:30],
)
@pytest.mark.parametrize("command", ["hold", "release"])
def test_a_bad_subject_is_one_line_exit_2_and_touches_no_state(
    run: Run, config, sandbox: Sandbox, command: str, subject: str, expected: str
) -> None:
    result = run(command, subject)
    assert result.exit_code == 2, result.output
    assert expected in one_error_line(result)
    assert result.stdout == ""
    assert not config.settings.run.state_path.exists()
    assert sandbox.call_count() == 0


def test_hold_without_a_subject_is_a_usage_error(run: Run) -> None:
    result = run("hold")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "EMAIL|SESSION_ID" in result.stderr


def test_hold_is_not_kept_waiting_by_a_run_holding_the_lock(run: Run, config) -> None:
    with state_lock(config.settings.run.state_path):
        result = run("hold", ADA, "--reason", "dispute")
    assert result.exit_code == 0, result.output
    note = next(line for line in result.stderr.splitlines() if "a run is in progress" in line)
    assert f"pid {os.getpid()}" in note and "finishes what it planned" in note
    assert [h.subject for h in stored(config)] == [ADA]


def test_hold_on_a_journal_busy_past_the_timeout_is_one_line_exit_1(
    run: Run, config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("syncctl.state.sqlite._BUSY_TIMEOUT_SECONDS", 0.2)
    Journal.open(config.settings.run.state_path).close()
    writer = sqlite3.connect(config.settings.run.state_path / "state.db", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        result = run("hold", ADA)
    finally:
        writer.close()
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "database is locked" in line and "another process holds the database" in line
    assert stored(config) == []


def test_hold_with_no_run_in_progress_has_no_run_note(run: Run, config) -> None:
    with state_lock(config.settings.run.state_path):
        pass  # a run came and went
    assert "in progress" not in run("hold", ADA).stderr


def test_hold_lines_are_log_records_in_a_pipe(run: Run) -> None:
    quiet = run("hold", ADA, globals_=("-q",))
    assert quiet.exit_code == 0 and quiet.stderr == ""
    record = json.loads(run("release", ADA, globals_=("--log-format", "json")).stderr)
    assert record["level"] == "info" and record["msg"].startswith(f"released {ADA}")


# -- release -------------------------------------------------------------------------------------


def test_release_lifts_the_hold_in_any_case(run: Run, config) -> None:
    run("hold", ADA, "--reason", "dispute")
    result = run("release", "  ADA.Lovelace@example.com ")
    assert result.exit_code == 0, result.output
    assert f"released {ADA} (person held since" in result.stderr
    assert "by alice, reason: dispute" in result.stderr
    assert "the next run acts for it again" in result.stderr
    assert stored(config) == []


def test_releasing_what_is_not_held_is_one_line_exit_1(run: Run, config) -> None:
    run("hold", ADA)
    result = run("release", "grace.hopper@example.com")
    assert result.exit_code == 1, result.output
    line = one_error_line(result)
    assert "grace.hopper@example.com is not held: nothing to release" in line
    assert "syncctl holds" in line
    assert [h.subject for h in stored(config)] == [ADA]


def test_releasing_without_any_journal_creates_none(run: Run, config) -> None:
    result = run("release", ADA)
    assert result.exit_code == 1
    assert "is not held" in one_error_line(result)
    assert not config.settings.run.state_path.exists()


# -- holds ---------------------------------------------------------------------------------------


def test_holds_json_is_one_document_with_format_version_1(run: Run, sandbox: Sandbox) -> None:
    session = session_of(sandbox, ADA)
    run("hold", ADA, "--reason", "dispute")
    run("hold", session)
    result = run("holds", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["format_version"] == 1
    person, purchase = document["holds"]
    assert person == {
        "subject": ADA,
        "kind": "email",
        "reason": "dispute",
        "by": "alice",
        "at": person["since"],
        "since": person["since"],
    }
    assert datetime.fromisoformat(person["since"]).tzinfo is not None
    assert (purchase["subject"], purchase["kind"]) == (session, "session")


def test_holds_in_a_pipe_are_plain_lines(run: Run) -> None:
    run("hold", ADA, "--reason", "chargeback dispute")
    run("hold", "grace.hopper@example.com")
    result = run("holds")
    assert result.exit_code == 0, result.output
    first, second = result.stdout.splitlines()
    assert first[:4].isdigit()
    assert f" email {ADA} by=alice reason=chargeback dispute" in first
    assert second.endswith(" email grace.hopper@example.com by=alice")


def test_holds_with_nothing_held_says_so_on_stderr_only(run: Run) -> None:
    result = run("holds")
    assert result.exit_code == 0
    assert result.stdout == "" and result.stderr.strip() == "nothing is held"
    assert json.loads(run("holds", "--json").stdout)["holds"] == []


def test_holds_table_on_a_narrow_terminal_keeps_subjects_whole(terminal_80: Console) -> None:
    moment = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    session = "cs_live_a1" + "B2c3D4e5F6" * 5
    holds = [
        Hold(ADA, HoldKind.EMAIL, "chargeback dispute " * 4, "alice", moment, moment),
        Hold(session, HoldKind.SESSION, "", "bob (via sudo)", moment, moment),
    ]
    terminal_80.print(holds_table(holds))
    out = terminal_80.file.getvalue()  # type: ignore[attr-defined]
    assert "Holds (2)" in out and ADA in out and session in out
    assert all(len(line) <= 80 for line in out.splitlines())


def test_holds_is_read_only_while_a_run_holds_the_lock(run: Run, config) -> None:
    run("hold", ADA)
    with state_lock(config.settings.run.state_path):
        result = run("holds", "--json")
    assert result.exit_code == 0
    assert [h["subject"] for h in json.loads(result.stdout)["holds"]] == [ADA]


# -- status --------------------------------------------------------------------------------------


def test_status_shows_a_hold_on_the_person_with_reason_who_and_when(run: Run) -> None:
    run("hold", ADA, "--reason", "chargeback dispute")
    result = run("status", ADA)
    assert result.exit_code == 0, result.output
    holds = result.stdout.split("Holds:\n")[1].split("Mautic:")[0]
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert f"{ADA} (person) held since {today}" in holds
    assert "by alice: chargeback dispute" in holds


def test_status_shows_a_hold_on_one_of_their_purchases(run: Run, sandbox: Sandbox) -> None:
    session = session_of(sandbox, ADA)
    run("hold", session, "--reason", "refund asked")
    result = run("status", ADA.upper())
    holds = result.stdout.split("Holds:\n")[1].split("Mautic:")[0]
    assert f"{session} (purchase) held since" in holds and "refund asked" in holds
    document = json.loads(run("status", ADA, "--json").stdout)
    assert [(h["subject"], h["kind"], h["by"]) for h in document["holds"]] == [
        (session, "session", "alice")
    ]


def test_status_of_someone_not_held_says_so(run: Run) -> None:
    run("hold", "grace.hopper@example.com")
    result = run("status", ADA)
    assert "Holds:\n  no hold set with syncctl hold\n" in result.stdout
    assert json.loads(run("status", ADA, "--json").stdout)["holds"] == []


def test_status_of_an_address_known_only_by_its_hold_is_shown(run: Run) -> None:
    run("hold", "nobody.yet@example.com", "--reason", "asked before buying")
    result = run("status", "nobody.yet@example.com")
    assert result.exit_code == 0, result.output
    assert "asked before buying" in result.stdout


# -- history -------------------------------------------------------------------------------------


def test_history_shows_holding_and_releasing_with_who_and_why(run: Run) -> None:
    run("hold", ADA, "--reason", "dispute")
    run("release", ADA)
    released, held = run("history").stdout.splitlines()
    assert f" hold {ADA} done key=hold:{ADA} by=alice reason=dispute" in held
    assert f" release {ADA} done key=hold:{ADA} by=alice reason=dispute" in released


def test_history_json_has_who_and_why_of_a_hold(run: Run) -> None:
    run("hold", ADA, "--reason", "dispute")
    (entry,) = json.loads(run("history", "--json").stdout)["entries"]
    assert (entry["action"], entry["who"], entry["by"], entry["reason"]) == (
        "hold",
        ADA,
        "alice",
        "dispute",
    )
    assert entry["run_id"] is None and entry["outcome"] == "done"


def test_history_email_filters_hold_events(run: Run) -> None:
    run("hold", ADA)
    run("hold", "grace.hopper@example.com")
    lines = run("history", "--email", "Grace.Hopper@example.com").stdout.splitlines()
    assert len(lines) == 1 and " hold grace.hopper@example.com " in lines[0]


def test_history_email_adds_the_hold_events_of_their_processed_purchases(
    run: Run, config, sandbox: Sandbox
) -> None:
    reconcile(config)
    session = session_of(sandbox, ADA)
    run("hold", session, "--reason", "refund asked")
    mine = run("history", "--email", ADA).stdout.splitlines()
    assert f" hold {session} done key=hold:{session} by=alice reason=refund asked" in mine[0]
    assert any(" create_coupon " in line for line in mine)
    assert len(run("history", "--email", ADA, "--limit", "1").stdout.splitlines()) == 1
    assert not any(" hold " in line for line in run("history", "--email", ADA, "--failed").stdout)


def test_hold_events_in_the_history_table(run: Run, config) -> None:
    from syncctl.commands.render import history_table

    run("hold", ADA, "--reason", "dispute")
    with Journal.open(config.settings.run.state_path, readonly=True) as journal:
        entries = journal.history()
    console = Console(file=io.StringIO(), force_terminal=True, width=160, color_system=None)
    console.print(history_table(entries))
    assert "by alice: dispute" in console.file.getvalue()  # type: ignore[attr-defined]
