"""Whole-journal reports (`syncctl export`): one joined row per purchase and per
invite, read page by page with one cursor, so memory stays flat at 100k rows.

The joins are SQLite's (json_extract, instr, GLOB, INDEXED BY): a journal on
the shared PostgreSQL store is refused with one line for now (`Journal`
checks the backend before calling these).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, NamedTuple, cast

from syncctl.errors import StateError
from syncctl.state.records import EntryState
from syncctl.state.store import Session, StateStore

#: Stored state text -> EntryState, without the enum's slower call per row.
_STATES = {state.value: state for state in EntryState}


class PurchaseFacts(NamedTuple):
    """One purchase as the journal knows it, in one joined row (`syncctl export`).

    The newest entries of its coupon and its refund fact, the coupon email
    sent with its code, and the buyer's contact. A state is None where no
    attempt exists; times are UTC ISO-8601 text to the second.
    """

    session_id: str
    #: The subject its facts were written under: the buyer's email, lower-cased.
    email: str
    coupon_state: EntryState | None
    #: The code Shopware answered (the ref), else the one it was to get.
    code: str | None
    #: Found in Shopware (a lost state dir, the old workflows), not created by syncctl.
    coupon_observed: bool
    #: What a run read from Stripe (`refund:<session>`, done): refunded, disputed, cleared.
    refund: str | None
    #: The buyer's contact: the one the coupon email was sent to (`mail:<email id>:
    #: <contact>:<code>`, done, under the buyer's email), else the one syncctl created
    #: for the buyer (`contact:<email>`), else the one it gave the code (`vip:<contact>:
    #: <code>`).
    contact_id: int | None
    #: When that coupon email went out (the time Mautic logged, else when the send
    #: finished); None until one is sent.
    mail_sent_at: str | None


class ContactFacts(NamedTuple):
    """One invite of one contact, with its email and the person's lead (`syncctl export`).

    With `tier` None: a lead that no invite row shows (a contact syncctl made
    a lead for without an invite, e.g. on the Do-Not-Contact list). Times
    are UTC ISO-8601 text to the second.
    """

    contact_id: int | None
    tier: str | None
    #: The subject the invite (or lead) was written under: the email, lower-cased.
    email: str
    #: The invite attempt's entry id (the newest of a contact's tiers wins a tie).
    invite_id: int | None
    invite_state: EntryState | None
    invite_code: str | None
    #: When the invite was issued (its attempt finished).
    invite_at: str | None
    #: syncctl revoked this invite (`revoke:<code>`, done).
    revoked: bool
    #: The invite's email (`mail:<tier's email id>:<contact>:<code>`): its ref (a
    #: deliberately unsent one is marked so) and, once done, when it went out.
    mail_ref: str | None
    mail_sent_at: str | None
    #: The lead of the email (`lead:<email>`).
    lead_state: EntryState | None
    lead_ref: str | None
    lead_observed: bool
    lead_contact_id: int | None


# -- the export's joined reads --------------------------------------------------------------
# One row per purchase and per invite, joined in SQLite by key (primary key
# lookups) or on the subject index, read with one cursor: nothing is held
# in Python but the page being read. Parameters: :done, :skipped, and per
# query the email ids (`iter_purchase_facts`, `iter_contact_facts`).

#: Purchases with a coupon attempt, by key. The coupon email is a sent
#: `mail:<id>:<contact>:<code>` ending in this code among the buyer's entries
#: (the subject index; `+` keeps the state out of the index choice); the other
#: ways to the buyer's contact are asked only when no email names one
#: (COALESCE stops at the first value).
PURCHASES_SQL = """
SELECT p.sid, p.subject_ci, p.state, p.code, p.observed,
    (SELECT re.ref FROM current rc JOIN entries re ON re.id = rc.entry_id
        WHERE rc.key = 'refund:' || p.sid AND rc.state = :done),
    NULLIF(COALESCE(
        CAST(substr(m.key, :mail_len + 1, instr(substr(m.key, :mail_len + 1), ':') - 1)
            AS INTEGER),
        (SELECT CAST(ce.ref AS INTEGER) FROM current cc JOIN entries ce ON ce.id = cc.entry_id
            WHERE cc.key = 'contact:' || p.subject_ci AND cc.state = :done
                AND ce.ref != '' AND ce.ref NOT GLOB '*[^0-9]*'),
        (SELECT CAST(substr(v.key, 5, instr(substr(v.key, 5), ':') - 1) AS INTEGER)
            FROM entries v JOIN current vc ON vc.key = v.key AND vc.entry_id = v.id
            WHERE v.subject_ci = p.subject_ci AND v.key >= 'vip:' AND v.key < 'vip;'
                AND substr(v.key, -length(p.code) - 1) = ':' || p.code
            ORDER BY v.id LIMIT 1)), 0),
    strftime('%Y-%m-%dT%H:%M:%S+00:00', COALESCE(json_extract(m.detail, '$.sent_at'),
        m.finished_at))
