"""`syncctl status EMAIL`: one person across the five systems, and what happens next.

Answers "what happened to this backer?" without five admin panels: the
Mautic contact's fields, the Stripe purchases, the coupon code of each VIP
purchase in Shopware, the Discord invite behind each stored link (live or
gone, uses, expiry), the EspoCRM lead, the journal's history for the
address, and the actions a run would take for this person. First of all,
any hold (rule 18, `syncctl hold`) on the address or on one of its
purchases, with its reason, who set it and when: the reason a run leaves
them alone.

Only reads: the journal is opened read-only and no vendor write is made.
The "next run" part is the real planner over a snapshot of this one person,
observed the way an incremental run observes (journal facts first, then
targeted look-ups), so it is what `reconcile` would do once this person is
in a run's scope (the nightly `--full` audit always includes everyone).

Stripe matches `customer_details[email]` as typed by the buyer. The lookup
asks for each spelling known (the one given, lower case, Mautic's), adds
the sessions the journal already processed for this person, and scans the
newest sessions of the look-back window case-insensitively; a purchase made
with another capitalisation before that window and never processed is the
one case it can miss, and the answer says so.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from syncctl.clients.discord import Invite as DiscordInvite
from syncctl.clients.espocrm import Lead
from syncctl.clients.services import Services
from syncctl.clients.stripe import CheckoutSession
from syncctl.commands.history import entry_dict, sessions_in
from syncctl.commands.holds import hold_dict
from syncctl.config import Config, Settings
from syncctl.engine.codes import invite_code
from syncctl.engine.model import (
    Contact,
    Invite,
    Plan,
    Purchase,
    Snapshot,
    Tier,
    is_valid_email,
    normalize_email,
)
from syncctl.engine.observe import _Observer, to_contact, to_purchase
from syncctl.engine.plan import channel_id
from syncctl.engine.plan import plan as make_plan
from syncctl.engine.troubles import Troubles, merge, refund_key
from syncctl.errors import NotFound, ServiceError, UsageError
from syncctl.state.journal import Entry, EntryState, Hold, HoldKind, Journal, PendingItem

FORMAT_VERSION = 1
#: At most this many of the newest sessions are scanned for other spellings.
SCAN_LIMIT = 300
SERVICES = ("mautic", "stripe", "shopware", "discord", "espocrm")
#: What a section looks up comes from other services: Shopware is asked for
#: the codes of the Stripe purchases and the codes stored in Mautic; Discord
#: for the links stored in Mautic. With those unread, an empty section
#: proves nothing.
INPUTS: dict[str, tuple[str, ...]] = {"shopware": ("stripe", "mautic"), "discord": ("mautic",)}


@dataclass(frozen=True)
class CodeView:
    """A purchase's coupon code as Shopware has it."""

    code: str
    session_id: str | None  # None: a code stored in Mautic that no purchase here derives
    state: str  # "exists" | "missing" | "in another promotion"

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "session_id": self.session_id, "state": self.state}


@dataclass(frozen=True)
class InviteView:
    """A stored invite link and what Discord says about it."""

    contact_id: int
    tier: str
    link: str
    code: str | None
    live: bool
    state: str  # one line: "live", "gone: ...", "not a Discord invite link"
    uses: int | None = None
    max_uses: int | None = None
    expires_at: datetime | None = None
    created_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "contact_id": self.contact_id,
            "tier": self.tier,
            "link": self.link,
            "code": self.code,
            "live": self.live,
            "state": self.state,
            "uses": self.uses,
            "max_uses": self.max_uses,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


