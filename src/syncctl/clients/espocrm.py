"""EspoCRM client: find and create Leads (desired-state rule 12).

Why this module exists apart from a generic REST helper: Espo's duplicate
check is part of the contract. A create answers 409 not only for an equal
email but also for an equal first+last name, so "create if missing" needs a
decision: the same email means the Lead exists (return it, create nothing);
only another email on every duplicate means a different person, who is then
created with `X-Skip-Duplicate-Check: true`. Espo reports failure reasons in
the `X-Status-Reason` header (and, for validation, a `messageTranslation`
body), which the messages here pass on. See api-notes.md section 5.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from syncctl.clients import VendorClient, header_credential
from syncctl.errors import BadResponse, ConfigError, Conflict, InvalidRequest
from syncctl.net.http import CallStats, RetryPolicy, ServiceHTTP, expect_dict, parse_json

SERVICE = "espocrm"
API_PREFIX = "/api/v1"
#: Espo answers 403 ("Max size should not exceed 200") above this page size.
MAX_PAGE_SIZE = 200
#: Page size of an email lookup: one page in every sane case.
FIND_PAGE_SIZE = 20
#: Addresses per batched lookup: an `or` of that many `equals` keeps the URL near 4 KB.
EMAILS_PER_QUERY = 25
#: Attributes read for a Lead. `id` is always returned by Espo and is not a
#: selectable attribute in the spec, so it is not listed.
LEAD_SELECT: tuple[str, ...] = (
    "firstName",
    "lastName",
    "emailAddress",
    "emailAddressData",
    "source",
    "status",
    "createdAt",
)
#: A lookup whose answer holds more records than this that do not carry the
#: email (and cannot be confirmed from their data) means the server ignored
#: the filter; confirming each by a read would be a scan.
_MAX_CONFIRM_READS = 5


def _norm(email: str) -> str:
    """Espo compares addresses with LOWER() on both sides."""
    return email.strip().lower()


@dataclass(frozen=True)
class Lead:
    """The fields of an Espo Lead that syncctl uses."""

    id: str
    first_name: str | None
    last_name: str | None
    #: The primary address (`emailAddress`).
    email: str | None
    #: Every address of the record, primary first, when Espo sent
    #: `emailAddressData`; otherwise just the primary one (or nothing).
    email_addresses: tuple[str, ...]
    source: str | None
    status: str | None
    #: UTC; None when Espo did not send it or sent something unparsable.
    created_at: datetime | None
    #: False when the record came without `emailAddressData`, so addresses
    #: other than the primary one are unknown.
    addresses_complete: bool = True

    def has_email(self, email: str) -> bool:
        """True when one of the record's known addresses equals `email` (any case)."""
        wanted = _norm(email)
        return any(_norm(a) == wanted for a in (*self.email_addresses, self.email or ""))

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p)


@dataclass(frozen=True)
class LeadResult:
    """The outcome of `create_lead`: the Lead for the email, and whether we made it."""

    lead: Lead
    created: bool
    #: Same-name Leads of other people that Espo's duplicate check reported
    #: before the create was repeated with the check skipped.
    other_people: tuple[Lead, ...] = ()


@dataclass(frozen=True)
class LeadField:
    """A Lead field's definition in Espo's metadata (`entityDefs.Lead.fields.<name>`)."""

    name: str
    type: str | None
    #: The values an enum field accepts (as stored, not as labelled); None
    #: for a field of another type, which takes any value.
    options: tuple[str, ...] | None


@dataclass(frozen=True)
class AccessReport:
    """What the API user may do with Leads (`GET App/user`), for `doctor`."""

    user_id: str | None
    user_name: str | None
    user_type: str | None
    #: Espo's level strings ("all", "team", "own", "no"; "yes"/"no" for create)
    #: or None when the ACL table does not mention Leads.
    lead_read_level: str | None
    lead_create_level: str | None
    can_read_leads: bool
    can_create_leads: bool

    @property
    def ok(self) -> bool:
        return self.can_read_leads and self.can_create_leads