FROM (
    SELECT c.key AS key, substr(c.key, 8) AS sid, e.subject_ci AS subject_ci, e.state AS state,
        COALESCE(e.ref, json_extract(e.detail, '$.code')) AS code,
        json_extract(e.detail, '$.observed') IS 1 AS observed
    FROM current c JOIN entries e ON e.id = c.entry_id
    WHERE c.key >= 'coupon:' AND c.key < 'coupon;'
) p
LEFT JOIN entries m ON m.id = (
    SELECT x.id FROM entries x INDEXED BY entries_subject
        JOIN current xc ON xc.key = x.key AND xc.entry_id = x.id
    WHERE x.subject_ci = p.subject_ci AND x.key >= :mail AND x.key < :mail_end
        AND substr(x.key, -length(p.code) - 1) = ':' || p.code AND +xc.state = :done
    LIMIT 1)
ORDER BY p.key
"""

#: Purchases only a refund fact names (refunded or disputed before any code was
#: made for them), by key.
REFUND_ONLY_SQL = """
SELECT substr(c.key, 8), e.subject_ci, NULL, NULL, 0, e.ref, NULL, NULL
FROM current c JOIN entries e ON e.id = c.entry_id
WHERE c.key >= 'refund:' AND c.key < 'refund;' AND c.state = :done
    AND NOT EXISTS (SELECT 1 FROM current x WHERE x.key = 'coupon:' || substr(c.key, 8))
ORDER BY c.key
"""

#: Each invite key's newest attempt, by key (a contact's tiers are neighbours),
#: with whether syncctl revoked it, its email, and the lead of its email.
INVITES_SQL = """
SELECT i.cid, i.tier, i.subject_ci, i.id, i.state, i.ref, i.at,
    EXISTS (SELECT 1 FROM current rv WHERE rv.key = 'revoke:' || i.ref AND rv.state = :done),
    m.ref, CASE WHEN m.state = :done THEN strftime('%Y-%m-%dT%H:%M:%S+00:00',
        COALESCE(json_extract(m.detail, '$.sent_at'), m.finished_at)) END,
    l.state, l.ref, json_extract(l.detail, '$.observed') IS 1,
    json_extract(l.detail, '$.contact_id')
FROM (
    SELECT c.key AS key,
        substr(c.key, 8, instr(substr(c.key, 8), ':') - 1) AS cid,
        substr(c.key, 8 + instr(substr(c.key, 8), ':')) AS tier,
        e.id AS id, e.subject_ci AS subject_ci, e.state AS state, e.ref AS ref,
        COALESCE(e.finished_at, e.started_at) AS at
    FROM current c JOIN entries e ON e.id = c.entry_id
    WHERE c.key >= 'invite:' AND c.key < 'invite;'
) i
LEFT JOIN current mc ON mc.key = 'mail:' || (CASE i.tier WHEN 'vip' THEN :vip ELSE :basic END)
    || ':' || i.cid || ':' || i.ref
LEFT JOIN entries m ON m.id = mc.entry_id
LEFT JOIN current lc ON lc.key = 'lead:' || i.subject_ci AND lc.state != :skipped
LEFT JOIN entries l ON l.id = lc.entry_id
ORDER BY i.key
"""

#: Leads no invite row shows: no invite of their email names their contact
#: (or, for a lead found in Espo with no contact, no invite of their email).
LONE_LEADS_SQL = """
SELECT json_extract(e.detail, '$.contact_id'), NULL, substr(c.key, 6), NULL, NULL, NULL, NULL, 0,
    NULL, NULL,
    e.state, e.ref, json_extract(e.detail, '$.observed') IS 1,
    json_extract(e.detail, '$.contact_id')
FROM current c JOIN entries e ON e.id = c.entry_id
WHERE c.key >= 'lead:' AND c.key < 'lead;' AND c.state != :skipped
    AND NOT EXISTS (
        SELECT 1 FROM entries ie JOIN current ic ON ic.key = ie.key AND ic.entry_id = ie.id
        WHERE ie.subject_ci = substr(c.key, 6) AND ie.key >= 'invite:' AND ie.key < 'invite;'
            AND (json_extract(e.detail, '$.contact_id') IS NULL
                OR substr(ie.key, 8, instr(substr(ie.key, 8), ':') - 1)
                    = CAST(json_extract(e.detail, '$.contact_id') AS TEXT)))
