"""EspoCRM emulator: the Lead endpoints, `App/user` and `Metadata` of Espo 10, under /api/v1.

Why it copies Espo's awkward parts instead of smoothing them: the client must
cope with them in production. Reproduced here (api-notes.md section 5 and the
Espo sources it cites):
- the duplicate check on create fires on an equal first+last name OR any equal
  address, answering 409 with `X-Status-Reason: duplicate` and a JSON array of
  the duplicates, whose `emailAddress` shows only their PRIMARY address;
  `X-Skip-Duplicate-Check: true` (or the legacy body flag) skips it;
- `equals` on `emailAddress` matches any address of a record, case-insensitively;
- `maxSize` above the limit answers 403 (not 400), with the reason in
  `X-Status-Reason` and an empty body; in the query-string form a non-integer
  `maxSize` is read like PHP's intval(), in the `searchParams` JSON form it is 400;
- errors carry their reason in `X-Status-Reason`; validation failures carry a
  `messageTranslation` body; a wrong API key gets 401 with an empty body;
- create answers 200 (not 201); ids are 17 hex characters; datetimes are
  `YYYY-MM-DD HH:MM:SS` in UTC, so many records share a `createdAt`;
- `GET Metadata?key=a.b.c` answers the value at that dotted path of the
  metadata the frontend gets (JSON null when there is none), without `key`
  the whole document; for a user without access to Leads, Espo drops
  `entityDefs.Lead`. Only the Lead's fields syncctl writes are emulated.
Espo documents no rate limit; `rate_limit` stands in for a proxy in front of it.
"""

from __future__ import annotations

import bisect
import json
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from syncctl.sandbox.server import Emulator, Fault, Request, Response, route

STATUS_OPTIONS = ("New", "Assigned", "In Process", "Converted", "Recycled", "Dead")
SOURCE_OPTIONS = (
    "",
    "Call",
    "Email",
    "Existing Customer",
    "Partner",
    "Public Relations",
    "Web Site",
    "Campaign",
    "Other",
)
#: Attributes of a stock Lead and their values when unset (the record's
#: value map as Espo outputs it; `emailAddressData` is added on reads).
LEAD_DEFAULTS: dict[str, Any] = {
    "id": None,
    "name": None,
    "deleted": False,
    "salutationName": None,
    "firstName": None,
    "lastName": None,
    "middleName": None,
    "title": None,
    "status": "New",
    "source": None,
    "industry": None,
    "opportunityAmount": None,
    "opportunityAmountCurrency": None,
    "opportunityAmountConverted": None,
    "website": None,
    "addressStreet": None,
    "addressCity": None,
    "addressState": None,
    "addressCountry": None,
    "addressPostalCode": None,
    "emailAddress": None,
    "emailAddressIsOptedOut": False,
    "emailAddressIsInvalid": False,
    "phoneNumber": None,
    "phoneNumberIsOptedOut": False,
    "phoneNumberIsInvalid": False,
    "doNotCall": False,
    "description": None,
    "convertedAt": None,
    "createdAt": None,
    "modifiedAt": None,
    "accountName": None,
    "assignedUserId": None,
    "assignedUserName": None,
    "createdById": None,
    "createdByName": None,
    "modifiedById": None,
    "modifiedByName": None,
    "teamsIds": [],
    "teamsNames": {},
    "campaignId": None,
    "campaignName": None,
    "createdAccountId": None,
    "createdAccountName": None,
    "createdContactId": None,
    "createdContactName": None,
    "createdOpportunityId": None,
    "createdOpportunityName": None,
    "originalEmailId": None,
    "originalEmailName": None,
    "streamUpdatedAt": None,
}
SELECTABLE = frozenset(LEAD_DEFAULTS) | {"emailAddressData"}
#: Attributes a client cannot set on create.
READ_ONLY = frozenset(
    {
        "id",
        "name",
        "deleted",
        "createdAt",
        "modifiedAt",
        "createdById",
        "createdByName",
        "modifiedById",
        "modifiedByName",
        "opportunityAmountConverted",
        "streamUpdatedAt",
        "convertedAt",
        "assignedUserName",
        "teamsNames",
        "campaignName",
        "createdAccountName",
        "createdContactName",
        "createdOpportunityName",
        "originalEmailName",
    }
)
MAX_LENGTH = {
    "firstName": 100,
    "lastName": 100,
    "middleName": 100,
    "title": 100,
    "website": 255,
    "addressStreet": 255,
    "addressCity": 100,
    "addressState": 100,
    "addressCountry": 100,
    "addressPostalCode": 40,
    "emailAddress": 255,
    "accountName": 255,
    "phoneNumber": 36,
}
#: Added to any `select` by Espo (ACL attributes), besides `id`.
ACL_ATTRIBUTES = ("assignedUserId", "createdById")
_EMAIL_RE = re.compile(r"^[^\s@]+@[^\s@]+\.[^\s@]+$")
_INT_PREFIX = re.compile(r"^\s*([+-]?\d+)")
_WHERE_TYPES = frozenset(
    {
        "and",
        "or",
        "not",
        "equals",
        "notEquals",
        "in",
        "notIn",
        "like",
        "notLike",
        "startsWith",
        "endsWith",
        "contains",
        "notContains",
        "isNull",
        "isNotNull",
        "isTrue",
        "isFalse",
        "greaterThan",
        "lessThan",
        "greaterThanOrEquals",
        "lessThanOrEquals",
        "after",
        "before",
        "between",
    }
)


