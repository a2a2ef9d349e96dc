"""`syncctl doctor` against the sandbox: every check, the failure paths, zero writes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncctl.sandbox.stack import (
    BASIC_CHANNEL_ID,
    BASIC_ROLE_ID,
    GUILD_ID,
    VIP_PROMOTION_ID,
    VIP_ROLE_ID,
    Sandbox,
)
from tests.ops.conftest import Run, set_lead_source, set_secret

VIP_CHANNEL_ID_LINE = 'vip_channel_id = "100000000000000001"'
UNKNOWN_CHANNEL_LINE = 'vip_channel_id = "100000000000000777"'


def lines_of(result) -> dict[str, str]:
    """check name -> its whole line, from the plain output."""
    found = {}
    for line in result.stdout.splitlines():
        status, _, rest = line.partition(" ")
        if status in ("ok", "FAIL", "skip"):
            name = rest.strip().split(": ", 1)[0]
            found[name] = line
    return found


def test_all_checks_pass_with_zero_writes(run: Run, sandbox: Sandbox) -> None:
    sandbox.clear_logs()
    result = run("doctor")
    assert result.exit_code == 0, result.output
    checks = lines_of(result)
    expected = {
        "config",
        "secrets",
        "state_dir",
        "stripe.access",
        "stripe.events",
        "mautic.access",
        "mautic.field vip_status",
        "mautic.field promo_code",
        "mautic.field discord_invite_link_vip",
        "mautic.field discord_invite_link_basic",
        "mautic.field opt_in_confirmed",
        "mautic.email 11",
        "mautic.email 12",
        "mautic.email 13",
        "discord.access",
        "discord.channel vip",
        "discord.channel basic",
        "shopware.access",
        "shopware.promotion",
        "espocrm.access",
        "espocrm.lead_source",
    }
    assert expected <= set(checks), sorted(checks)
    assert any(name.startswith("stripe.price ") for name in checks)
    assert all(line.startswith("ok ") for line in checks.values()), result.stdout
    assert "all checks passed" in result.stdout
    assert sandbox.write_count() == 0
    assert sandbox.call_count() > 0


def test_json_report(run: Run, sandbox: Sandbox) -> None:
    result = run("doctor", "--json")
    document = json.loads(result.stdout)
    assert document["format_version"] == 1
    assert document["ok"] is True
    assert {c["status"] for c in document["checks"]} == {"ok"}
    assert all(s["writes"] == 0 for s in document["api_calls"].values())
    assert sandbox.write_count() == 0


def failing(result, name: str) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output + result.stderr
    line = lines_of(result)[name]
    assert line.startswith("FAIL"), line
    assert "-> fix: " in line
    return line


def test_wrong_mautic_password(run: Run, campaign: Path, sandbox: Sandbox) -> None:
    set_secret(campaign, "MAUTIC_PASSWORD", "not-the-password")
    result = run("doctor")
    line = failing(result, "mautic.access")
    assert "MAUTIC_PASSWORD" in line
    checks = lines_of(result)
    assert checks["mautic.fields"].startswith("skip")
    assert checks["stripe.access"].startswith("ok")  # other services are still checked
    assert "not-the-password" not in result.output
    assert sandbox.write_count() == 0


def test_wrong_discord_token_and_stripe_key(run: Run, campaign: Path) -> None:
    set_secret(campaign, "DISCORD_BOT_TOKEN", "sandbox.wrong")
    set_secret(campaign, "STRIPE_API_KEY", "rk_sandbox_wrong")
    result = run("doctor")
    failing(result, "discord.access")
    failing(result, "stripe.access")
    assert "rk_sandbox_wrong" not in result.output


def test_missing_secret_is_named_and_its_service_skipped(run: Run, campaign: Path) -> None:
    set_secret(campaign, "ESPOCRM_API_KEY", None)
    result = run("doctor")
    assert "ESPOCRM_API_KEY" in failing(result, "secrets")
    assert lines_of(result)["espocrm.access"].startswith("skip")


def test_missing_secrets_name_the_env_file_that_was_read(run: Run, campaign: Path) -> None:
    set_secret(campaign, "ESPOCRM_API_KEY", None)
    set_secret(campaign, "STRIPE_API_KEY", None)
    line = failing(run("doctor"), "secrets")
    assert "secrets STRIPE_API_KEY, ESPOCRM_API_KEY are not set" in line
    assert f"add them to {campaign / '.env'}" in line


def test_env_file_others_can_read_is_a_failing_check(run: Run, campaign: Path) -> None:
    (campaign / ".env").chmod(0o644)
    line = failing(run("doctor"), "secrets.file")
    assert "mode 0644" in line and "chmod 600" in line


def test_missing_mautic_field(run: Run, campaign: Path) -> None:
    config = campaign / "syncctl.toml"
    config.write_text(config.read_text() + '\n[mautic.fields]\npromo_code = "coupon_code"\n')
    line = failing(run("doctor"), "mautic.field coupon_code")
    assert "no contact field with alias coupon_code" in line
    assert "Custom Fields" in line


def test_mautic_field_of_the_wrong_type_or_unpublished(run: Run, sandbox: Sandbox) -> None:
    sandbox.mautic.add_field("vip_status", "text", label="VIP status")
    sandbox.mautic.add_field("opt_in_confirmed", "boolean", published=False)
    result = run("doctor")
    assert "type is text, syncctl needs Boolean" in failing(result, "mautic.field vip_status")
    assert "unpublished" in failing(result, "mautic.field opt_in_confirmed")


def test_unpublished_and_missing_emails(run: Run, sandbox: Sandbox, campaign: Path) -> None:
    sandbox.mautic.set_email_published(13, False)
    config = campaign / "syncctl.toml"
    config.write_text(config.read_text().replace("invite_email_vip = 11", "invite_email_vip = 99"))
    result = run("doctor")
    assert "not published" in failing(result, "mautic.email 13")
    assert "invite_email_vip" in failing(result, "mautic.email 99")


def test_discord_bot_without_invite_permission(run: Run, sandbox: Sandbox) -> None:
    sandbox.discord.set_permissions(BASIC_CHANNEL_ID, {"MANAGE_CHANNELS"})
    line = failing(run("doctor"), "discord.channel basic")
    assert "CREATE_INSTANT_INVITE" in line
    assert sandbox.write_count() == 0 and sandbox.discord.created_count == 0


def test_discord_bot_without_manage_permission_or_sight(run: Run, sandbox: Sandbox) -> None:
    sandbox.discord.set_permissions(BASIC_CHANNEL_ID, {"CREATE_INSTANT_INVITE"})
    assert "MANAGE_CHANNELS" in failing(run("doctor"), "discord.channel basic")
    sandbox.discord.hide_channel(BASIC_CHANNEL_ID)
    assert "VIEW_CHANNEL" in failing(run("doctor"), "discord.channel basic")


def set_roles(campaign: Path, vip: list[str], basic: list[str]) -> None:
    """Give the campaign's config [discord] vip_role_ids and basic_role_ids."""
    config = campaign / "syncctl.toml"
    text = re.sub(r"(?m)^(vip|basic)_role_ids = .*\n", "", config.read_text())
    line = f'basic_channel_id = "{BASIC_CHANNEL_ID}"\n'
    roles = f"vip_role_ids = {json.dumps(vip)}\nbasic_role_ids = {json.dumps(basic)}\n"
    config.write_text(text.replace(line, line + roles))