@dataclass
class PersonStatus:
    """Everything `syncctl status` found for one email address."""

    email: str
    contacts: list[Contact] = field(default_factory=list)
    purchases: list[Purchase] = field(default_factory=list)
    sessions: dict[str, CheckoutSession] = field(default_factory=dict)
    codes: list[CodeView] = field(default_factory=list)
    invites: list[InviteView] = field(default_factory=list)
    leads: list[Lead] = field(default_factory=list)
    history: list[Entry] = field(default_factory=list)
    pending: list[PendingItem] = field(default_factory=list)
    #: Holds set with `syncctl hold` on the address or on any of its purchases.
    holds: list[Hold] = field(default_factory=list)
    plan: Plan | None = None
    errors: dict[str, str] = field(default_factory=dict)
    #: Sections whose service answered but was not asked about everything,
    #: because what to ask comes from a service that could not be read.
    unchecked: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    duration: float = 0.0

    @property
    def found(self) -> bool:
        """Does any system (or the journal) know this address?"""
        return bool(self.contacts or self.purchases or self.leads or self.history or self.holds)

    @property
    def complete(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "email": self.email,
            "holds": [hold_dict(h) for h in self.holds],
            "mautic": {"contacts": [_contact_dict(c) for c in self.contacts]},
            "stripe": {"purchases": [_purchase_dict(p) for p in self.purchases]},
            "shopware": {"codes": [c.to_dict() for c in self.codes]},
            "discord": {"invites": [i.to_dict() for i in self.invites]},
            "espocrm": {"leads": [_lead_dict(lead) for lead in self.leads]},
            "history": [entry_dict(e) for e in self.history],
            "pending": [
                {"kind": p.kind, "ref": p.ref, "reason": p.reason, "attempts": p.attempts}
                for p in self.pending
            ],
            "next_run": None
            if self.plan is None
            else {
                "actions": [a.to_dict() for a in self.plan.actions],
                "notes": [n.to_dict() for n in self.plan.notes],
            },
            "errors": dict(self.errors),
            "unchecked": dict(self.unchecked),
            "notes": list(self.notes),
        }


def person_status(config: Config, email: str, *, history_limit: int | None = 50) -> PersonStatus:
    """Read one person's state everywhere; raises UsageError when nobody has the address."""
    if not is_valid_email(email):
        raise UsageError(f"{email!r} is not an email address", hint="check the spelling")
    config.secrets.require()
    settings = config.settings
    started = time.monotonic()
    with (
        Journal.open(config.state, readonly=True) as journal,
        Services.connect(config) as sv,
    ):
        collector = _Collector(sv, journal, settings, config.secret("SYNCCTL_CODE_SECRET"), email)
        status = collector.collect(history_limit)
    status.duration = time.monotonic() - started
    if not status.found and status.complete:
        raise UsageError(
            f"nobody with the email {email.strip()} in Mautic, Stripe, EspoCRM or the journal",
            hint="check the address; any capitalisation matches",
        )
    return status


