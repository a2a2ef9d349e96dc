"""Output and logs: plain quiet lines off a terminal, JSON logs, never a secret."""

from __future__ import annotations

import io
import json
import logging
import os
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

from syncctl import logs
from syncctl.cli import app
from syncctl.commands import render
from syncctl.commands.history import read_history
from syncctl.engine.apply import Status
from syncctl.engine.reconcile import reconcile
from syncctl.sandbox.stack import Sandbox
from syncctl.state.lock import state_lock
from tests.ops.conftest import Run, set_lead_source

BOX = set("┏┃━│└┌╇┡")


def action_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("action ")]


def test_plain_run_one_line_per_action_then_the_summary(run: Run, sandbox: Sandbox) -> None:
    result = run("reconcile")
    assert result.exit_code == 0, result.output
    assert not BOX & set(result.stderr), "no tables without a terminal"
    actions = action_lines(result.stderr)
    assert len(actions) == len(sandbox.shopware.codes()) + 19  # every applied action
    coupon = next(line for line in actions if "kind=create_coupon" in line)
    assert "key=coupon:cs_" in coupon and "outcome=done" in coupon and "ref=VIP-" in coupon
    tail = result.stderr.splitlines()[-2:]
    assert tail[0].startswith("Outcome: shopware done 3; mautic done 11")
    assert tail[1].startswith("API calls: ") and "stripe" in tail[1] and tail[1].endswith("s")


def test_quiet_in_sync_prints_nothing(run: Run, config) -> None:
    reconcile(config)
    result = run("reconcile", globals_=("-q",))
    assert result.exit_code == 0
    assert result.stderr == "" and result.stdout == ""


def test_quiet_still_shows_failures(run: Run, sandbox: Sandbox) -> None:
    sandbox.espocrm.set_lead_acl(create=False)
    result = run("reconcile", globals_=("-q",))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith("warning: ") for line in lines)
    assert any("outcome=failed" in line and "kind=create_lead" in line for line in lines)
    assert any(line.startswith("warning: Outcome:") for line in lines)


def test_quiet_names_each_held_refusal_and_its_cause(run: Run, campaign) -> None:
    """A refusal held from an earlier run makes the run exit 1: cron must hear why."""
    set_lead_source(campaign, "Bogus")
    assert run("reconcile").exit_code == 1  # Espo refuses the three leads (400)
    result = run("reconcile", globals_=("-q",))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    held = [line for line in lines if "outcome=skipped" in line]
    assert len(held) == 3 and all(line.startswith("warning: action ") for line in held)
    assert all("kind=create_lead" in line and "lead_source = 'Bogus'" in line for line in held)
    assert lines[-1] == "warning: Outcome: espocrm skipped 3"


def test_quiet_run_finding_the_lock_busy_exits_3_silently(run: Run, config) -> None:
    """Cron (-q) mails any output; overlapping the audit is routine, not news."""
    with state_lock(config.settings.run.state_path):
        result = run("reconcile", globals_=("-q",))
    assert result.exit_code == 3
    assert result.stderr == "" and result.stdout == ""


def test_quiet_run_still_reports_a_lock_held_for_hours(run: Run, lock_held_for_hours) -> None:
    """Over [run] lock_busy_fail_after (1 h) that is a failure: exit 1, so alerts fire."""
    result = run("reconcile", globals_=("-q",))
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert "pid 4242" in line and "looks stuck" in line and "kill 4242" in line


def test_wait_says_once_whose_lock_it_waits_for(run: Run, lock_held_briefly) -> None:
    result = run("reconcile", "--wait")
    assert result.exit_code == 0, result.output
    waiting = [line for line in result.stderr.splitlines() if "waiting for the lock" in line]
    assert len(waiting) == 1
    assert "another syncctl run holds" in waiting[0] and f"pid {os.getpid()}" in waiting[0]


def test_quiet_wait_waits_silently(run: Run, lock_held_briefly) -> None:
    result = run("reconcile", "--wait", globals_=("-q",))
    assert result.exit_code == 0, result.output
    assert "waiting" not in result.stderr


