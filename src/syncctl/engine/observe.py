"""Reading the world: a `Snapshot` from the services and the journal.

Cost is the point of this module. An incremental run reads what changed
(Stripe events or a session window, Mautic contacts modified since the
cursor, the pending retries) and asks the services only about facts the
journal does not already know; a handful of calls when nothing changed.
`--full` (and a first run) reads everything with the largest pages each
API allows, and derives from the services alone what was already done, so
a lost state directory never repeats a side effect.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from syncctl.clients.mautic import Contact as MauticContact
from syncctl.clients.services import Services
from syncctl.clients.shopware import IndividualCode, code_key, redeemable
from syncctl.clients.stripe import CheckoutSession, TroubleEvent
from syncctl.config import Settings
from syncctl.engine.codes import coupon_code, invite_code
from syncctl.engine.model import Contact, Invite, Purchase, Snapshot, normalize_email
from syncctl.engine.recall import JournalFacts
from syncctl.engine.sendlog import SendLog
from syncctl.engine.troubles import Troubles, merge, refund_key, reinstated
from syncctl.errors import NotFound, ServiceError
from syncctl.state.journal import Journal

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Incremental Mautic reads start this long before the cursor (the newest
#: dateModified seen, in Mautic's own clock): an edit whose transaction
#: committed a little after its timestamp is re-read (and deduplicated), not
#: lost. Longer would re-read the previous run's own writes every time.
MAUTIC_OVERLAP = timedelta(seconds=15)
#: Contacts per Mautic page. Mautic sets no maximum; 500 keeps a decoded page
#: near 15 MB (the field definitions repeat in every contact) while a full
#: read of 100k contacts takes 200 calls.
MAUTIC_PAGE = 500
#: Incremental Stripe event reads start this long before the cursor.
EVENTS_OVERLAP = 300
#: Stripe keeps events 30 days; an older cursor falls back to listing sessions.
EVENTS_HORIZON = 29 * 86400
#: Above this many emails of unknown lead state, reading every lead (200 a
#: page) is cheaper than batched lookups (25 addresses a query) would be.
LEAD_LOOKUPS_MAX = 1000

CURSOR_STRIPE = "stripe"
CURSOR_MAUTIC = "mautic"
CURSOR_DNC = "mautic.dnc"


@dataclass
class Observation:
    snapshot: Snapshot
    #: Cursor values to store once the run's work succeeded.
    cursors: dict[str, str] = field(default_factory=dict)
    mode: str = "incremental"
    scanned: dict[str, int] = field(default_factory=dict)
    #: Services whose reads failed (service -> the error); their facts are unknown.
    errors: dict[str, str] = field(default_factory=dict)
    #: Pending retries whose item no longer exists (kind, ref): drop them.
    gone: list[tuple[str, str]] = field(default_factory=list)


def to_purchase(session: CheckoutSession, settings: Settings, secret: str) -> Purchase:
    vip_prices = set(settings.stripe.vip_price_ids)
    vip_products = set(settings.stripe.vip_product_ids)
    vip = any(
        item.price_id in vip_prices or item.product_id in vip_products
        for item in session.line_items
    )
    return Purchase(
        session_id=session.id,
        email=normalize_email(session.email),
        name=session.name,
        created=session.created,
        vip=vip,
        paid=session.is_paid,
        code=coupon_code(session.id, secret, settings.shopware.code_prefix),
        payment_intent=session.payment_intent,
    )


def to_contact(contact: MauticContact, settings: Settings, *, dated: bool = True) -> Contact:
    """The planner's view of a contact.

    Names are interned (campaigns repeat them a lot); `dated=False` leaves
    out the modification time, which planning never reads: at 100k contacts
    both keep a run's snapshot some 10 MB smaller.
    """
    f = settings.mautic.fields
    return Contact(
        id=contact.id,
        email=normalize_email(contact.email),
        firstname=sys.intern(contact.firstname or ""),
        lastname=sys.intern(contact.lastname or ""),
        vip=contact.flag(f.vip_status),
        promo_code=contact.text(f.promo_code).strip(),
        link_vip=contact.text(f.invite_link_vip).strip(),
        link_basic=contact.text(f.invite_link_basic).strip(),
        opt_in=contact.flag(f.opt_in_confirmed),
        date_modified=contact.date_modified if dated else None,
        dnc=contact.dnc_email,
        hold_tag=bool(settings.mautic.hold_tag) and contact.has_tag(settings.mautic.hold_tag),
    )


class _Observer(JournalFacts, SendLog):
    def __init__(
        self,
        services: Services,
        journal: Journal,
        settings: Settings,
        code_secret: str,
        now: datetime,
        progress: Callable[[str], None],
    ) -> None:
        self.sv = services
        self.journal = journal
        self.settings = settings
        self.secret = code_secret
        self.now = now
        self.progress = progress
        self.cursors: dict[str, str] = {}
        self._live: dict[str, Invite] | None = None
        #: Mail keys found sent in Mautic's stats (not in the journal) -> the logged time.
        self.sent_at: dict[str, datetime] = {}
        #: Pending retries whose item no longer exists (kind, ref).
        self.gone: list[tuple[str, str]] = []
        #: Codes created with a payload by an earlier syncctl -> row id.
        self.blocked_codes: dict[str, str] = {}
        #: (email id, contact id) pairs a full read of the send logs found.
        self.logged_sends: set[tuple[int, int]] = set()
        self._lock = threading.Lock()
        #: Bulk reads a full run started at once, in parallel (name -> future).
        self.prefetched: dict[str, Future[Any]] = {}
        self.scanned: dict[str, int] = defaultdict(int)
        #: Sessions that were in trouble and count again (rule 17).
        self.reinstated: set[str] = set()

    def bulk(self, name: str, read: Callable[[], T]) -> T:
        """A bulk read, from its prefetch when a full run started it early.

        Each is asked for once; the prefetch lets go of it, so that what its
        consumer drops (a set of every lead's email) is freed at once.
        """
        future = self.prefetched.pop(name, None)
        return future.result() if future is not None else read()

    def prefetch(self, pool: ThreadPoolExecutor) -> None:
        """Start the full run's independent bulk reads, one per service call chain."""
        m = self.settings.mautic
        readers: dict[str, Callable[[], Any]] = {
            "codes": self._read_codes,
            "leads": self._read_lead_emails,
            "invites": self._read_invites,
        }
        for email_id in (m.coupon_email, m.invite_email_vip, m.invite_email_basic):
            readers[f"stats:{email_id}"] = functools.partial(self._read_stats, email_id)
        for name, read in readers.items():
            self.prefetched[name] = pool.submit(read)

    def _read_codes(self) -> set[str]:
        self.progress("reading the VIP promotion's codes")
        promotion = self.settings.shopware.vip_promotion_id
        found: set[str] = set()
        for row in self.sv.shopware.iter_codes(promotion):
            found.add(row.code)
            self._check_blocked(row)
        return found

    def _check_blocked(self, row: IndividualCode) -> None:
        """A code an earlier syncctl created with a payload: the checkout refuses it."""
        if row.blocked and row.payload is not None and "stripe_session" in row.payload:
            with self._lock:
                self.blocked_codes[row.code] = row.id

    def _read_lead_emails(self) -> set[str]:
        self.progress("reading every EspoCRM lead")
        with_lead: set[str] = set()
        for lead in self.sv.espocrm.iter_leads():
            for address in lead.email_addresses or ((lead.email,) if lead.email else ()):
                with_lead.add(address.lower())
        return with_lead

    # -- purchases ----------------------------------------------------------------

    def sessions(self, full: bool) -> dict[str, Purchase]:
        found: dict[str, Purchase] = {}
        troubles = Troubles()

        def take(sessions: Iterable[CheckoutSession]) -> None:
            for session in sessions:
                self.scanned["sessions"] += 1
                found[session.id] = to_purchase(session, self.settings, self.secret)

        now_ts = int(self.now.timestamp())
        cursor = self.journal.cursor(CURSOR_STRIPE)
        stripe = self.sv.stripe
        if full or cursor is None:
            self.progress("reading every Stripe checkout session")
            take(stripe.iter_completed_sessions(None))
            # Refunds and disputes of any age: the charges list, one paged read.
            self.progress("reading Stripe's refunded and disputed charges")
            for trouble in stripe.iter_payment_troubles(None):
                self.scanned["troubles"] += 1
                troubles.add(trouble)
            self.cursors[CURSOR_STRIPE] = str(now_ts)
        else:
            since = int(cursor)
            source = self.settings.stripe.incremental_source
            if source == "events" and now_ts - since < EVENTS_HORIZON:
                newest = since
                # New purchases, refunds and disputes in one paged read (rule 17).
                for event in stripe.iter_purchase_events(since - EVENTS_OVERLAP):
                    self.scanned["events"] += 1
                    newest = max(newest, event.created)
                    if isinstance(event, TroubleEvent):
                        troubles.add(event.trouble)
                        continue
                    session = event.session
                    found[session.id] = to_purchase(session, self.settings, self.secret)
                # Nothing is lost by moving to an hour ago: every event older
                # than that existed when this run listed them.
                self.cursors[CURSOR_STRIPE] = str(max(newest, now_ts - 3600))
            else:
                window = self.settings.stripe.lookback_hours * 3600
                take(stripe.iter_completed_sessions(since - window))
                for trouble in stripe.iter_payment_troubles(since - window):
                    self.scanned["troubles"] += 1
                    troubles.add(trouble)
                self.cursors[CURSOR_STRIPE] = str(now_ts)
        self._troubled_sessions(found, troubles)
        for item in self.journal.pending("session"):
            if item.ref in found:
                continue
            try:
                session = stripe.get_session(item.ref)
            except NotFound:
                self.gone.append(("session", item.ref))
                continue
            found[session.id] = to_purchase(session, self.settings, self.secret)
        return self._with_troubles(found, troubles)

    def _troubled_sessions(self, found: dict[str, Purchase], troubles: Troubles) -> None:
        """Read the purchase of each refund or dispute the run saw but not its session:
        an incremental run sees the refund of a purchase made weeks ago (one call each;
        refunds are rare)."""
        known = {p.payment_intent for p in found.values() if p.payment_intent}
        for intent in sorted(troubles.seen() - known):
            session = self.sv.stripe.session_for_payment(intent)
            if session is not None:
                found[session.id] = to_purchase(session, self.settings, self.secret)

    def _with_troubles(self, found: dict[str, Purchase], troubles: Troubles) -> dict[str, Purchase]:
        """Rule 17: what this run read, else what earlier runs wrote down (one query)."""
        bought = [sid for sid, p in found.items() if p.vip and p.paid]
        refs = self.journal.done_refs(refund_key(sid) for sid in bought) if bought else {}
        revoke = self.settings.stripe.on_refund == "revoke"
        merged = merge(found, troubles, refs, revoke=revoke)
        self.reinstated = reinstated(merged, refs)
        return merged

    # -- contacts -----------------------------------------------------------------

    def contacts(self, full: bool, purchase_emails: set[str]) -> dict[int, Contact]:
        found: dict[int, Contact] = {}
        mautic = self.sv.mautic
        cursor = self.journal.cursor(CURSOR_MAUTIC)
        newest: datetime | None = datetime.fromisoformat(cursor) if cursor else None

        def take(contacts: Iterable[MauticContact]) -> None:
            nonlocal newest
            for raw in contacts:
                self.scanned["contacts"] += 1
                found[raw.id] = to_contact(raw, self.settings, dated=False)
                if raw.date_modified and (newest is None or raw.date_modified > newest):
                    newest = raw.date_modified

        if full or cursor is None:
            self.progress("reading every Mautic contact")
            take(mautic.iter_all(page_size=MAUTIC_PAGE))
            self.new_dnc()  # every contact is read: this only moves the cursor
        else:
            since = datetime.fromisoformat(cursor) - MAUTIC_OVERLAP
            take(mautic.iter_modified_since(since, page_size=MAUTIC_PAGE))
            pending = {int(item.ref) for item in self.journal.pending("contact")}
            pending = (pending | self.new_dnc()) - set(found)
            if pending:
                again = mautic.get_many(pending)
                take(again.values())
                # deleted or merged away: nothing left to retry
                self.gone.extend(("contact", str(cid)) for cid in sorted(pending - set(again)))
            known = {c.email for c in found.values() if c.email}
            missing = purchase_emails - known
            if missing:
                for matches in mautic.find_by_emails(missing).values():
                    take(matches)
        if newest is not None:
            self.cursors[CURSOR_MAUTIC] = newest.astimezone(UTC).isoformat()
        return found

    def new_dnc(self) -> set[int]:
        """Contacts that landed on the email Do-Not-Contact list since the last run.

        Mautic does not move a contact's dateModified for a DNC change
        (since 5.1.1), so the modified-since read misses them (rules 19, 20);
        its DNC table, read from the last entry seen, costs one call a run.
        """
        since = self.journal.cursor(CURSOR_DNC)
        found: set[int] = set()
        newest = int(since) if since and since.isdigit() else 0
        try:
            for entry in self.sv.mautic.iter_dnc_entries(since_id=newest, page_size=MAUTIC_PAGE):
                found.add(entry.contact_id)
                newest = max(newest, entry.id)
        except ServiceError as exc:  # the contacts themselves were read: go on without it
            log.warning("could not read Mautic's Do-Not-Contact list: %s", exc)
            return set()
        self.cursors[CURSOR_DNC] = str(newest)
        return found

    # -- facts the journal may already know ---------------------------------------

    def existing_codes(self, purchases: list[Purchase], full: bool) -> set[str]:
        """Codes that exist in the VIP promotion; a full audit asks Shopware, not the cache."""
        if not purchases:
            return set()  # nothing to ask about: skip loading every coupon key
        done = (
            set()
            if full
            else {k.removeprefix("coupon:") for k in self.journal.done_keys("coupon:")}
            # A code rule 17 removed is asked about again: a dispute won brings it back.
            - {k.removeprefix("uncoupon:") for k in self.journal.done_keys("uncoupon:")}
        )
        known = {p.code for p in purchases if p.session_id in done}
        unknown = [p for p in purchases if p.session_id not in done]
        if not unknown:
            return known
        promotion = self.settings.shopware.vip_promotion_id
        if full:
            return known | self.bulk("codes", self._read_codes)
        found = self.sv.shopware.find_codes(p.code for p in unknown)
        for p in unknown:
            row = found.get(code_key(p.code))
            if row is not None and row.promotion_id == promotion:
                known.add(p.code)
                self._check_blocked(row)
        return known

    def legacy_codes(
        self, purchases: dict[str, Purchase], contacts: dict[int, Contact], codes: set[str]
    ) -> dict[str, Purchase]:
        """Purchases the old workflows handled keep the code they were given.

        n8n minted random codes and stored them in `promo_code`. When a buyer's
        contact holds a code that exists in the VIP promotion but is none of
        the derived ones, it belongs to the buyer's oldest purchase whose
        derived code is missing: no second code is minted for it.
        """
        holder: dict[str, Contact] = {}
        for c in sorted(contacts.values(), key=lambda c: c.id):
            if c.email:
                holder.setdefault(c.email, c)
        bought: dict[str, list[Purchase]] = defaultdict(list)
        for p in purchases.values():
            if p.is_vip_purchase and p.email:
                bought[p.email].append(p)
        out = dict(purchases)
        for email, mine in bought.items():
            contact = holder.get(email)
            legacy = contact.promo_code if contact else ""
            if not legacy or legacy not in codes or legacy in {p.code for p in mine}:
                continue
            missing = sorted((p for p in mine if p.code not in codes), key=lambda p: p.recency)
            if missing:
                out[missing[0].session_id] = replace(missing[0], code=legacy)
        return out

    def leads(self, emails: set[str], full: bool) -> set[str]:
        """Emails with a lead; a full audit asks Espo, not the cache."""
        if not emails:
            return set()  # nothing to ask about: skip loading every lead key
        done = set() if full else {k.removeprefix("lead:") for k in self.journal.done_keys("lead:")}
        known = emails & done
        unknown = emails - done
        if not unknown:
            return known
        if full or len(unknown) > LEAD_LOOKUPS_MAX:
            return known | (unknown & self.bulk("leads", self._read_lead_emails))
        with_lead = self.sv.espocrm.emails_with_leads(unknown)
        return known | {e for e in unknown if e.lower() in with_lead}

    def invites(self) -> dict[str, Invite]:
        """Live invites of syncctl's bot in the two campaign channels."""
        return self.bulk("invites", self._read_invites)

    def _read_invites(self) -> dict[str, Invite]:
        bot = self.journal.get_meta("discord.bot_user_id")
        if bot is None:
            bot = self.sv.discord.current_user_id()
            if not self.journal.readonly:
                self.journal.set_meta("discord.bot_user_id", bot)
        found: dict[str, Invite] = {}
        for channel in (
            self.settings.discord.vip_channel_id,
            self.settings.discord.basic_channel_id,
        ):
            for inv in self.sv.discord.list_channel_invites(channel):
                if inv.inviter_id != bot:
                    continue  # a person's invite, or another bot's: not ours to judge
                found[inv.code] = Invite(
                    inv.code,
                    channel,
                    inv.created_at,
                    inv.inviter_id,
                    inv.uses or 0,
                    inv.max_uses or 0,
                )
        return found

    def promotion_problem(self, vip: list[Purchase]) -> str:
        """Rule 23, asked once per run that has VIP purchases to serve."""
        if not vip:
            return ""
        promotion_id = self.settings.shopware.vip_promotion_id
        promotion = self.sv.shopware.find_promotion(promotion_id)
        return redeemable(promotion, self.now, promotion_id=promotion_id) or ""

    def withdrawn_codes(self, purchases: Iterable[Purchase]) -> dict[str, str]:
        """Codes of withdrawn purchases in the VIP promotion -> the order that redeemed
        each ("" when unused): rule 17 deletes only unused ones. One search."""
        wanted = [p.code for p in purchases if p.withdrawn_vip]
        if not wanted:
            return {}
        promotion = self.settings.shopware.vip_promotion_id
        found = self.sv.shopware.find_codes(wanted)
        out: dict[str, str] = {}
        for code in wanted:
            row = found.get(code_key(code))
            if row is not None and row.promotion_id == promotion:
                out[code] = (row.order_id or "unknown") if row.redeemed else ""
        return out

    def withdrawn_live(
        self, contacts: Iterable[Contact], invites: dict[str, Invite] | None
    ) -> set[str]:
        """Unused invites of syncctl's held by contacts that may not have one (rule 20).

        A full run knows the live invites already; an incremental run asks
        Discord about these few codes (opt-outs are rare). A used single-use
        invite is gone from Discord: it stays on the contact, and the member
        stays in the server.
        """
        codes = {
            code
            for c in contacts
            if not c.reachable
            for code in (invite_code(c.link_vip), invite_code(c.link_basic))
            if code
        }
        if not codes:
            return set()
        if invites is not None:
            return codes & set(invites)
        bot = self.journal.get_meta("discord.bot_user_id")
        live = set()
        for code in sorted(codes):
            invite = self.sv.discord.get_invite(code)
            if invite is not None and (bot is None or invite.inviter_id in (None, bot)):
                live.add(code)
        return live


def _facts(
    observer: _Observer,
    attempt: Callable[[str, Callable[[], Any], Any], Any],
    unknown: set[str],
    purchases: dict[str, Purchase],
    contacts: dict[int, Contact],
    full: bool,
) -> Snapshot:
    """Everything the planner needs to know about the run's purchases and contacts."""
    vip = [p for p in purchases.values() if p.is_vip_purchase]
    purchase_emails = {p.email for p in vip if p.email}
    if not full:
        purchases = observer.recorded_codes(purchases)
        vip = [p for p in purchases.values() if p.is_vip_purchase]
    nothing: set[str] = set()
    codes = attempt("codes", lambda: observer.existing_codes(vip, full), nothing)
    if full and "codes" not in unknown:
        purchases = observer.legacy_codes(purchases, contacts, codes)
        vip = [p for p in purchases.values() if p.is_vip_purchase]
    withdrawn = [p for p in purchases.values() if p.withdrawn_vip]
    withdrawn_codes = attempt("codes", lambda: observer.withdrawn_codes(withdrawn), {})
    opted_in = {c.email for c in contacts.values() if c.opt_in and c.email}
    leads = attempt("leads", lambda: observer.leads(opted_in, full), nothing)
    invites = attempt("invites", observer.invites, None) if full else None
    sent = attempt("sent", lambda: observer.sent(contacts, vip, invites, full), nothing)
    return Snapshot(
        purchases=tuple(purchases.values()),
        contacts=tuple(contacts.values()),
        existing_codes=frozenset(codes),
        blocked_codes=dict(observer.blocked_codes),
        promotion_problem=attempt("promotion", lambda: observer.promotion_problem(vip), ""),
        withdrawn_codes=withdrawn_codes,
        reinstated=frozenset(observer.reinstated),
        leads=frozenset(leads),
        sent=frozenset(sent),
        sent_at=dict(observer.sent_at),
        logged_sends=frozenset(observer.logged_sends),
        issued=observer.issued(contacts.values()),
        revoked=frozenset(observer.revoked(contacts.values())),
        withdrawn_live=(
            attempt(
                "withdrawn",
                lambda: frozenset(observer.withdrawn_live(contacts.values(), invites)),
                None,
            )
            if observer.settings.discord.revoke_on_opt_out
            else frozenset()
        ),
        holds=observer.held(contacts.values(), purchases.values()),
        lead_owners=(
            observer.lead_owners(contacts.values(), leads) if "leads" not in unknown else {}
        ),
        own_coupons=frozenset(
            observer.made("coupon", (p.session_id for p in purchases.values() if p.is_vip_purchase))
        ),
        own_contacts=frozenset(observer.made("contact", purchase_emails)),
        latest_purchase=(
            observer.latest_known(
                purchase_emails | {p.email for p in withdrawn if p.email},
                {p.session_id for p in withdrawn},
            )
            if not full
            else {}
        ),
        invites=invites,
        observed_at=observer.now,
        full=full,
        unknown=frozenset(unknown),
    )


def observe(
    services: Services,
    journal: Journal,
    settings: Settings,
    code_secret: str,
    *,
    full: bool,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> Observation:
    """Read the run's scope and every fact the planner needs about it.

    Mautic is the hub: when its contacts cannot be read, the run stops. Any
    other service that fails here is named in `errors`, the facts it would
    have given are marked unknown, and the planner leaves alone whatever
    depends on them; everything else goes on.
    """
    now = now or datetime.now(UTC)
    first_run = journal.cursor(CURSOR_STRIPE) is None or journal.cursor(CURSOR_MAUTIC) is None
    full = full or first_run
    observer = _Observer(services, journal, settings, code_secret, now, progress or log.debug)
    errors: dict[str, str] = {}
    unknown: set[str] = set()

    def attempt(fact: str, read: Callable[[], T], default: T) -> T:
        try:
            return read()
        except ServiceError as exc:
            errors.setdefault(exc.service, str(exc))
            unknown.add(fact)
            return default

    no_purchases: dict[str, Purchase] = {}
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="observe") as pool:
        if full:
            # A full read needs nothing from one service to ask another: read
            # them side by side (the largest pages each allows, one after the
            # other within a service), rather than one service after another.
            observer.prefetch(pool)
            reading = pool.submit(
                attempt, "purchases", lambda: observer.sessions(full), no_purchases
            )
            contacts = observer.contacts(full, set())
            purchases = reading.result()
        else:
            purchases = attempt("purchases", lambda: observer.sessions(full), no_purchases)
        if "purchases" in unknown:
            observer.cursors.pop(CURSOR_STRIPE, None)
        # A withdrawn purchase's buyer is read too: the VIP flag may go (rule 17).
        buyers = [p for p in purchases.values() if p.is_vip_purchase or p.withdrawn_vip]
        purchase_emails = {p.email for p in buyers if p.email}
        if not full:
            contacts = observer.contacts(full, purchase_emails)
        snapshot = _facts(observer, attempt, unknown, purchases, contacts, full)
    mode = "full" if full else "incremental"
    if first_run and full:
        mode = "full (first run)"
    return Observation(
        snapshot, observer.cursors, mode, dict(observer.scanned), errors, observer.gone
    )
