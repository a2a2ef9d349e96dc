"""`syncctl history`: the journal's record of every attempt, filtered.

Reads the journal read-only (a missing journal reads as empty), so it is
safe to run while a reconcile is in progress and never changes anything.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from syncctl.config import Config
from syncctl.engine.model import normalize_email
from syncctl.engine.sends import WAIVED
from syncctl.errors import UsageError
from syncctl.state.journal import Entry, Journal

FORMAT_VERSION = 1
_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`7d`, `12h`, `30m`, `2w` ago, or an ISO date/time (UTC unless it has an offset)."""
    value = text.strip()
    match = _RELATIVE.match(value.lower())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--since {text!r} is neither a date nor a duration",
            hint="use e.g. 2024-05-01, 2024-05-01T08:00, 12h or 7d",
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def read_history(
    config: Config,
    *,
    email: str | None = None,
    since: datetime | None = None,
    failed: bool = False,
    limit: int | None = None,
) -> list[Entry]:
    """Journal entries, newest first, from a read-only view of the journal."""
    with Journal.open(config.settings.run.state_path, readonly=True) as journal:
        return journal.history(
            subject=normalize_email(email) if email else None,
            since=since,
            failed_only=failed,
            limit=limit,
        )


def outcome(e: Entry) -> str:
    """The entry's state, or "observed" (found done in the services, not done by us)
    or "waived" (an email not to send)."""
    if e.detail.get("observed"):
        return "observed"
    if e.ref == WAIVED:
        return "waived"  # reissue-invite --no-email: not sent, on purpose
    if not e.state.terminal and e.error:
        return "unknown"  # its answer was lost; the next run settles it
    return str(e.state)


def entry_dict(e: Entry) -> dict[str, Any]:
    """One attempt as JSON: when, action, who, outcome, external reference, error."""
    return {
        "id": e.id,
        "run_id": e.run_id,
        "when": e.started_at.isoformat(),
        "finished_at": e.finished_at.isoformat() if e.finished_at else None,
        "key": e.key,
        "action": e.kind,
        "who": e.subject,
        "outcome": outcome(e),
        "ref": e.ref,
        "error": e.error,
    }


def history_json(entries: list[Entry], **filters: Any) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "filters": {k: v for k, v in filters.items() if v not in (None, False)},
        "entries": [entry_dict(e) for e in entries],
    }
