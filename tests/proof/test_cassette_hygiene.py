"""Cassettes hold no secret, and the recorder keeps it that way."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from tools.cassettes import (
    CASSETTE_DIR,
    LIVE_DIR,
    RECORDING_SECRETS,
    REPLAY_SECRETS,
    SCRUBBED,
    Scrubber,
    find_cassette_secrets,
    find_secrets,
    seed_small_campaign,
)
from tools.record_cassettes import RecordError, live_world, record_all
from vcr.request import Request

from syncctl.sandbox.stack import Sandbox

ROOT = Path(__file__).resolve().parents[2]
CASSETTES = sorted(CASSETTE_DIR.glob("*.yaml")) + sorted(LIVE_DIR.glob("*.yaml"))
KNOWN_SECRETS = [*RECORDING_SECRETS.values(), *REPLAY_SECRETS.values()]


@pytest.mark.parametrize("path", CASSETTES, ids=lambda p: str(p.relative_to(CASSETTE_DIR)))
def test_cassette_holds_nothing_that_looks_like_a_secret(path: Path) -> None:
    assert find_cassette_secrets(path, KNOWN_SECRETS) == []


def test_the_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    planted = {
        "sk_test_51HxYzAbCdEfGh": "a Stripe secret key",
        "sk_live_51HxYzAbCdEfGh": "a Stripe secret key",
        "rk_test_51HxYzAbCdEfGh": "a Stripe restricted key",
        "Bot MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe": "a Discord bot token",
        "Basic c3luY2N0bDpodW50ZXIy": "HTTP Basic credentials",
        "Bearer 0123456789abcdefABCDEF": "a bearer token",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig": "a JSON web token",
        "jane.doe@gmail.com": "a real-looking email address",
        RECORDING_SECRETS["MAUTIC_PASSWORD"]: "a configured secret",
    }
    for text, what in planted.items():
        found = find_secrets(f"body: '{text}'", KNOWN_SECRETS)
        assert any(line.startswith(what) for line in found), (text, found)
    assert find_secrets('ada.lovelace@example.com Bearer" token_type', KNOWN_SECRETS) == []
    cassette = tmp_path / "leaky.yaml"
    cassette.write_text(
        yaml.safe_dump(
            {
                "interactions": [
                    {
                        "request": {
                            "headers": {"X-Api-Key": ["k"]},
                            "body": '{"client_secret": "abc"}',
                        },
                        "response": {"headers": {}, "body": {"string": '{"access_token":"x"}'}},
                    }
                ]
            }
        )
    )
    found = find_cassette_secrets(cassette)
    assert any("X-Api-Key" in line for line in found)
    assert any("'client_secret'" in line for line in found)
    assert any("'access_token'" in line for line in found)


# -- the scrubber ------------------------------------------------------------------------------

ORIGIN = "http://127.0.0.1:43123"


def scrubber() -> Scrubber:
    return Scrubber(
        {ORIGIN: "https://shopware.cassette.invalid"}, ["s3cret-value-1"], salt=b"fixed"
    )


def test_request_headers_are_cut_to_an_allow_list() -> None:
    request = Request(
        "POST",
        f"{ORIGIN}/api/oauth/token",
        b'{"grant_type":"client_credentials","client_id":"SWIA1","client_secret":"abc"}',
        {
            "Authorization": "Bearer abc",
            "X-Api-Key": "k",
            "Cookie": "sid=1",
            "X-Stripe-Client-User-Agent": '{"uname": "host 6.1"}',
            "Content-Type": "application/json",
            "X-Audit-Log-Reason": "syncctl invite:1:vip",
        },
    )
    clean = scrubber().request(request)
    assert {k.lower() for k in clean.headers} == {"content-type", "x-audit-log-reason"}
    assert clean.uri == "https://shopware.cassette.invalid/api/oauth/token"
    body = json.loads(clean.body)
    assert body == {
        "grant_type": "client_credentials",
        "client_id": SCRUBBED,
        "client_secret": SCRUBBED,
    }
    assert request.headers["Authorization"] == "Bearer abc"  # the live request is untouched
    again = scrubber().request(clean)
    assert (again.uri, again.body, dict(again.headers)) == (
        clean.uri,
        clean.body,
        dict(clean.headers),
    )


def test_answers_lose_tokens_cookies_and_real_addresses() -> None:
    body = json.dumps(
        {
            "access_token": "eyJhbGciOi.eyJzdWIi.sig",
            "token_type": "Bearer",
            "owner": "Jane.Doe@Gmail.com",
            "link": f"{ORIGIN}/api/x".replace("/", "\\/"),
            "note": "key s3cret-value-1 here",
            "backer": "ada@example.com",
        }
    ).replace("\\\\/", "\\/")
    response = {
        "status": {"code": 200, "message": "OK"},
        "headers": {
            "Content-Type": ["application/json"],
            "Content-Length": [str(len(body))],
            "Set-Cookie": ["sid=1"],
        },
        "body": {"string": body.encode()},
    }
    clean = scrubber().response(response)
    assert "Set-Cookie" not in clean["headers"]
    text = clean["body"]["string"].decode()
    assert clean["headers"]["Content-Length"] == [str(len(clean["body"]["string"]))]
    data = json.loads(text)
    assert data["access_token"] == SCRUBBED and data["token_type"] == "Bearer"
    assert data["owner"].startswith("scrubbed-") and data["owner"].endswith("@example.com")
    assert data["backer"] == "ada@example.com"
    assert data["link"] == "https://shopware.cassette.invalid/api/x"
    assert data["note"] == f"key {SCRUBBED} here"
    assert find_secrets(text) == []


def test_an_address_gets_the_same_pseudonym_in_every_encoding() -> None:
    s = scrubber()
    plain = s.text('{"email":"miles.o\'brien@corp.io"}')
    pseudonym = json.loads(plain)["email"]
    assert pseudonym.startswith("scrubbed-")
    encoded = s.request(
        Request("GET", f"{ORIGIN}/api/contacts?search=email%3AMiles.O%27Brien%40corp.io", b"", {})
    )
    assert encoded.query == [("search", f"email:{pseudonym}")]
    html = s.request(
        Request(
            "GET",
            f"{ORIGIN}/api/contacts?where%5B0%5D%5Bval%5D=miles.o%26%2339%3Bbrien%40corp.io",
            b"",
            {},
        )
    )
    assert html.query == [("where[0][val]", pseudonym)]


# -- the recorder ---------------------------------------------------------------------------------


def live_env(sandbox: Sandbox) -> dict[str, str]:
    """The environment `--against live` reads, pointing at a sandbox as if it were real."""
    from syncctl.sandbox import stack

    urls = sandbox.urls
    return {
        **{k: v for k, v in sandbox.secrets.items() if k != "SYNCCTL_CODE_SECRET"},
        "SYNCCTL_REC_STRIPE_API_BASE": urls["stripe"],
        "SYNCCTL_REC_MAUTIC_URL": urls["mautic"],
        "SYNCCTL_REC_DISCORD_API_BASE": urls["discord"] + "/api/v10",
        "SYNCCTL_REC_SHOPWARE_URL": urls["shopware"],
        "SYNCCTL_REC_ESPOCRM_URL": urls["espocrm"],
        "SYNCCTL_REC_VIP_PRICE_IDS": stack.VIP_PRICE_ID,
        "SYNCCTL_REC_VIP_CHANNEL_ID": stack.VIP_CHANNEL_ID,
        "SYNCCTL_REC_BASIC_CHANNEL_ID": stack.BASIC_CHANNEL_ID,
        "SYNCCTL_REC_VIP_PROMOTION_ID": stack.VIP_PROMOTION_ID,
        "SYNCCTL_REC_INVITE_EMAIL_VIP": str(stack.INVITE_EMAIL_VIP),
        "SYNCCTL_REC_INVITE_EMAIL_BASIC": str(stack.INVITE_EMAIL_BASIC),
        "SYNCCTL_REC_COUPON_EMAIL": str(stack.COUPON_EMAIL),
        "SYNCCTL_REC_REISSUE_EMAIL": "grace.hopper@example.com",
    }


def test_live_mode_records_real_accounts_and_verifies_them(tmp_path: Path) -> None:
    with Sandbox() as sandbox:  # stands in for the real test accounts
        seed_small_campaign(sandbox, time.time())
        env = live_env(sandbox)
        written, problems = record_all("live", ["first_run", "reissue"], tmp_path / "live", env)
    assert problems == []
    assert [p.name for p in written] == ["first_run.yaml", "reissue.yaml"]
    for path in written:
        text = path.read_text()
        assert find_cassette_secrets(path, list(env.values())[:7]) == []
        assert "127.0.0.1" not in text  # the real hosts are not recorded
        assert '"source": "live"' in text or "source: live" in text


def test_live_mode_refuses_live_keys_and_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="SYNCCTL_REC_MAUTIC_URL") as missing:
        live_world(tmp_path, {"STRIPE_API_KEY": "sk_test_x"})
    assert "MAUTIC_PASSWORD" in str(missing.value)
    with Sandbox() as sandbox:
        env = {**live_env(sandbox), "STRIPE_API_KEY": "sk_live_51abc"}
    with pytest.raises(RecordError, match="live-mode key"):
        live_world(tmp_path, env)


def test_readme_documents_the_re_record_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "python -m tools.record_cassettes" in readme
    assert "--against live" in readme