def test_json_logs_are_one_object_per_line(run: Run, sandbox: Sandbox) -> None:
    sandbox.espocrm.set_lead_acl(create=False)
    result = run("reconcile", globals_=("--log-format", "json"))
    records = [json.loads(line) for line in result.stderr.splitlines()]
    actions = [r for r in records if r["msg"] == "action"]
    assert actions and all({"ts", "level", "key", "outcome"} <= set(r) for r in actions)
    done = next(r for r in actions if r["kind"] == "create_coupon")
    assert done["outcome"] == "done" and done["ref"].startswith("VIP-")
    failed = next(r for r in actions if r["outcome"] == "failed")
    assert failed["level"] == "warning" and "espocrm" in failed["error"]
    summary = records[-1]
    assert summary["msg"] == "run finished"
    assert summary["outcomes"]["shopware"] == {"done": 3}
    assert summary["outcomes"]["espocrm"]["failed"] >= 1
    assert summary["api_calls"]["discord"]["writes"] > 0
    assert summary["duration_seconds"] >= 0


def test_json_logs_for_a_dry_run_and_an_error(run: Run, config) -> None:
    result = run("reconcile", "--dry-run", globals_=("--log-format", "json"))
    records = [json.loads(line) for line in result.stderr.splitlines()]
    planned = [r for r in records if r["msg"] == "planned"]
    assert planned and {"key", "system", "kind", "who", "change", "why"} <= set(planned[0])
    with state_lock(config.settings.run.state_path):
        busy = run("reconcile", globals_=("--log-format", "json"))
    assert busy.exit_code == 3
    (record,) = [json.loads(line) for line in busy.stderr.splitlines()]
    assert record["level"] == "error" and "another syncctl run" in record["msg"]


def test_no_secret_in_any_output(run: Run, sandbox: Sandbox, campaign) -> None:
    outputs = []
    for fmt in ("text", "json"):
        outputs.append(run("reconcile", "--dry-run", globals_=("--log-format", fmt, "-vv")))
        outputs.append(run("reconcile", globals_=("--log-format", fmt, "-v")))
    outputs.append(run("config", "show"))
    outputs.append(run("doctor", "--json"))
    text = "".join(r.stdout + r.stderr for r in outputs)
    for name, value in sandbox.secrets.items():
        if name != "MAUTIC_USERNAME":  # a user name, shown by design
            assert value not in text


def test_secret_filter_redacts_messages_and_fields() -> None:
    stream = io.StringIO()
    logs.add_secrets(["sk_live_supersecret"])
    undo = logs.configure("json", 0, stream=stream)
    try:
        logs.event(
            logs.LOGGER,
            logging.WARNING,
            "echoed sk_live_supersecret",
            token="x sk_live_supersecret",
        )
    finally:
        undo()
    record = json.loads(stream.getvalue())
    assert "sk_live_supersecret" not in stream.getvalue()
    assert record["msg"] == "echoed [redacted]" and record["token"] == "x [redacted]"


def test_logging_is_restored_after_a_command(run: Run) -> None:
    logger = logging.getLogger(logs.LOGGER)
    before = (list(logger.handlers), logger.level, logger.propagate)
    run("history")
    assert (list(logger.handlers), logger.level, logger.propagate) == before


def test_verbosity_levels() -> None:
    assert logs.level_for(0, terminal=False) == logging.INFO
    assert logs.level_for(-1, terminal=False) == logging.WARNING
    assert logs.level_for(1, terminal=False) == logging.DEBUG
    assert logs.level_for(0, terminal=True) == logging.WARNING
    assert logs.level_for(1, terminal=True) == logging.INFO
    assert logs.level_for(2, terminal=True) == logging.DEBUG


def test_rich_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Console(file=io.StringIO(), force_terminal=True)
    pipe = Console(file=io.StringIO(), force_terminal=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert render.use_rich(terminal) and not render.use_rich(pipe)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not render.use_rich(terminal)
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not render.use_rich(terminal)


def test_progress_on_a_terminal_and_tables(config, sandbox: Sandbox) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=140)
    with render.RunProgress(console, enabled=True) as shown:
        result = reconcile(config, progress=shown.phase, on_outcome=shown.outcome)
    render.show_result(console, result)
    text = buffer.getvalue()
    assert "Outcome" in text and "API calls:" in text and "┃" in text


def test_plain_progress_goes_to_the_fallback() -> None:
    seen: list[str] = []
    with render.RunProgress(Console(file=io.StringIO()), enabled=False, fallback=seen.append) as p:
        p.phase("reading every Mautic contact")
    assert seen == ["reading every Mautic contact"]


def test_an_empty_plan_with_a_service_unread_is_not_called_in_sync(
    run: Run, sandbox: Sandbox, config
) -> None:
    reconcile(config)
    sandbox.espocrm.inject(method="GET", path="/Lead$", status=503, times=None)
    result = run("reconcile", "--full")
    assert result.exit_code == 1
    assert "In sync" not in result.stderr
    assert "not verified: espocrm could not be read" in result.stderr


