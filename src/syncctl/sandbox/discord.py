"""Discord REST v10 emulator: channel invites, permissions and rate limits.

Answers like discord.com/api/v10 does for the four invite operations syncctl
uses (spec operationIds create_channel_invite, list_channel_invites,
invite_resolve, invite_revoke), including the awkward parts the client must
cope with (../shared/api-notes.md section 3):

- `max_age` defaults to 24 hours when omitted, and only 0..604800 is accepted
  (the docs' bound; the spec's 60 days is not);
- without `unique: true` an existing similar invite is handed back instead of
  a new one;
- invites vanish when they expire or when their last use is spent
  (afterwards: 404 Unknown Invite, code 10006);
- per-route buckets keyed by bucket hash + major parameter (channel id), a
  global per-second limit, real 429s with a rounded-up `Retry-After`;
- 401/403/429 answers are counted, as Discord's invalid-request ban does.

Invites may grant roles (`role_ids`, developers/resources/channel.mdx):
each server has roles with positions and permissions, the bot a managed
role (MANAGE_ROLES by default) above the ones `add_role` adds. A create
with `role_ids` is refused as Discord documents it: 403 Missing Permissions
(50013) when the bot lacks MANAGE_ROLES (ADMINISTRATOR counts) or a role is
not below the bot's highest role (or is managed), 404 Unknown Role (10011)
for an id that is not a role of the channel's server (the @everyone id
included), and a 400 Invalid Form Body for ids that are not snowflakes or
more than 250. The codes and shapes of these refusals are not documented
(api-notes 3.5). The invite then carries `roles` (partial role objects);
`use_invite` grants them, to a member already in the server too.

Known deviations from the spec that are Discord's real behaviour: field
errors in a 400 Invalid Form Body carry string codes (`NUMBER_TYPE_MAX`),
and 429 bodies have no `code` (the docs mark it optional).
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import string
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from syncctl.sandbox.server import Emulator, Request, Response, route

DEFAULT_GUILD_ID = "100000000000000000"
DEFAULT_CHANNELS = {"100000000000000001": DEFAULT_GUILD_ID, "100000000000000002": DEFAULT_GUILD_ID}
BOT_USER_ID = "1200000000000000001"
ALL_PERMISSIONS = frozenset({"CREATE_INSTANT_INVITE", "MANAGE_CHANNELS"})
KNOWN_PERMISSIONS = frozenset({"CREATE_INSTANT_INVITE", "MANAGE_CHANNELS", "MANAGE_GUILD"})
BOT_ROLE_NAME = "syncctl-bot"
#: The first role id and user id the emulator hands out (ones it makes up itself).
FIRST_ROLE_ID = 1300000000000000001
FIRST_USER_ID = 1400000000000000001

#: Discord's permission bit flags (developers/topics/permissions).
PERMISSION_BITS = {
    "CREATE_INSTANT_INVITE": 1 << 0,
    "ADMINISTRATOR": 1 << 3,
    "MANAGE_CHANNELS": 1 << 4,
    "MANAGE_GUILD": 1 << 5,
    "VIEW_CHANNEL": 1 << 10,
    "SEND_MESSAGES": 1 << 11,
    "READ_MESSAGE_HISTORY": 1 << 16,
    "MANAGE_ROLES": 1 << 28,
}
#: Server-wide permissions a role may carry here.
ROLE_PERMISSIONS = frozenset(PERMISSION_BITS)
MAX_INVITE_ROLES = 250
#: A new server's @everyone role (a subset: the bits that matter here).
EVERYONE_PERMISSIONS = (
    PERMISSION_BITS["CREATE_INSTANT_INVITE"]
    | PERMISSION_BITS["VIEW_CHANNEL"]
    | PERMISSION_BITS["SEND_MESSAGES"]
    | PERMISSION_BITS["READ_MESSAGE_HISTORY"]
)

MAX_AGE_LIMIT = 604800  # docs: between 0 and 604800 (7 days)
MAX_USES_LIMIT = 100
DEFAULT_MAX_AGE = 86400
CODE_ALPHABET = string.ascii_letters + string.digits
RATE_LIMITED = "You are being rate limited."

_SNOWFLAKE = re.compile(r"(0|[1-9][0-9]{0,19})")
_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"^/channels/(?P<major>[^/]+)/invites$"), "create_channel_invite"),
    ("GET", re.compile(r"^/channels/(?P<major>[^/]+)/invites$"), "list_channel_invites"),
    ("GET", re.compile(r"^/invites/[^/]+$"), "invite_resolve"),
    ("DELETE", re.compile(r"^/invites/[^/]+$"), "invite_revoke"),
)


@dataclass
class InviteRecord:
    """One invite as the emulator stores it."""

    code: str
    channel_id: str
    guild_id: str
    max_age: int
    max_uses: int
    temporary: bool
    created_at: datetime
    inviter_id: str | None
    uses: int = 0
    unique: bool = False
    role_ids: tuple[str, ...] = ()

    @property
    def expires_at(self) -> datetime | None:
        return self.created_at + timedelta(seconds=self.max_age) if self.max_age else None

    def expired(self, now: datetime) -> bool:
        expires = self.expires_at
        return expires is not None and now >= expires

    @property
    def similarity(self) -> tuple[str, int, int, bool, str | None, tuple[str, ...]]:
        """What makes two invites "similar" for Discord's reuse (unique=false)."""
        return (
            self.channel_id,
            self.max_age,
            self.max_uses,
            self.temporary,
            self.inviter_id,
            tuple(sorted(self.role_ids)),
        )


