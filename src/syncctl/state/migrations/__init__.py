"""Versioned schema migrations, one ordered list per backend.

`sqlite.MIGRATIONS[n]` and `postgres.MIGRATIONS[n]` both take a store from
schema version n to n + 1, and version n means the same tables and columns
on both, so a store of either kind can be copied into the other
(`syncctl state migrate`). Append only; never edit a released script. A
store made by an older syncctl is upgraded in place when it is opened for
writing; one made by a newer syncctl is refused with one line.
"""

from __future__ import annotations

from syncctl.state.migrations import postgres, sqlite

#: The schema version this syncctl writes (the same on every backend).
SCHEMA_VERSION = 2

assert len(sqlite.MIGRATIONS) == len(postgres.MIGRATIONS) == SCHEMA_VERSION