class EspoClient(VendorClient):
    """Typed access to the EspoCRM REST API (`{site}/api/v1`) with an API key."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        stats: CallStats | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        max_concurrency: int = 4,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        key = (api_key or "").strip()
        if not key:
            raise ConfigError(
                "espocrm: the API key is empty", hint="set ESPOCRM_API_KEY in the environment"
            )
        key = header_credential(key, "ESPOCRM_API_KEY", SERVICE)
        site = base_url.strip().rstrip("/")
        # Tolerate a base URL that already names the API root.
        if site.endswith(API_PREFIX):
            site = site[: -len(API_PREFIX)]
        self.base_url = site
        self._http = ServiceHTTP(
            SERVICE,
            site,
            headers={"X-Api-Key": key},
            timeout=timeout,
            retry=retry,
            stats=stats,
            max_concurrency=max_concurrency,
            error_message=espo_error_message,
            transport=transport,
        )

    # -- reads ----------------------------------------------------------------

    def find_leads_by_email(self, email: str) -> list[Lead]:
        """Leads holding `email` as any of their addresses, oldest first.

        Espo's `equals` on `emailAddress` matches any address of a record,
        case-insensitively; the answer is re-checked here so that a server or
        proxy that drops the filter cannot make every Lead look like a match.
        """
        wanted = email.strip()
        if not wanted:
            raise ValueError("email must not be empty")
        where = [{"type": "equals", "attribute": "emailAddress", "value": wanted}]
        found: list[Lead] = []
        unconfirmed: list[Lead] = []
        for lead in self._iter_list(where=where, page_size=FIND_PAGE_SIZE, select=LEAD_SELECT):
            if lead.has_email(wanted):
                found.append(lead)
            elif not lead.addresses_complete:
                unconfirmed.append(lead)
        if len(unconfirmed) > _MAX_CONFIRM_READS:
            raise BadResponse(
                SERVICE,
                f"GET {API_PREFIX}/Lead ignored the email filter ({len(unconfirmed)} records "
                "without that address)",
                hint="check that no proxy strips query parameters",
            )
        # A match on a secondary address comes without emailAddressData on some
        # versions: a read of the record shows all of them.
        for lead in unconfirmed:
            full = self.get_lead(lead.id)
            if full.has_email(wanted):
                found.append(full)
        return found

    def emails_with_leads(self, emails: Iterable[str]) -> set[str]:
        """Which of `emails` (lower-cased) some Lead holds: `find_leads_by_email` in batches.

        One query per EMAILS_PER_QUERY addresses, an `or` of `equals`; an
        address matched only through a secondary address the list answer
        does not show is confirmed with a lookup of its own.
        """
        wanted = sorted({e.strip().lower() for e in emails if e.strip()})
        found: set[str] = set()
        for start in range(0, len(wanted), EMAILS_PER_QUERY):
            chunk = wanted[start : start + EMAILS_PER_QUERY]
            where = [
                {
                    "type": "or",
                    "value": [
                        {"type": "equals", "attribute": "emailAddress", "value": e} for e in chunk
                    ],
                }
            ]
            unconfirmed = 0
            for lead in self._iter_list(where=where, page_size=MAX_PAGE_SIZE, select=LEAD_SELECT):
                hits = {e for e in chunk if lead.has_email(e)}
                found |= hits
                if hits:
                    continue
                if lead.addresses_complete:
                    raise BadResponse(
                        SERVICE,
                        f"GET {API_PREFIX}/Lead ignored the email filter (a record holds none "
                        "of the addresses asked for)",
                        hint="check that no proxy strips query parameters",
                    )
                unconfirmed += 1
            if unconfirmed:
                for email in chunk:
                    if email not in found and self.find_leads_by_email(email):
                        found.add(email)
        return found

    def get_lead(self, lead_id: str) -> Lead:
        """One Lead by id (a read includes every address). NotFound if absent."""
        if not lead_id or "/" in lead_id:
            raise ValueError("lead id must be a non-empty path segment")
        response = self._http.request("GET", f"{API_PREFIX}/Lead/{lead_id}")
        body = expect_dict(SERVICE, parse_json(SERVICE, response), f"GET {API_PREFIX}/Lead/{{id}}")
        return _parse_lead(body, f"GET {API_PREFIX}/Lead/{{id}}")

    def iter_leads(
        self, *, page_size: int = MAX_PAGE_SIZE, select: Sequence[str] = LEAD_SELECT
    ) -> Iterator[Lead]:
        """Every Lead, oldest first (createdAt, then id: stable offset paging)."""
        yield from self._iter_list(where=None, page_size=page_size, select=select)

    def check_access(self) -> AccessReport:
        """Whether the API user may read and create Leads (for `doctor`).

        `GET App/user` answers the user and its ACL map; non-admin users get
        the scopes they cannot access removed from `acl.table`.
        """
        response = self._http.request("GET", f"{API_PREFIX}/App/user")
        what = f"GET {API_PREFIX}/App/user"
        body = expect_dict(SERVICE, parse_json(SERVICE, response), what)
        user = body.get("user")
        if not isinstance(user, dict):
            raise BadResponse(SERVICE, f"{what}: no 'user' object in the answer")
        acl = body.get("acl")
        table = acl.get("table") if isinstance(acl, dict) else None
        if not isinstance(table, dict):
            raise BadResponse(SERVICE, f"{what}: no 'acl.table' object in the answer")
        user_type = _opt_str(user.get("type"))
        is_admin = user_type in ("admin", "super-admin") or user.get("isAdmin") is True
        entry = table.get("Lead")
        read_level = create_level = None
        if isinstance(entry, dict):
            read_level = _opt_str(entry.get("read"))
            create_level = _opt_str(entry.get("create"))
            can_read = _grants(entry.get("read"))
            can_create = _grants(entry.get("create"))
        elif isinstance(entry, bool):
            can_read = can_create = entry
        else:  # absent: no access for a regular user, everything for an admin
            can_read = can_create = is_admin
        return AccessReport(
            user_id=_opt_str(user.get("id")),
            user_name=_opt_str(user.get("userName")),
            user_type=user_type,
            lead_read_level=read_level,
            lead_create_level=create_level,
            can_read_leads=can_read,
            can_create_leads=can_create,
        )

    def lead_field(self, name: str) -> LeadField | None:
        """The Lead field `name` as Espo's metadata defines it (for `doctor`).

        `GET Metadata?key=entityDefs.Lead.fields.<name>` answers that part of
        the metadata the web app loads (any user may read it; a user without
        Lead access gets no `entityDefs.Lead`), JSON null when it is absent.
        Versions that ignore `key` answer the whole document, which is
        walked here. None: Espo shows no such field to this user.
        """
        path = ("entityDefs", "Lead", "fields", name)
        response = self._http.request(
            "GET", f"{API_PREFIX}/Metadata", params=[("key", ".".join(path))]
        )
        value = parse_json(SERVICE, response)
        if isinstance(value, dict) and "entityDefs" in value:
            for part in path:
                value = value.get(part) if isinstance(value, dict) else None
        if value is None or value == []:  # PHP's empty array is a JSON list
            return None
        what = f"GET {API_PREFIX}/Metadata (Lead field {name})"
        defs = expect_dict(SERVICE, value, what)
        field_type = _opt_str(defs.get("type"))
        options = defs.get("options")
        if field_type not in ("enum", "multiEnum", "checklist", "array"):
            return LeadField(name, field_type, None)
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise BadResponse(SERVICE, f"{what}: an {field_type} field without a list of options")
        return LeadField(name, field_type, tuple(options))

    # -- writes ---------------------------------------------------------------

    def create_lead(
        self,
        *,
        first_name: str,
        last_name: str,
        email: str,
        source: str,
        status: str = "New",
        description: str | None = None,
    ) -> LeadResult:
        """Make sure a Lead with `email` exists, never creating a second one.

        Rule 12: POST with Espo's duplicate check on. On its 409, a duplicate
        carrying this email is the Lead (nothing is created); when every
        duplicate carries another email (a namesake), the POST is repeated
        with the check skipped. A 409 that is not a duplicate list raises
        Conflict. The POST is not idempotent: a timeout raises OutcomeUnknown.
        """
        wanted = email.strip()
        if not wanted:
            raise ValueError("email must not be empty")
        body: dict[str, Any] = {
            "firstName": first_name,
            "lastName": last_name,
            "emailAddress": wanted,
            "status": status,
            "source": source,
        }
        if description is not None:
            body["description"] = description
        path = f"{API_PREFIX}/Lead"
        response = self._post_lead(body, source=source, ok=(409,))
        if response.status_code != 409:
            return LeadResult(self._created(response), created=True)

        duplicates = _parse_duplicates(response)
        if duplicates is None:
            detail = espo_error_message(response) or "no reason given"
            raise Conflict(
                SERVICE,
                f"POST {path} answered 409 without a duplicate list ({detail})",
                hint="Espo refused the record; check its log and the Lead's field rules",
                status=409,
                payload=_json_or_none(response),
            )
        same = [d for d in duplicates if d.has_email(wanted)]
        if same:
            return LeadResult(same[0], created=False)
        # The 409 shows the primary address only, and some versions send only
        # id and name: a duplicate may still hold this email as another
        # address. Espo's search matches any address, so ask it.
        existing = self.find_leads_by_email(wanted)
        if existing:
            return LeadResult(existing[0], created=False)
        others = [self._with_addresses(d) for d in duplicates]
        without_email = [d for d in others if not d.email_addresses and not d.email]
        if without_email:
            ids = ", ".join(d.id for d in without_email)
            raise Conflict(
                SERVICE,
                f"POST {path}: a Lead named {first_name} {last_name} without an email exists "
                f"({ids}); it may be this person",
                hint="add the email to that Lead in EspoCRM or delete it; the next run continues",
                status=409,
                payload=_json_or_none(response),
            )
        response = self._post_lead(body, source=source, headers={"X-Skip-Duplicate-Check": "true"})
        return LeadResult(self._created(response), created=True, other_people=tuple(others))

    def move_lead(self, lead_id: str, email: str) -> Lead:
        """Give a Lead a new primary address (its contact changed email, rule 22).

        PATCH is idempotent, so it is retried like a read. A Lead that already
        has this address is another record and a Conflict: looked up first,
        since Espo's duplicate check on update is off unless an admin turns
        it on (api-notes 5.4). Where it is on, a namesake of another address
        is no reason to refuse, so the PATCH is repeated with the check
        skipped. NotFound when the Lead was deleted.
        """
        wanted = email.strip()
        path = f"{API_PREFIX}/Lead/{lead_id}"
        holder = [lead for lead in self.find_leads_by_email(wanted) if lead.id != lead_id]
        if holder:
            raise Conflict(
                SERVICE,
                f"PATCH {path}: Lead {holder[0].id} already has {wanted}",
                hint="merge the two Leads in EspoCRM; the next run continues",
                status=409,
            )
        body = {"emailAddress": wanted}
        response = self._http.request("PATCH", path, json_body=body, ok=(409,))
        if response.status_code == 409:
            duplicates = _parse_duplicates(response) or []
            same = [d for d in duplicates if d.has_email(wanted)]
            if same:
                raise Conflict(
                    SERVICE,
                    f"PATCH {path}: Lead {same[0].id} already has {wanted}",
                    hint="merge the two Leads in EspoCRM; the next run continues",
                    status=409,
                )
            response = self._http.request(
                "PATCH", path, json_body=body, headers={"X-Skip-Duplicate-Check": "true"}
            )
        what = f"PATCH {path}"
        return _parse_lead(expect_dict(SERVICE, parse_json(SERVICE, response), what), what)

    # -- internals ------------------------------------------------------------

    def _post_lead(
        self,
        body: dict[str, Any],
        *,
        source: str,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (),
    ) -> httpx.Response:
        """POST a Lead; a refused `source` names the config key behind it."""
        try:
            return self._http.request(
                "POST", f"{API_PREFIX}/Lead", json_body=body, headers=headers, ok=ok
            )
        except InvalidRequest as exc:
            if "field 'source'" in exc.message and exc.hint is None:
                exc.hint = (
                    f"[espocrm] lead_source = {source!r} is not a value the Lead's source "
                    "field accepts; `syncctl doctor` lists the allowed ones"
                )
            raise

    def _created(self, response: httpx.Response) -> Lead:
        what = f"POST {API_PREFIX}/Lead"
        return _parse_lead(expect_dict(SERVICE, parse_json(SERVICE, response), what), what)

    def _with_addresses(self, lead: Lead) -> Lead:
        """The duplicate with its addresses known (a read when the 409 lacked them)."""
        if lead.email is not None or lead.addresses_complete:
            return lead
        return self.get_lead(lead.id)

    def _iter_list(
        self,
        *,
        where: list[dict[str, Any]] | None,
        page_size: int,
        select: Sequence[str],
    ) -> Iterator[Lead]:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        size = min(page_size, MAX_PAGE_SIZE)
        base: list[tuple[str, str]] = []
        for i, item in enumerate(where or []):
            base += _flatten(f"where[{i}]", item)
        if select:
            base.append(("select", ",".join(select)))
        base += [("orderBy", "createdAt"), ("order", "asc"), ("maxSize", str(size))]
        what = f"GET {API_PREFIX}/Lead"
        seen: set[str] = set()
        offset = 0
        while True:
            response = self._http.request(
                "GET",
                f"{API_PREFIX}/Lead",
                params=[*base, ("offset", str(offset))],
                headers={"X-No-Total": "true"},
            )
            body = expect_dict(SERVICE, parse_json(SERVICE, response), what)
            records = body.get("list")
            if not isinstance(records, list):
                raise BadResponse(SERVICE, f"{what}: 'list' is missing or not an array")
            total = body.get("total")
            for record in records:
                if not isinstance(record, dict):
                    raise BadResponse(SERVICE, f"{what}: a 'list' item is not an object")
                lead = _parse_lead(record, what)
                if lead.id not in seen:
                    seen.add(lead.id)
                    yield lead
            offset += len(records)
            if len(records) < size or not records:
                return
            # -2: no more records; a real total (X-No-Total ignored) ends too.
            if (
                isinstance(total, int | float)
                and not isinstance(total, bool)
                and (total == -2 or (total >= 0 and offset >= total))
            ):
                return


def espo_error_message(response: httpx.Response) -> str:
    """Espo's reason for an error: `X-Status-Reason`, or a validation body."""
    reason = " ".join(response.headers.get("x-status-reason", "").split())
    body = _json_or_none(response)
    detail = ""
    if isinstance(body, dict):
        translation = body.get("messageTranslation")
        if isinstance(translation, dict):
            label = translation.get("label")
            data = translation.get("data")
            detail = str(label or "")
            if isinstance(data, dict) and data.get("field"):
                detail += f": field '{data['field']}'"
                if data.get("type"):
                    detail += f" failed '{data['type']}'"
        elif isinstance(body.get("message"), str):
            detail = body["message"]
    if detail and reason and reason not in detail:
        text = f"{reason} ({detail})" if reason != "validationFailure" else detail
    else:
        text = detail or reason
    return " ".join(text.split())[:200]


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _parse_duplicates(response: httpx.Response) -> list[Lead] | None:
    """The records of a duplicate 409, or None when the body is not such a list."""
    reason = response.headers.get("x-status-reason")
    if reason is not None and reason.strip().lower() != "duplicate":
        return None
    body = _json_or_none(response)
    if isinstance(body, dict) and isinstance(body.get("list"), list):
        body = body["list"]
    if not isinstance(body, list) or not body:
        return None
    leads = []
    for record in body:
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            return None
        leads.append(_parse_lead(record, "409 duplicate record"))
    return leads


