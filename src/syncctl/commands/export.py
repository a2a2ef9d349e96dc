"""`syncctl export`: one row per purchase and per opted-in contact, for finance and fulfilment.

Why it exists: finance reconciles payments against codes and refunds, and
fulfilment checks that every backer got their code, invite and emails.
Both want one file, not five admin panels or `status` person by person.

Where the rows come from (a design choice):

- **By default, the journal only.** It is opened read-only, so an export
  needs no secret, makes no service call, is fast, and is safe while a
  reconcile runs (it reads one consistent snapshot of the journal). The
  journal is the record of what syncctl did: each code it created or found,
  each email it sent and when, each invite it issued or revoked, each lead,
  each hold, each refund or dispute a run read from Stripe. That answers
  most columns; what it cannot know is left empty.
- **`--live` adds what only the services know now**, read page by page in
  step with the rows: Shopware, whether each page's codes are in the VIP
  promotion and whether an order redeemed them (one `equalsAny` search per
  500 codes); Mautic, the page's contacts' opt-in, Do-Not-Contact and hold
  tag (one list query per 200 ids); Discord, once, the codes of the campaign
  channels' live invites (the API lists a channel's invites in one answer,
  without pages). In calls that is about one paged read per service; it
  needs the secrets `reconcile` needs. A service that cannot be read leaves its
  columns empty (`unknown` for an invite) and is not asked again; the rest
  is written, and the command exits 1 naming it.

The journal is the default because what finance and fulfilment ask first is
what was done, and the journal is where that is written down; the services
are the truth about the present, which `--live` adds when it is wanted.

Which rows: first every purchase syncctl has handled (a `coupon:<session>`
key, or a `refund:<session>` fact about one: all VIP purchases), in session
id order; then every contact it issued an invite to (in key order), one row
a contact whatever its tiers (the invite that stands: one issued and not
revoked, VIP first), then every lead made for a contact without an invite
(opted in, but on the Do-Not-Contact list): those are the opted-in
contacts (rule 15). A contact Mautic shows opted in that no run has reached
yet is not here: `reconcile --dry-run` shows what a run would do for it.

Streaming: nothing holds all rows. Each query (`Journal.iter_purchase_facts`,
`iter_contact_facts`) joins a row's facts inside SQLite (by key, or on the
subject index) and is read with one cursor, 500 rows at a time, inside one
read transaction; the pure `purchase_row` and `contact_row` turn each into
a `Row`, which is written and dropped. CSV is written row by row; JSON as
one document whose `rows` array is written row by row (`format_version`,
then `rows`, then `counts` and `service_errors`, which only the end knows).
`--output FILE` is written to a temporary file beside it and renamed into
place once complete (mode 0600: it holds personal data), so a failed export
never leaves half a file.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
import tempfile
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO, TypeVar

from syncctl.clients.shopware import IndividualCode, code_key
from syncctl.config import Config, Settings
from syncctl.engine.model import Contact, Tier
from syncctl.engine.sends import WAIVED
from syncctl.engine.troubles import CLEARED as REFUND_CLEARED
from syncctl.errors import ServiceError, SyncctlError, UsageError
from syncctl.state.journal import EntryState, Hold, Journal
from syncctl.state.reports import ContactFacts, PurchaseFacts

if TYPE_CHECKING:  # --live only: the clients of every service (the Stripe SDK) load late
    from syncctl.clients.services import Services

T = TypeVar("T")

FORMAT_VERSION = 1
#: Rows read from the journal (and, with --live, looked up in the services) per page.
PAGE = 500
#: Cells a spreadsheet would run as a formula when they start with one of
#: these (OWASP "CSV injection"): free text others typed gets a leading `'`.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NO_HOLDS: Mapping[str, Hold] = {}


class Format(StrEnum):
    CSV = "csv"
    JSON = "json"


class Row(NamedTuple):
    """One line of the export; the field order is the column order.

    Strings are "" and the others None where the value is not known or
    does not apply (both are empty in CSV and null in JSON).
    """

    #: `purchase` (a Stripe Checkout Session) or `contact` (an opted-in Mautic contact).
    record: str
    email: str
    contact_id: int | None = None
    #: `vip` or `basic`: a purchase is VIP; a contact's is its invite's (else, with
    #: --live, Mautic's flag).
    tier: str = ""
    session_id: str = ""
    #: `refunded` or `disputed` (Stripe, rule 17); "" when neither.
    refund: str = ""
    coupon_code: str = ""
    #: What syncctl did: `created`, `found` (existed already), `failed`, `pending`.
    coupon: str = ""
    coupon_exists: bool | None = None  # --live: in the VIP promotion now
    coupon_redeemed: bool | None = None  # --live: an order used it
    coupon_order_id: str = ""  # --live: that order
    coupon_email_sent_at: str = ""
    invite_code: str = ""
    #: `live`, `used`, `expired`, `revoked`, `unknown` (not checked), `failed`, `pending`.
    invite_state: str = ""
    invite_email_sent_at: str = ""
    #: What syncctl did: `created`, `found` (existed already), `failed`, `pending`.
    lead: str = ""
    lead_id: str = ""
    opt_in: bool | None = None  # --live
    dnc: bool | None = None  # --live: on Mautic's email Do-Not-Contact list
    #: `person` or `purchase` (`syncctl hold`), or `tag` (the Mautic hold tag, --live).
    hold: str = ""
    hold_reason: str = ""

    def as_json(self) -> dict[str, Any]:
        """Every column; null where the value is unknown or does not apply."""
        return {
            name: (None if value == "" else value)
            for name, value in zip(self._fields, self, strict=True)
        }

    def as_cells(self) -> Sequence[object]:
        """The CSV cells: yes/no for a flag, "" for nothing (the csv module writes None
        so); free text that others typed is kept from running as a spreadsheet formula.
        The row itself when nothing needs changing (most rows: no copy per row)."""
        cells: list[object] | None = None
        for index in _FLAGS:
            flag = self[index]
            if flag is not None:
                cells = cells or list(self)
                cells[index] = "yes" if flag else "no"
        for index in _FREE_TEXT:
            text = self[index]
            if isinstance(text, str) and text.startswith(_FORMULA_START):
                cells = cells or list(self)
                cells[index] = "'" + text
        return self if cells is None else cells


COLUMNS: tuple[str, ...] = Row._fields
#: Columns whose text comes from buyers (the email) or operators (a hold's reason).
_FREE_TEXT = (COLUMNS.index("email"), COLUMNS.index("hold_reason"))
#: Columns that are flags: yes / no / empty (unknown) in CSV.
_FLAGS = tuple(COLUMNS.index(n) for n in ("coupon_exists", "coupon_redeemed", "opt_in", "dnc"))


# -- what the services say (--live) -------------------------------------------------------


@dataclass(frozen=True)
class Live:
    """What the services said about one page of rows; None: not read (or could not be)."""

    now: datetime
    #: The page's coupon codes found in Shopware, by `code_key`.
    codes: Mapping[str, IndividualCode] | None = None
    #: The page's Mautic contacts, by id (a deleted one is absent).
    contacts: Mapping[int, Contact] | None = None
    #: The codes of the live invites in the two campaign channels (codes only: at
    #: 100k unused invites, whole invite objects would take some 40 MB).
    invites: frozenset[str] | None = None


class LiveReader:
    """The few reads `--live` makes, and the services that failed them.

    A service that fails is not asked again during the export: its columns
    stay empty for the rest, and `errors` names it for the exit status.
    """

    def __init__(
        self, services: Services, settings: Settings, *, now: datetime | None = None
    ) -> None:
        self.sv = services
        self.settings = settings
        self.now = now or datetime.now(UTC)
        self.errors: dict[str, str] = {}
        self.invites = self._attempt("discord", self._read_invites)

    def _attempt(self, service: str, read: Callable[[], T]) -> T | None:
        if service in self.errors:
            return None
        try:
            return read()
        except ServiceError as exc:
            self.errors[service] = str(exc)
            return None

    def _read_invites(self) -> frozenset[str]:
        """Discord lists a channel's invites in one answer (no pages): one call a channel."""
        found: set[str] = set()
        d = self.settings.discord
        for channel in dict.fromkeys((d.vip_channel_id, d.basic_channel_id)):
            found.update(invite.code for invite in self.sv.discord.list_channel_invites(channel))
        return frozenset(found)

    def read(self, codes: Iterable[str], contact_ids: Iterable[int]) -> Live:
        """The page's codes (Shopware) and contacts (Mautic), one batched lookup each."""
        wanted_codes = sorted({c for c in codes if c.strip()})
        wanted_ids = sorted({cid for cid in contact_ids if cid > 0})

        def read_codes() -> Mapping[str, IndividualCode]:
            return self.sv.shopware.find_codes(wanted_codes) if wanted_codes else {}

        def read_contacts() -> Mapping[int, Contact]:
            from syncctl.engine.observe import to_contact

            if not wanted_ids:
                return {}
            found = self.sv.mautic.get_many(wanted_ids)
            return {cid: to_contact(raw, self.settings, dated=False) for cid, raw in found.items()}

        return Live(
            now=self.now,
            codes=self._attempt("shopware", read_codes),
            contacts=self._attempt("mautic", read_contacts),
            invites=self.invites,
        )


