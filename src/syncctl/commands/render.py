"""Showing plans and outcomes to people: rich tables, plain under cron.

Rendering only reads results (`Plan`, `RunResult`, a doctor report, a
person's status, journal entries); nothing here decides anything.

Two styles: on a terminal, rich tables and a progress display (tables
laid out for the terminal's width: below `WIDE` columns they lose their
box and low-value columns, and no code, link or email is ever cut);
otherwise
(cron, systemd, a pipe, `NO_COLOR`, `TERM=dumb`) plain lines, one fact each,
that the CLI sends through the log handler so `-q` silences them and
`--log-format json` turns them into JSON records.
"""

from __future__ import annotations

import logging
import os
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from syncctl.commands.history import hold_note, is_hold_event
from syncctl.commands.history import outcome as history_outcome
from syncctl.commands.holds import hold_summary, kind_word
from syncctl.engine.apply import Outcome, Status
from syncctl.engine.model import Action, Plan
from syncctl.engine.reconcile import RunResult
from syncctl.engine.stop import NOT_STARTED

if TYPE_CHECKING:
    from syncctl.commands.doctor import DoctorReport
    from syncctl.commands.status import PersonStatus
    from syncctl.state.journal import Entry, Hold

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
    "move_lead": "move lead to the new email",
    "unblock_coupon": "make code usable at checkout",
    "delete_coupon": "remove refunded code",
    "refund": "refund or dispute seen",
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


# -- tables that fit the terminal ----------------------------------------------------

#: Below this many columns tables drop their boxes and low-value columns.
WIDE = 140


class Fitted:
    """A table built for the width it is printed at (rich asks when rendering).

    Codes, links and email addresses are single words that must stay whole
    to be copied: every column gets at least its longest word when the
    width allows it, and only prose columns wrap (at spaces).
    """

    def __init__(self, build: Callable[[int], Table]) -> None:
        self.build = build

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.build(options.max_width)


Cell = str | Text


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def _natural(texts: list[str]) -> int:
    return max((cell_len(line) for t in texts for line in t.splitlines() or [""]), default=0)


def _longest_word(texts: list[str]) -> int:
    return max((cell_len(w) for t in texts for w in t.split()), default=0)


def _fit_widths(available: int, cells: list[list[str]], shrink: list[int]) -> list[int]:
    """Column widths that fit `available`.

    Natural widths first; then the widest of the `shrink` columns is
    narrowed, a column at a time, never below its longest word (so text
    wraps at spaces and no word is cut); only when that is not enough is
    the first `shrink` column narrowed further (its words fold).
    """
    widths = [max(_natural(column), 1) for column in cells]
    floors = {i: min(widths[i], max(_longest_word(cells[i]), 1)) for i in shrink}
    excess = sum(widths) - available
    while excess > 0:
        slack = [i for i in shrink if widths[i] > floors[i]]
        if not slack:
            break
        widest = max(slack, key=lambda i: widths[i])
        others = [widths[i] for i in slack if i != widest]
        target = max(floors[widest], max(others, default=0), widths[widest] - excess)
        if target >= widths[widest]:  # ties: take one column off the widest
            target = widths[widest] - 1
        excess -= widths[widest] - target
        widths[widest] = target
    if excess > 0 and shrink:
        widths[shrink[0]] = max(1, widths[shrink[0]] - excess)
    return widths


def _table(
    width: int,
    title: str,
    headers: list[str],
    rows: list[list[Cell] | str],
    shrink: list[int],
    *,
    boxed: bool,
    styles: dict[int, str] | None = None,
) -> Table:
    """A table of `rows` (a str is a section row) whose columns fit `width`.

    boxed: the heavy box of wide terminals; else a header rule and no
    edges, for narrow ones.
    """
    n = len(headers)
    # Between two cells: padding, a rule (a space in the light style),
    # padding; a box adds a rule and padding at each edge.
    overhead = 3 * n + 1 if boxed else 3 * (n - 1)
    data = [r for r in rows if not isinstance(r, str)]
    cells = [[headers[i]] + [_plain(row[i]) for row in data] for i in range(n)]
    widths = _fit_widths(width - overhead, cells, shrink)
    if boxed:
        table = Table(title=title, title_justify="left")
    else:
        table = Table(
            title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False
        )
    for i, header in enumerate(headers):
        table.add_column(header, width=widths[i], overflow="fold", style=(styles or {}).get(i, ""))
    for row in rows:
        if isinstance(row, str):
            table.add_row(Text(row, style="bold"), *[""] * (n - 1))
        else:
            table.add_row(*(c if isinstance(c, Text) else Text(c) for c in row))
    return table