class _BadRequest(Exception):
    """A 4xx/5xx the way Espo's exceptions become answers (reason header)."""

    def __init__(self, status: int, reason: str, body: Any = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.body = body


def espo_datetime(value: float) -> str:
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")


class EspoEmulator(Emulator):
    """Stateful EspoCRM (Leads, `App/user`) with Espo's answers and pitfalls."""

    name = "espocrm"
    prefix = "/api/v1"

    def __init__(
        self,
        *,
        api_key: str,
        latency: float = 0.0,
        max_size_limit: int = 200,
        lead_acl: Mapping[str, bool] | None = None,
        duplicate_body: str = "full",
        list_email_data: bool = True,
        rate_limit: tuple[int, float] | None = None,
        user_name: str = "syncctl-api",
        clock: Callable[[], float] = time.time,
        duplicate_check_on_update: bool = False,
    ) -> None:
        """Knobs:

        max_size_limit: Espo's `recordListMaxSizeLimit` (default 200).
        lead_acl: {"read": bool, "create": bool} of the API user's role.
        duplicate_body: "full" (Espo 8+: value maps of the duplicates) or
            "id_name" (Espo 7.x: only id and name per duplicate).
        list_email_data: answer `emailAddressData` in lists when it is
            selected (False: never in lists, as when no loader runs).
        rate_limit: (requests, window seconds) after which 429 with
            Retry-After is answered, like a proxy in front of Espo.
        duplicate_check_on_update: Espo's "Duplicate check on update"
            (Entity Manager), off unless an admin turns it on.
        """
        super().__init__(latency=latency)
        if duplicate_body not in ("full", "id_name"):
            raise ValueError("duplicate_body must be 'full' or 'id_name'")
        self._api_key = api_key
        self.max_size_limit = max_size_limit
        self.lead_acl = {"read": True, "create": True, "edit": True, **dict(lead_acl or {})}
        self.duplicate_body = duplicate_body
        self.list_email_data = list_email_data
        self.rate_limit = rate_limit
        self.clock = clock
        self.user_name = user_name
        self.duplicate_check_on_update = duplicate_check_on_update
        #: The Lead's `source` enum options (an admin may edit them in Espo).
        self.source_options: list[str] = list(SOURCE_OPTIONS)
        #: Request headers as received (without the API key), aligned with
        #: the order requests arrived in; for contract checks.
        self.header_log: list[tuple[str, str, dict[str, str]]] = []
        self._leads: dict[str, dict[str, Any]] = {}
        self._emails: dict[str, list[_Address]] = {}
        self._by_email: dict[str, list[str]] = {}
        self._by_name: dict[tuple[str, str], list[str]] = {}
        self._order: list[tuple[str, str]] = []  # (createdAt, id), ascending
        self._sorted: dict[str, list[str]] = {}  # orderBy -> ids ascending
        self._last_uniq = 0
        self._window_start = 0.0
        self._window_count = 0
        self._ids_lock = threading.Lock()
        self._now_cache: tuple[int, str] = (-1, "")
        #: The API user's id (`createdById` of what the client creates).
        self.user_id = self._new_id()

    # -- hooks ----------------------------------------------------------------

    def handle(self, request: Request) -> tuple[Response | None, Fault | None]:
        headers = {k: v for k, v in request.headers.items() if k != "x-api-key"}
        with self.lock:
            self.header_log.append((request.method, request.path, headers))
        return super().handle(request)

    def authenticate(self, request: Request) -> Response | None:
        given = request.headers.get("x-api-key")
        if given is None or not secrets.compare_digest(given.encode(), self._api_key.encode()):
            return Response(401, None)
        return None

    def throttle(self, request: Request) -> Response | None:
        if not self.rate_limit:
            return None
        limit, window = self.rate_limit
        now = time.monotonic()
        if now - self._window_start >= window:
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        if self._window_count > limit:
            wait = max(0.001, window - (now - self._window_start))
            return Response(429, None, {"Retry-After": f"{wait:.3f}"})
        return None

    def not_found(self, request: Request) -> Response:
        return Response(404, None, {"X-Status-Reason": "Not Found"})

    def error_response(self, status: int, message: str) -> Response:
        return Response(status, None, {"X-Status-Reason": message})

    def _route(self, request: Request) -> Response:
        try:
            return super()._route(request)
        except _BadRequest as exc:
            return Response(exc.status, exc.body, {"X-Status-Reason": exc.reason})

    # -- routes ---------------------------------------------------------------

    @route("GET", "/Lead")
    def list_leads(self, request: Request) -> Response:
        if not self.lead_acl.get("read"):
            raise _BadRequest(403, "No read access.")
        params = self._search_params(request)
        ids = self._select_ids(
            params["where"], params["orderBy"], params["order"], params["textFilter"]
        )
        offset, size = params["offset"], params["maxSize"]
        page = ids[offset : offset + size] if size > 0 else []
        if request.headers.get("x-no-total", "").lower() == "true":
            total = -1 if len(ids) > offset + len(page) and size > 0 else -2
        else:
            total = len(ids)
        select = params["select"]
        order_by = params["orderBy"] or "createdAt"
        records = [self._present(i, select, order_by, listing=True) for i in page]
        return Response(200, {"total": total, "list": records})

    @route("GET", "/Lead/{lead_id}")
    def read_lead(self, request: Request, lead_id: str) -> Response:
        if not self.lead_acl.get("read"):
            raise _BadRequest(403, "No read access.")
        if lead_id not in self._leads:
            raise _BadRequest(404, "Record not found.")
        return Response(200, self._present(lead_id, None, None, listing=False))

    @route("POST", "/Lead")
    def create_lead(self, request: Request) -> Response:
        if not self.lead_acl.get("create"):
            raise _BadRequest(403, "No create access.")
        try:
            data = request.json()
        except ValueError:
            raise _BadRequest(400, "Bad request.") from None
        if not isinstance(data, dict):
            raise _BadRequest(400, "Bad request.")
        header = request.headers.get("x-skip-duplicate-check")
        if header is not None:
            skip = header.lower() == "true"
        else:
            skip = bool(data.get("_skipDuplicateCheck") or data.get("skipDuplicateCheck"))
        attrs, emails = self._validated(data)
        if not skip:
            duplicates = self._duplicates(attrs, emails)
            if duplicates:
                return Response(
                    409,
                    [self._duplicate_record(i) for i in duplicates],
                    {"X-Status-Reason": "duplicate"},
                )
        lead_id = self._insert(attrs, emails, created_at=None)
        return Response(200, self._present(lead_id, None, None, listing=False))

    @route("PATCH", "/Lead/{lead_id}")
    def update_lead(self, request: Request, lead_id: str) -> Response:
        """Record Service::update: ACL, 404, validation, the duplicate check
        when turned on (the record itself excluded), then the change. Only `emailAddress`
        given replaces the primary address and keeps the others, as Espo's
        EmailAddress repository does; `emailAddressData` replaces them all."""
        if not self.lead_acl.get("edit"):
            raise _BadRequest(403, "No edit access.")
        if lead_id not in self._leads:
            raise _BadRequest(404, "Record not found.")
        try:
            data = request.json()
        except ValueError:
            raise _BadRequest(400, "Bad request.") from None
        if not isinstance(data, dict):
            raise _BadRequest(400, "Bad request.")
        attrs, emails = self._validated(data)
        record = self._leads[lead_id]
        old_emails = self._emails.get(lead_id, [])
        if "emailAddressData" not in data and emails:
            kept = [e for e in old_emails if not e.primary and e.lower != emails[0].lower]
            emails = [emails[0], *kept]
        elif "emailAddressData" not in data and "emailAddress" not in data:
            emails = old_emails
        names: dict[str, Any] = {k: attrs[k] for k in ("firstName", "lastName") if k in attrs}
        skip = (request.headers.get("x-skip-duplicate-check") or "").lower() == "true"
        if self.duplicate_check_on_update and not skip:
            probe: dict[str, Any] = {**record, **names}
            duplicates = [i for i in self._duplicates(probe, emails) if i != lead_id]
            if duplicates:
                return Response(
                    409,
                    [self._duplicate_record(i) for i in duplicates],
                    {"X-Status-Reason": "duplicate"},
                )
        with self.lock:
            self._by_name[_name_key(record)].remove(lead_id)
            for entry in old_emails:
                self._by_email[entry.lower].remove(lead_id)
            for key, value in attrs.items():
                if key in LEAD_DEFAULTS and key not in READ_ONLY and not key.startswith("email"):
                    record[key] = value
            self._emails[lead_id] = emails
            for entry in emails:
                self._by_email.setdefault(entry.lower, []).append(lead_id)
            self._by_name.setdefault(_name_key(record), []).append(lead_id)
            self._sorted.clear()
        return Response(200, self._present(lead_id, None, None, listing=False))

    @route("GET", "/App/user")
    def app_user(self, request: Request) -> Response:
        table: dict[str, Any] = {}
        read, create = bool(self.lead_acl.get("read")), bool(self.lead_acl.get("create"))
        if read or create:  # Espo drops scopes the user has no access to at all
            table["Lead"] = {
                "create": "yes" if create else "no",
                "read": "all" if read else "no",
                "edit": "no",
                "delete": "no",
                "stream": "all" if read else "no",
            }
        return Response(
            200,
            {
                "user": {
                    "id": self.user_id,
                    "name": self.user_name,
                    "userName": self.user_name,
                    "type": "api",
                    "isActive": True,
                    "authMethod": "ApiKey",
                    "emailAddress": None,
                    "teamsIds": [],
                    "defaultTeamId": None,
                    "emailAddressList": [],
                    "userEmailAddressList": [],
                    "excludeFromReplyEmailAddressList": [],
                },
                "acl": {
                    "table": table,
                    "fieldTable": {},
                    "fieldTableQuickAccess": {},
                    "assignmentPermission": "no",
                    "userPermission": "no",
                    "messagePermission": "no",
                    "portalPermission": "no",
                    "groupEmailAccountPermission": "no",
                    "exportPermission": "no",
                    "massUpdatePermission": "no",
                    "dataPrivacyPermission": "no",
                    "followerManagementPermission": "no",
                    "auditPermission": "no",
                    "mentionPermission": "no",
                    "userCalendarPermission": "no",
                },
                "preferences": {"timeZone": "UTC", "language": None},
                "token": None,
                "settings": {"version": "10.0.0", "recordsPerPage": 20},
                "language": "en_US",
                "appParams": {"maxUploadSize": 50.0, "isRestrictedMode": False},
            },
        )

    @route("GET", "/Metadata")
    def metadata(self, request: Request) -> Response:
        """Espo's `Metadata::getActionRead`: the frontend's metadata, or one key of it."""
        data = self._metadata()
        key = request.arg("key")
        if key is None:
            return Response(200, data)
        value: Any = data
        for part in key.split("."):  # Util::getValueByKey
            value = value.get(part) if isinstance(value, dict) else None
        # Encoded here: an absent key is the JSON `null`, not an empty body.
        return Response(200, json.dumps(value, separators=(",", ":")).encode())

    def _metadata(self) -> dict[str, Any]:
        """The part of Espo's metadata that concerns Leads, as a non-admin user gets it."""
        lead = {
            "fields": {
                "status": {"type": "enum", "options": list(STATUS_OPTIONS), "default": "New"},
                "source": {"type": "enum", "options": list(self.source_options), "default": ""},
            }
        }
        visible = bool(self.lead_acl.get("read") or self.lead_acl.get("create"))
        return {
            "entityDefs": {"Lead": lead} if visible else {},
            "scopes": {"Lead": {"entity": True, "object": True}} if visible else {},
        }

    # -- helpers for tests and seeding ------------------------------------------

    def add_lead(
        self,
        first_name: str | None,
        last_name: str | None,
        email: str | None,
        *,
        other_emails: Sequence[str] = (),
        created_at: str | float | None = None,
        **attrs: Any,
    ) -> str:
        """Seed a Lead directly (no duplicate check, no log entry); return its id.

        `other_emails` become non-primary addresses; `created_at` is an Espo
        datetime string or an epoch; `attrs` are Espo attributes (camelCase).
        """
        record: dict[str, Any] = {"firstName": first_name, "lastName": last_name}
        record.update(attrs)
        addresses = [a for a in (email, *other_emails) if a]
        emails = [_email_entry(a, primary=(i == 0)) for i, a in enumerate(addresses)]
        if isinstance(created_at, int | float):
            created_at = espo_datetime(float(created_at))
        with self.lock:
            return self._insert(record, emails, created_at=created_at)

    def leads(self) -> list[dict[str, Any]]:
        """Every Lead as a read answers it, oldest first."""
        with self.lock:
            return [self._present(i, None, None, listing=False) for _, i in self._order]

    def lead(self, lead_id: str) -> dict[str, Any] | None:
        with self.lock:
            if lead_id not in self._leads:
                return None
            return self._present(lead_id, None, None, listing=False)

    def find(self, email: str) -> list[dict[str, Any]]:
        """Leads holding `email` as any address (any case), oldest first."""
        with self.lock:
            ids = self._by_email.get(email.strip().lower(), [])
            ordered = sorted(ids, key=lambda i: (self._leads[i]["createdAt"], i))
            return [self._present(i, None, None, listing=False) for i in ordered]

    def remove_lead(self, lead_id: str) -> None:
        with self.lock:
            record = self._leads.pop(lead_id)
            for entry in self._emails.pop(lead_id, []):
                self._by_email[entry.lower].remove(lead_id)
            self._by_name[_name_key(record)].remove(lead_id)
            self._order.remove((record["createdAt"], lead_id))
            self._sorted.clear()

    def lead_count(self) -> int:
        with self.lock:
            return len(self._leads)

    def set_lead_acl(self, *, read: bool | None = None, create: bool | None = None) -> None:
        with self.lock:
            if read is not None:
                self.lead_acl["read"] = read
            if create is not None:
                self.lead_acl["create"] = create

    def created_leads(self) -> list[dict[str, Any]]:
        """The 200 answers of POST /Lead, in order (what the client created)."""
        return [
            e.response
            for e in self.exchanges("POST", r"/Lead$")
            if e.status == 200 and e.fault is None
        ]

    # -- storage ----------------------------------------------------------------

    def _new_id(self) -> str:
        """Espo's ids: uniqid() (13 hex, time based) + 4 random hex."""
        with self._ids_lock:
            now = self.clock()
            uniq = (int(now) << 20) + int((now % 1) * 1_000_000)
            uniq = max(uniq, self._last_uniq + 1)
            self._last_uniq = uniq
        return f"{uniq:013x}"[-13:] + f"{random.getrandbits(16):04x}"

    def _now(self) -> str:
        """The current Espo datetime (cached per second: seeding 100k leads is hot)."""
        second = int(self.clock())
        if second != self._now_cache[0]:
            self._now_cache = (second, espo_datetime(second))
        return self._now_cache[1]

    def _insert(
        self, attrs: Mapping[str, Any], emails: list[_Address], *, created_at: str | None
    ) -> str:
        """Store only what differs from the defaults: 100k leads must fit in memory."""
        lead_id = self._new_id()
        record = {
            k: v
            for k, v in attrs.items()
            if k in LEAD_DEFAULTS and k not in READ_ONLY and v != LEAD_DEFAULTS[k]
        }
        record.pop("emailAddress", None)
        record.pop("emailAddressIsOptedOut", None)
        record.pop("emailAddressIsInvalid", None)
        record["id"] = lead_id
        record["createdAt"] = created_at or self._now()
        self._leads[lead_id] = record
        self._emails[lead_id] = emails
        for entry in emails:
            self._by_email.setdefault(entry.lower, []).append(lead_id)
        self._by_name.setdefault(_name_key(record), []).append(lead_id)
        bisect.insort(self._order, (record["createdAt"], lead_id))
        if self._sorted:
            self._sorted.clear()
        return lead_id

    def _value(self, lead_id: str, attr: str) -> Any:
        record = self._leads[lead_id]
        if attr == "emailAddress":
            primary = next((e for e in self._emails[lead_id] if e.primary), None)
            return primary.address if primary else None
        if attr in ("emailAddressIsOptedOut", "emailAddressIsInvalid"):
            primary = next((e for e in self._emails[lead_id] if e.primary), None)
            if primary is None:
                return False
            return primary.opt_out if attr == "emailAddressIsOptedOut" else primary.invalid
        if attr == "name":
            parts = [record.get("firstName"), record.get("lastName")]
            return " ".join(p for p in parts if p) or None
        if attr == "emailAddressData":
            return [e.data() for e in self._emails[lead_id]]
        if attr == "modifiedAt":
            return record.get("modifiedAt", record["createdAt"])
        if attr == "createdById":
            return self.user_id
        if attr == "createdByName":
            return self.user_name
        if attr in record:
            return record[attr]
        default = LEAD_DEFAULTS.get(attr)
        return type(default)() if isinstance(default, list | dict) else default

    def _present(
        self, lead_id: str, select: list[str] | None, order_by: str | None, *, listing: bool
    ) -> dict[str, Any]:
        if select is None:
            attrs = list(LEAD_DEFAULTS)
            if not listing or self.list_email_data:
                attrs.append("emailAddressData")
        else:
            attrs = ["id"]
            for attr in (*ACL_ATTRIBUTES, *select, *([order_by] if order_by else [])):
                if attr in SELECTABLE and attr not in attrs:
                    attrs.append(attr)
            if "name" in attrs:  # Espo's select dependency for person names
                attrs += [a for a in ("firstName", "lastName") if a not in attrs]
            if listing and not self.list_email_data and "emailAddressData" in attrs:
                attrs.remove("emailAddressData")
        return {attr: self._value(lead_id, attr) for attr in attrs}

    def _duplicate_record(self, lead_id: str) -> dict[str, Any]:
        if self.duplicate_body == "id_name":
            return {"id": lead_id, "name": self._value(lead_id, "name")}
        # A value map as fetched from the database: no emailAddressData.
        return {attr: self._value(lead_id, attr) for attr in LEAD_DEFAULTS}

    # -- create -------------------------------------------------------------------

    def _validated(self, data: Mapping[str, Any]) -> tuple[dict[str, Any], list[_Address]]:
        attrs = {k: v for k, v in data.items() if k in LEAD_DEFAULTS and k not in READ_ONLY}
        for field, limit in MAX_LENGTH.items():
            value = attrs.get(field)
            if value is None:
                continue
            if not isinstance(value, str):
                raise _validation_failure(field, "valid")
            if len(value) > limit:
                raise _validation_failure(field, "maxLength")
        status = attrs.get("status")
        if status is None:
            attrs.pop("status", None)
        elif status not in STATUS_OPTIONS:
            raise _validation_failure("status", "valid")
        source = attrs.get("source")
        if source is not None and source not in self.source_options:
            raise _validation_failure("source", "valid")
        emails = self._input_emails(data)
        for entry in emails:
            if not _EMAIL_RE.match(entry.address):
                raise _validation_failure("emailAddress", "emailAddress")
        return attrs, emails

    @staticmethod
    def _input_emails(data: Mapping[str, Any]) -> list[_Address]:
        raw = data.get("emailAddressData")
        if isinstance(raw, list) and raw:
            entries = []
            for item in raw:
                if not isinstance(item, dict) or not isinstance(item.get("emailAddress"), str):
                    raise _validation_failure("emailAddress", "valid")
                entries.append(
                    _email_entry(
                        item["emailAddress"],
                        primary=bool(item.get("primary")),
                        opt_out=bool(item.get("optOut")),
                        invalid=bool(item.get("invalid")),
                    )
                )
            if not any(e.primary for e in entries):
                entries[0] = entries[0]._replace(primary=True)
            seen: set[str] = set()
            unique = []
            for entry in entries:
                if entry.lower not in seen:
                    seen.add(entry.lower)
                    unique.append(entry)
            unique.sort(key=lambda e: not e.primary)
            return unique
        address = data.get("emailAddress")
        if address is None or address == "":
            return []
        if not isinstance(address, str):
            raise _validation_failure("emailAddress", "valid")
        return [_email_entry(address.strip(), primary=True)]

    def _duplicates(self, attrs: Mapping[str, Any], emails: list[_Address]) -> list[str]:
        """Espo's General duplicate builder: (first AND last) OR any address."""
        found: list[str] = []
        if attrs.get("firstName") or attrs.get("lastName"):
            found += self._by_name.get(_name_key(attrs), [])
        for entry in emails:
            found += self._by_email.get(entry.lower, [])
        unique = list(dict.fromkeys(found))
        unique.sort(key=lambda i: (self._leads[i]["createdAt"], i))
        return unique

    # -- search ---------------------------------------------------------------------

    def _search_params(self, request: Request) -> dict[str, Any]:
        """Espo's SearchParamsFetcher, for both the query form and `searchParams`."""
        if any(key == "searchParams" for key, _ in request.query):
            try:
                raw = json.loads(request.arg("searchParams") or "")
            except ValueError:
                raise _BadRequest(400, "Invalid search params JSON.") from None
            if isinstance(raw, list) and not raw:
                raw = {}
            if not isinstance(raw, dict):
                raise _BadRequest(400, "Bad request.")
            max_size = raw.get("maxSize")
            if max_size is not None and (
                not isinstance(max_size, int) or isinstance(max_size, bool)
            ):
                raise _BadRequest(400, "maxSize must be integer.")
            offset = raw.get("offset")
            select = raw.get("select")
            where = raw.get("where")
            order_by, order = raw.get("orderBy"), raw.get("order")
            text_filter = raw.get("textFilter") or raw.get("q")
        else:
            query = _php_parse(request.query)
            where = query.get("whereGroup")
            if where is None:
                where = query.get("where")
            if where is not None and not isinstance(where, list | dict):
                where = None
            max_size = _php_intval(request.arg("maxSize"))
            offset = _php_intval(request.arg("offset"))
            order_by = request.arg("orderBy") or request.arg("sortBy") or None
            order = request.arg("order") or None
            if order is None and request.arg("asc"):
                order = "ASC" if request.arg("asc") == "true" else "DESC"
            raw_select = request.arg("attributeSelect") or request.arg("select")
            select = raw_select.split(",") if raw_select else None
            text_filter = request.arg("textFilter") or request.arg("q") or None
        if isinstance(where, dict):
            where = list(where.values())
        if select is not None and (
            not isinstance(select, list) or not all(isinstance(s, str) for s in select)
        ):
            raise _BadRequest(400, "select should be array.")
        if order_by is not None and not isinstance(order_by, str):
            raise _BadRequest(400, "orderBy should be string.")
        if order is not None:
            if not isinstance(order, str) or order.upper() not in ("ASC", "DESC"):
                raise _BadRequest(400, "order value is bad.")
            order = order.upper()
        if offset is not None and (not isinstance(offset, int) or isinstance(offset, bool)):
            raise _BadRequest(400, "offset should be int.")
        if where is not None and not isinstance(where, list):
            raise _BadRequest(400, "where should be array.")
        if max_size is None:
            max_size = self.max_size_limit
        if max_size > self.max_size_limit:
            raise _BadRequest(
                403, f"Max size should not exceed {self.max_size_limit}. Use offset and limit."
            )
        if order_by is not None and order_by not in SELECTABLE:
            raise _BadRequest(500, f"Order by non-existing field '{order_by}'.")
        for item in where or []:
            _check_where_item(item)
        return {
            "where": where or [],
            "maxSize": max(0, max_size),
            "offset": max(0, offset or 0),
            "select": select,
            "orderBy": order_by,
            "order": order,
            "textFilter": text_filter if isinstance(text_filter, str) else None,
        }

    def _ordered_ids(self, order_by: str | None, order: str | None) -> Sequence[str]:
        """All ids in the asked order, as a view (no copy of 100k ids per page)."""
        # Lead's default order: createdAt DESC; Espo adds id in the same direction.
        order_by = order_by or "createdAt"
        desc = (order or ("DESC" if order_by == "createdAt" else "ASC")) == "DESC"
        if order_by == "createdAt":
            return _IdView(self._order, desc)
        cached = self._sorted.get(order_by)
        if cached is None:
            cached = sorted(self._leads, key=lambda i: (_sort_key(self._value(i, order_by)), i))
            self._sorted[order_by] = cached
        return _IdView(cached, desc)

    def _select_ids(
        self, where: list[Any], order_by: str | None, order: str | None, text_filter: str | None
    ) -> Sequence[str]:
        candidates = self._email_candidates(where)
        if candidates is not None:  # index lookup, then order the few hits
            ordered: Sequence[str] = self._sort_subset(candidates, order_by, order)
        else:
            ordered = self._ordered_ids(order_by, order)
        if not where and not text_filter:
            return ordered
        return [
            i
            for i in ordered
            if all(self._matches(i, item) for item in where)
            and (text_filter is None or self._text_matches(i, text_filter))
        ]

    def _sort_subset(self, ids: set[str], order_by: str | None, order: str | None) -> list[str]:
        order_by = order_by or "createdAt"
        desc = (order or ("DESC" if order_by == "createdAt" else "ASC")) == "DESC"
        return sorted(ids, key=lambda i: (_sort_key(self._value(i, order_by)), i), reverse=desc)

    def _email_candidates(self, where: list[Any]) -> set[str] | None:
        """Ids that can match a top-level `equals` on emailAddress (index lookup)."""
        for item in where:
            if item.get("type") == "equals" and item.get("attribute") == "emailAddress":
                value = item.get("value")
                if isinstance(value, str):
                    return set(self._by_email.get(value.strip().lower(), []))
        return None

    def _text_matches(self, lead_id: str, text: str) -> bool:
        """Espo's text filter: LIKE 'text%' on name and email (`*` is a wildcard)."""
        pattern = _like_regex(text.replace("*", "%") + "%")
        values = [self._value(lead_id, a) for a in ("name", "firstName", "lastName")]
        values += [e.address for e in self._emails[lead_id]]
        return any(isinstance(v, str) and pattern.match(v) for v in values)

    def _matches(self, lead_id: str, item: Mapping[str, Any]) -> bool:
        kind = item["type"]
        value = item.get("value")
        if kind in ("and", "or", "not"):
            subs = value if isinstance(value, list) else list((value or {}).values())
            results = [self._matches(lead_id, sub) for sub in subs]
            if kind == "or":
                return any(results)
            return all(results) if kind == "and" else not all(results)
        attr = item.get("attribute", "")
        if attr == "emailAddress":
            values: list[Any] = [e.address for e in self._emails[lead_id]]
            if kind in ("isNull", "isNotNull"):
                return (not values) == (kind == "isNull")
            if kind in ("notEquals", "notIn", "notLike", "notContains"):
                positive = {"notEquals": "equals", "notIn": "in", "notLike": "like"}.get(
                    kind, "contains"
                )
                return not any(_compare(positive, v, value) for v in values)
            return any(_compare(kind, v, value) for v in values)
        actual = self._value(lead_id, attr) if attr in SELECTABLE else None
        return _compare(kind, actual, value)


# -- module helpers ---------------------------------------------------------------


class _IdView(Sequence[str]):
    """Ids of a sorted list (of ids or of (key, id) pairs), possibly reversed."""

    def __init__(self, items: list[Any], reverse: bool) -> None:
        self._items = items
        self._reverse = reverse

    def __len__(self) -> int:
        return len(self._items)

    def _id(self, item: Any) -> str:
        return item[1] if isinstance(item, tuple) else item

    def __getitem__(self, index: Any) -> Any:
        n = len(self._items)
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(n))]
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(index)
        return self._id(self._items[n - 1 - index if self._reverse else index])


