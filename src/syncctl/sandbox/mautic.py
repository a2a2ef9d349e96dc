"""A stateful emulator of the Mautic 5.1 REST API (contacts, emails, stats, fields).

Why this exists: syncctl's reconciler must cope with Mautic's real behaviour,
not an idealised one, so every pitfall in api-notes.md section 2 is reproduced
here on purpose:

- `where` values pass `FILTER_SANITIZE_SPECIAL_CHARS` before comparison, so an
  `eq` on `o'neil@x.io` compares against `o&#39;neil@x.io` and matches nothing.
- `search=email:x` is a prefix LIKE (`%` and `_` are wildcards, `+` strict).
- `orderBy` must be a snake_case DB column; `dateModified` is a raw SQL error
  (500). `where[].col` accepts ORM names (`dateModified`).
- `total` is a string; an empty page is `"contacts": []`, not `{}`.
- POST /contacts/new merges into the contact holding the same email (200).
- POST/PATCH silently drop numeric 0 values ("0", 0, 0.0 ...), skip blank
  values unless `overwriteWithBlank`, ignore unknown aliases, and a PATCH
  carrying another contact's email merges the two.
- A boolean `false` is cleaned to int 0 and PHP 8's `null == 0` makes it
  "blank", so it is skipped without `overwriteWithBlank` (knob
  `false_is_blank`; api-notes marks this UNCONFIRMED).
- In 5.1 a new contact has `dateModified: null` until its first edit (Mautic
  populates it on create only since 6.0, PR mautic/mautic#14433), so a
  `dateModified gte` poll alone misses never-edited contacts (knob
  `modified_on_create`).
- The send API answers 200 even when it did not send (`success: false` or
  `failed`), never de-duplicates, and ignores Do-Not-Contact.
- Contacts carry `tags` (`[{"id", "tag", "description"}]`, by name) and
  `doNotContact` (`[{"id", "dateAdded", "reason", "comments", "channel",
  "channelId"}]`) in single and list GETs; `minimal=1` on the list drops them
  (and the other `leadDetails`-only keys). Tags change through `tags` in a
  POST/PATCH/PUT body (`["a", "-b"]`), matched case-sensitively; DNC through
  `POST /contacts/{id}/dnc/{channel}/add|remove` or `doNotContact` in a body.
  A tag change moves `dateModified`; a DNC-only change does not (knob
  `dnc_moves_date_modified`), so a `dateModified` poll misses it: the
  `lead_donotcontact` stats table lists the entries by id instead. A merge
  keeps the loser's tags but drops its DNC entries (cascade delete).
- The stats API answers errors as `{"errors": [...]}` inside a 200.
- Basic auth, the "API disabled" 403, and an optional hourly rate limiter with
  X-RateLimit-* headers and the noxlogic 429 body.

It holds 100k contacts comfortably: contacts are indexed by id and lower-cased
email, and sorted indexes over id, dateAdded and dateModified (plus one over
dateAdded for never-modified contacts) answer the reconciler's range queries
by bisection instead of scanning.
"""

from __future__ import annotations

import base64
import bisect
import csv
import functools
import hmac
import html
import math
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, overload
from urllib.parse import parse_qsl

from syncctl.sandbox.server import Emulator, Request, Response, route
from syncctl.sandbox.webhooks import (
    MAUTIC_CONTACT_NEW,
    MAUTIC_CONTACT_UPDATE,
    WebhookSender,
    mautic_sender,
)

SQL_FORMAT = "%Y-%m-%d %H:%M:%S"

NOT_FOUND_MESSAGE = "Item was not found."
AUTH_DENIED_MESSAGE = "API authorization denied."
API_DISABLED_MESSAGE = (
    "API disabled. You need to enable the API in the API settings of Mautic's Configuration."
)

#: ORM property names that `where[].col` converts to their DB column.
_ORM_COLUMNS = {
    "id": "id",
    "dateAdded": "date_added",
    "dateModified": "date_modified",
    "dateIdentified": "date_identified",
    "lastActive": "last_active",
    "createdBy": "created_by",
    "modifiedBy": "modified_by",
    "owner": "owner_id",
    "isPublished": "is_published",
    "points": "points",
}
#: Contact columns that are not custom/core fields.
_META_COLUMNS = (
    "id",
    "date_added",
    "date_modified",
    "date_identified",
    "last_active",
    "created_by",
    "modified_by",
    "owner_id",
    "is_published",
    "points",
    "color",
)
#: Columns a bare search word is matched against (`%word%`).
_SEARCH_COLUMNS = ("firstname", "lastname", "email", "company", "city", "state", "country")

_STAT_COLUMNS = (
    "id",
    "email_id",
    "lead_id",
    "list_id",
    "ip_id",
    "copy_id",
    "email_address",
    "date_sent",
    "is_read",
    "is_failed",
    "viewed_in_browser",
    "date_read",
    "tracking_hash",
    "retry_count",
    "source",
    "source_id",
    "open_count",
    "last_opened",
)
#: Columns of `lead_donotcontact`, the table behind a contact's `doNotContact`.
_DNC_COLUMNS = ("id", "lead_id", "date_added", "reason", "channel", "channel_id", "comments")
_STATS_TABLES = (
    "asset_downloads",
    "campaign_lead_event_log",
    "email_stats",
    "email_stats_devices",
    "form_submissions",
    "lead_donotcontact",
    "lead_points_change_log",
    "page_hits",
)
#: The columns each stats table the emulator serves can be filtered and ordered by.
_STATS_COLUMNS: dict[str, tuple[str, ...]] = {
    "email_stats": _STAT_COLUMNS,
    "lead_donotcontact": _DNC_COLUMNS,
}
#: Date columns of stats rows (DBAL gives them as 'Y-m-d H:i:s' strings).
_STAT_DATE_COLUMNS = frozenset({"date_sent", "date_read", "last_opened", "date_added"})
#: Contact properties only the `leadDetails` serializer group has: `minimal=1`
#: on the list swaps it for `leadList` (FetchCommonApiController), so they go.
_DETAILS_ONLY = (
    "lastActive",
    "owner",
    "ipAddresses",
    "tags",
    "utmtags",
    "stage",
    "dateIdentified",
    "preferredProfileImage",
    "doNotContact",
    "frequencyRules",
)

#: DoNotContact reasons (LeadBundle/Entity/DoNotContact.php).
DNC_CONTACTABLE = 0
DNC_UNSUBSCRIBED = 1
DNC_BOUNCED = 2
DNC_MANUAL = 3

_BOOL_TRUE = frozenset({"1", "true", "on", "yes"})
_NUMERIC = re.compile(r"^[ \t\n\r\v\f]*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?[ \t\n\r\v\f]*$")
_EMAIL_ALLOWED = re.compile(r"[^A-Za-z0-9!#$%&'*+\-=?^_`{|}~@.\[\]]")
_EMAIL_VALID = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_MAX_ID = sys.maxsize


# -- PHP / MySQL semantics -----------------------------------------------------


def php_is_numeric(value: Any) -> bool:
    """PHP's is_numeric: ints, floats and numeric strings, never booleans."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    return isinstance(value, str) and _NUMERIC.match(value) is not None


def php_int(value: Any) -> int:
    """PHP's (int) cast of a numeric value (truncates toward zero)."""
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        return 0
    return int(number)


def sanitize_special_chars(value: str) -> str:
    """FILTER_SANITIZE_SPECIAL_CHARS, as InputHelper::clean applies it to `where` values."""
    out = []
    for char in value:
        if char in "'\"<>&" or ord(char) < 32:
            out.append(f"&#{ord(char)};")
        else:
            out.append(char)
    return "".join(out)


