"""Invites that grant roles (`role_ids`), and the reads that tell whether the bot may grant them.

DiscordClient against the Discord emulator over loopback, plus the pure
`ChannelPermissions.grant_problems` rules. Discord's rules: the sender needs
MANAGE_ROLES and may only give roles below its own highest role; someone
already in the server who accepts the invite gets the roles too.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from syncctl.clients.discord import PERMISSIONS, ChannelPermissions, DiscordClient, Role
from syncctl.errors import AuthRejected, InvalidRequest, NotFound
from syncctl.sandbox.discord import BOT_ROLE_NAME, DEFAULT_GUILD_ID
from tests.clients.discord_fixtures import (
    BASIC_CHANNEL,
    TOKEN,
    VIP_CHANNEL,
    DiscordRig,
    discord_rig,
)

GUILD = DEFAULT_GUILD_ID
MANAGE_ROLES = PERMISSIONS["MANAGE_ROLES"]
ADMINISTRATOR = PERMISSIONS["ADMINISTRATOR"]


@pytest.fixture
def rig() -> Iterator[DiscordRig]:
    with discord_rig() as rig:
        yield rig


@pytest.fixture
def client(rig: DiscordRig) -> DiscordClient:
    return rig.client()


@pytest.fixture
def vip_role(rig: DiscordRig) -> str:
    return rig.emulator.add_role(GUILD, name="VIP")


def raw(rig: DiscordRig) -> httpx.Client:
    return httpx.Client(base_url=rig.api_base, headers={"Authorization": f"Bot {TOKEN}"})


# -- create_invite(role_ids=...) ------------------------------------------------------


def test_create_invite_sends_the_roles_and_the_invite_carries_them(rig, client, vip_role):
    invite = client.create_invite(VIP_CHANNEL, max_age=0, role_ids=[vip_role])
    (exchange,) = rig.emulator.exchanges("POST")
    assert exchange.body["role_ids"] == [vip_role]
    assert invite.role_ids == (vip_role,)


def test_create_invite_without_roles_sends_no_role_ids(rig, client):
    invite = client.create_invite(VIP_CHANNEL, max_age=0, role_ids=[])
    (exchange,) = rig.emulator.exchanges("POST")
    assert "role_ids" not in exchange.body and invite.role_ids == ()


def test_create_invite_sends_each_role_once_in_order(rig, client, vip_role):
    other = rig.emulator.add_role(GUILD, name="Backer")
    client.create_invite(VIP_CHANNEL, max_age=0, role_ids=[other, vip_role, other])
    assert rig.emulator.exchanges("POST")[0].body["role_ids"] == [other, vip_role]


def test_a_role_id_that_is_not_a_snowflake_is_refused_without_a_call(rig, client):
    with pytest.raises(InvalidRequest, match="role id must be a Discord snowflake"):
        client.create_invite(VIP_CHANNEL, max_age=0, role_ids=["VIP"])
    assert rig.emulator.log == []


def test_role_ids_given_as_one_string_are_refused_without_a_call(rig, client, vip_role):
    with pytest.raises(InvalidRequest, match="not one string"):
        client.create_invite(VIP_CHANNEL, max_age=0, role_ids=vip_role)
    assert rig.emulator.log == []


def test_more_than_250_roles_are_refused_without_a_call(rig, client):
    roles = [str(200000000000000000 + i) for i in range(251)]
    with pytest.raises(InvalidRequest, match="at most 250 roles"):
        client.create_invite(VIP_CHANNEL, max_age=0, role_ids=roles)
    assert rig.emulator.log == []


def test_an_unknown_role_is_not_found_naming_the_config_keys(rig, client):
    with pytest.raises(NotFound, match="vip_role_ids") as caught:
        client.create_invite(VIP_CHANNEL, max_age=0, role_ids=["200000000000000000"])
    assert "Unknown Role (code 10011)" in str(caught.value)
    assert rig.emulator.created_count == 0


def test_the_everyone_role_is_unknown_to_an_invite(rig, client):
    with pytest.raises(NotFound):
        client.create_invite(VIP_CHANNEL, max_age=0, role_ids=[GUILD])


def test_without_manage_roles_the_invite_is_refused_naming_it(rig, client, vip_role):
    rig.emulator.set_bot_permissions(GUILD, set())
    with pytest.raises(AuthRejected, match="MANAGE_ROLES") as caught:
        client.create_invite(VIP_CHANNEL, max_age=0, role_ids=[vip_role])
    assert "syncctl doctor" in str(caught.value)
    assert rig.emulator.created_count == 0


def test_administrator_may_grant_roles_without_manage_roles(rig, client, vip_role):
    rig.emulator.set_bot_permissions(GUILD, {"ADMINISTRATOR"})
    assert client.create_invite(VIP_CHANNEL, max_age=0, role_ids=[vip_role]).role_ids


def test_a_role_above_the_bot_is_refused(rig, client, vip_role):
    rig.emulator.set_role_position(vip_role, 10)
    with pytest.raises(AuthRejected, match="not below its highest role"):
        client.create_invite(VIP_CHANNEL, max_age=0, role_ids=[vip_role])


def test_a_role_level_with_the_bot_is_refused(rig, client, vip_role):
    top = next(r for r in rig.emulator.roles(GUILD) if r["name"] == BOT_ROLE_NAME)["position"]
    rig.emulator.set_role_position(vip_role, top)
    with pytest.raises(AuthRejected):
        client.create_invite(VIP_CHANNEL, max_age=0, role_ids=[vip_role])


def test_the_bots_own_managed_role_cannot_be_granted(rig, client):
    with pytest.raises(AuthRejected):
        client.create_invite(VIP_CHANNEL, max_age=0, role_ids=[rig.emulator.bot_role_id(GUILD)])


def test_an_invite_without_roles_needs_no_manage_roles(rig, client):
    rig.emulator.set_bot_permissions(GUILD, set())
    assert client.create_invite(VIP_CHANNEL, max_age=0).role_ids == ()


def test_listed_invites_show_their_roles(rig, client, vip_role):
    client.create_invite(VIP_CHANNEL, max_age=0, role_ids=[vip_role])
    (listed,) = client.list_channel_invites(VIP_CHANNEL)
    assert listed.role_ids == (vip_role,)


def test_a_resolved_invite_shows_its_roles(rig, client, vip_role):
    invite = client.create_invite(VIP_CHANNEL, max_age=0, role_ids=[vip_role])
    resolved = client.get_invite(invite.code)
    assert resolved is not None and resolved.role_ids == (vip_role,)


# -- the emulator's role invites ------------------------------------------------------------


def test_emulator_invite_roles_are_partial_role_objects(rig, client, vip_role):
    invite = client.create_invite(VIP_CHANNEL, max_age=0, role_ids=[vip_role])
    (role,) = rig.emulator.invite(invite.code)["roles"]
    assert set(role) == {"id", "name", "position", "color", "colors", "icon", "unicode_emoji"}
    assert (role["id"], role["name"]) == (vip_role, "VIP")


def test_emulator_invite_without_roles_has_no_roles_field(rig, client):
    invite = client.create_invite(VIP_CHANNEL, max_age=0)
    assert "roles" not in rig.emulator.invite(invite.code)


def test_emulator_accepting_grants_the_roles(rig, client, vip_role):
    invite = client.create_invite(VIP_CHANNEL, max_age=0, role_ids=[vip_role])
    rig.emulator.use_invite(invite.code, user_id="500000000000000001")
    assert rig.emulator.member_roles(GUILD, "500000000000000001") == {vip_role}


def test_emulator_a_member_already_in_the_server_gets_the_roles_too(rig, client, vip_role):
    rig.emulator.add_member(GUILD, "500000000000000001")
    invite = client.create_invite(VIP_CHANNEL, max_age=0, role_ids=[vip_role])
    rig.emulator.use_invite(invite.code, user_id="500000000000000001")
    assert rig.emulator.member_roles(GUILD, "500000000000000001") == {vip_role}


def test_emulator_does_not_reuse_an_invite_granting_other_roles(rig, client, vip_role):
    plain = client.create_invite(BASIC_CHANNEL, max_age=3600, unique=False)
    with_role = client.create_invite(BASIC_CHANNEL, max_age=3600, unique=False, role_ids=[vip_role])
    assert with_role.code != plain.code and with_role.role_ids == (vip_role,)


@pytest.mark.parametrize(
    ("role_ids", "errors"),
    [
        ("100", {"role_ids": {"_errors": [{"code": "LIST_TYPE_CONVERT"}]}}),
        (["x1"], {"role_ids": {"0": {"_errors": [{"code": "NUMBER_TYPE_COERCE"}]}}}),
        (
            [str(10**17 + i) for i in range(251)],
            {"role_ids": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH"}]}},
        ),
    ],
    ids=["not-a-list", "not-a-snowflake", "too-many"],
)
def test_emulator_malformed_role_ids_are_an_invalid_form_body(rig, role_ids, errors):
    with raw(rig) as http:
        response = http.post(f"/channels/{VIP_CHANNEL}/invites", json={"role_ids": role_ids})
    body = response.json()
    assert response.status_code == 400 and body["code"] == 50035

    def codes(node):
        if "_errors" in node:
            return {"_errors": [{"code": e["code"]} for e in node["_errors"]]}
        return {k: codes(v) for k, v in node.items()}

    assert codes(body["errors"]) == errors


# -- reading roles and the bot's place among them -------------------------------------------


def test_list_guild_roles_starts_with_everyone_and_ends_with_the_bots_role(client, vip_role):
    roles = client.list_guild_roles(GUILD)
    assert roles[0].id == GUILD and roles[0].name == "@everyone" and roles[0].position == 0
    assert roles[-1].name == BOT_ROLE_NAME and roles[-1].managed is True
    assert vip_role in {r.id for r in roles}


def test_channel_permissions_carry_the_bots_server_permissions_and_roles(rig, client):
    perms = client.channel_permissions(VIP_CHANNEL)
    assert perms.has_in_guild("MANAGE_ROLES")
    assert perms.highest_role is not None and perms.highest_role.name == BOT_ROLE_NAME
    assert perms.member_role_ids == {rig.emulator.bot_role_id(GUILD)}


def test_the_bot_may_grant_a_role_below_its_own(client, vip_role):
    assert client.channel_permissions(VIP_CHANNEL).grant_problems([vip_role]) == []


def test_a_role_dragged_above_the_bot_is_a_hierarchy_problem(rig, client, vip_role):
    rig.emulator.set_role_position(vip_role, 99)
    (problem,) = client.channel_permissions(VIP_CHANNEL).grant_problems([vip_role])
    assert problem.kind == "hierarchy"
    assert f"role 'VIP' ({vip_role}) is at position 99, not below the bot's role" in problem.problem
    assert (
        problem.fix
        == f"drag the bot's role '{BOT_ROLE_NAME}' above 'VIP' (Server Settings > Roles)"
    )


def test_without_manage_roles_every_role_has_a_manage_roles_problem(rig, client, vip_role):
    rig.emulator.set_bot_permissions(GUILD, set())
    (problem,) = client.channel_permissions(VIP_CHANNEL).grant_problems([vip_role])
    assert problem.kind == "manage_roles" and "Manage Roles" in problem.fix


# -- grant_problems, the rules alone ---------------------------------------------------------


def perms(
    *, guild_bits: int = MANAGE_ROLES, roles: tuple[Role, ...] = (), mine: tuple[str, ...] = ("9",)
) -> ChannelPermissions:
    everyone = Role(GUILD, "@everyone", 0, 0)
    bot = Role("9", "bot", 5, guild_bits, managed=True)
    return ChannelPermissions(
        VIP_CHANNEL,
        GUILD,
        bits=0,
        guild_bits=guild_bits,
        roles=(everyone, bot, *roles),
        member_role_ids=frozenset(mine),
    )


def test_a_role_id_the_server_lacks_is_unknown():
    (problem,) = perms().grant_problems(["777"])
    assert problem.kind == "unknown" and f"does not exist in server {GUILD}" in problem.problem


def test_the_everyone_role_is_its_own_problem():
    (problem,) = perms().grant_problems([GUILD])
    assert problem.kind == "everyone"


def test_a_managed_role_is_its_own_problem():
    (problem,) = perms(roles=(Role("7", "Booster", 1, 0, managed=True),)).grant_problems(["7"])
    assert problem.kind == "managed"


def test_manage_roles_in_a_channel_overwrite_does_not_count():
    """In an overwrite MANAGE_ROLES is "Manage Permissions" of that channel."""
    channel_only = ChannelPermissions(VIP_CHANNEL, GUILD, bits=MANAGE_ROLES, guild_bits=0)
    assert channel_only.has("MANAGE_ROLES") and not channel_only.has_in_guild("MANAGE_ROLES")


def test_administrator_stands_in_for_manage_roles_but_not_for_the_hierarchy():
    above = Role("7", "Mods", 6, 0)
    kinds = [p.kind for p in perms(guild_bits=ADMINISTRATOR, roles=(above,)).grant_problems(["7"])]
    assert kinds == ["hierarchy"]


def test_a_bot_without_roles_can_grant_none():
    (problem,) = perms(roles=(Role("7", "VIP", 1, 0),), mine=()).grant_problems(["7"])
    assert problem.kind == "hierarchy" and "it has none but @everyone" in problem.problem


def test_every_problem_of_every_role_is_listed():
    above = Role("7", "Mods", 6, 0)
    found = perms(guild_bits=0, roles=(above,)).grant_problems(["7", "777"])
    assert [(p.role_id, p.kind) for p in found] == [
        ("7", "manage_roles"),
        ("7", "hierarchy"),
        ("777", "unknown"),
    ]