def test_roles_below_the_bot_pass_without_more_calls(
    run: Run, campaign: Path, sandbox: Sandbox
) -> None:
    run("doctor")
    calls = sandbox.discord.log[:]
    sandbox.clear_logs()
    set_roles(campaign, [VIP_ROLE_ID], [BASIC_ROLE_ID])
    result = run("doctor")
    assert result.exit_code == 0, result.output
    checks = lines_of(result)
    assert checks[f"discord.role vip {VIP_ROLE_ID}"].startswith("ok ")
    assert "'VIP': vip invites may grant it (below the bot's role 'syncctl-bot')" in result.stdout
    assert checks[f"discord.role basic {BASIC_ROLE_ID}"].startswith("ok ")
    assert len(sandbox.discord.log) == len(calls)
    assert sandbox.write_count() == 0


def test_a_role_above_the_bot_fails_naming_it_and_the_fix(
    run: Run, campaign: Path, sandbox: Sandbox
) -> None:
    set_roles(campaign, [VIP_ROLE_ID], [])
    sandbox.discord.set_role_position(VIP_ROLE_ID, 50)
    line = failing(run("doctor"), f"discord.role vip {VIP_ROLE_ID}")
    assert f"role 'VIP' ({VIP_ROLE_ID}) is at position 50, not below the bot's role" in line
    assert "drag the bot's role 'syncctl-bot' above 'VIP' (Server Settings > Roles)" in line
    assert "Discord would refuse every vip invite" in line


