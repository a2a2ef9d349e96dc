"""Resolving the writes an earlier run left in flight (a crash, a timeout).

Before anything is planned, each journal row still `in_flight` (or `minted`)
is settled by looking at the service, never by repeating the call blindly:
the code is searched in Shopware, the contact and the lead by email, the send
in Mautic's email stats, the invite in the channel's invite list. Rule 13's
"crash between minting and storing" is here: a minted invite nobody holds is
stored into the contact it was minted for, not replaced.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, timedelta

from syncctl.clients.services import Services
from syncctl.engine.apply import ActionFailed, Applier, Chain
from syncctl.engine.codes import invite_code
from syncctl.engine.model import Action, ActionKind, Tier
from syncctl.engine.sends import SEND_SKEW, recorded_sends, unclaimed
from syncctl.errors import NotFound, ServiceError, StoreLost, SyncctlError
from syncctl.state.journal import RECOVERED, Entry, EntryState, Journal

log = logging.getLogger(__name__)

#: Added to `[run] timeout_seconds` before a run that took a shared store's
#: lock settles what a run that lost it left in flight (`_after_takeover`).
TAKEOVER_MARGIN = 2.0

#: Invites created more than this before an in-flight row started are not
#: its own (Discord's clock against ours).
MINT_SKEW = timedelta(seconds=5)


@dataclass(frozen=True)
class Resolution:
    key: str
    kind: str
    subject: str
    result: str  # done | aborted | unresolved
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {
            "key": self.key,
            "kind": self.kind,
            "subject": self.subject,
            "result": self.result,
            "detail": self.detail,
        }


class Recovery:
    def __init__(self, services: Services, journal: Journal, applier: Applier) -> None:
        self.sv = services
        self.journal = journal
        self.applier = applier
        self.settings = applier.settings.mautic
        self.results: list[Resolution] = []

    def run(self) -> list[Resolution]:
        entries = self.journal.in_flight()
        self._after_takeover(entries)
        unminted: dict[str, list[Entry]] = defaultdict(list)
        for entry in entries:
            if entry.kind == str(ActionKind.INVITE) and entry.state is EntryState.IN_FLIGHT:
                unminted[entry.detail.get("channel_id", "")].append(entry)
                continue
            self._settle(entry)
        for channel, rows in unminted.items():
            self._settle_unminted(channel, rows)
        return self.results

    def _after_takeover(self, entries: list[Entry]) -> None:
        """On a shared store, give a run that lost the lock time to finish its last call.

        A run whose host lost its connection to the database may still be
        running: it sends nothing after the loss (its writes are fenced), but
        a call it sent just before may still land. So when this run took the
        lock from a run that never finished and that left attempts in flight,
        those are looked for only once `[run] timeout_seconds` (the longest a
        call can take) and a margin have passed since the lock was taken.
        Never on SQLite: its lock is freed only when the holder is dead.
        """
        held_for = self.journal.leading_for()
        if held_for is None:
            return
        theirs = {e.run_id for e in entries if e.run_id is not None and e.run_id != self.run_id}
        if not theirs or not self.journal.unfinished_runs(theirs):
            return
        wait = self.applier.settings.run.timeout_seconds + TAKEOVER_MARGIN - held_for
        if wait <= 0:
            return
        log.info(
            "waiting %.0f s before settling what run %s left in flight: its host lost the lock "
            "and a call it sent may still land",
            wait,
            ", ".join(map(str, sorted(theirs))),
        )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and not self.applier.stop.is_set():
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    @property
    def run_id(self) -> int | None:
        return self.applier.run_id

    def _note(self, entry: Entry, result: str, detail: str) -> None:
        self.results.append(Resolution(entry.key, entry.kind, entry.subject, result, detail))

    def _finish(
        self,
        entry: Entry,
        found: bool,
        ref: str | None,
        detail: str,
        extra: dict[str, str] | None = None,
    ) -> None:
        if found:
            self.journal.mark(
                entry.id, EntryState.DONE, ref=ref, detail={"recovered": detail, **(extra or {})}
            )
            self._note(entry, "done", detail)
        else:
            first = f"{entry.error}; " if entry.error else ""
            self.journal.mark(entry.id, EntryState.ABORTED, error=f"{first}{RECOVERED}{detail}")
            self._note(entry, "aborted", detail)

    def _settle(self, entry: Entry) -> None:
        try:
            self._settle_one(entry)
        except StoreLost:
            raise
        except (ServiceError, SyncctlError) as exc:
            self._note(entry, "unresolved", f"{exc}; tried again next run")
        except ActionFailed as exc:  # recorded already (a read-back conflict): settled
            self._note(entry, "aborted", str(exc))

    def _settle_one(self, entry: Entry) -> None:
        kind, d = entry.kind, entry.detail
        if kind == str(ActionKind.COUPON):
            found = self.sv.shopware.find_code(d["code"])
            self._finish(entry, found is not None, d["code"], "code search in Shopware")
        elif kind == str(ActionKind.CONTACT_CREATE):
            contacts = self.sv.mautic.find_by_email(entry.subject)
            ref = str(min(c.id for c in contacts)) if contacts else None
            self._finish(entry, bool(contacts), ref, "contact search in Mautic")
        elif kind == str(ActionKind.LEAD):
            leads = self.sv.espocrm.find_leads_by_email(entry.subject)
            self._finish(entry, bool(leads), leads[0].id if leads else None, "lead search in Espo")
        elif kind == str(ActionKind.MAIL):
            contact_id, email_id = int(d["contact_id"]), int(d["email_id"])
            stats = self.sv.mautic.email_stats(contact_id, email_id)
            logged = [s.date_sent for s in stats if s.date_sent and not s.is_failed]
            # A send the journal holds as another message's (a second purchase's
            # email in the same run) is not this one's.
            pair = (contact_id, email_id)
            claims = recorded_sends(self.journal, {pair})[pair]
            since = entry.started_at - SEND_SKEW
            logged_since = [date for date in unclaimed(logged, claims) if date >= since]
            # The logged time is kept: it lets this row claim that send later.
            extra = {"sent_at": logged_since[0].astimezone(UTC).isoformat()} if logged_since else {}
            self._finish(
                entry, bool(logged_since), f"{email_id}:{contact_id}", "Mautic email stats", extra
            )
        elif kind == str(ActionKind.INVITE):
            self._store_minted(entry, entry.ref or "")
        else:  # contact updates, clearing a field, revoking: re-planned from current state
            self._finish(entry, False, None, "re-planned from the current state")

    def _store_minted(self, entry: Entry, code: str) -> None:
        """Rule 13: a minted invite is stored into its contact, not replaced."""
        d = entry.detail
        cid, tier = int(d["contact_id"]), Tier(d["tier"])
        alias = self.applier.link_alias(tier)
        try:
            held = self.sv.mautic.get(cid).text(alias).strip()
        except NotFound:
            # Nobody can hold it now: an orphan (rule 14), not a row stuck forever.
            self.applier.revoke_quietly(code, "its contact was deleted")
            self._finish(entry, False, None, f"contact {cid} is gone; {code} revoked")
            return
        if invite_code(held) == code:
            if d.get("no_email"):
                self.applier.waive_invite_email(entry.subject, cid, tier, code)
            self._finish(entry, True, code, "the link was stored before the interruption")
            return
        if held:
            self.applier.revoke_quietly(code, "contact got another link meanwhile")
            self._finish(entry, False, None, f"contact holds another link; {code} revoked")
            return
        if self.sv.discord.get_invite(code) is None:
            self._finish(entry, False, None, f"minted invite {code} is gone; a new one is planned")
            return
        action = Action(
            ActionKind.INVITE,
            entry.key,
            entry.subject,
            "store the invite minted before a crash",
            params={"contact_id": cid, "tier": str(tier), "no_email": bool(d.get("no_email"))},
        )
        outcome = self.applier.store_invite(action, entry.id, cid, tier, code, Chain())
        self._note(
            entry, "done", f"stored invite {code} minted by an interrupted run ({outcome.status})"
        )

    def _settle_unminted(self, channel: str, rows: list[Entry]) -> None:
        """Invites whose create call had no known answer: find what Discord made."""
        try:
            live = self.sv.discord.list_channel_invites(channel)
        except ServiceError as exc:
            for entry in rows:
                self._note(entry, "unresolved", f"{exc}; tried again next run")
            return
        bot = self.journal.get_meta("discord.bot_user_id")
        held = {e.ref for e in self.journal.latest_by_prefix("invite:").values() if e.ref}
        earliest = min(e.started_at for e in rows) - MINT_SKEW
        candidates = [
            inv
            for inv in live
            if inv.code not in held
            and inv.max_uses == 1
            and (bot is None or inv.inviter_id == bot)
            and inv.created_at is not None
            and inv.created_at >= earliest
        ]
        try:
            # A link someone holds is not ours to adopt or revoke, whoever minted it.
            fields = self.settings.fields
            aliases = (fields.invite_link_vip, fields.invite_link_basic)
            holding = self.sv.mautic.find_holding_any(aliases, [inv.code for inv in candidates])
            candidates = [inv for inv in candidates if not holding[inv.code]]
        except ServiceError as exc:
            for entry in rows:
                self._note(entry, "unresolved", f"{exc}; tried again next run")
            return
        # Single-use invites to one channel are interchangeable, and nobody has
        # received these yet: each interrupted row takes one (oldest with
        # oldest), so what was minted is stored, not replaced (rule 13).
        rows = sorted(rows, key=lambda e: (e.started_at, e.id))
        candidates.sort(key=lambda inv: (inv.created_at, inv.code))
        for entry, invite in zip(rows, candidates, strict=False):
            self.journal.mark(entry.id, EntryState.MINTED, ref=invite.code)
            try:
                self._store_minted(entry, invite.code)
            except StoreLost:
                raise
            except (ServiceError, SyncctlError) as exc:
                self._note(entry, "unresolved", f"{exc}; tried again next run")
            except ActionFailed as exc:
                self._note(entry, "aborted", str(exc))
        # Beyond that: calls that minted nothing are re-planned; invites no row
        # accounts for are revoked.
        for invite in candidates[len(rows) :]:
            self.applier.revoke_quietly(invite.code, "minted by an interrupted run")
        for entry in rows[len(candidates) :]:
            self._finish(entry, False, None, "no invite was minted; a new one is planned")
