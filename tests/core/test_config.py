"""Config and secrets: every bad input gives one line naming file, key and fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from syncctl import config
from syncctl.cli import app
from syncctl.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
ALL_SECRETS = {name: f"value-of-{name.lower()}" for name in config.SECRET_NAMES}


@pytest.fixture
def example_text() -> str:
    return EXAMPLE.read_text()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "syncctl.toml"
    path.write_text(text)
    return path


def test_example_config_is_valid_and_documents_every_key() -> None:
    settings = config.read_settings(EXAMPLE)
    text = EXAMPLE.read_text()
    for section, model in type(settings).model_fields.items():
        assert f"[{section}]" in text
        sub = model.annotation
        for key in sub.model_fields:  # type: ignore[union-attr]
            if key == "fields":
                continue
            assert re.search(rf"^{key} = ", text, re.M), f"[{section}] {key} undocumented"
    for key in config.MauticFields.model_fields:
        assert re.search(rf"^{key} = ", text, re.M)


def test_defaults_fill_optional_keys(tmp_path: Path) -> None:
    minimal = """
[stripe]
vip_price_ids = ["price_abc"]
[mautic]
base_url = "https://m.example.org"
invite_email_vip = 1
invite_email_basic = 2
coupon_email = 3
[discord]
vip_channel_id = "123456789012345678"
basic_channel_id = "123456789012345679"
[shopware]
base_url = "https://s.example.org"
vip_promotion_id = "0123456789abcdef0123456789abcdef"
[espocrm]
base_url = "https://e.example.org"
"""
    settings = config.read_settings(write(tmp_path, minimal))
    assert settings.stripe.api_base == "https://api.stripe.com"
    assert settings.stripe.lookback_hours == 26
    assert settings.discord.api_base == "https://discord.com/api/v10"
    assert settings.discord.invite_max_age == 0
    assert settings.discord.vip_role_ids == [] and settings.discord.basic_role_ids == []
    assert settings.mautic.fields.invite_link_vip == "discord_invite_link_vip"
    assert settings.mautic.coupon_email_requires_opt_in is False
    assert settings.run.max_actions == 500


def test_role_ids_are_read_as_strings_in_order(tmp_path: Path, example_text: str) -> None:
    text = example_text.replace(
        "vip_role_ids = []", 'vip_role_ids = ["333333333333333333", "333333333333333334"]'
    )
    settings = config.read_settings(write(tmp_path, text))
    assert settings.discord.vip_role_ids == ["333333333333333333", "333333333333333334"]


BAD_CONFIGS = [
    pytest.param(
        lambda t: t.replace('vip_channel_id = "111111111111111111"\n', ""),
        r"\[discord\] vip_channel_id is required",
        id="missing-key",
    ),
    pytest.param(
        lambda t: t + "\n[slack]\nx = 1\n", r"unknown section \[slack\]", id="unknown-section"
    ),
    pytest.param(
        lambda t: t.replace("[run]\n", "[run]\nmax_actons = 3\n"),
        r"\[run\] unknown key 'max_actons'",
        id="unknown-key",
    ),
    pytest.param(
        lambda t: t.replace("max_actions = 500", 'max_actions = "many"'),
        r"\[run\] max_actions must be a valid integer",
        id="wrong-type",
    ),
    pytest.param(
        lambda t: t.replace('"https://mautic.example.org"', '"mautic.example.org"'),
        r"\[mautic\] base_url must be an http\(s\) URL",
        id="malformed-url",
    ),
    pytest.param(
        lambda t: t.replace('"111111111111111111"', '""'),
        r"\[discord\] vip_channel_id must be a Discord channel id",
        id="empty-channel-id",
    ),
    pytest.param(
        lambda t: t.replace(
            'basic_channel_id = "222222222222222222"', 'basic_channel_id = "111111111111111111"'
        ),
        r"\[discord\] vip_channel_id and basic_channel_id must be different",
        id="same-channels",
    ),
    pytest.param(
        lambda t: t.replace('lead_source = "Campaign"', "lead_source = "),
        r"invalid TOML: .*line \d+",
        id="malformed-toml",
    ),
    pytest.param(
        lambda t: t.split("[espocrm]")[0] + "[run]\nmax_actions = 5\n",
        r"section \[espocrm\] is missing",
        id="missing-section",
    ),
    pytest.param(
        lambda t: t.replace('vip_price_ids = ["price_1VIPreservation"]', "vip_price_ids = []"),
        r"\[stripe\] set vip_price_ids or vip_product_ids",
        id="no-vip-ids",
    ),
    pytest.param(
        lambda t: t.replace('"0123456789abcdef0123456789abcdef"', '"vip"'),
        r"\[shopware\] vip_promotion_id must be a Shopware id",
        id="bad-promotion-id",
    ),
    pytest.param(
        lambda t: t.replace("vip_role_ids = []", 'vip_role_ids = ["VIP"]'),
        r"\[discord\] vip_role_ids\[0\] must be a Discord role id \(digits only.*\(got 'VIP'\)",
        id="role-id-not-digits",
    ),
    pytest.param(
        lambda t: t.replace("basic_role_ids = []", 'basic_role_ids = "333333333333333333"'),
        r"\[discord\] basic_role_ids must be a valid list",
        id="role-ids-not-a-list",
    ),
    pytest.param(
        lambda t: t.replace(
            "vip_role_ids = []", 'vip_role_ids = ["333333333333333333", "333333333333333333"]'
        ),
        r"\[discord\] vip_role_ids lists a role twice",
        id="role-listed-twice",
    ),
    pytest.param(
        lambda t: t.replace("invite_max_age = 0", "invite_max_age = 9999999"),
        r"\[discord\] invite_max_age must be less than or equal to 604800",
        id="invite-age-over-discord-limit",
    ),
    pytest.param(
        lambda t: t.replace(
            '"https://mautic.example.org"', '"https://api:hunter2@mautic.example.org"'
        ),
        r"\[mautic\] base_url must not carry user:password: .*'https://\*\*\*@mautic",
        id="credentials-in-url",
    ),
    pytest.param(
        lambda t: t.replace('"https://mautic.example.org"', '"https://mautic.example.org:99999"'),
        r"\[mautic\] base_url has a port outside 1-65535",
        id="port-out-of-range",
    ),
    pytest.param(
        lambda t: t.replace('"111111111111111111"', "111111111111111111"),
        r"\[discord\] vip_channel_id must be a valid string \(put the value in quotes\)",
        id="unquoted-channel-id",
    ),
    pytest.param(
        lambda t: t.replace("[mautic.fields]", 'fields = "vip"\n[mautic.x]'),
        r"\[mautic\] fields must be a table: write it as a \[mautic.fields\] section",
        id="section-as-a-value",
    ),
    pytest.param(
        lambda t: t.replace('vip_status = "vip_status"', 'vip_status = "VIP Status"'),
        r"\[mautic.fields\] vip_status must be a Mautic field alias",
        id="bad-field-alias",
    ),
    pytest.param(
        lambda t: t.replace(
            'invite_link_basic = "discord_invite_link_basic"',
            'invite_link_basic = "discord_invite_link_vip"',
        ),
        r"\[mautic.fields\] invite_link_vip and invite_link_basic both name the Mautic field "
        r"'discord_invite_link_vip': give each key its own field",
        id="two-keys-one-field-alias",
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), BAD_CONFIGS)
def test_bad_config_is_one_line_naming_file_and_key(
    tmp_path: Path, example_text: str, mutate, expected: str
) -> None:
    path = write(tmp_path, mutate(example_text))
    with pytest.raises(ConfigError) as caught:
        config.read_settings(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert re.search(expected, message), message
    assert "hunter2" not in message


@pytest.mark.parametrize(("mutate", "expected"), BAD_CONFIGS[:5])
def test_bad_config_exits_2_without_traceback(
    tmp_path: Path, example_text: str, mutate, expected: str
) -> None:
    path = write(tmp_path, mutate(example_text))
    result = CliRunner().invoke(app, ["--config", str(path), "config", "show"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and re.search(expected, lines[0])


def test_missing_section_points_at_syncctl_init(tmp_path: Path, example_text: str) -> None:
    """An installed syncctl has no config.example.toml on disk; `init` writes its text."""
    path = write(tmp_path, example_text.split("[espocrm]")[0])
    with pytest.raises(ConfigError, match=r"section \[espocrm\] is missing: .*syncctl init"):
        config.read_settings(path)


def test_config_is_found_in_env_then_cwd_then_user_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, example_text: str
) -> None:
    monkeypatch.chdir(tmp_path)
    user = config.user_config_path()
    user.parent.mkdir(parents=True)
    user.write_text(example_text)
    assert config.find_config(None) == user
    write(tmp_path, example_text)
    assert config.find_config(None) == Path("syncctl.toml")
    elsewhere = tmp_path / "other.toml"
    elsewhere.write_text(example_text)
    monkeypatch.setenv("SYNCCTL_CONFIG", str(elsewhere))
    assert config.find_config(None) == elsewhere
    assert config.find_config(tmp_path / "syncctl.toml") == tmp_path / "syncctl.toml"


def test_no_config_anywhere_says_how_to_make_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"no config file.*syncctl init"):
        config.find_config(None)


def test_environment_wins_over_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("STRIPE_API_KEY=from-file\nESPOCRM_API_KEY=espo-from-file\n")
    secrets = config.read_secrets(env_file, {"STRIPE_API_KEY": "from-env"})
    assert secrets.get("STRIPE_API_KEY") == "from-env"
    assert secrets.get("ESPOCRM_API_KEY") == "espo-from-file"
    assert secrets.sources["STRIPE_API_KEY"] == "environment"


@pytest.mark.parametrize("name", config.SECRET_NAMES)
def test_each_missing_secret_is_named_with_the_fix(name: str, tmp_path: Path) -> None:
    present = {k: v for k, v in ALL_SECRETS.items() if k != name}
    secrets = config.read_secrets(None, present)
    with pytest.raises(ConfigError, match=rf"secret {name} is not set.*\.env"):
        secrets.require()


def test_every_missing_secret_is_named_in_one_line(tmp_path: Path) -> None:
    present = {
        k: v for k, v in ALL_SECRETS.items() if k not in ("STRIPE_API_KEY", "ESPOCRM_API_KEY")
    }
    with pytest.raises(ConfigError) as caught:
        config.read_secrets(None, present).require()
    message = str(caught.value)
    assert "\n" not in message
    assert "secrets STRIPE_API_KEY, ESPOCRM_API_KEY are not set" in message


def test_missing_secret_names_the_env_file_that_was_read(tmp_path: Path) -> None:
    env_file = tmp_path / "campaign.env"
    env_file.write_text("STRIPE_API_KEY=from-file\n")
    with pytest.raises(ConfigError) as caught:
        config.read_secrets(env_file, {}).require()
    message = str(caught.value)
    assert f"in neither the environment nor {env_file}" in message
    assert f"add them to {env_file}" in message


def test_missing_secret_without_env_file_says_where_one_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        config.read_secrets(None, {}).require()
    message = str(caught.value)
    assert f"no .env file was read (looked for {tmp_path / '.env'})" in message
    assert "--env-file" in message and "syncctl init" in message


def test_missing_secret_says_the_env_file_beside_the_config_was_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, example_text: str
) -> None:
    campaign = tmp_path / "etc"
    campaign.mkdir()
    write(campaign, example_text)
    (campaign / ".env").write_text("".join(f"{k}={v}\n" for k, v in ALL_SECRETS.items()))
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("SYNCCTL_CONFIG", str(campaign / "syncctl.toml"))
    result = CliRunner().invoke(app, ["reconcile", "--dry-run"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "secrets STRIPE_API_KEY, MAUTIC_USERNAME," in lines[0]
    assert f"{campaign / '.env'} beside the config was not read" in lines[0]
    assert f"pass --env-file {campaign / '.env'}" in lines[0]
    assert "value-of" not in result.output


def test_env_file_with_a_bad_line_names_the_line(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("STRIPE_API_KEY=ok\nthis is not an assignment\n")
    with pytest.raises(ConfigError, match=r"\.env line 2: cannot parse"):
        config.read_secrets(env_file, {})


def test_env_file_bare_name_without_value_is_reported_not_ignored(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("STRIPE_API_KEY=ok\nSYNCCTL_CODE_SECRET\n")
    with pytest.raises(ConfigError, match=r"\.env line 2: cannot parse"):
        config.read_secrets(env_file, {})


def test_env_file_bad_line_after_blank_lines_names_its_own_line(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("STRIPE_API_KEY=ok\n\n\nthis is not an assignment\n")
    with pytest.raises(ConfigError, match=r"\.env line 4: cannot parse"):
        config.read_secrets(env_file, {})


def test_env_file_names_every_malformed_line(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("\nbare\nSTRIPE_API_KEY=ok\n# comment\nnot an assignment\n\nlast")
    with pytest.raises(ConfigError) as caught:
        config.read_secrets(env_file, {})
    assert str(caught.value).startswith(f"{env_file} lines 2, 5, 7: cannot parse")


def test_missing_env_file_given_explicitly_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="env file not found"):
        config.read_secrets(tmp_path / "nope.env", {})


def test_secrets_repr_shows_names_only() -> None:
    secrets = config.read_secrets(None, ALL_SECRETS)
    assert "value-of" not in repr(secrets)
    assert "value-of" not in repr(secrets.values)


def test_config_show_masks_secrets(tmp_path: Path, example_text: str) -> None:
    path = write(tmp_path, example_text)
    env_file = tmp_path / "s.env"
    env_file.write_text(
        "".join(f"{k}={v}\n" for k, v in ALL_SECRETS.items() if k != "ESPOCRM_API_KEY")
    )
    result = CliRunner().invoke(
        app, ["--config", str(path), "--env-file", str(env_file), "config", "show"]
    )
    assert result.exit_code == 0, result.output
    assert "value-of" not in result.output
    assert 'vip_channel_id = "111111111111111111"' in result.stdout
    assert "ESPOCRM_API_KEY = MISSING" in result.stdout
    assert "STRIPE_API_KEY = ******** (from" in result.stdout
