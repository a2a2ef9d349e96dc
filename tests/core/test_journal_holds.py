"""The journal's holds (rule 18): the table, its migration, the API the planner uses."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncctl.engine.model import normalize_email
from syncctl.errors import StateError
from syncctl.state import migrations
from syncctl.state.journal import (
    HOLD_EVENT,
    RELEASE_EVENT,
    EntryState,
    HoldKind,
    Journal,
    hold_subject,
)
from syncctl.state.location import StateLocation
from syncctl.state.migrations import sqlite as sqlite_migrations

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SESSION = "cs_test_a1B2c3D4"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def journal(where: Path | StateLocation, clock: Clock) -> Iterator[Journal]:
    with Journal.open(where, clock=clock) as opened:
        yield opened


# -- the migration -------------------------------------------------------------------------------


@pytest.fixture
def schema_1_store(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state dir written by a syncctl from before holds (schema 1), with one entry."""
    with monkeypatch.context() as old:
        old.setattr(sqlite_migrations, "MIGRATIONS", sqlite_migrations.MIGRATIONS[:1])
        with Journal.open(state_dir) as journal:
            entry = journal.start("lead:a@example.org", "create_lead", "a@example.org", run_id=None)
            journal.mark(entry, EntryState.DONE, ref="L1")
    return state_dir


def test_holds_are_migration_2(schema_1_store: Path) -> None:
    assert migrations.SCHEMA_VERSION >= 2
    assert "CREATE TABLE holds" in sqlite_migrations.MIGRATIONS[1]


def test_an_older_store_is_upgraded_in_place_and_keeps_its_entries(schema_1_store: Path) -> None:
    with Journal.open(schema_1_store) as journal:
        assert journal.schema_version == migrations.SCHEMA_VERSION
        assert journal.done_keys() == {"lead:a@example.org"}
        journal.hold("a@example.org", HoldKind.EMAIL, "dispute", by="alice")
    with sqlite3.connect(schema_1_store / "state.db") as conn:
        assert conn.execute("SELECT subject, kind FROM holds").fetchall() == [
            ("a@example.org", "email")
        ]


def test_an_older_store_read_only_shows_no_holds_and_stays_untouched(
    schema_1_store: Path,
) -> None:
    db = schema_1_store / "state.db"
    before = db.read_bytes()
    with Journal.open(schema_1_store, readonly=True) as reader:
        assert reader.holds() == []
        assert reader.held(["a@example.org"]) == {}
    assert db.read_bytes() == before


# -- hold ----------------------------------------------------------------------------------------


def test_hold_stores_the_email_lower_cased_with_reason_who_and_when(journal: Journal) -> None:
    made = journal.hold(" Ada@Example.COM ", HoldKind.EMAIL, "chargeback", by="alice")
    assert (made.subject, made.kind, made.reason, made.by) == (
        "ada@example.com",
        HoldKind.EMAIL,
        "chargeback",
        "alice",
    )
    assert made.at == made.since == T0 and made.previous is None
    assert journal.holds() == [made]


def test_hold_keeps_a_session_id_as_stripe_spells_it(journal: Journal) -> None:
    assert journal.hold(SESSION, "session", None, by="alice").subject == SESSION


@pytest.mark.parametrize(
    ("subject", "kind"), [("ada@example.com", HoldKind.SESSION), (SESSION, HoldKind.EMAIL)]
)
def test_hold_refuses_a_subject_of_the_other_kind(
    journal: Journal, subject: str, kind: HoldKind
) -> None:
    with pytest.raises(ValueError, match="to hold"):
        journal.hold(subject, kind)


def test_holding_again_with_a_new_reason_updates_it_and_says_so(
    journal: Journal, clock: Clock
) -> None:
    journal.hold("ada@example.com", HoldKind.EMAIL, "dispute", by="alice")
    clock.now = T0 + timedelta(hours=2)
    again = journal.hold("ADA@example.com", HoldKind.EMAIL, "fraud check", by="bob")
    assert again.reason_changed and again.previous is not None
    assert again.previous.reason == "dispute"
    assert (again.reason, again.by, again.at, again.since) == (
        "fraud check",
        "bob",
        T0 + timedelta(hours=2),
        T0,
    )
    assert journal.holds() == [replace(again, previous=None)]


@pytest.mark.parametrize("reason", [None, "dispute"], ids=["no-reason", "same-reason"])
def test_holding_again_without_a_new_reason_changes_and_records_nothing(
    journal: Journal, clock: Clock, reason: str | None
) -> None:
    first = journal.hold("ada@example.com", HoldKind.EMAIL, "dispute", by="alice")
    clock.now = T0 + timedelta(hours=1)
    again = journal.hold("ada@example.com", HoldKind.EMAIL, reason, by="bob")
    assert not again.reason_changed and again.previous == first
    assert (again.by, again.at) == ("alice", T0)
    assert [e.kind for e in journal.history(subject="ada@example.com")] == [HOLD_EVENT]


