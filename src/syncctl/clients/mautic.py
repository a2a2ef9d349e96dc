"""Mautic 5.1 REST API client (HTTP Basic auth): contacts, template email sends, email stats.

Why the calls look the way they do (api-notes.md section 2):

- Polling: `where dateModified gte T` ordered by the *column* `date_modified`
  (the API does not convert `orderBy`; `dateModified` there is a SQL error).
  Offsets skip rows that change while paging, so every page re-queries from
  the last seen timestamp and de-duplicates by id; a page full of one
  timestamp is drained by id (`dateModified eq T`, `id gt X`) so paging
  neither loops nor skips. Mautic 5.1 leaves `dateModified` null until a
  contact's first edit (filled on create only since 6.0), so never-edited
  contacts are read by `dateAdded` in a second stream and merged in.
- Lookup by email: `where email eq` is exact and case-insensitive (MySQL
  collation) but Mautic HTML-encodes `' " & < >` in `where` values, so such
  addresses are looked up with a LIKE on their longest plain segment and
  filtered here; equality is always re-checked client-side.
- Writes: PATCH only the fields that change, never `email` (it merges
  contacts); blanks and boolean `false` need `overwriteWithBlank`; numeric 0
  is silently dropped by Mautic, so it is refused here instead; the answer is
  checked to make sure Mautic did not ignore the change.
- Batches: `get_many` is one list query `id in (...)` and `update_many` one
  `PATCH /api/contacts/batch/edit`, up to `api_batch_max_limit` (200)
  contacts each; the batch answer carries a status per contact, so one bad
  contact fails alone.
- Sends answer 200 even when nothing was sent: the body decides.
- The hourly rate limit (if an admin enabled it) covers the whole API: one
  bucket for every route, and an exhausted hour fails fast as RateLimited
  instead of sleeping until it resets.
- Do-Not-Contact and tags come with every contact read (list pages carry
  `doNotContact` and `tags` unless `minimal=1`, which is never sent), so
  checking them costs no call. A DNC-only change does not move
  `dateModified` (since mautic/mautic#13994, after 5.1.1; 5.1.0/5.1.1 move
  it), so a `dateModified` poll cannot see one: `iter_dnc_entries` reads the
  `lead_donotcontact` stats table by id instead. A tag change moves it.
"""

from __future__ import annotations

import heapq
import math
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import httpx

from syncctl.clients import VendorClient
from syncctl.errors import (
    AuthRejected,
    BadResponse,
    InvalidRequest,
    NotFound,
    NotSent,
    RateLimited,
    ServiceError,
)
from syncctl.net.http import CallStats, RetryPolicy, ServiceHTTP, expect_dict, parse_json
from syncctl.net.ratelimit import BucketLimiter

SERVICE = "mautic"

#: Characters Mautic turns into HTML entities in `where` values (FILTER_SANITIZE_SPECIAL_CHARS).
_HTML_SPECIAL = "'\"&<>"
_TRUE_STRINGS = frozenset({"1", "true", "yes", "on"})
_NUMERIC = re.compile(r"^[ \t\n\r\v\f]*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?[ \t\n\r\v\f]*$")
_SQL_FORMAT = "%Y-%m-%d %H:%M:%S"

Where = tuple[str, str, Any]  # (column, expression, value or None)

#: Mautic's `api_batch_max_limit` default: the most contacts one batch call may carry.
BATCH_MAX = 200
#: Characters of `in (...)` values per query, so the URL stays far below servers' 8 KB.
_IN_BUDGET = 3000
#: Invite codes per `find_holding_any` query: with two LIKE clauses each (some
#: 170 characters once encoded) the URL stays near 5 kB.
HOLDING_CHUNK = 15

#: Do-Not-Contact reasons (LeadBundle/Entity/DoNotContact.php). 0 is Mautic's
#: "contactable": an entry with it does not stop Mautic's own emails.
DNC_CONTACTABLE = 0
DNC_UNSUBSCRIBED = 1
DNC_BOUNCED = 2
DNC_MANUAL = 3
#: The channel Mautic's emails check (`DoNotContactModel::isContactable($lead, 'email')`).
EMAIL_CHANNEL = "email"
_NO_TAGS: frozenset[str] = frozenset()
#: Distinct tag sets shared between contacts (most contacts have one of a few).
_TAG_SETS: dict[frozenset[str], frozenset[str]] = {}
_TAG_SETS_MAX = 4096


# -- results -----------------------------------------------------------------------


def as_flag(value: Any) -> bool:
    """A Mautic boolean in any of its shapes (1/0, "1"/"0", true/false, "yes", None) as bool.

    Mirrors PHP's FILTER_VALIDATE_BOOLEAN, which Mautic uses to clean them.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_STRINGS
    return False


def as_text(value: Any) -> str:
    """A field value as text, "" for empty."""
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class Contact:
    """A Mautic contact.

    `fields` is the flat `fields.all` map (alias -> value, custom fields
    included). `date_modified` is UTC; for a contact Mautic never edited
    (dateModified null in 5.1) it is `date_added`, so it can serve as a
    polling cursor either way.

    `dnc_email` is True when the contact is on Mautic's email Do-Not-Contact
    list for any reason (unsubscribed, bounced, manual...): Mautic's API send
    ignores that list, so whoever sends must check it. `tags` are its tag
    names as Mautic stores them (Mautic matches tag names case-sensitively;
    `has_tag` does not, so a hand-typed `Syncctl-Hold` still counts).
    """

    id: int
    email: str | None
    firstname: str | None
    lastname: str | None
    date_modified: datetime
    fields: Mapping[str, Any]
    date_added: datetime | None = None
    dnc_email: bool = False
    tags: frozenset[str] = _NO_TAGS

    def has_tag(self, name: str) -> bool:
        """Does the contact carry tag `name`, ignoring case and surrounding blanks?"""
        wanted = name.strip().casefold()
        return any(tag.strip().casefold() == wanted for tag in self.tags)

    def field(self, alias: str) -> Any:
        """The raw value of a field (None when empty or unknown)."""
        return self.fields.get(alias)

    def flag(self, alias: str) -> bool:
        """A boolean field, whatever shape Mautic chose for it."""
        return as_flag(self.fields.get(alias))

    def text(self, alias: str) -> str:
        """A text field, "" when empty."""
        return as_text(self.fields.get(alias))


@dataclass(frozen=True)
class EmailStat:
    """One row of Mautic's email_stats table: one send (or failed send) of an email."""

    id: int
    email_id: int | None
    lead_id: int | None
    email_address: str | None
    date_sent: datetime | None
    is_failed: bool


