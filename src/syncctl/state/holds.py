"""Holds in the journal (desired-state rule 18): set, release, list, and the
trail `history` shows; a mixin of `Journal`, which owns the connection."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime
from typing import Any

from syncctl.state.records import (
    HOLD_EVENT,
    HOLD_KEY_PREFIX,
    RELEASE_EVENT,
    Entry,
    EntryState,
    Hold,
    HoldKind,
    dump,
    hold_subject,
    iso,
    parse,
)
from syncctl.state.store import Session, StateStore, in_chunks


class HoldsMixin:
    """`Journal.hold`, `release`, `holds`, `held` and `hold_trail`."""

    # What the journal provides (`Journal` defines them; the mixin only uses them).
    _store: StateStore
    _clock: Callable[[], datetime]
    _ENTRY_COLUMNS: str

    def _read(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def _write(self, what: str) -> AbstractContextManager[Session]:
        raise NotImplementedError

    @staticmethod
    def _entry(row: tuple[Any, ...]) -> Entry:
        raise NotImplementedError

    # -- holds (rule 18) -------------------------------------------------------------------

    _HOLD_COLUMNS = "subject, kind, reason, held_by, held_at, held_since"

    @staticmethod
    def _hold(row: tuple[Any, ...]) -> Hold:
        return Hold(
            subject=row[0],
            kind=HoldKind(row[1]),
            reason=row[2],
            by=row[3],
            at=parse(row[4]),  # type: ignore[arg-type]
            since=parse(row[5]),  # type: ignore[arg-type]
        )

    def _hold_event(
        self, conn: Session, kind: str, subject: str, now: str, detail: dict[str, Any]
    ) -> None:
        """Record holding or releasing in `entries`, so `history` shows it.

        A finished entry outside any run (run_id NULL), keyed `hold:<subject>`:
        no vendor call stands behind it, so it is never in flight.
        """
        key = HOLD_KEY_PREFIX + subject
        row = conn.execute(
            "INSERT INTO entries (run_id, key, kind, subject, subject_ci, state, detail,"
            " started_at, finished_at) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                key,
                kind,
                subject,
                subject.casefold(),
                EntryState.DONE.value,
                dump(detail),
                now,
                now,
            ),
        ).fetchone()
        conn.execute(
            "INSERT INTO current (key, entry_id, state) VALUES (?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET entry_id = excluded.entry_id,"
            " state = excluded.state",
            (key, int(row[0]), EntryState.DONE.value),
        )

    def hold(
        self, subject: str, kind: HoldKind | str, reason: str | None = None, by: str = ""
    ) -> Hold:
        """Hold `subject` (an email or a session id; see `hold_subject`).

        Takes effect for every run that plans after this commits: runs read
        holds when they plan, and this writes one short transaction without
        the run lock, so it is not kept waiting by a run in progress.

        Held already: a new `reason` replaces the old one (and `by`/`at`;
        `since` stays) and is recorded as another `hold` event; no reason,
        or the same one, changes and records nothing. Either way the
        returned hold's `previous` is the hold found in place, so the
        caller can say what happened (`reason_changed`).
        """
        kind = HoldKind(kind)
        key = hold_subject(subject)
        if not key or (kind is HoldKind.EMAIL) != ("@" in key):
            raise ValueError(f"{subject!r} is not a {kind} to hold")
        now = self._clock()
        with self._write(f"hold {key}") as conn:
            row = conn.execute(
                f"SELECT {self._HOLD_COLUMNS} FROM holds WHERE subject = ?", (key,)
            ).fetchone()
            before = None if row is None else self._hold(row)
            if before is not None and (reason is None or reason == before.reason):
                return replace(before, previous=before)
            after = Hold(
                subject=key,
                kind=kind,
                reason=reason or "",
                by=by,
                at=now,
                since=before.since if before is not None else now,
                previous=before,
            )
            conn.execute(
                f"INSERT INTO holds ({self._HOLD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (subject) DO UPDATE SET reason = excluded.reason,"
                " held_by = excluded.held_by, held_at = excluded.held_at",
                (key, kind.value, after.reason, by, iso(now), iso(after.since)),
            )
            detail: dict[str, Any] = {"hold_kind": kind.value, "reason": after.reason, "by": by}
            if before is not None:
                detail["previous_reason"] = before.reason
            self._hold_event(conn, HOLD_EVENT, key, iso(now), detail)
        return after

    def release(self, subject: str, by: str = "") -> Hold | None:
        """Lift the hold on `subject`; the hold that was lifted, or None if none was.

        Recorded as a `release` event (with the reason it was held for). The
        next run that plans acts for the subject again; nothing is undone or
        replayed by releasing itself.
        """
        key = hold_subject(subject)
        with self._write(f"release {key}") as conn:
            row = conn.execute(
                f"SELECT {self._HOLD_COLUMNS} FROM holds WHERE subject = ?", (key,)
            ).fetchone()
            if row is None:
                return None
            lifted = self._hold(row)
            conn.execute("DELETE FROM holds WHERE subject = ?", (key,))
            detail = {
                "hold_kind": lifted.kind.value,
                "reason": lifted.reason,
                "by": by,
                "held_by": lifted.by,
                "held_since": iso(lifted.since),
            }
            self._hold_event(conn, RELEASE_EVENT, key, iso(self._clock()), detail)
        return lifted

    def holds(self) -> list[Hold]:
        """Every hold in place, the longest-standing first."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {self._HOLD_COLUMNS} FROM holds ORDER BY held_since, subject"
            ).fetchall()
        return [self._hold(row) for row in rows]

    def held(self, subjects: Iterable[str]) -> dict[str, Hold]:
        """The holds on any of `subjects` (emails in any case, session ids), by subject as given.

        For the planner: one query whatever the number of subjects (holds
        are few, so all are read and `subjects` matched in memory), and
        none of `subjects` is looked at when nothing is held.
        """
        table = {h.subject: h for h in self.holds()}
        if not table:
            return {}
        return {given: table[key] for given in subjects if (key := hold_subject(given)) in table}

    def hold_trail(self, subjects: Iterable[str]) -> list[Entry]:
        """The hold and release events of `subjects`, newest first (for one person's history)."""
        keys = [HOLD_KEY_PREFIX + hold_subject(s) for s in subjects]
        found: list[Entry] = []
        with self._read() as conn:
            for chunk, marks in in_chunks(keys):
                found += [
                    self._entry(row)
                    for row in conn.execute(
                        f"SELECT {self._ENTRY_COLUMNS} FROM entries e WHERE e.key IN ({marks})",
                        chunk,
                    )
                ]
        return sorted(found, key=lambda e: e.id, reverse=True)
