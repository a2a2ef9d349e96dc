"""The planner: observed state in, the list of missing actions out.

A pure function of the `Snapshot` and the settings (no I/O, no clock), so
every rule of design/desired-state.md is testable on plain data, and a dry
run shows exactly what a real run would do. Rule numbers below refer to that
file.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta

from syncctl.config import Settings
from syncctl.engine.codes import invite_code, invite_url
from syncctl.engine.model import (
    Action,
    ActionKind,
    Contact,
    Note,
    Plan,
    Purchase,
    Snapshot,
    Tier,
    is_valid_email,
)

NEW = "new"  # stands for an id that only exists once an earlier action ran
#: The subject of an orphan invite's revocation: nobody holds it.
ORPHAN_SUBJECT = "(nobody)"
#: Why a contact gets no email (rule 19).
DNC_NOTE = "on Mautic's Do-Not-Contact list"
#: Discord's clock against ours, for the orphan sweep's age check.
ORPHAN_MARGIN = timedelta(seconds=10)


def invite_email_id(settings: Settings, tier: Tier) -> int:
    m = settings.mautic
    return m.invite_email_vip if tier is Tier.VIP else m.invite_email_basic


def channel_id(settings: Settings, tier: Tier) -> str:
    d = settings.discord
    return d.vip_channel_id if tier is Tier.VIP else d.basic_channel_id


def mail_key(email_id: int, contact_id: int | str, ref: str) -> str:
    return f"mail:{email_id}:{contact_id}:{ref}"


def split_name(name: str | None) -> tuple[str, str]:
    """Stripe captures one name; Mautic and Espo want first and last."""
    parts = (name or "").split()
    if not parts:
        return "", ""
    return " ".join(parts[:-1]) if len(parts) > 1 else parts[0], parts[-1] if len(parts) > 1 else ""


class _Planner:
    def __init__(self, snapshot: Snapshot, settings: Settings) -> None:
        self.s = snapshot
        self.settings = settings
        self.actions: dict[str, Action] = {}
        self.notes: list[Note] = []
        self.contacts_by_email: dict[str, list[Contact]] = defaultdict(list)
        for contact in sorted(snapshot.contacts, key=lambda c: c.id):
            if contact.email:
                self.contacts_by_email[contact.email].append(contact)
        #: contact id -> key of the action making it VIP this run
        self.promoting: dict[int, str] = {}
        #: contact id -> key of the action taking its VIP flag away (rule 17)
        self.demoting: dict[int, str] = {}
        #: Emails with a paid VIP purchase in the run's scope.
        self.buyers = {p.email for p in snapshot.purchases if p.is_vip_purchase and p.email}
        #: Contacts whose invite waits because their tier may be about to change.
        self.tier_unsettled = 0
        self.leads_planned: set[str] = set()
        #: Codes whose coupon email went out, to whichever contact (rule 16).
        coupon = f"mail:{settings.mautic.coupon_email}:"
        self.mailed_codes = {
            key.rsplit(":", 1)[1] for key in snapshot.sent if key.startswith(coupon)
        }
        #: Emails whose shared contacts were noted already (rule 21).
        self.duplicates_noted: set[str] = set()
        #: Rule 18: what was held this run, and the holds already noted.
        self.held_sessions: set[str] = set()
        self.held_contacts: set[int] = set()
        self.holds_noted: set[str] = set()
        #: Purchases that wait because the promotion's codes cannot be redeemed.
        self.waiting_on_promotion = 0

    def add(self, action: Action) -> str:
        self.actions.setdefault(action.key, action)
        return action.key

    def note(self, subject: str, message: str) -> None:
        self.notes.append(Note(subject, message))

    # -- purchases: rules 1-6 -------------------------------------------------

    def purchases(self) -> None:
        if "codes" in self.s.unknown or "promotion" in self.s.unknown:
            if any(p.is_vip_purchase for p in self.s.purchases):
                self.note("(shopware)", "coupon codes could not be read: purchases wait")
            return
        for p in self.s.purchases:
            if p.vip and p.paid and p.email is None:
                self.note(p.session_id, "paid VIP purchase without an email: nothing can be sent")
        vip = sorted(
            (p for p in self.s.purchases if p.is_vip_purchase and not self._held_purchase(p)),
            key=lambda p: p.recency,
        )
        # Buyer by buyer, oldest purchase first: when max_actions cuts a
        # burst, the earliest buyers are the ones served (rule 24).
        by_email: dict[str, list[Purchase]] = defaultdict(list)
        for p in vip:
            assert p.email is not None
            by_email[p.email].append(p)
        for email, bought in by_email.items():
            # Rule 16: a purchase whose coupon email went out is done for good.
            open_ = [p for p in bought if p.code not in self.mailed_codes]
            if not open_:
                self._fulfilled(email, bought)
                continue
            if not self.contacts_by_email.get(email) or email in self.s.own_contacts:
                left = self._left_behind(email, open_)
                open_ = [p for p in open_ if p not in left]
                bought = [p for p in bought if p not in left]
                if not open_:
                    continue
            if self.s.promotion_problem:
                # Rule 23: a code that cannot be redeemed is neither minted nor mailed.
                self.waiting_on_promotion += len(open_)
                self.held_sessions.update(p.session_id for p in open_)  # kept pending
                continue
            for p in open_:
                self.coupon(p)
            contact_ref, contact_dep, opted_in = self.vip_contact(email, bought)
            for p in open_:
                self.coupon_mail(p, contact_ref, contact_dep, opted_in)

    # -- refunds and disputes: rule 17 ----------------------------------------

    def refunds(self) -> None:
        """A fully refunded or disputed VIP purchase stops being one (`on_refund`).

        Its unused code leaves the promotion (a redeemed one stays, noted);
        its buyer keeps the VIP flag and a code only through another paid VIP
        purchase; the contact's tier then follows rule 7 (`contact`). No
        email says anything about a refund.
        """
        troubled = [p for p in self.s.purchases if p.trouble and p.vip and p.paid and p.email]
        for p in sorted(troubled, key=lambda p: p.recency):
            assert p.email is not None
            if p.session_id in self.held_sessions or self._held_purchase(p):
                continue
            if not p.withdrawn:
                self.note(
                    p.email,
                    f"purchase {p.session_id} was {p.trouble} in Stripe; "
                    '[stripe] on_refund = "keep": left as it is',
                )
                continue
            self._withdraw_code(p)
            self._demote(p)

    def _withdraw_code(self, p: Purchase) -> None:
        assert p.email is not None
        if "codes" in self.s.unknown:
            self.note(p.email, f"purchase {p.session_id} was {p.trouble}: its code waits")
            return
        order = self.s.withdrawn_codes.get(p.code)
        if order is None:
            return  # never made, or gone already
        if order:
            self.note(
                p.email,
                f"purchase {p.session_id} was {p.trouble}, but its code {p.code} was redeemed "
                f"(order {order}): the code stays",
            )
            return
        self.add(
            Action(
                ActionKind.COUPON_DELETE,
                f"uncoupon:{p.session_id}",
                p.email,
                f"purchase was {p.trouble} in Stripe: its unused code leaves the VIP promotion",
                params={
                    "session_id": p.session_id,
                    "code": p.code,
                    "promotion_id": self.settings.shopware.vip_promotion_id,
                },
                before={"code": p.code},
                after={"code": "(deleted)"},
            )
        )

    def _demote(self, p: Purchase) -> None:
        """The buyer's contact keeps VIP only through another paid VIP purchase."""
        assert p.email is not None
        contacts = self.contacts_by_email.get(p.email, [])
        if not contacts or p.email in self.buyers:
            return  # no contact; or a purchase in view keeps it VIP (`vip_contact`)
        c = contacts[0]
        other = self.s.latest_purchase.get(p.email)
        if other is not None and other.session_id != p.session_id:
            if c.promo_code == p.code:  # another purchase's code takes its place
                self.add(
                    Action(
                        ActionKind.CONTACT_UPDATE,
                        f"vip:{c.id}:{other.code}",
                        p.email,
                        f"purchase {p.session_id} was {p.trouble}: the code of the buyer's "
                        "other VIP purchase takes its place",
                        params={
                            "contact_id": c.id,
                            "changes": {"vip_status": True, "promo_code": other.code},
                            "session_id": other.session_id,
                            "created": other.created,
                        },
                        before={"promo_code": c.promo_code},
                        after={"vip_status": True, "promo_code": other.code},
                    )
                )
            return
        if c.promo_code and c.promo_code != p.code:
            return  # VIP through a code that is not this purchase's: not ours to judge
        changes: dict[str, object] = {}
        before: dict[str, object] = {}
        if c.vip:
            changes["vip_status"], before["vip_status"] = False, True
        if c.promo_code:
            changes["promo_code"], before["promo_code"] = "", c.promo_code
        if not changes:
            return
        self.demoting[c.id] = self.add(
            Action(
                ActionKind.CONTACT_UPDATE,
                f"unvip:{c.id}:{p.session_id}",
                p.email,
                f"purchase {p.session_id} was {p.trouble} in Stripe and was the buyer's only "
                "VIP purchase",
                params={"contact_id": c.id, "changes": changes, "session_id": p.session_id},
                before=before,
                after=changes,
            )
        )

    # -- holds: rule 18 -------------------------------------------------------

    def _hold(self, subject: str) -> str | None:
        """Why `subject` (an email or a session id) is held, noted once; None: it is not."""
        reason = self.s.holds.get(subject)
        if reason is not None and subject not in self.holds_noted:
            self.holds_noted.add(subject)
            self.note(subject, f"held ({reason}): nothing is done until it is released")
        return reason

    def _held_purchase(self, p: Purchase) -> bool:
        if self._hold(p.session_id) is None and (p.email is None or self._hold(p.email) is None):
            return False
        self.held_sessions.add(p.session_id)
        return True

    def _held_contact(self, c: Contact) -> bool:
        if c.email is None or self._hold(c.email) is None:
            return False
        self.held_contacts.add(c.id)
        return True

    def promotion_wait(self) -> None:
        if self.waiting_on_promotion:
            self.note(
                "(shopware)",
                f"{self.waiting_on_promotion} purchase(s) wait: {self.s.promotion_problem}",
            )

    def _fulfilled(self, email: str, bought: list[Purchase]) -> None:
        """Rule 16: nothing is redone for fulfilled purchases; a change is noted, not undone."""
        contacts = self.contacts_by_email.get(email, [])
        back = [p for p in bought if p.session_id in self.s.reinstated]
        if back and contacts:
            # Rule 17: a dispute won; what syncctl withdrew for it goes back.
            for p in back:
                self.coupon(p)
            self.vip_contact(email, bought)
            return
        latest = max(bought, key=lambda p: p.recency)
        known = self.s.latest_purchase.get(email)
        if known is not None and known.recency > latest.recency:
            latest = known
        sessions = ", ".join(p.session_id for p in bought)
        if not contacts:
            self.note(
                email,
                f"purchase {sessions} was fulfilled (coupon email sent); its buyer has no "
                "Mautic contact now (erased, merged or email changed): left alone",
            )
        elif not contacts[0].vip or contacts[0].promo_code != latest.code:
            self.note(
                email,
                f"purchase {sessions} was fulfilled; the contact's VIP flag or code was "
                "changed since: left as it is",
            )

    def _left_behind(self, email: str, open_: list[Purchase]) -> list[Purchase]:
        """Rule 16 after a lost state dir: a code that exists but that this journal
        did not make, for a buyer with no contact (or only the one syncctl made
        for another purchase), is reported, not recreated: the buyer may have
        been erased after the email went out."""
        found = [
            p
            for p in open_
            if p.code in self.s.existing_codes and p.session_id not in self.s.own_coupons
        ]
        if not found:
            return []
        sessions = ", ".join(p.session_id for p in found)
        self.note(
            email,
            f"purchase {sessions} has its code in Shopware but no Mautic contact, and this "
            "state dir did not make it (lost state dir, or the buyer was erased): reported, "
            "not recreated; create the contact in Mautic to have it fulfilled",
        )
        return found

    def coupon(self, p: Purchase) -> None:
        """Rule 1: one code per purchase in the VIP promotion, that the checkout accepts."""
        if p.code in self.s.existing_codes:
            return
        assert p.email is not None
        self.add(
            Action(
                ActionKind.COUPON,
                f"coupon:{p.session_id}",
                p.email,
                "paid VIP purchase has no coupon code in the VIP promotion",
                params={
                    "session_id": p.session_id,
                    "code": p.code,
                    "promotion_id": self.settings.shopware.vip_promotion_id,
                },
                after={"code": p.code},
            )
        )

    def _planned(self, *keys: str) -> tuple[str, ...]:
        return tuple(k for k in keys if k in self.actions)

    def vip_contact(self, email: str, bought: list[Purchase]) -> tuple[int | str, str, bool]:
        """Rule 2: the buyer's contact exists, is VIP and holds the latest code.

        Returns the contact id (or NEW), the key of the action that makes it
        so ("" when nothing is needed) and whether the contact opted in.
        """
        latest = max(bought, key=lambda p: p.recency)
        known = self.s.latest_purchase.get(email)
        if known is not None and known.recency > latest.recency:
            latest = known
        # Rule 4: a code goes into Mautic only once it exists in Shopware.
        deps = self._planned(f"coupon:{latest.session_id}")
        contacts = self.contacts_by_email.get(email, [])
        if len(contacts) > 1 and email not in self.duplicates_noted:
            self.duplicates_noted.add(email)
            ids = ", ".join(str(c.id) for c in contacts)
            self.note(
                email,
                f"{len(contacts)} Mautic contacts share this email (ids {ids}): one person, "
                f"VIP flag and code on contact {contacts[0].id}; merge them in Mautic",
            )
        if not contacts:
            first, last = split_name(latest.name)
            key = self.add(
                Action(
                    ActionKind.CONTACT_CREATE,
                    f"contact:{email}",
                    email,
                    "VIP buyer is not in Mautic",
                    params={
                        "email": email,
                        "firstname": first,
                        "lastname": last,
                        "vip_status": True,
                        "promo_code": latest.code,
                        "session_id": latest.session_id,
                        "created": latest.created,
                    },
                    after={"vip_status": True, "promo_code": latest.code},
                    depends_on=deps,
                )
            )
            return NEW, key, False
        contact = contacts[0]
        changes: dict[str, object] = {}
        before: dict[str, object] = {}
        if not contact.vip:
            changes["vip_status"], before["vip_status"] = True, False
        if contact.promo_code != latest.code:
            changes["promo_code"], before["promo_code"] = latest.code, contact.promo_code
        if not changes:
            return contact.id, "", contact.opt_in
        key = self.add(
            Action(
                ActionKind.CONTACT_UPDATE,
                f"vip:{contact.id}:{latest.code}",
                email,
                "VIP buyer's contact lacks the VIP flag or the latest coupon code",
                params={
                    "contact_id": contact.id,
                    "changes": changes,
                    "session_id": latest.session_id,
                    "created": latest.created,
                },
                before=before,
                after=changes,
                depends_on=deps,
            )
        )
        self.promoting[contact.id] = key
        return contact.id, key, contact.opt_in

    def coupon_mail(
        self, p: Purchase, contact_ref: int | str, contact_dep: str, opted_in: bool
    ) -> None:
        """Rules 3, 4 and 6: the coupon email, once per purchase, carrying its code."""
        assert p.email is not None
        email_id = self.settings.mautic.coupon_email
        key = mail_key(email_id, contact_ref, p.code)
        if key in self.s.sent or "sent" in self.s.unknown:
            return
        if self.settings.mautic.coupon_email_requires_opt_in and not opted_in:
            self.note(p.email, f"coupon email for {p.session_id} waits for opt-in")
            return
        if self._unreachable(p.email):
            self.note(p.email, f"no coupon email for {p.session_id}: {DNC_NOTE}")
            return
        deps = (*self._planned(f"coupon:{p.session_id}"), *((contact_dep,) if contact_dep else ()))
        self.add(
            Action(
                ActionKind.MAIL,
                key,
                p.email,
                "coupon email for this purchase was never sent",
                params={
                    "email_id": email_id,
                    "contact_id": contact_ref,
                    "email": p.email,
                    "tokens": {"promo_code": p.code},
                    "ref": p.code,
                    "purpose": "coupon",
                    "session_id": p.session_id,
                },
                after={"email": "coupon", "promo_code": p.code},
                depends_on=deps,
            )
        )

    # -- contacts: rules 7-15 -------------------------------------------------

    def contacts(self) -> None:
        self._each_contact()
        if self.tier_unsettled:
            self.note(
                "(stripe)",
                f"purchases could not be read: {self.tier_unsettled} opted-in Basic contact(s)"
                " wait for their invite, since a VIP purchase would change the tier",
            )

    def _unreachable(self, email: str) -> bool:
        """Rule 19: the contact an email goes to is on the Do-Not-Contact list."""
        contacts = self.contacts_by_email.get(email, [])
        return bool(contacts) and contacts[0].dnc

    def _each_contact(self) -> None:
        people: dict[str, list[Contact]] = defaultdict(list)
        for contact in sorted(self.s.contacts, key=lambda c: c.id):
            if self._held_contact(contact):
                continue
            if not contact.reachable:
                self.withdrawn(contact)
                if contact.opt_in and contact.email and is_valid_email(contact.email):
                    self.note(contact.email, f"no invite and no invite email: {DNC_NOTE}")
                    self.lead(contact)  # the CRM still knows the person
                continue  # rule 15
            if not contact.email:
                self.note(f"contact {contact.id}", "opted in but has no email address")
                continue
            if not is_valid_email(contact.email):
                # A validation error at Espo (or a bounce) on every run helps no one:
                # wait until someone fixes the address.
                self.note(contact.email, "opted in but the address is not valid: left alone")
                continue
            people[contact.email].append(contact)
        for email, group in people.items():
            self.person(email, group)

    def person(self, email: str, group: list[Contact]) -> None:
        """Rule 21: contacts sharing an email are one person: one link, one email, one lead.

        The link goes to the contact already holding one (the oldest such),
        else the oldest; the tier is VIP when any of them is (a purchase
        marks the oldest contact of the address, opted in or not).
        """
        everyone = self.contacts_by_email.get(email, group)
        vip = any(self._is_vip(c) or c.id in self.promoting for c in everyone)
        promote = next((self.promoting[c.id] for c in everyone if c.id in self.promoting), None)
        holding = [c for c in group if c.link_vip or c.link_basic]
        primary = (holding or group)[0]
        if len(everyone) > 1 and email not in self.duplicates_noted:
            self.duplicates_noted.add(email)
            ids = ", ".join(str(c.id) for c in everyone)
            self.note(
                email,
                f"{len(everyone)} Mautic contacts share this email (ids {ids}): one person, "
                f"one invite (contact {primary.id}); merge them in Mautic",
            )
        self.contact(primary, vip=vip, promote=promote)

    def contact(self, c: Contact, *, vip: bool | None = None, promote: str | None = None) -> None:
        assert c.email is not None
        promote = promote or self.promoting.get(c.id)
        vip = self._is_vip(c) if vip is None else vip
        if not (vip or promote) and self._tier_may_change(c):
            self.lead(c)
            return
        tier = Tier.VIP if (vip or promote) else Tier.BASIC
        # Rules 4 and 8: an upgrade touches the Basic link only once the
        # contact is VIP; a failed coupon leaves the person as they were.
        # Rule 17: a downgrade touches the VIP link only once the flag is off.
        step = promote or (self.demoting.get(c.id) if tier is Tier.BASIC else None)
        deps: list[str] = [step] if step else []
        upgraded = tuple(deps)
        other = c.link(tier.other)
        if other:
            old = invite_code(other)
            # The field is cleared once the invite is revoked: a failed revoke
            # leaves both as they were for the next run, not an orphan.
            clear_after = upgraded
            if old:
                reason = f"{tier.other} invite replaced by {tier}"
                revoke = self.add(self._revoke(old, c.email, reason, depends_on=upgraded))
                clear_after = (*upgraded, revoke)
            deps.append(
                self.add(
                    Action(
                        ActionKind.UNSET_LINK,
                        f"unset:{c.id}:{tier.other}",
                        c.email,
                        f"contact is {tier}: the {tier.other} link field must be empty",
                        params={"contact_id": c.id, "tier": str(tier.other), "expected": other},
                        before={f"link_{tier.other}": other},
                        after={f"link_{tier.other}": ""},
                        depends_on=clear_after,
                    )
                )
            )
        current = c.link(tier)
        email_id = invite_email_id(self.settings, tier)
        code = invite_code(current) if current else None
        if current and code in self.s.revoked:
            # syncctl revoked this link itself (a config mistake did, once):
            # the backer holds a dead link. Clear it; a new one follows.
            deps.append(
                self.add(
                    Action(
                        ActionKind.UNSET_LINK,
                        f"unset:{c.id}:{tier}",
                        c.email,
                        f"the stored {tier} link was revoked by syncctl: a new one is issued",
                        params={"contact_id": c.id, "tier": str(tier), "expected": current},
                        before={f"link_{tier}": current},
                        after={f"link_{tier}": ""},
                        depends_on=tuple(deps),
                    )
                )
            )
            current = ""
        if current:
            if code is None:
                self.note(c.email, f"{tier} link field holds no Discord invite: {current!r}")
            else:
                self._wrong_channel(c, tier, code)
                if (
                    mail_key(email_id, c.id, code) not in self.s.sent
                    and "sent" not in self.s.unknown
                ):
                    self._invite_mail(c, tier, code, (), "stored invite link was never emailed")
        else:
            previous = self.s.issued.get((c.id, tier))
            reason = "opted-in contact has no invite link"
            if code:
                reason = f"its stored link {code} was revoked: reissue"
            elif previous and previous not in self.s.revoked:
                reason = "link field was cleared: reissue"
                deps.append(self.add(self._revoke(previous, c.email, "link field was cleared")))
            invite = self.add(
                Action(
                    ActionKind.INVITE,
                    f"invite:{c.id}:{tier}",
                    c.email,
                    reason,
                    params={
                        "contact_id": c.id,
                        "tier": str(tier),
                        "channel_id": channel_id(self.settings, tier),
                        "max_age": self.settings.discord.invite_max_age,
                    },
                    before={f"link_{tier}": ""},
                    after={f"link_{tier}": "(new single-use invite)"},
                    depends_on=tuple(deps),
                )
            )
            self._invite_mail(c, tier, NEW, (invite,), "a new invite link gets its email")
        self.lead(c)

    def _wrong_channel(self, c: Contact, tier: Tier, code: str) -> None:
        """A live link of syncctl's into the other tier's channel is worth a word (full runs)."""
        invite = (self.s.invites or {}).get(code)
        if invite is not None and invite.channel_id != channel_id(self.settings, tier):
            self.note(
                c.email or f"contact {c.id}",
                f"its {tier} link {code} opens the other tier's channel: clear the field to "
                "get the right one (check [mautic.fields] and the channel ids)",
            )

    def withdrawn(self, c: Contact) -> None:
        """Rule 20: an unused invite of someone who may not have one is revoked and cleared.

        A used invite is gone from Discord and stays on the contact: syncctl
        removes nobody from the server.
        """
        if not self.settings.discord.revoke_on_opt_out:
            return
        live = self.s.withdrawn_live
        why = "on the Do-Not-Contact list" if c.opt_in else "opt-in withdrawn"
        subject = c.email or f"contact {c.id}"
        for tier in Tier:
            link = c.link(tier)
            code = invite_code(link) if link else None
            if code is None:
                continue
            if live is None:
                self.note(subject, f"{why}: whether its invite is unused could not be checked")
                continue
            if code not in live:
                continue
            revoke = self.add(self._revoke(code, subject, f"{why}: unused invite revoked"))
            self.add(
                Action(
                    ActionKind.UNSET_LINK,
                    f"unset:{c.id}:{tier}",
                    subject,
                    f"{why}: the revoked link is cleared",
                    params={"contact_id": c.id, "tier": str(tier), "expected": link},
                    before={f"link_{tier}": link},
                    after={f"link_{tier}": ""},
                    depends_on=(revoke,),
                )
            )

    def _is_vip(self, c: Contact) -> bool:
        """The contact's VIP flag, unless this run takes it away (rule 17)."""
        return c.vip and c.id not in self.demoting

    def _tier_may_change(self, c: Contact) -> bool:
        """A Basic contact whose VIP purchase could not be checked waits for its invite.

        Minting Basic now would mean a second link and a second email once
        the purchase is seen (rule 8's upgrade), for a run's delay saved.
        """
        assert c.email is not None
        if "purchases" in self.s.unknown:
            if not c.link(Tier.BASIC):
                self.tier_unsettled += 1  # counted: it would have got a link now
            return True
        if "codes" in self.s.unknown and c.email in self.buyers:
            self.note(c.email, "invite waits: the VIP purchase's coupon could not be checked")
            return True
        return False

    def _invite_mail(
        self, c: Contact, tier: Tier, code: str, deps: tuple[str, ...], reason: str
    ) -> None:
        assert c.email is not None
        email_id = invite_email_id(self.settings, tier)
        self.add(
            Action(
                ActionKind.MAIL,
                mail_key(email_id, c.id, code),
                c.email,
                reason,
                params={
                    "email_id": email_id,
                    "contact_id": c.id,
                    "email": c.email,
                    "tier": str(tier),
                    "ref": code,
                    "tokens": {"discord_invite_link": invite_url(code)} if code != NEW else {},
                    "purpose": "invite",
                },
                after={"email": f"{tier} invite"},
                depends_on=deps,
            )
        )

    def _revoke(
        self, code: str, subject: str, reason: str, depends_on: tuple[str, ...] = ()
    ) -> Action:
        return Action(
            ActionKind.REVOKE,
            f"revoke:{code}",
            subject,
            reason,
            params={"code": code},
            before={"invite": invite_url(code)},
            after={"invite": "revoked"},
            depends_on=depends_on,
        )

    def lead(self, c: Contact) -> None:
        """Rule 12: one lead per email, case-insensitive; rule 22: it follows the contact."""
        assert c.email is not None
        if c.email in self.s.leads or c.email in self.leads_planned or "leads" in self.s.unknown:
            return
        self.leads_planned.add(c.email)
        owned = self.s.lead_owners.get(c.id)
        if owned is not None:
            lead_id, old_email = owned
            self.add(
                Action(
                    ActionKind.LEAD_MOVE,
                    f"lead:{c.email}",
                    c.email,
                    f"the contact's email changed from {old_email}: its lead follows",
                    params={
                        "contact_id": c.id,
                        "lead_id": lead_id,
                        "email": c.email,
                        "old_email": old_email,
                    },
                    before={"lead_email": old_email},
                    after={"lead_email": c.email},
                )
            )
            return
        self.add(
            Action(
                ActionKind.LEAD,
                f"lead:{c.email}",
                c.email,
                "opted-in contact has no EspoCRM lead",
                params={
                    "contact_id": c.id,
                    "email": c.email,
                    "first_name": c.firstname,
                    "last_name": c.lastname,
                    "source": self.settings.espocrm.lead_source,
                },
                after={"lead": f"{c.firstname} {c.lastname}".strip() or c.email},
            )
        )

    # -- codes an earlier syncctl made unusable ---------------------------------

    def unblock(self) -> None:
        """Codes created with a payload (syncctl before this release) are refused at
        checkout as if redeemed: their payload is cleared, once, whoever bought them."""
        owners = {p.code: p.email for p in self.s.purchases if p.email}
        for code, row_id in sorted(self.s.blocked_codes.items()):
            self.add(
                Action(
                    ActionKind.COUPON_UNBLOCK,
                    f"unblock:{code}",
                    owners.get(code) or "(shopware)",
                    "the code carries a payload, so Shopware's checkout refuses it: cleared",
                    params={"code": code, "code_id": row_id},
                    before={"payload": "stripe_session"},
                    after={"payload": None},
                )
            )

    # -- orphans: rule 14 -----------------------------------------------------

    def orphans(self) -> None:
        """Rule 14: revoke live invites of syncctl's that no contact holds.

        Only invites minted before the run began reading (less a margin for
        Discord's clock against ours): a younger one may belong to another
        writer that stored it after its contact's page was read. `apply`
        asks Mautic once more who holds each code right before revoking.
        """
        if self.s.invites is None or self.s.observed_at is None:
            return
        cutoff = self.s.observed_at - ORPHAN_MARGIN
        held = {invite_code(c.link_vip) for c in self.s.contacts} | {
            invite_code(c.link_basic) for c in self.s.contacts
        }
        for code, invite in sorted(self.s.invites.items()):
            # syncctl mints single-use links only: a multi-use invite the same
            # bot made for something else is not an orphan of ours.
            if code in held or invite.max_uses != 1:
                continue
            if invite.created_at is None or invite.created_at >= cutoff:
                continue  # too young (or of unknown age) to judge: the next audit will
            revoke = self._revoke(
                code, ORPHAN_SUBJECT, "invite minted by syncctl but held by no contact"
            )
            self.add(replace(revoke, params={**revoke.params, "orphan": True}))