def test_a_bot_without_manage_roles_fails_each_role(
    run: Run, campaign: Path, sandbox: Sandbox
) -> None:
    set_roles(campaign, [VIP_ROLE_ID], [BASIC_ROLE_ID])
    sandbox.discord.set_bot_permissions(GUILD_ID, set())
    result = run("doctor")
    for line in (
        failing(result, f"discord.role vip {VIP_ROLE_ID}"),
        failing(result, f"discord.role basic {BASIC_ROLE_ID}"),
    ):
        assert "the bot lacks Manage Roles (MANAGE_ROLES)" in line
        assert "give the bot's role 'syncctl-bot' the Manage Roles permission" in line


def test_an_administrator_bot_may_grant_roles(run: Run, campaign: Path, sandbox: Sandbox) -> None:
    set_roles(campaign, [VIP_ROLE_ID], [])
    sandbox.discord.set_bot_permissions(GUILD_ID, {"ADMINISTRATOR"})
    result = run("doctor")
    assert lines_of(result)[f"discord.role vip {VIP_ROLE_ID}"].startswith("ok ")


def test_a_role_the_server_lacks_fails_naming_the_config_key(run: Run, campaign: Path) -> None:
    set_roles(campaign, [], ["100000000000000999"])
    line = failing(run("doctor"), "discord.role basic 100000000000000999")
    assert f"role 100000000000000999 does not exist in server {GUILD_ID}" in line
    assert "Copy Role ID" in line and "or remove it from [discord] basic_role_ids" in line


def test_the_bots_own_role_fails_as_managed(run: Run, campaign: Path, sandbox: Sandbox) -> None:
    bot_role = sandbox.discord.bot_role_id(GUILD_ID)
    set_roles(campaign, [bot_role], [])
    line = failing(run("doctor"), f"discord.role vip {bot_role}")
    assert "managed by an integration" in line


def test_roles_are_skipped_when_the_channel_cannot_be_read(run: Run, campaign: Path) -> None:
    set_roles(campaign, [VIP_ROLE_ID], [])
    config = campaign / "syncctl.toml"
    config.write_text(config.read_text().replace(VIP_CHANNEL_ID_LINE, UNKNOWN_CHANNEL_LINE))
    result = run("doctor")
    failing(result, "discord.channel vip")
    assert lines_of(result)[f"discord.role vip {VIP_ROLE_ID}"].startswith("skip ")


@pytest.mark.parametrize(
    ("flags", "expected", "fix"),
    [
        ({"active": False}, "it is not active", "set it active"),
        (
            {"use_individual_codes": False},
            "does not use individual codes",
            "under Codes choose individual codes",
        ),
    ],
    ids=["disabled", "individual-codes-off"],
)
def test_shopware_promotion_unusable(run: Run, sandbox: Sandbox, flags, expected, fix) -> None:
    sandbox.shopware.add_promotion(VIP_PROMOTION_ID, name="VIP backers", **flags)
    line = failing(run("doctor"), "shopware.promotion")
    assert expected in line and fix in line and "Marketing > Promotions" in line


def test_shopware_promotion_that_ended_fails_naming_its_end_and_the_fix(
    run: Run, sandbox: Sandbox
) -> None:
    sandbox.shopware.update_promotion(
        VIP_PROMOTION_ID, valid_until=datetime(2025, 3, 1, tzinfo=UTC)
    )
    line = failing(run("doctor"), "shopware.promotion")
    assert "VIP backers: it ended at 2025-03-01 00:00 UTC" in line
    assert "move its end date into the future or clear it" in line
    assert sandbox.write_count() == 0


