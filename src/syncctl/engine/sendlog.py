"""Which emails went out, when the journal does not say: Mautic's send log.

After a lost state dir, or for sends the old workflows made, a mail key is
derived from Mautic's email stats (one lookup per contact and email, or the
whole log of an email when there are many questions); a send claimed by
another purchase's or link's row in the journal is not this one's.
"""

from __future__ import annotations

import functools
import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from syncctl.clients.services import Services
from syncctl.config import Settings
from syncctl.engine.codes import invite_code
from syncctl.engine.model import Contact, Invite, Purchase, Tier, holders
from syncctl.engine.plan import invite_email_id, mail_key
from syncctl.engine.sends import SEND_SKEW, match_sends, recorded_sends, unclaimed
from syncctl.state.journal import Journal

T = TypeVar("T")
#: Above this many unknown facts of one kind, one paged bulk read is cheaper
#: than one lookup each.
BULK_THRESHOLD = 25


class SendLog:
    """Send-log inference; `_Observer` inherits it (its reads are shared)."""

    sv: Services
    journal: Journal
    settings: Settings
    sent_at: dict[str, datetime]
    logged_sends: set[tuple[int, int]]
    _lock: threading.Lock
    _live: dict[str, Invite] | None
    progress: Callable[[str], None]

    def bulk(self, name: str, read: Callable[[], T]) -> T:
        raise NotImplementedError

    def invites(self) -> dict[str, Invite]:
        raise NotImplementedError

    def _read_stats(self, email_id: int) -> dict[int, list[datetime]]:
        self.progress(f"reading Mautic's send log of email {email_id}")
        dates: dict[int, list[datetime]] = defaultdict(list)
        for stat in self.sv.mautic.iter_email_stats(email_id):
            if not stat.is_failed and stat.date_sent and stat.lead_id is not None:
                dates[stat.lead_id].append(stat.date_sent)
        with self._lock:
            self.logged_sends.update((email_id, cid) for cid in dates)
        return dates

    def sent(
        self,
        contacts: dict[int, Contact],
        purchases: list[Purchase],
        invites: dict[str, Invite] | None,
        full: bool,
    ) -> set[str]:
        """Mail keys already sent: the journal's, else derived from Mautic's stats."""
        sent = set(self.journal.done_keys("mail:"))
        holder = holders(contacts.values())
        coupon_email = self.settings.mautic.coupon_email
        # (contact, email id) -> what we must decide about it
        invite_questions: dict[tuple[int, int], str] = {}
        coupon_questions: dict[int, list[Purchase]] = defaultdict(list)
        for c in contacts.values():
            if not c.opt_in:
                continue
            for tier in Tier:
                code = invite_code(c.link(tier))
                email_id = invite_email_id(self.settings, tier)
                if code and mail_key(email_id, c.id, code) not in sent:
                    invite_questions[(c.id, email_id)] = code
        for p in purchases:
            if p.email and p.email in holder:
                cid = holder[p.email].id
                if mail_key(coupon_email, cid, p.code) not in sent:
                    coupon_questions[cid].append(p)
        pairs = set(invite_questions) | {(cid, coupon_email) for cid in coupon_questions}
        if not pairs:
            return sent
        stats = self._send_dates(pairs, full)
        logged = {pair for pair in pairs if stats.get(pair)}
        claims = recorded_sends(self.journal, logged, bulk=len(logged) > BULK_THRESHOLD)
        for (cid, email_id), code in invite_questions.items():
            # An earlier link's email (a reissue minutes after a send) is not this one's.
            dates = unclaimed(stats.get((cid, email_id), []), claims.get((cid, email_id), []))
            created = self._invite_created(code, invites)
            after = dates if created is None else [d for d in dates if d >= created - SEND_SKEW]
            if after:
                key = mail_key(email_id, cid, code)
                sent.add(key)
                self.sent_at[key] = after[-1]
        for cid, bought in coupon_questions.items():
            # Another purchase's email, sent already, is not the one missing.
            dates = unclaimed(
                stats.get((cid, coupon_email), []), claims.get((cid, coupon_email), [])
            )
            made = [(p.code, datetime.fromtimestamp(p.created, UTC)) for p in bought]
            for code, when in match_sends(dates, made, SEND_SKEW).items():
                key = mail_key(coupon_email, cid, code)
                sent.add(key)
                self.sent_at[key] = when
        return sent

    def _send_dates(
        self, pairs: set[tuple[int, int]], full: bool
    ) -> dict[tuple[int, int], list[datetime]]:
        dates: dict[tuple[int, int], list[datetime]] = defaultdict(list)
        mautic = self.sv.mautic
        if full or len(pairs) > BULK_THRESHOLD:
            for email_id in sorted({eid for _, eid in pairs}):
                sends = self.bulk(
                    f"stats:{email_id}", functools.partial(self._read_stats, email_id)
                )
                for cid, eid in pairs:
                    if eid == email_id and cid in sends:
                        dates[(cid, email_id)] = sends[cid]
            return dates
        for cid, email_id in sorted(pairs):
            for stat in mautic.email_stats(cid, email_id):
                if not stat.is_failed and stat.date_sent:
                    dates[(cid, email_id)].append(stat.date_sent)
        return dates

    def _invite_created(self, code: str, invites: dict[str, Invite] | None) -> datetime | None:
        """When a live invite was minted (only the channel lists carry it)."""
        if invites is None:
            if self._live is None:
                self._live = self.invites()
            invites = self._live
        invite = invites.get(code)
        return invite.created_at if invite else None
