"""The intent journal: durable intents, fast current-state queries, honest errors."""

from __future__ import annotations

import shutil
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from syncctl.errors import StateDirUnusable, StateError
from syncctl.state.journal import SCHEMA_VERSION, EntryState, Journal
from syncctl.state.location import StateLocation
from syncctl.state.migrations import postgres as pg_migrations
from syncctl.state.migrations import sqlite as sqlite_migrations
from syncctl.state.sqlite import SQLiteStore
from tests.core.conftest import POSTGRES_ONLY, SQLITE_ONLY
from tests.pgserver import DATABASE

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
BIG = 100_000


class Clock:
    """A settable clock, so timestamps in tests are exact."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def journal(where: Path | StateLocation, clock: Clock) -> Iterator[Journal]:
    with Journal.open(where, clock=clock) as opened:
        yield opened


def raw_rows(where: Path | StateLocation, sql: str) -> list[tuple[Any, ...]]:
    """Rows as another process reads them, past the journal (sqlite3 or psycopg)."""
    if isinstance(where, StateLocation):
        with psycopg.connect(str(where.url)) as conn:
            return [tuple(row) for row in conn.execute(sql)]  # type: ignore[arg-type]
    with sqlite3.connect(where / "state.db") as conn:
        rows = conn.execute(sql).fetchall()
    conn.close()
    return rows


def done(journal: Journal, key: str, ref: str = "ref", *, subject: str = "a@example.org") -> int:
    entry_id = journal.start(key, key.split(":")[0], subject, run_id=None)
    journal.mark(entry_id, EntryState.DONE, ref=ref)
    return entry_id


def failed(journal: Journal, key: str, *, subject: str = "a@example.org") -> int:
    entry_id = journal.start(key, key.split(":")[0], subject, run_id=None)
    journal.mark(entry_id, EntryState.FAILED, error="mautic: 500")
    return entry_id


# -- opening ---------------------------------------------------------------------------------


def test_open_creates_private_dir_and_db(state_dir: Path) -> None:
    Journal.open(state_dir).close()
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / "state.db").stat().st_mode) == 0o600


@SQLITE_ONLY
def test_open_uses_wal(journal: Journal, state_dir: Path) -> None:
    with sqlite3.connect(state_dir / "state.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_schema_version_is_current(journal: Journal) -> None:
    assert journal.schema_version == SCHEMA_VERSION


def test_reopen_keeps_data(where: Path | StateLocation) -> None:
    with Journal.open(where) as first:
        done(first, "coupon:cs_1", "VIP-1")
    with Journal.open(where) as second:
        entry = second.latest("coupon:cs_1")
    assert entry is not None and entry.ref == "VIP-1"


def test_open_applies_new_migrations_to_an_older_db(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Journal.open(state_dir) as old:
        done(old, "lead:a@example.org", "L1")
    newer = [*sqlite_migrations.MIGRATIONS, "CREATE TABLE extra (x INTEGER);"]
    monkeypatch.setattr(sqlite_migrations, "MIGRATIONS", newer)
    with Journal.open(state_dir) as upgraded:
        assert upgraded.schema_version == len(newer)
        assert upgraded.done_keys() == {"lead:a@example.org"}
    with sqlite3.connect(state_dir / "state.db") as conn:
        conn.execute("SELECT x FROM extra")


def test_db_from_newer_syncctl_is_refused_untouched(state_dir: Path) -> None:
    Journal.open(state_dir).close()
    db = state_dir / "state.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = '999' WHERE name = 'schema_version'")
    conn.close()
    before = db.read_bytes()
    with pytest.raises(StateError, match=r"newer syncctl \(schema 999") as caught:
        Journal.open(state_dir)
    assert str(db) in str(caught.value)
    assert db.read_bytes() == before


def test_corrupt_file_is_one_line_naming_path_and_fix(state_dir: Path) -> None:
    state_dir.mkdir()
    db = state_dir / "state.db"
    db.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StateError) as caught:
        Journal.open(state_dir)
    message = str(caught.value)
    assert "\n" not in message
    assert str(db) in message
    assert "file is not a database" in message
    assert "reconcile --full" in message


def test_foreign_sqlite_file_is_refused(state_dir: Path) -> None:
    state_dir.mkdir()
    with sqlite3.connect(state_dir / "state.db") as conn:
        conn.execute("CREATE TABLE photos (id INTEGER)")
    conn.close()
    with pytest.raises(StateError, match="not a syncctl journal"):
        Journal.open(state_dir)


def test_read_only_db_fails_at_open_with_the_fix(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Journal.open(state_dir).close()
    real_connect = SQLiteStore._connect

    def read_only_connect(target: str, *, uri: bool = False) -> sqlite3.Connection:
        # What SQLite does when the file or dir is not writable (root ignores chmod).
        return real_connect(f"file:{target}?mode=ro", uri=True)

    monkeypatch.setattr(SQLiteStore, "_connect", staticmethod(read_only_connect))
    with pytest.raises(StateError) as caught:
        Journal.open(state_dir)
    message = str(caught.value)
    assert message.startswith(f"cannot write {state_dir / 'state.db'}: ")
    assert "readonly database" in message
    assert "fix the permissions of the state_dir, or point [run] state_dir elsewhere" in message


@SQLITE_ONLY
def test_full_disk_is_a_state_error_with_the_fix(journal: Journal) -> None:
    journal.store._live().execute("PRAGMA max_page_count = 1")  # type: ignore[attr-defined]  # the file cannot grow: "full"
    with pytest.raises(StateError, match=r"database or disk is full \(free disk space"):
        journal.start("mail:1:c1:x", "mail", "a@example.org", run_id=None, detail={"x": "y" * 9000})
    assert journal.latest("mail:1:c1:x") is None  # rolled back, nothing half-written


@pytest.mark.parametrize("readonly", [False, True], ids=["writable", "readonly"])
def test_state_dir_under_a_file_is_refused_as_bad_config(tmp_path: Path, readonly: bool) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateDirUnusable, match=r"cannot be created: .*file is a file"):
        Journal.open(blocker / "state", readonly=readonly)


def test_closed_journal_refuses_calls(where: Path | StateLocation) -> None:
    journal = Journal.open(where)
    journal.close()
    with pytest.raises(StateError, match="closed"):
        journal.latest("x")


# -- opening a PostgreSQL store -------------------------------------------------------------


@POSTGRES_ONLY
def test_pg_store_creates_the_schema_and_names_itself_without_the_password(
    where: StateLocation,
) -> None:
    with Journal.open(where) as journal:
        assert journal.schema_version == SCHEMA_VERSION
        assert journal.shared and Journal.exists(where)
        assert "s3cret" not in journal.where and ":***@127.0.0.1" in journal.where
    tables = {row[0] for row in raw_rows(where, "SELECT tablename FROM pg_tables")}
    assert {"meta", "runs", "entries", "current", "cursors", "pending", "holds"} <= tables


@POSTGRES_ONLY
def test_pg_store_of_an_older_syncctl_is_upgraded_in_place(
    where: StateLocation, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as old:
        old.setattr(pg_migrations, "MIGRATIONS", pg_migrations.MIGRATIONS[:1])
        with Journal.open(where) as journal:
            assert journal.schema_version == 1
            done(journal, "lead:a@example.org", "L1")
        assert raw_rows(where, "SELECT to_regclass('holds')") == [(None,)]
    newer = [*pg_migrations.MIGRATIONS, "CREATE TABLE extra (x INTEGER)"]
    monkeypatch.setattr(pg_migrations, "MIGRATIONS", newer)
    with Journal.open(where) as upgraded:
        assert upgraded.schema_version == len(newer)
        assert upgraded.done_keys() == {"lead:a@example.org"}
    assert raw_rows(where, "SELECT count(*) FROM extra") == [(0,)]


@POSTGRES_ONLY
def test_pg_store_from_a_newer_syncctl_is_refused_with_one_line(where: StateLocation) -> None:
    Journal.open(where).close()
    with psycopg.connect(str(where.url), autocommit=True) as conn:
        conn.execute("UPDATE meta SET value = '999' WHERE name = 'schema_version'")
    for readonly in (False, True):
        with pytest.raises(StateError, match=r"newer syncctl \(schema 999") as caught:
            Journal.open(where, readonly=readonly)
        assert "\n" not in str(caught.value) and "s3cret" not in str(caught.value)
    assert raw_rows(where, "SELECT value FROM meta WHERE name = 'schema_version'") == [("999",)]


@POSTGRES_ONLY
def test_pg_store_of_an_older_syncctl_is_not_upgraded_by_a_read_only_view(
    where: StateLocation, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as old:
        old.setattr(pg_migrations, "MIGRATIONS", pg_migrations.MIGRATIONS[:1])
        Journal.open(where).close()
    with pytest.raises(StateError, match=r"schema 1, older .* a run upgrades the schema"):
        Journal.open(where, readonly=True)
    assert raw_rows(where, "SELECT to_regclass('holds')") == [(None,)]


@POSTGRES_ONLY
def test_pg_database_holding_other_tables_of_those_names_is_refused(where: StateLocation) -> None:
    with psycopg.connect(str(where.url), autocommit=True) as conn:
        conn.execute("CREATE TABLE entries (photo TEXT)")
    with pytest.raises(StateError, match="is not a syncctl state store"):
        Journal.open(where)


def test_pg_unreachable_server_is_one_line_without_the_password(
    state_dir: Path, pg_server: Any
) -> None:
    url = pg_server.url().replace(f":{pg_server.port}/", f":{pg_server.port + 1}/")
    with pytest.raises(StateError) as caught:
        Journal.open(StateLocation(state_dir, url))
    message = str(caught.value)
    assert message.startswith("cannot connect to the state store postgresql://syncctl:***@")
    assert "s3cret" not in message and "\n" not in message
    assert "check that PostgreSQL runs" in message


def test_pg_wrong_password_is_one_line_without_the_password(
    state_dir: Path, pg_server: Any
) -> None:
    url = pg_server.url(password="wrong-Pw-Secret")
    with pytest.raises(StateError) as caught:
        Journal.open(StateLocation(state_dir, url))
    message = str(caught.value)
    assert "password authentication failed" in message
    assert "wrong-Pw-Secret" not in message and "\n" not in message


@POSTGRES_ONLY
def test_pg_role_without_write_rights_fails_at_open_with_the_fix(
    where: StateLocation, pg_server: Any, pg_schema: str, state_dir: Path
) -> None:
    Journal.open(where).close()
    with pg_server.admin(DATABASE) as conn:
        conn.execute(f"CREATE ROLE reader_{pg_schema} LOGIN PASSWORD 'ro-pw'")
        conn.execute(f"GRANT USAGE ON SCHEMA {pg_schema} TO reader_{pg_schema}")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {pg_schema} TO reader_{pg_schema}")
    reader = StateLocation(
        state_dir, pg_server.url(pg_schema, user=f"reader_{pg_schema}", password="ro-pw")
    )
    with Journal.open(reader, readonly=True) as journal:
        assert journal.runs() == []
    with pytest.raises(StateError, match=r"permission denied for table meta .*grant the role"):
        Journal.open(reader)


@POSTGRES_ONLY
def test_pg_prefix_queries_use_byte_order_whatever_the_collation(journal: Journal) -> None:
    """The test server's default collation is ICU en-US, which ignores punctuation."""
    for key in ("lead:a", "lead;b", "lead-c", "leadd", "lead:Z", "lead:\u00e9"):
        done(journal, key)
    assert journal.done_keys("lead:") == {"lead:a", "lead:Z", "lead:\u00e9"}
    assert set(journal.latest_by_prefix("lead:")) == {"lead:a", "lead:Z", "lead:\u00e9"}