# -- rows from the journal's facts (pure) ---------------------------------------------------


def purchase_row(
    facts: PurchaseFacts,
    settings: Settings,
    *,
    holds: Mapping[str, Hold] = _NO_HOLDS,
    live: Live | None = None,
) -> Row | None:
    """A purchase's row: what the journal says syncctl did for it, and (with `live`) what
    the services say now. None for a purchase only a won dispute names: nothing to show."""
    refund = _refund(facts.refund)
    if facts.coupon_state is None and not refund:
        return None
    code = facts.code or ""
    cid = facts.contact_id
    contact = _live_contact(live, cid)
    hold, reason = _hold(holds, facts.email, contact, settings, facts.session_id)
    exists = redeemed = None
    order = ""
    if live is not None and live.codes is not None and code:
        found = live.codes.get(code_key(code))
        exists = found is not None and found.promotion_id == settings.shopware.vip_promotion_id
        redeemed = found is not None and found.redeemed
        order = (found.order_id or "") if found is not None else ""
    return Row(
        record="purchase",
        email=facts.email,
        contact_id=cid,
        tier=_VIP,
        session_id=facts.session_id,
        refund=refund,
        coupon_code=code,
        coupon=_outcome(facts.coupon_state, facts.coupon_observed),
        coupon_exists=exists,
        coupon_redeemed=redeemed,
        coupon_order_id=order,
        coupon_email_sent_at=facts.mail_sent_at or "",
        opt_in=contact.opt_in if contact is not None else None,
        dnc=contact.dnc if contact is not None else None,
        hold=hold,
        hold_reason=reason,
    )