class _Collector:
    def __init__(
        self, sv: Services, journal: Journal, settings: Settings, secret: str, email: str
    ) -> None:
        self.sv = sv
        self.journal = journal
        self.settings = settings
        self.secret = secret
        self.given = email.strip()
        self.wanted = normalize_email(email) or ""
        self.status = PersonStatus(email=self.wanted)
        self.live_invites: dict[str, Invite] = {}

    @contextmanager
    def section(self, service: str) -> Iterator[None]:
        """A service that fails leaves its section empty, named in `errors`."""
        try:
            yield
        except ServiceError as exc:
            self.status.errors[service] = str(exc)

    def collect(self, history_limit: int | None) -> PersonStatus:
        s = self.status
        everything = self.journal.history(subject=self.wanted)
        s.history = everything[:history_limit] if history_limit else everything
        raw_contacts = []
        with self.section("mautic"):
            raw_contacts = self.sv.mautic.find_by_email(self.given)
            s.contacts = [to_contact(c, self.settings) for c in raw_contacts]
        spellings = {self.given, self.wanted, *(c.email for c in raw_contacts if c.email)}
        with self.section("stripe"):
            self.purchases(spellings, everything)
        self.holds(everything, history_limit)
        with self.section("shopware"):
            self.codes()
        with self.section("discord"):
            self.invites(everything)
        with self.section("espocrm"):
            s.leads = self.sv.espocrm.find_leads_by_email(self.wanted)
        contact_ids = {str(c.id) for c in s.contacts}
        s.pending = [
            p
            for p in self.journal.pending()
            if (p.kind == "session" and p.ref in s.sessions)
            or (p.kind == "contact" and p.ref in contact_ids)
        ]
        for section, inputs in INPUTS.items():
            unread = [name for name in inputs if name in s.errors]
            if unread and section not in s.errors:
                s.unchecked[section] = (
                    f"what to look up comes from {' and '.join(unread)}, which could not be read"
                )
        if s.errors:
            s.notes.append(
                "what the next run would do is not shown: "
                + ", ".join(sorted(s.errors))
                + " could not be read"
            )
        else:
            with self.section("mautic"):
                s.plan = self.next_run(everything)
        return s

    # -- holds (rule 18) ----------------------------------------------------------

    def holds(self, history: list[Entry], history_limit: int | None) -> None:
        """Holds on the person or any purchase known (Stripe's, and the journal's
        when Stripe could not be read), and their purchases' hold events in the history."""
        s = self.status
        purchases = set(s.sessions) | sessions_in(history)
        found = self.journal.held([self.wanted, *sorted(purchases)])
        s.holds = sorted({h.subject: h for h in found.values()}.values(), key=_hold_order)
        trail = self.journal.hold_trail(purchases)
        if trail:
            merged = sorted({e.id: e for e in [*history, *trail]}.values(), key=lambda e: -e.id)
            s.history = merged[:history_limit] if history_limit else merged

    # -- Stripe -------------------------------------------------------------------

    def purchases(self, spellings: set[str], history: list[Entry]) -> None:
        stripe = self.sv.stripe
        found: dict[str, CheckoutSession] = {}
        for spelling in sorted(spellings):
            for session in stripe.iter_sessions_for_email(spelling):
                found[session.id] = session
        known = {e.key.removeprefix("coupon:") for e in history if e.key.startswith("coupon:")} | {
            str(e.detail["session_id"]) for e in history if "session_id" in e.detail
        }
        for sid in sorted(known - set(found)):
            try:
                found[sid] = stripe.get_session(sid)
            except NotFound:
                self.status.notes.append(f"the journal knows session {sid}, Stripe does not")
        since = int(time.time()) - self.settings.stripe.lookback_hours * 3600
        for scanned, session in enumerate(stripe.iter_completed_sessions(since), start=1):
            if normalize_email(session.email) == self.wanted:
                found.setdefault(session.id, session)
            if scanned >= SCAN_LIMIT:
                self.status.notes.append(
                    f"Stripe matches emails exactly: other spellings of this address were "
                    f"looked for among the newest {SCAN_LIMIT} sessions only"
                )
                break
        self.status.sessions = found
        bought = {sid: to_purchase(s, self.settings, self.secret) for sid, s in found.items()}
        # Rule 17: what earlier runs learned of refunds and disputes (the journal).
        refs = self.journal.done_refs(refund_key(sid) for sid in bought) if bought else {}
        revoke = self.settings.stripe.on_refund == "revoke"
        self.status.purchases = sorted(
            merge(bought, Troubles(), refs, revoke=revoke).values(), key=lambda p: p.recency
        )

    # -- Shopware -----------------------------------------------------------------

    def codes(self) -> None:
        promotion = self.settings.shopware.vip_promotion_id
        wanted: dict[str, str | None] = {
            p.code: p.session_id for p in self.status.purchases if p.is_vip_purchase
        }
        for contact in self.status.contacts:
            if contact.promo_code and contact.promo_code not in wanted:
                wanted[contact.promo_code] = None
        for code, session_id in wanted.items():
            row = self.sv.shopware.find_code(code)
            if row is None:
                state = "missing"
            elif row.promotion_id == promotion:
                state = "exists"
            else:
                state = "in another promotion"
            self.status.codes.append(CodeView(code, session_id, state))

    # -- Discord ------------------------------------------------------------------

    def invites(self, history: list[Entry]) -> None:
        discord = self.sv.discord
        listed: dict[str, dict[str, DiscordInvite]] = {}
        for contact in self.status.contacts:
            for tier in Tier:
                link = contact.link(tier)
                if not link:
                    continue
                code = invite_code(link)
                if code is None:
                    self.status.invites.append(
                        InviteView(contact.id, str(tier), link, None, False, "not a Discord link")
                    )
                    continue
                channel = channel_id(self.settings, tier)
                if channel not in listed:
                    listed[channel] = {i.code: i for i in discord.list_channel_invites(channel)}
                invite = listed[channel].get(code)
                if invite is not None:
                    self.live_invites[code] = Invite(
                        code, channel, invite.created_at, invite.inviter_id, invite.uses or 0
                    )
                    self.status.invites.append(_live_view(contact.id, tier, link, invite))
                    continue
                elsewhere = discord.get_invite(code)
                if elsewhere is not None:
                    view = _live_view(contact.id, tier, link, elsewhere)
                    where = f"in channel {elsewhere.channel_id}, not the {tier} channel"
                    self.status.invites.append(replace(view, state=f"{view.state}; {where}"))
                    continue
                why = self.gone(code, history)
                self.status.invites.append(
                    InviteView(contact.id, str(tier), link, code, False, why)
                )

    def gone(self, code: str, history: list[Entry]) -> str:
        """Why a stored invite is no longer live, as far as the journal tells."""
        for e in history:
            if e.key == f"revoke:{code}" and e.state is EntryState.DONE:
                return f"gone: revoked by syncctl {e.started_at:%Y-%m-%d %H:%M} UTC"
        max_age = self.settings.discord.invite_max_age
        minted = next((e for e in history if e.key.startswith("invite:") and e.ref == code), None)
        if max_age and minted is not None:
            expiry = minted.started_at + timedelta(seconds=max_age)
            if expiry <= datetime.now(UTC):
                return f"gone: expired {expiry:%Y-%m-%d %H:%M} UTC"
        return "gone: used, expired or deleted (single-use invites vanish once used)"

    # -- the next run ---------------------------------------------------------------

    def next_run(self, history: list[Entry]) -> Plan:
        s = self.status
        observer = _Observer(
            self.sv, self.journal, self.settings, self.secret, datetime.now(UTC), lambda _: None
        )
        vip = [p for p in s.purchases if p.is_vip_purchase]
        done = {e.key for e in history if e.state is EntryState.DONE}
        existing = {c.code for c in s.codes if c.state == "exists"} | {
            p.code for p in vip if f"coupon:{p.session_id}" in done
        }
        leads = {self.wanted} if (s.leads or f"lead:{self.wanted}" in done) else set()
        contacts = {c.id: c for c in s.contacts}
        snapshot = Snapshot(
            purchases=tuple(s.purchases),
            contacts=tuple(s.contacts),
            existing_codes=frozenset(existing),
            leads=frozenset(leads),
            sent=frozenset(observer.sent(contacts, vip, self.live_invites, False)),
            issued=observer.issued(contacts.values()),
            latest_purchase=observer.latest_known(
                {self.wanted}, {p.session_id for p in s.purchases if p.withdrawn}
            ),
            invites=None,
            holds=observer.held(s.contacts, s.purchases),
            full=False,
        )
        planned = make_plan(snapshot, self.settings)
        mine = tuple(a for a in planned.actions if a.subject == self.wanted)
        return Plan(actions=mine, notes=planned.notes)


