"""`syncctl status EMAIL`: one person across the systems, read-only."""

from __future__ import annotations

import json
from pathlib import Path

from syncctl import config as config_mod
from syncctl.engine.reconcile import reconcile
from syncctl.sandbox.stack import Sandbox
from syncctl.state.journal import Journal
from tests.ops.conftest import Run, one_error_line, set_secret


def journal_size(config: config_mod.Config) -> int:
    with Journal.open(config.settings.run.state_path, readonly=True) as journal:
        return len(journal.history())


def test_after_a_run_every_system_is_shown(run: Run, config, sandbox: Sandbox) -> None:
    reconcile(config)
    entries = journal_size(config)
    sandbox.clear_logs()
    result = run("status", "Katherine.Johnson@Example.com")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "status of katherine.johnson@example.com" in out
    assert "opt-in yes, vip yes" in out  # Mautic
    assert "VIP, paid, code VIP-" in out  # Stripe
    assert ": exists (purchase cs_" in out  # Shopware
    assert "vip invite" in out and "live, never expires, used 0 of 1" in out  # Discord
    assert "lead " in out and "source Campaign" in out  # EspoCRM
    assert "revoke_invite" in out and "create_coupon" in out  # journal
    assert "nothing to do: in sync" in out
    assert sandbox.write_count() == 0
    assert journal_size(config) == entries


def test_before_any_run_it_shows_what_the_next_run_would_do(run: Run, config, sandbox) -> None:
    result = run("status", "ada.lovelace@example.com")
    assert result.exit_code == 0, result.output
    plan = result.stdout.split("Next run:")[1]
    assert "create coupon" in plan and "issue invite" in plan and "create lead" in plan
    assert ": missing (purchase cs_" in result.stdout
    assert sandbox.write_count() == 0
    assert not (config.settings.run.state_path / "state.db").exists()


def test_next_run_agrees_with_a_dry_run(run: Run, config) -> None:
    document = json.loads(run("status", "katherine.johnson@example.com", "--json").stdout)
    mine = {a["key"] for a in document["next_run"]["actions"]}
    dry = reconcile(config, dry_run=True)
    theirs = {a.key for a in dry.plan.actions if a.subject == "katherine.johnson@example.com"}
    assert mine == theirs and mine


def test_a_used_invite_is_reported_gone(run: Run, config, sandbox: Sandbox) -> None:
    reconcile(config)
    cid = sandbox.mautic.find("grace.hopper@example.com")[0]
    link = sandbox.mautic.contact(cid)["discord_invite_link_basic"]
    sandbox.discord.use_invite(link.rsplit("/", 1)[1])
    document = json.loads(run("status", "grace.hopper@example.com", "--json").stdout)
    (invite,) = document["discord"]["invites"]
    assert invite["live"] is False
    assert invite["state"].startswith("gone: used")


def test_json_document(run: Run, config) -> None:
    reconcile(config)
    result = run("status", "ada.lovelace@example.com", "--json")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["format_version"] == 1
    assert document["email"] == "ada.lovelace@example.com"
    (contact,) = document["mautic"]["contacts"]
    assert contact["vip_status"] is True and contact["promo_code"].startswith("VIP-")
    (purchase,) = document["stripe"]["purchases"]
    assert purchase["code"] == contact["promo_code"]
    assert document["shopware"]["codes"][0]["state"] == "exists"
    assert document["discord"]["invites"][0]["live"] is True
    assert len(document["espocrm"]["leads"]) == 1
    assert {e["outcome"] for e in document["history"]} == {"done"}
    assert document["next_run"] == {"actions": [], "notes": []}
    assert document["errors"] == {}


def test_stripe_email_with_other_capitalisation_is_found(run: Run) -> None:
    """The seed's buyer typed Alan.Turing@Example.com; Stripe's filter is exact."""
    document = json.loads(run("status", "alan.turing@example.com", "--json").stdout)
    assert len(document["stripe"]["purchases"]) == 1
    assert document["mautic"]["contacts"] == []
    assert [a["kind"] for a in document["next_run"]["actions"]][:2] == [
        "create_coupon",
        "create_contact",
    ]


def test_unknown_email_is_one_line_and_exit_2(run: Run, sandbox: Sandbox) -> None:
    result = run("status", "nobody@example.com")
    assert result.exit_code == 2
    assert "nobody with the email nobody@example.com" in one_error_line(result)
    assert result.stdout == ""
    assert sandbox.write_count() == 0


def test_malformed_email(run: Run) -> None:
    result = run("status", "not-an-email")
    assert result.exit_code == 2
    assert "is not an email address" in one_error_line(result)


def test_a_service_that_fails_is_named_and_the_rest_shown(run: Run, config, campaign) -> None:
    reconcile(config)  # grace gets an invite link, which status resolves in Discord
    set_secret(campaign, "DISCORD_BOT_TOKEN", "sandbox.wrong")
    result = run("status", "grace.hopper@example.com")
    assert result.exit_code == 1
    assert "Traceback" not in result.output + result.stderr
    assert "could not be read: discord" in result.stdout
    assert "opt-in yes" in result.stdout  # Mautic still shown
    assert "next run would do is not shown" in result.stdout
    assert "discord" in one_error_line(result)


def test_missing_secret_is_a_config_error(run: Run, campaign: Path) -> None:
    set_secret(campaign, "SYNCCTL_CODE_SECRET", None)
    result = run("status", "grace.hopper@example.com")
    assert result.exit_code == 2
    assert "SYNCCTL_CODE_SECRET" in one_error_line(result)


def section(stdout: str, name: str) -> list[str]:
    """The indented lines under `name:` in the plain status."""
    lines = stdout.splitlines()
    start = lines.index(f"{name}:") + 1
    rows = []
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        rows.append(line.strip())
    return rows


def test_with_mautic_unread_discord_does_not_claim_no_link_is_stored(
    run: Run, config, sandbox: Sandbox
) -> None:
    reconcile(config)  # grace holds a basic link, stored in Mautic
    sandbox.mautic.inject(method=None, path="/api/contacts", status=503, times=None)
    result = run("status", "grace.hopper@example.com")
    assert result.exit_code == 1
    assert section(result.stdout, "Discord") == [
        "could not be read: what to look up comes from mautic, which could not be read"
    ]
    document = json.loads(run("status", "grace.hopper@example.com", "--json").stdout)
    assert "discord" in document["unchecked"] and document["discord"]["invites"] == []


def test_with_stripe_unread_shopware_does_not_claim_no_code_is_expected(
    run: Run, sandbox: Sandbox
) -> None:
    sandbox.stripe.inject(method="GET", path="/v1/checkout/sessions", status=503, times=None)
    result = run("status", "ada.lovelace@example.com")  # a paid VIP purchase, no code yet
    assert result.exit_code == 1
    assert section(result.stdout, "Shopware") == [
        "could not be read: what to look up comes from stripe, which could not be read"
    ]
    assert section(result.stdout, "Stripe")[0].startswith("could not be read: stripe: ")