def test_a_dry_run_over_max_actions_says_how_much_would_wait(run: Run) -> None:
    result = run("reconcile", "--dry-run", "--max-actions", "5")
    assert result.exit_code == 0
    assert "a real run would apply 5 of" in result.stderr
    assert "for the next runs (max_actions=5)" in result.stderr


def test_the_first_dry_run_is_labelled_in_one_phrase(run: Run) -> None:
    first_line = run("reconcile", "--dry-run").stderr.splitlines()[0]
    assert first_line == "first full dry run: nothing was changed"


def test_the_first_real_run_is_labelled_in_one_phrase(run: Run) -> None:
    assert "first full run" in run("reconcile").stderr.splitlines()


# -- a terminal 80 columns wide ------------------------------------------------------------

#: What must stay whole to be copied: coupon codes, invite links, emails.
WHOLE = re.compile(r"VIP-[A-Z0-9-]+|https://\S+|\S+@\S+")


def printed(console: Console, renderable) -> list[str]:
    console.print(renderable)
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue().splitlines()


def test_at_80_columns_the_plan_splits_no_code_link_or_email(config, terminal_80) -> None:
    plan = reconcile(config, dry_run=True).plan
    lines = printed(terminal_80, render.plan_table(plan))
    assert terminal_80.width == 80 and all(len(line) <= 80 for line in lines)
    for action in plan.actions:
        for word in {action.subject, *WHOLE.findall(render._change(action))}:
            assert any(word in line for line in lines), f"{word} was split"


def test_at_80_columns_a_22_action_plan_takes_two_lines_an_action(config, terminal_80) -> None:
    """Title, header, rule, caption and one row per system: 10 lines at most besides."""
    plan = reconcile(config, dry_run=True).plan
    assert len(plan) == 22
    assert len(printed(terminal_80, render.plan_table(plan))) <= 2 * len(plan) + 10


def test_at_80_columns_the_journal_splits_no_reference_or_email(config, terminal_80) -> None:
    reconcile(config)
    entries = read_history(config, email=None, since=None, failed=False, limit=None)
    lines = printed(terminal_80, render.history_table(entries))
    assert all(len(line) <= 80 for line in lines)
    for entry in entries:
        for word in filter(None, (entry.subject, entry.ref)):
            assert any(word in line for line in lines), f"{word} was split"


def test_at_80_columns_what_was_not_done_splits_no_email(
    config, sandbox: Sandbox, terminal_80
) -> None:
    sandbox.espocrm.set_lead_acl(create=False)
    outcomes = reconcile(config).outcomes
    problems = render.problems_table(outcomes)
    assert problems is not None
    lines = printed(terminal_80, problems)
    assert all(len(line) <= 80 for line in lines)
    for outcome in outcomes:
        if outcome.status is not Status.DONE:
            assert any(outcome.action.subject in line for line in lines)


def test_the_progress_bar_counts_up_to_the_planned_actions(config) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=140)
    with render.RunProgress(console, enabled=True) as shown:
        result = reconcile(
            config, progress=shown.phase, on_outcome=shown.outcome, on_plan=shown.planned
        )
    total = len(result.plan)
    assert total > 0
    assert f"{total}/{total}" in buffer.getvalue() and "eta" in buffer.getvalue()


def test_demo_into_a_pipe_writes_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR")  # only the pipe decides here
    monkeypatch.setenv("TERM", "xterm")
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert not BOX & set(result.stdout) and "─" not in result.stdout
    assert "== 1. dry run: what syncctl would change" in result.stdout.splitlines()
    assert "Planned changes (22): shopware 3, mautic 11, discord 5, espocrm 3" in result.stdout
    assert "In sync: nothing to do." in result.stdout


def test_the_demo_tells_a_refund_and_a_hold_each_answered_by_the_next_run() -> None:
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "refunded in full" in out and "remove refunded code" in out
    assert "syncctl hold alan.turing@example.com" in out and "held (asked to wait" in out
    assert "syncctl release alan.turing@example.com" in out
    assert "a full audit afterwards plans 0 action(s)" in out


def test_the_watch_demo_answers_a_purchase_and_an_opt_in_within_seconds() -> None:
    result = CliRunner().invoke(app, ["demo", "--watch"])
    assert result.exit_code == 0, result.output
    answers = re.findall(r"(coupon|invite) email sent ([\d.]+) s later", result.stdout)
    assert [kind for kind, _ in answers] == ["coupon", "invite"]
    assert all(float(seconds) < 5 for _, seconds in answers)
    assert "each got exactly one email" in result.stdout
