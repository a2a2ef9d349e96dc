"""DiscordClient against the Discord emulator over loopback HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from syncctl import __version__
from syncctl.clients import discord as discord_module
from syncctl.clients.discord import (
    DiscordClient,
    DiscordLimiter,
    Invite,
    discord_route_key,
    invite_code_from_url,
)
from syncctl.errors import (
    AuthRejected,
    BadResponse,
    Conflict,
    InvalidRequest,
    NotFound,
    OutcomeUnknown,
)
from tests.clients.discord_fixtures import (
    BASIC_CHANNEL,
    TOKEN,
    UNKNOWN_CHANNEL,
    VIP_CHANNEL,
    DiscordRig,
    RecordingTransport,
    discord_rig,
)


@pytest.fixture
def rig() -> Iterator[DiscordRig]:
    with discord_rig() as rig:
        yield rig


@pytest.fixture
def client(rig: DiscordRig) -> DiscordClient:
    return rig.client()


def _mock_client(answer: Any, status: int = 200) -> DiscordClient:
    """A client whose every call gets `answer` (for answer shapes the emulator never sends)."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status,
            content=json.dumps(answer).encode(),
            headers={"Content-Type": "application/json"},
        )

    return DiscordClient(
        "https://discord.test/api/v10", TOKEN, transport=httpx.MockTransport(handler)
    )


# -- create -------------------------------------------------------------------


def test_create_invite_sends_max_age_explicitly_with_single_use_unique_body(rig, client):
    invite = client.create_invite(VIP_CHANNEL, max_age=0)

    (exchange,) = rig.emulator.exchanges("POST")
    assert exchange.body == {"max_age": 0, "max_uses": 1, "unique": True, "temporary": False}
    assert invite.max_age == 0 and invite.expires_at is None
    assert invite.max_uses == 1 and invite.uses == 0 and invite.temporary is False
    assert invite.channel_id == VIP_CHANNEL
    assert invite.inviter_id == rig.emulator.bot_user_id
    assert invite.url == f"https://discord.gg/{invite.code}"
    assert len(invite.code) == 10


def test_create_invite_with_max_age_reports_expiry(client):
    invite = client.create_invite(VIP_CHANNEL, max_age=3600)

    assert invite.created_at is not None and invite.expires_at is not None
    assert invite.expires_at - invite.created_at == timedelta(hours=1)


def test_requests_carry_bot_authorization_and_discordbot_user_agent(rig):
    transport = RecordingTransport()
    client = rig.client(transport=transport)

    client.create_invite(VIP_CHANNEL, max_age=0)

    sent = transport.seen[0].request_headers
    assert sent["authorization"] == f"Bot {TOKEN}"
    expected = f"DiscordBot (https://github.com/syncctl/syncctl, {__version__})"
    assert sent["user-agent"] == expected
    assert rig.emulator.user_agents == [expected]


def test_token_pasted_with_bot_prefix_is_not_doubled(rig):
    client = rig.client(token=f"Bot {TOKEN}")

    assert client.check_channel(VIP_CHANNEL) == 0


def test_audit_log_reason_is_url_encoded_and_recorded(rig):
    transport = RecordingTransport()
    client = rig.client(transport=transport)

    invite = client.create_invite(VIP_CHANNEL, max_age=0, reason="VIP invite für contact #42")

    header = transport.seen[0].request_headers["x-audit-log-reason"]
    assert header == "VIP%20invite%20f%C3%BCr%20contact%20%2342"
    (entry,) = rig.emulator.audit_log
    assert (entry.action, entry.code, entry.reason) == (
        "INVITE_CREATE",
        invite.code,
        "VIP invite für contact #42",
    )


def test_audit_log_reason_is_cut_to_512_characters(rig, client):
    client.create_invite(VIP_CHANNEL, max_age=0, reason="x" * 600)

    assert rig.emulator.audit_log[0].reason == "x" * 512


