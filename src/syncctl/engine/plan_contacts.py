"""Planning for contacts: rules 7-15 (tier, one invite link, its email, the
lead, reissue, orphans), 19-22 (Do-Not-Contact, opt-out, one person one
invite, email change) and the codes an earlier syncctl made unusable."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from syncctl.engine.codes import invite_code
from syncctl.engine.model import (
    Action,
    ActionKind,
    Contact,
    Tier,
    is_valid_email,
)
from syncctl.engine.plan_base import PlannerBase
from syncctl.engine.plan_keys import (
    DNC_NOTE,
    NEW,
    ORPHAN_MARGIN,
    ORPHAN_SUBJECT,
    channel_id,
    invite_email_id,
    mail_key,
)


class ContactRules(PlannerBase):
    def contacts(self) -> None:
        self._each_contact()
        if self.tier_unsettled:
            self.note(
                "(stripe)",
                f"purchases could not be read: {self.tier_unsettled} opted-in Basic contact(s)"
                " wait for their invite, since a VIP purchase would change the tier",
            )

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
