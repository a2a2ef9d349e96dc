"""A generated campaign of N contacts, seeded into the sandbox, and a day of churn.

The shape (all fractions of N, the number of Mautic contacts before the first
run) is `Shape`; docs/benchmarks.md explains each value. In short: the
campaign ran for 60 days under the old n8n workflows, which handled about
90 % of it; syncctl takes over and the first run finds the other 10 % in one
of the situations of desired-state.md (new sign-ups without an invite, VIP
purchases never processed, upgrades, unsent emails, cleared links, double
links, missing leads). Everything is derived from a seeded RNG, so a given
(N, seed) is the same campaign on every machine.
"""

from __future__ import annotations

import math
import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from syncctl.engine.codes import coupon_code, invite_url
from syncctl.sandbox.stack import (
    BASIC_CHANNEL_ID,
    COUPON_EMAIL,
    INVITE_EMAIL_BASIC,
    INVITE_EMAIL_VIP,
    SUPPORTER_PRICE_ID,
    SUPPORTER_PRODUCT_ID,
    VIP_CHANNEL_ID,
    VIP_PRICE_ID,
    VIP_PRODUCT_ID,
    VIP_PROMOTION_ID,
    Sandbox,
)

DAY = 86400.0
VIP_ITEMS = [(VIP_PRICE_ID, VIP_PRODUCT_ID, 1)]
SUPPORTER_ITEMS = [(SUPPORTER_PRICE_ID, SUPPORTER_PRODUCT_ID, 1)]
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Johnson", "Liskov", "O'Brien", "Noether", "Curie")


@dataclass(frozen=True)
class Shape:
    """The campaign's make-up, as fractions of N (Mautic contacts before the first run)."""

    #: Contacts who confirmed the opt-in (the gate for invites and leads).
    opt_in: float = 0.60
    #: Contacts with a VIP purchase the old workflows processed.
    vip_buyers: float = 0.08
    #: Of those, the share with a second VIP reservation.
    second_purchase: float = 0.10
    #: Paid non-VIP (supporter) checkouts, by contacts or strangers.
    supporter_sessions: float = 0.12
    #: Checkouts left open or expired (never complete: no event, never listed).
    incomplete_sessions: float = 0.10
    #: Completed checkouts whose delayed payment is still pending.
    unpaid_sessions: float = 0.005
    #: Share of issued single-use invites not used yet (still live in Discord).
    live_invites: float = 0.25
    #: Stripe / Espo addresses whose case differs from Mautic's.
    case_variants: float = 0.05

    # -- the ~10 % the first run must act on ------------------------------------
    #: (a) opted in, no invite link, no lead: invite, invite email, lead.
    new_signups: float = 0.025
    #: (b) opted in, no invite link, lead exists: invite, invite email.
    no_link_with_lead: float = 0.010
    #: (c) opted in with a Basic invite, new VIP purchase: coupon, VIP flag, coupon
    #: email, Basic revoked and cleared, VIP invite, invite email.
    upgrades: float = 0.010
    #: (d) not opted in, new VIP purchase: coupon, VIP flag, coupon email.
    vip_not_opted_in: float = 0.015
    #: (e) VIP buyer not in Mautic (extra people): coupon, contact, coupon email.
    vip_unknown: float = 0.005
    #: (f) opted in, link stored, its email never sent: invite email.
    unsent_link: float = 0.010
    #: (g) operator cleared the link field, old invite still live: orphan
    #: revoked, new invite, invite email.
    cleared_link: float = 0.005
    #: (i) VIP contact still holding a Basic link too: Basic revoked and cleared.
    both_links: float = 0.005
    #: (j) opted in and invited, no lead (an Espo failure under n8n): lead.
    missing_lead: float = 0.015

    @property
    def needing_action(self) -> float:
        return (
            self.new_signups
            + self.no_link_with_lead
            + self.upgrades
            + self.vip_not_opted_in
            + self.vip_unknown
            + self.unsent_link
            + self.cleared_link
            + self.both_links
            + self.missing_lead
        )


