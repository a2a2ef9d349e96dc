"""Showing plans and outcomes to people: rich tables, plain under cron.

Rendering only reads results (`Plan`, `RunResult`, a doctor report, a
person's status, journal entries); nothing here decides anything.

Two styles: on a terminal, rich tables and a progress display; otherwise
(cron, systemd, a pipe, `NO_COLOR`, `TERM=dumb`) plain lines, one fact each,
that the CLI sends through the log handler so `-q` silences them and
`--log-format json` turns them into JSON records.
"""

from __future__ import annotations

import logging
import os
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from syncctl.commands.history import outcome as history_outcome
from syncctl.engine.apply import Outcome, Status
from syncctl.engine.model import Action, Plan
from syncctl.engine.reconcile import RunResult

if TYPE_CHECKING:
    from syncctl.commands.doctor import DoctorReport
    from syncctl.commands.status import PersonStatus
    from syncctl.state.journal import Entry

#: (log level, text): a plain report line and how loud it is.
Line = tuple[int, str]
INFO = logging.INFO
WARNING = logging.WARNING


def use_rich(console: Console) -> bool:
    """Rich tables and progress only on a real terminal that may show them."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return console.is_terminal


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


def run_label(result: RunResult) -> str:
    """ "full run (first run)", "incremental run (dry run: nothing was changed)"."""
    mode, _, aside = result.mode.partition(" (")
    label = f"{mode} run" + (f" ({aside}" if aside else "")
    return label + (" (dry run: nothing was changed)" if result.dry_run else "")


def empty_plan_line(result: RunResult) -> str:
    """An empty plan is "in sync" only when every service could be read."""
    if result.observe_errors:
        unread = ", ".join(sorted(result.observe_errors))
        return f"Nothing planned, but not verified: {unread} could not be read (next run retries)."
    return "In sync: nothing to do."


def over_limit_line(result: RunResult) -> str | None:
    """A dry run warns of the refusal the real run would meet."""
    if result.dry_run and result.max_actions and len(result.plan) > result.max_actions:
        return (
            f"a real run would refuse: {len(result.plan)} actions exceed "
            f"max_actions={result.max_actions} (pass --max-actions N to allow them)"
        )
    return None


def show_result(console: Console, result: RunResult) -> None:
    """The human report of a run, for stderr or a terminal."""
    console.print(run_label(result), markup=False)
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
        console.print(empty_plan_line(result), markup=False)
    elif result.dry_run or result.refused:
        console.print(plan_table(result.plan))
    if over := over_limit_line(result):
        console.print(over, markup=False)
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


# -- plain lines (cron, systemd, pipes) ---------------------------------------------


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def plan_lines(plan: Plan, *, title: str = "Planned changes") -> list[str]:
    """The plan as one line per action, grouped by system like `plan_table`."""
    counts = plan.counts()
    summary = ", ".join(f"{s} {counts[s]}" for s in SYSTEM_ORDER if s in counts)
    lines = [f"{title} ({len(plan)})" + (f": {summary}" if summary else "")]
    for action in sorted(plan.actions, key=lambda a: SYSTEM_ORDER.index(a.system)):
        label = LABELS.get(str(action.kind), str(action.kind))
        change = _change(action)
        lines.append(
            f"  {action.system} {label} {action.subject}"
            + (f": {change}" if change else "")
            + f" ({action.reason})"
        )
    return lines


def outcome_counts(outcomes: list[Outcome]) -> dict[str, dict[str, int]]:
    """{system: {status: n}} in the display order, only non-zero counts."""
    per: dict[str, Counter[str]] = defaultdict(Counter)
    for outcome in outcomes:
        per[outcome.action.system][str(outcome.status)] += 1
    return {
        system: {str(s): per[system][str(s)] for s in Status if per[system][str(s)]}
        for system in sorted(per, key=lambda s: SYSTEM_ORDER.index(s))
    }


def outcome_line(outcomes: list[Outcome]) -> str:
    """`Outcome: shopware done 3; mautic done 5, failed 1`."""
    parts = [
        f"{system} " + ", ".join(f"{status} {n}" for status, n in counts.items())
        for system, counts in outcome_counts(outcomes).items()
    ]
    return "Outcome: " + ("; ".join(parts) if parts else "nothing applied")


def result_lines(result: RunResult, *, outcomes_logged: bool = False) -> list[Line]:
    """The run's report as plain lines; what needs attention is a warning.

    `outcomes_logged`: each outcome already had its own log line, so the
    actions that were not done are not listed again.
    """
    lines: list[Line] = []
    lines.append((INFO, run_label(result)))
    for service, error in sorted(result.observe_errors.items()):
        lines.append((WARNING, f"could not read {service}: {error}"))
    for r in result.recovered:
        level = WARNING if r.result == "unresolved" else INFO
        lines.append((level, f"recovered {r.key}: {r.result} ({r.detail})"))
    if result.unresolved_before:
        lines.append(
            (
                INFO,
                f"note: {result.unresolved_before} write(s) of an interrupted run are resolved "
                "first by the next real run",
            )
        )
    if result.plan.is_empty:
        lines.append((WARNING if result.observe_errors else INFO, empty_plan_line(result)))
    elif result.dry_run or result.refused:
        lines += [(INFO, line) for line in plan_lines(result.plan)]
    if over := over_limit_line(result):
        lines.append((WARNING, over))
    if result.refused:
        lines.append(
            (
                WARNING,
                f"refused: {len(result.plan)} actions exceed max_actions={result.max_actions}; "
                "check the plan, then rerun with --max-actions N",
            )
        )
    for note in result.plan.notes:
        lines.append((INFO, f"note: {note.subject}: {note.message}"))
    if result.outcomes:
        level = WARNING if result.failed or result.held else INFO
        lines.append((level, outcome_line(result.outcomes)))
        if not outcomes_logged:
            for o in result.outcomes:
                if o.status is not Status.DONE:
                    level = WARNING if o.status is Status.FAILED or o.refused else INFO
                    lines.append((level, f"  {o.status} {o.key} {o.action.subject}: {o.message}"))
    lines.append((INFO, calls_line(result)))
    return lines


def summary_fields(result: RunResult) -> dict[str, Any]:
    """The end-of-run summary as structured fields (for a JSON log record)."""
    return {
        "mode": result.mode,
        "dry_run": result.dry_run,
        "planned": len(result.plan),
        "planned_per_system": result.plan.counts(),
        "outcomes": outcome_counts(result.outcomes),
        "refused": result.refused or None,
        "service_errors": dict(result.observe_errors) or None,
        "api_calls": {
            name: {"reads": s.reads, "writes": s.writes, "throttled": s.throttled}
            for name, s in sorted(result.stats.services.items())
        },
        "duration_seconds": round(result.duration, 3),
    }


def action_fields(action: Action) -> dict[str, Any]:
    """One planned action as structured fields."""
    return {
        "key": action.key,
        "system": action.system,
        "kind": str(action.kind),
        "who": action.subject,
        "change": _change(action),
        "why": action.reason,
    }


# -- progress on a terminal ----------------------------------------------------------


class RunProgress:
    """A spinner naming the observe phase, then a count of applied actions.

    Use as a context manager; `phase` and `outcome` are the callbacks
    `reconcile` takes (`progress`, `on_outcome`). Disabled (for plain
    output) it forwards phases to `fallback` and shows nothing.
    """

    def __init__(
        self,
        console: Console,
        *,
        enabled: bool,
        fallback: Callable[[str], None] | None = None,
    ) -> None:
        self.console = console
        self.enabled = enabled
        self.fallback = fallback
        self._progress: Progress | None = None
        self._task: Any = None
        self._done = 0
        self._failed = 0

    def __enter__(self) -> RunProgress:
        if self.enabled:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("starting", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def phase(self, message: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=f"{message}...")
        elif self.fallback is not None:
            self.fallback(message)

    def outcome(self, outcome: Outcome) -> None:
        self._done += 1
        if outcome.status is Status.FAILED:
            self._failed += 1
        if self._progress is not None:
            failed = f", {self._failed} failed" if self._failed else ""
            self._progress.update(
                self._task, description=f"applying: {self._done} actions finished{failed}"
            )


# -- doctor -------------------------------------------------------------------------

_STATUS_STYLE = {"ok": "green", "FAIL": "bold red", "skip": "yellow"}


def doctor_lines(report: DoctorReport) -> list[Line]:
    """One line per check: status, name, what was found, and the fix."""
    lines: list[Line] = []
    for c in report.checks:
        text = f"{c.status:<4} {c.name}: {c.detail}" + (f" -> fix: {c.fix}" if c.fix else "")
        lines.append((INFO if c.ok or c.skipped else WARNING, text))
    lines.append((INFO if report.ok else WARNING, doctor_summary(report)))
    return lines


def doctor_summary(report: DoctorReport) -> str:
    failed = len(report.failed)
    calls = sum(s.calls for s in report.stats.services.values())
    writes = sum(s.writes for s in report.stats.services.values())
    verdict = "all checks passed" if not failed else f"{failed} check(s) failed"
    return f"doctor: {verdict} ({calls} API calls, {writes} writes; {report.duration:.1f}s)"


def doctor_table(report: DoctorReport) -> Table:
    table = Table(title="syncctl doctor", title_justify="left")
    table.add_column("", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("found", overflow="fold")
    table.add_column("fix", overflow="fold")
    for c in report.checks:
        style = _STATUS_STYLE[c.status]
        table.add_row(f"[{style}]{c.status}[/{style}]", c.name, c.detail, c.fix)
    table.caption = doctor_summary(report)
    return table


# -- history ------------------------------------------------------------------------


def history_table(entries: list[Entry], *, title: str = "Journal") -> Table:
    table = Table(title=f"{title} ({len(entries)})", title_justify="left")
    table.add_column("when (UTC)", no_wrap=True)
    table.add_column("action")
    table.add_column("who")
    table.add_column("outcome")
    table.add_column("reference", overflow="fold")
    table.add_column("error", overflow="fold")
    for e in entries:
        state = history_outcome(e)
        style = {"failed": "red", "in_flight": "yellow", "minted": "yellow"}.get(state)
        outcome = f"[{style}]{state}[/{style}]" if style else state
        table.add_row(
            _when(e.started_at),
            LABELS.get(e.kind, e.kind),
            e.subject,
            outcome,
            e.ref or "",
            e.error or "",
        )
    return table


def history_lines(entries: list[Entry]) -> list[str]:
    """One line per attempt: when, action, who, outcome, reference, error."""
    lines = []
    for e in entries:
        line = f"{_when(e.started_at)} {e.kind} {e.subject} {history_outcome(e)}"
        if e.ref:
            line += f" ref={e.ref}"
        line += f" key={e.key}"
        if e.error:
            line += f" error={e.error}"
        lines.append(line)
    return lines


# -- status -------------------------------------------------------------------------


def status_lines(status: PersonStatus) -> list[str]:
    """A person across the systems, section by section, one fact per line."""
    out = [f"status of {status.email}"]

    def section(name: str, service: str | None, rows: list[str], empty: str) -> None:
        """A section's rows; what was not read is said so, never shown as absent."""
        out.append(f"{name}:")
        if service and service in status.errors:
            out.append(f"  could not be read: {status.errors[service]}")
            return
        out.extend(f"  {row}" for row in rows)
        if service and service in status.unchecked:
            out.append(f"  could not be read: {status.unchecked[service]}")
        elif not rows:
            out.append(f"  {empty}")

    section(
        "Mautic",
        "mautic",
        [
            f"contact {c.id} {c.email}: opt-in {_yes(c.opt_in)}, vip {_yes(c.vip)}, "
            f"promo_code {c.promo_code or '(empty)'}, vip link {c.link_vip or '(empty)'}, "
            f"basic link {c.link_basic or '(empty)'}"
            for c in status.contacts
        ],
        "no contact with this email",
    )
    section(
        "Stripe",
        "stripe",
        [
            f"{p.session_id} {datetime.fromtimestamp(p.created, UTC):%Y-%m-%d %H:%M}: "
            f"{'VIP' if p.vip else 'not VIP'}, {'paid' if p.paid else 'not paid'}"
            + (f", code {p.code}" if p.is_vip_purchase else "")
            for p in status.purchases
        ],
        "no completed checkout with this email",
    )
    section(
        "Shopware",
        "shopware",
        [
            f"{c.code}: {c.state}"
            + (f" (purchase {c.session_id})" if c.session_id else " (stored in Mautic)")
            for c in status.codes
        ],
        "no coupon code expected",
    )
    section(
        "Discord",
        "discord",
        [f"{i.tier} invite {i.code or i.link}: {i.state}" for i in status.invites],
        "no invite link stored",
    )
    section(
        "EspoCRM",
        "espocrm",
        [
            f"lead {lead.id} {lead.name}: status {lead.status or '-'}, "
            f"source {lead.source or '-'}, created {_when(lead.created_at) or '-'}"
            for lead in status.leads
        ],
        "no lead with this email",
    )
    section("Journal", None, history_lines(status.history), "no recorded action")
    if status.pending:
        section(
            "Pending retries",
            None,
            [f"{p.kind} {p.ref}: {p.reason} ({p.attempts} attempts)" for p in status.pending],
            "",
        )
    if status.plan is not None:
        rows = [line.strip() for line in plan_lines(status.plan, title="actions")[1:]]
        rows += [f"note: {n.message}" for n in status.plan.notes if n.subject == status.email]
        section("Next run", None, rows, "nothing to do: in sync")
    out += [f"note: {note}" for note in status.notes]
    return out


def show_status(console: Console, status: PersonStatus) -> None:
    """The rich rendering of `status_lines` (sections as small tables)."""
    console.rule(f"status of {status.email}")
    for line in status_lines(status)[1:]:
        if not line.startswith(" ") and line.endswith(":"):
            console.print(f"[bold]{line}[/bold]", highlight=False)
        else:
            console.print(line, markup=False, highlight=False)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
