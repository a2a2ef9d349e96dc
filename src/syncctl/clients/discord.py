"""Discord REST v10 client: channel invites (create, list, resolve, revoke).

syncctl hands every opted-in backer one single-use invite link to the channel of
their tier. Discord is unforgiving about abuse: it bans IPs that collect 10,000
401/403/429 answers in ten minutes, so this client learns rate-limit buckets
from the response headers and waits *before* a bucket runs dry, stops on a bad
token, and lets a doctor check permissions up front (see `check_channel`).
Invites may grant roles (`role_ids`, "community invites"): that needs the
bot's MANAGE_ROLES and roles below its highest role, which
`channel_permissions` lets a doctor check (`ChannelPermissions.grant_problems`)
without minting. Facts and sources: ../shared/api-notes.md section 3 (3.5).
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from syncctl import __version__
from syncctl.clients import VendorClient, header_credential
from syncctl.errors import (
    AuthRejected,
    BadResponse,
    Conflict,
    InvalidRequest,
    NotFound,
    ServiceError,
)
from syncctl.net.http import CallStats, RetryPolicy, ServiceHTTP, parse_json
from syncctl.net.ratelimit import BucketLimiter

SERVICE = "discord"
USER_AGENT = f"DiscordBot (https://github.com/syncctl/syncctl, {__version__})"
INVITE_BASE_URL = "https://discord.gg/"

#: Discord JSON error codes this client acts on (developers/topics/opcodes-and-status-codes).
UNKNOWN_CHANNEL = 10003
UNKNOWN_INVITE = 10006
UNKNOWN_ROLE = 10011
MISSING_ACCESS = 50001
MISSING_PERMISSIONS = 50013
INVALID_FORM_BODY = 50035

#: Bounds both the docs and the spec agree on. The upper bound of `max_age`
#: is disputed (docs: 604800 = 7 days, spec: 5184000 = 60 days), so Discord
#: judges it and its 400 comes back as `InvalidRequest` naming the field.
MAX_USES_LIMIT = 100
AUDIT_REASON_MAX = 512
#: Create Channel Invite's `role_ids`: at most 250, unique (spec CreateGuildInviteRequest).
MAX_INVITE_ROLES = 250

_MAJOR_PARAM = re.compile(r"^/(channels|guilds|webhooks)/(\d+)")
_INVITE_CODE = re.compile(r"[A-Za-z0-9-]{2,64}")
_INVITE_URL = re.compile(
    r"^(?:https?://)?(?:www\.|ptb\.|canary\.)?"
    r"(?:discord\.gg/|discord(?:app)?\.com/invite/)"
    r"(?P<code>[A-Za-z0-9-]{2,64})/?(?:[?#].*)?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Invite:
    """A channel invite as Discord reports it.

    The metadata fields (`max_age`, `max_uses`, `uses`, `temporary`,
    `created_at`) are None when the answer did not carry them: resolving an
    invite (`GET /invites/{code}`) and revoking one return the invite without
    its metadata.
    """

    code: str
    channel_id: str
    max_age: int | None
    max_uses: int | None
    uses: int | None
    temporary: bool | None
    created_at: datetime | None
    expires_at: datetime | None  # None: never expires (or unknown without metadata)
    inviter_id: str | None
    guild_id: str | None = None
    #: Roles granted to whoever accepts the invite (the answer's `roles`).
    role_ids: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        """The link operators store in Mautic and backers click."""
        return f"{INVITE_BASE_URL}{self.code}"

    def is_live(self, now: datetime | None = None) -> bool:
        """Not expired and not used up (as far as this answer tells)."""
        now = now or datetime.now(UTC)
        if self.expires_at is not None and now >= self.expires_at:
            return False
        return not (self.max_uses and self.uses is not None and self.uses >= self.max_uses)


#: Discord's permission bit flags (developers/topics/permissions) that syncctl needs.
PERMISSIONS = {
    "CREATE_INSTANT_INVITE": 1 << 0,
    "ADMINISTRATOR": 1 << 3,
    "MANAGE_CHANNELS": 1 << 4,
    "MANAGE_GUILD": 1 << 5,
    "VIEW_CHANNEL": 1 << 10,
    "MANAGE_ROLES": 1 << 28,
}
#: Where an operator moves roles and edits the bot's role.
ROLES_SCREEN = "Server Settings > Roles"


@dataclass(frozen=True)
class Role:
    """A server role as `GET /guilds/{id}/roles` lists it."""

    id: str
    name: str
    #: Higher is more powerful; @everyone is 0 (developers/topics/permissions).
    position: int
    permissions: int
    #: Managed by an integration (a bot's own role, a booster role): nobody can grant it.
    managed: bool = False


@dataclass(frozen=True)
class GrantProblem:
    """Why the bot could not grant a role through an invite, and the fix.

    `kind`: "unknown" (no such role in the server), "everyone" (the
    @everyone role), "managed", "manage_roles" (the bot lacks MANAGE_ROLES)
    or "hierarchy" (the role is not below the bot's highest role).
    """

    role_id: str
    kind: str
    problem: str
    fix: str


@dataclass(frozen=True)
class ChannelPermissions:
    """The bot's effective permissions in one channel (see `channel_permissions`).

    `guild_bits` are the bot's server-wide permissions (its roles, before
    channel overwrites), `roles` the server's roles and `member_role_ids` the
    bot's: what granting roles through an invite depends on.
    """

    channel_id: str
    guild_id: str
    bits: int
    guild_bits: int = 0
    roles: tuple[Role, ...] = ()
    member_role_ids: frozenset[str] = frozenset()

    def has(self, name: str) -> bool:
        if self.bits & PERMISSIONS["ADMINISTRATOR"]:
            return True
        flag = PERMISSIONS[name]
        return self.bits & flag == flag

    def missing(self, *names: str) -> list[str]:
        return [name for name in names if not self.has(name)]

    def has_in_guild(self, name: str) -> bool:
        """A server-wide permission through the bot's roles (ADMINISTRATOR grants all).

        MANAGE_ROLES counts only here: in a channel overwrite the same bit is
        "Manage Permissions" of that channel, not the right to grant roles.
        """
        flag = PERMISSIONS[name]
        if self.guild_bits & PERMISSIONS["ADMINISTRATOR"]:
            return True
        return self.guild_bits & flag == flag

    def role(self, role_id: str) -> Role | None:
        return next((r for r in self.roles if r.id == role_id), None)

    @property
    def highest_role(self) -> Role | None:
        """The bot's highest role (greatest position); None when it has none but @everyone."""
        mine = [r for r in self.roles if r.id in self.member_role_ids]
        return max(mine, key=lambda r: r.position, default=None)

    def grant_problems(self, role_ids: Iterable[str]) -> list[GrantProblem]:
        """Why an invite granting `role_ids` would be refused; [] when the bot may grant them.

        Discord's rules for `role_ids` (channel.mdx and the community-invites
        guide): the sender needs MANAGE_ROLES and may only give roles lower
        than its own highest role (developers/topics/permissions, Permission
        Hierarchy). ADMINISTRATOR stands in for MANAGE_ROLES, not for the
        hierarchy. Every problem of every role is listed.
        """
        found: list[GrantProblem] = []
        top = self.highest_role
        bot_role = f"the bot's role {top.name!r}" if top is not None else "a role of the bot"
        for role_id in role_ids:
            role = self.role(role_id)
            if role_id == self.guild_id:
                found.append(
                    GrantProblem(
                        role_id,
                        "everyone",
                        f"role {role_id} is @everyone, which every member has; no invite grants it",
                        "remove it from the role ids",
                    )
                )
                continue
            if role is None:
                found.append(
                    GrantProblem(
                        role_id,
                        "unknown",
                        f"role {role_id} does not exist in server {self.guild_id}",
                        f"copy the id of a role of that server ({ROLES_SCREEN}, right-click "
                        "the role > Copy Role ID)",
                    )
                )
                continue
            found.extend(self._role_problems(role, top, bot_role))
        return found

    def _role_problems(self, role: Role, top: Role | None, bot_role: str) -> list[GrantProblem]:
        label = f"role {role.name!r} ({role.id})"
        found: list[GrantProblem] = []
        if not self.has_in_guild("MANAGE_ROLES"):
            found.append(
                GrantProblem(
                    role.id,
                    "manage_roles",
                    f"{label}: the bot lacks Manage Roles (MANAGE_ROLES) in server {self.guild_id}",
                    f"give {bot_role} the Manage Roles permission ({ROLES_SCREEN})",
                )
            )
        if role.managed:
            found.append(
                GrantProblem(
                    role.id,
                    "managed",
                    f"{label} is managed by an integration (a bot's or booster role): nobody "
                    "can grant it",
                    "choose a role the server's admins created",
                )
            )
        elif top is None or role.position >= top.position:
            where = (
                f"{bot_role} (position {top.position})"
                if top is not None
                else "the bot's highest role (it has none but @everyone)"
            )
            found.append(
                GrantProblem(
                    role.id,
                    "hierarchy",
                    f"{label} is at position {role.position}, not below {where}",
                    f"drag {bot_role} above {role.name!r} ({ROLES_SCREEN})",
                )
            )
        return found