def test_unique_invites_are_new_every_time(rig, client):
    first = client.create_invite(VIP_CHANNEL, max_age=0)
    second = client.create_invite(VIP_CHANNEL, max_age=0)

    assert first.code != second.code
    assert rig.emulator.created_count == 2


def test_non_unique_create_may_return_an_existing_similar_invite(rig, client):
    first = client.create_invite(VIP_CHANNEL, max_age=0, unique=False)
    second = client.create_invite(VIP_CHANNEL, max_age=0, unique=False)

    assert second.code == first.code
    assert rig.emulator.created_count == 1


def test_invalid_form_body_raises_invalid_request_naming_the_field(client):
    # docs cap max_age at 7 days (the spec says 60): Discord decides, the client reports.
    with pytest.raises(InvalidRequest) as caught:
        client.create_invite(VIP_CHANNEL, max_age=30 * 86400)

    assert "Invalid Form Body (code 50035)" in str(caught.value)
    assert "max_age: int value should be less than or equal to 604800" in str(caught.value)


def test_a_channel_full_of_invites_is_a_conflict_not_a_refusal(rig, client):
    rig.emulator.inject(
        method="POST",
        path="/invites$",
        status=400,
        body={"message": "Maximum number of invites reached (1000)", "code": 30016},
    )
    with pytest.raises(Conflict, match="30016") as caught:
        client.create_invite(VIP_CHANNEL, max_age=0)
    assert not caught.value.refusal


def test_out_of_range_max_uses_is_refused_before_any_call(rig, client):
    with pytest.raises(InvalidRequest, match="max_uses"):
        client.create_invite(VIP_CHANNEL, max_age=0, max_uses=101)

    assert rig.emulator.log == []


def test_channel_id_that_is_not_a_snowflake_is_refused_before_any_call(rig, client):
    with pytest.raises(InvalidRequest, match="snowflake"):
        client.create_invite("vip-channel", max_age=0)

    assert rig.emulator.log == []


def test_missing_create_permission_names_the_permission(rig, client):
    rig.emulator.set_permissions(VIP_CHANNEL, {"MANAGE_CHANNELS"})

    with pytest.raises(AuthRejected) as caught:
        client.create_invite(VIP_CHANNEL, max_age=0)

    assert caught.value.status == 403
    assert "CREATE_INSTANT_INVITE" in str(caught.value)
    assert "Missing Permissions (code 50013)" in str(caught.value)


def test_unknown_channel_raises_not_found(client):
    with pytest.raises(NotFound, match="Unknown Channel"):
        client.create_invite(UNKNOWN_CHANNEL, max_age=0)


def test_create_5xx_raises_outcome_unknown_without_retrying(rig, client):
    rig.emulator.inject(method="POST", path="/invites$", status=502, when="after")

    with pytest.raises(OutcomeUnknown):
        client.create_invite(VIP_CHANNEL, max_age=0)

    assert len(rig.emulator.exchanges("POST")) == 1
    assert rig.emulator.created_count == 1  # it did happen: verify by listing


def test_create_timeout_raises_outcome_unknown_and_the_invite_can_be_found(rig):
    client = rig.client(timeout=0.3)
    rig.emulator.inject(method="POST", path="/invites$", kind="timeout", delay=0.6, when="after")

    with pytest.raises(OutcomeUnknown):
        client.create_invite(VIP_CHANNEL, max_age=0)

    assert [i.inviter_id for i in client.list_channel_invites(VIP_CHANNEL)] == [
        rig.emulator.bot_user_id
    ]


# -- list / check ---------------------------------------------------------------


def test_list_channel_invites_returns_live_invites_with_metadata(rig, client):
    forever = rig.emulator.seed_invite(VIP_CHANNEL, max_age=0)
    hourly = rig.emulator.seed_invite(VIP_CHANNEL, max_age=3600, max_uses=0, uses=3)
    rig.emulator.seed_invite(BASIC_CHANNEL, max_age=0)

    invites = {i.code: i for i in client.list_channel_invites(VIP_CHANNEL)}

    assert set(invites) == {forever, hourly}
    assert invites[hourly].uses == 3 and invites[hourly].max_uses == 0
    assert invites[hourly].created_at is not None


