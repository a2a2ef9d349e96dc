"""The shared PostgreSQL store from the operator's side: migrate, doctor, status, history, holds."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest

from syncctl.sandbox.stack import Sandbox
from syncctl.state.journal import open_for_run
from syncctl.state.location import StateLocation
from syncctl.state.lock import state_lock
from syncctl.state.transfer import TABLES, _select
from tests.ops.conftest import Run, one_error_line, set_secret, set_state_dir
from tests.ops.test_doctor import lines_of


def rows(where: Path | StateLocation) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in key order, as stored (store-local meta left out)."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    if isinstance(where, StateLocation):
        with psycopg.connect(str(where.url)) as conn:
            for table in TABLES:
                found[table] = [tuple(r) for r in conn.execute(_select(table))]  # type: ignore[arg-type]
        return found
    with sqlite3.connect(where / "state.db") as conn:
        for table in TABLES:
            found[table] = [tuple(r) for r in conn.execute(_select(table))]
    conn.close()
    return found


def plan_actions(run: Run) -> list[str]:
    result = run("reconcile", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    return [a["key"] for a in json.loads(result.stdout)["plan"]["actions"]]


def state_dir_of(campaign: Path) -> Path:
    from syncctl import config as config_mod

    return config_mod.load(campaign / "syncctl.toml", campaign / ".env").settings.run.state_path


def test_migrate_sqlite_to_postgres_and_back_keeps_every_row_and_plans_nothing_new(
    run: Run, campaign: Path, sandbox: Sandbox, pg_url: str, tmp_path: Path
) -> None:
    assert run("reconcile").exit_code == 0
    writes = sandbox.write_count()
    old_dir = state_dir_of(campaign)
    before = rows(old_dir)
    assert len(before["entries"]) > 10 and before["cursors"] and before["runs"]

    moved = run("state", "migrate", "--to", pg_url)
    assert moved.exit_code == 0, moved.output
    assert "entries: " in moved.output and "same in both" in moved.output
    assert "s3cret" not in moved.output
    pg = StateLocation(old_dir, pg_url)
    assert rows(pg) == before

    refused = run("reconcile")  # this host still points at the old file
    assert refused.exit_code == 1
    assert "was moved to postgresql://syncctl:***@127.0.0.1" in one_error_line(refused)

    set_secret(campaign, "SYNCCTL_STATE_URL", pg_url)
    assert plan_actions(run) == []
    assert run("reconcile").exit_code == 0
    assert sandbox.write_count() == writes
    history = run("history", "--limit", "0")
    assert history.exit_code == 0 and "coupon:" in history.stdout
    in_pg = rows(pg)

    back = tmp_path / "back"
    returned = run("state", "migrate", "--to", str(back), "--json")
    assert returned.exit_code == 0, returned.output
    report = json.loads(returned.stdout)
    assert {t["table"]: t["rows"] for t in report["tables"]} == {
        table: len(found) for table, found in in_pg.items()
    }
    assert rows(back) == in_pg

    set_secret(campaign, "SYNCCTL_STATE_URL", None)
    set_state_dir(campaign, str(back))
    assert plan_actions(run) == []
    assert run("reconcile").exit_code == 0
    assert sandbox.write_count() == writes


def test_migrate_refuses_while_a_reconcile_holds_the_lock(
    run: Run, campaign: Path, pg_url: str
) -> None:
    with state_lock(state_dir_of(campaign)):
        result = run("state", "migrate", "--to", pg_url)
    assert result.exit_code == 3
    assert "another syncctl run holds" in one_error_line(result)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('meta')").fetchone() == (None,)  # untouched


def test_migrate_refuses_a_target_that_holds_a_state(
    run: Run, campaign: Path, pg_url: str, tmp_path: Path
) -> None:
    assert run("reconcile", "--max-actions", "1").exit_code == 0
    with open_for_run(StateLocation(tmp_path, pg_url)) as other:
        other.set_cursor("stripe", "1")
    result = run("state", "migrate", "--to", pg_url)
    assert result.exit_code == 1
    assert "already holds a syncctl state; refusing to mix two histories" in one_error_line(result)
    assert (state_dir_of(campaign) / "state.db").stat().st_size != 0
    assert run("reconcile", "--dry-run").exit_code == 0  # the source was not marked moved


def test_doctor_checks_the_shared_store(
    run: Run, campaign: Path, pg_url: str, tmp_path: Path
) -> None:
    set_secret(campaign, "SYNCCTL_STATE_URL", pg_url)
    fresh = lines_of(run("doctor"))
    assert fresh["state_store"].startswith("ok ")
    assert "no tables yet" in fresh["state_store"] and "s3cret" not in fresh["state_store"]
    assert fresh["state_store.lock"].startswith("ok ") and "free" in fresh["state_store.lock"]
    assert "state_dir" not in fresh
    with open_for_run(StateLocation(tmp_path, pg_url)):
        held = run("doctor")
    checks = lines_of(held)
    assert held.exit_code == 0, held.output
    assert "store schema 2" in checks["state_store"] and "PostgreSQL " in checks["state_store"]
    assert checks["state_store.privileges"].startswith("ok ")
    assert (
        "held by syncctl@" in checks["state_store.lock"] and " since " in checks["state_store.lock"]
    )


def test_doctor_names_an_unreachable_store_without_its_password(
    run: Run, campaign: Path, pg_server: Any
) -> None:
    url = pg_server.url().replace(f":{pg_server.port}/", f":{pg_server.port + 1}/")
    set_secret(campaign, "SYNCCTL_STATE_URL", url)
    result = run("doctor")
    assert result.exit_code == 1
    line = lines_of(result)["state_store"]
    assert line.startswith("FAIL") and "cannot connect to the state store" in line
    assert "s3cret" not in result.output


def test_status_holds_and_history_work_on_the_shared_store(
    run: Run, campaign: Path, pg_url: str
) -> None:
    set_secret(campaign, "SYNCCTL_STATE_URL", pg_url)
    assert run("reconcile").exit_code == 0
    assert run("hold", "ada.lovelace@example.com", "--reason", "dispute").exit_code == 0
    holds = run("holds", "--json")
    assert [h["subject"] for h in json.loads(holds.stdout)["holds"]] == ["ada.lovelace@example.com"]
    status = run("status", "ada.lovelace@example.com", "--json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["holds"]
    history = run("history", "--email", "ada.lovelace@example.com", "--json")
    assert history.exit_code == 0
    kinds = {e["action"] for e in json.loads(history.stdout)["entries"]}
    assert "hold" in kinds and len(kinds) > 1
    assert run("release", "ada.lovelace@example.com").exit_code == 0


def test_export_on_the_shared_store_says_in_one_line_that_it_reads_sqlite_for_now(
    run: Run, campaign: Path, pg_url: str
) -> None:
    set_secret(campaign, "SYNCCTL_STATE_URL", pg_url)
    assert run("reconcile").exit_code == 0
    result = run("export")
    assert result.exit_code != 0
    assert "export reads a SQLite journal" in one_error_line(result)
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("mysql://syncctl@db/syncctl", "is not a PostgreSQL URL"),
        ("postgresql://syncctl@db", "is not a PostgreSQL URL with a database name"),
    ],
)
def test_a_state_url_that_is_not_postgres_is_a_config_error(
    run: Run, campaign: Path, url: str, why: str
) -> None:
    set_secret(campaign, "SYNCCTL_STATE_URL", url)
    result = run("reconcile")
    assert result.exit_code == 2
    assert why in one_error_line(result)


def test_a_password_in_the_toml_state_url_is_refused_without_echoing_it(
    run: Run, campaign: Path
) -> None:
    config = campaign / "syncctl.toml"
    config.write_text(
        config.read_text().replace("[run]\n", '[run]\nstate_url = "postgresql://u:hunter2@db/x"\n')
    )
    result = run("reconcile")
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "state_url" in line and "SYNCCTL_STATE_URL" in line and "hunter2" not in line