def invite_code_from_url(text: str) -> str | None:
    """The invite code in what an operator pasted, or None when it is not one.

    Accepts `https://discord.gg/CODE`, `https://discord.com/invite/CODE`
    (also discordapp.com, ptb./canary. hosts, no scheme, a trailing slash or
    query) and a bare code.
    """
    if not isinstance(text, str):
        return None
    text = text.strip()
    if not text:
        return None
    match = _INVITE_URL.match(text)
    if match:
        return match.group("code")
    if _INVITE_CODE.fullmatch(text):
        return text
    return None


def discord_route_key(method: str, path: str) -> str:
    """The rate-limit route of a request: keep the major parameter, blank the rest.

    Discord limits per route *and* top-level resource (channel, guild,
    webhook); ids and invite codes below it share one limit.
    """
    path = path.split("?", 1)[0]
    prefix = ""
    match = _MAJOR_PARAM.match(path)
    if match:
        prefix, path = match.group(0), path[match.end() :]
    path = re.sub(r"/invites/[^/]+", "/invites/{code}", path)
    path = re.sub(r"/\d+(?=/|$)", "/{id}", path)
    return f"{method.upper()} {prefix}{path}"


def _major_parameter(path: str) -> str:
    match = _MAJOR_PARAM.match(path.split("?", 1)[0])
    return match.group(0) if match else ""