@dataclass(frozen=True)
class Churn:
    """One day of campaign life, as fractions of N (at least one of each kind)."""

    #: New contacts from the sign-up form; `signup_opt_in` of them confirm at once.
    signups: float = 0.010
    signup_opt_in: float = 0.70
    #: Earlier sign-ups confirming the opt-in today.
    confirmations: float = 0.003
    #: Edits that change nothing syncctl cares about (name, city...).
    edits: float = 0.010
    #: Contacts unsubscribing (opt-in withdrawn).
    opt_outs: float = 0.001
    #: VIP reservations by existing contacts (two thirds opted in with a Basic invite).
    vip_purchases: float = 0.003
    #: VIP reservations by people not in Mautic yet.
    vip_strangers: float = 0.001
    #: Paid supporter (non-VIP) checkouts.
    supporter_purchases: float = 0.005
    #: Checkouts abandoned (never completed).
    abandoned: float = 0.005
    #: Operators clearing an invite field to reissue it.
    reissues: float = 0.0002


@dataclass
class Campaign:
    """What was seeded: counts, and the pools churn draws contacts from."""

    n: int
    sessions: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    pools: dict[str, list[int]] = field(default_factory=dict)  # kind -> Mautic ids
    emails: dict[int, str] = field(default_factory=dict)
    next_index: int = 0

    @property
    def needing_action(self) -> int:
        kinds = ("a", "b", "c", "d", "e", "f", "g", "i", "j")
        return sum(self.counts.get(k, 0) for k in kinds)


def _count(fraction: float, n: int) -> int:
    return round(fraction * n)


def _variant(email: str, rng: random.Random, share: float) -> str:
    if rng.random() >= share:
        return email
    local, _, domain = email.partition("@")
    return f"{local[:1].upper()}{local[1:]}@{domain.capitalize()}"