class _Address(NamedTuple):
    """One address of a Lead (a tuple: 100k leads stay small)."""

    address: str
    lower: str
    primary: bool
    opt_out: bool
    invalid: bool

    def data(self) -> dict[str, Any]:
        """The `emailAddressData` item Espo answers."""
        return {
            "emailAddress": self.address,
            "lower": self.lower,
            "primary": self.primary,
            "optOut": self.opt_out,
            "invalid": self.invalid,
        }


def _email_entry(
    address: str, *, primary: bool, opt_out: bool = False, invalid: bool = False
) -> _Address:
    return _Address(address, address.lower(), primary, opt_out, invalid)


def _name_key(record: Mapping[str, Any]) -> tuple[str, str]:
    """MySQL's default collation: case-insensitive, trailing spaces ignored."""
    first = record.get("firstName") or ""
    last = record.get("lastName") or ""
    return (str(first).lower().rstrip(), str(last).lower().rstrip())


def _validation_failure(field: str, kind: str) -> _BadRequest:
    body = {
        "messageTranslation": {
            "label": "validationFailure",
            "scope": None,
            "data": {"field": field, "type": kind},
        }
    }
    return _BadRequest(400, "validationFailure", body)


def _php_intval(raw: str | None) -> int | None:
    """PHP's intval() on a query value: '' is unset, 'abc' is 0, '12x' is 12."""
    if raw is None or raw == "":
        return None
    match = _INT_PREFIX.match(raw)
    return int(match.group(1)) if match else 0