@dataclass(frozen=True)
class DncEntry:
    """One row of Mautic's lead_donotcontact table: a contact barred from a channel."""

    id: int
    contact_id: int
    channel: str
    reason: int | None
    date_added: datetime | None


@dataclass(frozen=True)
class FieldInfo:
    """A contact field definition (for `doctor`)."""

    alias: str
    type: str
    published: bool
    id: int | None = None
    label: str | None = None


@dataclass(frozen=True)
class EmailInfo:
    """A Mautic email (template) as `doctor` needs it."""

    id: int
    name: str
    is_published: bool
    email_type: str | None
    subject: str | None = None


# -- the client ---------------------------------------------------------------------


class _ApiLimiter(BucketLimiter):
    """Mautic's limiter counts every /api call in one hourly bucket.

    A client that learnt the hour is used up should not sleep until it resets:
    it fails as RateLimited, and the next run continues.
    """

    def __init__(self, max_wait: float) -> None:
        super().__init__(route_key=lambda method, path: "api", probe=True)
        self._max_wait = max_wait

    def reserve(self, method: str, path: str) -> float:
        wait = super().reserve(method, path)
        if wait > self._max_wait:
            raise RateLimited(
                SERVICE,
                f"the API rate limit is used up; it resets in {wait:.0f} s",
                hint="the next run continues; raise Mautic's api_rate_limiter_limit if this "
                "repeats",
                retry_after=wait,
            )
        return wait


