"""The reconcile and reissue-invite commands as an operator runs them."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from syncctl.cli import app
from syncctl.state.lock import state_lock


@pytest.fixture
def run(config):
    def invoke(*args: str):
        env_file = config.path.parent / ".env"
        return CliRunner().invoke(
            app, ["--config", str(config.path), "--env-file", str(env_file), *args]
        )

    return invoke


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_dry_run_prints_the_plan_table_to_stderr_only(run, sandbox) -> None:
    result = run("reconcile", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "Planned changes" in result.stderr
    assert "create coupon" in result.stderr
    assert sandbox.write_count() == 0


def test_json_is_one_versioned_document_on_stdout(run) -> None:
    result = run("reconcile", "--dry-run", "--json")
    document = json.loads(result.stdout)
    assert document["format_version"] == 1
    assert document["dry_run"] is True
    kinds = {a["kind"] for a in document["plan"]["actions"]}
    assert {"create_coupon", "issue_invite", "send_email", "create_lead"} <= kinds


def test_applied_json_carries_each_outcome(run) -> None:
    document = json.loads(run("reconcile", "--json").stdout)
    assert document["outcomes"]
    assert {o["status"] for o in document["outcomes"]} == {"done"}
    assert document["api_calls"]["discord"]["writes"] > 0


def test_detailed_exitcode_is_2_with_changes_then_0_in_sync(run) -> None:
    assert run("reconcile", "--detailed-exitcode").exit_code == 2
    assert run("reconcile", "--detailed-exitcode").exit_code == 0


def test_failure_exits_1_and_names_it(run, sandbox) -> None:
    sandbox.espocrm.set_lead_acl(create=False)
    result = run("reconcile")
    assert result.exit_code == 1
    assert "espocrm" in result.stderr
    assert "Traceback" not in result.output


def test_held_lock_exits_3_with_one_line(run, config) -> None:
    with state_lock(config.settings.run.state_path):
        result = run("reconcile")
    assert result.exit_code == 3
    assert "another syncctl run" in one_error_line(result)


def test_plan_over_max_actions_applies_that_many_and_says_how_many_wait(run) -> None:
    result = run("reconcile", "--max-actions", "2", "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert len(document["outcomes"]) == 2
    left = len(document["deferred"])
    assert left == len(document["plan"]["actions"]) - 2
    assert f"{left} of {left + 2} actions left for the next runs" in result.stderr


def test_dry_run_says_what_max_actions_would_leave_for_later(run, sandbox) -> None:
    result = run("reconcile", "--dry-run", "--max-actions", "2")
    assert result.exit_code == 0
    assert "a real run would apply 2 of" in result.stderr
    assert sandbox.write_count() == 0


def test_plan_that_looks_like_a_mistake_exits_4_naming_the_cause_and_flag(run, config) -> None:
    assert run("reconcile").exit_code == 0
    text = config.path.read_text().replace(
        "[run]\n", "[run]\nmass_change_floor = 0\nmax_revoke_share = 0\n"
    )
    config.path.write_text(
        text.replace(
            "[mautic]\n", '[mautic.fields]\ninvite_link_basic = "typo_alias"\n\n[mautic]\n'
        )
    )
    result = run("reconcile", "--full")
    assert result.exit_code == 4, result.stderr
    assert "looks like a configuration mistake" in result.stderr
    assert "--allow-mass-change" in result.stderr


def test_missing_secret_exits_2_naming_it(config) -> None:
    env_file = config.path.parent / ".env"
    env_file.write_text(
        "".join(
            line + "\n"
            for line in env_file.read_text().splitlines()
            if not line.startswith("DISCORD_BOT_TOKEN=")
        )
    )
    result = CliRunner().invoke(
        app, ["--config", str(config.path), "--env-file", str(env_file), "reconcile"]
    )
    assert result.exit_code == 2
    assert "DISCORD_BOT_TOKEN" in one_error_line(result)


# -- reissue-invite -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        ("not-an-email", "is not an email address"),
        ("nobody@example.com", "no Mautic contact"),
        ("edsger.dijkstra@example.com", "has not opted in"),
    ],
    ids=["malformed", "unknown", "not-opted-in"],
)
def test_reissue_refuses_with_one_line_and_no_write(run, sandbox, email, expected) -> None:
    result = run("reissue-invite", email, "--yes")
    assert result.exit_code == 2
    assert expected in one_error_line(result)
    assert sandbox.write_count() == 0


def test_reissue_refuses_a_contact_on_the_do_not_contact_list(run, sandbox) -> None:
    run("reconcile")
    grace = sandbox.mautic.find("grace.hopper@example.com")[0]
    sandbox.mautic.add_dnc(grace, reason=1)  # unsubscribed
    sandbox.clear_logs()
    result = run("reissue-invite", "grace.hopper@example.com", "--yes")
    assert result.exit_code == 2
    assert "Do-Not-Contact" in one_error_line(result)
    assert sandbox.write_count() == 0
    assert not sandbox.mautic.sent(contact_id=grace, email_id=12)[1:]


def test_reissue_mints_stores_revokes_and_emails(run, sandbox) -> None:
    run("reconcile")
    cid = sandbox.mautic.find("grace.hopper@example.com")[0]
    old = sandbox.mautic.contact(cid)["discord_invite_link_basic"]
    sends_before = len(sandbox.mautic.sent(email_id=12, contact_id=cid))
    result = run("reissue-invite", "Grace.Hopper@Example.com", "--yes")
    assert result.exit_code == 0, result.output
    new = sandbox.mautic.contact(cid)["discord_invite_link_basic"]
    assert new and new != old
    live = {i["code"] for i in sandbox.discord.invites()}
    assert old.rsplit("/", 1)[1] not in live and new.rsplit("/", 1)[1] in live
    sends = sandbox.mautic.sent(email_id=12, contact_id=cid)
    assert len(sends) == sends_before + 1
    assert sends[-1]["tokens"]["{discord_invite_link}"] == new


def test_reissue_dry_run_shows_the_plan_and_writes_nothing(run, sandbox) -> None:
    run("reconcile")
    sandbox.clear_logs()
    result = run("reissue-invite", "grace.hopper@example.com", "--dry-run")
    assert result.exit_code == 0
    assert "revoke invite" in result.stderr and "issue invite" in result.stderr
    assert sandbox.write_count() == 0


def test_reissue_no_email_sends_nothing(run, sandbox) -> None:
    run("reconcile")
    cid = sandbox.mautic.find("grace.hopper@example.com")[0]
    before = len(sandbox.mautic.sent(contact_id=cid))
    assert run("reissue-invite", "grace.hopper@example.com", "--yes", "--no-email").exit_code == 0
    assert len(sandbox.mautic.sent(contact_id=cid)) == before


def test_reissue_no_email_is_not_undone_by_the_next_run(run, sandbox) -> None:
    run("reconcile")
    cid = sandbox.mautic.find("grace.hopper@example.com")[0]
    before = len(sandbox.mautic.sent(contact_id=cid))
    run("reissue-invite", "grace.hopper@example.com", "--yes", "--no-email")
    assert run("reconcile").exit_code == 0
    assert len(sandbox.mautic.sent(contact_id=cid)) == before


def test_reissue_mints_nothing_while_the_old_invite_cannot_be_revoked(run, sandbox) -> None:
    run("reconcile")
    cid = sandbox.mautic.find("grace.hopper@example.com")[0]
    link = sandbox.mautic.contact(cid)["discord_invite_link_basic"]
    minted = sandbox.discord.created_count
    sandbox.discord.inject(method="DELETE", path="/invites/", status=500, times=None)
    assert run("reissue-invite", "grace.hopper@example.com", "--yes").exit_code == 1
    assert sandbox.discord.created_count == minted
    assert sandbox.discord.invite(link.rsplit("/", 1)[-1]) is not None
    assert sandbox.mautic.contact(cid)["discord_invite_link_basic"] == link  # as it was


def test_reissue_waits_for_a_running_reconcile_when_asked(run, sandbox, config) -> None:
    run("reconcile")
    with state_lock(config.settings.run.state_path):
        busy = run("reissue-invite", "grace.hopper@example.com", "--yes")
    assert busy.exit_code == 3
    assert "--wait" in one_error_line(busy)
    assert run("reissue-invite", "grace.hopper@example.com", "--yes", "--wait").exit_code == 0


def test_reissue_without_yes_off_a_terminal_refuses(run, sandbox) -> None:
    run("reconcile")
    sandbox.clear_logs()
    result = run("reissue-invite", "grace.hopper@example.com")
    assert result.exit_code == 2
    assert "--yes" in one_error_line(result)
    assert sandbox.write_count() == 0


def test_reissued_link_is_left_alone_by_the_next_run(run, sandbox) -> None:
    run("reconcile")
    run("reissue-invite", "grace.hopper@example.com", "--yes")
    sandbox.clear_logs()
    assert run("reconcile", "--detailed-exitcode").exit_code == 0
    assert sandbox.write_count() == 0