@dataclass
class RoleRecord:
    """A server role: what `GET /guilds/{id}/roles` lists and invites may grant."""

    id: str
    guild_id: str
    name: str
    position: int
    permissions: int = 0
    managed: bool = False
    color: int = 0


@dataclass(frozen=True)
class AuditEntry:
    """An audit-log line: what was done and the `X-Audit-Log-Reason` sent."""

    action: str  # INVITE_CREATE | INVITE_DELETE
    code: str
    channel_id: str
    reason: str | None
    at: datetime


@dataclass
class _Bucket:
    limit: int
    window: float
    count: int = 0
    reset_at: float = 0.0  # monotonic


@dataclass
class _Window:
    count: int = 0
    reset_at: float = 0.0


class DiscordEmulator(Emulator):
    """A Discord guild or two, seen through a bot's token."""

    name = "discord"
    prefix = "/api/v10"

    def __init__(
        self,
        *,
        bot_token: str,
        channels: Mapping[str, str] | None = None,
        latency: float = 0.0,
        invite_bucket_limit: int = 5,
        invite_bucket_window: float = 5.0,
        route_bucket_limit: int = 50,
        route_bucket_window: float = 1.0,
        global_limit_per_second: int = 50,
        permissions: Mapping[str, Iterable[str]] | None = None,
        resolve_with_metadata: bool = False,
        guild_member_count: int = 120,
        bot_permissions: Iterable[str] = ("MANAGE_ROLES",),
    ) -> None:
        # Set before the base class scans attributes (it reads the `now` property).
        self._clock_offset = 0.0
        self._frozen: datetime | None = None
        super().__init__(latency=latency)
        self.bot_token = bot_token
        self.bot_user_id = BOT_USER_ID
        #: GET /invites/{code} answers without invite metadata, as documented;
        #: True adds it (an answer shape the client must tolerate too).
        self.resolve_with_metadata = resolve_with_metadata
        self.global_limit_per_second = global_limit_per_second
        self._limits = {
            "create_channel_invite": (invite_bucket_limit, invite_bucket_window),
            "list_channel_invites": (route_bucket_limit, route_bucket_window),
            "invite_resolve": (route_bucket_limit, route_bucket_window),
            "invite_revoke": (route_bucket_limit, route_bucket_window),
        }
        self._channels: dict[str, str] = {}
        self._channel_names: dict[str, str] = {}
        self._permissions: dict[str, frozenset[str]] = {}
        self._hidden: set[str] = set()
        self._members: dict[str, int] = {}
        self._default_members = guild_member_count
        self._bot_permissions = _role_bits(bot_permissions)
        self._roles: dict[str, dict[str, RoleRecord]] = {}  # guild -> role id -> role
        self._bot_roles: dict[str, list[str]] = {}  # guild -> the bot member's role ids
        self._bot_role: dict[str, str] = {}  # guild -> the bot's own managed role
        self._next_role_id = FIRST_ROLE_ID
        #: (guild id, user id) -> roles members got through invites.
        self.granted_roles: dict[tuple[str, str], set[str]] = {}
        self._joined: set[tuple[str, str]] = set()
        for channel_id, guild_id in (DEFAULT_CHANNELS if channels is None else channels).items():
            self.add_channel(channel_id, guild_id)
        for channel_id, perms in (permissions or {}).items():
            self.set_permissions(channel_id, perms)
        self._invites: dict[str, InviteRecord] = {}
        self._by_channel: dict[str, dict[str, None]] = {}
        self._similar: dict[tuple[Any, ...], dict[str, None]] = {}
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._global = _Window()
        self._current: tuple[str, _Bucket] | None = None
        # inspection
        self.created_count = 0
        self.revoked: list[dict[str, Any]] = []
        self.expired: list[str] = []
        self.consumed: list[str] = []
        self.audit_log: list[AuditEntry] = []
        self.user_agents: list[str] = []
        self.invalid_requests = 0
        self.invalid_by_status: Counter[int] = Counter()
        self.rate_limited: Counter[str] = Counter()  # scope -> 429s sent

    # -- clock ----------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """The emulator's time: real UTC time plus `advance()`s, or a frozen value."""
        if self._frozen is not None:
            return self._frozen
        return datetime.now(UTC) + timedelta(seconds=self._clock_offset)

    @now.setter
    def now(self, value: datetime) -> None:
        self._frozen = value if value.tzinfo else value.replace(tzinfo=UTC)

    def advance(self, seconds: float) -> None:
        """Move the invite clock forward (expiry); rate limits keep real time."""
        with self.lock:
            if self._frozen is not None:
                self._frozen += timedelta(seconds=seconds)
            else:
                self._clock_offset += seconds

    # -- seeding and inspection -----------------------------------------------

    def add_channel(
        self, channel_id: str, guild_id: str = DEFAULT_GUILD_ID, name: str = ""
    ) -> None:
        with self.lock:
            self._channels[channel_id] = guild_id
            self._channel_names[channel_id] = name or f"channel-{len(self._channels)}"
            self._permissions.setdefault(channel_id, ALL_PERMISSIONS)
            self._members.setdefault(guild_id, self._default_members)
            if guild_id not in self._roles:
                # Discord gives a bot joining a server a managed role of its own.
                self._roles[guild_id] = {}
                bot_role = self._insert_role(
                    guild_id, None, BOT_ROLE_NAME, 1, self._bot_permissions, managed=True
                )
                self._bot_roles[guild_id] = [bot_role.id]
                self._bot_role[guild_id] = bot_role.id

    def set_permissions(self, channel_id: str, perms: Iterable[str]) -> None:
        """The bot's permissions on a channel (any of KNOWN_PERMISSIONS)."""
        granted = frozenset(perms)
        unknown = granted - KNOWN_PERMISSIONS
        if unknown:
            raise ValueError(f"unknown permissions {sorted(unknown)}")
        with self.lock:
            self._permissions[channel_id] = granted

    def hide_channel(self, channel_id: str, hidden: bool = True) -> None:
        """The bot cannot see the channel at all: 403 Missing Access (50001)."""
        with self.lock:
            if hidden:
                self._hidden.add(channel_id)
            else:
                self._hidden.discard(channel_id)

    def seed_invite(
        self,
        channel_id: str,
        *,
        code: str | None = None,
        max_age: int = 0,
        max_uses: int = 1,
        uses: int = 0,
        temporary: bool = False,
        unique: bool = True,
        inviter_id: str | None = BOT_USER_ID,
        created_at: datetime | None = None,
    ) -> str:
        """Add an invite directly (as if minted earlier); returns its code."""
        with self.lock:
            guild_id = self._channels[channel_id]
            record = InviteRecord(
                code=code or self._new_code(),
                channel_id=channel_id,
                guild_id=guild_id,
                max_age=max_age,
                max_uses=max_uses,
                temporary=temporary,
                created_at=created_at or self.now,
                inviter_id=inviter_id,
                uses=uses,
                unique=unique,
            )
            self._store(record)
            return record.code

    def invites(self, channel_id: str | None = None) -> list[dict[str, Any]]:
        """Live invites (with metadata, as GET /channels/{id}/invites shows them)."""
        with self.lock:
            channels = [channel_id] if channel_id is not None else list(self._by_channel)
            return [
                self._invite_json(record, metadata=True)
                for channel in channels
                for record in self._live_in(channel)
            ]

    def invite(self, code: str) -> dict[str, Any] | None:
        """One live invite with metadata, or None."""
        with self.lock:
            record = self._live(code)
            return self._invite_json(record, metadata=True) if record else None

    def use_invite(self, code: str, *, user_id: str | None = None) -> dict[str, Any]:
        """Someone accepts the invite: a use is counted, its roles granted; a spent one is deleted.

        `user_id` names who (a new member when omitted). Someone already in
        the server gets the invite's roles too, as Discord's community-invite
        guide says; whether that counts a use is not documented (here it does).
        """
        with self.lock:
            record = self._live(code)
            if record is None:
                raise KeyError(f"unknown invite {code}")
            record.uses += 1
            who = (record.guild_id, user_id or str(FIRST_USER_ID + len(self._joined)))
            if who not in self._joined:
                self._joined.add(who)
                self._members[record.guild_id] = self._members.get(record.guild_id, 0) + 1
            if record.role_ids:
                self.granted_roles.setdefault(who, set()).update(record.role_ids)
            snapshot = self._invite_json(record, metadata=True)
            if record.max_uses and record.uses >= record.max_uses:
                self._remove(record)
                self.consumed.append(code)
            return snapshot

    def add_member(self, guild_id: str, user_id: str) -> None:
        """Someone is in the server already (e.g. joined through another invite)."""
        with self.lock:
            self._joined.add((guild_id, user_id))

    def member_roles(self, guild_id: str, user_id: str) -> set[str]:
        """The roles a member got through invites."""
        with self.lock:
            return set(self.granted_roles.get((guild_id, user_id), set()))

    # -- roles ------------------------------------------------------------------

    def add_role(
        self,
        guild_id: str = DEFAULT_GUILD_ID,
        *,
        role_id: str | None = None,
        name: str = "role",
        permissions: Iterable[str] = (),
        managed: bool = False,
        position: int = 1,
    ) -> str:
        """A role made in Server Settings > Roles; returns its id.

        Discord puts a new role at the bottom, just above @everyone
        (position 1), moving the others up: the bot's role stays above it.
        """
        with self.lock:
            return self._insert_role(
                guild_id, role_id, name, position, _role_bits(permissions), managed=managed
            ).id

    def set_role_position(self, role_id: str, position: int) -> None:
        """Drag a role to `position` (others keep theirs: equal positions are possible)."""
        with self.lock:
            self._find_role(role_id).position = position

    def set_bot_permissions(self, guild_id: str, perms: Iterable[str]) -> None:
        """The permissions of the bot's own (managed) role in a server."""
        with self.lock:
            self._find_role(self.bot_role_id(guild_id)).permissions = _role_bits(perms)

    def set_bot_roles(self, guild_id: str, role_ids: Iterable[str]) -> None:
        """The roles the bot's member has in a server (its managed role is one of them)."""
        with self.lock:
            self._bot_roles[guild_id] = list(role_ids)

    def bot_role_id(self, guild_id: str = DEFAULT_GUILD_ID) -> str:
        """The id of the managed role Discord gave the bot in that server."""
        with self.lock:
            return self._bot_role[guild_id]

    def roles(self, guild_id: str = DEFAULT_GUILD_ID) -> list[dict[str, Any]]:
        """The server's roles as `GET /guilds/{id}/roles` lists them."""
        with self.lock:
            return self._roles_json(guild_id)

    def expire_all(self) -> int:
        """Every invite with a max_age expires now (max_age 0 never does)."""
        with self.lock:
            doomed = [r for r in self._invites.values() if r.max_age]
            for record in doomed:
                self._remove(record)
                self.expired.append(record.code)
            return len(doomed)

    def reset_rate_limits(self) -> None:
        with self.lock:
            self._buckets.clear()
            self._global = _Window()

    def exhaust_bucket(self, operation: str, major: str = "") -> None:
        """Use up a route bucket, as another process with the same token would."""
        with self.lock:
            bucket = self._bucket_for(operation, major, time.monotonic())
            bucket.count = bucket.limit

    @staticmethod
    def bucket_hash(operation: str) -> str:
        """The stable `X-RateLimit-Bucket` value of an operation's route group."""
        return hashlib.md5(f"discord-emulator:{operation}".encode()).hexdigest()

    # -- hooks ----------------------------------------------------------------

    def authenticate(self, request: Request) -> Response | None:
        self._current = None
        self.user_agents.append(request.headers.get("user-agent", ""))
        header = request.headers.get("authorization")
        operation, _ = _operation(request.method, self._rel(request))
        if header is None and operation == "invite_resolve":
            return None  # resolving an invite works without a token
        if header != f"Bot {self.bot_token}":
            return Response(401, {"message": "401: Unauthorized", "code": 0})
        return None

    def throttle(self, request: Request) -> Response | None:
        self._current = None
        clock = time.monotonic()
        window = self._global
        if clock >= window.reset_at:
            window.count, window.reset_at = 0, clock + 1.0
        if window.count >= self.global_limit_per_second:
            retry_after = window.reset_at - clock
            return self._too_many(
                retry_after,
                {"X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"},
                is_global=True,
            )
        window.count += 1
        operation, major = _operation(request.method, self._rel(request))
        if operation is None:
            return None
        bucket = self._bucket_for(operation, major, clock)
        if bucket.count >= bucket.limit:
            retry_after = bucket.reset_at - clock
            headers = self._bucket_headers(operation, bucket, clock)
            headers["X-RateLimit-Scope"] = "user"
            return self._too_many(retry_after, headers, is_global=False)
        bucket.count += 1
        self._current = (operation, bucket)
        return None

    def decorate(self, request: Request, response: Response) -> None:
        if response.status in (401, 403, 429):
            self.invalid_requests += 1
            self.invalid_by_status[response.status] += 1
        if self._current is not None:
            operation, bucket = self._current
            response.headers.update(self._bucket_headers(operation, bucket, time.monotonic()))
            self._current = None

    def not_found(self, request: Request) -> Response:
        return Response(404, {"message": "404: Not Found", "code": 0})

    def error_response(self, status: int, message: str) -> Response:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        return Response(status, {"message": f"{status}: {phrase}", "code": 0})

    # -- routes ---------------------------------------------------------------

    @route("POST", "/channels/{channel_id}/invites")
    def create_channel_invite(self, request: Request, channel_id: str) -> Response:
        bad = self._check_snowflake(channel_id)
        if bad:
            return bad
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return Response(
                400, {"message": "The request body contains invalid JSON.", "code": 50109}
            )
        errors: dict[str, Any] = {}
        max_age = _int_field(body, "max_age", DEFAULT_MAX_AGE, 0, MAX_AGE_LIMIT, errors)
        max_uses = _int_field(body, "max_uses", 0, 0, MAX_USES_LIMIT, errors)
        temporary = _bool_field(body, "temporary", errors)
        unique = _bool_field(body, "unique", errors)
        role_ids = _role_ids_field(body, errors)
        if errors:
            return _form_error(errors)
        denied = self._channel_access(channel_id, "CREATE_INSTANT_INVITE")
        if denied:
            return denied
        if role_ids:
            refused = self._role_grant(self._channels[channel_id], role_ids)
            if refused:
                return refused
        assert max_age is not None and max_uses is not None
        if not unique:
            key = (
                channel_id,
                max_age,
                max_uses,
                temporary,
                self.bot_user_id,
                tuple(sorted(role_ids)),
            )
            for code in list(self._similar.get(key, ())):
                record = self._live(code)
                if record is not None:
                    return Response(200, self._invite_json(record, metadata=True))
        record = InviteRecord(
            code=self._new_code(),
            channel_id=channel_id,
            guild_id=self._channels[channel_id],
            max_age=max_age,
            max_uses=max_uses,
            temporary=temporary,
            created_at=self.now,
            inviter_id=self.bot_user_id,
            unique=unique,
            role_ids=tuple(role_ids),
        )
        self._store(record)
        self.created_count += 1
        self._audit("INVITE_CREATE", record, request)
        return Response(200, self._invite_json(record, metadata=True))

    @route("GET", "/channels/{channel_id}/invites")
    def list_channel_invites(self, request: Request, channel_id: str) -> Response:
        bad = self._check_snowflake(channel_id)
        if bad:
            return bad
        denied = self._channel_access(channel_id, "MANAGE_CHANNELS")
        if denied:
            return denied
        return Response(
            200,
            [self._invite_json(record, metadata=True) for record in self._live_in(channel_id)],
        )

    @route("GET", "/users/@me")
    def current_user(self, request: Request) -> Response:
        """The bot's own user, with the fields only its owner sees (UserPIIResponse)."""
        body = self._user_json(self.bot_user_id)
        body.update({"mfa_enabled": False, "locale": "en-US", "verified": True, "email": None})
        return Response(200, body)

    @route("GET", "/invites/{code}")
    def invite_resolve(self, request: Request, code: str) -> Response:
        record = self._live(code)
        if record is None:
            return _unknown_invite()
        body = self._invite_json(record, metadata=self.resolve_with_metadata)
        if (request.arg("with_counts") or "").lower() == "true":
            members = self._members.get(record.guild_id, 0)
            body["approximate_member_count"] = members
            body["approximate_presence_count"] = max(0, members // 3)
        return Response(200, body)

    @route("DELETE", "/invites/{code}")
    def invite_revoke(self, request: Request, code: str) -> Response:
        record = self._live(code)
        if record is None:
            return _unknown_invite()
        perms = self._permissions.get(record.channel_id, frozenset())
        admin = self._bot_has(record.guild_id, "ADMINISTRATOR")
        if record.channel_id in self._hidden and not admin:
            return _missing_access()
        if not perms & {"MANAGE_CHANNELS", "MANAGE_GUILD"} and not admin:
            return _missing_permissions()
        body = self._invite_json(record, metadata=False)
        self._remove(record)
        self._audit("INVITE_DELETE", record, request)
        self.revoked.append(self._invite_json(record, metadata=True))
        return Response(200, body)

    # -- permission reads (for `syncctl doctor`) ------------------------------
    #
    # The bot's per-channel permission set is rendered the way Discord exposes
    # it: an @everyone role with Discord's default permissions (which include
    # CREATE_INSTANT_INVITE), no roles on the bot's member, and a member
    # overwrite on each channel allowing what was granted and denying the rest.

    @route("GET", "/channels/{channel_id}")
    def get_channel(self, request: Request, channel_id: str) -> Response:
        bad = self._check_snowflake(channel_id)
        if bad:
            return bad
        if channel_id not in self._channels:
            return Response(404, {"message": "Unknown Channel", "code": 10003})
        if channel_id in self._hidden:
            return _missing_access()
        granted = self._permissions.get(channel_id, frozenset())
        allow = _permission_bits(granted)
        deny = _permission_bits(KNOWN_PERMISSIONS - granted)
        return Response(
            200,
            {
                "id": channel_id,
                "type": 0,
                "flags": 0,
                "guild_id": self._channels[channel_id],
                "name": self._channel_names.get(channel_id, "channel"),
                "parent_id": None,
                "position": 0,
                "last_message_id": None,
                "rate_limit_per_user": 0,
                "topic": None,
                "nsfw": False,
                "permission_overwrites": [
                    {"id": self.bot_user_id, "type": 1, "allow": str(allow), "deny": str(deny)}
                ],
            },
        )

    @route("GET", "/guilds/{guild_id}/members/{user_id}")
    def get_guild_member(self, request: Request, guild_id: str, user_id: str) -> Response:
        if guild_id not in self._members:
            return Response(404, {"message": "Unknown Guild", "code": 10004})
        if user_id != self.bot_user_id:
            return Response(404, {"message": "Unknown Member", "code": 10007})
        return Response(
            200,
            {
                "avatar": None,
                "banner": None,
                "communication_disabled_until": None,
                "flags": 0,
                "joined_at": _iso(datetime(2024, 1, 1, tzinfo=UTC)),
                "nick": None,
                "pending": False,
                "premium_since": None,
                "roles": list(self._bot_roles.get(guild_id, [])),
                "user": self._user_json(user_id),
                "mute": False,
                "deaf": False,
            },
        )

    @route("GET", "/guilds/{guild_id}/roles")
    def list_guild_roles(self, request: Request, guild_id: str) -> Response:
        if guild_id not in self._members:
            return Response(404, {"message": "Unknown Guild", "code": 10004})
        return Response(200, self._roles_json(guild_id))

    # -- internals ------------------------------------------------------------

    def _rel(self, request: Request) -> str:
        return request.path[len(self.prefix) :] if request.path.startswith(self.prefix) else ""

    def _bucket_for(self, operation: str, major: str, clock: float) -> _Bucket:
        key = (self.bucket_hash(operation), major)
        limit, window = self._limits[operation]
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(limit=limit, window=window)
        if clock >= bucket.reset_at:
            bucket.count, bucket.reset_at = 0, clock + bucket.window
        return bucket

    def _bucket_headers(self, operation: str, bucket: _Bucket, clock: float) -> dict[str, str]:
        reset_after = max(0.0, bucket.reset_at - clock)
        return {
            "X-RateLimit-Limit": str(bucket.limit),
            "X-RateLimit-Remaining": str(max(0, bucket.limit - bucket.count)),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": self.bucket_hash(operation),
        }

    def _too_many(
        self, retry_after: float, headers: dict[str, str], *, is_global: bool
    ) -> Response:
        retry_after = max(0.001, round(retry_after, 3))
        self.invalid_requests += 1
        self.invalid_by_status[429] += 1
        self.rate_limited[headers.get("X-RateLimit-Scope", "user")] += 1
        headers["Retry-After"] = str(math.ceil(retry_after))
        return Response(
            429,
            {"message": RATE_LIMITED, "retry_after": retry_after, "global": is_global},
            headers,
        )

    def _check_snowflake(self, channel_id: str) -> Response | None:
        if _SNOWFLAKE.fullmatch(channel_id):
            return None
        return _form_error(
            {
                "channel_id": {
                    "_errors": [
                        {
                            "code": "NUMBER_TYPE_COERCE",
                            "message": f'Value "{channel_id}" is not snowflake.',
                        }
                    ]
                }
            }
        )

    def _channel_access(self, channel_id: str, permission: str) -> Response | None:
        if channel_id not in self._channels:
            return Response(404, {"message": "Unknown Channel", "code": 10003})
        if self._bot_has(self._channels[channel_id], "ADMINISTRATOR"):
            return None  # ADMINISTRATOR overrides every channel overwrite
        if channel_id in self._hidden:
            return _missing_access()
        if permission not in self._permissions.get(channel_id, frozenset()):
            return _missing_permissions()
        return None

    def _insert_role(
        self,
        guild_id: str,
        role_id: str | None,
        name: str,
        position: int,
        permissions: int,
        *,
        managed: bool = False,
    ) -> RoleRecord:
        """Add a role at `position`, moving those at or above it up one (lock held)."""
        roles = self._roles.setdefault(guild_id, {})
        rid = role_id or self._new_role_id()
        for role in roles.values():
            if role.position >= position:
                role.position += 1
        record = RoleRecord(rid, guild_id, name, position, permissions, managed=managed)
        roles[rid] = record
        return record

    def _new_role_id(self) -> str:
        rid = str(self._next_role_id)
        self._next_role_id += 1
        return rid

    def _find_role(self, role_id: str) -> RoleRecord:
        for roles in self._roles.values():
            if role_id in roles:
                return roles[role_id]
        raise KeyError(f"unknown role {role_id}")

    def _bot_bits(self, guild_id: str) -> int:
        """The bot's server-wide permissions: @everyone and its roles."""
        bits = EVERYONE_PERMISSIONS
        roles = self._roles.get(guild_id, {})
        for rid in self._bot_roles.get(guild_id, []):
            role = roles.get(rid)
            if role is not None:
                bits |= role.permissions
        return bits

    def _bot_has(self, guild_id: str, permission: str) -> bool:
        bits = self._bot_bits(guild_id)
        if bits & PERMISSION_BITS["ADMINISTRATOR"]:
            return True
        return bool(bits & PERMISSION_BITS[permission])

    def _bot_top(self, guild_id: str) -> int:
        roles = self._roles.get(guild_id, {})
        positions = [roles[r].position for r in self._bot_roles.get(guild_id, []) if r in roles]
        return max(positions, default=0)

    def _role_grant(self, guild_id: str, role_ids: list[str]) -> Response | None:
        """Discord's checks on `role_ids`: the right, each role known, each below the bot."""
        if not self._bot_has(guild_id, "MANAGE_ROLES"):
            return _missing_permissions()
        roles = self._roles.get(guild_id, {})
        if any(rid not in roles for rid in role_ids):
            return Response(404, {"message": "Unknown Role", "code": 10011})
        top = self._bot_top(guild_id)
        if any(roles[rid].managed or roles[rid].position >= top for rid in role_ids):
            return _missing_permissions()
        return None

    def _roles_json(self, guild_id: str) -> list[dict[str, Any]]:
        everyone = RoleRecord(guild_id, guild_id, "@everyone", 0, EVERYONE_PERMISSIONS)
        ordered = sorted(self._roles.get(guild_id, {}).values(), key=lambda r: r.position)
        return [_role_json(role, full=True) for role in [everyone, *ordered]]

    def _new_code(self) -> str:
        while True:
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(10))
            if code not in self._invites:
                return code

    def _store(self, record: InviteRecord) -> None:
        self._invites[record.code] = record
        self._by_channel.setdefault(record.channel_id, {})[record.code] = None
        self._similar.setdefault(record.similarity, {})[record.code] = None

    def _remove(self, record: InviteRecord) -> None:
        self._invites.pop(record.code, None)
        self._by_channel.get(record.channel_id, {}).pop(record.code, None)
        self._similar.get(record.similarity, {}).pop(record.code, None)

    def _live(self, code: str) -> InviteRecord | None:
        record = self._invites.get(code)
        if record is None:
            return None
        if record.expired(self.now):
            self._remove(record)
            self.expired.append(code)
            return None
        return record

    def _live_in(self, channel_id: str) -> list[InviteRecord]:
        live = []
        for code in list(self._by_channel.get(channel_id, ())):
            record = self._live(code)
            if record is not None:
                live.append(record)
        return live

    def _audit(self, action: str, record: InviteRecord, request: Request) -> None:
        raw = request.headers.get("x-audit-log-reason")
        self.audit_log.append(
            AuditEntry(
                action=action,
                code=record.code,
                channel_id=record.channel_id,
                reason=unquote(raw)[:512] if raw else None,
                at=self.now,
            )
        )

    def _user_json(self, user_id: str) -> dict[str, Any]:
        is_bot = user_id == self.bot_user_id
        return {
            "id": user_id,
            "username": "syncctl-bot" if is_bot else f"user{user_id[-4:]}",
            "avatar": None,
            "discriminator": "0",
            "public_flags": 0,
            "flags": 0,
            "bot": is_bot,
            "banner": None,
            "accent_color": None,
            "global_name": None,
            "avatar_decoration_data": None,
            "collectibles": None,
            "primary_guild": None,
        }

    def _guild_json(self, guild_id: str) -> dict[str, Any]:
        return {
            "id": guild_id,
            "name": f"Sandbox guild {guild_id[-4:]}",
            "splash": None,
            "banner": None,
            "description": None,
            "icon": None,
            "features": [],
            "verification_level": 1,
            "vanity_url_code": None,
            "nsfw_level": 0,
            "nsfw": False,
            "premium_subscription_count": 0,
        }

    def _invite_json(self, record: InviteRecord, *, metadata: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"type": 0, "code": record.code}
        if record.inviter_id is not None:
            body["inviter"] = self._user_json(record.inviter_id)
        if metadata:
            body["max_age"] = record.max_age
            body["created_at"] = _iso(record.created_at)
        expires = record.expires_at
        body["expires_at"] = _iso(expires) if expires else None
        body["flags"] = 0
        body["guild"] = self._guild_json(record.guild_id)
        body["guild_id"] = record.guild_id
        body["channel"] = {
            "id": record.channel_id,
            "type": 0,
            "name": self._channel_names.get(record.channel_id, "channel"),
        }
        if metadata:
            body["uses"] = record.uses
            body["max_uses"] = record.max_uses
            body["temporary"] = record.temporary
        if record.role_ids:
            roles = self._roles.get(record.guild_id, {})
            body["roles"] = [
                _role_json(roles[rid], full=False) for rid in record.role_ids if rid in roles
            ]
        return body