class MauticClient(VendorClient):
    """Typed access to the Mautic calls syncctl needs. Thread-safe; close() when done."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        stats: CallStats | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        max_concurrency: int = 4,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        policy = retry or RetryPolicy()
        root = base_url.strip().rstrip("/")
        if root.endswith("/api"):  # the config names the site; tolerate the API root too
            root = root[: -len("/api")]
        self.base_url = root
        self._http = ServiceHTTP(
            SERVICE,
            root,
            auth=httpx.BasicAuth(username, password),
            timeout=timeout,
            retry=policy,
            stats=stats,
            limiter=_ApiLimiter(policy.max_retry_after),
            max_concurrency=max_concurrency,
            transport=transport,
        )

    # -- contacts: reads --------------------------------------------------------------

    def get(self, contact_id: int) -> Contact:
        """One contact; NotFound when it does not exist (or was merged away)."""
        body = self._get(f"/api/contacts/{_id(contact_id)}")
        return _contact(body.get("contact"), f"GET /api/contacts/{contact_id}: contact")

    def get_many(self, contact_ids: Iterable[int]) -> dict[int, Contact]:
        """Contacts by id, one list query per BATCH_MAX ids; ids that do not exist are absent."""
        ids = sorted({_id(cid) for cid in contact_ids})
        found: dict[int, Contact] = {}
        for start in range(0, len(ids), BATCH_MAX):
            chunk = ids[start : start + BATCH_MAX]
            wanted = set(chunk)
            where: list[Where] = [("id", "in", ",".join(map(str, chunk)))]
            for contact in self._list(where, "id", len(chunk)):
                if contact.id in wanted:
                    found[contact.id] = contact
        return found

    def iter_modified_since(
        self, since: datetime, *, page_size: int = 200, include_unmodified: bool = True
    ) -> Iterator[Contact]:
        """Contacts changed (or, never edited, created) at or after `since`, oldest first.

        `since` is compared to the second (Mautic stores seconds). A contact
        modified while this iterates may come again, later, with its newer
        state (a larger date_modified): keep the last one per id.
        `include_unmodified=False` skips the second stream for never-edited
        contacts (only safe on Mautic >= 6, which fills dateModified on create).
        """
        start = _floor(since)
        if include_unmodified:
            # Both kinds in one query (`orX`): when they fit one page, as in
            # nearly every run, that page is all and costs one call, not two.
            size = max(1, page_size)
            either: Where = (
                "",
                "orX",
                [
                    ("dateModified", "gte", _sql(start)),
                    (
                        "",
                        "andX",
                        [("dateModified", "isNull", None), ("dateAdded", "gte", _sql(start))],
                    ),
                ],
            )
            page = self._list([either], "id", size)
            if len(page) < size:
                yield from sorted(page, key=lambda c: (c.date_modified, c.id))
                return
        streams = [
            self._time_stream("dateModified", "date_modified", start, [], page_size, _modified)
        ]
        if include_unmodified:
            streams.append(
                self._time_stream(
                    "dateAdded",
                    "date_added",
                    start,
                    [("dateModified", "isNull", None)],
                    page_size,
                    _added,
                )
            )
        seen: dict[int, datetime] = {}
        for contact in heapq.merge(*streams, key=lambda c: c.date_modified):
            previous = seen.get(contact.id)
            if previous is not None and contact.date_modified <= previous:
                continue
            seen[contact.id] = contact.date_modified
            yield contact

    def iter_all(self, *, page_size: int = 200) -> Iterator[Contact]:
        """Every contact by ascending id (keyset paging: inserts and deletes do not shift it)."""
        yield from self._scan([], page_size)

    def find_by_email(self, email: str) -> list[Contact]:
        """Contacts whose email equals `email` ignoring case, oldest id first (duplicates exist)."""
        target = email.strip()
        if not target:
            return []
        wanted = target.lower()
        if any(char in _HTML_SPECIAL for char in target):
            where: Where = ("email", "like", _like_pattern(target))
        else:
            where = ("email", "eq", target)
        found = [c for c in self._scan([where], 200) if (c.email or "").lower() == wanted]
        return sorted(found, key=lambda c: c.id)

    def find_by_emails(self, emails: Iterable[str]) -> dict[str, list[Contact]]:
        """`find_by_email` for many addresses; keys are the addresses lower-cased.

        Plain addresses go together into `email in (...)` queries (a few
        kilobytes of URL each); addresses with a character Mautic encodes, or
        a comma (which splits `in` values), are looked up one by one.
        """
        wanted = {e.strip().lower() for e in emails if e.strip()}
        found: dict[str, list[Contact]] = {e: [] for e in wanted}
        plain = sorted(e for e in wanted if not any(ch in _HTML_SPECIAL + "," for ch in e))
        for chunk in _chunks_by_length(plain, _IN_BUDGET):
            for contact in self._scan([("email", "in", ",".join(chunk))], BATCH_MAX):
                key = (contact.email or "").lower()
                if key in found:
                    found[key].append(contact)
        for email in sorted(wanted.difference(plain)):
            found[email] = self.find_by_email(email)
        return {e: sorted(cs, key=_by_id) for e, cs in found.items()}

    def find_holding(self, aliases: Iterable[str], fragment: str) -> list[Contact]:
        """Contacts whose text field `alias` (any of `aliases`) contains `fragment`.

        For finding who holds an invite code: one LIKE scan per field,
        re-checked client-side. `fragment` must not contain LIKE wildcards.
        """
        if not fragment or any(ch in fragment for ch in "%_"):
            raise ValueError(f"cannot search for {fragment!r} with LIKE")
        found: dict[int, Contact] = {}
        for alias in aliases:
            for contact in self._scan([(alias, "like", f"%{fragment}%")], 200):
                if fragment in contact.text(alias):
                    found[contact.id] = contact
        return sorted(found.values(), key=_by_id)

    def find_holding_any(
        self, aliases: Iterable[str], fragments: Iterable[str]
    ) -> dict[str, list[Contact]]:
        """`find_holding` for many fragments: who holds each of these invite codes.

        One `orX` of LIKE clauses per chunk of fragments (every alias times
        every fragment), re-checked client-side; fragments holding a LIKE
        wildcard raise ValueError as in `find_holding`.
        """
        names = list(aliases)
        wanted = sorted(set(fragments))
        for fragment in wanted:
            if not fragment or any(ch in fragment for ch in "%_"):
                raise ValueError(f"cannot search for {fragment!r} with LIKE")
        found: dict[str, dict[int, Contact]] = {fragment: {} for fragment in wanted}
        for start in range(0, len(wanted), HOLDING_CHUNK):
            chunk = wanted[start : start + HOLDING_CHUNK]
            either: list[Where] = [
                (alias, "like", f"%{fragment}%") for fragment in chunk for alias in names
            ]
            for contact in self._scan([("", "orX", either)], 200):
                for fragment in chunk:
                    if any(fragment in contact.text(alias) for alias in names):
                        found[fragment][contact.id] = contact
        return {f: sorted(held.values(), key=_by_id) for f, held in found.items()}

    def check_access(self) -> int:
        """One cheap authenticated read; returns the number of contacts.

        Raises AuthRejected with Mautic's reason (wrong credentials, API or
        Basic auth disabled, missing permission).
        """
        body = self._get("/api/contacts", [("limit", "1"), ("orderBy", "id")])
        _contact_list(body, "GET /api/contacts")
        return _int_or_zero(body.get("total"))

    # -- contacts: writes -----------------------------------------------------------

    def create(self, fields: Mapping[str, Any]) -> Contact:
        """Create a contact (POST /contacts/new).

        Mautic merges into the contact holding the same email (answering 200),
        so with an email this is an upsert and safe to retry. None and False
        values are not sent: on create they cannot overwrite anything (use
        `update` to clear a field).
        """
        body: dict[str, Any] = {}
        for alias, value in fields.items():
            if alias == "overwriteWithBlank":
                raise InvalidRequest(SERVICE, "overwriteWithBlank is not allowed on create")
            if value is None or value is False or value == "":
                continue
            _check_value(alias, value)
            body[alias] = value
        email = body.get("email")
        response = self._http.request(
            "POST",
            "/api/contacts/new",
            json_body=body,
            idempotent=isinstance(email, str) and bool(email.strip()),
        )
        data = expect_dict(SERVICE, parse_json(SERVICE, response), "POST /api/contacts/new")
        return _contact(data.get("contact"), "POST /api/contacts/new: contact")

    def update(self, contact_id: int, changes: Mapping[str, Any]) -> Contact:
        """PATCH only `changes` onto a contact and return it as Mautic saved it.

        Refused here (InvalidRequest, nothing sent): `email` (Mautic would merge
        another contact into this one), numeric 0 / "0" (Mautic drops them
        silently). Raises InvalidRequest too when Mautic's answer shows it
        ignored a change (unknown alias, a blank or boolean it skipped).
        """
        if not changes:
            return self.get(contact_id)
        body = _patch_body(contact_id, changes)
        path = f"/api/contacts/{_id(contact_id)}/edit"
        # Setting absolute values: repeating the PATCH is harmless, so it may be retried.
        response = self._http.request("PATCH", path, json_body=body, idempotent=True)
        data = expect_dict(SERVICE, parse_json(SERVICE, response), f"PATCH {path}")
        contact = _contact(data.get("contact"), f"PATCH {path}: contact")
        _verify_update(contact, changes)
        return contact

    def update_many(
        self, edits: list[tuple[int, Mapping[str, Any]]]
    ) -> list[Contact | ServiceError]:
        """`update` for several contacts: one batch PATCH per BATCH_MAX of them.

        Returns, in the order of `edits`, each contact as Mautic saved it or
        the error for that contact alone (refused here, or reported by Mautic
        in the batch answer). A failure of the call itself raises.
        """
        results: list[Contact | ServiceError | None] = [None] * len(edits)
        sendable: list[tuple[int, int, Mapping[str, Any], dict[str, Any]]] = []
        for index, (contact_id, changes) in enumerate(edits):
            try:
                sendable.append((index, contact_id, changes, _patch_body(contact_id, changes)))
            except InvalidRequest as exc:
                results[index] = exc
        path = "/api/contacts/batch/edit"
        for chunk in _distinct_chunks(sendable):
            body = [{"id": _id(cid), **fields} for _, cid, _, fields in chunk]
            response = self._http.request("PATCH", path, json_body=body, idempotent=True)
            data = expect_dict(SERVICE, parse_json(SERVICE, response), f"PATCH {path}")
            saved = _by_position(data.get("contacts"))
            codes = _by_position(data.get("statusCodes"))
            errors = _by_position(data.get("errors"))
            for position, (index, cid, changes, _) in enumerate(chunk):
                results[index] = _batch_item(
                    cid, changes, codes.get(position), saved.get(position), errors.get(position)
                )
        return [r if r is not None else BadResponse(SERVICE, "no answer") for r in results]

    # -- Do-Not-Contact and tags: writes (for operators and tests; runs never add DNC) -----

    def add_dnc(
        self,
        contact_id: int,
        *,
        reason: int = DNC_MANUAL,
        comments: str = "",
        channel: str = EMAIL_CHANNEL,
        channel_id: int | None = None,
    ) -> Contact:
        """Put a contact on a channel's Do-Not-Contact list; returns it as Mautic answers.

        `POST /api/contacts/{id}/dnc/{channel}/add`. Mautic keeps an entry
        that already has this reason, and one the contact made by
        unsubscribing (reason 1) whatever reason is asked, so the answer may
        show another reason; either way the contact is on the list, which
        is checked. Safe to retry. The contact's dateModified does not move
        on Mautic after 5.1.1 (it does on 5.1.0/5.1.1).
        """
        if isinstance(reason, bool) or not isinstance(reason, int) or reason <= 0:
            raise InvalidRequest(SERVICE, f"a DNC reason is a positive integer, not {reason!r}")
        path = f"/api/contacts/{_id(contact_id)}/dnc/{_channel(channel)}/add"
        body: dict[str, Any] = {"reason": reason}
        if comments:
            body["comments"] = comments
        if channel_id is not None:
            body["channelId"] = _id(channel_id)
        response = self._http.request("POST", path, json_body=body, idempotent=True)
        data = expect_dict(SERVICE, parse_json(SERVICE, response), f"POST {path}")
        contact = _contact(data.get("contact"), f"POST {path}: contact")
        if channel == EMAIL_CHANNEL and not contact.dnc_email:
            raise BadResponse(SERVICE, f"POST {path}: the answer shows no email DNC entry")
        return contact

    def remove_dnc(self, contact_id: int, *, channel: str = EMAIL_CHANNEL) -> bool:
        """Take a contact off a channel's DNC list; True when Mautic found an entry to remove.

        `POST /api/contacts/{id}/dnc/{channel}/remove` removes one entry
        (a contact has one per channel). Retried after a lost answer it
        says False although the first call removed it.
        """
        path = f"/api/contacts/{_id(contact_id)}/dnc/{_channel(channel)}/remove"
        response = self._http.request("POST", path, idempotent=True)
        data = expect_dict(SERVICE, parse_json(SERVICE, response), f"POST {path}")
        _contact(data.get("contact"), f"POST {path}: contact")
        return as_flag(data.get("recordFound"))

    def add_tags(self, contact_id: int, names: Iterable[str]) -> Contact:
        """Tag a contact (PATCH `tags`); returns it as Mautic saved it. Moves dateModified.

        Mautic matches names exactly (`Hold` next to `hold` is another tag).
        Raises InvalidRequest for a name Mautic would read differently
        (blank, a leading `-`, which removes, or markup it strips) and when
        the answer lacks a tag asked for.
        """
        wanted = [_tag_name(name) for name in names]
        return self._patch_tags(contact_id, wanted, [])

    def remove_tags(self, contact_id: int, names: Iterable[str]) -> Contact:
        """Untag a contact (PATCH `tags` with `-name`); a tag it lacks is no error."""
        unwanted = [_tag_name(name) for name in names]
        return self._patch_tags(contact_id, [], unwanted)

    def _patch_tags(self, contact_id: int, add: list[str], remove: list[str]) -> Contact:
        if not add and not remove:
            return self.get(contact_id)
        path = f"/api/contacts/{_id(contact_id)}/edit"
        body = {"tags": [*add, *(f"-{name}" for name in remove)]}
        # Adding a tag it has or removing one it lacks changes nothing: safe to retry.
        response = self._http.request("PATCH", path, json_body=body, idempotent=True)
        data = expect_dict(SERVICE, parse_json(SERVICE, response), f"PATCH {path}")
        contact = _contact(data.get("contact"), f"PATCH {path}: contact")
        missing = [name for name in add if name not in contact.tags]
        kept = [name for name in remove if name in contact.tags]
        if missing or kept:
            raise InvalidRequest(
                SERVICE,
                f"contact {contact.id}: Mautic ignored the tag change "
                f"(missing {missing}, still there {kept})",
            )
        return contact

    # -- emails ---------------------------------------------------------------------------

    def send_email(self, email_id: int, contact_id: int, tokens: Mapping[str, str]) -> None:
        """Send template email `email_id` to one contact, with tokens (`{name}` or `name`).

        Not idempotent: Mautic sends again on every call (and ignores
        Do-Not-Contact). Never retried blindly: a timeout raises OutcomeUnknown;
        check `email_stats` before trying again. Raises InvalidRequest when
        Mautic answers that it did not send.
        """
        clean: dict[str, str] = {}
        for key, value in tokens.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise InvalidRequest(SERVICE, f"token {key!r}: tokens map text to text")
            clean[key] = value
        path = f"/api/emails/{_id(email_id)}/contact/{_id(contact_id)}/send"
        response = self._http.request("POST", path, json_body={"tokens": clean})
        data = expect_dict(SERVICE, parse_json(SERVICE, response), f"POST {path}")
        errors = data.get("errors")
        if errors:
            raise InvalidRequest(SERVICE, f"POST {path}: {_first_message(errors)}")
        if "failed" in data and data["failed"] not in (None, False, [], {}):
            raise NotSent(
                SERVICE,
                f"Mautic did not send email {email_id} to contact {contact_id}: "
                f"{_summary(data['failed'])}",
                hint="check the contact's address and Mautic's mail transport",
            )
        success = data.get("success")
        if success is True or success == 1 or success == "1":
            return
        if "success" in data:
            raise NotSent(
                SERVICE,
                f"Mautic did not send email {email_id} to contact {contact_id} (success=false)",
                hint="the email may be unpublished, or the contact may have no email address",
            )
        raise BadResponse(SERVICE, f"POST {path}: answer has neither 'success' nor 'failed'")

    def email_stats(self, contact_id: int, email_id: int) -> list[EmailStat]:
        """Every recorded send (failed ones included) of one email to one contact, oldest first."""
        where: list[Where] = [("lead_id", "eq", _id(contact_id)), ("email_id", "eq", _id(email_id))]
        return list(self._iter_stats(where, 0, 100))

    def iter_email_stats(
        self, email_id: int, *, since_id: int = 0, page_size: int = 500
    ) -> Iterator[EmailStat]:
        """All sends of one email with stat id > since_id, by id: a few paged calls per email."""
        yield from self._iter_stats([("email_id", "eq", _id(email_id))], since_id, page_size)

    def iter_dnc_entries(
        self, *, since_id: int = 0, channel: str | None = EMAIL_CHANNEL, page_size: int = 500
    ) -> Iterator[DncEntry]:
        """Do-Not-Contact entries with id > since_id, by id (the `lead_donotcontact` stats table).

        How a run learns that contacts landed on the list since the last
        one without reading every contact: Mautic after 5.1.1 does not move
        a contact's dateModified for a DNC-only change. Each new entry gets
        a new id (re-adding after a removal too); an entry updated in place
        (another reason) keeps its id, but it stays an entry. Removals
        leave no row: a full read of the contacts shows them.
        `channel=None` lists every channel. Needs the contacts view
        permission, like `email_stats`.
        """
        where: list[Where] = []
        if channel is not None:
            where.append(("channel", "eq", _channel(channel)))
        after = max(0, since_id)
        size = max(1, page_size)
        what = "GET /api/stats/lead_donotcontact"
        while True:
            params = [
                *_where_params([*where, ("id", "gt", after)]),
                ("order[0][col]", "id"),
                ("order[0][dir]", "ASC"),
                ("start", "0"),
                ("limit", str(size)),
            ]
            rows = _stats_rows(self._get("/api/stats/lead_donotcontact", params), what)
            page = sorted((_dnc_entry(row, what) for row in rows), key=lambda e: e.id)
            yield from page
            if len(page) < size:
                return
            if page[-1].id <= after:
                raise BadResponse(SERVICE, f"{what} ignored the id filter")
            after = page[-1].id

    def get_email(self, email_id: int) -> EmailInfo:
        """A template email's name and state; NotFound when it does not exist."""
        path = f"/api/emails/{_id(email_id)}"
        data = self._get(path).get("email")
        if not isinstance(data, dict):
            raise BadResponse(SERVICE, f"GET {path}: 'email' object missing")
        return EmailInfo(
            id=_int(data.get("id"), f"GET {path}: email.id"),
            name=as_text(data.get("name")),
            is_published=as_flag(data.get("isPublished")),
            email_type=_str_or_none(data.get("emailType")),
            subject=_str_or_none(data.get("subject")),
        )

    def list_contact_fields(self) -> list[FieldInfo]:
        """Every contact field definition, published or not."""
        body = self._get("/api/fields/contact", [("limit", "0")])
        raw = body.get("fields")
        items = list(raw.values()) if isinstance(raw, dict) else raw
        if not isinstance(items, list):
            raise BadResponse(SERVICE, "GET /api/fields/contact: 'fields' list missing")
        fields = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("alias"), str):
                raise BadResponse(SERVICE, "GET /api/fields/contact: a field without 'alias'")
            fields.append(
                FieldInfo(
                    alias=item["alias"],
                    type=as_text(item.get("type")),
                    published=as_flag(item.get("isPublished", True)),
                    id=_int_or_none(item.get("id")),
                    label=_str_or_none(item.get("label")),
                )
            )
        return fields

    # -- internals --------------------------------------------------------------------------

    def _get(
        self,
        path: str,
        params: list[tuple[str, str]] | None = None,
        object_hook: Callable[[dict[str, Any]], Any] | None = None,
    ) -> dict[str, Any]:
        response = self._http.request("GET", path, params=params)
        return expect_dict(SERVICE, parse_json(SERVICE, response, object_hook), f"GET {path}")

    def _list(
        self, where: list[Where], order_by: str, limit: int, direction: str = "ASC"
    ) -> list[Contact]:
        params = [
            *_where_params(where),
            ("orderBy", order_by),
            ("orderByDir", direction),
            ("limit", str(limit)),
            ("start", "0"),
        ]
        body = self._get("/api/contacts", params, _slim_contact)
        return _contact_list(body, "GET /api/contacts")

    def _scan(self, where: list[Where], page_size: int) -> Iterator[Contact]:
        """Contacts matching `where`, by id, keyset-paged on id."""
        size = max(1, page_size)
        after = 0
        while True:
            page = sorted(self._list([*where, ("id", "gt", after)], "id", size), key=_by_id)
            yield from page
            if len(page) < size:
                return
            if page[-1].id <= after:
                raise BadResponse(SERVICE, "GET /api/contacts ignored the id filter while paging")
            after = page[-1].id

    def _time_stream(
        self,
        column: str,
        order_column: str,
        since: datetime,
        extra: list[Where],
        page_size: int,
        stamp: Callable[[Contact], datetime],
    ) -> Iterator[Contact]:
        """Contacts with `column >= since`, ascending, re-queried from the last seen stamp.

        Offsets are never trusted: each page starts at the last stamp seen
        (ties come again and are filtered by the caller). A page made only of
        one stamp is drained by id, then the stream moves strictly past it.
        """
        size = max(1, page_size)
        cursor, expr = since, "gte"
        while True:
            where: list[Where] = [(column, expr, _sql(cursor)), *extra]
            page = sorted(self._list(where, order_column, size), key=lambda c: (stamp(c), c.id))
            yield from page
            if len(page) < size:
                return
            last = stamp(page[-1])
            if last > cursor:
                cursor, expr = last, "gte"
                continue
            if last < cursor:
                raise BadResponse(SERVICE, f"GET /api/contacts ignored the {column} filter")
            after = 0
            while True:
                tie: list[Where] = [(column, "eq", _sql(cursor)), ("id", "gt", after), *extra]
                group = sorted(self._list(tie, "id", size), key=_by_id)
                yield from group
                if len(group) < size:
                    break
                if group[-1].id <= after:
                    raise BadResponse(SERVICE, "GET /api/contacts ignored the id filter")
                after = group[-1].id
            expr = "gt"

    def _iter_stats(self, where: list[Where], since_id: int, page_size: int) -> Iterator[EmailStat]:
        size = max(1, page_size)
        after = since_id
        while True:
            params = [
                *_where_params([*where, ("id", "gt", after)]),
                ("order[0][col]", "id"),
                ("order[0][dir]", "ASC"),
                ("start", "0"),
                ("limit", str(size)),
            ]
            page = sorted(_stats_list(self._get("/api/stats/email_stats", params)), key=_by_id)
            yield from page
            if len(page) < size:
                return
            if page[-1].id <= after:
                raise BadResponse(SERVICE, "GET /api/stats/email_stats ignored the id filter")
            after = page[-1].id