def test_shopware_promotion_not_started_yet_fails(run: Run, sandbox: Sandbox) -> None:
    start = datetime.now(UTC) + timedelta(days=3)
    sandbox.shopware.update_promotion(VIP_PROMOTION_ID, valid_from=start)
    line = failing(run("doctor"), "shopware.promotion")
    assert f"it starts only at {start:%Y-%m-%d %H:%M} UTC" in line and "start date" in line


def test_shopware_promotion_inside_its_dates_passes_and_shows_them(
    run: Run, sandbox: Sandbox
) -> None:
    end = datetime.now(UTC) + timedelta(days=30)
    sandbox.shopware.update_promotion(VIP_PROMOTION_ID, valid_until=end)
    result = run("doctor")
    assert result.exit_code == 0, result.output
    line = lines_of(result)["shopware.promotion"]
    assert line.startswith("ok ") and f"valid until {end:%Y-%m-%d %H:%M} UTC" in line


def test_shopware_promotion_missing(run: Run, campaign: Path) -> None:
    config = campaign / "syncctl.toml"
    config.write_text(config.read_text().replace(VIP_PROMOTION_ID, "f" * 32))
    assert "vip_promotion_id" in failing(run("doctor"), "shopware.promotion")


def test_shopware_wrong_secret(run: Run, campaign: Path) -> None:
    set_secret(campaign, "SHOPWARE_CLIENT_SECRET", "wrong-secret-value")
    assert "SHOPWARE_CLIENT_SECRET" in failing(run("doctor"), "shopware.access")


def test_espo_user_may_not_create_leads(run: Run, sandbox: Sandbox) -> None:
    sandbox.espocrm.set_lead_acl(create=False)
    line = failing(run("doctor"), "espocrm.access")
    assert "may not create Leads" in line and "Roles" in line


def test_a_lead_source_espo_does_not_offer_fails_with_the_allowed_values(
    run: Run, campaign: Path, sandbox: Sandbox
) -> None:
    set_lead_source(campaign, "Bogus")
    line = failing(run("doctor"), "espocrm.lead_source")
    assert "lead_source = 'Bogus' is not one of the Lead's source options" in line
    assert "'Campaign'" in line and "'Web Site'" in line
    assert "Entity Manager > Lead > Fields > Source" in line
    assert sandbox.write_count() == 0


def test_a_lead_source_added_to_the_options_in_espo_passes(
    run: Run, campaign: Path, sandbox: Sandbox
) -> None:
    sandbox.espocrm.source_options.append("Kickstarter")
    set_lead_source(campaign, "Kickstarter")
    result = run("doctor")
    assert result.exit_code == 0, result.output
    assert lines_of(result)["espocrm.lead_source"].startswith("ok ")


def test_stripe_price_that_does_not_exist(run: Run, campaign: Path) -> None:
    config = campaign / "syncctl.toml"
    text = config.read_text().replace("price_sandboxVIPreservation", "price_doesNotExist")
    config.write_text(text)
    assert "vip_price_ids" in failing(run("doctor"), "stripe.price price_doesNotExist")


def test_unreachable_service(run: Run, campaign: Path, sandbox: Sandbox) -> None:
    config = campaign / "syncctl.toml"
    config.write_text(config.read_text().replace(sandbox.urls["espocrm"], "http://127.0.0.1:9"))
    assert "base URL" in failing(run("doctor"), "espocrm.access")


def test_invalid_config_is_the_one_failing_check(run: Run, campaign: Path) -> None:
    config = campaign / "syncctl.toml"
    config.write_text(config.read_text().replace("[espocrm]", "[espocrm]\ncolour = 1"))
    result = run("doctor")
    line = failing(result, "config")
    assert "unknown key 'colour'" in line
    assert len(lines_of(result)) == 1


def test_two_field_keys_sharing_one_alias_fail_the_config_check(
    run: Run, campaign: Path, sandbox: Sandbox
) -> None:
    config = campaign / "syncctl.toml"
    config.write_text(
        config.read_text() + '\n[mautic.fields]\ninvite_link_basic = "discord_invite_link_vip"\n'
    )
    result = run("doctor")
    line = failing(result, "config")
    assert "invite_link_vip and invite_link_basic both name" in line
    assert "discord_invite_link_basic" in line  # the fix names the field to use
    assert sandbox.call_count() == 0


def test_no_config_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from syncctl.cli import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 1
    assert "syncctl init" in result.stdout