def plan_table(plan: Plan, *, title: str = "Planned changes") -> Fitted:
    """The plan grouped by system; narrow terminals get action, who, what changes."""
    grouped: dict[str, list[Action]] = defaultdict(list)
    for action in plan.actions:
        grouped[action.system].append(action)
    systems = sorted(grouped, key=lambda s: SYSTEM_ORDER.index(s))
    counts = plan.counts()
    caption = ", ".join(f"{s}: {counts[s]}" for s in SYSTEM_ORDER if s in counts) or None

    def label(action: Action) -> str:
        return LABELS.get(str(action.kind), str(action.kind))

    def build(width: int) -> Table:
        wide = width >= WIDE
        rows: list[list[Cell] | str] = []
        for system in systems:
            rows.append(f"{system} ({len(grouped[system])})")
            rows += [
                [label(a), a.subject, _change(a), *([a.reason] if wide else [])]
                for a in grouped[system]
            ]
        headers = ["action", "who", "what changes", *(["why"] if wide else [])]
        shrink = [3, 2, 0] if wide else [2, 0]
        table = _table(width, f"{title} ({len(plan)})", headers, rows, shrink, boxed=wide)
        table.caption = caption if wide else f"why each: --json, or {WIDE}+ columns"
        return table

    return Fitted(build)


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


def problems_table(outcomes: list[Outcome]) -> Fitted | None:
    """What was not done and why; narrow terminals stack the action over the person."""
    problems = [o for o in outcomes if o.status is not Status.DONE]
    if not problems:
        return None

    def build(width: int) -> Table:
        if width >= WIDE:
            rows: list[list[Cell] | str] = [
                [str(o.status), o.key, o.action.subject, o.message] for o in problems
            ]
            headers = ["status", "action", "who", "reason"]
            return _table(width, "Not done", headers, rows, [3, 1], boxed=True)
        rows = [
            [
                str(o.status),
                f"{LABELS.get(str(o.action.kind), str(o.action.kind))}\n{o.action.subject}",
                o.message,
            ]
            for o in problems
        ]
        return _table(
            width, "Not done", ["status", "action / who", "reason"], rows, [2], boxed=False
        )

    return Fitted(build)


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
    """One phrase: "incremental run", "first full run", "full dry run: nothing was changed"."""
    mode, _, aside = result.mode.partition(" (")
    aside = aside.removesuffix(")")
    first = aside == "first run"
    label = f"{'first ' if first else ''}{mode} {'dry run' if result.dry_run else 'run'}"
    if aside and not first:
        label += f" ({aside})"  # a mode this label does not know yet, kept as said
    return label + (": nothing was changed" if result.dry_run else "")


def empty_plan_line(result: RunResult) -> str:
    """An empty plan is "in sync" only when every service could be read."""
    if result.observe_errors:
        unread = ", ".join(sorted(result.observe_errors))
        return f"Nothing planned, but not verified: {unread} could not be read (next run retries)."
    return "In sync: nothing to do."


def over_limit_line(result: RunResult) -> str | None:
    """How much of the plan waits for later runs (max_actions), if any."""
    if not result.deferred or result.refused:
        return None
    now = len(result.plan) - len(result.deferred)
    if result.dry_run:
        return (
            f"a real run would apply {now} of {len(result.plan)} actions now and leave "
            f"{len(result.deferred)} for the next runs (max_actions={result.max_actions})"
        )
    return (
        f"{len(result.deferred)} of {len(result.plan)} actions left for the next runs "
        f"(max_actions={result.max_actions}; they drain with no one stepping in)"
    )


def interrupted_line(result: RunResult) -> str | None:
    """A run stopped by a signal says what it left for the next run."""
    if not result.interrupted:
        return None
    left = sum(1 for o in result.outcomes if o.message == NOT_STARTED) + len(result.deferred)
    return (
        f"stopped by {result.interrupted}: the actions in progress finished and were recorded; "
        f"{left} not started wait for the next run"
    )


def refusal_line(result: RunResult) -> str | None:
    """The mistake guard's verdict; a dry run says the real run would meet it."""
    if not result.refusal:
        return None
    return ("a real run would be " if result.dry_run else "") + result.refusal


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
    if refused := refusal_line(result):
        console.print(refused, markup=False)
    if stopped := interrupted_line(result):
        console.print(stopped, markup=False)
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
        lines.append((INFO, over))
    if refused := refusal_line(result):
        lines.append((WARNING, refused))
    if stopped := interrupted_line(result):
        lines.append((WARNING, stopped))
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
        "refused": result.refusal or None,
        "deferred": len(result.deferred) or None,
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


class _CountAndEta(ProgressColumn):
    """`7/22 eta 0:00:04` once the total is known; nothing before."""

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("")
        left = task.time_remaining
        eta = "" if left is None else f" eta {timedelta(seconds=round(left))}"
        return Text(f"{int(task.completed)}/{int(task.total)}{eta}")


