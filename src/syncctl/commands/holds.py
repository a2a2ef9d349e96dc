"""`syncctl hold`, `release` and `holds`: an operator's holds (desired-state rule 18).

Why they exist: a backer disputes a charge, asks to be left alone, or a
purchase looks like fraud; the operator needs every run to leave that person
(or that one purchase) alone until someone decides, without switching the
timer off for everybody. A hold is a row in the journal that the planner
reads when it plans; the plan lists the subject as held.

What these commands do and do not do:

- They make no service call and need no secret: holding is local state.
  Nothing already done is undone (no code deleted, no invite revoked, no
  email recalled); releasing replays nothing by itself either: the next run
  plans for the subject again, from what the services hold then.
- They never take the run lock, so a hold is not refused (exit 3) or kept
  waiting while a reconcile runs: it is one short SQLite transaction (WAL,
  with the journal's busy timeout), committed before the command returns.
  A run reads the holds when it plans: a run that planned before the hold
  finishes what it planned; every plan made after the commit leaves the
  subject alone. `hold` says so when it sees a run in progress.
- A hold is either a person (an email, compared case-insensitively) or one
  purchase (a Stripe Checkout Session id, `cs_...`). The journal is the
  only store of these holds: a lost state dir loses them (the Mautic tag
  `[mautic] hold_tag` is the hold that survives that, read by the runs).
"""

from __future__ import annotations

import getpass
import os
import re
from dataclasses import dataclass
from typing import Any

from syncctl.config import Config
from syncctl.engine.model import is_valid_email, normalize_email
from syncctl.errors import SyncctlError, UsageError
from syncctl.state.journal import Hold, Holder, HoldKind, Journal

FORMAT_VERSION = 1
#: A Stripe Checkout Session id: `cs_`, then Stripe's id characters
#: (`cs_test_a1B2...`, `cs_live_...`). Ids are case-sensitive.
SESSION_ID = re.compile(r"^cs_[A-Za-z0-9_]{1,250}$")


def parse_subject(text: str) -> tuple[str, HoldKind]:
    """The subject to hold and its kind, or a UsageError naming what is wrong.

    Anything with an `@` is taken for an email (so a mistyped address is
    reported as one), and must be a single valid address.
    """
    value = text.strip()
    if "@" in value:
        if not is_valid_email(value):
            raise UsageError(f"{text!r} is not an email address", hint="check the spelling")
        return normalize_email(value) or value, HoldKind.EMAIL
    if SESSION_ID.match(value):
        return value, HoldKind.SESSION
    raise UsageError(
        f"{text!r} is neither an email address nor a Stripe Checkout Session id (cs_...)",
        hint="hold a person by their email, or one purchase by its session id",
    )


def clean_reason(text: str) -> str:
    """One line of printable text: a reason is shown in single-line outputs and logs."""
    printable = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(printable.split())


def operator() -> str:
    """Who is setting or lifting a hold: the OS user, best effort.

    Under sudo the account behind it is the one that matters, so it is named.
    """
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no USER/LOGNAME and no passwd entry (a bare container)
        user = ""
    sudo = os.environ.get("SUDO_USER", "")
    if sudo and sudo != user:
        return f"{sudo} (via sudo)"
    return user or f"uid {os.getuid()}"


@dataclass(frozen=True)
class HoldOutcome:
    """What `syncctl hold` did, and the run (if any) that was in progress."""

    hold: Hold
    run: Holder | None


def set_hold(config: Config, text: str, reason: str | None) -> HoldOutcome:
    """Hold a person or a purchase; validated before the journal is touched."""
    subject, kind = parse_subject(text)
    with Journal.open(config.state) as journal:
        hold = journal.hold(
            subject, kind, None if reason is None else clean_reason(reason), by=operator()
        )
        return HoldOutcome(hold, journal.lock_holder())