def test_list_leaves_out_expired_invites(rig, client):
    rig.emulator.seed_invite(VIP_CHANNEL, max_age=60)
    keeper = rig.emulator.seed_invite(VIP_CHANNEL, max_age=0)
    rig.emulator.advance(61)

    assert [i.code for i in client.list_channel_invites(VIP_CHANNEL)] == [keeper]


def test_list_tolerates_a_null_answer():
    with _mock_client(None) as client:
        assert client.list_channel_invites(VIP_CHANNEL) == []


def test_list_5xx_is_retried(rig, client):
    rig.emulator.seed_invite(VIP_CHANNEL)
    rig.emulator.inject(method="GET", path="/invites$", status=503, times=2)

    assert len(client.list_channel_invites(VIP_CHANNEL)) == 1
    assert client.stats.service("discord").retries == 2


def test_malformed_json_raises_bad_response(rig, client):
    rig.emulator.inject(method="GET", path="/invites$", kind="malformed")

    with pytest.raises(BadResponse, match="not JSON"):
        client.list_channel_invites(VIP_CHANNEL)


def test_html_answer_raises_bad_response(rig, client):
    rig.emulator.inject(method="GET", path="/invites$", kind="html")

    with pytest.raises(BadResponse, match="text/html"):
        client.list_channel_invites(VIP_CHANNEL)


def test_invite_without_code_raises_bad_response():
    with (
        _mock_client([{"channel": {"id": VIP_CHANNEL}}]) as client,
        pytest.raises(BadResponse, match="without a code"),
    ):
        client.list_channel_invites(VIP_CHANNEL)


def test_wrong_typed_uses_raises_bad_response_naming_the_field():
    with (
        _mock_client([{"code": "abc", "uses": "3"}]) as client,
        pytest.raises(BadResponse, match="field uses"),
    ):
        client.list_channel_invites(VIP_CHANNEL)


def test_check_channel_counts_live_invites(rig, client):
    rig.emulator.seed_invite(VIP_CHANNEL)
    rig.emulator.seed_invite(VIP_CHANNEL)

    assert client.check_channel(VIP_CHANNEL) == 2


def test_check_channel_names_manage_channels_when_it_is_missing(rig, client):
    rig.emulator.set_permissions(VIP_CHANNEL, {"CREATE_INSTANT_INVITE"})

    with pytest.raises(AuthRejected) as caught:
        client.check_channel(VIP_CHANNEL)

    assert "MANAGE_CHANNELS" in str(caught.value)
    assert caught.value.hint and "MANAGE_CHANNELS" in caught.value.hint


def test_check_channel_reports_missing_access_for_a_hidden_channel(rig, client):
    rig.emulator.hide_channel(VIP_CHANNEL)

    with pytest.raises(AuthRejected, match=r"cannot see .*Missing Access \(code 50001\)"):
        client.check_channel(VIP_CHANNEL)


def test_wrong_token_raises_auth_rejected_once_without_leaking_it(rig):
    secret = "wrong.secret-token-value"
    client = rig.client(token=secret)

    with pytest.raises(AuthRejected) as caught:
        client.check_channel(VIP_CHANNEL)

    assert caught.value.status == 401
    assert secret not in str(caught.value) and secret not in repr(client)
    assert len(rig.emulator.log) == 1  # a 401 is never retried
    assert rig.emulator.invalid_by_status[401] == 1


# -- get ------------------------------------------------------------------------


def test_get_invite_tolerates_an_answer_without_metadata(rig, client):
    code = rig.emulator.seed_invite(VIP_CHANNEL, max_age=0)

    invite = client.get_invite(code)

    assert invite is not None and invite.code == code and invite.channel_id == VIP_CHANNEL
    assert (invite.uses, invite.max_uses, invite.created_at) == (None, None, None)
    assert invite.is_live()