# -- helpers ------------------------------------------------------------------


def _operation(method: str, path: str) -> tuple[str | None, str]:
    for route_method, regex, operation in _ROUTES:
        if route_method != method:
            continue
        match = regex.match(path)
        if match:
            return operation, match.groupdict().get("major") or ""
    return None, ""


def _iso(value: datetime) -> str:
    """Discord's timestamp format: `2016-03-31T19:15:39.954000+00:00`."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _int_field(
    body: Mapping[str, Any],
    key: str,
    default: int,
    low: int,
    high: int,
    errors: dict[str, Any],
) -> int | None:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            value = int(value)  # Discord coerces numeric strings
        else:
            errors[key] = _field_error("NUMBER_TYPE_COERCE", f'Value "{value}" is not int.')
            return None
    if value < low:
        errors[key] = _field_error(
            "NUMBER_TYPE_MIN", f"int value should be greater than or equal to {low}."
        )
        return None
    if value > high:
        errors[key] = _field_error(
            "NUMBER_TYPE_MAX", f"int value should be less than or equal to {high}."
        )
        return None
    return value


def _bool_field(body: Mapping[str, Any], key: str, errors: dict[str, Any]) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    errors[key] = _field_error("BOOLEAN_TYPE_COERCE", f'Value "{value}" is not a boolean.')
    return False


def _field_error(code: str, message: str) -> dict[str, Any]:
    return {"_errors": [{"code": code, "message": message}]}


def _form_error(errors: dict[str, Any]) -> Response:
    return Response(400, {"code": 50035, "errors": errors, "message": "Invalid Form Body"})


def _role_bits(names: Iterable[str]) -> int:
    granted = set(names)
    unknown = granted - ROLE_PERMISSIONS
    if unknown:
        raise ValueError(f"unknown permissions {sorted(unknown)}")
    return _permission_bits(granted)


def _role_json(role: RoleRecord, *, full: bool) -> dict[str, Any]:
    """A role object; `full=False` is the partial role an invite's `roles` carries."""
    body: dict[str, Any] = {
        "id": role.id,
        "name": role.name,
        "position": role.position,
        "color": role.color,
        "colors": {"primary_color": role.color, "secondary_color": None, "tertiary_color": None},
        "icon": None,
        "unicode_emoji": None,
    }
    if full:
        body.update(
            {
                "permissions": str(role.permissions),
                "hoist": False,
                "managed": role.managed,
                "mentionable": False,
                "flags": 0,
            }
        )
        if role.managed:
            body["tags"] = {"bot_id": BOT_USER_ID}
    return body