def plan(snapshot: Snapshot, settings: Settings) -> Plan:
    """The actions that bring the systems to the desired state, in a stable order."""
    planner = _Planner(snapshot, settings)
    planner.purchases()
    planner.refunds()
    planner.promotion_wait()
    planner.contacts()
    planner.unblock()
    planner.orphans()
    return Plan(
        actions=tuple(_ordered(planner.actions.values())),
        notes=tuple(planner.notes),
        held_sessions=frozenset(planner.held_sessions),
        held_contacts=frozenset(planner.held_contacts),
        blocked=planner.s.promotion_problem if planner.waiting_on_promotion else "",
    )


def _ordered(actions: Iterable[Action]) -> list[Action]:
    """The order the rules produced them (purchases, then contacts, each oldest
    first; a person's actions together), with any dependency moved before
    what needs it."""
    by_key = {a.key: a for a in actions}
    placed: set[str] = set()
    ordered: list[Action] = []

    def place(action: Action, path: frozenset[str]) -> None:
        if action.key in placed or action.key in path:  # a cycle cannot happen by construction
            return
        for dep in action.depends_on:
            if dep in by_key:
                place(by_key[dep], path | {action.key})
        placed.add(action.key)
        ordered.append(action)

    for action in by_key.values():
        place(action, frozenset())
    return ordered