def test_get_invite_reads_metadata_when_the_answer_has_it():
    with discord_rig(resolve_with_metadata=True) as rig:
        code = rig.emulator.seed_invite(VIP_CHANNEL, max_age=3600, uses=0)

        invite = rig.client().get_invite(code)

    assert invite is not None and invite.max_uses == 1 and invite.uses == 0
    assert invite.expires_at is not None


def test_get_invite_asks_for_counts_and_expiration(rig, client):
    code = rig.emulator.seed_invite(VIP_CHANNEL)

    client.get_invite(code)

    (exchange,) = rig.emulator.exchanges("GET")
    assert dict(exchange.query) == {"with_counts": "true", "with_expiration": "true"}


def test_get_invite_accepts_a_pasted_link(rig, client):
    code = rig.emulator.seed_invite(VIP_CHANNEL)

    invite = client.get_invite(f"https://discord.com/invite/{code}")

    assert invite is not None and invite.code == code


def test_get_unknown_invite_returns_none(client):
    assert client.get_invite("NoSuchCode") is None


def test_expired_invite_is_gone(rig, client):
    code = rig.emulator.seed_invite(VIP_CHANNEL, max_age=60)
    rig.emulator.advance(60)

    assert client.get_invite(code) is None
    assert client.revoke_invite(code) is False


def test_single_use_invite_is_gone_once_used(rig, client):
    invite = client.create_invite(BASIC_CHANNEL, max_age=0)

    rig.emulator.use_invite(invite.code)

    assert client.get_invite(invite.code) is None
    assert rig.emulator.consumed == [invite.code]


def test_not_a_code_is_refused_before_any_call(rig, client):
    with pytest.raises(InvalidRequest, match="invite code"):
        client.get_invite("https://example.org/invite/abc")

    assert rig.emulator.log == []


# -- revoke -----------------------------------------------------------------------


def test_revoke_returns_true_then_false_when_already_gone(rig, client):
    code = rig.emulator.seed_invite(VIP_CHANNEL)

    assert client.revoke_invite(code, reason="upgraded to VIP") is True
    assert client.revoke_invite(code) is False
    assert [r["code"] for r in rig.emulator.revoked] == [code]
    assert rig.emulator.audit_log[-1].reason == "upgraded to VIP"


def test_revoke_without_manage_channels_names_the_permission(rig, client):
    code = rig.emulator.seed_invite(VIP_CHANNEL)
    rig.emulator.set_permissions(VIP_CHANNEL, {"CREATE_INSTANT_INVITE"})

    with pytest.raises(AuthRejected, match="MANAGE_CHANNELS"):
        client.revoke_invite(code)

    assert rig.emulator.invites(VIP_CHANNEL) != []


def test_revoke_with_manage_guild_is_allowed(rig, client):
    code = rig.emulator.seed_invite(VIP_CHANNEL)
    rig.emulator.set_permissions(VIP_CHANNEL, {"MANAGE_GUILD"})

    assert client.revoke_invite(code) is True


def test_wrong_base_url_404_is_not_mistaken_for_a_revoked_invite(rig):
    client = rig.client(api_base=rig.server.url)  # missing /api/v10

    with pytest.raises(NotFound, match="api_base"):
        client.revoke_invite("abcdefghij")


def test_revoke_reset_after_delete_is_retried_and_reports_gone(rig, client):
    code = rig.emulator.seed_invite(VIP_CHANNEL)
    rig.emulator.inject(method="DELETE", path="/invites/", kind="reset", when="after")

    assert client.revoke_invite(code) is False  # the retry finds it gone
    assert rig.emulator.invites(VIP_CHANNEL) == []


# -- rate limits ------------------------------------------------------------------


def test_bucket_is_waited_out_before_it_runs_dry():
    with discord_rig(invite_bucket_limit=2, invite_bucket_window=0.3) as rig:
        client = rig.client()

        for _ in range(3):
            client.create_invite(VIP_CHANNEL, max_age=0)

        assert [e.status for e in rig.emulator.log] == [200, 200, 200]
        assert client.stats.service("discord").waited > 0