def release_hold(config: Config, text: str) -> Hold:
    """Lift a hold; a SyncctlError (exit 1) when the subject is not held.

    Exit 1 rather than 0: releasing what is not held is most often a typo,
    or the purchase held where the person was released (or the reverse),
    and a quiet success would leave the real hold in place unnoticed.
    """
    subject, _ = parse_subject(text)
    lifted = None
    if Journal.exists(config.state):  # no journal, no hold: create nothing
        with Journal.open(config.state) as journal:
            lifted = journal.release(subject, by=operator())
    if lifted is None:
        raise SyncctlError(
            f"{subject} is not held: nothing to release",
            hint="`syncctl holds` lists the holds; a Mautic hold_tag is removed in Mautic",
        )
    return lifted


def list_holds(config: Config) -> list[Hold]:
    """Every hold set with `syncctl hold`, from a read-only view (safe during a run)."""
    with Journal.open(config.state, readonly=True) as journal:
        return journal.holds()


def kind_word(hold: Hold) -> str:
    """What the operator held: a person or a purchase."""
    return "person" if hold.kind is HoldKind.EMAIL else "purchase"


def what(hold: Hold) -> str:
    """`ada@example.com (person)` or `cs_... (purchase)`."""
    return f"{hold.subject} ({kind_word(hold)})"


def _when(hold: Hold) -> str:
    return f"{hold.at:%Y-%m-%d %H:%M} UTC"


def hold_lines(outcome: HoldOutcome) -> list[str]:
    """What `syncctl hold` tells the operator: the hold, and the run in progress."""
    hold, previous = outcome.hold, outcome.hold.previous
    reason = f"reason: {hold.reason}" if hold.reason else "no reason given"
    if previous is None:
        lines = [
            f"held {what(hold)}: no run does anything for it until "
            f"`syncctl release {hold.subject}` ({reason})"
        ]
    elif hold.reason_changed:
        was = previous.reason or "(none)"
        lines = [
            f"{what(hold)} was held already (since {previous.since:%Y-%m-%d %H:%M} UTC); "
            f"reason updated: {hold.reason or '(none)'} (was: {was})"
        ]
    else:
        lines = [
            f"{what(hold)} is held already, since {hold.since:%Y-%m-%d %H:%M} UTC "
            f"by {hold.by or 'unknown'} ({reason}): nothing changed"
        ]
    if outcome.run is not None:
        lines.append(
            f"note: a run is in progress ({outcome.run.describe()}): if it planned before "
            "this hold, it finishes what it planned; every later run leaves "
            f"{hold.subject} alone"
        )
    return lines


def release_line(hold: Hold) -> str:
    reason = f", reason: {hold.reason}" if hold.reason else ""
    return (
        f"released {hold.subject} ({kind_word(hold)} held since {hold.since:%Y-%m-%d %H:%M} UTC "
        f"by {hold.by or 'unknown'}{reason}): the next run acts for it again"
    )


def hold_dict(hold: Hold) -> dict[str, Any]:
    """One hold as JSON (`holds --json`, `status --json`)."""
    return {
        "subject": hold.subject,
        "kind": str(hold.kind),
        "reason": hold.reason,
        "by": hold.by,
        "at": hold.at.isoformat(),
        "since": hold.since.isoformat(),
    }


def holds_json(holds: list[Hold]) -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "holds": [hold_dict(h) for h in holds]}


def holds_lines(holds: list[Hold]) -> list[str]:
    """One line a hold: since when, kind, subject, who, reason."""
    lines = []
    for h in holds:
        line = f"{h.since:%Y-%m-%d %H:%M:%S} {h.kind} {h.subject} by={h.by or 'unknown'}"
        if h.at != h.since:
            line += f" updated={h.at:%Y-%m-%d %H:%M:%S}"
        if h.reason:
            line += f" reason={h.reason}"
        lines.append(line)
    return lines


def hold_summary(hold: Hold) -> str:
    """One line for `status`: what is held, why, by whom, since when."""
    reason = f": {hold.reason}" if hold.reason else ""
    changed = f" (reason set {_when(hold)})" if hold.at != hold.since else ""
    return (
        f"{what(hold)} held since {hold.since:%Y-%m-%d %H:%M} UTC by "
        f"{hold.by or 'unknown'}{changed}{reason}"
    )
