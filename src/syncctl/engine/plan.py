"""The planner: observed state in, the list of missing actions out.

A pure function of the `Snapshot` and the settings (no I/O, no clock), so
every rule of design/desired-state.md is testable on plain data, and a dry
run shows exactly what a real run would do. Rule numbers below refer to that
file.
"""

from __future__ import annotations

from collections.abc import Iterable

from syncctl.config import Settings
from syncctl.engine.model import Action, Plan, Snapshot
from syncctl.engine.plan_contacts import ContactRules
from syncctl.engine.plan_keys import (
    DNC_NOTE,
    NEW,
    ORPHAN_MARGIN,
    ORPHAN_SUBJECT,
    channel_id,
    invite_email_id,
    mail_key,
    split_name,
)
from syncctl.engine.plan_purchases import PurchaseRules

__all__ = [
    "DNC_NOTE",
    "NEW",
    "ORPHAN_MARGIN",
    "ORPHAN_SUBJECT",
    "channel_id",
    "invite_email_id",
    "mail_key",
    "plan",
    "split_name",
]


class _Planner(PurchaseRules, ContactRules):
    """Every rule, over one snapshot: purchases first, then contacts."""


def plan(snapshot: Snapshot, settings: Settings) -> Plan:
    """The actions that bring the systems to the desired state, in a stable order."""
    planner = _Planner(snapshot, settings)
    planner.purchases()
    planner.refunds()
    planner.promotion_wait()
    planner.contacts()
    planner.unblock()
    planner.orphans()
    return Plan(
        actions=tuple(_ordered(planner.actions.values())),
        notes=tuple(planner.notes),
        held_sessions=frozenset(planner.held_sessions),
        held_contacts=frozenset(planner.held_contacts),
        blocked=planner.s.promotion_problem if planner.waiting_on_promotion else "",
    )


def _ordered(actions: Iterable[Action]) -> list[Action]:
    """The order the rules produced them (purchases, then contacts, each oldest
    first; a person's actions together), with any dependency moved before
    what needs it."""
    by_key = {a.key: a for a in actions}
    placed: set[str] = set()
    ordered: list[Action] = []

    def place(action: Action, path: frozenset[str]) -> None:
        if action.key in placed or action.key in path:  # a cycle cannot happen by construction
            return
        for dep in action.depends_on:
            if dep in by_key:
                place(by_key[dep], path | {action.key})
        placed.add(action.key)
        ordered.append(action)

    for action in by_key.values():
        place(action, frozenset())
    return ordered