ORDER BY c.key
"""


def _state(text: str | None) -> EntryState | None:
    return None if text is None else _STATES[text]


def _int(value: Any) -> int | None:
    """A contact id from a key (text) or a detail (a JSON number); None for anything else."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def purchase_facts(row: tuple[Any, ...]) -> PurchaseFacts:
    # The query gives each column its type already (the contact: a positive id or NULL).
    states = _STATES
    return PurchaseFacts(
        row[0], row[1], states.get(row[2]), row[3], row[4] == 1, row[5], row[6], row[7]
    )


def contact_facts(row: tuple[Any, ...]) -> ContactFacts:
    return ContactFacts(
        _int(row[0]),
        row[1],
        row[2],
        row[3],
        _state(row[4]),
        row[5],
        row[6],
        bool(row[7]),
        row[8],
        row[9],
        _state(row[10]),
        row[11],
        bool(row[12]),
        _int(row[13]),
    )


class ReportsMixin:
    """`Journal.snapshot`, `iter_purchase_facts`, `iter_contact_facts` (the export)."""

    _store: StateStore

    def _read(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    # -- reports over the whole journal (export) ------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: every read inside sees the journal as it was at the first.

        For a reader that pages through the journal in several queries (`syncctl
        export`) while a run may be writing: in WAL mode the run goes on, and
        the pages agree with each other. Reads only: a write inside fails.
        """
        with self._sqlite_read() as conn:
            nested = conn.in_transaction  # the outer snapshot holds
            if not nested:
                conn.execute("BEGIN")
        if nested:
            yield
            return
        try:
            yield
        finally:
            with self._sqlite_read() as conn:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def require_reports(self) -> None:
        """Refuse (StateError) before anything is written when reports cannot be read here."""
        with self._sqlite_read():
            pass

    @contextmanager
    def _sqlite_read(self) -> Iterator[sqlite3.Connection]:
        """The SQLite connection, for the reports' SQLite-only joins (`state.reports`)."""
        if self._store.kind != "sqlite":
            raise StateError(
                f"export reads a SQLite journal; this one is on {self._store.name}",
                hint="for now, export on a host with a SQLite state dir (state migrate --to DIR "
                "makes one from the shared store)",
            )
        with self._read() as conn:
            yield cast(sqlite3.Connection, conn)

    def _pages(self, sql: str, params: Mapping[str, Any], page: int) -> Iterator[list[Any]]:
        """The rows of one read query, `page` at a time, from one cursor (never all at once)."""
        with self._sqlite_read() as conn:
            cursor = conn.execute(sql, params)
        try:
            while True:
                with self._sqlite_read():
                    rows = cursor.fetchmany(page)
                if not rows:
                    return
                yield rows
        finally:
            cursor.close()

    def iter_purchase_facts(
        self, coupon_email: int, *, page: int = 500
    ) -> Iterator[list[PurchaseFacts]]:
        """Every purchase the journal knows (`coupon:<session>`, then sessions only a
        `refund:` fact names), by session id, `page` at a time.

        Each purchase is one row joined in SQLite: its coupon, refund and coupon
        email (`coupon_email` is the email's id) come by key or on the subject
        index, so memory stays flat however many purchases there are.
        """
        mail = f"mail:{coupon_email}:"
        params = {
            "mail": mail,
            "mail_end": mail[:-1] + ";",
            "mail_len": len(mail),
            "done": EntryState.DONE.value,
        }
        for rows in self._pages(PURCHASES_SQL, params, page):
            yield [purchase_facts(row) for row in rows]
        for rows in self._pages(REFUND_ONLY_SQL, params, page):
            yield [purchase_facts(row) for row in rows]

    def iter_contact_facts(
        self, vip_email: int, basic_email: int, *, page: int = 500
    ) -> Iterator[list[ContactFacts]]:
        """Every invite attempt's newest entry (`invite:<contact>:<tier>`, in key order, so a
        contact's tiers come together), then every lead no invite row shows; `page` at a time.

        `vip_email`/`basic_email` are the invite emails' ids. One joined row each.
        """
        params = {
            "vip": vip_email,
            "basic": basic_email,
            "done": EntryState.DONE.value,
            "skipped": EntryState.SKIPPED.value,
        }
        for rows in self._pages(INVITES_SQL, params, page):
            yield [contact_facts(row) for row in rows]
        for rows in self._pages(LONE_LEADS_SQL, params, page):
            yield [contact_facts(row) for row in rows]