def _hold_order(hold: Hold) -> tuple[bool, datetime, str]:
    """The person's hold first, then the purchases', oldest first."""
    return (hold.kind is not HoldKind.EMAIL, hold.since, hold.subject)


def _live_view(contact_id: int, tier: Tier, link: str, invite: DiscordInvite) -> InviteView:
    if invite.expires_at is not None:
        state = f"live until {invite.expires_at:%Y-%m-%d %H:%M} UTC"
    else:
        state = "live, never expires"
    if invite.uses is not None and invite.max_uses:
        state += f", used {invite.uses} of {invite.max_uses}"
    return InviteView(
        contact_id=contact_id,
        tier=str(tier),
        link=link,
        code=invite.code,
        live=True,
        state=state,
        uses=invite.uses,
        max_uses=invite.max_uses,
        expires_at=invite.expires_at,
        created_at=invite.created_at,
    )


def _contact_dict(c: Contact) -> dict[str, Any]:
    return {
        "id": c.id,
        "email": c.email,
        "name": f"{c.firstname} {c.lastname}".strip(),
        "vip_status": c.vip,
        "promo_code": c.promo_code,
        "invite_link_vip": c.link_vip,
        "invite_link_basic": c.link_basic,
        "opt_in_confirmed": c.opt_in,
        "date_modified": c.date_modified.isoformat() if c.date_modified else None,
    }


def _purchase_dict(p: Purchase) -> dict[str, Any]:
    return {
        "session_id": p.session_id,
        "created": datetime.fromtimestamp(p.created, UTC).isoformat(),
        "email": p.email,
        "vip": p.vip,
        "paid": p.paid,
        "code": p.code if p.vip and p.paid else None,
        "refund": p.trouble or None,
    }


def _lead_dict(lead: Lead) -> dict[str, Any]:
    return {
        "id": lead.id,
        "name": lead.name,
        "email": lead.email,
        "status": lead.status,
        "source": lead.source,
        "created_at": lead.created_at.isoformat() if lead.created_at else None,
    }