# -- read-only -------------------------------------------------------------------------------


MUTATIONS: dict[str, Callable[[Journal], Any]] = {
    "begin_run": lambda j: j.begin_run("incremental", dry_run=True),
    "finish_run": lambda j: j.finish_run(1, "ok", {}),
    "start": lambda j: j.start("k:1", "k", "s", run_id=None),
    "mark": lambda j: j.mark(1, EntryState.DONE),
    "set_cursor": lambda j: j.set_cursor("stripe", "1"),
    "add_pending": lambda j: j.add_pending("purchase", "cs_1", "500"),
    "remove_pending": lambda j: j.remove_pending("purchase", "cs_1"),
    "set_meta": lambda j: j.set_meta("bot_id", "1"),
}


@pytest.mark.parametrize("mutation", MUTATIONS.values(), ids=MUTATIONS.keys())
def test_readonly_refuses_every_write(
    where: Path | StateLocation, mutation: Callable[[Journal], Any]
) -> None:
    Journal.open(where).close()
    with (
        Journal.open(where, readonly=True) as journal,
        pytest.raises(StateError, match="read-only"),
    ):
        mutation(journal)


def test_readonly_reads_what_was_written(where: Path | StateLocation) -> None:
    with Journal.open(where) as writer:
        done(writer, "lead:a@example.org", "L1")
        writer.set_cursor("stripe", "1700000000")
    with Journal.open(where, readonly=True) as reader:
        assert reader.done_keys() == {"lead:a@example.org"}
        assert reader.cursor("stripe") == "1700000000"