class DiscordLimiter(BucketLimiter):
    """`BucketLimiter` whose shared buckets stay separate per major parameter.

    Discord's `X-RateLimit-Bucket` names a limit "non-inclusive of top-level
    resources": channel A and channel B share the hash but not the counter.
    The base limiter keys on the hash alone, which would let channel B's
    answer overwrite channel A's exhausted bucket (and cause 429s).
    """

    #: "All bots can make up to 50 requests per second to our API", announced
    #: by no header until a global 429: counted here over a sliding window a
    #: little longer than a second, so jitter cannot put 51 into Discord's.
    GLOBAL_LIMIT = 50
    GLOBAL_WINDOW = 1.05

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(discord_route_key, probe=True, clock=clock)
        self._sent: deque[float] = deque()
        self._global_lock = threading.Lock()

    def reserve(self, method: str, path: str) -> float:
        with self._global_lock:
            now = self._clock()
            while self._sent and self._sent[0] <= now - self.GLOBAL_WINDOW:
                self._sent.popleft()
            if len(self._sent) >= self.GLOBAL_LIMIT:
                return self._sent[0] + self.GLOBAL_WINDOW - now
            wait = super().reserve(method, path)
            if wait <= 0:
                self._sent.append(now)
            return wait

    def update(self, method: str, path: str, status: int, headers: Mapping[str, str]) -> None:
        scoped = {k.lower(): v for k, v in headers.items()}
        bucket = scoped.get("x-ratelimit-bucket")
        if bucket:
            scoped["x-ratelimit-bucket"] = f"{bucket}|{_major_parameter(path)}"
        super().update(method, path, status, scoped)


#: Discord's JSON error code for "Maximum number of invites reached".
MAX_INVITES_REACHED = 30016