def _parse_lead(record: Mapping[str, Any], what: str) -> Lead:
    lead_id = record.get("id")
    if not isinstance(lead_id, str) or not lead_id:
        raise BadResponse(SERVICE, f"{what}: a Lead without a string 'id'")
    primary = _opt_str(record.get("emailAddress"))
    data = record.get("emailAddressData")
    addresses: list[str] = []
    complete = isinstance(data, list)
    if isinstance(data, list):
        # Primary first, as Espo orders it; tolerate items of odd shape.
        items = [d for d in data if isinstance(d, dict) and isinstance(d.get("emailAddress"), str)]
        items.sort(key=lambda d: not d.get("primary"))
        addresses = [d["emailAddress"] for d in items]
    if primary and all(_norm(a) != _norm(primary) for a in addresses):
        addresses.insert(0, primary)
    if not complete and "emailAddress" in record and primary is None:
        complete = True  # no primary address means no address at all
    return Lead(
        id=lead_id,
        first_name=_opt_str(record.get("firstName")),
        last_name=_opt_str(record.get("lastName")),
        email=primary,
        email_addresses=tuple(addresses),
        source=_opt_str(record.get("source")),
        status=_opt_str(record.get("status")),
        created_at=_parse_datetime(record.get("createdAt")),
        addresses_complete=complete,
    )


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def _parse_datetime(value: Any) -> datetime | None:
    """Espo's `YYYY-MM-DD HH:MM:SS` (UTC)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _grants(level: Any) -> bool:
    """An ACL level that allows the action ("yes", "all", "team", "own")."""
    if isinstance(level, bool):
        return level
    return isinstance(level, str) and level.lower() not in ("no", "")


def _flatten(prefix: str, value: Any) -> list[tuple[str, str]]:
    """A nested where item as PHP-style query parameters (`where[0][value][1][type]=...`)."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _flatten(f"{prefix}[{k}]", v)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _flatten(f"{prefix}[{i}]", v)]
    return [(prefix, str(value))]
