"""Bad input, table-driven, through the CLI an operator runs.

Each case: one clear line on stderr, the documented exit code (2 for bad
config, secrets and command lines; README "Exit codes"), no write call to any
service (none at all when the input is refused before the run), no
traceback. `tests/core/test_config.py` checks the config messages at the
function level; here the same kinds of mistakes go through `reconcile`,
`reconcile --dry-run --json` and `reissue-invite` against a running sandbox.
Odd data that the services hold (no email, duplicates, apostrophes, unicode)
must not crash a run nor make a wrong write.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from syncctl.config import SECRET_NAMES
from syncctl.sandbox.stack import (
    BASIC_CHANNEL_ID,
    SUPPORTER_PRICE_ID,
    SUPPORTER_PRODUCT_ID,
    VIP_PRICE_ID,
    VIP_PRODUCT_ID,
    Sandbox,
)

from .conftest import assert_one_clean_line, run_cli

VIP = [(VIP_PRICE_ID, VIP_PRODUCT_ID, 1)]
SUPPORTER = [(SUPPORTER_PRICE_ID, SUPPORTER_PRODUCT_ID, 1)]

#: Refused before the run: the same answer from every command that loads the config.
COMMANDS = [
    ("reconcile",),
    ("reconcile", "--dry-run", "--json"),
    ("reissue-invite", "grace.hopper@example.com", "--yes"),
]


def _section(text: str, name: str) -> tuple[int, int]:
    start = text.index(f"[{name}]\n")
    end = text.find("\n[", start + 1)
    return start, len(text) if end < 0 else end + 1


def in_section(name: str, line: str) -> Callable[[str], str]:
    """Add a line at the end of a section."""

    def mutate(text: str) -> str:
        _, end = _section(text, name)
        return text[:end].rstrip("\n") + f"\n{line}\n\n" + text[end:]

    return mutate


def replace(pattern: str, new: str) -> Callable[[str], str]:
    def mutate(text: str) -> str:
        changed, n = re.subn(pattern, new, text, count=1, flags=re.M)
        assert n == 1, pattern
        return changed

    return mutate


def drop_section(name: str) -> Callable[[str], str]:
    def mutate(text: str) -> str:
        start, end = _section(text, name)
        return text[:start] + text[end:]

    return mutate


BAD_CONFIGS = [
    pytest.param(
        replace(r"^max_actions = 500$", 'max_actions = "500'),
        r"invalid TOML",
        id="toml-unclosed-string",
    ),
    pytest.param(
        in_section("espocrm", "lead_source ="), r"invalid TOML: .*line \d+", id="toml-missing-value"
    ),
    pytest.param(
        in_section("espocrm", 'base_url = "https://crm.example.org"'),
        r"invalid TOML",
        id="toml-duplicate-key",
    ),
    pytest.param(
        lambda t: t + '\n[slack]\nwebhook = "x"\n',
        r"unknown section \[slack\]",
        id="unknown-section",
    ),
    pytest.param(
        in_section("run", "max_actons = 3"), r"\[run\] unknown key 'max_actons'", id="unknown-key"
    ),
    pytest.param(
        lambda t: t + '\n[mautic.fields]\nvip = "vip"\n',
        r"\[mautic.fields\] unknown key 'vip'",
        id="unknown-nested-key",
    ),
    pytest.param(
        lambda t: t + '\n[mautic.fields]\ninvite_link_basic = "discord_invite_link_vip"\n',
        r"\[mautic.fields\] invite_link_vip and invite_link_basic both name the Mautic field",
        id="two-keys-one-field-alias",
    ),
    pytest.param(
        replace(r"^max_actions = 500$", 'max_actions = "many"'),
        r"\[run\] max_actions must be a valid integer",
        id="type-int-as-string",
    ),
    pytest.param(
        replace(r"^vip_price_ids = .*$", 'vip_price_ids = "price_sandboxVIPreservation"'),
        r"\[stripe\] vip_price_ids must be a valid list",
        id="type-string-for-list",
    ),
    pytest.param(
        replace(r"^invite_email_vip = 11$", 'invite_email_vip = "11"'),
        r"\[mautic\] invite_email_vip must be a valid integer",
        id="type-email-id-as-string",
    ),
    pytest.param(
        in_section("mautic", 'coupon_email_requires_opt_in = "yes"'),
        r"\[mautic\] coupon_email_requires_opt_in must be a valid boolean",
        id="type-bool-as-string",
    ),
    pytest.param(
        replace(r'^vip_channel_id = ".*"$', "vip_channel_id = 100000000000000001"),
        r"\[discord\] vip_channel_id must be a valid string",
        id="type-channel-id-as-number",
    ),
    pytest.param(
        replace(r"^coupon_email = 13$", "coupon_email = 0"),
        r"\[mautic\] coupon_email must be greater than 0",
        id="email-id-zero",
    ),
    pytest.param(
        replace(r"^max_actions = 500$", "max_actions = 0"),
        r"\[run\] max_actions must be greater than or equal to 1",
        id="max-actions-zero",
    ),
    pytest.param(
        replace(r'^vip_channel_id = ".*"$', 'vip_channel_id = ""'),
        r"\[discord\] vip_channel_id must be a Discord channel id",
        id="empty-vip-channel-id",
    ),
    pytest.param(
        replace(r'^basic_channel_id = ".*"$', 'basic_channel_id = "  "'),
        r"\[discord\] basic_channel_id must be a Discord channel id",
        id="blank-basic-channel-id",
    ),
    pytest.param(
        replace(r'^basic_channel_id = ".*"$', 'basic_channel_id = "#general"'),
        r"\[discord\] basic_channel_id must be a Discord channel id",
        id="channel-name-not-id",
    ),
    pytest.param(
        replace(r'^base_url = "http://127.0.0.1:\d+"$', 'base_url = "mautic.example.org"'),
        r"\[mautic\] base_url must be an http\(s\) URL",
        id="url-without-scheme",
    ),
    pytest.param(
        lambda t: re.sub(r'(\[shopware\]\nbase_url = )"[^"]*"', r'\1"ftp://shop.example.org"', t),
        r"\[shopware\] base_url must be an http\(s\) URL",
        id="url-ftp",
    ),
    pytest.param(
        lambda t: re.sub(r'(\[espocrm\]\nbase_url = )"[^"]*"', r'\1"https://"', t),
        r"\[espocrm\] base_url must be an http\(s\) URL",
        id="url-without-host",
    ),
    pytest.param(
        replace(r'^api_base = "(http://127.0.0.1:\d+)"$', r'api_base = "\1?key=x"'),
        r"\[stripe\] api_base must not carry a query string",
        id="url-with-query",
    ),
    pytest.param(
        replace(r'^api_base = "http://127.0.0.1:\d+/api/v10"$', 'api_base = ""'),
        r"\[discord\] api_base must be an http\(s\) URL",
        id="url-empty",
    ),
    pytest.param(drop_section("espocrm"), r"section \[espocrm\] is missing", id="missing-section"),
    pytest.param(
        replace(r"^vip_promotion_id = .*\n", ""),
        r"\[shopware\] vip_promotion_id is required",
        id="missing-key",
    ),
    pytest.param(lambda t: "", r"section \[stripe\] is missing", id="empty-file"),
]


@pytest.mark.parametrize(("mutate", "expected"), BAD_CONFIGS)
def test_bad_config_is_refused_before_any_call(
    cli, campaign, sandbox: Sandbox, mutate, expected: str
) -> None:
    config_path, _ = campaign
    config_path.write_text(mutate(config_path.read_text()))
    for command in COMMANDS:
        result = cli(*command)
        assert result.exit_code == 2, (command, result.output)
        line = assert_one_clean_line(result)
        assert line.startswith(f"syncctl: error: {config_path}: "), line
        assert re.search(expected, line), line
        assert result.stdout == ""  # --json prints nothing but a document
    assert sandbox.call_count() == 0


def test_config_that_is_not_utf8_or_not_there(cli, campaign, sandbox: Sandbox) -> None:
    config_path, _ = campaign
    config_path.write_bytes(b'[stripe]\napi_base = "\xff\xfe"\n')
    assert "cannot read" in assert_one_clean_line(cli("reconcile"))
    missing = config_path.parent / "nope.toml"
    result = cli("reconcile", config=missing)
    assert result.exit_code == 2
    assert f"{missing}: config file not found" in assert_one_clean_line(result)
    assert sandbox.call_count() == 0


def test_detailed_exitcode_turns_a_config_error_into_1(cli, campaign, sandbox: Sandbox) -> None:
    """README: with --detailed-exitcode, 2 means changes, so errors of any kind exit 1."""
    config_path, _ = campaign
    config_path.write_text(config_path.read_text() + "\n[slack]\n")
    result = cli("reconcile", "--detailed-exitcode")
    assert result.exit_code == 1
    assert "unknown section [slack]" in assert_one_clean_line(result)
    assert sandbox.call_count() == 0


@pytest.mark.parametrize(
    "args",
    [
        ("reconcile", "--detailed-exitcode", "--bogus"),
        ("reconcile", "--bogus", "--detailed-exitcode"),
        ("reconcile", "--detailed-exitcode", "--max-actions", "0"),
        ("reconcile", "--max-actions", "0", "--detailed-exitcode"),
        ("--bogus", "reconcile", "--detailed-exitcode"),
    ],
    ids=["flag-first", "flag-last", "bad-value-after", "bad-value-before", "bad-global"],
)
def test_detailed_exitcode_turns_a_usage_error_into_1(cli, sandbox: Sandbox, args) -> None:
    """2 would read as "changes were applied" to a caller that asked for detailed codes."""
    result = cli(*args)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert sum("Error" in line for line in result.stderr.splitlines()) == 1
    assert sandbox.call_count() == 0


# -- secrets ----------------------------------------------------------------------------------


def env_without(env_path: Path, name: str, replacement: str | None = None) -> None:
    lines = [line for line in env_path.read_text().splitlines() if not line.startswith(f"{name}=")]
    if replacement is not None:
        lines.append(f"{name}={replacement}")
    env_path.write_text("".join(f"{line}\n" for line in lines))


@pytest.mark.parametrize("how", ["absent", "empty"])
@pytest.mark.parametrize("name", SECRET_NAMES)
def test_each_missing_secret_stops_every_command_before_any_call(
    cli, campaign, sandbox: Sandbox, name: str, how: str
) -> None:
    _, env_path = campaign
    env_without(env_path, name, None if how == "absent" else "")
    for command in COMMANDS:
        result = cli(*command)
        assert result.exit_code == 2, (command, result.output)
        line = assert_one_clean_line(result)
        assert f"secret {name} is not set" in line
        assert ".env" in line  # says where to put it
    assert sandbox.call_count() == 0


#: Credentials that travel in HTTP headers; quoted in .env so dotenv keeps the oddity.
HEADER_SECRETS = ["STRIPE_API_KEY", "DISCORD_BOT_TOKEN", "ESPOCRM_API_KEY"]
ODD_VALUES = {
    "non-ascii": '"zq\u00e9-\u00e4\u00f6\u00fc-4242"',
    "line-break": '"zqline1-4242\\nzqline2"',
    "inner-space": '"zq with spaces 4242"',
}


@pytest.mark.parametrize("kind", ODD_VALUES)
@pytest.mark.parametrize("name", HEADER_SECRETS)
def test_a_credential_no_http_header_can_carry_is_a_config_error(
    cli, campaign, sandbox: Sandbox, name: str, kind: str
) -> None:
    """Was: a traceback (non-ASCII); writes to the other services, then every
    call failing with the credential quoted in "Illegal header value" (line
    break); a 401 after the other services were written (space). Now: refused
    at start, named, never echoed."""
    _, env_path = campaign
    env_without(env_path, name, ODD_VALUES[kind])
    for command in COMMANDS:
        result = cli(*command)
        assert result.exit_code == 2, (command, result.output, repr(result.exception))
        line = assert_one_clean_line(result)
        assert name in line, line
        assert "zq" not in result.output and "4242" not in result.output
    assert sandbox.call_count() == 0


# -- the .env file -----------------------------------------------------------------------------

#: The sandbox's .env: its marker line, then the eight secrets and the two webhook secrets;
#: a line added at the end is 12.
BAD_ENV_FILES = [
    pytest.param(
        lambda t: t + "this is not an assignment\n",
        r"\.env line 12: cannot parse",
        id="not-an-assignment",
    ),
    pytest.param(
        lambda t: t + 'DISCORD_HINT="unterminated\n',
        r"\.env line 12: cannot parse",
        id="unterminated-quote",
    ),
    pytest.param(
        lambda t: t + "=value-without-name\n", r"\.env line 12: cannot parse", id="no-name"
    ),
    pytest.param(
        lambda t: "garbage line\n" + t, r"\.env line 1: cannot parse", id="bad-first-line"
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), BAD_ENV_FILES)
def test_bad_env_line_is_named_by_number(cli, campaign, sandbox: Sandbox, mutate, expected) -> None:
    _, env_path = campaign
    env_path.write_text(mutate(env_path.read_text()))
    for command in COMMANDS:
        result = cli(*command)
        assert result.exit_code == 2
        line = assert_one_clean_line(result)
        assert re.search(expected, line), line
        assert "NAME=value" in line  # the fix
    assert sandbox.call_count() == 0


def test_env_file_that_is_not_utf8_or_missing(cli, campaign, sandbox: Sandbox) -> None:
    _, env_path = campaign
    env_path.write_bytes(b"STRIPE_API_KEY=\xff\xfe\n")
    assert "cannot read" in assert_one_clean_line(cli("reconcile"))
    result = cli("reconcile", env=env_path.parent / "missing.env")
    assert result.exit_code == 2
    assert "env file not found" in assert_one_clean_line(result)
    assert sandbox.call_count() == 0


def test_env_file_given_as_a_directory_is_a_usage_error(cli, campaign, sandbox: Sandbox) -> None:
    _, env_path = campaign
    result = cli("reconcile", env=env_path.parent)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if "Error" in line]
    assert len(errors) == 1 and "is a directory" in errors[0]
    assert sandbox.call_count() == 0


def test_harmless_env_oddities_are_accepted(cli, campaign, sandbox: Sandbox) -> None:
    """export prefixes, CRLF line ends, comments, a BOM, blank lines: all fine."""
    _, env_path = campaign
    lines = env_path.read_text().splitlines()
    env_path.write_text("\ufeff# secrets\r\n\r\n" + "".join(f"export {line}\r\n" for line in lines))
    result = cli("reconcile", "--dry-run")
    assert result.exit_code == 0, result.output
    assert sandbox.write_count() == 0


# -- reissue-invite --------------------------------------------------------------------------

REISSUE_REFUSED = [
    ("not-an-email", "is not an email address"),
    ("", "is not an email address"),
    ("a@b", "is not an email address"),
    ("@example.com", "is not an email address"),
    ("grace.hopper@", "is not an email address"),
    ("two@@example.com", "is not an email address"),
    ("grace hopper@example.com", "is not an email address"),
    ("grace.hopper@example.com,ada.lovelace@example.com", "is not an email address"),
    ("grace.hopper@example.com,", "is not an email address"),
    ("<grace.hopper@example.com>", "is not an email address"),
    ("grace.hopper@example..com", "is not an email address"),
    ("nobody@example.com", "no Mautic contact has the email nobody@example.com"),
    ("o'nobody@example.com", "no Mautic contact has the email o'nobody@example.com"),
    ("zo\u00eb@example.com", "no Mautic contact has the email zo\u00eb@example.com"),
    ("%@example.com", "no Mautic contact"),
    ("edsger.dijkstra@example.com", "has not opted in"),
    ("Edsger.Dijkstra@EXAMPLE.com", "edsger.dijkstra@example.com has not opted in"),
]


@pytest.mark.parametrize(
    ("email", "expected"), REISSUE_REFUSED, ids=[e or "empty" for e, _ in REISSUE_REFUSED]
)
def test_reissue_refuses_with_one_line_exit_2_and_no_write(
    cli, sandbox: Sandbox, email, expected
) -> None:
    for flags in (("--yes",), ("--dry-run",), ("--yes", "--json")):
        result = cli("reissue-invite", email, *flags)
        assert result.exit_code == 2, (flags, result.output)
        assert expected in assert_one_clean_line(result)
        assert result.stdout == ""
    assert sandbox.write_count() == 0


@pytest.mark.parametrize(
    "email",
    ["GRACE.HOPPER@Example.Com", "  grace.hopper@example.com  ", "Miles.O'Brien@Example.com"],
    ids=["mixed-case", "padded", "apostrophe-mixed-case"],
)
def test_reissue_finds_the_contact_whatever_the_case(cli, sandbox: Sandbox, email: str) -> None:
    assert cli("reconcile").exit_code == 0
    sandbox.clear_logs()
    result = cli("reissue-invite", email, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)["plan"]["actions"]
    assert [a["kind"] for a in plan] == [
        "revoke_invite",
        "clear_link",
        "issue_invite",
        "send_email",
    ]
    assert {a["subject"] for a in plan} == {email.strip().lower()}
    assert sandbox.write_count() == 0


def test_a_command_line_mistake_is_a_usage_error(cli, sandbox: Sandbox) -> None:
    for args in (
        ("reissue-invite",),
        ("reconcile", "--max-actions", "0"),
        ("reconcile", "--bogus"),
        ("sandbox", "serve", "--port-base", "65533"),
        ("sandbox", "serve", "--latency", "-1"),
        ("demo", "--latency", "-1"),
    ):
        result = cli(*args)
        assert result.exit_code == 2, args
        assert "Traceback" not in result.output
        assert sum("Error" in line for line in result.stderr.splitlines()) == 1
    assert sandbox.call_count() == 0


# -- odd data held by the services ---------------------------------------------------------------


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[tuple[Sandbox, Callable[..., object]]]:
    """An empty sandbox (emails and channels only) and a CLI pointed at it."""
    with Sandbox() as sb:
        config_path, env_path = sb.write_files(tmp_path / "campaign")

        def invoke(*args: str):
            return run_cli(["--config", str(config_path), "--env-file", str(env_path), *args])

        yield sb, invoke


def run_json(invoke, *args: str) -> tuple[int, dict]:
    result = invoke("reconcile", "--json", *args)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, json.loads(result.stdout)


def converges(sb: Sandbox, invoke) -> None:
    sb.clear_logs()
    code, again = run_json(invoke)
    assert code == 0 and again["plan"]["actions"] == [], again["plan"]["actions"]
    assert sb.write_count() == 0


def test_an_opted_in_contact_without_email_gets_a_note_and_nothing_else(bare) -> None:
    sb, invoke = bare
    cid = sb.mautic.add_contact(None, firstname="No", lastname="Mail", opt_in_confirmed=True)
    code, doc = run_json(invoke)
    assert code == 0
    assert doc["plan"]["actions"] == []
    assert {"subject": f"contact {cid}", "message": "opted in but has no email address"} in doc[
        "plan"
    ]["notes"]
    assert sb.write_count() == 0
    converges(sb, invoke)


def test_a_vip_purchase_without_email_gets_a_note_and_no_coupon(bare) -> None:
    sb, invoke = bare
    sb.stripe.add_session(None, name="Ghost Buyer", line_items=VIP)
    code, doc = run_json(invoke)
    assert code == 0 and doc["plan"]["actions"] == []
    assert any("without an email" in n["message"] for n in doc["plan"]["notes"])
    assert sb.shopware.codes() == [] and sb.write_count() == 0


def test_duplicate_emails_in_mautic_promote_one_contact_and_say_so(bare) -> None:
    sb, invoke = bare
    first = sb.mautic.add_contact(
        "twin@example.com", firstname="Twin", lastname="One", opt_in_confirmed=True
    )
    second = sb.mautic.add_contact(
        "Twin@Example.com", firstname="Twin", lastname="Two", opt_in_confirmed=True
    )
    sb.stripe.add_session("TWIN@example.com", name="Twin One", line_items=VIP)
    code, doc = run_json(invoke)
    assert code == 0
    notes = [n["message"] for n in doc["plan"]["notes"] if n["subject"] == "twin@example.com"]
    assert len(notes) == 1  # named once, with both ids
    assert f"ids {first}, {second}" in notes[0] and "merge them in Mautic" in notes[0]
    assert sb.mautic.contact(first)["vip_status"] in (True, 1, "1")
    assert sb.mautic.contact(second)["vip_status"] in (False, 0, "0", None, "")
    assert len(sb.shopware.codes()) == 1  # one purchase, one code
    assert len(sb.mautic.sent(email_id=13)) == 1  # one coupon email
    leads = [
        lead
        for lead in sb.espocrm.leads()
        if (lead.get("emailAddress") or "").lower() == "twin@example.com"
    ]
    assert len(leads) == 1  # one lead per email
    assert sb.mautic.find("twin@example.com") == [first, second]  # no third contact
    converges(sb, invoke)


def test_an_apostrophe_in_the_address_finds_the_contact_not_a_new_one(bare) -> None:
    sb, invoke = bare
    cid = sb.mautic.add_contact(
        "miles.o'brien@example.com", firstname="Miles", lastname="O'Brien", opt_in_confirmed=True
    )
    sb.stripe.add_session("Miles.O'Brien@Example.com", name="Miles O'Brien", line_items=VIP)
    code, doc = run_json(invoke)
    assert code == 0
    assert "create_contact" not in {a["kind"] for a in doc["plan"]["actions"]}
    assert sb.mautic.find("miles.o'brien@example.com") == [cid]
    assert {o["status"] for o in doc["outcomes"]} == {"done"}
    converges(sb, invoke)


def test_unicode_names_reach_mautic_and_espo_intact(bare) -> None:
    sb, invoke = bare
    sb.mautic.add_contact(
        "zoe@example.com",
        firstname="Zo\u00eb \U0001f389",
        lastname="\u00d1\u00fa\u00f1ez-\u674e",
        opt_in_confirmed=True,
    )
    sb.stripe.add_session(
        "jose@example.com", name="Jos\u00e9 Mar\u00eda \u674e\u5c0f\u9f8d", line_items=VIP
    )
    code, doc = run_json(invoke)
    assert code == 0, doc["outcomes"]
    lead = next(
        lead for lead in sb.espocrm.leads() if lead.get("emailAddress") == "zoe@example.com"
    )
    assert (lead["firstName"], lead["lastName"]) == (
        "Zo\u00eb \U0001f389",
        "\u00d1\u00fa\u00f1ez-\u674e",
    )
    jose = sb.mautic.contact(sb.mautic.find("jose@example.com")[0])
    assert (jose["firstname"], jose["lastname"]) == ("Jos\u00e9 Mar\u00eda", "\u674e\u5c0f\u9f8d")
    converges(sb, invoke)


def test_a_buyer_with_a_blank_name_and_padded_address(bare) -> None:
    sb, invoke = bare
    sb.stripe.add_session("  Blank.Name@Example.com ", name="", line_items=VIP)
    sb.stripe.add_session("grace.hopper@example.com", name="Grace Hopper", line_items=SUPPORTER)
    code, doc = run_json(invoke)
    assert code == 0
    created = [a for a in doc["plan"]["actions"] if a["kind"] == "create_contact"]
    assert [a["subject"] for a in created] == ["blank.name@example.com"]  # supporter: nothing
    assert sb.mautic.find("blank.name@example.com")
    converges(sb, invoke)


def test_a_link_field_holding_no_invite_is_noted_and_left_alone(bare) -> None:
    """An operator's text in the link field: no crash, no second link, a note."""
    sb, invoke = bare
    cid = sb.mautic.add_contact(
        "ada.lovelace@example.com",
        firstname="Ada",
        opt_in_confirmed=True,
        discord_invite_link_basic="see me after class",
    )
    stored = sb.mautic.contact(cid)["discord_invite_link_basic"]  # Mautic makes it a URL
    code, doc = run_json(invoke)
    assert code == 0
    assert [a["kind"] for a in doc["plan"]["actions"]] == ["create_lead"]
    assert {
        "subject": "ada.lovelace@example.com",
        "message": f"basic link field holds no Discord invite: {stored!r}",
    } in doc["plan"]["notes"]
    assert sb.mautic.contact(cid)["discord_invite_link_basic"] == stored
    assert sb.discord.invites(BASIC_CHANNEL_ID) == []
    converges(sb, invoke)


def test_a_purchase_dated_in_the_future_is_handled(bare) -> None:
    """Clock skew: Stripe's `created` ten minutes ahead of ours."""
    sb, invoke = bare
    sb.mautic.add_contact("ada.lovelace@example.com", firstname="Ada", opt_in_confirmed=True)
    sb.stripe.add_session(
        "ada.lovelace@example.com",
        name="Ada Lovelace",
        line_items=VIP,
        created=int(time.time()) + 600,
    )
    code, doc = run_json(invoke)
    assert code == 0
    assert {o["status"] for o in doc["outcomes"]} == {"done"}
    converges(sb, invoke)