def _role_ids_field(body: Mapping[str, Any], errors: dict[str, Any]) -> list[str]:
    """`role_ids` as Discord's form validation reads it (null or absent: none)."""
    value = body.get("role_ids")
    if value is None:
        return []
    if not isinstance(value, list):
        errors["role_ids"] = _field_error(
            "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType"
        )
        return []
    if len(value) > MAX_INVITE_ROLES:
        errors["role_ids"] = _field_error(
            "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_INVITE_ROLES} or fewer in length."
        )
        return []
    found: list[str] = []
    for index, item in enumerate(value):
        text = str(item) if isinstance(item, int | str) and not isinstance(item, bool) else ""
        if not _SNOWFLAKE.fullmatch(text):
            errors.setdefault("role_ids", {})[str(index)] = _field_error(
                "NUMBER_TYPE_COERCE", f'Value "{item}" is not snowflake.'
            )
        elif text not in found:
            found.append(text)
    return found


def _permission_bits(names: Iterable[str]) -> int:
    bits = 0
    for name in names:
        bits |= PERMISSION_BITS[name]
    return bits


def _unknown_invite() -> Response:
    return Response(404, {"message": "Unknown Invite", "code": 10006})


def _missing_access() -> Response:
    return Response(403, {"message": "Missing Access", "code": 50001})


def _missing_permissions() -> Response:
    return Response(403, {"message": "Missing Permissions", "code": 50013})