def _invite_refusal(response: httpx.Response, path: str) -> ServiceError:
    """A 400 on invite creation; a full channel is the channel's state, not our request's."""
    text = f"POST {path} answered 400: {discord_error_message(response) or 'bad request'}"
    try:
        code = response.json().get("code")
    except (ValueError, AttributeError):
        code = None
    if code == MAX_INVITES_REACHED:
        return Conflict(
            SERVICE,
            text,
            hint="revoke unused invites in the channel; `syncctl reconcile --full` revokes the "
            "ones syncctl minted that no contact holds",
            status=400,
        )
    return InvalidRequest(SERVICE, text, status=400)


def discord_error_message(response: httpx.Response) -> str:
    """One line from Discord's `{"code": n, "message": ..., "errors"?: {...}}`."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    message = body.get("message")
    text = str(message) if isinstance(message, str) and message else ""
    code = body.get("code")
    if isinstance(code, int) and not isinstance(code, bool) and code:
        text = f"{text} (code {code})" if text else f"code {code}"
    details = _field_errors(body.get("errors"))
    if details:
        text = f"{text}: {'; '.join(details[:3])}"
    return " ".join(text.split())[:300]


def _field_errors(node: Any, path: str = "") -> list[str]:
    """Flatten Discord's nested `errors` tree into `field: message` lines."""
    if not isinstance(node, dict):
        return []
    found: list[str] = []
    inner = node.get("_errors")
    if isinstance(inner, list):
        for item in inner:
            if isinstance(item, dict) and item.get("message"):
                found.append(f"{path or 'body'}: {item['message']}")
    for key, child in node.items():
        if key != "_errors":
            found.extend(_field_errors(child, f"{path}.{key}" if path else str(key)))
    return found


def _error_code(response: httpx.Response) -> int | None:
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