_VIP = str(Tier.VIP)


def contact_row(
    invites: Sequence[ContactFacts],
    settings: Settings,
    *,
    holds: Mapping[str, Hold] = _NO_HOLDS,
    live: Live | None = None,
) -> Row:
    """One contact's row from its invite facts (one per tier it was given), or a lone
    lead's row (one fact with no tier)."""
    fact = current_invite(invites)
    cid = fact.contact_id
    contact = _live_contact(live, cid)
    tier = fact.tier or ""
    if not tier and contact is not None:
        tier = str(Tier.VIP if contact.vip else Tier.BASIC)
    # The lead of the email, unless it is another contact's (a duplicate's).
    mine = fact.lead_state is not None and fact.lead_contact_id in (None, cid)
    hold, reason = _hold(holds, fact.email, contact, settings)
    return Row(
        record="contact",
        email=fact.email,
        contact_id=cid,
        tier=tier,
        invite_code=fact.invite_code or "",
        invite_state=_invite_state(fact, settings, live),
        # A link sent with `reissue-invite --no-email` has its email waived, not sent.
        invite_email_sent_at=(fact.mail_sent_at or "") if fact.mail_ref != WAIVED else "",
        lead=_outcome(fact.lead_state, fact.lead_observed) if mine else "",
        lead_id=(fact.lead_ref or "") if mine and fact.lead_state is EntryState.DONE else "",
        opt_in=contact.opt_in if contact is not None else None,
        dnc=contact.dnc if contact is not None else None,
        hold=hold,
        hold_reason=reason,
    )


