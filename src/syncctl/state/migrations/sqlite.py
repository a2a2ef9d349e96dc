"""The SQLite schema, as migrations: MIGRATIONS[n] takes a file from version n to n + 1."""

from __future__ import annotations

MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE runs (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at  TEXT NOT NULL,
        finished_at TEXT,
        mode        TEXT NOT NULL,
        dry_run     INTEGER NOT NULL,
        outcome     TEXT,
        summary     TEXT NOT NULL DEFAULT '{}'
    );
    -- One row per attempt at an action; history is never rewritten.
    CREATE TABLE entries (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id      INTEGER REFERENCES runs (id),
        key         TEXT NOT NULL,
        kind        TEXT NOT NULL,
        subject     TEXT NOT NULL,
        subject_ci  TEXT NOT NULL,
        state       TEXT NOT NULL,
        ref         TEXT,
        detail      TEXT NOT NULL DEFAULT '{}',
        error       TEXT,
        started_at  TEXT NOT NULL,
        finished_at TEXT
    );
    CREATE INDEX entries_key ON entries (key, id);
    CREATE INDEX entries_subject ON entries (subject_ci, id);
    CREATE INDEX entries_started ON entries (started_at);
    CREATE INDEX entries_failed ON entries (id) WHERE state = 'failed';
    -- The latest entry per key, kept in the same transaction as `entries`, so
    -- "what is the state of key K" never scans the history.
    CREATE TABLE current (
        key      TEXT PRIMARY KEY,
        entry_id INTEGER NOT NULL REFERENCES entries (id),
        state    TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX current_unresolved ON current (state) WHERE state IN ('in_flight', 'minted');
    CREATE INDEX current_state_key ON current (state, key);
    CREATE TABLE cursors (
        name       TEXT PRIMARY KEY,
        value      TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE pending (
        kind       TEXT NOT NULL,
        ref        TEXT NOT NULL,
        reason     TEXT NOT NULL,
        attempts   INTEGER NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen  TEXT NOT NULL,
        PRIMARY KEY (kind, ref)
    );
    """,
    # 1 -> 2: operator holds (desired-state rule 18). One row per held subject
    # (a lower-cased email or a Checkout Session id as Stripe spells it); the
    # trail of holding and releasing lives in `entries` (kinds hold/release).
    """
    CREATE TABLE holds (
        subject    TEXT PRIMARY KEY,
        kind       TEXT NOT NULL CHECK (kind IN ('email', 'session')),
        reason     TEXT NOT NULL DEFAULT '',
        held_by    TEXT NOT NULL DEFAULT '',
        held_at    TEXT NOT NULL,
        held_since TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
]