def test_readonly_without_db_is_empty_and_creates_nothing(
    where: Path | StateLocation, state_dir: Path
) -> None:
    with Journal.open(where, readonly=True) as journal:
        assert journal.schema_version == SCHEMA_VERSION
        assert journal.done_keys() == set()
        assert journal.runs() == []
    assert not state_dir.exists()
    if isinstance(where, StateLocation):
        assert raw_rows(where, "SELECT to_regclass('meta')") == [(None,)]
        assert not Journal.exists(where)


def test_readonly_on_older_schema_reads_a_migrated_copy(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Journal.open(state_dir) as old:
        done(old, "lead:a@example.org", "L1")
    db = state_dir / "state.db"
    before = db.read_bytes()
    newer = [*sqlite_migrations.MIGRATIONS, "CREATE TABLE extra (x INTEGER);"]
    monkeypatch.setattr(sqlite_migrations, "MIGRATIONS", newer)
    with Journal.open(state_dir, readonly=True) as reader:
        assert reader.schema_version == len(newer)
        assert reader.done_keys() == {"lead:a@example.org"}
    assert db.read_bytes() == before


def test_readonly_sees_in_flight_committed_by_a_live_writer(
    journal: Journal, where: Path | StateLocation
) -> None:
    journal.start("invite:c1:vip", "invite", "a@example.org", run_id=None)
    with Journal.open(where, readonly=True) as other:
        assert [entry.key for entry in other.in_flight()] == ["invite:c1:vip"]


# -- intents ---------------------------------------------------------------------------------


def test_start_records_in_flight_with_detail(journal: Journal, clock: Clock) -> None:
    run_id = journal.begin_run("incremental", dry_run=False)
    entry_id = journal.start(
        "invite:c1:vip", "invite", "A@Example.org", run_id=run_id, detail={"channel": "123"}
    )
    entry = journal.latest("invite:c1:vip")
    assert entry is not None
    assert (entry.id, entry.run_id, entry.kind, entry.subject) == (
        entry_id,
        run_id,
        "invite",
        "A@Example.org",
    )
    assert entry.state is EntryState.IN_FLIGHT
    assert entry.detail == {"channel": "123"}
    assert entry.started_at == T0 and entry.started_at.tzinfo is not None
    assert entry.finished_at is None and entry.ref is None


def test_mark_done_sets_ref_and_finished_at(journal: Journal, clock: Clock) -> None:
    entry_id = journal.start("coupon:cs_1", "coupon", "a@example.org", run_id=None)
    clock.advance(seconds=3)
    journal.mark(entry_id, EntryState.DONE, ref="VIP-ABC")
    entry = journal.latest("coupon:cs_1")
    assert entry is not None
    assert entry.state is EntryState.DONE and entry.ref == "VIP-ABC"
    assert entry.finished_at == T0 + timedelta(seconds=3)


def test_mark_merges_detail_and_keeps_ref(journal: Journal) -> None:
    entry_id = journal.start("invite:c1:vip", "invite", "s", run_id=None, detail={"channel": "1"})
    journal.mark(entry_id, EntryState.MINTED, ref="abcd", detail={"max_age": 0})
    journal.mark(entry_id, EntryState.DONE, detail={"stored": True})
    entry = journal.latest("invite:c1:vip")
    assert entry is not None
    assert entry.ref == "abcd"
    assert entry.detail == {"channel": "1", "max_age": 0, "stored": True}


def test_minted_is_not_terminal(journal: Journal) -> None:
    entry_id = journal.start("invite:c1:vip", "invite", "s", run_id=None)
    journal.mark(entry_id, EntryState.MINTED, ref="abcd")
    entry = journal.latest("invite:c1:vip")
    assert entry is not None and entry.finished_at is None


def test_mark_unknown_entry_raises(journal: Journal) -> None:
    with pytest.raises(ValueError, match="no journal entry #42"):
        journal.mark(42, EntryState.DONE)


def test_start_refuses_a_key_with_an_unresolved_entry(journal: Journal) -> None:
    journal.start("mail:7:c1:abcd", "mail", "s", run_id=None)
    with pytest.raises(StateError, match="unresolved in_flight entry"):
        journal.start("mail:7:c1:abcd", "mail", "s", run_id=None)


def test_start_after_resolution_makes_a_new_current_row(journal: Journal) -> None:
    first = journal.start("mail:7:c1:abcd", "mail", "s", run_id=None)
    journal.mark(first, EntryState.ABORTED, detail={"resolved": "no send in email stats"})
    second = journal.start("mail:7:c1:abcd", "mail", "s", run_id=None)
    entry = journal.latest("mail:7:c1:abcd")
    assert entry is not None and entry.id == second and entry.state is EntryState.IN_FLIGHT


def test_latest_of_unknown_key_is_none(journal: Journal) -> None:
    assert journal.latest("coupon:nope") is None


def test_marking_an_older_entry_does_not_change_current_state(journal: Journal) -> None:
    old = failed(journal, "lead:a@example.org")
    done(journal, "lead:a@example.org", "L1")
    journal.mark(old, EntryState.SKIPPED)
    entry = journal.latest("lead:a@example.org")
    assert entry is not None and entry.state is EntryState.DONE


def test_latest_many_spans_chunks(journal: Journal) -> None:
    with journal.batch():
        for i in range(1000):
            done(journal, f"lead:{i}", f"L{i}")
    keys = [f"lead:{i}" for i in range(0, 1000, 1)] + ["lead:missing"]  # two queries
    found = journal.latest_many(keys)
    assert len(found) == 1000
    assert found["lead:999"].ref == "L999"
    assert "lead:missing" not in found


def test_done_keys_lists_keys_whose_latest_is_done(journal: Journal) -> None:
    done(journal, "invite:c1:vip")
    failed(journal, "invite:c2:vip")
    journal.start("invite:c3:vip", "invite", "s", run_id=None)
    done(journal, "lead:a@example.org")
    assert journal.done_keys() == {"invite:c1:vip", "lead:a@example.org"}


def test_not_done_keeps_the_keys_whose_latest_is_not_done_in_order(journal: Journal) -> None:
    done(journal, "lead:a@example.org")
    failed(journal, "lead:b@example.org")
    keys = ["lead:c@example.org", "lead:a@example.org", "lead:b@example.org"]
    assert journal.not_done(keys) == ["lead:c@example.org", "lead:b@example.org"]


def test_not_done_checks_more_keys_than_one_query_takes(journal: Journal) -> None:
    done(journal, "lead:k999@example.org")
    keys = [f"lead:k{i}@example.org" for i in range(2500)]
    assert len(journal.not_done(keys)) == 2499


def test_done_keys_filters_by_prefix(journal: Journal) -> None:
    done(journal, "invite:c1:vip")
    done(journal, "invitation:x")
    done(journal, "lead:a@example.org")
    assert journal.done_keys("invite:") == {"invite:c1:vip"}


def test_done_keys_drops_a_key_whose_newer_attempt_failed(journal: Journal) -> None:
    done(journal, "lead:a@example.org")
    failed(journal, "lead:a@example.org")
    assert journal.done_keys() == set()


def test_prefix_queries_handle_awkward_last_characters(journal: Journal) -> None:
    done(journal, "x:\U0010ffff:1")
    done(journal, "x:%_:1")
    assert journal.done_keys("x:\U0010ffff") == {"x:\U0010ffff:1"}
    assert journal.done_keys("x:%_") == {"x:%_:1"}


def test_latest_by_prefix_returns_current_entries(journal: Journal) -> None:
    done(journal, "invite:c1:basic", "old")
    entry_id = journal.start("invite:c1:vip", "invite", "s", run_id=None)
    done(journal, "lead:a@example.org")
    found = journal.latest_by_prefix("invite:")
    assert set(found) == {"invite:c1:basic", "invite:c1:vip"}
    assert found["invite:c1:vip"].id == entry_id


def test_in_flight_lists_unresolved_latest_entries(journal: Journal) -> None:
    journal.start("mail:1:c1:x", "mail", "s", run_id=None)
    minted = journal.start("invite:c1:vip", "invite", "s", run_id=None)
    journal.mark(minted, EntryState.MINTED, ref="abcd")
    done(journal, "lead:a@example.org")
    assert [(e.key, e.state) for e in journal.in_flight()] == [
        ("mail:1:c1:x", EntryState.IN_FLIGHT),
        ("invite:c1:vip", EntryState.MINTED),
    ]


def test_detail_must_be_json(journal: Journal) -> None:
    with pytest.raises(TypeError):
        journal.start("k:1", "k", "s", run_id=None, detail={"when": object()})
    assert journal.latest("k:1") is None


# -- history ---------------------------------------------------------------------------------


def test_history_is_newest_first(journal: Journal) -> None:
    first = done(journal, "lead:a")
    second = done(journal, "lead:b")
    assert [e.id for e in journal.history()] == [second, first]


def test_history_matches_subject_case_insensitively(journal: Journal) -> None:
    mine = done(journal, "lead:a", subject="Jörg@Example.ORG")
    done(journal, "lead:b", subject="other@example.org")
    assert [e.id for e in journal.history(subject="jörg@example.org")] == [mine]


def test_history_since_filters_by_start_time(journal: Journal, clock: Clock) -> None:
    done(journal, "lead:a")
    clock.advance(hours=2)
    recent = done(journal, "lead:b")
    assert [e.id for e in journal.history(since=T0 + timedelta(hours=1))] == [recent]


def test_history_failed_only_and_limit(journal: Journal) -> None:
    done(journal, "lead:a")
    failed(journal, "lead:b")
    newest_failure = failed(journal, "lead:c")
    assert [e.id for e in journal.history(failed_only=True, limit=1)] == [newest_failure]


def test_history_keeps_every_attempt_of_a_key(journal: Journal) -> None:
    failed(journal, "lead:a")
    done(journal, "lead:a")
    assert [e.state for e in journal.history()] == [EntryState.DONE, EntryState.FAILED]


# -- runs, cursors, pending, meta ------------------------------------------------------------


def test_runs_record_start_finish_and_summary(journal: Journal, clock: Clock) -> None:
    run_id = journal.begin_run("full", dry_run=False)
    clock.advance(seconds=5)
    journal.finish_run(run_id, "failed", {"done": 3, "failed": 1})
    (run,) = journal.runs()
    assert (run.id, run.mode, run.dry_run, run.outcome) == (run_id, "full", False, "failed")
    assert run.summary == {"done": 3, "failed": 1}
    assert run.finished_at == T0 + timedelta(seconds=5)


def test_runs_are_newest_first_and_limited(journal: Journal) -> None:
    ids = [journal.begin_run("incremental", dry_run=False) for _ in range(3)]
    assert [run.id for run in journal.runs(limit=2)] == ids[:0:-1]


def test_unfinished_run_has_no_outcome(journal: Journal) -> None:
    journal.begin_run("incremental", dry_run=False)
    (run,) = journal.runs()
    assert run.finished_at is None and run.outcome is None


def test_cursor_is_none_until_set_then_moves(journal: Journal) -> None:
    assert journal.cursor("stripe") is None
    journal.set_cursor("stripe", "1700000000")
    journal.set_cursor("stripe", "1700000100")
    assert journal.cursor("stripe") == "1700000100"


def test_add_pending_counts_attempts(journal: Journal, clock: Clock) -> None:
    journal.add_pending("purchase", "cs_1", "shopware: 500")
    clock.advance(minutes=10)
    journal.add_pending("purchase", "cs_1", "shopware: 503")
    (item,) = journal.pending()
    assert (item.attempts, item.reason) == (2, "shopware: 503")
    assert (item.first_seen, item.last_seen) == (T0, T0 + timedelta(minutes=10))


def test_pending_filters_by_kind(journal: Journal) -> None:
    journal.add_pending("purchase", "cs_1", "x")
    journal.add_pending("contact", "42", "y")
    assert [item.ref for item in journal.pending("contact")] == ["42"]


def test_remove_pending_drops_the_item(journal: Journal) -> None:
    journal.add_pending("purchase", "cs_1", "x")
    journal.remove_pending("purchase", "cs_1")
    journal.remove_pending("purchase", "never-there")
    assert journal.pending() == []


def test_meta_round_trips(journal: Journal) -> None:
    assert journal.get_meta("discord_bot_id") is None
    journal.set_meta("discord_bot_id", "123456789012345678")
    assert journal.get_meta("discord_bot_id") == "123456789012345678"


def test_set_meta_refuses_the_schema_version(journal: Journal) -> None:
    with pytest.raises(ValueError, match="schema_version"):
        journal.set_meta("schema_version", "0")


# -- durability, batches, threads, speed -----------------------------------------------------


def test_in_flight_is_committed_before_start_returns(
    journal: Journal, where: Path | StateLocation
) -> None:
    journal.start("coupon:cs_1", "coupon", "s", run_id=None)
    rows = raw_rows(where, "SELECT key, state FROM entries")
    assert rows == [("coupon:cs_1", "in_flight")]


def test_batch_rolls_back_entirely_on_error(journal: Journal) -> None:
    with pytest.raises(RuntimeError), journal.batch():
        done(journal, "lead:a")
        raise RuntimeError("boom")
    assert journal.latest("lead:a") is None


def test_concurrent_writers_from_threads_all_land(journal: Journal) -> None:
    def work(worker: int) -> None:
        for i in range(50):
            done(journal, f"lead:{worker}:{i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(journal.done_keys("lead:")) == 400


@pytest.fixture(scope="module")
def big_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100k keys, filled once with raw SQL (through the API it takes a few seconds)."""
    template = tmp_path_factory.mktemp("big")
    Journal.open(template).close()
    stamp = T0.isoformat(timespec="microseconds")
    with sqlite3.connect(template / "state.db") as conn:
        conn.executemany(
            "INSERT INTO entries (id, key, kind, subject, subject_ci, state, ref, started_at)"
            " VALUES (?, ?, 'invite', 's', 's', ?, 'r', ?)",
            ((i + 1, f"invite:{i}", "done" if i % 3 else "failed", stamp) for i in range(BIG)),
        )
        conn.execute(
            "INSERT INTO current (key, entry_id, state) SELECT key, id, state FROM entries"
        )
    conn.close()
    return template / "state.db"


def _fill_pg(where: StateLocation, server: Any, schema: str) -> None:
    """The same 100k keys in PostgreSQL: two statements, foreign keys unchecked (the
    superuser's replica mode: checking 100k references would take most of the time)."""
    Journal.open(where).close()
    stamp = T0.isoformat(timespec="microseconds")
    with server.admin(DATABASE) as conn:
        conn.execute(f"SET search_path TO {schema}")
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            "INSERT INTO entries (id, key, kind, subject, subject_ci, state, ref, started_at)"
            " SELECT i + 1, 'invite:' || i, 'invite', 's', 's',"
            " CASE WHEN i %% 3 = 0 THEN 'failed' ELSE 'done' END, 'r', %s"
            " FROM generate_series(0, %s) AS i",
            (stamp, BIG - 1),
        )
        conn.execute(
            "INSERT INTO current (key, entry_id, state) SELECT key, id, state FROM entries"
        )
        conn.execute("SELECT setval(pg_get_serial_sequence('entries', 'id'), %s)", (BIG,))
        conn.execute("ANALYZE entries, current")


@pytest.fixture
def big_journal(
    backend: str, where: Path | StateLocation, state_dir: Path, request: pytest.FixtureRequest
) -> Iterator[Journal]:
    if isinstance(where, StateLocation):
        server = request.getfixturevalue("pg_server")
        _fill_pg(where, server, request.getfixturevalue("pg_schema"))
    else:
        state_dir.mkdir(mode=0o700)
        shutil.copyfile(request.getfixturevalue("big_db"), state_dir / "state.db")
    with Journal.open(where) as journal:
        yield journal


def test_current_state_queries_stay_fast_at_100k_keys(big_journal: Journal) -> None:
    started = time.perf_counter()
    assert len(big_journal.done_keys()) == sum(1 for i in range(BIG) if i % 3)
    ones = {f"invite:{i}" for i in range(BIG) if i % 3 and str(i).startswith("1")}
    assert big_journal.done_keys("invite:1") == ones
    assert len(big_journal.latest_many(f"invite:{i}" for i in range(0, BIG, 10))) == BIG // 10
    assert time.perf_counter() - started < 2.0  # about 0.1 s; a scan per key would take minutes


def test_start_and_mark_stay_fast_at_100k_keys(big_journal: Journal) -> None:
    started = time.perf_counter()
    with big_journal.batch():
        for i in range(300):
            done(big_journal, f"lead:{i}")
    assert time.perf_counter() - started < 1.0  # about 20 ms; a scan per write takes seconds


def test_done_refs_reads_the_ref_of_done_keys_only(journal: Journal) -> None:
    done(journal, "invite:1:basic", ref="CODE1")
    failed(journal, "invite:2:basic")
    assert journal.done_refs(["invite:1:basic", "invite:2:basic", "invite:3:vip"]) == {
        "invite:1:basic": "CODE1"
    }