def current_invite(invites: Sequence[ContactFacts]) -> ContactFacts:
    """The invite that stands: one issued and not revoked (VIP first), else the newest attempt."""
    standing = [f for f in invites if f.invite_state is EntryState.DONE and not f.revoked]
    for tier in (Tier.VIP, Tier.BASIC):
        for fact in standing:
            if fact.tier == tier:
                return fact
    return max(invites, key=lambda f: f.invite_id or 0)


def _invite_state(fact: ContactFacts, settings: Settings, live: Live | None) -> str:
    if fact.tier is None:
        return ""  # a lone lead: no invite
    if fact.invite_state is EntryState.FAILED:
        return "failed"
    if fact.invite_state is not EntryState.DONE or not fact.invite_code:
        return "pending"  # in flight, minted and not stored yet, or found not to have happened
    if fact.revoked:
        return "revoked"
    if live is None or live.invites is None:
        return "unknown"
    if fact.invite_code in live.invites:
        return "live"
    # Gone from Discord, and syncctl did not revoke it: a single-use invite
    # is deleted when it is used, or it expired (max_age), or someone deleted it.
    max_age = settings.discord.invite_max_age
    issued = _moment(fact.invite_at)
    if max_age and issued is not None and issued + timedelta(seconds=max_age) <= live.now:
        return "expired"
    return "used"


def _live_contact(live: Live | None, cid: int | None) -> Contact | None:
    if live is None or live.contacts is None or cid is None:
        return None
    return live.contacts.get(cid)


def _hold(
    holds: Mapping[str, Hold],
    email: str,
    contact: Contact | None,
    settings: Settings,
    session_id: str = "",
) -> tuple[str, str]:
    """(what is held, why): the purchase, the person (`syncctl hold`), or the Mautic tag."""
    if holds:
        if session_id and (hold := holds.get(session_id)) is not None:
            return "purchase", hold.reason
        if (hold := holds.get(email)) is not None:
            return "person", hold.reason
    if contact is not None and contact.hold_tag:
        return "tag", f"Mautic tag {settings.mautic.hold_tag}"
    return "", ""


def _refund(ref: str | None) -> str:
    """`refunded` or `disputed`; "" for nothing, or for a dispute won (`cleared`)."""
    return "" if not ref or ref == REFUND_CLEARED else ref


def _outcome(state: EntryState | None, observed: bool) -> str:
    """What syncctl did about a key, in a word finance can read."""
    if state is None or state is EntryState.SKIPPED:
        return ""
    if state is EntryState.DONE:
        return "found" if observed else "created"
    if state is EntryState.FAILED:
        return "failed"
    return "pending"  # in flight, or found not to have happened: the next run does it


