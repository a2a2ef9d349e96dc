"""Running the engine: reconcile, watch, reissue-invite."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from syncctl import config as config_mod
from syncctl import logs
from syncctl.engine.stop import StopRequest
from syncctl.errors import LockBusy, SyncctlError, UsageError

if TYPE_CHECKING:
    # Typer vendors click; its base Context (what Group.invoke receives) is not re-exported.

    from syncctl.engine.reconcile import RunResult

from syncctl.cli.base import (
    _debug,
    _echo_json,
    _print_error,
    _report_run,
    _state,
    _stop_on_signals,
    _waiting_notice,
    app,
    err,
)

# -- reconcile ------------------------------------------------------------------


@app.command()
def reconcile(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Plan and show; change nothing anywhere.")
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON document (format_version 1) on stdout.")
    ] = False,
    full: Annotated[
        bool, typer.Option("--full", help="Ignore cursors: re-read and audit everything.")
    ] = False,
    detailed_exitcode: Annotated[
        bool,
        typer.Option("--detailed-exitcode", help="Exit 0 in sync, 2 changes, 1 errors."),
    ] = False,
    max_actions: Annotated[
        int | None,
        typer.Option(
            "--max-actions",
            min=1,
            metavar="N",
            help="Apply at most N actions now; the rest waits for later runs (default: config).",
        ),
    ] = None,
    allow_mass_change: Annotated[
        bool,
        typer.Option(
            "--allow-mass-change",
            help="Apply a plan the mistake guard refused (mass re-sends or revocations).",
        ),
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Queue behind a running syncctl instead of exiting.")
    ] = False,
    retry_refused: Annotated[
        bool,
        typer.Option(
            "--retry-refused",
            help="Also retry what a service refused before with the same inputs.",
        ),
    ] = False,
    metrics_file: Annotated[
        Path | None,
        typer.Option(
            "--metrics-file",
            metavar="PATH",
            dir_okay=False,
            help="After the run, add its figures to the Prometheus textfile PATH (written "
            "atomically; for node_exporter's textfile collector, name it *.prom).",
        ),
    ] = None,
) -> None:
    """Bring every service to the desired state; apply only what is missing.

    \b
    Examples:
      syncctl reconcile --dry-run      (what would change)
      syncctl reconcile --full --json  (nightly audit, machine-readable)
      syncctl reconcile --metrics-file /var/lib/node_exporter/textfile/syncctl.prom

    \b
    Exit codes:
      0  in sync, or every action applied (over max_actions: the rest waits)
      1  an action or a service failed (the others went on); or another run
         has held the lock for over [run] lock_busy_fail_after (default 1 h)
      2  bad config, secret or command line (--detailed-exitcode: changes)
      3  another syncctl run holds the lock (--wait queues instead)
      4  the plan looks like a mistake; nothing applied (--allow-mass-change)

    \b
    With [alert] ping_url set, a real run pings <ping_url>/start once it
    holds the lock, then <ping_url> (exit 0) or <ping_url>/fail with its
    summary; a dry run and a routine busy lock (exit 3) ping nothing.
    """
    from syncctl.alert import RunPings, pinger_for
    from syncctl.commands.render import RunProgress
    from syncctl.engine.reconcile import reconcile as run
    from syncctl.state.lock import held_too_long

    state = _state(ctx)
    if metrics_file is not None and dry_run:
        raise UsageError(
            "--metrics-file counts real runs only", hint="drop --dry-run or --metrics-file"
        )
    cfg = state.config
    record = _metrics_recorder(metrics_file, cfg, full=full)
    stop = StopRequest()
    pings = RunPings(None if dry_run else pinger_for(cfg))
    try:
        with (
            _stop_on_signals(stop, quiet=state.quiet),
            RunProgress(err, enabled=state.rich and not state.quiet, fallback=_debug) as shown,
        ):

            def on_outcome(outcome: Any) -> None:
                logs.log_outcome(outcome)
                shown.outcome(outcome)

            result = record(
                run,
                dry_run=dry_run,
                full=full,
                max_actions=max_actions,
                wait=wait,
                retry_refused=retry_refused,
                allow_mass_change=allow_mass_change,
                stop=stop,
                progress=shown.phase,
                on_outcome=on_outcome,
                on_plan=shown.planned,
                on_wait=_waiting_notice(ctx),
                on_start=pings.start,
            )
    except LockBusy as busy:
        too_long = held_too_long(busy, cfg.settings.run.lock_busy_fail_after)
        if too_long is None:
            raise  # a routine overlap: exit 3, no ping (the holder pings for itself)
        pings.fail(f"error: {too_long}")
        raise too_long from None
    except SyncctlError as exc:
        pings.fail(f"error: {exc}")
        raise
    except KeyboardInterrupt:
        if pings.started:
            pings.fail("interrupted")
        raise
    except Exception as exc:
        pings.fail(f"error: {type(exc).__name__}: {exc}")
        raise
    _report_run(state, result, outcomes_logged=True)
    if json_out:
        _echo_json(result.to_json())
    pings.finish(result)
    raise typer.Exit(result.exit_code(detailed_exitcode))


def _metrics_recorder(
    path: Path | None, cfg: config_mod.Config, *, full: bool
) -> Callable[..., RunResult]:
    """`record(run, ...)`: calls the run, then adds its figures to `path` (if given).

    A run that stops with an error (a busy lock too) is counted as such; a
    metrics file that cannot be written is a warning, the run's exit code stays.
    """
    from syncctl.service.metrics import Figures, pending_counts

    figures = Figures()

    def record(run: Callable[..., RunResult], **kwargs: Any) -> RunResult:
        if path is None:
            return run(cfg, **kwargs)
        figures.load_textfile(path)
        try:
            result = run(cfg, **kwargs)
        except SyncctlError as exc:
            outcome = "busy" if isinstance(exc, LockBusy) else "error"
            figures.record_stopped("full" if full else "incremental", outcome)
            _write_metrics(figures, path)
            raise
        figures.record_run(result, pending=pending_counts(cfg.state))
        _write_metrics(figures, path)
        return result

    return record


def _write_metrics(figures: Any, path: Path) -> None:
    try:
        figures.write_textfile(path)
    except OSError as exc:
        logs.event(
            logs.LOGGER,
            logging.WARNING,
            f"could not write the metrics file {path}: {exc.strerror or exc}",
        )


# -- watch ----------------------------------------------------------------------


@app.command()
def watch(
    ctx: typer.Context,
    interval: Annotated[
        float | None,
        typer.Option(
            "--interval",
            min=0.1,
            metavar="S",
            help="Seconds between cycles when nothing wakes it earlier (default: [watch] "
            "interval, 30).",
        ),
    ] = None,
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen",
            metavar="HOST:PORT",
            help="Serve POST /webhooks/stripe and /webhooks/mautic (each when its secret is "
            'set), GET /healthz and /metrics here (default: [watch] listen; "" none; '
            '":8787" is loopback).',
        ),
    ] = None,
) -> None:
    """Reconcile continuously: every --interval seconds, and at once on a signed webhook.

    Each cycle is the run `syncctl reconcile` makes (same lock: a timer left
    installed never applies at the same time), plus the daily --full audit
    at [watch] audit_at. A webhook only wakes it: its body is never used,
    the cycle reads the services. A failing cycle is retried with backoff;
    vendor outages never end the process. SIGTERM or Ctrl-C: finish the
    action in progress, release the lock, exit 0 (again to quit at once).
    Bad config exits 2 at start.

    \b
    Examples:
      syncctl watch --listen 127.0.0.1:8787
      syncctl --log-format json watch --interval 60
    """
    from syncctl.commands import render
    from syncctl.service.watch import WatchService, run_until_stopped, stop_on_signals

    state = _state(ctx)
    cfg = state.config
    if state.rich and not state.quiet:
        # A service logs as it goes, tables or not: the lines under cron, on a terminal too.
        logging.getLogger(logs.LOGGER).setLevel(logs.level_for(state.verbosity, terminal=False))

    def on_cycle(result: RunResult, outcome: str) -> None:
        idle = outcome == "ok" and result.plan.is_empty and not result.recovered
        if idle:  # the common case: one debug line (-v), not a report every interval
            _debug(f"cycle: nothing to do; {render.calls_line(result)}")
        elif state.log_format == "json":
            level = logging.INFO if outcome in ("ok", "held") else logging.WARNING
            fields = render.summary_fields(result)
            logs.event(logs.REPORT, level, "cycle finished", outcome=outcome, **fields)
        else:
            for level, line in render.result_lines(result, outcomes_logged=True):
                logs.event(logs.REPORT, level, line)

    service = WatchService(
        cfg, interval=interval, listen=listen, on_outcome=logs.log_outcome, on_cycle=on_cycle
    )
    with stop_on_signals(service, quiet=state.quiet):
        service.start()
        hooks = ", ".join(h.source for h in service.hooks.values()) or "none (no secret set)"
        logs.event(
            logs.LOGGER,
            logging.INFO,
            "watching",
            interval_s=service.options.interval,
            audit_at=cfg.settings.watch.audit_at or None,
            listen=service.url,
            webhooks=hooks if service.url else None,
        )
        how = run_until_stopped(service)
    if how == "crashed":
        raise SyncctlError(f"the cycle loop stopped: {service.loop.crashed}")
    if how == "abandoned":
        logs.event(
            logs.LOGGER,
            logging.INFO,
            "stopped: the cycle in progress was only reading; it was left behind",
        )
        # Its thread may be inside a vendor read: end the process here rather
        # than tear the interpreter down around it. The kernel frees the lock.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    logs.event(logs.LOGGER, logging.INFO, "stopped", cycles=service.loop.cycles)


@app.command("reissue-invite")
def reissue_invite(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The contact's email address.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan only.")] = False,
    no_email: Annotated[
        bool, typer.Option("--no-email", help="Store the new link but send no email.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for a running reconcile instead of exiting 3.")
    ] = False,
) -> None:
    """Revoke a contact's invite, mint a new one, store it, verify it, email it.

    \b
    Example:
      syncctl reissue-invite backer@example.com --dry-run
    """
    from syncctl.commands.reissue import reissue
    from syncctl.commands.render import plan_lines, plan_table

    state = _state(ctx)
    cfg = state.config

    def confirm(plan: Any) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise UsageError(
                "reissue-invite needs confirmation", hint="pass --yes when not on a terminal"
            )
        err.print(plan_table(plan, title="Reissue"))
        return typer.confirm("Apply these changes?", default=False, err=True)

    result = reissue(
        cfg,
        email,
        dry_run=dry_run,
        send_email=not no_email,
        confirm=confirm,
        wait=wait,
        on_wait=_waiting_notice(ctx),
    )
    if dry_run:
        if state.rich:
            err.print(plan_table(result.plan, title="Reissue (dry run)"))
        else:
            for line in plan_lines(result.plan, title="Reissue (dry run)"):
                logs.event(logs.REPORT, logging.INFO, line)
    elif not result.outcomes:
        _print_error(ctx, "aborted: nothing was changed")
        raise typer.Exit(1)
    else:
        for outcome in result.outcomes:
            logs.log_outcome(outcome)
        _report_run(state, result, outcomes_logged=True)
    if json_out:
        _echo_json(result.to_json())
    raise typer.Exit(result.exit_code(False))
