"""What the journal already knows about a run's purchases and contacts.

`observe` asks the services only about facts the journal lacks; these are
the facts it answers itself, with a query each and no API call: codes and
contacts syncctl made (rule 16), holds (rule 18), links it revoked or
stored, leads it made (rule 22), the latest purchase stored into a contact
(rule 2) and what it learned of refunds (rule 17).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from syncctl.config import Settings
from syncctl.engine.codes import invite_code
from syncctl.engine.model import Contact, Purchase, Tier
from syncctl.engine.troubles import recorded_trouble, refund_key
from syncctl.state.journal import EntryState, Journal


class JournalFacts:
    """The journal's answers; `_Observer` (and `status`) inherit them."""

    journal: Journal
    settings: Settings

    def recorded_codes(self, purchases: dict[str, Purchase]) -> dict[str, Purchase]:
        """A purchase whose code the journal recorded (a legacy code) keeps it."""
        keys = [f"coupon:{sid}" for sid in purchases]
        recorded = self.journal.latest_many(keys) if keys else {}
        out = dict(purchases)
        for key, entry in recorded.items():
            sid = key.removeprefix("coupon:")
            if entry.state is EntryState.DONE and entry.ref and entry.ref != out[sid].code:
                out[sid] = replace(out[sid], code=entry.ref)
        return out

    def made(self, prefix: str, refs: Iterable[str]) -> set[str]:
        """Of `refs`, those whose `prefix:ref` row syncctl did itself (not merely
        found in a service and adopted): rule 16's evidence after a lost state dir."""
        keys = [f"{prefix}:{ref}" for ref in refs]
        found = self.journal.latest_many(keys) if keys else {}
        return {
            key.removeprefix(f"{prefix}:")
            for key, entry in found.items()
            if entry.state is EntryState.DONE and not entry.detail.get("observed")
        }

    def lead_owners(
        self, contacts: Iterable[Contact], leads: set[str]
    ) -> dict[int, tuple[str, str]]:
        """Opted-in contacts without a Lead for their email that syncctl made one for
        under another address: their email changed (rule 22)."""
        lacking = {c.id: c.email for c in contacts if c.opt_in and c.email and c.email not in leads}
        return {
            cid: (lead_id, email)
            for cid, (lead_id, email) in self.journal.leads_made_for(lacking).items()
            if email != lacking[cid]
        }

    def held(self, contacts: Iterable[Contact], purchases: Iterable[Purchase]) -> dict[str, str]:
        """Who and what is held (rule 18), with why: `syncctl hold` (the journal,
        one query) and the Mautic tag (read with the contacts, no call)."""
        contacts = list(contacts)
        purchases = list(purchases)
        subjects = {c.email for c in contacts if c.email}
        subjects |= {p.email for p in purchases if p.email}
        subjects |= {p.session_id for p in purchases}
        found = {
            subject: f"{hold.reason or 'no reason given'}; by {hold.by or 'someone'} "
            f"since {hold.since:%Y-%m-%d}"
            for subject, hold in self.journal.held(subjects).items()
        }
        tag = self.settings.mautic.hold_tag
        for c in contacts:
            if c.hold_tag and c.email:
                found.setdefault(c.email, f"Mautic tag {tag!r} on contact {c.id}")
        return found

    def revoked(self, contacts: Iterable[Contact]) -> set[str]:
        """Invite codes opted-in contacts hold that syncctl itself revoked.

        A dead link nobody would notice until the backer tries it (a config
        mistake once made every run revoke links it had stored); the journal
        knows, so it costs no call.
        """
        held = {
            f"revoke:{code}": code
            for c in contacts
            if c.opt_in
            for code in (invite_code(c.link_vip), invite_code(c.link_basic))
            if code
        }
        if not held:
            return set()
        found = self.journal.latest_many(held)
        return {held[key] for key, entry in found.items() if entry.state is EntryState.DONE}

    def issued(self, contacts: Iterable[Contact]) -> dict[tuple[int, Tier], str]:
        """The invite syncctl last stored for each opted-in contact whose link is empty.

        Only those can need it (to revoke it when an operator cleared the
        field, rule 13), so only their keys are looked up.
        """
        wanted = {
            f"invite:{c.id}:{tier}": (c.id, tier)
            for c in contacts
            if c.opt_in
            for tier in Tier
            if not c.link(tier)
        }
        return {wanted[key]: ref for key, ref in self.journal.done_refs(wanted).items()}

    def latest_known(self, emails: set[str], withdrawn: set[str]) -> dict[str, Purchase]:
        """The newest VIP purchase the journal stored into each buyer's contact.

        Purchases a refund or dispute withdrew (rule 17: `withdrawn`, and the
        journal's `refund:` rows) do not count.
        """
        candidates: list[Purchase] = []
        for email in emails:
            for entry in self.journal.history(subject=email):
                if entry.state is not EntryState.DONE or entry.kind not in (
                    "update_contact",
                    "create_contact",
                ):
                    continue
                d = entry.detail
                if "session_id" not in d or "created" not in d or "promo_code" not in d:
                    continue
                if d["session_id"] in withdrawn or not d["promo_code"]:
                    continue
                candidates.append(
                    Purchase(
                        session_id=d["session_id"],
                        email=email,
                        name=None,
                        created=int(d["created"]),
                        vip=True,
                        paid=True,
                        code=d["promo_code"],
                    )
                )
        if candidates and self.settings.stripe.on_refund == "revoke":
            refs = self.journal.done_refs(refund_key(p.session_id) for p in candidates)
            candidates = [p for p in candidates if not recorded_trouble(refs, p.session_id)]
        latest: dict[str, Purchase] = {}
        for candidate in candidates:
            assert candidate.email is not None
            best = latest.get(candidate.email)
            if best is None or best.recency < candidate.recency:
                latest[candidate.email] = candidate
        return latest
