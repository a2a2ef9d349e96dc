"""Rule 24: bursts drain; mistakes stop.

`max_actions` caps what one run does: a launch-day burst is applied in the
plan's order (purchases first, oldest first; then contacts, oldest first)
up to the cap, and the rest waits for the next runs, which find it again.
What is refused whole is a plan that looks like a configuration mistake
rather than work: new links and invite emails for people who had them
already, or revoking many live invites at once (a changed field alias makes
every contact look un-invited, and every live invite look like an orphan).
Both are pure functions of the plan, so a dry run shows the same verdict.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from syncctl.config import RunSettings
from syncctl.engine.model import Action, ActionKind, Plan

#: The flag that lets a plan through the mistake guard.
ALLOW_FLAG = "--allow-mass-change"


def cap(plan: Plan, limit: int) -> tuple[Plan, tuple[Action, ...]]:
    """The first `limit` actions of the plan, and the ones left for later runs.

    An action is taken only with everything it depends on, so the part left
    over is what a later run plans again (a stored link not emailed yet is
    planned as its email).
    """
    taken: list[Action] = []
    chosen: set[str] = set()
    planned = {a.key for a in plan.actions}
    deferred: list[Action] = []
    for action in plan.actions:
        ready = all(d in chosen or d not in planned for d in action.depends_on)
        if ready and len(taken) < limit:
            taken.append(action)
            chosen.add(action.key)
        else:
            deferred.append(action)
    return replace(plan, actions=tuple(taken)), tuple(deferred)


@dataclass(frozen=True)
class Alarm:
    """One sign that a plan is a mistake, as the operator reads it."""

    cause: str
    count: int
    limit: int

    def __str__(self) -> str:
        return f"{self.cause}: {self.count} (more than {self.limit})"


def alarms(
    plan: Plan,
    *,
    emailed: Iterable[tuple[int, int]],
    contacts: int,
    settings: RunSettings,
) -> list[Alarm]:
    """Why this plan looks like a configuration mistake (empty: it does not).

    `emailed`: (email id, contact id) pairs known to have been sent before
    (the journal, or Mautic's send log on a full run); `contacts`: how many
    contacts the campaign has, as the last full read counted them.
    """
    before = set(emailed)
    resends = {
        (a.params["email_id"], a.params["contact_id"])
        for a in plan.actions
        if a.kind is ActionKind.MAIL
        and a.params.get("purpose") == "invite"
        and (a.params["email_id"], a.params["contact_id"]) in before
    }
    revokes = sum(1 for a in plan.actions if a.kind is ActionKind.REVOKE)
    found: list[Alarm] = []
    resend_limit = _limit(settings.max_resend_share, contacts, settings.mass_change_floor)
    if len(resends) > resend_limit:
        found.append(
            Alarm(
                "new invite emails for contacts who were sent one before (did a "
                "[mautic.fields] alias change?)",
                len(resends),
                resend_limit,
            )
        )
    revoke_limit = _limit(settings.max_revoke_share, contacts, settings.mass_change_floor)
    if revokes > revoke_limit:
        found.append(
            Alarm(
                "live invites to revoke (did a [mautic.fields] alias or a channel id change?)",
                revokes,
                revoke_limit,
            )
        )
    return found


def refusal(found: list[Alarm]) -> str:
    """One line: every cause, and how to allow the plan."""
    causes = "; ".join(map(str, found))
    return (
        f"refused: the plan looks like a configuration mistake ({causes}); nothing was applied. "
        f"Check it with --dry-run, fix the config, or allow it once with {ALLOW_FLAG}"
    )


def _limit(share: float, contacts: int, floor: int) -> int:
    return max(floor, int(share * contacts))