def test_buckets_are_separate_per_channel():
    # Both channels' buckets carry the same X-RateLimit-Bucket hash; channel B's
    # fresh bucket must neither delay nor overwrite channel A's exhausted one.
    with discord_rig(invite_bucket_limit=2, invite_bucket_window=30) as rig:
        client = rig.client()
        for channel in (VIP_CHANNEL, VIP_CHANNEL, BASIC_CHANNEL):
            client.create_invite(channel, max_age=0)

        assert client.stats.service("discord").waited == 0
        assert [e.status for e in rig.emulator.log] == [200] * 3
        assert client.limiter.reserve("POST", f"/channels/{VIP_CHANNEL}/invites") > 25


def test_concurrent_first_requests_into_an_unknown_bucket_get_no_429():
    # Before any answer the bucket's size is unknown: one request probes it and
    # the others wait for its headers instead of bursting past its limit.
    with discord_rig(invite_bucket_limit=3, invite_bucket_window=0.5, latency=0.02) as rig:
        client = rig.client(max_concurrency=4)
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda _: client.create_invite(VIP_CHANNEL, max_age=0), range(8)))

        assert [e.status for e in rig.emulator.log] == [200] * 8
        assert client.stats.service("discord").throttled == 0


def test_limiter_keeps_under_the_global_50_requests_per_second() -> None:
    clock = [0.0]
    limiter = DiscordLimiter(clock=lambda: clock[0])
    waits = [limiter.reserve("GET", f"/channels/{i}/invites") for i in range(50)]
    assert waits == [0] * 50
    assert limiter.reserve("GET", "/channels/99/invites") == pytest.approx(1.05)
    clock[0] += 1.05
    assert limiter.reserve("GET", "/channels/99/invites") == 0


def test_a_burst_across_many_routes_draws_no_global_429():
    with discord_rig(invite_bucket_limit=1000, latency=0.005) as rig:
        client = rig.client(max_concurrency=16)
        channels = [VIP_CHANNEL, BASIC_CHANNEL]
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda i: client.create_invite(channels[i % 2], max_age=0), range(70)))

        assert rig.emulator.rate_limited["global"] == 0
        assert len(rig.emulator.log) == 70


def test_429_is_retried_after_retry_after():
    with discord_rig(invite_bucket_limit=1, invite_bucket_window=0.2) as rig:
        rig.emulator.exhaust_bucket("create_channel_invite", VIP_CHANNEL)
        client = rig.client()

        invite = client.create_invite(VIP_CHANNEL, max_age=0)

        assert [e.status for e in rig.emulator.log] == [429, 200]
        assert rig.emulator.log[0].response["retry_after"] <= 0.2
        assert rig.emulator.created_count == 1 and invite.code
        assert client.stats.service("discord").throttled == 1


def test_global_429_pauses_every_route():
    limiter = DiscordLimiter()
    headers = {"retry-after": "2", "x-ratelimit-global": "true", "x-ratelimit-scope": "global"}

    limiter.update("GET", "/invites/abc", 429, headers)

    assert limiter.reserve("POST", f"/channels/{VIP_CHANNEL}/invites") > 1


def test_route_key_keeps_the_channel_and_blanks_codes():
    assert discord_route_key("post", f"/channels/{VIP_CHANNEL}/invites") == (
        f"POST /channels/{VIP_CHANNEL}/invites"
    )
    assert discord_route_key("DELETE", "/invites/abcDEF123") == "DELETE /invites/{code}"
    assert discord_route_key("GET", f"/channels/{VIP_CHANNEL}/messages/123456") == (
        f"GET /channels/{VIP_CHANNEL}/messages/{{id}}"
    )


# -- values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "https://discord.gg/AbC123xyZ9",
        "http://discord.gg/AbC123xyZ9/",
        "discord.gg/AbC123xyZ9",
        "https://discord.com/invite/AbC123xyZ9",
        "https://www.discord.com/invite/AbC123xyZ9?event=1",
        "https://discordapp.com/invite/AbC123xyZ9",
        "  AbC123xyZ9 ",
    ],
)
def test_invite_code_from_url_accepts_what_operators_paste(text):
    assert invite_code_from_url(text) == "AbC123xyZ9"