def _moment(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# -- the journal, page by page ------------------------------------------------------------


def iter_rows(
    journal: Journal,
    settings: Settings,
    *,
    live: LiveReader | None = None,
    page: int = PAGE,
) -> Generator[Row, None, None]:
    """Every purchase row, then every contact row, from one snapshot of the journal.

    `page` rows are read at a time (one cursor per query); with `live`, each
    page's codes and contacts are looked up in one batch before its rows.
    """
    with journal.snapshot():
        holds = {h.subject: h for h in journal.holds()}
        for purchases in journal.iter_purchase_facts(settings.mautic.coupon_email, page=page):
            found = None
            if live is not None:
                found = live.read(
                    (f.code or "" for f in purchases),
                    (f.contact_id for f in purchases if f.contact_id is not None),
                )
            for facts in purchases:
                row = purchase_row(facts, settings, holds=holds, live=found)
                if row is not None:
                    yield row
        for contacts in _pages(_contact_groups(journal, settings, page), page):
            found = None
            if live is not None:
                cids = (f.contact_id for group in contacts for f in group)
                found = live.read((), (cid for cid in cids if cid is not None))
            for group in contacts:
                yield contact_row(group, settings, holds=holds, live=found)


def _contact_groups(
    journal: Journal, settings: Settings, page: int
) -> Iterator[list[ContactFacts]]:
    """The contact facts, one list per contact (its tiers) or per lone lead."""
    m = settings.mautic
    facts = itertools.chain.from_iterable(
        journal.iter_contact_facts(m.invite_email_vip, m.invite_email_basic, page=page)
    )
    for _, group in itertools.groupby(facts, key=_contact_key):
        yield list(group)


def _contact_key(fact: ContactFacts) -> tuple[bool, int | str | None]:
    return (False, fact.contact_id) if fact.tier is not None else (True, fact.email)


def _pages(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


# -- writing --------------------------------------------------------------------------------


@dataclass
class Counts:
    purchases: int = 0
    contacts: int = 0

    def add(self, row: Row) -> None:
        if row.record == "purchase":
            self.purchases += 1
        else:
            self.contacts += 1


def write_csv(rows: Iterable[Row], out: TextIO) -> Counts:
    """A header, then one line per row, written as each row comes."""
    counts = Counts()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    write = writer.writerow
    for row in rows:
        write(row.as_cells())
        counts.add(row)
    return counts


def write_json(
    rows: Iterable[Row],
    out: TextIO,
    *,
    live: bool,
    generated_at: datetime,
    errors: Callable[[], Mapping[str, str]] = dict,
) -> Counts:
    """One JSON document, its `rows` array written row by row.

    `counts` and `service_errors` follow the rows: only the end knows them.
    """
    counts = Counts()
    head = {
        "format_version": FORMAT_VERSION,
        "generated_at": generated_at.isoformat(timespec="seconds"),
        "live": live,
    }
    out.write(json.dumps(head)[:-1] + ', "rows": [')
    separator = "\n"
    for row in rows:
        out.write(separator + json.dumps(row.as_json()))
        separator = ",\n"
        counts.add(row)
    tail = {
        "counts": {"purchases": counts.purchases, "contacts": counts.contacts},
        "service_errors": dict(errors()),
    }
    out.write("\n], " + json.dumps(tail)[1:] + "\n")
    return counts


def check_output(path: Path) -> None:
    """A UsageError (exit 2) for an `--output` that cannot be a file: checked first."""
    if path.is_dir():
        raise UsageError(f"--output {path} is a directory", hint="name a file")
    if not path.parent.is_dir():
        raise UsageError(
            f"--output {path}: the folder {path.parent} does not exist", hint="create it first"
        )


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[TextIO]:
    """A text file that appears at `path` whole, or not at all.

    Written to a temporary file beside it (mode 0600), flushed to disk and
    renamed over `path` only when the block ends without an error; on any
    error the temporary file is removed and `path` is left as it was.
    """
    check_output(path)
    folder = path.parent
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise SyncctlError(
            f"cannot write {path}: {exc.strerror or exc}", hint="check the folder's permissions"
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(exc, OSError):
            raise SyncctlError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    with contextlib.suppress(OSError):  # the rename itself survives a power cut
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@dataclass
class ExportResult:
    counts: Counts
    output: Path | None
    #: --live: services that could not be read (service -> the error).
    errors: dict[str, str] = field(default_factory=dict)


def export(
    config: Config,
    *,
    fmt: Format,
    output: Path | None,
    live: bool,
    stdout: TextIO,
    services: Services | None = None,
) -> ExportResult:
    """Write the export to `output` (atomically) or to `stdout`.

    With `live`, the services are connected first, so a missing secret
    stops the export before anything is written.
    """
    settings = config.settings
    now = datetime.now(UTC)
    if output is not None:
        check_output(output)  # before any service is asked
    with contextlib.ExitStack() as stack:
        reader = None
        if live:
            from syncctl.clients.services import Services

            sv = services if services is not None else stack.enter_context(Services.connect(config))
            reader = LiveReader(sv, settings, now=now)
        journal = stack.enter_context(Journal.open(config.state, readonly=True))
        journal.require_reports()  # a store it cannot read: one line, nothing written
        out = stack.enter_context(atomic_output(output)) if output is not None else stdout
        rows = iter_rows(journal, settings, live=reader)
        stack.callback(rows.close)  # its read transaction ends before the journal closes
        errors = (lambda: reader.errors) if reader is not None else dict
        if fmt is Format.JSON:
            counts = write_json(rows, out, live=live, generated_at=now, errors=errors)
        else:
            counts = write_csv(rows, out)
    return ExportResult(counts, output, dict(reader.errors) if reader is not None else {})
