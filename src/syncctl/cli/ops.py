"""Day-to-day operations: doctor, status, history, state migrate, hold/release/holds, export."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from syncctl.errors import UsageError

if TYPE_CHECKING:
    # Typer vendors click; its base Context (what Group.invoke receives) is not re-exported.

    pass

from syncctl.cli.base import _lines, _out_console, _print_error, _say, _state, app, err, state_app

# -- operations: doctor, status, history ------------------------------------------


@app.command()
def doctor(
    ctx: typer.Context,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the checks as one JSON document on stdout.")
    ] = False,
) -> None:
    """Check the config, the secrets and each service's access; change nothing.

    One line per check with ok/FAIL, what was found and the fix: config,
    secrets, state_dir; Stripe key, events, VIP prices/products; Mautic API,
    the five custom fields and their types, the three emails published;
    Discord token and the bot's permissions in both channels; Shopware
    credentials and the VIP promotion (active, individual codes); EspoCRM
    Lead read/create rights and lead_source among the Lead's source
    options. Only reads. Exit 0 when every check passes, 1
    otherwise.

    \b
    Examples:
      syncctl doctor
      syncctl --config /etc/syncctl/syncctl.toml doctor --json
    """
    from syncctl.commands.doctor import run_doctor
    from syncctl.commands.render import doctor_lines, doctor_table, use_rich

    state = _state(ctx)
    report = run_doctor(lambda: state.config)
    out = _out_console()
    if json_out:
        typer.echo(json.dumps(report.to_json(), indent=2))
    elif use_rich(out):
        out.print(doctor_table(report))
    else:
        _lines(out, [line for _, line in doctor_lines(report)])
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def status(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The person's email address (any case).")],
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON document (format_version 1) on stdout.")
    ] = False,
    history_limit: Annotated[
        int,
        typer.Option("--history", min=0, help="Show this many journal entries (0: all)."),
    ] = 20,
) -> None:
    """Show one person across all systems, and what the next run would do for them.

    Mautic fields, Stripe purchases, the coupon code of each VIP purchase in
    Shopware, the Discord invite behind each stored link (live, uses,
    expiry), the EspoCRM lead, the journal's history, pending retries, and
    the planned actions for this person. Only reads. Exit 1 when a service
    could not be read (the rest is still shown); 2 when nobody has the email.

    \b
    Examples:
      syncctl status backer@example.com
      syncctl status backer@example.com --json
    """
    from syncctl.commands.render import show_status, status_lines, use_rich
    from syncctl.commands.status import person_status

    found = person_status(_state(ctx).config, email, history_limit=history_limit or None)
    out = _out_console()
    if json_out:
        typer.echo(json.dumps(found.to_json(), indent=2))
    elif use_rich(out):
        show_status(out, found)
    else:
        _lines(out, status_lines(found))
    for service, problem in sorted(found.errors.items()):
        _print_error(ctx, f"error: could not read {service}: {problem}")
    raise typer.Exit(0 if found.complete else 1)


@app.command()
def history(
    ctx: typer.Context,
    email: Annotated[
        str | None, typer.Option("--email", help="Only this person's entries (any case).")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only entries since: 2024-05-01, 2024-05-01T08:00, 12h, 7d."),
    ] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Only failed attempts.")] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON document (format_version 1) on stdout.")
    ] = False,
    limit: Annotated[
        int,
        typer.Option("--limit", min=0, help="At most this many entries, newest first (0: all)."),
    ] = 50,
) -> None:
    """Show the journal: every attempted action, newest first.

    Columns: when (UTC), action, who, outcome (done, failed, in_flight, ...),
    the external reference (coupon code, invite code, lead id, ...) and the
    error. Reads the journal read-only; safe while a run is going on.

    \b
    Examples:
      syncctl history --email backer@example.com
      syncctl history --failed --since 24h --json
    """
    from syncctl.commands.history import history_json, parse_since, read_history
    from syncctl.commands.render import history_lines, history_table, use_rich

    moment = parse_since(since) if since else None
    cfg = _state(ctx).config
    entries = read_history(cfg, email=email, since=moment, failed=failed, limit=limit or None)
    out = _out_console()
    if json_out:
        document = history_json(entries, email=email, since=since, failed=failed, limit=limit)
        typer.echo(json.dumps(document, indent=2))
    elif use_rich(out):
        out.print(history_table(entries))
    elif entries:
        _lines(out, history_lines(entries))
    else:
        err.print("no journal entries match", markup=False)


# -- the state store -------------------------------------------------------------


@state_app.command("migrate")
def state_migrate(
    ctx: typer.Context,
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="URL|DIR",
            help="The empty store to move into: postgresql://USER@HOST/DB (the password in "
            "PGPASSWORD or ~/.pgpass), or a state directory (SQLite).",
        ),
    ],
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON document (format_version 1) on stdout.")
    ] = False,
) -> None:
    """Move the whole state from the configured store into another one, verified.

    Copies every table with its ids, then compares row counts and SHA-256
    checksums of both stores before the copy is kept. Both stores' run locks
    are held throughout: while a reconcile holds one, it exits 3 and changes
    nothing. The target must be empty. The source is left as it was, marked
    as moved, so a host still pointed at it refuses to write there; then
    point every host at the new store (SYNCCTL_STATE_URL or [run] state_url;
    for SQLite, [run] state_dir and no URL).

    The URL's password is best passed in PGPASSWORD (or ~/.pgpass), not on
    the command line.

    \b
    Examples:
      syncctl state migrate --to postgresql://syncctl@db.example.org/syncctl
      syncctl state migrate --to /var/lib/syncctl/state
    """
    from syncctl.state.journal import open_for_run
    from syncctl.state.location import PG_SCHEMES, StateLocation, check_state_url
    from syncctl.state.transfer import migrate

    cfg = _state(ctx).config
    source = cfg.state
    if to.split("://", 1)[0] in PG_SCHEMES:
        target = StateLocation(source.state_dir, check_state_url(to, "--to"), "--to")
    elif "://" in to:
        raise UsageError(f"--to {to.split('://', 1)[0]}://... is neither PostgreSQL nor a path")
    else:
        target = StateLocation(Path(to).expanduser().absolute())
    with open_for_run(source) as old, open_for_run(target) as new:
        report = migrate(old, new)
    if json_out:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    lines = [
        f"{t.table}: {t.rows} rows, sha256 {t.sha256[:16]}, same in both" for t in report.tables
    ]
    lines.append(
        f"moved {report.rows} rows from {report.source} to {report.target}; "
        f"point every host at {report.target} now"
    )
    _say(ctx, lines)


# -- holds (desired-state rule 18) -----------------------------------------------

_SUBJECT_HELP = (
    "A person's email address (any case), or one purchase's Stripe Checkout Session id (cs_...)."
)


@app.command()
def hold(
    ctx: typer.Context,
    subject: Annotated[str, typer.Argument(metavar="EMAIL|SESSION_ID", help=_SUBJECT_HELP)],
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason",
            metavar="TEXT",
            help="Why (shown by holds, status and history); given again, it replaces the reason.",
        ),
    ] = None,
) -> None:
    """Hold a person or a purchase: no run does anything for it until it is released.

    The plan lists it as held. A person's hold covers everything for the
    address (purchases, contact, invites, emails, lead); a purchase's hold,
    what is done for that one purchase. No service call and no secret
    needed. It does not wait for a running reconcile: every run that plans
    after it leaves the subject alone (a run that had planned already
    finishes what it planned). Nothing done before is undone.
    Holding what is held already changes only its reason (with --reason).

    \b
    Examples:
      syncctl hold backer@example.com --reason "chargeback dispute"
      syncctl hold cs_live_a1B2c3D4 --reason "checking for fraud"
    """
    from syncctl.commands.holds import hold_lines, set_hold

    outcome = set_hold(_state(ctx).config, subject, reason)
    _say(ctx, hold_lines(outcome))


@app.command()
def release(
    ctx: typer.Context,
    subject: Annotated[str, typer.Argument(metavar="EMAIL|SESSION_ID", help=_SUBJECT_HELP)],
) -> None:
    """Lift a hold set with `syncctl hold`: the next run acts for it again.

    Releasing replays nothing by itself: the next run plans from what the
    services hold then. Exit 1 (one line, nothing changed) when the subject
    is not held: a typo, or the person released where a purchase is held.
    A hold by the Mautic hold_tag is lifted by removing the tag in Mautic.

    \b
    Example:
      syncctl release backer@example.com
    """
    from syncctl.commands.holds import release_hold, release_line

    _say(ctx, [release_line(release_hold(_state(ctx).config, subject))])


@app.command("holds")
def list_holds(
    ctx: typer.Context,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON document (format_version 1) on stdout.")
    ] = False,
) -> None:
    """List the holds set with `syncctl hold`: what, since when, by whom and why.

    Reads the journal read-only; safe while a run is going on. Contacts
    held by the Mautic hold_tag are not listed (they live in Mautic; a
    run's plan shows them as held).

    \b
    Examples:
      syncctl holds
      syncctl holds --json
    """
    from syncctl.commands.holds import holds_json, holds_lines
    from syncctl.commands.holds import list_holds as read_holds
    from syncctl.commands.render import holds_table, use_rich

    found = read_holds(_state(ctx).config)
    out = _out_console()
    if json_out:
        typer.echo(json.dumps(holds_json(found), indent=2))
    elif not found:
        err.print("nothing is held", markup=False)
    elif use_rich(out):
        out.print(holds_table(found))
    else:
        _lines(out, holds_lines(found))


# -- export (finance and fulfilment) ------------------------------------------------


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


@app.command()
def export(
    ctx: typer.Context,
    fmt: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            help="csv: a header line, then one line per row. json: one document "
            "(format_version 1) whose rows array holds one object per row.",
            case_sensitive=False,
        ),
    ] = ExportFormat.CSV,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            dir_okay=False,
            help="Write to FILE, whole or not at all (a temporary file beside it, renamed "
            "when complete; mode 0600). Default (or -): stdout.",
        ),
    ] = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Also ask the services, a page at a time: does each code exist and was it "
            "redeemed (Shopware), is each invite live (Discord), opt-in, Do-Not-Contact and "
            "hold tag (Mautic). Needs the secrets; without it only the journal is read.",
        ),
    ] = False,
) -> None:
    """Export one row per purchase and per opted-in contact, for finance and fulfilment.

    Each row says what was done: the coupon code and its coupon email (when
    sent), the invite and its email, the lead, and any hold or refund. By
    default only the journal is read (no secret, no service call, safe
    while a run goes on); --live adds what only the services know now.
    Rows are written as they are made, so 100k rows need little memory.
    Exit 1 when a service could not be read with --live (its columns stay
    empty; the rest is written).

    \b
    Examples:
      syncctl export --output backers.csv
      syncctl export --format json --live --output backers.json
      syncctl export | grep ada@example.com
    """
    from syncctl.commands.export import Format
    from syncctl.commands.export import export as write_export

    target = None if output is None or str(output) == "-" else output
    try:
        result = write_export(
            _state(ctx).config,
            fmt=Format(fmt.value),
            output=target,
            live=live,
            stdout=sys.stdout,
        )
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as other filters do.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(1) from None
    for service, problem in sorted(result.errors.items()):
        _print_error(ctx, f"error: could not read {service}: {problem}")
    where = f" to {target}" if target is not None else ""
    counts = result.counts
    _say(ctx, [f"exported {counts.purchases} purchase(s) and {counts.contacts} contact(s){where}"])
    raise typer.Exit(1 if result.errors else 0)