def test_hold_and_release_are_refused_on_a_read_only_journal(
    journal: Journal, where: Path | StateLocation
) -> None:
    with Journal.open(where, readonly=True) as reader:
        with pytest.raises(StateError, match="read-only"):
            reader.hold("ada@example.com", HoldKind.EMAIL)
        with pytest.raises(StateError, match="read-only"):
            reader.release("ada@example.com")


# -- release -------------------------------------------------------------------------------------


def test_release_lifts_the_hold_and_returns_it(journal: Journal) -> None:
    made = journal.hold("ada@example.com", HoldKind.EMAIL, "dispute", by="alice")
    assert journal.release("Ada@Example.com", by="bob") == made
    assert journal.holds() == []


def test_release_of_what_is_not_held_is_none_and_records_nothing(journal: Journal) -> None:
    assert journal.release("ada@example.com") is None
    assert journal.history() == []


# -- held: the planner's lookup -------------------------------------------------------------------


def test_held_matches_emails_in_any_case_and_session_ids_exactly(journal: Journal) -> None:
    person = journal.hold("ada@example.com", HoldKind.EMAIL, by="alice")
    purchase = journal.hold(SESSION, HoldKind.SESSION, by="alice")
    found = journal.held(["ADA@example.com", SESSION, SESSION.upper(), "bob@example.com"])
    assert found == {"ADA@example.com": person, SESSION: purchase}


def test_held_is_empty_when_nothing_is_held(journal: Journal) -> None:
    def no_subject_is_looked_at() -> Iterator[str]:
        raise AssertionError("subjects were read although nothing is held")
        yield ""

    assert journal.held(no_subject_is_looked_at()) == {}


def test_held_takes_many_subjects_at_once(journal: Journal) -> None:
    journal.hold("c99999@example.com", HoldKind.EMAIL)
    subjects = [f"c{i}@example.com" for i in range(100_000)]
    started = time.perf_counter()
    assert list(journal.held(subjects)) == ["c99999@example.com"]
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize("text", [" Ada@Example.COM ", "ÉLISE@exemple.fr", "x.Y@Z.org"])
def test_hold_subject_normalizes_emails_as_the_planner_does(text: str) -> None:
    assert hold_subject(text) == normalize_email(text)


# -- the trail -----------------------------------------------------------------------------------


def test_holding_and_releasing_are_recorded_for_history(journal: Journal, clock: Clock) -> None:
    journal.hold("ada@example.com", HoldKind.EMAIL, "dispute", by="alice")
    journal.hold("ada@example.com", HoldKind.EMAIL, "fraud check", by="bob")
    clock.now = T0 + timedelta(days=1)
    journal.release("ada@example.com", by="carol")
    released, updated, held = journal.history(subject="Ada@example.com")
    assert [held.kind, updated.kind, released.kind] == [HOLD_EVENT, HOLD_EVENT, RELEASE_EVENT]
    assert all(e.run_id is None and e.state is EntryState.DONE for e in (held, updated, released))
    assert held.detail == {"hold_kind": "email", "reason": "dispute", "by": "alice"}
    assert updated.detail["previous_reason"] == "dispute"
    assert released.detail["by"] == "carol" and released.detail["reason"] == "fraud check"
    assert released.started_at == released.finished_at == T0 + timedelta(days=1)


def test_hold_events_touch_no_action_key(journal: Journal) -> None:
    journal.hold(SESSION, HoldKind.SESSION)
    assert journal.in_flight() == []
    assert journal.done_keys("coupon:") == set()
    assert set(journal.done_keys()) == {f"hold:{SESSION}"}


def test_hold_trail_lists_only_hold_events_of_the_subjects(journal: Journal) -> None:
    entry = journal.start(f"coupon:{SESSION}", "create_coupon", "ada@example.com", run_id=None)
    journal.mark(entry, EntryState.DONE, ref="VIP-1")
    journal.hold(SESSION, HoldKind.SESSION, "refund asked")
    journal.hold("cs_test_other", HoldKind.SESSION)
    journal.release(SESSION)
    trail = journal.hold_trail([SESSION])
    assert [(e.kind, e.subject) for e in trail] == [(RELEASE_EVENT, SESSION), (HOLD_EVENT, SESSION)]


# -- while a run is going on ---------------------------------------------------------------------


def test_a_run_with_the_journal_open_sees_a_hold_committed_elsewhere(
    journal: Journal, where: Path | StateLocation
) -> None:
    """The run's connection reads the holds when it plans: no reopening needed."""
    assert journal.held(["ada@example.com"]) == {}
    with Journal.open(where) as operator:
        operator.hold("ada@example.com", HoldKind.EMAIL, "dispute")
    assert "ada@example.com" in journal.held(["ada@example.com"])


def test_a_hold_waits_for_a_runs_write_transaction_then_lands(
    journal: Journal, where: Path | StateLocation
) -> None:
    in_batch = threading.Event()

    def run_writes_a_batch() -> None:
        with journal.batch():
            in_batch.set()
            time.sleep(0.3)

    runner = threading.Thread(target=run_writes_a_batch)
    runner.start()
    assert in_batch.wait(5)
    with Journal.open(where) as operator:
        operator.hold("ada@example.com", HoldKind.EMAIL)
    runner.join(5)
    assert [h.subject for h in journal.holds()] == ["ada@example.com"]