# -- parsing and helpers --------------------------------------------------------------


def _modified(contact: Contact) -> datetime:
    return contact.date_modified


def _added(contact: Contact) -> datetime:
    return contact.date_added or contact.date_modified


def _by_id(item: Contact | EmailStat) -> int:
    return item.id


def _id(value: int) -> int:
    """An id for a URL path: an int, never text that could change the path."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidRequest(SERVICE, f"not a Mautic id: {value!r}")
    return value


def _floor(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("since must be timezone-aware (Mautic stores UTC)")
    return moment.astimezone(UTC).replace(microsecond=0)


def _sql(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_SQL_FORMAT)


def _where_params(where: list[Where], prefix: str = "where") -> list[tuple[str, str]]:
    """PHP-style query parameters; `andX`/`orX` nest their clauses under `val`."""
    params: list[tuple[str, str]] = []
    for i, (col, expr, val) in enumerate(where):
        if expr in ("andX", "orX"):
            params.append((f"{prefix}[{i}][expr]", expr))
            params.extend(_where_params(val, f"{prefix}[{i}][val]"))
            continue
        params.append((f"{prefix}[{i}][col]", col))
        params.append((f"{prefix}[{i}][expr]", expr))
        if val is not None:
            params.append((f"{prefix}[{i}][val]", str(val)))
    return params


def _like_pattern(email: str) -> str:
    """A LIKE pattern that cannot miss `email` although Mautic encodes ' " & < > in values.

    It uses the longest run of the address free of those characters (and of
    `\\`, LIKE's escape); `%` and `_` inside it only widen the match.
    """
    runs = [run for run in re.split(r"['\"&<>\\]", email) if run]
    if not runs:
        raise InvalidRequest(SERVICE, f"cannot look up the address {email!r} in Mautic")
    longest = max(runs, key=len)
    prefix = "" if email.startswith(longest) else "%"
    suffix = "" if email.endswith(longest) else "%"
    return f"{prefix}{longest}{suffix}"


def dropped_by_mautic(value: Any) -> bool:
    """Would Mautic silently drop this value on POST/PATCH (a numeric zero)?"""
    return _php_numeric_zero(value)


def _php_numeric_zero(value: Any) -> bool:
    """Would Mautic's `is_numeric($v) && (int) $v === 0` filter drop this value?"""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return math.isfinite(value) and int(value) == 0
    if isinstance(value, str) and _NUMERIC.match(value):
        try:
            return int(float(value)) == 0
        except (OverflowError, ValueError):
            return False
    return False


def _check_value(alias: str, value: Any) -> None:
    if isinstance(value, dict) or not isinstance(value, str | int | float | list | bool):
        raise InvalidRequest(SERVICE, f"{alias}: unsupported value type {type(value).__name__}")
    if _php_numeric_zero(value):
        raise InvalidRequest(
            SERVICE,
            f"{alias}={value!r}: Mautic silently drops numeric zero values on POST/PATCH",
            hint="store something other than 0 (mautic/mautic#15030)",
        )


def _distinct_chunks(
    items: list[tuple[int, int, Mapping[str, Any], dict[str, Any]]],
) -> list[list[tuple[int, int, Mapping[str, Any], dict[str, Any]]]]:
    """Batches of at most BATCH_MAX edits, each contact at most once per batch.

    Mautic looks a batch's contacts up by id (`getBatchEntities`): a second
    edit of the same contact in one batch would take the first one's place.
    """
    chunks: list[list[tuple[int, int, Mapping[str, Any], dict[str, Any]]]] = []
    seen: list[set[int]] = []
    for item in items:
        cid = item[1]
        for chunk, ids in zip(chunks, seen, strict=True):
            if len(chunk) < BATCH_MAX and cid not in ids:
                chunk.append(item)
                ids.add(cid)
                break
        else:
            chunks.append([item])
            seen.append({cid})
    return chunks


def _chunks_by_length(values: list[str], budget: int) -> Iterator[list[str]]:
    """`values` in runs whose comma-joined length stays within `budget`."""
    chunk: list[str] = []
    used = 0
    for value in values:
        if chunk and (used + len(value) + 1 > budget or len(chunk) >= BATCH_MAX):
            yield chunk
            chunk, used = [], 0
        chunk.append(value)
        used += len(value) + 1
    if chunk:
        yield chunk


def _patch_body(contact_id: int, changes: Mapping[str, Any]) -> dict[str, Any]:
    """The PATCH body for `changes`; InvalidRequest for what Mautic would mishandle."""
    body: dict[str, Any] = {}
    blanking = False
    for alias, value in changes.items():
        if alias.lower() == "email":
            raise InvalidRequest(
                SERVICE,
                f"refusing to PATCH email on contact {contact_id}",
                hint="Mautic merges the contact that holds that address into this one",
            )
        if alias == "overwriteWithBlank":
            raise InvalidRequest(SERVICE, "overwriteWithBlank is set by the client itself")
        if value is None or value == "" or value is False:
            blanking = True
        else:
            _check_value(alias, value)
        body[alias] = value
    if blanking:
        body["overwriteWithBlank"] = True
    return body


def _by_position(value: Any) -> dict[int, Any]:
    """A PHP array keyed 0..n-1 as JSON: a list, or an object when keys have gaps."""
    if isinstance(value, list):
        return dict(enumerate(value))
    if isinstance(value, dict):
        out: dict[int, Any] = {}
        for key, item in value.items():
            try:
                out[int(key)] = item
            except (TypeError, ValueError):
                continue
        return out
    return {}


def _batch_item(
    contact_id: int, changes: Mapping[str, Any], status: Any, saved: Any, error: Any
) -> Contact | ServiceError:
    """One contact's result in a batch edit answer."""
    what = f"PATCH /api/contacts/batch/edit: contact {contact_id}"
    code = _int_or_none(status)
    message = ""
    if isinstance(error, dict):
        message = " ".join(str(error.get("message", "")).split())[:200]
        code = code or _int_or_none(error.get("code"))
    if code == 404:
        return NotFound(SERVICE, f"{what}: not found", status=404)
    if code in (400, 422):
        return InvalidRequest(SERVICE, f"{what}: {message or 'refused'}", status=code)
    if code in (401, 403):
        return AuthRejected(
            SERVICE,
            f"{what}: {message or 'access denied'}",
            hint="give the Mautic API user the permission to edit contacts",
            status=code,
        )
    if code not in (200, 201, None) or error:
        return BadResponse(SERVICE, f"{what}: status {status!r} {message}".strip())
    try:
        contact = _contact(saved, what)
        if contact.id != contact_id:
            return BadResponse(SERVICE, f"{what}: the answer is for contact {contact.id}")
        _verify_update(contact, changes)
    except ServiceError as exc:
        return exc
    return contact


def _verify_update(contact: Contact, changes: Mapping[str, Any]) -> None:
    """Raise when Mautic's answer shows it ignored part of a PATCH."""
    for alias, value in changes.items():
        if alias not in contact.fields:
            raise InvalidRequest(
                SERVICE,
                f"contact {contact.id}: Mautic has no published field {alias!r}, so it ignored it",
                hint="check the field aliases in the [mautic.fields] config",
            )
        if isinstance(value, bool):
            ignored = contact.flag(alias) != value
        elif value is None or value == "":
            ignored = contact.text(alias) != ""
        else:
            continue  # Mautic may normalise text (URLs, entities): the caller reads it back
        if ignored:
            raise InvalidRequest(
                SERVICE,
                f"contact {contact.id}: Mautic ignored setting {alias} to {value!r}",
                hint="it still holds " + repr(contact.field(alias)),
            )


#: What `_contact` reads of a contact object.
_CONTACT_KEYS = ("id", "dateAdded", "dateModified")
#: Keys under which `_slim_contact` leaves what it already read of the DNC
#: entries and tags (not Mautic's: its keys hold lists of objects).
_SLIM_DNC = "_syncctl_dnc_email"
_SLIM_TAGS = "_syncctl_tags"


def _slim_contact(obj: dict[str, Any]) -> dict[str, Any]:
    """A json object_hook for contact lists: each contact keeps only what `_contact` reads.

    A page of a thousand contacts decodes to tens of megabytes, most of it
    the field definitions Mautic repeats in every contact's field groups;
    dropping them as each contact is decoded keeps a page to its flat
    `fields.all` maps, plus a bool for email DNC and a shared set of tag
    names instead of the entry and tag objects.
    """
    fields = obj.get("fields")
    if "id" in obj and isinstance(fields, dict) and "all" in fields:
        slim = {key: obj[key] for key in _CONTACT_KEYS if key in obj}
        slim["fields"] = {"all": fields["all"]}
        slim[_SLIM_DNC] = _email_dnc(obj.get("doNotContact"))
        slim[_SLIM_TAGS] = _tag_names(obj.get("tags"))
        return slim
    return obj


def _email_dnc(raw: Any) -> bool:
    """Does a `doNotContact` value hold an email entry that stops Mautic's emails?

    Mautic sends a list of entries (`channel`, `reason`, ...); a collection
    still indexed by channel may come as an object keyed by channel, and a
    lone entry as one object: all are read. An entry is email when its
    channel is "email" in any case (Mautic's lookup is case-insensitive) or
    missing (Mautic's default channel); it counts unless its reason is 0,
    which Mautic itself treats as contactable. Anything unreadable inside an
    entry counts as DNC: a wrong "no" sends mail to someone who opted out.
    """
    if not raw:
        return False
    if isinstance(raw, dict):
        if "channel" in raw or "reason" in raw:
            pairs: list[tuple[Any, Any]] = [(None, raw)]
        else:
            # keyed by channel; digits are a PHP list with gaps, not a channel
            pairs = [(None if str(k).isdigit() else k, v) for k, v in raw.items()]
    elif isinstance(raw, list):
        pairs = [(None, entry) for entry in raw]
    else:
        return False
    for key, entry in pairs:
        if isinstance(entry, dict):
            channel = entry.get("channel", key)
            if channel is not None and as_text(channel).strip().lower() != EMAIL_CHANNEL:
                continue
            if _int_or_none(entry.get("reason")) == DNC_CONTACTABLE:
                continue
            return True
        if isinstance(entry, str) and entry.strip().lower() == EMAIL_CHANNEL:
            return True  # a bare list of channel names
    return False


def _tag_names(raw: Any) -> frozenset[str]:
    """Tag names from a `tags` value: `[{"id", "tag"}]`, names, or an object keyed by name.

    Names are interned and equal sets shared, so 100k contacts tagged
    alike cost one set, not 100k.
    """
    if not raw:
        return _NO_TAGS
    if isinstance(raw, dict):
        items = [raw] if "tag" in raw else [_keyed_tag(k, v) for k, v in raw.items()]
    elif isinstance(raw, list | tuple | frozenset | set):
        items = list(raw)
    else:
        return _NO_TAGS
    names = set()
    for item in items:
        name = item.get("tag") if isinstance(item, dict) else item
        if isinstance(name, str) and name.strip():
            names.add(sys.intern(name))
    if not names:
        return _NO_TAGS
    found = frozenset(names)
    shared = _TAG_SETS.get(found)
    if shared is not None:
        return shared
    if len(_TAG_SETS) < _TAG_SETS_MAX:
        _TAG_SETS.setdefault(found, found)
    return found


def _keyed_tag(key: Any, value: Any) -> Any:
    """One tag of an object keyed by tag name (or by position: a PHP list with gaps)."""
    if isinstance(value, dict):
        return value.get("tag") or key
    if isinstance(value, str) and value:
        return value
    return key


def _channel(channel: str) -> str:
    """A DNC channel for a URL path or a where value (letters, digits, `_.-`)."""
    if not isinstance(channel, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", channel):
        raise InvalidRequest(SERVICE, f"not a Mautic DNC channel: {channel!r}")
    return channel


def _tag_name(name: str) -> str:
    """A tag name Mautic stores as given; InvalidRequest for one it would read differently."""
    if (
        not isinstance(name, str)
        or not name
        or name != name.strip()
        or name.startswith("-")
        or any(ch in name for ch in "<>&\x00")
    ):
        raise InvalidRequest(
            SERVICE,
            f"tag {name!r}: Mautic would trim, decode, strip or (with a leading '-') "
            "remove it instead",
        )
    return name


def _contact_list(body: dict[str, Any], what: str) -> list[Contact]:
    raw = body.get("contacts")
    if isinstance(raw, dict):
        items = list(raw.values())
    elif isinstance(raw, list):  # `[]` when empty (a PHP empty array)
        items = raw
    else:
        raise BadResponse(SERVICE, f"{what}: 'contacts' missing from the answer")
    return [_contact(item, f"{what}: contact") for item in items]


def _contact(data: Any, what: str) -> Contact:
    if not isinstance(data, dict):
        raise BadResponse(SERVICE, f"{what}: expected a contact object")
    contact_id = _int(data.get("id"), f"{what}.id")
    fields = data.get("fields")
    flat = fields.get("all") if isinstance(fields, dict) else None
    if not isinstance(flat, dict):
        raise BadResponse(SERVICE, f"{what} {contact_id}: 'fields.all' missing")
    added = _datetime(data.get("dateAdded"), f"{what} {contact_id}: dateAdded")
    modified = _datetime(data.get("dateModified"), f"{what} {contact_id}: dateModified")
    effective = modified or added
    if effective is None:
        raise BadResponse(SERVICE, f"{what} {contact_id}: dateModified and dateAdded missing")
    dnc = data[_SLIM_DNC] if _SLIM_DNC in data else _email_dnc(data.get("doNotContact"))
    tags = data[_SLIM_TAGS] if _SLIM_TAGS in data else _tag_names(data.get("tags"))
    return Contact(
        id=contact_id,
        email=_str_or_none(flat.get("email")),
        firstname=_str_or_none(flat.get("firstname")),
        lastname=_str_or_none(flat.get("lastname")),
        date_modified=effective,
        fields=MappingProxyType(dict(flat)),
        date_added=added,
        dnc_email=dnc,
        tags=tags,
    )


def _stats_rows(body: dict[str, Any], what: str) -> list[dict[str, Any]]:
    """The rows of a stats API answer; errors (reported inside a 200) raise."""
    errors = body.get("errors")
    if errors:  # the stats API reports failures inside a 200
        message = _first_message(errors)
        first = errors[0] if isinstance(errors, list) else None
        code = first.get("code") if isinstance(first, dict) else None
        if code in (401, 403, "401", "403"):
            raise AuthRejected(
                SERVICE,
                f"{what}: {message}",
                hint="give the Mautic API user the contacts view permission",
            )
        raise InvalidRequest(SERVICE, f"{what}: {message}")
    raw = body.get("stats")
    if raw is None and "availableTables" in body:
        table = what.rsplit("/", 1)[-1]
        raise BadResponse(SERVICE, f"{what}: Mautic does not offer the {table} table")
    items = list(raw.values()) if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise BadResponse(SERVICE, f"{what}: 'stats' list missing")
    for item in items:
        if not isinstance(item, dict):
            raise BadResponse(SERVICE, f"{what}: a stat is not an object")
    return items


def _dnc_entry(row: dict[str, Any], what: str) -> DncEntry:
    entry_id = _int(row.get("id"), f"{what}: id")
    return DncEntry(
        id=entry_id,
        contact_id=_int(row.get("lead_id"), f"{what}: entry {entry_id} lead_id"),
        channel=as_text(row.get("channel")),
        reason=_int_or_none(row.get("reason")),
        date_added=_datetime(row.get("date_added"), f"{what}: entry {entry_id} date_added"),
    )


def _stats_list(body: dict[str, Any]) -> list[EmailStat]:
    what = "GET /api/stats/email_stats"
    stats = []
    for item in _stats_rows(body, what):
        stat_id = _int(item.get("id"), f"{what}: stat id")
        stats.append(
            EmailStat(
                id=stat_id,
                email_id=_int_or_none(item.get("email_id")),
                lead_id=_int_or_none(item.get("lead_id")),
                email_address=_str_or_none(item.get("email_address")),
                date_sent=_datetime(item.get("date_sent"), f"{what}: stat {stat_id} date_sent"),
                is_failed=as_flag(item.get("is_failed")),
            )
        )
    return stats


def _datetime(value: Any, what: str) -> datetime | None:
    """Mautic dates: ISO 8601 with offset from the serializer, 'Y-m-d H:i:s' (UTC) from SQL."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadResponse(SERVICE, f"{what}: expected a date, got {type(value).__name__}")
    text = value.strip().replace(" ", "T", 1)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadResponse(SERVICE, f"{what}: not a date: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _int(value: Any, what: str) -> int:
    parsed = _int_or_none(value)
    if parsed is None:
        raise BadResponse(SERVICE, f"{what}: expected an integer id, got {value!r}"[:200])
    return parsed


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _int_or_zero(value: Any) -> int:
    parsed = _int_or_none(value)
    return parsed if parsed is not None else 0


def _str_or_none(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return as_text(value)


def _first_message(errors: Any) -> str:
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return " ".join(str(errors[0].get("message", "")).split())[:200] or "error"
    return _summary(errors)


def _summary(value: Any) -> str:
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        value = "; ".join(str(v) for v in value)
    return " ".join(str(value).split())[:200]
