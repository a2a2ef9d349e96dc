"""`syncctl history`: the journal's record of every attempt, filtered.

Reads the journal read-only (a missing journal reads as empty), so it is
safe to run while a reconcile is in progress and never changes anything.

Holding and releasing (`syncctl hold` / `release`, rule 18) are journal
entries too (actions `hold` and `release`, outside any run), with who did
it and the reason. A purchase's hold is recorded under its session id;
`--email` adds the hold events of the purchases the journal knows as that
person's (those a run processed: a purchase held before any run saw it
shows under its session id only, and in `syncctl status EMAIL`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from syncctl.config import Config
from syncctl.engine.model import normalize_email
from syncctl.engine.sends import WAIVED
from syncctl.errors import UsageError
from syncctl.state.journal import HOLD_EVENT, RELEASE_EVENT, Entry, Journal

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
    subject = normalize_email(email) if email else None
    with Journal.open(config.state, readonly=True) as journal:
        entries = journal.history(subject=subject, since=since, failed_only=failed, limit=limit)
        if subject is None or failed:
            return entries  # hold events never fail
        purchases = sessions_in(journal.history(subject=subject))
        trail = [e for e in journal.hold_trail(purchases) if since is None or e.started_at >= since]
    if not trail:
        return entries
    merged = sorted({e.id: e for e in [*entries, *trail]}.values(), key=lambda e: -e.id)
    return merged[:limit] if limit else merged


def sessions_in(entries: list[Entry]) -> set[str]:
    """The Checkout Sessions these journal entries are about (coupon keys, details)."""
    found = {e.key.removeprefix("coupon:") for e in entries if e.key.startswith("coupon:")}
    return found | {str(e.detail["session_id"]) for e in entries if "session_id" in e.detail}


def is_hold_event(e: Entry) -> bool:
    """An operator holding or releasing something (not a run's action)."""
    return e.kind in (HOLD_EVENT, RELEASE_EVENT) and e.run_id is None


def hold_note(e: Entry) -> str:
    """`by alice: chargeback dispute` for a hold event; "" for any other entry."""
    if not is_hold_event(e):
        return ""
    by = str(e.detail.get("by") or "unknown")
    reason = str(e.detail.get("reason") or "")
    return f"by {by}: {reason}" if reason else f"by {by}"


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
        # Holding and releasing: the operator (OS user) and the reason given.
        "by": e.detail.get("by") if is_hold_event(e) else None,
        "reason": e.detail.get("reason") if is_hold_event(e) else None,
    }


def history_json(entries: list[Entry], **filters: Any) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "filters": {k: v for k, v in filters.items() if v not in (None, False)},
        "entries": [entry_dict(e) for e in entries],
    }