class RunProgress:
    """A spinner naming the observe phase, then a bar over the plan's actions.

    Use as a context manager; `phase`, `planned` and `outcome` are the
    callbacks `reconcile` takes (`progress`, `on_plan`, `on_outcome`). Once
    the plan is known the bar has its total: actions finished of N, and the
    time left estimated from the pace so far. Disabled (for plain output) it
    forwards phases to `fallback` and shows nothing.
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
        self._latest: dict[str, Status] = {}

    def __enter__(self) -> RunProgress:
        if self.enabled:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TimeElapsedColumn(),
                _CountAndEta(),
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

    def planned(self, plan: Plan) -> None:
        """The plan is about to be applied: the bar gets its total."""
        if self._progress is not None and len(plan):
            self._progress.reset(self._task, total=len(plan), description="applying")

    def outcome(self, outcome: Outcome) -> None:
        # An action settled again later in the run moves the bar once; its
        # latest outcome is the one counted as failed or not.
        first = outcome.action.key not in self._latest
        self._latest[outcome.action.key] = outcome.status
        self._done += first
        self._failed = sum(1 for s in self._latest.values() if s is Status.FAILED)
        if self._progress is not None:
            failed = f" ({self._failed} failed)" if self._failed else ""
            self._progress.update(self._task, advance=int(first), description=f"applying{failed}")


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


def history_table(entries: list[Entry], *, title: str = "Journal") -> Fitted:
    """The journal, newest first; narrow terminals get two lines an entry."""

    def outcome(e: Entry) -> Text:
        state = history_outcome(e)
        style = {"failed": "red", "in_flight": "yellow", "minted": "yellow"}.get(state, "")
        return Text(state, style=style)

    def build(width: int) -> Table:
        heading = f"{title} ({len(entries)})"
        if width >= WIDE:
            wide_rows: list[list[Cell] | str] = [
                [
                    _when(e.started_at),
                    LABELS.get(e.kind, e.kind),
                    e.subject,
                    outcome(e),
                    e.ref or hold_note(e),
                    e.error or "",
                ]
                for e in entries
            ]
            headers = ["when (UTC)", "action", "who", "outcome", "reference", "error"]
            return _table(width, heading, headers, wide_rows, [5, 4, 1], boxed=True)
        # Narrow: two lines an entry, so no column needs to cut an address or a code.
        rows: list[list[Cell] | str] = [
            [
                f"{e.started_at:%Y-%m-%d}\n{e.started_at:%H:%M:%S}",
                f"{LABELS.get(e.kind, e.kind)}\n{e.subject}",
                outcome(e),
                " ".join(p for p in (e.ref or hold_note(e), e.error or "") if p),
            ]
            for e in entries
        ]
        headers = ["when (UTC)", "action / who", "outcome", "reference / error"]
        return _table(width, heading, headers, rows, [3, 1], boxed=False)

    return Fitted(build)


def history_lines(entries: list[Entry]) -> list[str]:
    """One line per attempt: when, action, who, outcome, reference, error."""
    lines = []
    for e in entries:
        line = f"{_when(e.started_at)} {e.kind} {e.subject} {history_outcome(e)}"
        if e.ref:
            line += f" ref={e.ref}"
        line += f" key={e.key}"
        if is_hold_event(e):
            line += f" by={e.detail.get('by') or 'unknown'}"
            if e.detail.get("reason"):
                line += f" reason={e.detail['reason']}"
        if e.error:
            line += f" error={e.error}"
        lines.append(line)
    return lines


# -- holds --------------------------------------------------------------------------


def holds_table(holds: list[Hold]) -> Fitted:
    """Every hold, the longest-standing first; subjects are never cut.

    A session id is some 66 characters: below `WIDE` columns a hold is one
    cell of three lines (subject; kind, since, by; reason) instead of a row.
    """

    def reason(h: Hold) -> str:
        return h.reason + (f" (set {h.at:%Y-%m-%d %H:%M})" if h.at != h.since else "")

    def build(width: int) -> Table:
        heading = f"Holds ({len(holds)})"
        if width >= WIDE:
            wide_rows: list[list[Cell] | str] = [
                [f"{h.since:%Y-%m-%d %H:%M}", kind_word(h), h.subject, h.by or "unknown", reason(h)]
                for h in holds
            ]
            headers = ["since (UTC)", "kind", "subject", "by", "reason"]
            return _table(width, heading, headers, wide_rows, [4, 3], boxed=True)
        rows: list[list[Cell] | str] = [
            [
                f"{h.subject}\n{kind_word(h)}, since {h.since:%Y-%m-%d %H:%M} UTC, by "
                f"{h.by or 'unknown'}" + (f"\n{reason(h)}" if reason(h) else "")
            ]
            for h in holds
        ]
        table = _table(width, heading, ["held / since, by / reason"], rows, [0], boxed=False)
        table.show_lines = True  # a rule between holds: each is several lines
        return table

    return Fitted(build)


# -- status -------------------------------------------------------------------------


def status_lines(status: PersonStatus) -> list[str]:
    """A person across the systems, section by section, one fact per line."""
    out = [f"status of {status.email}"]
    # First: a held person or purchase is why nothing happens for them.
    out.append("Holds:")
    out.extend(f"  {hold_summary(h)}" for h in status.holds)
    if not status.holds:
        out.append("  no hold set with syncctl hold")

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