class _Seeder:
    def __init__(self, sandbox: Sandbox, n: int, shape: Shape, seed: int, now: float) -> None:
        self.sb = sandbox
        self.n = n
        self.shape = shape
        self.rng = random.Random(seed)
        self.now = now
        self.start = now - 60 * DAY
        self.secret = sandbox.secrets["SYNCCTL_CODE_SECRET"]
        self.contacts: list[dict[str, Any]] = []
        self.kinds: list[str] = []
        self.sessions: list[dict[str, Any]] = []
        self.session_owner: list[tuple[int, bool]] = []  # (contact index, processed?) per VIP row
        self.sends: list[tuple[int, int, dict[str, str], datetime]] = []  # contact index first
        self.leads: list[tuple[str, str, str, float]] = []
        self.invites: list[tuple[str, str, datetime]] = []  # channel, code, created
        self.codes_seen: set[str] = set()

    # -- helpers --------------------------------------------------------------

    def stamp(self, t: float) -> datetime:
        return datetime.fromtimestamp(t, UTC)

    def between(self, lo: float, hi: float) -> float:
        return lo + self.rng.random() * max(0.0, hi - lo)

    def code(self) -> str:
        alphabet = string.ascii_letters + string.digits
        while True:
            code = "".join(self.rng.choice(alphabet) for _ in range(10))
            if code not in self.codes_seen:
                self.codes_seen.add(code)
                return code

    def invite(self, channel: str, created: float, live: bool) -> str:
        code = self.code()
        if live:
            self.invites.append((channel, code, self.stamp(created)))
        return invite_url(code)

    def vip_session(self, owner: int, email: str, t: float, processed: bool) -> None:
        self.sessions.append(
            {
                "email": _variant(email, self.rng, self.shape.case_variants),
                "name": f"Backer {owner} {self.rng.choice(LAST_NAMES)}",
                "line_items": VIP_ITEMS,
                "created": int(t),
            }
        )
        self.session_owner.append((owner, processed))

    # -- the plan -------------------------------------------------------------

    def kinds_for(self) -> list[str]:
        s, n = self.shape, self.n
        fixed = {
            "a": _count(s.new_signups, n),
            "b": _count(s.no_link_with_lead, n),
            "c": _count(s.upgrades, n),
            "d": _count(s.vip_not_opted_in, n),
            "f": _count(s.unsent_link, n),
            "g": _count(s.cleared_link, n),
            "i": _count(s.both_links, n),
            "j": _count(s.missing_lead, n),
        }
        opted_fixed = sum(v for k, v in fixed.items() if k != "d")
        vip_total = _count(s.vip_buyers, n)
        optin_vip = max(0, round(vip_total * s.opt_in) - fixed["i"])
        plain_vip = max(0, vip_total - optin_vip - fixed["i"])
        optin = max(0, _count(s.opt_in, n) - opted_fixed - optin_vip)
        plain = max(0, n - sum(fixed.values()) - optin_vip - plain_vip - optin)
        counts = {**fixed, "optin": optin, "optin_vip": optin_vip, "plain_vip": plain_vip}
        counts["plain"] = plain
        kinds = [k for k, c in counts.items() for _ in range(c)]
        kinds = kinds[:n]
        self.rng.shuffle(kinds)
        return kinds

    def build(self) -> None:
        s = self.shape
        self.kinds = self.kinds_for()
        for index, kind in enumerate(self.kinds):
            self.contact(index, kind)
        # (e) VIP buyers who are not in Mautic.
        for k in range(_count(s.vip_unknown, self.n)):
            email = f"stranger{k:06d}@example.com"
            t = self.between(self.now - 20 * DAY, self.now - DAY)
            self.sessions.append(
                {"email": email, "name": f"Stranger {k} Curie", "line_items": VIP_ITEMS,
                 "created": int(t)}
            )  # fmt: skip
            self.session_owner.append((-1, False))
        emails = [c["email"] for c in self.contacts]
        for _ in range(_count(s.supporter_sessions, self.n)):
            who = self.rng.randrange(len(emails) + len(emails) // 4)
            email = emails[who] if who < len(emails) else f"guest{who:07d}@example.com"
            self.other_session(email, SUPPORTER_ITEMS, "complete", "paid")
        for _ in range(_count(s.unpaid_sessions, self.n)):
            email = emails[self.rng.randrange(len(emails))]
            self.other_session(email, VIP_ITEMS, "complete", "unpaid")
        for _ in range(_count(s.incomplete_sessions, self.n)):
            email = emails[self.rng.randrange(len(emails))]
            status = self.rng.choice(("open", "expired"))
            items = self.rng.choice((VIP_ITEMS, SUPPORTER_ITEMS))
            self.other_session(email, items, status, "unpaid")

    def other_session(self, email: str, items: list, status: str, payment: str) -> None:
        self.sessions.append(
            {
                "email": email if status == "complete" else None,
                "customer_email": email,
                "line_items": items,
                "status": status,
                "payment_status": payment,
                "created": int(self.between(self.start, self.now - DAY)),
            }
        )
        self.session_owner.append((-2, False))

    def contact(self, index: int, kind: str) -> None:
        s, rng = self.shape, self.rng
        local = f"backer{index:06d}"
        if rng.random() < 0.002:
            local = f"o'{local}"
        email = f"{local}@example.com"
        first, last = f"Backer{index}", rng.choice(LAST_NAMES)
        added = self.between(self.start, self.now - 2 * DAY)
        row: dict[str, Any] = {
            "email": email,
            "firstname": first,
            "lastname": last,
            "date_added": self.stamp(added),
        }
        opted = kind not in ("plain", "plain_vip", "d")
        row["opt_in_confirmed"] = opted
        modified = added + 60 if opted else None  # the confirmation
        vip = kind in ("optin_vip", "plain_vip", "i")
        sends: list[tuple[int, dict[str, str], float]] = []
        if vip:
            t = self.between(added, self.now - DAY)
            purchases = [t]
            if rng.random() < s.second_purchase:
                purchases.append(self.between(t, self.now - DAY))
            codes = []
            for bought in purchases:
                self.vip_session(index, email, bought, processed=True)
                codes.append((bought, len(self.sessions) - 1))
            row["vip_status"] = True
            row["_latest_session"] = codes[-1][1]  # replaced by its code once ids exist
            for bought, session_row in codes:
                sends.append((COUPON_EMAIL, {"_session": str(session_row)}, bought + 60))
            modified = max(modified or 0, purchases[-1] + 30)
        if opted and kind not in ("a", "b", "g"):
            tier_vip = vip
            issued = max(added + 120, (modified or added) + 30)
            channel = VIP_CHANNEL_ID if tier_vip else BASIC_CHANNEL_ID
            live = kind in ("c", "f") or rng.random() < s.live_invites
            link = self.invite(channel, issued, live)
            row["discord_invite_link_vip" if tier_vip else "discord_invite_link_basic"] = link
            if kind != "f":
                email_id = INVITE_EMAIL_VIP if tier_vip else INVITE_EMAIL_BASIC
                sends.append((email_id, {"discord_invite_link": link}, issued + 60))
            modified = issued + 30
            if kind == "i":  # the Basic link of before the upgrade, never cleared
                row["discord_invite_link_basic"] = self.invite(BASIC_CHANNEL_ID, added, False)
        if kind == "g":  # the link was cleared by an operator; its invite lives on
            issued = added + 120
            self.invite(BASIC_CHANNEL_ID, issued, True)
            modified = self.between(issued, self.now - DAY)
        if kind == "c":
            self.vip_session(index, email, self.between(added, self.now - DAY), processed=False)
        if kind == "d":
            self.vip_session(index, email, self.between(added, self.now - DAY), processed=False)
        if opted and kind not in ("a", "j"):
            lead_email = _variant(email, rng, s.case_variants)
            self.leads.append((first, last, lead_email, added + 90))
        if modified is not None:
            row["date_modified"] = self.stamp(modified)
        self.contacts.append(row)
        for email_id, tokens, t in sends:
            self.sends.append((email_id, index, tokens, self.stamp(t)))

    # -- into the sandbox -----------------------------------------------------

    def seed(self) -> Campaign:
        sb = self.sb
        ids = sb.stripe.add_sessions(self.sessions)
        processed = [
            coupon_code(ids[i], self.secret)
            for i, (_, done) in enumerate(self.session_owner)
            if done
        ]
        sb.shopware.add_codes(VIP_PROMOTION_ID, processed)
        for row in self.contacts:
            latest = row.pop("_latest_session", None)
            if latest is not None:
                row["promo_code"] = coupon_code(ids[latest], self.secret)
        contact_ids = sb.mautic.add_contacts(self.contacts)
        rows = []
        for email_id, index, tokens, t in sorted(self.sends, key=lambda r: r[3]):
            if "_session" in tokens:
                tokens = {"promo_code": coupon_code(ids[int(tokens["_session"])], self.secret)}
            rows.append((email_id, contact_ids[index], tokens, t))
        sb.mautic.record_sends(rows)
        for channel, code, created in self.invites:
            sb.discord.seed_invite(channel, code=code, created_at=created)
        for first, last, email, added in self.leads:
            sb.espocrm.add_lead(first, last, email, created_at=added)
        campaign = Campaign(n=self.n, sessions=len(ids))
        for cid, kind in zip(contact_ids, self.kinds, strict=True):
            campaign.pools.setdefault(kind, []).append(cid)
        for cid, row in zip(contact_ids, self.contacts, strict=True):
            campaign.emails[cid] = row["email"]
        campaign.counts = {k: len(v) for k, v in campaign.pools.items()}
        campaign.counts["e"] = _count(self.shape.vip_unknown, self.n)
        campaign.counts["vip_sessions"] = sum(1 for owner, _ in self.session_owner if owner != -2)
        campaign.counts["live_invites"] = len(self.invites)
        campaign.counts["leads"] = len(self.leads)
        campaign.counts["sends"] = len(rows)
        campaign.next_index = self.n
        for pool in campaign.pools.values():
            self.rng.shuffle(pool)
        return campaign


def seed_campaign(
    sandbox: Sandbox, n: int, *, shape: Shape | None = None, seed: int = 1, now: float
) -> Campaign:
    """Seed a campaign of `n` contacts (before the sandbox starts or after)."""
    seeder = _Seeder(sandbox, n, shape or Shape(), seed, now)
    seeder.build()
    return seeder.seed()


# -- a day of churn ---------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One change of the day; `apply` makes it happen in the sandbox."""

    kind: str
    apply: Callable[[], None]


def churn_events(
    sandbox: Sandbox, campaign: Campaign, *, churn: Churn | None = None, seed: int = 2
) -> list[Event]:
    """The day's changes, in a random order (apply them in one or more batches)."""
    c = churn or Churn()
    rng = random.Random(seed)
    n = campaign.n
    sb = sandbox
    events: list[Event] = []

    def count(fraction: float) -> int:
        return max(1, math.floor(fraction * n + 0.5))

    def take(kind: str) -> int | None:
        pool = campaign.pools.get(kind) or []
        return pool.pop() if pool else None

    def new_email() -> str:
        campaign.next_index += 1
        return f"newbacker{campaign.next_index:06d}@example.com"

    def signup(opted: bool) -> Event:
        email = new_email()

        def go() -> None:
            first = email.split("@")[0].capitalize()
            cid = sb.mautic.add_contacts(
                [{"email": email, "firstname": first, "lastname": "Backer",
                  "opt_in_confirmed": opted}]
            )[0]  # fmt: skip
            campaign.emails[cid] = email

        return Event("signup (opted in)" if opted else "signup (pending opt-in)", go)

    for _ in range(count(c.signups)):
        events.append(signup(rng.random() < c.signup_opt_in))
    for _ in range(count(c.confirmations)):
        cid = take("plain")
        if cid is not None:
            events.append(Event("opt-in confirmed", _set(sb, cid, opt_in_confirmed=True)))
    for k in range(count(c.edits)):
        opted = k % 2 == 1
        cid = take("optin" if opted else "plain")
        if cid is not None:
            kind = "profile edit (opted in)" if opted else "profile edit (not opted in)"
            events.append(Event(kind, _set(sb, cid, city=f"City {k}")))
    for _ in range(count(c.opt_outs)):
        cid = take("optin")
        if cid is not None:
            events.append(Event("opt-out", _set(sb, cid, opt_in_confirmed=False)))
    for k in range(count(c.vip_purchases)):
        upgrade = k % 3 != 2
        cid = take("optin" if upgrade else "plain")
        if cid is not None:
            kind = "VIP purchase (upgrade)" if upgrade else "VIP purchase (not opted in)"
            events.append(Event(kind, _buy(sb, campaign.emails[cid], VIP_ITEMS)))
    for _ in range(count(c.vip_strangers)):
        events.append(Event("VIP purchase (new person)", _buy(sb, new_email(), VIP_ITEMS)))
    for _ in range(count(c.supporter_purchases)):
        cid = take("optin")
        if cid is not None:
            events.append(
                Event("supporter purchase", _buy(sb, campaign.emails[cid], SUPPORTER_ITEMS))
            )
    for _ in range(count(c.abandoned)):
        email = campaign.emails[rng.choice(list(campaign.emails))]
        events.append(Event("abandoned checkout", _abandon(sb, email)))
    for _ in range(count(c.reissues)):
        cid = take("optin")
        if cid is not None:
            events.append(Event("invite reissue", _set(sb, cid, discord_invite_link_basic=None)))
    rng.shuffle(events)
    return events


def _set(sb: Sandbox, cid: int, **fields: Any) -> Callable[[], None]:
    return lambda: sb.mautic.set_fields(cid, **fields)


def _buy(sb: Sandbox, email: str, items: list) -> Callable[[], None]:
    def go() -> None:
        name = f"{email.split('@')[0].capitalize()} Buyer"
        sb.stripe.add_session(email, name=name, line_items=items)

    return go


def _abandon(sb: Sandbox, email: str) -> Callable[[], None]:
    def go() -> None:
        sb.stripe.add_session(
            None,
            customer_email=email,
            line_items=VIP_ITEMS,
            status="expired",
            payment_status="unpaid",
            created=int((datetime.now(UTC) - timedelta(hours=2)).timestamp()),
        )

    return go