def _php_parse(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """PHP's parsing of `a[0][b]=x&a[0][c][]=y` into nested arrays."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = re.match(r"^([^\[]+)((?:\[[^\]]*\])*)$", key)
        if not match:
            root[key] = value
            continue
        parts = [match.group(1), *re.findall(r"\[([^\]]*)\]", match.group(2))]
        node: dict[str, Any] = root
        for i, part in enumerate(parts):
            if part == "":
                numeric = [int(k) for k in node if k.isdigit()]
                part = str(max(numeric) + 1 if numeric else 0)
            if i == len(parts) - 1:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
    return {k: _listify(v) for k, v in root.items()}


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def _check_where_item(item: Any) -> None:
    if not isinstance(item, dict):
        raise _BadRequest(400, "Bad where item.")
    kind = item.get("type")
    if kind not in _WHERE_TYPES:
        raise _BadRequest(400, f"Unknown where item type '{kind}'.")
    if kind in ("and", "or", "not"):
        value = item.get("value") or []
        for sub in value if isinstance(value, list) else list(value.values()):
            _check_where_item(sub)
    elif not isinstance(item.get("attribute"), str):
        raise _BadRequest(400, "Bad where item. No attribute.")


def _like_regex(pattern: str) -> re.Pattern[str]:
    parts = [".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern]
    return re.compile("^" + "".join(parts) + "$", re.IGNORECASE | re.DOTALL)


def _ci(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _compare(kind: str, actual: Any, value: Any) -> bool:
    """One where item against one value, with MySQL's case-insensitive strings."""
    if kind == "isNull":
        return actual is None or actual == ""
    if kind == "isNotNull":
        return not (actual is None or actual == "")
    if kind == "isTrue":
        return actual is True
    if kind == "isFalse":
        return actual is False or actual is None
    if kind in ("in", "notIn"):
        options = value if isinstance(value, list) else [value]
        inside = _ci(actual) in {_ci(o) for o in options}
        return inside if kind == "in" else not inside
    if actual is None:
        return kind in ("notEquals", "notLike", "notContains") and value is not None
    if kind == "equals":
        return _ci(actual) == _ci(value) or str(_ci(actual)) == str(_ci(value))
    if kind == "notEquals":
        return not _compare("equals", actual, value)
    text, needle = str(actual), "" if value is None else str(value)
    if kind == "contains":
        return needle.lower() in text.lower()
    if kind == "notContains":
        return needle.lower() not in text.lower()
    if kind == "startsWith":
        return text.lower().startswith(needle.lower())
    if kind == "endsWith":
        return text.lower().endswith(needle.lower())
    if kind in ("like", "notLike"):
        hit = _like_regex(needle).match(text) is not None
        return hit if kind == "like" else not hit
    if kind == "between" and isinstance(value, list) and len(value) == 2:
        return _ci(value[0]) <= _ci(actual) <= _ci(value[1])
    ordering = {
        "greaterThan": lambda a, b: a > b,
        "after": lambda a, b: a > b,
        "lessThan": lambda a, b: a < b,
        "before": lambda a, b: a < b,
        "greaterThanOrEquals": lambda a, b: a >= b,
        "lessThanOrEquals": lambda a, b: a <= b,
    }.get(kind)
    if ordering is None:
        return False
    try:
        if isinstance(actual, int | float) and not isinstance(actual, bool):
            return bool(ordering(float(actual), float(value)))
        return bool(ordering(_ci(actual), _ci(str(value))))
    except (TypeError, ValueError):
        return False


def _sort_key(value: Any) -> tuple[int, Any]:
    """MySQL puts NULLs first in ascending order; strings compare case-insensitively."""
    if value is None:
        return (0, "")
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, int | float):
        return (1, value)
    return (2, str(value).lower())
