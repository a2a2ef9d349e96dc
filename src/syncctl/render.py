"""Showing plans and outcomes to people: rich tables, plain under cron.

Rendering only reads `Plan`/`RunResult`; nothing here decides anything.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from rich.console import Console
from rich.table import Table

from syncctl.apply import Outcome, Status
from syncctl.model import Action, Plan
from syncctl.reconcile import RunResult

SYSTEM_ORDER = ("shopware", "mautic", "discord", "espocrm", "stripe")
LABELS = {
    "create_coupon": "create coupon",
    "create_contact": "create contact",
    "update_contact": "update contact",
    "clear_link": "clear link field",
    "revoke_invite": "revoke invite",
    "issue_invite": "issue invite",
    "send_email": "send email",
    "create_lead": "create lead",
}


def _change(action: Action) -> str:
    keys = list(dict.fromkeys([*action.before, *action.after]))
    parts = []
    for key in keys:
        before = action.before.get(key)
        after = action.after.get(key)
        if key in action.before:
            parts.append(f"{key}: {_short(before)} -> {_short(after)}")
        else:
            parts.append(f"{key}: {_short(after)}")
    return "; ".join(parts)


def _short(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value in (None, ""):
        return "(empty)"
    return str(value)


def plan_table(plan: Plan, *, title: str = "Planned changes") -> Table:
    table = Table(title=f"{title} ({len(plan)})", title_justify="left", expand=False)
    table.add_column("system", style="bold")
    table.add_column("action")
    table.add_column("who")
    table.add_column("what changes", overflow="fold")
    table.add_column("why", overflow="fold")
    grouped: dict[str, list[Action]] = defaultdict(list)
    for action in plan.actions:
        grouped[action.system].append(action)
    for system in sorted(grouped, key=lambda s: SYSTEM_ORDER.index(s)):
        for i, action in enumerate(grouped[system]):
            table.add_row(
                system if i == 0 else "",
                LABELS.get(str(action.kind), str(action.kind)),
                action.subject,
                _change(action),
                action.reason,
                end_section=i == len(grouped[system]) - 1,
            )
    counts = plan.counts()
    table.caption = ", ".join(f"{s}: {counts[s]}" for s in SYSTEM_ORDER if s in counts) or None
    return table


def outcome_table(outcomes: list[Outcome]) -> Table:
    table = Table(title="Outcome", title_justify="left")
    table.add_column("system", style="bold")
    for status in Status:
        table.add_column(str(status), justify="right")
    per: dict[str, Counter[Status]] = defaultdict(Counter)
    for outcome in outcomes:
        per[outcome.action.system][outcome.status] += 1
    for system in sorted(per, key=lambda s: SYSTEM_ORDER.index(s)):
        table.add_row(system, *(str(per[system][status]) for status in Status))
    return table


def problems_table(outcomes: list[Outcome]) -> Table | None:
    rows = [o for o in outcomes if o.status is not Status.DONE]
    if not rows:
        return None
    table = Table(title="Not done", title_justify="left")
    table.add_column("status")
    table.add_column("action")
    table.add_column("who")
    table.add_column("reason", overflow="fold")
    for o in rows:
        table.add_row(str(o.status), o.key, o.action.subject, o.message)
    return table


def calls_line(result: RunResult) -> str:
    parts = [
        f"{name} {s.reads}r/{s.writes}w" + (f" ({s.throttled}x429)" if s.throttled else "")
        for name, s in sorted(result.stats.services.items())
    ]
    return (
        f"API calls: {result.stats.total_calls} ({', '.join(parts) or 'none'}); "
        f"{result.duration:.1f}s"
    )


def show_result(console: Console, result: RunResult) -> None:
    """The human report of a run, for stderr or a terminal."""
    mode = f"{result.mode} run" + (" (dry run: nothing was changed)" if result.dry_run else "")
    console.print(mode, markup=False)
    for service, error in sorted(result.observe_errors.items()):
        console.print(f"could not read {service}: {error}", markup=False)
    for r in result.recovered:
        console.print(f"recovered {r.key}: {r.result} ({r.detail})", markup=False)
    if result.unresolved_before:
        console.print(
            f"note: {result.unresolved_before} write(s) of an interrupted run are resolved "
            "first by the next real run",
            markup=False,
        )
    if result.plan.is_empty:
        console.print("In sync: nothing to do.", markup=False)
    elif result.dry_run or result.refused:
        console.print(plan_table(result.plan))
    if result.refused:
        console.print(
            f"refused: {len(result.plan)} actions exceed max_actions={result.max_actions}; "
            "check the plan, then rerun with --max-actions N",
            markup=False,
        )
    for note in result.plan.notes:
        console.print(f"note: {note.subject}: {note.message}", markup=False)
    if result.outcomes:
        console.print(outcome_table(result.outcomes))
        problems = problems_table(result.outcomes)
        if problems is not None:
            console.print(problems)
    console.print(calls_line(result), markup=False)