def _clean_deep(value: Any) -> Any:
    if isinstance(value, str):
        return sanitize_special_chars(value)
    if isinstance(value, dict):
        return {k: _clean_deep(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_deep(v) for v in value]
    return value


def sanitize_email(value: str) -> str:
    """InputHelper::email: FILTER_SANITIZE_EMAIL, no '..', trimmed, max 254 chars."""
    value = _EMAIL_ALLOWED.sub("", value[:254])
    while ".." in value:
        value = value.replace("..", ".")
    return value.strip()


def php_filter_bool(value: Any) -> bool:
    """filter_var(FILTER_VALIDATE_BOOLEAN) without NULL_ON_FAILURE."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value == 1
    return str(value).strip().lower() in _BOOL_TRUE


def _php_empty(value: Any) -> bool:
    """PHP's empty()."""
    return value in (None, False, 0, 0.0, "", "0") or value == [] or value == {}


@functools.lru_cache(maxsize=256)
def _like_regex(pattern: str) -> re.Pattern[str]:
    """SQL LIKE (backslash escape) as a case-insensitive regex (MySQL *_ci collation)."""
    out = []
    escaped = False
    for char in pattern:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        else:
            out.append(re.escape(char))
    if escaped:
        out.append(re.escape("\\"))
    return re.compile("^" + "".join(out) + "$", re.IGNORECASE | re.DOTALL)


def _parse_sql_datetime(value: str) -> datetime | None:
    text = value.strip().replace("T", " ")
    for suffix in ("+00:00", "Z"):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    for fmt in (SQL_FORMAT, "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def _mysql_number(value: str) -> float:
    """MySQL casts a string compared with a number by its numeric prefix (else 0)."""
    match = re.match(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", value)
    return float(match.group(0)) if match else 0.0


def _iso(value: datetime | None) -> str | None:
    """JMS serializer's DateTime format in Mautic ('c', UTC)."""
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


@overload
def _sql(value: datetime) -> str: ...
@overload
def _sql(value: None) -> None: ...
def _sql(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime(SQL_FORMAT)


def php_nested(query: Iterable[tuple[str, str]], prefix: str) -> Any:
    """PHP's parsing of `prefix[a][b][]=v` query keys into arrays (lists for `[]`)."""
    root: dict[str, Any] = {}
    for key, value in query:
        if not key.startswith(prefix + "["):
            continue
        parts = re.findall(r"\[([^\]]*)\]", key[len(prefix) :])
        node = root
        for i, part in enumerate(parts):
            if part == "":
                part = str(sum(1 for k in node if k.isdigit()))
            if i == len(parts) - 1:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
    return root


def _error(status: int, message: str, details: Any = None) -> Response:
    body = {"errors": [{"code": status, "message": message, "details": details or []}]}
    return Response(status, body)


def _sql_error(column: str, clause: str) -> Response:
    """What a raw DBAL exception looks like through Mautic's API exception listener."""
    message = (
        "An exception occurred while executing a query: SQLSTATE[42S22]: Column not found: "
        f"1054 Unknown column '{column}' in '{clause}'"
    )
    return Response(500, {"errors": [{"message": message, "code": 500, "type": None}]})


class _QueryError(Exception):
    """A query the database would reject; carries the API answer."""

    def __init__(self, response: Response) -> None:
        super().__init__("query error")
        self.response = response


# -- data ------------------------------------------------------------------------


@dataclass
class FieldDef:
    """A contact field (core or custom), as in Mautic's lead_fields table."""

    id: int
    alias: str
    label: str
    type: str
    group: str = "core"
    order: int = 0
    published: bool = True
    fixed: bool = False
    unique: bool = False
    default: Any = None


_CORE_FIELDS: tuple[tuple[str, str, str, str], ...] = (
    ("title", "Title", "lookup", "core"),
    ("firstname", "First Name", "text", "core"),
    ("lastname", "Last Name", "text", "core"),
    ("company", "Primary company", "text", "core"),
    ("position", "Position", "text", "core"),
    ("email", "Email", "email", "core"),
    ("mobile", "Mobile", "tel", "core"),
    ("phone", "Phone", "tel", "core"),
    ("fax", "Fax", "tel", "core"),
    ("address1", "Address Line 1", "text", "core"),
    ("address2", "Address Line 2", "text", "core"),
    ("city", "City", "text", "core"),
    ("state", "State", "region", "core"),
    ("zipcode", "Zip Code", "text", "core"),
    ("country", "Country", "country", "core"),
    ("preferred_locale", "Preferred Locale", "locale", "core"),
    ("timezone", "Preferred Timezone", "timezone", "core"),
    ("website", "Website", "url", "core"),
    ("facebook", "Facebook", "text", "social"),
    ("instagram", "Instagram", "text", "social"),
    ("linkedin", "LinkedIn", "text", "social"),
    ("twitter", "Twitter", "text", "social"),
)

#: The custom fields syncctl uses (design/interface.md), pre-created by default.
DEFAULT_CUSTOM_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("vip_status", "VIP status", "boolean"),
    ("promo_code", "Promo code", "text"),
    ("discord_invite_link_vip", "Discord invite link (VIP)", "url"),
    ("discord_invite_link_basic", "Discord invite link (Basic)", "url"),
    ("opt_in_confirmed", "Opt-in confirmed", "boolean"),
)


@dataclass
class _Contact:
    id: int
    date_added: datetime
    date_modified: datetime | None
    values: dict[str, Any]
    created_by_user: str
    modified_by_user: str | None = None
    date_identified: datetime | None = None
    tags: list[str] = field(default_factory=list)  # names, as lead_tags stores them
    dnc: list[_Dnc] = field(default_factory=list)  # lead_donotcontact rows, by id

    @property
    def email_key(self) -> str | None:
        email = self.values.get("email")
        return email.lower() if isinstance(email, str) and email else None


@dataclass
class _Dnc:
    """A lead_donotcontact row: the contact may not be reached on `channel`."""

    id: int
    lead_id: int
    channel: str
    reason: int
    comments: str
    channel_id: int | None
    date_added: datetime

    def json(self) -> dict[str, Any]:
        """The `doNotContactList` serializer group, as in a contact's `doNotContact`."""
        return {
            "id": self.id,
            "dateAdded": _iso(self.date_added),
            "reason": self.reason,
            "comments": self.comments,
            "channel": self.channel,
            "channelId": self.channel_id,
        }

    def row(self) -> dict[str, Any]:
        """The row as the stats API (DBAL) returns it."""
        return {
            "id": self.id,
            "lead_id": self.lead_id,
            "date_added": _sql(self.date_added),
            "reason": self.reason,
            "channel": self.channel,
            "channel_id": self.channel_id,
            "comments": self.comments,
        }


@dataclass
class _Email:
    id: int
    name: str
    subject: str
    published: bool
    email_type: str
    date_added: datetime


@dataclass
class _Stat:
    id: int
    email_id: int
    lead_id: int | None  # None once the contact is deleted (FK ON DELETE SET NULL)
    email_address: str | None
    date_sent: datetime
    is_failed: bool
    tokens: dict[str, str]
    tracking_hash: str

    def row(self) -> dict[str, Any]:
        """The row as DBAL returns it (PHP >= 8.1: native ints, dates as strings)."""
        return {
            "id": self.id,
            "email_id": self.email_id,
            "lead_id": self.lead_id,
            "list_id": None,
            "ip_id": None,
            "copy_id": None,
            "email_address": self.email_address,
            "date_sent": _sql(self.date_sent),
            "is_read": 0,
            "is_failed": int(self.is_failed),
            "viewed_in_browser": 0,
            "date_read": None,
            "tracking_hash": self.tracking_hash,
            "retry_count": 0,
            "source": "api",
            "source_id": 0,
            "open_count": 0,
            "last_opened": None,
        }


class _SortedIndex:
    """(key, id) pairs kept sorted; range lookups by bisection."""

    def __init__(self) -> None:
        self.items: list[tuple[Any, int]] = []

    def add(self, key: Any, cid: int) -> None:
        if key is None:
            return
        item = (key, cid)
        if not self.items or self.items[-1] < item:
            self.items.append(item)  # the common case: newest timestamp / id
        else:
            bisect.insort(self.items, item)

    def remove(self, key: Any, cid: int) -> None:
        if key is None:
            return
        i = bisect.bisect_left(self.items, (key, cid))
        if i < len(self.items) and self.items[i] == (key, cid):
            del self.items[i]

    def span(self, expr: str, key: Any) -> tuple[int, int]:
        """[lo, hi) of the items whose key satisfies `expr key`."""
        lo, hi = 0, len(self.items)
        first = bisect.bisect_left(self.items, (key, -1))
        after = bisect.bisect_left(self.items, (key, _MAX_ID))
        if expr == "eq":
            return first, after
        if expr == "gt":
            return after, hi
        if expr == "gte":
            return first, hi
        if expr == "lt":
            return lo, first
        if expr == "lte":
            return lo, after
        raise ValueError(expr)


@dataclass
class _Clause:
    col: str
    expr: str
    val: Any  # str, list[str], or list[_Clause] for andX/orX


@dataclass
class _Plan:
    """Where a query's rows come from: items[lo:hi] of a sorted index."""

    consumed: set[int]  # the where clauses the range answers by itself
    col: str  # the column the items are sorted by
    items: list[tuple[Any, int]]
    lo: int
    hi: int

    @property
    def size(self) -> int:
        return self.hi - self.lo


# -- the emulator -----------------------------------------------------------------


class MauticEmulator(Emulator):
    """Mautic 5.1 under `/api`, with Basic auth. See the module docstring for the pitfalls.

    Knobs (plain attributes, change them any time):
    - `api_enabled`: False answers every call with Mautic's "API disabled" 403.
    - `rate_limit_per_hour` / `rate_limit_period`: N calls per window (seconds;
      3600 in Mautic) on /api, with X-RateLimit-* headers and 429 when exhausted.
    - `modified_on_create`: False (5.1) leaves `dateModified` null on create.
    - `false_is_blank`: True makes a boolean `false` need `overwriteWithBlank`.
    - `send_failure`: a message; while set, sends fail (`{"failed": [...]}`,
      a stats row with is_failed=1).
    - `clock`: callable returning an aware UTC datetime (timestamps are stored
      to the second, as MySQL DATETIME does).
    - `default_page_limit`: `limit` when none is given (Mautic's default_pagelimit).
    - `dnc_moves_date_modified`: False (the default, mautic@2427149 and the
      releases after 5.1.1: PR mautic/mautic#13994, `Lead::
      shouldSkipSettingModifiedProperties`) leaves `dateModified` alone when
      only a contact's Do-Not-Contact entries change; True is 5.1.0/5.1.1,
      where the DNC change counts as a change and moves it. Tag changes move
      it in every version.
    """

    name = "mautic"
    prefix = "/api"

    def __init__(
        self,
        *,
        username: str,
        password: str,
        latency: float = 0.0,
        rate_limit_per_hour: int = 0,
        rate_limit_period: float = 3600.0,
        api_enabled: bool = True,
        modified_on_create: bool = False,
        false_is_blank: bool = True,
        custom_fields: bool = True,
        clock: Callable[[], datetime] | None = None,
        default_page_limit: int = 30,
        batch_max_limit: int = 200,
        dnc_moves_date_modified: bool = False,
    ) -> None:
        super().__init__(latency=latency)
        self.batch_max_limit = batch_max_limit
        self._username = username
        self._password = password
        self.api_enabled = api_enabled
        self.rate_limit_per_hour = rate_limit_per_hour
        self.rate_limit_period = rate_limit_period
        self.modified_on_create = modified_on_create
        self.false_is_blank = false_is_blank
        self.send_failure: str | None = None
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.default_page_limit = default_page_limit
        self.dnc_moves_date_modified = dnc_moves_date_modified

        self._fields: dict[str, FieldDef] = {}
        self._published_fields: list[FieldDef] = []
        for alias, label, type_, group in _CORE_FIELDS:
            self._define_field(alias, label, type_, group=group, fixed=True)
        self._fields["email"].unique = True
        if custom_fields:
            for alias, label, type_ in DEFAULT_CUSTOM_FIELDS:
                self._define_field(alias, label, type_)

        self._contacts: dict[int, _Contact] = {}
        self._next_contact_id = 1
        self._by_email: dict[str, set[int]] = {}
        self._email_sorted: list[tuple[str, int]] | None = None  # rebuilt lazily for LIKE
        self._index: dict[str, _SortedIndex] = {
            "id": _SortedIndex(),
            "date_added": _SortedIndex(),
            "date_modified": _SortedIndex(),
        }
        self._never_modified = _SortedIndex()  # date_added of contacts with dateModified null

        self._emails: dict[int, _Email] = {}
        self._stats: list[_Stat] = []
        self._stats_by_email: dict[int, list[_Stat]] = {}
        self._stats_by_lead: dict[int, list[_Stat]] = {}
        self._next_stat_id = 1

        self._tag_ids: dict[str, int] = {}  # lead_tags: exact name -> id
        self._dnc_rows: dict[int, _Dnc] = {}  # lead_donotcontact by id (ascending)
        self._next_dnc_id = 1

        self._window_started = 0.0
        self._window_count = 0

        #: The webhook contacts' saves are posted to (`send_webhooks`); None: none.
        self.webhooks: WebhookSender | None = None
        self._saved: dict[int, str] = {}  # contact id -> event type, this request
        self._identified: set[int] = set()  # contacts that got an email this request
        self._webhook_seq = 0

    def __repr__(self) -> str:
        return f"MauticEmulator(contacts={len(self._contacts)}, emails={len(self._emails)})"

    # -- hooks ----------------------------------------------------------------

    def authenticate(self, request: Request) -> Response | None:
        if not self.api_enabled:
            return _error(403, API_DISABLED_MESSAGE)
        header = request.headers.get("authorization", "")
        if header[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            user, _, password = decoded.partition(":")
            if hmac.compare_digest(user.encode(), self._username.encode()) and hmac.compare_digest(
                password.encode(), self._password.encode()
            ):
                return None
        return _error(401, AUTH_DENIED_MESSAGE)

    def throttle(self, request: Request) -> Response | None:
        if self.rate_limit_per_hour <= 0:
            return None
        now = time.time()
        if not self._window_started or now >= self._window_started + self.rate_limit_period:
            self._window_started = now
            self._window_count = 0
        self._window_count += 1
        if self._window_count <= self.rate_limit_per_hour:
            return None
        message = (
            '{ "errors": [ { "code": 429, "message": "You exceeded the rate limit of '
            f'{self.rate_limit_per_hour} API calls per hour.", "details": [] }} ]}}'
        )
        response = Response(429, message.encode(), content_type="text/html; charset=UTF-8")
        self._rate_headers(response)
        return response

    def decorate(self, request: Request, response: Response) -> None:
        if self.rate_limit_per_hour > 0 and self._window_started:
            self._rate_headers(response)
        self._flush_webhooks()  # a request's saves, as the contacts are now

    def _rate_headers(self, response: Response) -> None:
        remaining = max(0, self.rate_limit_per_hour - self._window_count)
        response.headers["X-RateLimit-Limit"] = str(self.rate_limit_per_hour)
        response.headers["X-RateLimit-Remaining"] = str(remaining)
        response.headers["X-RateLimit-Reset"] = str(
            math.ceil(self._window_started + self.rate_limit_period)
        )

    def not_found(self, request: Request) -> Response:
        return _error(404, f"Requested URL not found: {request.path}")

    def error_response(self, status: int, message: str) -> Response:
        return _error(status, message)

    # -- test helpers: seeding -------------------------------------------------

    def add_field(
        self,
        alias: str,
        type_: str = "text",
        *,
        label: str | None = None,
        published: bool = True,
        group: str = "core",
    ) -> None:
        """Create a custom contact field (as an admin would in the UI)."""
        with self.lock:
            self._define_field(alias, label or alias, type_, group=group, published=published)

    def add_contact(
        self,
        email: str | None,
        *,
        firstname: str | None = None,
        lastname: str | None = None,
        tags: Iterable[str] = (),
        dnc: int | None = None,
        **fields: Any,
    ) -> int:
        """Create a contact as the UI or a form would (no duplicate check); returns its id.

        Like real 5.1, its dateModified stays null unless `modified_on_create`.
        `tags` are its tag names; `dnc` a reason puts it on the email DNC list
        (a form can do both at once).
        """
        values = {"email": email, "firstname": firstname, "lastname": lastname, **fields}
        with self.lock:
            for alias in values:
                self._field(alias)
            contact = self._new_contact()
            self._assign(contact, values)
            self._store_new(contact)
            self._seed_extras(contact, tags, dnc)
            self._flush_webhooks()
            return contact.id

    def set_fields(self, contact_id: int, **fields: Any) -> None:
        """Edit a contact as an operator in the UI: None clears; dateModified moves on change."""
        with self.lock:
            contact = self._contacts[contact_id]
            for alias in fields:
                self._field(alias)
            if self._assign(contact, fields):
                self._touch(contact)
            self._flush_webhooks()

    def delete_contact(self, contact_id: int) -> None:
        with self.lock:
            self._remove(self._contacts[contact_id])

    def add_tag(self, contact_id: int, *tags: str) -> bool:
        """Tag a contact as an operator would in Mautic's UI (or a campaign action).

        Tags are matched by exact name, as `LeadModel::modifyTags` does; a
        change moves dateModified. True when the contact's tags changed.
        """
        with self.lock:
            contact = self._contacts[contact_id]
            changed = self._modify_tags(contact, list(tags))
            if changed:
                self._touch(contact)
            self._flush_webhooks()
            return changed

    def remove_tag(self, contact_id: int, *tags: str) -> bool:
        """Untag a contact as an operator would; True when its tags changed."""
        return self.add_tag(contact_id, *(f"-{tag}" for tag in tags))

    def add_dnc(
        self,
        contact_id: int,
        reason: int = DNC_MANUAL,
        *,
        channel: str = "email",
        comments: str = "",
        channel_id: int | None = None,
    ) -> bool:
        """Put a contact on a channel's Do-Not-Contact list, as Mautic itself does.

        The same `DoNotContactModel::addDncForContact` as an operator's click,
        an unsubscribe link (reason 1, DNC_UNSUBSCRIBED) or a bounce (2,
        DNC_BOUNCED) runs: an entry with another reason is updated unless the
        contact unsubscribed themselves. dateModified moves only with the
        knob `dnc_moves_date_modified`. True when the entries changed.
        """
        with self.lock:
            contact = self._contacts[contact_id]
            changed = self._add_dnc(contact, channel, reason, comments, channel_id)
            if changed and self.dnc_moves_date_modified:
                self._touch(contact)
            self._flush_webhooks()
            return changed

    def remove_dnc(self, contact_id: int, *, channel: str = "email") -> bool:
        """Take a contact off a channel's DNC list (an operator's click); True when it was on."""
        with self.lock:
            contact = self._contacts[contact_id]
            found = self._remove_dnc(contact, channel)
            if found and self.dnc_moves_date_modified:
                self._touch(contact)
            self._flush_webhooks()
            return found

    def add_email(
        self,
        email_id: int,
        name: str,
        *,
        published: bool = True,
        subject: str | None = None,
        email_type: str = "template",
    ) -> None:
        """Create (or replace) a template email with a chosen id."""
        with self.lock:
            self._emails[email_id] = _Email(
                email_id, name, subject or name, published, email_type, self._now()
            )

    def send_webhooks(self, url: str, secret: str, **options: Any) -> WebhookSender:
        """Post each contact save from now on to `url`, as a Mautic webhook does.

        `mautic.lead_post_save_new` when the save identified the contact (it
        got its email), else `mautic.lead_post_save_update`; only saves
        that changed something, never for anonymous contacts; the payload
        holds the contact as saved, with `Webhook-Signature`. `options` go to
        `webhooks.mautic_sender` (`origin`, `events`, `batch`, `retry_delays`,
        `timeout`, `duplicate`, `reorder`, `seed`). Replaces an earlier one.
        """
        sender = mautic_sender(url, secret, **options)
        with self.lock:
            previous, self.webhooks = self.webhooks, sender
            self._saved.clear()
            self._identified.clear()
        if previous is not None:
            previous.close()
        return sender

    def stop_webhooks(self) -> None:
        with self.lock:
            previous, self.webhooks = self.webhooks, None
            self._saved.clear()
            self._identified.clear()
        if previous is not None:
            previous.close()

    def _flush_webhooks(self) -> None:
        """Hand the saves noted since the last flush to the sender (under the lock)."""
        if not self._saved:
            self._identified.clear()
            return
        saved, self._saved = self._saved, {}
        self._identified.clear()
        sender = self.webhooks
        if sender is None:
            return
        stamp = _iso(self._now())
        for contact_id, event_type in saved.items():
            contact = self._contacts.get(contact_id)
            if contact is None or not sender.wants(event_type):
                continue  # merged away or deleted in the same request
            self._webhook_seq += 1
            payload = {"contact": self._contact_json(contact), "timestamp": stamp}
            sender.send(f"mautic-{self._webhook_seq}", event_type, payload)

    def set_email_published(self, email_id: int, published: bool) -> None:
        with self.lock:
            self._emails[email_id].published = published

    def record_send(
        self,
        email_id: int,
        contact_id: int,
        tokens: dict[str, str] | None = None,
        *,
        failed: bool = False,
    ) -> int:
        """Seed an email_stats row (a send that happened before the test); returns its id."""
        with self.lock:
            contact = self._contacts[contact_id]
            return self._add_stat(email_id, contact, tokens or {}, failed).id

    def add_contacts(self, rows: Iterable[dict[str, Any]]) -> list[int]:
        """Bulk seeding (benchmarks, 100k contacts): `add_contact` rows -> ids.

        A row holds `email` and field values, plus optionally `date_added` and
        `date_modified` (aware datetimes, stored to the second), so a campaign
        that grew over weeks can be seeded; without them a row gets what
        `add_contact` gives (added now, never modified). `tags` (names) and
        `dnc` (an email DNC reason) seed those as `add_contact` does.
        """
        ids: list[int] = []
        with self.lock:
            for row in rows:
                values = dict(row)
                added = values.pop("date_added", None)
                modified = values.pop("date_modified", None)
                tags = values.pop("tags", ())
                dnc = values.pop("dnc", None)
                for alias in values:
                    self._field(alias)
                contact = self._new_contact()
                if added is not None:
                    contact.date_added = added.astimezone(UTC).replace(microsecond=0)
                self._assign(contact, values)
                self._store_new(contact)
                if modified is not None:
                    self._index["date_modified"].remove(contact.date_modified, contact.id)
                    if contact.date_modified is None:
                        self._never_modified.remove(contact.date_added, contact.id)
                    contact.date_modified = modified.astimezone(UTC).replace(microsecond=0)
                    contact.modified_by_user = self._username
                    self._index["date_modified"].add(contact.date_modified, contact.id)
                self._seed_extras(contact, tags, dnc)
                ids.append(contact.id)
            self._flush_webhooks()
        return ids

    def record_sends(self, rows: Iterable[tuple[int, int, dict[str, str], datetime]]) -> int:
        """Bulk seeding of past sends: (email id, contact id, tokens, date sent) rows.

        Give them in date order, as Mautic's stat ids grow with time. Returns
        how many were recorded.
        """
        count = 0
        with self.lock:
            for email_id, contact_id, tokens, date_sent in rows:
                stat = self._add_stat(email_id, self._contacts[contact_id], tokens, False)
                stat.date_sent = date_sent.astimezone(UTC).replace(microsecond=0)
                count += 1
        return count

    # -- test helpers: inspection -------------------------------------------------

    def contact(self, contact_id: int) -> dict[str, Any]:
        """A contact's flat field values (like fields.all), or KeyError."""
        with self.lock:
            contact = self._contacts[contact_id]
            return {"id": contact.id, **self._flat_values(contact)}

    def record(self, contact_id: int) -> dict[str, Any]:
        """A contact exactly as GET /api/contacts/{id} serialises it."""
        with self.lock:
            return self._contact_json(self._contacts[contact_id])

    def date_modified(self, contact_id: int) -> datetime | None:
        with self.lock:
            return self._contacts[contact_id].date_modified

    def find(self, email: str) -> list[int]:
        """Ids of the contacts whose email equals `email` (case-insensitive), oldest first."""
        with self.lock:
            return sorted(self._by_email.get(email.lower(), ()))

    def contact_ids(self) -> list[int]:
        with self.lock:
            return list(self._contacts)

    def sent(self, email_id: int | None = None, contact_id: int | None = None) -> list[dict]:
        """Sends so far (failed ones included, flagged), oldest first, with their tokens."""
        with self.lock:
            return [
                {
                    "stat_id": stat.id,
                    "email_id": stat.email_id,
                    "contact_id": stat.lead_id,
                    "email_address": stat.email_address,
                    "tokens": dict(stat.tokens),
                    "date_sent": stat.date_sent,
                    "failed": stat.is_failed,
                }
                for stat in self._stats
                if (email_id is None or stat.email_id == email_id)
                and (contact_id is None or stat.lead_id == contact_id)
            ]

    # -- routes: contacts -----------------------------------------------------------

    @route("GET", "/contacts")
    def list_contacts(self, request: Request) -> Response:
        try:
            where = self._parse_where(php_nested(request.query, "where"), self._contact_column)
            order_col = self._order_column(request.arg("orderBy"))
        except _QueryError as exc:
            return exc.response
        desc = (request.arg("orderByDir") or "ASC").upper() == "DESC"
        if order_col is None:  # Mautic's default, last_active DESC: all null here
            desc = False
        start = max(0, _int_arg(request.arg("start"), 0))
        limit = _int_arg(request.arg("limit"), self.default_page_limit)
        search = (request.arg("search") or "").strip()
        total, ids = self._select(where, search, order_col or "id", desc, start, limit)
        minimal = not _php_empty(request.arg("minimal"))
        contacts = {str(cid): self._contact_json(self._contacts[cid], minimal) for cid in ids}
        return Response(200, {"total": str(total), "contacts": contacts or []})

    @route("GET", "/contacts/{contact_id}")
    def get_contact(self, request: Request, contact_id: str) -> Response:
        contact = self._lookup(contact_id)
        if contact is None:
            return _error(404, NOT_FOUND_MESSAGE)
        return Response(200, {"contact": self._contact_json(contact)})

    @route("POST", "/contacts/new")
    def create_contact(self, request: Request) -> Response:
        body = _json_object(request)
        if isinstance(body, Response):
            return body
        overwrite = not _php_empty(body.pop("overwriteWithBlank", None))
        values = self._submitted_values(body, drop_zero=True)
        invalid = self._validate(values)
        if invalid is not None:
            return invalid
        existing = self._duplicate_of(values)
        if existing is not None:
            if overwrite:  # POST clears unsubmitted form fields: blanks them all
                values = {f.alias: values.get(f.alias) for f in self._published_fields}
            changed = self._apply(existing, values, overwrite=overwrite)
            if self._apply_extras(existing, body) or changed:
                self._touch(existing)
            return Response(200, {"contact": self._contact_json(existing)})
        contact = self._new_contact()
        self._apply(contact, values, overwrite=overwrite)
        self._store_new(contact)
        self._apply_extras(contact, body)  # a new contact: dateModified stays as created
        return Response(
            201,
            {"contact": self._contact_json(contact)},
            {"Location": f"/api/contacts/{contact.id}"},
        )

    @route("PATCH", "/contacts/{contact_id}/edit")
    def patch_contact(self, request: Request, contact_id: str) -> Response:
        contact = self._lookup(contact_id)
        if contact is None:
            return _error(404, NOT_FOUND_MESSAGE)
        body = _json_object(request)
        if isinstance(body, Response):
            return body
        refused = self._patch(contact, body)
        if refused is not None:
            return refused
        return Response(200, {"contact": self._contact_json(contact)})

    @route("PATCH", "/contacts/batch/edit")
    def batch_edit_contacts(self, request: Request) -> Response:
        """`CommonApiController::editEntitiesAction` for PATCH: a status per item.

        Items that fail are left out of `contacts` (so its keys have gaps and
        it becomes a JSON object) and described in `errors`, keyed by position.
        """
        try:
            items = request.json() if request.body else []
        except (ValueError, UnicodeDecodeError):
            return _error(400, "Request body is not valid JSON.")
        if isinstance(items, dict):
            items = list(items.values())
        if not isinstance(items, list):
            return _error(400, "Request body must be an array of contacts.")
        if len(items) > self.batch_max_limit:
            return _error(400, f"A max of {self.batch_max_limit} entities are supported at a time.")
        saved: dict[int, dict[str, Any]] = {}
        codes: list[int] = []
        errors: dict[str, dict[str, Any]] = {}
        for key, item in enumerate(items):
            contact = None
            if isinstance(item, dict):
                contact = self._lookup(str(item.get("id", "")))
            if contact is None:
                errors[str(key)] = {"message": NOT_FOUND_MESSAGE, "code": 404, "type": "api"}
                codes.append(404)
                continue
            body = {k: v for k, v in item.items() if k != "id"}
            refused = self._patch(contact, body)
            if refused is not None:
                first = refused.body.get("errors", [{}])[0] if refused.body else {}
                errors[str(key)] = {
                    "message": first.get("message", "error"),
                    "code": refused.status,
                    "type": "api",
                }
                codes.append(refused.status)
                continue
            saved[key] = self._contact_json(contact)
            codes.append(200)
        contacts: Any = (
            [saved[k] for k in range(len(items))]
            if len(saved) == len(items)
            else {str(k): v for k, v in saved.items()}
        )
        payload: dict[str, Any] = {"contacts": contacts, "statusCodes": codes}
        if errors:
            payload["errors"] = errors
        return Response(200, payload)

    def _patch(self, contact: _Contact, body: dict[str, Any]) -> Response | None:
        """Apply a PATCH body to a contact; the error response when Mautic refuses it."""
        overwrite = not _php_empty(body.pop("overwriteWithBlank", None))
        values = self._submitted_values(body, drop_zero=True)
        invalid = self._validate(values)
        if invalid is not None:
            return invalid
        other = self._duplicate_of(values)
        changed = False
        if other is not None and other.id != contact.id:
            changed = self._merge(winner=contact, loser=other)
        changed = self._apply(contact, values, overwrite=overwrite) or changed
        if self._apply_extras(contact, body) or changed:
            self._touch(contact)
        return None

    @route("PUT", "/contacts/{contact_id}/edit")
    def put_contact(self, request: Request, contact_id: str) -> Response:
        body = _json_object(request)
        if isinstance(body, Response):
            return body
        overwrite = True
        if "overwriteWithBlank" in body:
            overwrite = not _php_empty(body.pop("overwriteWithBlank"))
        submitted = self._submitted_values(body, drop_zero=False)
        invalid = self._validate(submitted)
        if invalid is not None:
            return invalid
        values = {f.alias: submitted.get(f.alias) for f in self._published_fields}
        contact = self._lookup(contact_id)
        if contact is None:
            contact = self._new_contact()
            self._apply(contact, values, overwrite=overwrite)
            self._store_new(contact)
            self._apply_extras(contact, body)
            return Response(201, {"contact": self._contact_json(contact)})
        changed = self._apply(contact, values, overwrite=overwrite)
        if self._apply_extras(contact, body) or changed:
            self._touch(contact)
        return Response(200, {"contact": self._contact_json(contact)})

    @route("DELETE", "/contacts/{contact_id}/delete")
    def delete_contact_route(self, request: Request, contact_id: str) -> Response:
        contact = self._lookup(contact_id)
        if contact is None:
            return _error(404, NOT_FOUND_MESSAGE)
        body = self._contact_json(contact)
        self._remove(contact)
        return Response(200, {"contact": body})

    @route("POST", "/contacts/{contact_id}/dnc/{channel}/add")
    def add_dnc_route(self, request: Request, contact_id: str, channel: str) -> Response:
        """`LeadApiController::addDncAction`: reason defaults to 3 (manual); 0 is a 400.

        The answer is the contact, whether or not anything changed (an entry
        with the same reason, or one the contact unsubscribed with, stays).
        """
        contact = self._lookup(contact_id)
        if contact is None:
            return _error(404, NOT_FOUND_MESSAGE)
        body = _request_params(request)
        if isinstance(body, Response):
            return body
        channel_id = _php_int_or_zero(body.get("channelId"))
        reason = _php_int_or_zero(body.get("reason", DNC_MANUAL))
        if reason == 0:
            return _error(
                400,
                "Invalid reason code given",
                ["Reason code needs to be an integer and higher than 0."],
            )
        comments = body.get("comments")
        text = "" if comments is None or isinstance(comments, list | dict) else str(comments)
        changed = self._add_dnc(
            contact, channel, reason, sanitize_special_chars(text), channel_id or None
        )
        if changed and self.dnc_moves_date_modified:
            self._touch(contact)
        return Response(200, {"contact": self._contact_json(contact)})

    @route("POST", "/contacts/{contact_id}/dnc/{channel}/remove")
    def remove_dnc_route(self, request: Request, contact_id: str, channel: str) -> Response:
        """`LeadApiController::removeDncAction`: `recordFound` says whether an entry went."""
        contact = self._lookup(contact_id)
        if contact is None:
            return _error(404, NOT_FOUND_MESSAGE)
        found = self._remove_dnc(contact, channel)
        if found and self.dnc_moves_date_modified:
            self._touch(contact)
        return Response(200, {"recordFound": found, "contact": self._contact_json(contact)})

    # -- routes: emails, fields, stats ---------------------------------------------------

    @route("GET", "/emails/{email_id}")
    def get_email(self, request: Request, email_id: str) -> Response:
        email = self._emails.get(int(email_id)) if email_id.isdigit() else None
        if email is None:
            return _error(404, NOT_FOUND_MESSAGE)
        return Response(200, {"email": self._email_json(email)})

    @route("POST", "/emails/{email_id}/contact/{contact_id}/send")
    def send_to_contact(self, request: Request, email_id: str, contact_id: str) -> Response:
        email = self._emails.get(int(email_id)) if email_id.isdigit() else None
        if email is None:
            return _error(404, NOT_FOUND_MESSAGE)
        contact = self._lookup(contact_id)
        if contact is None:
            return _error(404, NOT_FOUND_MESSAGE)
        try:
            post = request.json() if request.body else {}
        except ValueError:
            post = {}
        tokens_in = post.get("tokens") if isinstance(post, dict) else None
        tokens: dict[str, str] = {}
        if isinstance(tokens_in, dict):
            for key, value in tokens_in.items():
                name = key if re.match(r"^\{.*?\}$", key) else "{" + key + "}"
                tokens[name] = "" if value is None else str(value)
        if not email.published or not contact.values.get("email"):
            return Response(200, {"success": False})
        if self.send_failure is not None:
            self._add_stat(email.id, contact, tokens, failed=True)
            return Response(200, {"failed": [self.send_failure]})
        self._add_stat(email.id, contact, tokens, failed=False)
        return Response(200, {"success": True})

    @route("GET", "/fields/contact")
    def list_fields(self, request: Request) -> Response:
        """Paged like every list (default 30 rows: fewer than a stock install's fields)."""
        ordered = sorted(self._fields.values(), key=_field_order)
        start = max(0, _int_arg(request.arg("start"), 0))
        limit = _int_arg(request.arg("limit"), self.default_page_limit)
        page = ordered[start : start + limit] if limit > 0 else ordered[start:]
        return Response(200, {"total": len(ordered), "fields": [self._field_json(f) for f in page]})

    @route("GET", "/stats")
    def stats_tables(self, request: Request) -> Response:
        return Response(200, self._stats_catalogue())

    @route("GET", "/stats/{table}")
    def stats(self, request: Request, table: str) -> Response:
        columns = _STATS_COLUMNS.get(table)
        if columns is None:
            return Response(200, self._stats_catalogue())

        def column(raw: str, clause: str) -> str:
            return self._stat_column(raw, clause, columns)

        try:
            where = self._parse_where(php_nested(request.query, "where"), column)
            order = self._parse_stat_order(php_nested(request.query, "order"), column)
        except _QueryError as exc:  # the stats API reports query errors inside a 200
            message = exc.response.body["errors"][0]["message"]
            return Response(200, {"errors": [{"message": message, "code": 0}]})
        start = max(0, _int_arg(request.arg("start"), 0))
        limit = _int_arg(request.arg("limit"), 100)
        if table == "lead_donotcontact":
            rows = _select_rows([d.row() for d in self._dnc_rows.values()], where, order)
            page = rows[start : start + limit] if limit > 0 else rows[start:]
            return Response(200, {"total": str(len(rows)), "stats": page})
        stats = self._select_stats(where, order)
        chosen = stats[start : start + limit] if limit > 0 else stats[start:]
        return Response(200, {"total": str(len(stats)), "stats": [s.row() for s in chosen]})

    # -- internals: fields and values -------------------------------------------------

    def _define_field(
        self,
        alias: str,
        label: str,
        type_: str,
        *,
        group: str = "core",
        fixed: bool = False,
        published: bool = True,
    ) -> None:
        existing = self._fields.get(alias)
        field_id = existing.id if existing else len(self._fields) + 1
        order = existing.order if existing else len(self._fields) + 1
        self._fields[alias] = FieldDef(
            field_id, alias, label, type_, group, order, published, fixed, alias == "email"
        )
        self._published_fields = sorted(
            (f for f in self._fields.values() if f.published), key=_field_order
        )

    def _field(self, alias: str) -> FieldDef:
        found = self._fields.get(alias)
        if found is None:
            raise KeyError(f"no contact field with alias {alias!r}")
        return found

    def _now(self) -> datetime:
        return self.clock().astimezone(UTC).replace(microsecond=0)

    def _clean(self, definition: FieldDef, value: Any) -> Any:
        """LeadModel::cleanFields plus the form's transformations, per field type."""
        if value is None:
            return None
        kind = definition.type
        if kind == "boolean":
            return int(php_filter_bool(value))
        if kind == "number":
            if value == "":
                return None
            return float(value) if php_is_numeric(value) else 0.0
        if isinstance(value, bool):
            text = "1" if value else ""
        elif isinstance(value, list):
            text = "|".join(str(v) for v in value)
        else:
            text = str(value)
        if kind == "email":
            return sanitize_email(text)
        if kind == "url" and text and "://" not in text:
            return "http://" + text  # Symfony UrlType's default_protocol
        return text

    def _is_blank(self, definition: FieldDef, value: Any) -> bool:
        """`null == $v || '' == $v` in PHP 8 (so int 0 is blank)."""
        if value is None or value == "":
            return True
        if isinstance(value, int | float) and value == 0:
            return self.false_is_blank or definition.type != "boolean"
        return False

    def _assign(self, contact: _Contact, values: dict[str, Any]) -> bool:
        """Set values as given (UI edits and seeding): None clears. True when changed."""
        changed = False
        for alias, raw in values.items():
            new = self._clean(self._fields[alias], raw)
            if new == "":
                new = None
            if contact.values.get(alias) != new or type(contact.values.get(alias)) is not type(new):
                self._set_value(contact, alias, new)
                changed = True
        return changed

    def _apply(self, contact: _Contact, values: dict[str, Any], *, overwrite: bool) -> bool:
        """LeadModel::setFieldValues as the API drives it. True when something changed."""
        changed = False
        for alias, raw in values.items():
            definition = self._fields[alias]
            new = self._clean(definition, raw)
            if self._is_blank(definition, new) and not overwrite:
                continue
            current = contact.values.get(alias)
            if current == new and type(current) is type(new):
                continue
            self._set_value(contact, alias, new)
            changed = True
        return changed

    def _set_value(self, contact: _Contact, alias: str, value: Any) -> None:
        if alias == "email":
            self._unindex_email(contact)
            contact.values[alias] = value
            self._index_email(contact)
            if value and contact.date_identified is None:
                contact.date_identified = self._now()
                if self.webhooks is not None:
                    self._identified.add(contact.id)
        else:
            contact.values[alias] = value

    def _submitted_values(self, body: dict[str, Any], *, drop_zero: bool) -> dict[str, Any]:
        """Known, published aliases from a request body; numeric zeros dropped on POST/PATCH."""
        values = {}
        for key, value in body.items():
            definition = self._fields.get(key)
            if definition is None or not definition.published:
                continue  # ipAddress, tags, owner, typos...: not fields, ignored here
            if drop_zero and php_is_numeric(value) and php_int(value) == 0:
                continue  # CustomFieldsApiControllerTrait::setCustomFieldValues array_filter
            values[key] = value
        return values

    def _validate(self, values: dict[str, Any]) -> Response | None:
        email = values.get("email")
        if email in (None, ""):
            return None
        if not isinstance(email, str) or not _EMAIL_VALID.match(sanitize_email(email)):
            message = "email: A valid email is required."
            return _error(400, message, {"email": ["A valid email is required."]})
        return None

    def _duplicate_of(self, values: dict[str, Any]) -> _Contact | None:
        """checkForDuplicateContact on the unique identifier (email)."""
        email = values.get("email")
        if not isinstance(email, str) or not email:
            return None
        ids = self._by_email.get(sanitize_email(email).lower())
        return self._contacts[min(ids)] if ids else None

    # -- internals: tags and Do-Not-Contact ------------------------------------------

    def _seed_extras(self, contact: _Contact, tags: Iterable[str], dnc: int | None) -> None:
        """Tags and an email DNC entry for a seeded contact (no dateModified change)."""
        if tags:
            self._modify_tags(contact, list(tags))
        if dnc is not None:
            self._add_dnc(contact, "email", dnc, "", None)

    def _apply_extras(self, contact: _Contact, body: dict[str, Any]) -> bool:
        """`tags` and `doNotContact` of a POST/PATCH/PUT body (`LeadApiController::preSaveEntity`).

        True when the contact counts as changed for dateModified: a tag
        change always, a DNC change only with `dnc_moves_date_modified`.
        """
        touched = False
        if "tags" in body and body["tags"] is not None:
            raw = body["tags"]
            items = raw if isinstance(raw, list) else str(raw).split(",")
            touched = self._modify_tags(contact, items)
        entries = body.get("doNotContact")
        if entries and isinstance(entries, list | dict):
            changed = False
            for entry in entries.values() if isinstance(entries, dict) else entries:
                if not isinstance(entry, dict):
                    continue
                channel = str(entry.get("channel") or "email")
                comments = _strip_markup(str(entry.get("comments") or ""))
                reason = _php_int_or_zero(entry.get("reason", DNC_MANUAL))
                if reason == DNC_CONTACTABLE:
                    changed = self._remove_dnc(contact, channel) or changed
                else:
                    changed = self._add_dnc(contact, channel, reason, comments, None) or changed
            touched = touched or (changed and self.dnc_moves_date_modified)
        return touched

    def _modify_tags(self, contact: _Contact, tags: list[Any]) -> bool:
        """`LeadModel::modifyTags`: `name` adds, `-name` removes; True when tags changed.

        Names are trimmed, entity-decoded and stripped of markup; existing
        tags are found by exact name (PHP's array_key_exists after a
        case-insensitive SQL lookup), so `Hold` next to `hold` is a new tag,
        and `-Hold` does not remove `hold`.
        """
        changed = False
        for raw in tags:
            name = _clean_tag(raw)
            if not name:
                continue
            if name.startswith("-"):
                name = name[1:]
                if name in self._tag_ids and name in contact.tags:
                    contact.tags.remove(name)
                    changed = True
                continue
            if name not in self._tag_ids:
                self._tag_ids[name] = len(self._tag_ids) + 1
            if name not in contact.tags:
                contact.tags.append(name)
                changed = True
        return changed

    def _add_dnc(
        self,
        contact: _Contact,
        channel: str,
        reason: int,
        comments: str,
        channel_id: int | None,
    ) -> bool:
        """`DoNotContactModel::addDncForContact` (checkCurrentStatus); True when it wrote.

        No entry on the channel (or only reason-0 ones): a new entry. An
        entry with another reason: updated in place (new reason, comments,
        dateAdded) unless the contact unsubscribed themselves; with a
        channelId Mautic's update loop compares the channel with an array
        and never matches, so nothing changes. The same reason: nothing.
        """
        folded = channel.lower()  # findBy on the channel column: a *_ci collation
        current = next(
            (
                d.reason
                for d in contact.dnc
                if d.channel.lower() == folded and d.reason != DNC_CONTACTABLE
            ),
            DNC_CONTACTABLE,
        )
        now = self._now()
        if current == DNC_CONTACTABLE:
            entry = _Dnc(self._next_dnc_id, contact.id, channel, reason, comments, channel_id, now)
            self._next_dnc_id += 1
            contact.dnc.append(entry)
            self._dnc_rows[entry.id] = entry
            return True
        if current == reason or channel_id is not None:
            return False
        for entry in contact.dnc:
            if entry.reason != DNC_UNSUBSCRIBED and entry.channel == channel:
                entry.reason, entry.comments, entry.date_added = reason, comments, now
                return True
        return False

    def _tag_order(self, name: str) -> tuple[str, int]:
        """ORDER BY tag in a case-insensitive collation; ties as stored (by id)."""
        return (name.casefold(), self._tag_ids[name])

    def _remove_dnc(self, contact: _Contact, channel: str) -> bool:
        """`DoNotContactModel::removeDncForContact`: the first entry on the channel goes."""
        for entry in contact.dnc:
            if entry.channel == channel:
                contact.dnc.remove(entry)
                del self._dnc_rows[entry.id]
                return True
        return False

    # -- internals: contacts and indexes -------------------------------------------

    def _new_contact(self) -> _Contact:
        contact = _Contact(
            id=self._next_contact_id,
            date_added=self._now(),
            date_modified=None,
            values={},
            created_by_user=self._username,
        )
        self._next_contact_id += 1
        return contact

    def _store_new(self, contact: _Contact) -> None:
        if self.modified_on_create:
            contact.date_modified = contact.date_added
            contact.modified_by_user = self._username
        self._contacts[contact.id] = contact
        self._index["id"].add(contact.id, contact.id)
        self._index["date_added"].add(contact.date_added, contact.id)
        self._index["date_modified"].add(contact.date_modified, contact.id)
        if contact.date_modified is None:
            self._never_modified.add(contact.date_added, contact.id)
        self._index_email(contact)
        if self.webhooks is not None and contact.date_identified is not None:
            self._saved[contact.id] = MAUTIC_CONTACT_NEW  # anonymous visitors send nothing

    def _touch(self, contact: _Contact) -> None:
        """FormModel::setTimestamps on an update with changes."""
        old = contact.date_modified
        self._index["date_modified"].remove(old, contact.id)
        if old is None:
            self._never_modified.remove(contact.date_added, contact.id)
        contact.date_modified = self._now()
        contact.modified_by_user = self._username
        self._index["date_modified"].add(contact.date_modified, contact.id)
        if self.webhooks is not None and contact.date_identified is not None:
            # WebhookSubscriber::onLeadNewUpdate: "new" when this save identified it.
            new = contact.id in self._identified
            if self._saved.get(contact.id) != MAUTIC_CONTACT_NEW:
                self._saved[contact.id] = MAUTIC_CONTACT_NEW if new else MAUTIC_CONTACT_UPDATE

    def _remove(self, contact: _Contact) -> None:
        # Mautic's Stat entity maps its lead with onDelete SET NULL: the send
        # log keeps the row and the address, not the contact.
        for stat in self._stats_by_lead.pop(contact.id, []):
            stat.lead_id = None
        for entry in contact.dnc:  # lead_donotcontact rows go with the contact (CASCADE)
            del self._dnc_rows[entry.id]
        contact.dnc.clear()
        self._unindex_email(contact)
        self._index["id"].remove(contact.id, contact.id)
        self._index["date_added"].remove(contact.date_added, contact.id)
        self._index["date_modified"].remove(contact.date_modified, contact.id)
        if contact.date_modified is None:
            self._never_modified.remove(contact.date_added, contact.id)
        del self._contacts[contact.id]

    def _index_email(self, contact: _Contact) -> None:
        key = contact.email_key
        if key:
            self._by_email.setdefault(key, set()).add(contact.id)
            self._email_sorted = None

    def _unindex_email(self, contact: _Contact) -> None:
        key = contact.email_key
        if key and key in self._by_email:
            self._by_email[key].discard(contact.id)
            if not self._by_email[key]:
                del self._by_email[key]
            self._email_sorted = None

    def _merge(self, *, winner: _Contact, loser: _Contact) -> bool:
        """ContactMerger: the newest non-empty value of each field wins; the loser is deleted."""
        loser_date = loser.date_modified or loser.date_added
        winner_date = winner.date_modified or winner.date_added
        newest, oldest = (loser, winner) if loser_date > winner_date else (winner, loser)
        merged = {}
        for definition in self._published_fields:
            alias = definition.alias
            value = newest.values.get(alias)
            if value in (None, ""):
                value = oldest.values.get(alias)
            merged[alias] = value
        loser_tags = list(loser.tags)  # ContactMerger::mergeTags; DNC entries are not moved
        for stat in self._stats_by_lead.pop(loser.id, []):  # a merge moves the sends over
            stat.lead_id = winner.id
            self._stats_by_lead.setdefault(winner.id, []).append(stat)
        self._stats_by_lead.get(winner.id, []).sort(key=lambda s: s.id)
        self._remove(loser)
        self._modify_tags(winner, loser_tags)
        self._assign(winner, merged)
        return True

    def _lookup(self, raw_id: str) -> _Contact | None:
        return self._contacts.get(int(raw_id)) if raw_id.isdigit() else None

    def _flat_values(self, contact: _Contact) -> dict[str, Any]:
        return {f.alias: contact.values.get(f.alias) for f in self._published_fields}

    def _add_stat(
        self, email_id: int, contact: _Contact, tokens: dict[str, str], failed: bool
    ) -> _Stat:
        stat = _Stat(
            id=self._next_stat_id,
            email_id=email_id,
            lead_id=contact.id,
            email_address=contact.values.get("email"),
            date_sent=self._now(),
            is_failed=failed,
            tokens=dict(tokens),
            tracking_hash=f"{self._next_stat_id:013x}",
        )
        self._next_stat_id += 1
        self._stats.append(stat)
        self._stats_by_email.setdefault(email_id, []).append(stat)
        self._stats_by_lead.setdefault(contact.id, []).append(stat)
        return stat

    # -- internals: JSON shapes ---------------------------------------------------------

    def _contact_json(self, contact: _Contact, minimal: bool = False) -> dict[str, Any]:
        """The contact as Mautic serialises it (`leadList` groups when `minimal`)."""
        groups: dict[str, dict[str, Any]] = {
            "core": {},
            "social": {},
            "personal": {},
            "professional": {},
        }
        flat: dict[str, Any] = {"id": contact.id}
        for definition in self._published_fields:
            value = contact.values.get(definition.alias)
            flat[definition.alias] = value
            groups.setdefault(definition.group, {})[definition.alias] = {
                "id": definition.id,
                "label": definition.label,
                "alias": definition.alias,
                "type": definition.type,
                "group": definition.group,
                "object": "lead",
                "is_fixed": int(definition.fixed),
                "default_value": definition.default,
                "properties": [],
                "value": value,
            }
        fields: dict[str, Any] = {name: (entries or []) for name, entries in groups.items()}
        fields["all"] = flat
        modified = contact.date_modified is not None
        record = {
            "isPublished": True,
            "dateAdded": _iso(contact.date_added),
            "dateModified": _iso(contact.date_modified),
            "createdBy": 1,
            "createdByUser": contact.created_by_user,
            "modifiedBy": 1 if modified else None,
            "modifiedByUser": contact.modified_by_user if modified else None,
            "id": contact.id,
            "points": 0,
            "color": None,
            "fields": fields,
            "lastActive": None,
            "owner": None,
            "ipAddresses": [],
            "tags": [
                {"id": self._tag_ids[tag], "tag": tag, "description": None}
                for tag in sorted(contact.tags, key=self._tag_order)  # ORDER BY tag, *_ci
            ],
            "utmtags": [],
            "stage": None,
            "dateIdentified": _iso(contact.date_identified),
            "preferredProfileImage": "gravatar",
            "doNotContact": [entry.json() for entry in contact.dnc],
            "frequencyRules": [],
        }
        if minimal:
            for key in _DETAILS_ONLY:
                del record[key]
        return record

    def _email_json(self, email: _Email) -> dict[str, Any]:
        sent = sum(1 for s in self._stats_by_email.get(email.id, []) if not s.is_failed)
        return {
            "isPublished": email.published,
            "dateAdded": _iso(email.date_added),
            "dateModified": None,
            "createdBy": 1,
            "createdByUser": self._username,
            "id": email.id,
            "name": email.name,
            "subject": email.subject,
            "language": "en",
            "category": None,
            "fromAddress": None,
            "fromName": None,
            "replyToAddress": None,
            "customHtml": "<html><body>{contactfield=firstname}</body></html>",
            "plainText": None,
            "template": None,
            "emailType": email.email_type,
            "publishUp": None,
            "publishDown": None,
            "readCount": 0,
            "sentCount": sent,
            "revision": 1,
            "assetAttachments": [],
            "variantParent": None,
            "variantChildren": [],
            "translationParent": None,
            "translationChildren": [],
            "lists": [],
        }

    def _field_json(self, definition: FieldDef) -> dict[str, Any]:
        return {
            "isPublished": definition.published,
            "id": definition.id,
            "label": definition.label,
            "alias": definition.alias,
            "type": definition.type,
            "group": definition.group,
            "order": definition.order,
            "object": "lead",
            "defaultValue": definition.default,
            "isRequired": False,
            "isPubliclyUpdatable": False,
            "isUniqueIdentifier": definition.unique,
            "isFixed": definition.fixed,
            "properties": [],
        }

    def _stats_catalogue(self) -> dict[str, Any]:
        return {
            "availableTables": list(_STATS_TABLES),
            "tableColumns": {name: list(cols) for name, cols in _STATS_COLUMNS.items()},
        }

    # -- internals: queries ------------------------------------------------------------

    def _contact_column(self, raw: str, clause: str) -> str:
        col = re.sub(r"[^A-Za-z0-9_.]", "", raw).rsplit(".", 1)[-1]
        if clause == "where clause":
            col = _ORM_COLUMNS.get(col, col)
        if col in _META_COLUMNS or col in self._fields:
            return col
        raise _QueryError(_sql_error(f"l.{col}", clause))

    def _stat_column(self, raw: str, clause: str, columns: tuple[str, ...] = _STAT_COLUMNS) -> str:
        col = re.sub(r"[^A-Za-z0-9_.]", "", raw).rsplit(".", 1)[-1]
        if col in columns:
            return col
        raise _QueryError(_sql_error(col, clause))

    def _order_column(self, raw: str | None) -> str | None:
        if not raw:
            return None
        return self._contact_column(raw, "order clause")

    def _parse_where(self, raw: Any, column: Callable[[str, str], str]) -> list[_Clause]:
        if not isinstance(raw, dict):
            return []
        clauses = []
        for _, item in sorted(raw.items(), key=lambda kv: _sort_key(kv[0])):
            if not isinstance(item, dict):
                continue
            expr = re.sub(r"[^A-Za-z0-9_.]", "", str(item.get("expr", "")))
            if expr in ("andX", "orX"):
                nested = self._parse_where(item.get("val"), column)
                clauses.append(_Clause("", expr, nested))
                continue
            if expr not in _EXPRESSIONS:
                raise _QueryError(_error(400, f"Unknown where expression: {expr!r}"))
            col = column(str(item.get("col", "")), "where clause")
            val = _clean_deep(item.get("val"))
            if isinstance(val, dict):
                val = [val[k] for k in sorted(val, key=_sort_key)]
            clauses.append(_Clause(col, expr, val))
        return clauses

    def _value(self, contact: _Contact, col: str) -> Any:
        if col == "id":
            return contact.id
        if col == "date_added":
            return contact.date_added
        if col == "date_modified":
            return contact.date_modified
        if col == "date_identified":
            return contact.date_identified
        if col in ("is_published", "created_by"):
            return 1
        if col == "modified_by":
            return 1 if contact.date_modified else None
        if col == "points":
            return 0
        if col in _META_COLUMNS:
            return None
        return contact.values.get(col)

    def _select(
        self,
        where: list[_Clause],
        search: str,
        order_col: str,
        desc: bool,
        start: int,
        limit: int,
    ) -> tuple[int, list[int]]:
        """Run a contact query; (total, ids of the requested page)."""
        plan = self._plan(where)
        rest = [c for i, c in enumerate(where) if i not in plan.consumed]
        tokens = _search_tokens(search)
        if not rest and not tokens and plan.col == order_col:
            items, lo, hi = plan.items, plan.lo, plan.hi
            total = hi - lo
            if desc:
                stop = hi - start
                first = stop - limit if limit > 0 else lo
                page = [cid for _, cid in reversed(items[max(lo, first) : max(lo, stop)])]
            else:
                begin = lo + start
                end = min(hi, begin + limit) if limit > 0 else hi
                page = [cid for _, cid in items[begin:end]]
            return total, page
        candidates = (cid for _, cid in plan.items[plan.lo : plan.hi])
        presorted = plan.col == order_col
        contacts = self._contacts
        tests = [self._predicate(c) for c in rest]
        if tokens:
            tests.append(lambda contact: self._search_matches(contact, tokens))
        if len(tests) == 1:
            test = tests[0]
            matches = [cid for cid in candidates if test(contacts[cid])]
        else:
            matches = [cid for cid in candidates if all(t(contacts[cid]) for t in tests)]
        if not presorted:
            matches.sort(key=lambda cid: self._sort_value(contacts[cid], order_col))
        if desc:
            matches.reverse()
        total = len(matches)
        page = matches[start : start + limit] if limit > 0 else matches[start:]
        return total, page

    def _plan(self, where: list[_Clause]) -> _Plan:
        """The narrowest index range answering one or two top-level clauses."""
        best: _Plan | None = None
        null_modified = next(
            (i for i, c in enumerate(where) if c.col == "date_modified" and c.expr == "isNull"),
            None,
        )
        for i, clause in enumerate(where):
            candidate = None
            if clause.expr == "orX" and isinstance(clause.val, list):
                # MySQL merges the branches' indexes (index_merge union); so
                # does this: each branch its own range, the union tested again.
                parts = [b.val if b.expr == "andX" else [b] for b in clause.val]
                branches = [self._plan(part) for part in parts]
                if branches and all(b.consumed for b in branches):
                    ids = sorted({cid for b in branches for _, cid in b.items[b.lo : b.hi]})
                    # Exact when every branch's range answers all its clauses.
                    pairs = zip(branches, parts, strict=True)
                    exact = all(len(b.consumed) == len(p) for b, p in pairs)
                    candidate = _Plan(
                        {i} if exact else set(), "id", [(cid, cid) for cid in ids], 0, len(ids)
                    )
            elif clause.col == "email" and clause.expr == "eq" and isinstance(clause.val, str):
                ids = sorted(self._by_email.get(clause.val.lower(), ()))
                candidate = _Plan({i}, "id", [(cid, cid) for cid in ids], 0, len(ids))
            elif clause.col in ("id", "email") and clause.expr == "in":
                ids = sorted(self._ids_in(clause.col, clause.val))
                candidate = _Plan({i}, "id", [(cid, cid) for cid in ids], 0, len(ids))
            elif clause.col in self._index and clause.expr in ("eq", "gt", "gte", "lt", "lte"):
                key = _index_key(clause.col, clause.val)
                if key is None:
                    continue
                if clause.col == "date_added" and null_modified is not None:
                    lo, hi = self._never_modified.span(clause.expr, key)
                    candidate = _Plan(
                        {i, null_modified}, "date_added", self._never_modified.items, lo, hi
                    )
                else:
                    index = self._index[clause.col]
                    lo, hi = index.span(clause.expr, key)
                    candidate = _Plan({i}, clause.col, index.items, lo, hi)
            if candidate is not None and (best is None or candidate.size < best.size):
                best = candidate
        if best is None:  # a full scan, in id order
            items = self._index["id"].items
            best = _Plan(set(), "id", items, 0, len(items))
        return best

    def _ids_in(self, col: str, val: Any) -> set[int]:
        """Contacts an `in` clause on the primary key or the email index selects."""
        items = val if isinstance(val, list) else next(csv.reader([str(val)]), [])
        if col == "id":
            ids = (_int_or_none(item) for item in items)
            return {cid for cid in ids if cid is not None and cid in self._contacts}
        found: set[int] = set()
        for item in items:
            found |= self._by_email.get(str(item).strip().lower(), set())
        return found

    def _predicate(self, clause: _Clause) -> Callable[[_Contact], bool]:
        """A where clause as a test on one contact (compiled once per query)."""
        if clause.expr in ("andX", "orX"):
            parts = [self._predicate(c) for c in clause.val]
            combine = all if clause.expr == "andX" else any
            return lambda contact: combine(p(contact) for p in parts)
        col, expr, val = clause.col, clause.expr, clause.val
        if expr in ("like", "notLike") and col in self._fields:
            regex = _like_regex(str(val))
            want = expr == "like"

            def like(contact: _Contact) -> bool:
                value = contact.values.get(col)
                return value is not None and (regex.match(str(value)) is not None) == want

            return like
        definition = self._fields.get(col)
        if expr in ("eq", "neq") and definition is not None and isinstance(val, str):
            want = expr == "eq"
            if definition.type in ("boolean", "number"):
                number = _mysql_number(val)

                def same_number(contact: _Contact) -> bool:
                    value = contact.values.get(col)
                    return value is not None and (float(value) == number) == want

                return same_number
            text = val.lower()

            def same_text(contact: _Contact) -> bool:
                value = contact.values.get(col)
                return value is not None and (str(value).lower() == text) == want

            return same_text
        value_of = self._value
        return lambda contact: _compare(value_of(contact, col), expr, val)

    def _sort_value(self, contact: _Contact, col: str) -> tuple:
        value = self._value(contact, col)
        if isinstance(value, str):
            value = value.lower()
        return (value is not None, value if value is not None else 0, contact.id)

    def _search_matches(self, contact: _Contact, tokens: list[tuple[bool, str, str]]) -> bool:
        """SearchStringHelper + LeadRepository commands (email:, id:, name:, bare words)."""
        for negate, command, term in tokens:
            if command == "email":
                strict = term.startswith("+")
                pattern = term[1:] if strict else term + "%"
                hit = _like(contact.values.get("email"), pattern)
            elif command in ("id", "ids"):
                hit = str(contact.id) in term.split(",")
            elif command == "name":
                hit = any(
                    _like(contact.values.get(a), f"%{term}%") for a in ("firstname", "lastname")
                )
            elif command and command in self._fields:
                hit = _like(contact.values.get(command), term + "%")
            else:
                word = f"{command}:{term}" if command else term
                hit = any(_like(contact.values.get(a), f"%{word}%") for a in _SEARCH_COLUMNS)
            if hit == negate:
                return False
        return True

    def _select_stats(self, where: list[_Clause], order: list[tuple[str, bool]]) -> list[_Stat]:
        """Rows matching `where`, ordered; an index and an id range answer the common query.

        Like the database's indexes: an `eq` on email_id or lead_id picks that
        index, an id range is cut by bisection (rows are kept in id order),
        and only the clauses left over are tested row by row.
        """
        pool: list[_Stat] = self._stats
        used: set[int] = set()
        for i, clause in enumerate(where):
            if clause.expr == "eq" and clause.col in ("email_id", "lead_id"):
                key = _int_or_none(clause.val)
                index = self._stats_by_email if clause.col == "email_id" else self._stats_by_lead
                found = index.get(key, []) if key is not None else []
                if len(found) <= len(pool):
                    pool = found
                    used = {i}
        for i, clause in enumerate(where):
            if clause.col == "id" and clause.expr in ("gt", "gte"):
                key = _int_or_none(clause.val)
                if key is not None:
                    bisector = bisect.bisect_right if clause.expr == "gt" else bisect.bisect_left
                    pool = pool[bisector(pool, key, key=lambda s: s.id) :]
                    used.add(i)
        rest = [clause for i, clause in enumerate(where) if i not in used]
        rows = [s for s in pool if all(_compare_stat(s.row(), c) for c in rest)] if rest else pool
        if order in ([], [("id", False)]):
            return rows  # already in id order
        rows = list(rows)
        for col, desc in reversed(order):
            if col == "id":
                rows.sort(key=lambda s: s.id, reverse=desc)
            else:
                rows.sort(key=lambda s: _null_first(s.row()[col]), reverse=desc)
        return rows

    def _parse_stat_order(
        self, raw: Any, column: Callable[[str, str], str]
    ) -> list[tuple[str, bool]]:
        order = []
        if isinstance(raw, dict):
            for _, item in sorted(raw.items(), key=lambda kv: _sort_key(kv[0])):
                if isinstance(item, dict) and item.get("col"):
                    col = column(str(item["col"]), "order clause")
                    order.append((col, str(item.get("dir", "ASC")).upper() == "DESC"))
        return order


_EXPRESSIONS = frozenset(
    {
        "eq",
        "neq",
        "lt",
        "lte",
        "gt",
        "gte",
        "like",
        "notLike",
        "in",
        "notIn",
        "between",
        "notBetween",
        "isNull",
        "isNotNull",
        "isEmpty",
        "isNotEmpty",
    }
)


def _compare(value: Any, expr: str, val: Any) -> bool:
    """One SQL predicate with MySQL's coercions and NULL semantics."""
    if expr == "isNull":
        return value is None
    if expr == "isNotNull":
        return value is not None
    if expr == "isEmpty":
        return value is None or value == ""
    if expr == "isNotEmpty":
        return value is not None and value != ""
    if value is None:
        return False  # NULL compared with anything is not true
    if expr in ("like", "notLike"):
        hit = _like(value, str(val))
        return hit if expr == "like" else not hit
    if expr in ("in", "notIn"):
        items = val if isinstance(val, list) else next(csv.reader([str(val)]), [])
        hit = any(_compare(value, "eq", item) for item in items)
        return hit if expr == "in" else not hit
    if expr in ("between", "notBetween"):
        if not isinstance(val, list) or len(val) != 2:
            return False
        hit = _compare(value, "gte", val[0]) and _compare(value, "lte", val[1])
        return hit if expr == "between" else not hit
    left, right = _coerce(value, val)
    if expr == "eq":
        return left == right
    if expr == "neq":
        return left != right
    if expr == "lt":
        return left < right
    if expr == "lte":
        return left <= right
    if expr == "gt":
        return left > right
    if expr == "gte":
        return left >= right
    raise ValueError(expr)


def _coerce(value: Any, val: Any) -> tuple[Any, Any]:
    text = "" if val is None else str(val)
    if isinstance(value, datetime):
        parsed = _parse_sql_datetime(text)
        if parsed is not None:
            return value, parsed
        return _sql(value), text
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value), _mysql_number(text)
    return str(value).lower(), text.lower()


def _compare_stat(row: dict[str, Any], clause: _Clause) -> bool:
    if clause.expr == "andX":
        return all(_compare_stat(row, c) for c in clause.val)
    if clause.expr == "orX":
        return any(_compare_stat(row, c) for c in clause.val)
    value = row[clause.col]
    if clause.col in _STAT_DATE_COLUMNS and isinstance(value, str):
        value = _parse_sql_datetime(value)
    return _compare(value, clause.expr, clause.val)


def _select_rows(
    rows: list[dict[str, Any]], where: list[_Clause], order: list[tuple[str, bool]]
) -> list[dict[str, Any]]:
    """A small stats table's rows matching `where`, in `order` (id order by default)."""
    found = [row for row in rows if all(_compare_stat(row, c) for c in where)]
    for col, desc in reversed(order):
        found.sort(key=lambda row: _null_first(row[col]), reverse=desc)
    return found


def _clean_tag(raw: Any) -> str:
    """A tag name as `modifyTags` cleans it: trimmed, entities decoded, NUL and markup gone."""
    if raw is None or raw is False:
        return ""
    text = "1" if raw is True else str(raw)
    return _strip_markup(html.unescape(text.strip()))


def _strip_markup(text: str) -> str:
    """InputHelper::string: NUL bytes and anything tag-like removed."""
    return re.sub(r"\x00|<[^>]*>?", "", text)


def _php_int_or_zero(value: Any) -> int:
    """PHP's (int) cast of a request value: a numeric prefix, else 0."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else 0
    if isinstance(value, str):
        match = re.match(r"^[ \t\n\r\v\f]*([+-]?\d+)", value)
        return int(match.group(1)) if match else 0
    if isinstance(value, list | dict):
        return 1 if value else 0
    return 0


def _request_params(request: Request) -> dict[str, Any] | Response:
    """`$request->request`: a JSON object (FOSRest's body listener) or a form-encoded body."""
    kind = request.headers.get("content-type", "")
    if request.body and "application/x-www-form-urlencoded" in kind:
        pairs = parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        return dict(pairs)
    return _json_object(request)


def _like(value: Any, pattern: str) -> bool:
    if value is None:
        return False
    text = _sql(value) if isinstance(value, datetime) else str(value)
    return _like_regex(pattern).match(text) is not None


def _search_tokens(search: str) -> list[tuple[bool, str, str]]:
    """Split a search string into (negated, command, term); quotes group words."""
    tokens = []
    for match in re.finditer(r'(!?)(?:([A-Za-z_]+):)?(?:"([^"]*)"|(\S+))', search):
        negate, command, quoted, bare = match.groups()
        term = quoted if quoted is not None else bare
        if not term:
            continue
        tokens.append((bool(negate), (command or "").lower(), term))
    return tokens


def _index_key(col: str, val: Any) -> Any:
    if not isinstance(val, str):
        return None
    if col == "id":
        return _int_or_none(val)
    return _parse_sql_datetime(val)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _int_arg(raw: str | None, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        return int(float(raw))
    except ValueError:
        return 0  # PHP (int) of a non-numeric string


def _sort_key(key: str) -> tuple[int, str]:
    return (int(key), "") if key.isdigit() else (sys.maxsize, key)


def _null_first(value: Any) -> tuple:
    return (value is not None, value if value is not None else 0)


def _field_order(definition: FieldDef) -> tuple[int, int]:
    return (definition.order, definition.id)


def _json_object(request: Request) -> dict[str, Any] | Response:
    """The request body as a JSON object, or Mautic's 400."""
    if not request.body:
        return {}
    try:
        body = request.json()
    except (ValueError, UnicodeDecodeError):
        return _error(400, "Request body is not valid JSON.")
    if not isinstance(body, dict):
        return _error(400, "Request body must be a JSON object.")
    return body
