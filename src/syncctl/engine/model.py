"""The reconciler's view of the world: observed state and planned actions.

These types are plain data, independent of any vendor client: `observe`
builds a `Snapshot` from the services and the journal, `plan` turns it into a
`Plan`, `apply` executes it, `render` shows it. Keeping them vendor-free is what
lets the planner be tested without HTTP.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

#: One address: no spaces, no list separators or brackets (a pasted
#: "ada@example.com," is a typo, not an address), a dotted domain.
_EMAIL = re.compile(r"^[^@\s,;<>()\[\]\"]+@[^@\s,;<>()\[\]\"'.]+(\.[^@\s,;<>()\[\]\"'.]+)+$")


def normalize_email(value: str | None) -> str | None:
    """Emails are compared case-insensitively everywhere (desired-state: Inputs)."""
    if value is None:
        return None
    value = value.strip().lower()
    return value or None


def is_valid_email(value: str) -> bool:
    return bool(_EMAIL.match(value.strip()))


class Tier(StrEnum):
    VIP = "vip"
    BASIC = "basic"

    @property
    def other(self) -> Tier:
        return Tier.BASIC if self is Tier.VIP else Tier.VIP


@dataclass(frozen=True, slots=True)
class Purchase:
    """A Stripe Checkout Session, reduced to what the rules look at."""

    session_id: str
    email: str | None  # normalized
    name: str | None
    created: int
    vip: bool  # a line item has a configured VIP price or product
    paid: bool  # status complete and payment_status paid
    code: str  # the coupon code derived from the session id
    #: What Stripe shows against its payment (rule 17): "refunded" (in full),
    #: "disputed" (a dispute not won), or "" (nothing).
    trouble: str = ""
    #: The trouble withdraws the purchase: `[stripe] on_refund = "revoke"`.
    withdrawn: bool = False
    #: Its PaymentIntent, which refunds and disputes name (rule 17).
    payment_intent: str | None = None

    @property
    def is_vip_purchase(self) -> bool:
        """A VIP purchase that counts: paid, with an email, not withdrawn (rule 17)."""
        return self.vip and self.paid and self.email is not None and not self.withdrawn

    @property
    def withdrawn_vip(self) -> bool:
        """A VIP purchase that a refund or dispute withdrew (rule 17)."""
        return self.vip and self.paid and self.email is not None and self.withdrawn

    @property
    def recency(self) -> tuple[int, str]:
        """Purchases in the order they were made (rule 2's "latest"); ties by session id."""
        return (self.created, self.session_id)


def newest_purchases(purchases: Iterable[Purchase]) -> dict[str, Purchase]:
    """Each buyer's latest paid VIP purchase, by normalized email (rule 2)."""
    newest: dict[str, Purchase] = {}
    for p in purchases:
        if p.is_vip_purchase and p.email:
            best = newest.get(p.email)
            if best is None or best.recency < p.recency:
                newest[p.email] = p
    return newest


def holders(contacts: Iterable[Contact]) -> dict[str, Contact]:
    """The contact each email's messages go to: the oldest of those sharing it."""
    held: dict[str, Contact] = {}
    for c in contacts:
        if c.email and (c.email not in held or c.id < held[c.email].id):
            held[c.email] = c
    return held


@dataclass(frozen=True, slots=True)
class Contact:
    """A Mautic contact, with the custom fields resolved from their aliases."""

    id: int
    email: str | None  # normalized
    firstname: str
    lastname: str
    vip: bool
    promo_code: str
    link_vip: str
    link_basic: str
    opt_in: bool
    date_modified: datetime | None = None
    #: On Mautic's email Do-Not-Contact list (unsubscribed, bounced, manual).
    dnc: bool = False
    #: Carries the `[mautic] hold_tag`: an operator's hold (rule 18).
    hold_tag: bool = False

    @property
    def reachable(self) -> bool:
        """Opted in and not on the Do-Not-Contact list: may get invites (rules 15, 20)."""
        return self.opt_in and not self.dnc

    def link(self, tier: Tier) -> str:
        return self.link_vip if tier is Tier.VIP else self.link_basic


@dataclass(frozen=True, slots=True)
class Invite:
    """A live Discord invite in one of the campaign channels."""

    code: str
    channel_id: str
    created_at: datetime | None
    inviter_id: str | None = None
    uses: int = 0
    max_uses: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one run observed, plus what the journal knows was done.

    Collections cover the run's scope: everything on `--full`, the changed
    items (and the pending retries) on an incremental run.
    """

    purchases: tuple[Purchase, ...] = ()
    contacts: tuple[Contact, ...] = ()
    #: Coupon codes known to exist in the VIP promotion.
    existing_codes: frozenset[str] = frozenset()
    #: Codes syncctl created with a payload (before this release): the
    #: checkout refuses them until it is cleared. Code -> its row id.
    blocked_codes: Mapping[str, str] = field(default_factory=dict)
    #: Why the VIP promotion's codes cannot be redeemed now (missing, inactive,
    #: outside its dates), one line with the fix; "" when they can (rule 23).
    promotion_problem: str = ""
    #: Normalized emails that have an EspoCRM lead.
    leads: frozenset[str] = frozenset()
    #: Mail keys (`mail:<email-id>:<contact-id>:<code-or-link-code>`) already sent.
    sent: frozenset[str] = frozenset()
    #: Of those, the ones only Mautic's stats showed -> when the send was logged.
    sent_at: Mapping[str, datetime] = field(default_factory=dict)
    #: (email id, contact id) pairs Mautic's send log shows sent at least
    #: once (full runs read it whole): a plan re-sending to many of them is
    #: likely a mistake (rule 24).
    logged_sends: frozenset[tuple[int, int]] = frozenset()
    #: Invite code syncctl last stored for (contact id, tier): to revoke it
    #: when an operator clears the field (rule 13).
    issued: Mapping[tuple[int, Tier], str] = field(default_factory=dict)
    #: Opted-in contacts in scope whose email has no Lead, but for which
    #: syncctl created one under another address: id -> (lead id, that email).
    lead_owners: Mapping[int, tuple[str, str]] = field(default_factory=dict)
    #: Sessions whose coupon syncctl created itself (the journal; adopted
    #: codes excluded): after a lost state dir, a code alone proves nothing.
    own_coupons: frozenset[str] = frozenset()
    #: Buyers' emails whose contact syncctl created (the journal, adopted excluded).
    own_contacts: frozenset[str] = frozenset()
    #: Codes held by contacts that may not have an invite (opt-in withdrawn,
    #: Do-Not-Contact) that are still live, unused invites of syncctl's: to
    #: revoke (rule 20). None: not checked this run.
    withdrawn_live: frozenset[str] | None = None
    #: Held subjects (normalized email or session id) -> why (rule 18).
    holds: Mapping[str, str] = field(default_factory=dict)
    #: Invite codes contacts in scope hold that syncctl revoked: dead links.
    revoked: frozenset[str] = frozenset()
    #: Per normalized email, the latest VIP purchase known (scope + journal),
    #: whose code belongs in `promo_code` (rule 2).
    latest_purchase: Mapping[str, Purchase] = field(default_factory=dict)
    #: Codes of withdrawn purchases (rule 17) that exist in the VIP promotion
    #: -> the order that redeemed it ("" when unused: it may leave).
    withdrawn_codes: Mapping[str, str] = field(default_factory=dict)
    #: Sessions a refund or dispute withdrew before that count again (a dispute
    #: won): their code and VIP flag are put back, without an email.
    reinstated: frozenset[str] = frozenset()
    #: Live invites of syncctl's in the campaign channels, when observed (full
    #: audits): to revoke orphans (rule 14). None: not observed this run.
    invites: Mapping[str, Invite] | None = None
    #: When the run began reading (its clock): an invite minted later than
    #: this may be held by a contact read before the link was stored.
    observed_at: datetime | None = None
    full: bool = False
    #: Fact families that could not be observed this run (a service failed):
    #: "purchases", "codes", "leads", "invites", "sent". What depends on them
    #: is not planned.
    unknown: frozenset[str] = frozenset()


class ActionKind(StrEnum):
    COUPON = "create_coupon"
    CONTACT_CREATE = "create_contact"
    CONTACT_UPDATE = "update_contact"
    UNSET_LINK = "clear_link"
    REVOKE = "revoke_invite"
    INVITE = "issue_invite"
    MAIL = "send_email"
    LEAD = "create_lead"
    LEAD_MOVE = "move_lead"
    COUPON_UNBLOCK = "unblock_coupon"
    COUPON_DELETE = "delete_coupon"


SYSTEM_OF = {
    ActionKind.COUPON: "shopware",
    ActionKind.COUPON_UNBLOCK: "shopware",
    ActionKind.COUPON_DELETE: "shopware",
    ActionKind.CONTACT_CREATE: "mautic",
    ActionKind.CONTACT_UPDATE: "mautic",
    ActionKind.UNSET_LINK: "mautic",
    ActionKind.REVOKE: "discord",
    ActionKind.INVITE: "discord",
    ActionKind.MAIL: "mautic",
    ActionKind.LEAD: "espocrm",
    ActionKind.LEAD_MOVE: "espocrm",
}


@dataclass(frozen=True, slots=True)
class Action:
    """One change to one system, keyed stably across runs.

    The key is the journal key, the audit row and the plan row. `params` holds
    what `apply` needs; `before`/`after` are what a person reads in the plan.
    """

    kind: ActionKind
    key: str
    subject: str  # the person (email) it is for
    reason: str
    params: Mapping[str, Any] = field(default_factory=dict)
    before: Mapping[str, Any] = field(default_factory=dict)
    after: Mapping[str, Any] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()

    @property
    def system(self) -> str:
        return SYSTEM_OF[self.kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": str(self.kind),
            "system": self.system,
            "subject": self.subject,
            "reason": self.reason,
            "before": dict(self.before),
            "after": dict(self.after),
            "depends_on": list(self.depends_on),
        }


@dataclass(frozen=True, slots=True)
class Note:
    """Something the plan could not act on, that an operator should know."""

    subject: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"subject": self.subject, "message": self.message}


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...] = ()
    notes: tuple[Note, ...] = ()
    #: Purchases and contacts held (rule 18) or waiting for the promotion
    #: (rule 23): nothing planned; kept pending so the run after the release
    #: (or the fix) finds them.
    held_sessions: frozenset[str] = frozenset()
    held_contacts: frozenset[int] = frozenset()
    #: Why purchases wait that an operator must fix (rule 23); "" when none.
    #: The run is not ok while it says something.
    blocked: str = ""

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def is_empty(self) -> bool:
        return not self.actions

    def counts(self) -> dict[str, int]:
        return dict(Counter(a.system for a in self.actions))

    def by_key(self) -> dict[str, Action]:
        return {a.key: a for a in self.actions}
