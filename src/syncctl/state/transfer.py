"""`syncctl state migrate`: move the whole state into another store, verified.

SQLite to PostgreSQL (two hosts from now on), and back. Both stores are held
under their run locks for the copy, so no reconcile runs meanwhile (a busy
lock refuses the migration, exit 3). Every table is copied with its ids in
one transaction on the target, then counted and checksummed on both sides
inside that transaction (SHA-256 over the rows in key order, in the text
forms both backends store): a difference rolls the copy back. The target
must be empty; the source is kept as it was, with one row added saying
where the state went, so a host still pointed at it refuses to write there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from syncctl.errors import StateError
from syncctl.state.journal import Journal
from syncctl.state.store import Session

#: Each table, its columns, and the key the rows are ordered by, parents first.
TABLES: dict[str, tuple[tuple[str, ...], str]] = {
    "meta": (("name", "value"), "name"),
    "runs": (
        ("id", "started_at", "finished_at", "mode", "dry_run", "outcome", "summary"),
        "id",
    ),
    "entries": (
        (
            "id",
            "run_id",
            "key",
            "kind",
            "subject",
            "subject_ci",
            "state",
            "ref",
            "detail",
            "error",
            "started_at",
            "finished_at",
        ),
        "id",
    ),
    "current": (("key", "entry_id", "state"), "key"),
    "cursors": (("name", "value", "updated_at"), "name"),
    "pending": (("kind", "ref", "reason", "attempts", "first_seen", "last_seen"), "kind, ref"),
    "holds": (("subject", "kind", "reason", "held_by", "held_at", "held_since"), "subject"),
}
#: `meta` rows that describe one store, not the state: never copied or compared.
LOCAL_META = ("lock_holder", "moved_to")
_BATCH = 1000


@dataclass(frozen=True)
class TableCopy:
    table: str
    rows: int
    sha256: str


@dataclass
class Migration:
    source: str
    target: str
    tables: list[TableCopy] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": 1,
            "source": self.source,
            "target": self.target,
            "tables": [{"table": t.table, "rows": t.rows, "sha256": t.sha256} for t in self.tables],
            "rows": self.rows,
        }


def _select(table: str) -> str:
    columns, order = TABLES[table]
    where = (
        " WHERE name NOT IN (" + ", ".join(f"'{m}'" for m in LOCAL_META) + ")"
        if table == "meta"
        else ""
    )
    return f"SELECT {', '.join(columns)} FROM {table}{where} ORDER BY {order}"


def digest(session: Session, table: str) -> tuple[int, str]:
    """(rows, SHA-256) of a table's rows in key order, as the journal stores them."""
    sha = hashlib.sha256()
    count = 0
    for row in session.execute(_select(table)):
        sha.update(json.dumps(list(row), ensure_ascii=False, separators=(",", ":")).encode())
        sha.update(b"\n")
        count += 1
    return count, sha.hexdigest()


def _is_empty(session: Session) -> bool:
    for table in TABLES:
        sql = f"SELECT 1 FROM {table}"
        if table == "meta":
            sql += (
                " WHERE name NOT IN ('schema_version', "
                + ", ".join(f"'{m}'" for m in LOCAL_META)
                + ")"
            )
        if session.execute(sql + " LIMIT 1").fetchone() is not None:
            return False
    return True


def migrate(source: Journal, target: Journal) -> Migration:
    """Copy every row of `source` into the empty `target`, verified; both must be held
    under their run locks (`open_for_run`). Returns what was copied, per table."""
    if source.where == target.where:
        raise StateError(f"{source.where} is both the source and the target", hint="name another")
    report = Migration(source.where, target.where)
    if source.schema_version != target.schema_version:  # both are migrated when opened
        raise StateError("the two stores have different schema versions")
    with source._read() as src, target._write("copy the state") as dst:
        if not _is_empty(dst):
            raise StateError(
                f"{target.where} already holds a syncctl state; refusing to mix two histories",
                hint="migrate into an empty database or directory (or drop its tables first)",
            )
        dst.execute("DELETE FROM meta WHERE name = 'schema_version'")
        for table, (columns, _) in TABLES.items():
            insert = (
                f"INSERT INTO {table} ({', '.join(columns)})"
                f" VALUES ({', '.join('?' * len(columns))})"
            )
            rows = src.execute(_select(table)).fetchall()
            for start in range(0, len(rows), _BATCH):
                dst.executemany(insert, [tuple(r) for r in rows[start : start + _BATCH]])
        target.store.after_import(dst)
        for table in TABLES:
            theirs = digest(src, table)
            ours = digest(dst, table)
            if theirs != ours:
                raise StateError(
                    f"the copy of {table} differs ({ours[0]} rows, sha256 {ours[1][:12]}; "
                    f"the source has {theirs[0]}, {theirs[1][:12]}): nothing was kept",
                    hint="run it again; if it repeats, report it",
                )
            report.tables.append(TableCopy(table, theirs[0], theirs[1]))
    moved = json.dumps({"to": target.where, "at": datetime.now(UTC).isoformat()})
    with source._write("record where the state went") as conn:
        conn.execute(
            "INSERT INTO meta (name, value) VALUES ('moved_to', ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (moved,),
        )
    return report
