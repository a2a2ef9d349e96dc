"""The planner's state and the steps every rule shares: adding an action,
noting what it cannot act on, holds (rule 18), revoking, mailing an invite."""

from __future__ import annotations

from collections import defaultdict

from syncctl.config import Settings
from syncctl.engine.codes import invite_url
from syncctl.engine.model import (
    Action,
    ActionKind,
    Contact,
    Note,
    Purchase,
    Snapshot,
    Tier,
)
from syncctl.engine.plan_keys import NEW, invite_email_id, mail_key


class PlannerBase:
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

    def _planned(self, *keys: str) -> tuple[str, ...]:
        return tuple(k for k in keys if k in self.actions)

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

    def _unreachable(self, email: str) -> bool:
        """Rule 19: the contact an email goes to is on the Do-Not-Contact list."""
        contacts = self.contacts_by_email.get(email, [])
        return bool(contacts) and contacts[0].dnc

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