class DiscordClient(VendorClient):
    """The Discord calls syncctl makes, with typed results."""

    def __init__(
        self,
        api_base: str,
        bot_token: str,
        *,
        stats: CallStats | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        max_concurrency: int = 4,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not bot_token or not bot_token.strip():
            raise AuthRejected(SERVICE, "no bot token given", hint="set DISCORD_BOT_TOKEN")
        token = bot_token.strip()
        if token.lower().startswith("bot "):
            token = token[4:].strip()  # operators paste the header value too
        token = header_credential(token, "DISCORD_BOT_TOKEN", SERVICE)
        self.api_base = api_base.rstrip("/")
        self.limiter = DiscordLimiter()
        self._http = ServiceHTTP(
            SERVICE,
            self.api_base,
            headers={"Authorization": f"Bot {token}"},
            timeout=timeout,
            retry=retry,
            stats=stats,
            limiter=self.limiter,
            max_concurrency=max_concurrency,
            user_agent=USER_AGENT,
            error_message=discord_error_message,
            transport=transport,
        )

    # -- invites --------------------------------------------------------------

    def create_invite(
        self,
        channel_id: str,
        *,
        max_age: int,
        max_uses: int = 1,
        unique: bool = True,
        reason: str | None = None,
        role_ids: Iterable[str] = (),
    ) -> Invite:
        """Mint an invite (POST /channels/{id}/invites).

        `max_age` is required and always sent: Discord's default is 24 hours,
        not "never". With `unique=False` Discord may hand back an existing
        similar invite instead of a new one. A timeout raises `OutcomeUnknown`:
        list the channel's invites before trying again.

        `role_ids`: roles Discord gives whoever accepts the invite, a member
        already in the server too; sent only when not empty. It needs the
        bot's MANAGE_ROLES and roles below its highest role, else a 403
        (`AuthRejected`); a role the server lacks is `NotFound`.
        """
        channel_id = _snowflake(channel_id, "channel id")
        roles = _role_ids(role_ids)
        if isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0:
            raise InvalidRequest(SERVICE, f"invite max_age must be seconds >= 0, got {max_age!r}")
        if (
            isinstance(max_uses, bool)
            or not isinstance(max_uses, int)
            or not 0 <= max_uses <= MAX_USES_LIMIT
        ):
            raise InvalidRequest(
                SERVICE, f"invite max_uses must be 0..{MAX_USES_LIMIT}, got {max_uses!r}"
            )
        body: dict[str, Any] = {
            "max_age": max_age,
            "max_uses": max_uses,
            "unique": bool(unique),
            "temporary": False,
        }
        if roles:
            body["role_ids"] = list(roles)
        path = f"/channels/{channel_id}/invites"
        response = self._http.request(
            "POST",
            path,
            json_body=body,
            headers=_reason_header(reason),
            ok=(400, 403, 404),
        )
        if response.status_code == 400:
            raise _invite_refusal(response, path)
        if roles:
            self._check_role_answer(response, channel_id, roles)
        self._check_channel_answer(response, channel_id, "CREATE_INSTANT_INVITE")
        return _parse_invite(_expect_dict(parse_json(SERVICE, response), path), channel_id)

    def list_channel_invites(self, channel_id: str) -> list[Invite]:
        """Every live invite of a channel, with metadata (needs MANAGE_CHANNELS)."""
        channel_id = _snowflake(channel_id, "channel id")
        path = f"/channels/{channel_id}/invites"
        response = self._http.request("GET", path, ok=(403, 404))
        self._check_channel_answer(response, channel_id, "MANAGE_CHANNELS")
        body = parse_json(SERVICE, response, _slim_invite)
        if body is None:
            return []
        if not isinstance(body, list):
            raise BadResponse(
                SERVICE, f"GET {path}: expected a JSON array, got {type(body).__name__}"
            )
        return [
            _parse_invite(_expect_dict(item, path), channel_id) for item in body if item is not None
        ]

    def get_invite(self, code: str) -> Invite | None:
        """Resolve an invite; None when Discord does not know it (revoked, expired, used)."""
        code = _code(code)
        path = f"/invites/{quote(code, safe='')}"
        response = self._http.request(
            "GET", path, params={"with_counts": "true", "with_expiration": "true"}, ok=(404,)
        )
        if response.status_code == 404:
            if _error_code(response) == UNKNOWN_INVITE:
                return None
            raise self._not_found(response, f"GET {path}")
        return _parse_invite(_expect_dict(parse_json(SERVICE, response), path), None)

    def revoke_invite(self, code: str, *, reason: str | None = None) -> bool:
        """Delete an invite. True if it was deleted now, False if it was already gone.

        DELETE is retried after a lost answer, so a retry that finds the
        invite gone also answers False: either way the invite is no more.
        """
        code = _code(code)
        path = f"/invites/{quote(code, safe='')}"
        response = self._http.request("DELETE", path, headers=_reason_header(reason), ok=(403, 404))
        if response.status_code == 404:
            if _error_code(response) == UNKNOWN_INVITE:
                return False
            raise self._not_found(response, f"DELETE {path}")
        if response.status_code == 403:
            raise self._forbidden(response, f"invite {code}'s channel", "MANAGE_CHANNELS")
        body = parse_json(SERVICE, response) if response.content else None
        if body is not None:
            _parse_invite(_expect_dict(body, path), None)  # checks it is an invite
        return True

    def current_user_id(self) -> str:
        """The bot's own user id (GET /users/@me): invites it minted carry it as inviter."""
        body = _expect_dict(
            parse_json(SERVICE, self._http.request("GET", "/users/@me")), "/users/@me"
        )
        user_id = body.get("id")
        if not isinstance(user_id, str) or not user_id:
            raise BadResponse(SERVICE, "/users/@me: 'id' missing or not a string")
        return user_id

    def check_channel(self, channel_id: str) -> int:
        """Check the token, the channel and the bot's MANAGE_CHANNELS permission.

        For `syncctl doctor`: lists the channel's invites and returns how many
        are live. Raises `AuthRejected` naming the missing permission, or
        `NotFound` for an unknown channel. CREATE_INSTANT_INVITE can only be
        proven by minting, which a check must not do.
        """
        return len(self.list_channel_invites(channel_id))

    def channel_permissions(
        self, channel_id: str, user_id: str | None = None
    ) -> ChannelPermissions:
        """The bot's effective permissions in a channel, computed as Discord does.

        For `syncctl doctor`: CREATE_INSTANT_INVITE otherwise shows only by
        minting. Reads the channel (its overwrites and server), the bot's
        member (its roles) and the server's roles, then applies Discord's
        documented order (developers/topics/permissions): @everyone and the
        member's roles, ADMINISTRATOR grants all; then the channel's @everyone
        overwrite, the role overwrites together, the member's overwrite.
        Four reads at most, no write. (A server owner has every permission; a
        bot is never one, so ownership is not read.)
        """
        channel_id = _snowflake(channel_id, "channel id")
        uid = user_id or self.current_user_id()
        path = f"/channels/{channel_id}"
        response = self._http.request("GET", path, ok=(403, 404))
        self._check_channel_answer(response, channel_id, "VIEW_CHANNEL")
        channel = _object(parse_json(SERVICE, response), f"GET {path}")
        guild_id = _opt_id(channel.get("guild_id"))
        if guild_id is None:
            raise BadResponse(SERVICE, f"GET {path}: channel {channel_id} is not in a server")
        member_path = f"/guilds/{guild_id}/members/{uid}"
        response = self._http.request("GET", member_path, ok=(404,))
        if response.status_code == 404:
            self._http.stats.add(SERVICE, failures=1)
            raise NotFound(
                SERVICE,
                f"the bot is not a member of server {guild_id}: "
                + (discord_error_message(response) or "404"),
                hint="invite the bot to the server (OAuth2 URL with the bot scope)",
                status=404,
            )
        member = _object(parse_json(SERVICE, response), f"GET {member_path}")
        role_ids = {str(r) for r in member.get("roles") or [] if isinstance(r, str | int)}
        roles = self.list_guild_roles(guild_id)
        role_bits = {r.id: r.permissions for r in roles}
        base = role_bits.get(guild_id, 0)
        for role_id in role_ids:
            base |= role_bits.get(role_id, 0)
        overwrites = [o for o in channel.get("permission_overwrites") or [] if isinstance(o, dict)]
        bits = _apply_overwrites(base, overwrites, guild_id, role_ids, uid, f"GET {path}")
        return ChannelPermissions(
            channel_id=channel_id,
            guild_id=guild_id,
            bits=bits,
            guild_bits=base,
            roles=tuple(roles),
            member_role_ids=frozenset(role_ids),
        )

    def list_guild_roles(self, guild_id: str) -> list[Role]:
        """Every role of a server by position, @everyone (id = the server's id) first.

        `GET /guilds/{id}/roles` (developers/resources/guild.mdx): any member
        may read it, so it proves nothing about permissions by itself.
        """
        guild_id = _snowflake(guild_id, "server id")
        path = f"/guilds/{guild_id}/roles"
        body = parse_json(SERVICE, self._http.request("GET", path))
        if not isinstance(body, list):
            raise BadResponse(SERVICE, f"GET {path}: expected a JSON array")
        roles = [_parse_role(item, f"GET {path}") for item in body if isinstance(item, dict)]
        return sorted(roles, key=lambda r: (r.position, int(r.id)))

    # -- errors ---------------------------------------------------------------

    def _check_role_answer(
        self, response: httpx.Response, channel_id: str, role_ids: tuple[str, ...]
    ) -> None:
        """The refusals only an invite with roles meets: an unknown role, no right to grant."""
        code = _error_code(response)
        roles = ", ".join(role_ids)
        check = "run `syncctl doctor`: it names the role and the fix"
        detail = discord_error_message(response)
        if response.status_code == 404 and code == UNKNOWN_ROLE:
            self._http.stats.add(SERVICE, failures=1)
            raise NotFound(
                SERVICE,
                f"an invite for channel {channel_id} cannot grant roles {roles}: one is not a "
                f"role of its server ({detail})",
                hint="check [discord] vip_role_ids and basic_role_ids; " + check,
                status=404,
            )
        if response.status_code == 403 and code == MISSING_PERMISSIONS:
            self._http.stats.add(SERVICE, failures=1)
            raise AuthRejected(
                SERVICE,
                f"the bot may not create an invite for channel {channel_id} granting roles "
                f"{roles}: it lacks CREATE_INSTANT_INVITE there or MANAGE_ROLES, or a role is "
                f"not below its highest role ({detail})",
                hint=check,
                status=403,
            )

    def _check_channel_answer(
        self, response: httpx.Response, channel_id: str, permission: str
    ) -> None:
        where = f"{response.request.method} {response.request.url.path}"
        if response.status_code == 404:
            if _error_code(response) == UNKNOWN_CHANNEL:
                self._http.stats.add(SERVICE, failures=1)
                raise NotFound(
                    SERVICE,
                    f"{where}: channel {channel_id} is unknown (Unknown Channel, code 10003)",
                    hint="check the channel id in the config and that the bot is in its server",
                    status=404,
                )
            raise self._not_found(response, where)
        if response.status_code == 403:
            raise self._forbidden(response, f"channel {channel_id}", permission)

    def _forbidden(self, response: httpx.Response, what: str, permission: str) -> AuthRejected:
        self._http.stats.add(SERVICE, failures=1)
        code = _error_code(response)
        detail = discord_error_message(response) or "403"
        if code == MISSING_ACCESS:
            message = f"the bot cannot see {what} (VIEW_CHANNEL missing): {detail}"
            hint = "add the bot to the server and let it view the channel"
        else:
            message = f"the bot lacks the {permission} permission on {what}: {detail}"
            hint = f"grant the bot's role {permission} on that channel"
        return AuthRejected(SERVICE, message, hint=hint, status=403)

    def _not_found(self, response: httpx.Response, where: str) -> NotFound:
        self._http.stats.add(SERVICE, failures=1)
        detail = discord_error_message(response)
        return NotFound(
            SERVICE,
            f"{where} answered 404" + (f": {detail}" if detail else ""),
            hint="check discord.api_base (it ends in /api/v10)",
            status=404,
        )


# -- parsing ------------------------------------------------------------------


def _snowflake(value: str, what: str) -> str:
    text = str(value).strip()
    if not re.fullmatch(r"\d{1,20}", text):
        raise InvalidRequest(SERVICE, f"{what} must be a Discord snowflake (digits), got {value!r}")
    return text


def _role_ids(values: Iterable[str]) -> tuple[str, ...]:
    """Role snowflakes in order, each once (Discord wants them unique), at most 250."""
    if isinstance(values, str):
        raise InvalidRequest(SERVICE, "role_ids must be a list of role ids, not one string")
    roles = tuple(dict.fromkeys(_snowflake(v, "role id") for v in values))
    if len(roles) > MAX_INVITE_ROLES:
        raise InvalidRequest(
            SERVICE, f"an invite may grant at most {MAX_INVITE_ROLES} roles, got {len(roles)}"
        )
    return roles


def _parse_role(body: Mapping[str, Any], what: str) -> Role:
    role_id = _opt_id(body.get("id"))
    if role_id is None:
        raise BadResponse(SERVICE, f"{what}: a role without an id")
    position = body.get("position")
    if isinstance(position, bool) or not isinstance(position, int):
        raise BadResponse(SERVICE, f"{what}: role {role_id} has no integer position")
    name = body.get("name")
    return Role(
        id=role_id,
        name=name if isinstance(name, str) else role_id,
        position=position,
        permissions=_bits(body.get("permissions", "0"), what),
        managed=body.get("managed") is True,
    )


def _code(value: str) -> str:
    code = invite_code_from_url(value) if isinstance(value, str) else None
    if code is None:
        raise InvalidRequest(SERVICE, f"not a Discord invite code or link: {value!r:.80}")
    return code


def _reason_header(reason: str | None) -> dict[str, str] | None:
    """`X-Audit-Log-Reason`, URL-encoded as Discord requires, cut to 512 characters."""
    if reason is None:
        return None
    text = " ".join(reason.split())[:AUDIT_REASON_MAX]
    if not text:
        return None
    return {"X-Audit-Log-Reason": quote(text, safe="")}


def _expect_dict(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadResponse(SERVICE, f"{path}: expected an invite object, got {type(value).__name__}")
    return value


def _opt_int(body: Mapping[str, Any], key: str, code: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadResponse(SERVICE, f"invite {code}: field {key} is not an integer ({value!r:.40})")
    return value


def _opt_time(body: Mapping[str, Any], key: str, code: str) -> datetime | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadResponse(SERVICE, f"invite {code}: field {key} is not a timestamp ({value!r:.40})")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadResponse(
            SERVICE, f"invite {code}: field {key} is not an ISO 8601 timestamp ({value!r:.40})"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _opt_id(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadResponse(SERVICE, f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def _bits(value: Any, what: str) -> int:
    """A permission field: Discord sends bit sets as decimal strings."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise BadResponse(SERVICE, f"{what}: a permission set is not a number ({value!r:.40})")


def _apply_overwrites(
    base: int,
    overwrites: list[dict[str, Any]],
    guild_id: str,
    role_ids: set[str],
    user_id: str,
    what: str,
) -> int:
    if base & PERMISSIONS["ADMINISTRATOR"]:
        return base
    by_id = {str(o.get("id")): o for o in overwrites}
    bits = base
    everyone = by_id.get(guild_id)
    if everyone is not None:
        bits &= ~_bits(everyone.get("deny"), what)
        bits |= _bits(everyone.get("allow"), what)
    allow = deny = 0
    for role_id in role_ids:
        overwrite = by_id.get(role_id)
        if overwrite is not None and overwrite.get("type") in (0, "0", "role"):
            allow |= _bits(overwrite.get("allow"), what)
            deny |= _bits(overwrite.get("deny"), what)
    bits = (bits & ~deny) | allow
    member = by_id.get(user_id)
    if member is not None and member.get("type") in (1, "1", "member"):
        bits &= ~_bits(member.get("deny"), what)
        bits |= _bits(member.get("allow"), what)
    return bits


def _slim_invite(obj: dict[str, Any]) -> dict[str, Any]:
    """A json object_hook for invite lists: an invite's guild and inviter keep only their id.

    A channel's list holds every live invite, each with a full guild and user
    object; `_parse_invite` reads only their ids.
    """
    if "code" in obj:
        for key in ("guild", "inviter"):
            value = obj.get(key)
            if isinstance(value, dict):
                obj[key] = {"id": value["id"]} if "id" in value else {}
    return obj


def _parse_invite(body: Mapping[str, Any], channel_id: str | None) -> Invite:
    """An `Invite` from an invite object, with or without metadata.

    `channel_id` is the channel the request was about (list, create); the
    answer's own `channel.id` must agree when present.
    """
    code = body.get("code")
    if not isinstance(code, str) or not code:
        raise BadResponse(SERVICE, "invite object without a code")
    channel = body.get("channel")
    answered = _opt_id(channel.get("id")) if isinstance(channel, dict) else None
    answered = answered or _opt_id(body.get("channel_id"))
    if answered is None and channel_id is None:
        raise BadResponse(SERVICE, f"invite {code}: field channel.id is missing")
    temporary = body.get("temporary")
    if temporary is not None and not isinstance(temporary, bool):
        raise BadResponse(SERVICE, f"invite {code}: field temporary is not a boolean")
    inviter = body.get("inviter")
    guild = body.get("guild")
    max_age = _opt_int(body, "max_age", code)
    created_at = _opt_time(body, "created_at", code)
    if "expires_at" in body:
        expires_at = _opt_time(body, "expires_at", code)
    elif max_age and created_at is not None:  # older answers without expires_at
        expires_at = created_at + timedelta(seconds=max_age)
    else:
        expires_at = None
    return Invite(
        code=code,
        channel_id=answered or str(channel_id),
        max_age=max_age,
        max_uses=_opt_int(body, "max_uses", code),
        uses=_opt_int(body, "uses", code),
        temporary=temporary,
        created_at=created_at,
        expires_at=expires_at,
        inviter_id=_opt_id(inviter.get("id")) if isinstance(inviter, dict) else None,
        guild_id=_opt_id(body.get("guild_id"))
        or (_opt_id(guild.get("id")) if isinstance(guild, dict) else None),
        role_ids=_invite_roles(body),
    )


def _invite_roles(body: Mapping[str, Any]) -> tuple[str, ...]:
    """The roles an invite grants: `roles` (partial role objects) or gateway-style `role_ids`."""
    roles = body.get("roles")
    if isinstance(roles, list):
        found = (_opt_id(r.get("id")) for r in roles if isinstance(r, dict))
        return tuple(r for r in found if r is not None)
    raw = body.get("role_ids")
    if isinstance(raw, list):
        return tuple(r for r in (_opt_id(v) for v in raw) if r is not None)
    return ()
