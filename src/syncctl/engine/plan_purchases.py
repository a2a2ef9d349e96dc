"""Planning for purchases: rules 1-6 (code, contact, coupon email), 16
(fulfilment sticks to the purchase), 17 (refunds and disputes) and 23 (a code
that cannot be redeemed is not sent)."""

from __future__ import annotations

from collections import defaultdict

from syncctl.engine.model import (
    Action,
    ActionKind,
    Purchase,
)
from syncctl.engine.plan_base import PlannerBase
from syncctl.engine.plan_keys import DNC_NOTE, NEW, mail_key, split_name


class PurchaseRules(PlannerBase):
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