@pytest.mark.parametrize(
    "text", ["", "   ", "https://example.org/AbC123", "discord.gg/", "two words", "a"]
)
def test_invite_code_from_url_rejects_anything_else(text):
    assert invite_code_from_url(text) is None


def test_invite_is_live_until_it_expires_or_is_used_up():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    invite = Invite(
        code="abc",
        channel_id=VIP_CHANNEL,
        max_age=60,
        max_uses=1,
        uses=0,
        temporary=False,
        created_at=now,
        expires_at=now + timedelta(seconds=60),
        inviter_id=None,
    )

    assert invite.is_live(now)
    assert not invite.is_live(now + timedelta(seconds=60))
    assert not Invite(**{**invite.__dict__, "uses": 1}).is_live(now)


# -- emulator behaviour the client relies on ---------------------------------------


def test_emulator_defaults_max_age_to_24_hours(rig):
    answer = httpx.post(
        f"{rig.api_base}/channels/{VIP_CHANNEL}/invites",
        json={},
        headers={"Authorization": f"Bot {TOKEN}"},
    )

    assert answer.status_code == 200
    assert answer.json()["max_age"] == 86400 and answer.json()["max_uses"] == 0


def test_emulator_requires_a_json_body(rig):
    answer = httpx.post(
        f"{rig.api_base}/channels/{VIP_CHANNEL}/invites",
        content=b"",
        headers={"Authorization": f"Bot {TOKEN}"},
    )

    assert answer.status_code == 400 and answer.json()["code"] == 50109


def test_emulator_field_errors_use_discord_string_codes(rig):
    answer = httpx.post(
        f"{rig.api_base}/channels/{VIP_CHANNEL}/invites",
        content=json.dumps({"max_uses": 101, "unique": "yes"}),
        headers={"Authorization": f"Bot {TOKEN}", "Content-Type": "application/json"},
    )

    errors = answer.json()["errors"]
    assert errors["max_uses"]["_errors"][0]["code"] == "NUMBER_TYPE_MAX"
    assert errors["unique"]["_errors"][0]["code"] == "BOOLEAN_TYPE_COERCE"


def test_emulator_resolves_invites_without_a_token(rig):
    code = rig.emulator.seed_invite(VIP_CHANNEL)

    answer = httpx.get(f"{rig.api_base}/invites/{code}")

    assert answer.status_code == 200 and "uses" not in answer.json()


def test_emulator_expire_all_keeps_permanent_invites(rig):
    rig.emulator.seed_invite(VIP_CHANNEL, max_age=3600)
    permanent = rig.emulator.seed_invite(VIP_CHANNEL, max_age=0)

    assert rig.emulator.expire_all() == 1
    assert [i["code"] for i in rig.emulator.invites()] == [permanent]


def test_emulator_counts_invalid_requests(rig):
    rig.emulator.set_permissions(VIP_CHANNEL, set())
    bad = rig.client(token="nope")
    good = rig.client()
    with pytest.raises(AuthRejected):
        bad.check_channel(VIP_CHANNEL)
    with pytest.raises(AuthRejected):
        good.check_channel(VIP_CHANNEL)

    assert rig.emulator.invalid_requests == 2
    assert dict(rig.emulator.invalid_by_status) == {401: 1, 403: 1}


def test_invite_lists_keep_only_the_ids_of_guild_and_inviter(rig, client):
    rig.emulator.seed_invite(VIP_CHANNEL)
    seen: list[Any] = []
    original = discord_module.parse_json

    def spy(service: str, response: httpx.Response, hook: Any = None) -> Any:
        body = original(service, response, hook)
        seen.append(body)
        return body

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(discord_module, "parse_json", spy)
        (invite,) = client.list_channel_invites(VIP_CHANNEL)
    (raw,) = seen[0]
    assert set(raw["guild"]) == {"id"} and set(raw["inviter"]) == {"id"}
    assert invite.inviter_id == raw["inviter"]["id"]
