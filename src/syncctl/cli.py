"""The `syncctl` command line: thin Typer commands over the library.

Every error the library raises is a `SyncctlError`; `_Group.invoke` turns it
into one line on stderr and the documented exit code, so no command prints a
traceback for a condition an operator can fix.

Exit codes (README, "Exit codes"):
  0  success: in sync, or every planned action done
  1  an action or a service failed (details on stderr / in --json), or
     another run has held the lock for over [run] lock_busy_fail_after
  2  bad config, secret or command line (with --detailed-exitcode: changes
     were pending or applied, and errors of any kind, a mistyped option
     too, exit 1 instead)
  3  another run holds the state directory's lock
  4  the plan looked like a configuration mistake and was not applied
`doctor` exits 1 when a check fails; `status` exits 1 when a service could
not be read and 2 for an address nobody has.

Output: on a terminal, rich tables and a progress display; otherwise plain
lines through the `syncctl` logger (`logs.py`: text or JSON, `-v`/`-q`), one
per applied action plus the run's summary. Rendering lives in `render.py`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import unquote, urlsplit

import typer
from rich.console import Console
from rich.table import Table
from typer._click.exceptions import UsageError as ClickUsageError

from syncctl import __version__, logs
from syncctl import config as config_mod
from syncctl.engine.stop import StopRequest
from syncctl.errors import LockBusy, SyncctlError, UsageError

if TYPE_CHECKING:
    # Typer vendors click; its base Context (what Group.invoke receives) is not re-exported.
    from typer._click import Context as ClickContext

    from syncctl.engine.reconcile import RunResult

err = Console(stderr=True, highlight=False)


def _print_error(ctx: ClickContext, text: str) -> None:
    state = ctx.find_object(AppState)
    if state is not None and state.log_format == "json":
        logs.event(logs.LOGGER, logging.ERROR, text)
    else:
        err.print(f"syncctl: {text}", markup=False, soft_wrap=True)


#: With this flag, exit 2 means "changes": every error, usage errors too, exits 1.
DETAILED_EXITCODE = "--detailed-exitcode"


def _asks_detailed_exitcode(args: list[str]) -> bool:
    """Whether the command line holds --detailed-exitcode (options end at `--`)."""
    words = args[: args.index("--")] if "--" in args else args
    return DETAILED_EXITCODE in words


class _Group(typer.core.TyperGroup):
    """Maps library errors to one clean line and an exit code."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: ClickContext | None = None,
        **extra: Any,
    ) -> ClickContext:
        # Decided from the raw words, before parsing: a usage error found while
        # parsing (an unknown option, --max-actions 0) must know the flag
        # whatever the order of the words.
        detailed = _asks_detailed_exitcode(list(args))
        try:
            ctx = super().make_context(info_name, args, parent=parent, **extra)
        except ClickUsageError as exc:
            if detailed:
                exc.exit_code = 1
            raise
        ctx.meta[DETAILED_EXITCODE] = detailed
        return ctx

    def invoke(self, ctx: ClickContext) -> Any:
        detailed = bool(ctx.meta.get(DETAILED_EXITCODE))
        try:
            return super().invoke(ctx)
        except ClickUsageError as exc:
            if detailed:
                exc.exit_code = 1  # with --detailed-exitcode, 2 means "changes"
            raise
        except SyncctlError as exc:
            state = ctx.find_object(AppState)
            # Under cron (-q) a run overlapping another is routine and any output is
            # mailed: a busy lock stays silent (exit 3) unless its holder looks stuck.
            routine = isinstance(exc, LockBusy) and not exc.stuck
            if not (routine and state is not None and state.quiet):
                _print_error(ctx, f"error: {exc}")
            code = exc.exit_code
            if detailed and code == 2:
                code = 1  # with --detailed-exitcode, 2 means "changes", never an error
            raise typer.Exit(code) from None
        except KeyboardInterrupt:
            _print_error(ctx, "interrupted")
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=_Group,
    name="syncctl",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
sandbox_app = typer.Typer(
    help="Run the bundled local emulators of the five services.", no_args_is_help=True
)
state_app = typer.Typer(
    help="Move the state (journal, cursors, holds, runs) between stores.", no_args_is_help=True
)
app.add_typer(config_app, name="config")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(state_app, name="state")


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


@dataclass
class AppState:
    """What the global options decided; commands load the config through it."""

    config_path: Path | None = None
    env_file: Path | None = None
    log_format: str = "text"
    verbosity: int = 0
    #: stderr is a terminal that may show tables and progress.
    rich: bool = False
    _config: config_mod.Config | None = field(default=None, repr=False)

    @property
    def config(self) -> config_mod.Config:
        if self._config is None:
            self._config = config_mod.load(self.config_path, self.env_file)
            logs.add_secrets(
                value.get_secret_value()
                for name, value in self._config.secrets.values.items()
                if name != "MAUTIC_USERNAME"  # a user name, not a credential (may be a word)
            )
            url = self._config.secrets.optional("SYNCCTL_STATE_URL")
            password = urlsplit(url).password if url else None
            if password:
                logs.add_secrets([password, unquote(password)])
        return self._config

    @property
    def quiet(self) -> bool:
        return self.verbosity < 0


def _version(value: bool) -> None:
    if value:
        typer.echo(f"syncctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Config file. Default: $SYNCCTL_CONFIG, ./syncctl.toml, "
            "~/.config/syncctl/config.toml.",
            dir_okay=False,
        ),
    ] = None,
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file", help="File of secrets (NAME=value). Default: ./.env.", dir_okay=False
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            "--log-format",
            help="Log lines on stderr as text or as JSON objects (one per line, for journald "
            "and log shippers).",
            case_sensitive=False,
        ),
    ] = LogFormat.TEXT,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            help="More log lines: -v adds one line per action on a terminal, -vv debug.",
        ),
    ] = 0,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Only warnings and errors (for cron mail)."),
    ] = False,
) -> None:
    """Keep Stripe, Shopware, Mautic, Discord and EspoCRM in step for a campaign.

    On a terminal: tables and progress. Under cron, systemd or a pipe (or with
    NO_COLOR): plain lines, one per applied action, and a summary.

    \b
    Example:
      syncctl --config /etc/syncctl/syncctl.toml reconcile --dry-run
    """
    from syncctl.commands.render import use_rich

    rich = use_rich(err)
    state = AppState(
        config_path=config,
        env_file=env_file,
        log_format=str(log_format.value),
        verbosity=-1 if quiet else verbose,
        rich=rich,
    )
    ctx.obj = state
    write = None
    if rich and state.log_format == "text":
        # Through the console, so log lines print above a live progress display.
        def write(line: str) -> None:
            err.print(line, markup=False, highlight=False, soft_wrap=True)

    ctx.call_on_close(logs.configure(state.log_format, state.verbosity, terminal=rich, write=write))


def _waiting_notice(ctx: typer.Context) -> Callable[[str], None]:
    """The `on_wait` of a --wait run: one line saying whose lock it waits for (not with -q)."""
    state = _state(ctx)

    def notice(holder: str) -> None:
        if state.quiet:
            return
        text = f"waiting for the lock: {holder}"
        if state.log_format == "json":
            logs.event(logs.LOGGER, logging.INFO, text)
        else:
            err.print(f"syncctl: {text}", markup=False, soft_wrap=True)

    return notice


def _state(ctx: typer.Context) -> AppState:
    obj = ctx.find_object(AppState)
    return obj if obj is not None else AppState()


# -- config ---------------------------------------------------------------------


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the resolved configuration, secrets masked.

    \b
    Example:
      syncctl --config syncctl.toml config show
    """
    cfg = _state(ctx).config
    console = Console(highlight=False)
    console.print(f"# config: {cfg.path}", markup=False)
    data = cfg.settings.model_dump()
    for section, key in config_mod.SECRET_KEYS:  # a ping URL's path is its token
        data[section][key] = config_mod.redact_url(data[section][key])
    for section, values in data.items():
        _print_section(console, section, values)
    console.print("\n# secrets", markup=False)
    for name in config_mod.SECRET_NAMES:
        source = cfg.secrets.sources.get(name)
        shown = f"******** (from {source})" if source else "MISSING"
        console.print(f"{name} = {shown}", markup=False)
    for name in config_mod.OPTIONAL_SECRET_NAMES:
        source = cfg.secrets.sources.get(name)
        shown = f"******** (from {source})" if source else "not set (optional)"
        console.print(f"{name} = {shown}", markup=False)


def _print_section(console: Console, section: str, values: dict[str, Any]) -> None:
    console.print(f"\n[{section}]", markup=False)
    nested = {k: v for k, v in values.items() if isinstance(v, dict)}
    for key, value in values.items():
        if key not in nested:
            console.print(f"{key} = {_toml_value(value)}", markup=False)
    for key, value in nested.items():
        _print_section(console, f"{section}.{key}", value)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


# -- sandbox --------------------------------------------------------------------


@sandbox_app.command("serve")
def sandbox_serve(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to write syncctl.toml and .env.", file_okay=False)
    ] = Path("."),
    port_base: Annotated[
        int,
        typer.Option(
            help="First of five consecutive loopback ports (0: any free ports).",
            min=0,
            max=65535 - 4,
        ),
    ] = 8710,
    latency: Annotated[
        float, typer.Option(help="Seconds each emulated call takes.", min=0.0, max=60.0)
    ] = 0.0,
    seed: Annotated[bool, typer.Option(help="Seed the demo campaign.")] = True,
    force: Annotated[
        bool,
        typer.Option(
            help="Replace a syncctl.toml or .env not written by the sandbox (each is kept as "
            "<name>.bak-<time> first)."
        ),
    ] = False,
    webhook_url: Annotated[
        str | None,
        typer.Option(
            "--webhook-url",
            metavar="URL",
            help="Post Stripe events to URL/webhooks/stripe and Mautic contact saves to "
            "URL/webhooks/mautic, signed with STRIPE_WEBHOOK_SECRET and MAUTIC_WEBHOOK_SECRET "
            "from the .env, retried on any answer but a 2xx (for `syncctl watch --listen`).",
        ),
    ] = None,
) -> None:
    """Serve the five emulated APIs on loopback until interrupted.

    Writes a ready syncctl.toml and .env pointing at them, so `syncctl reconcile`
    run from that directory talks to the sandbox. Files it wrote before are
    replaced and the previous sandbox's state dir is cleared (the services
    start afresh); other files are refused unless --force. With --webhook-url,
    Stripe and Mautic also send their webhooks there, as the vendors do
    (events from after the start; the seeded campaign's are not sent).

    \b
    Examples:
      syncctl sandbox serve --dir /tmp/campaign --latency 0.02
      syncctl sandbox serve --dir /tmp/campaign --webhook-url http://127.0.0.1:8787
    """
    from syncctl.sandbox import workdir
    from syncctl.sandbox.seed import seed_demo
    from syncctl.sandbox.stack import SERVICES, Sandbox

    if webhook_url is not None:
        _check_webhook_url(webhook_url)
    target = workdir.inspect(directory, force=force)  # before anything starts or is written
    ports = {name: port_base + i for i, name in enumerate(SERVICES)} if port_base else {}
    try:
        sandbox = Sandbox(latency=latency, ports=ports).start()
    except OSError as exc:
        raise SyncctlError(
            f"cannot listen on ports {port_base}-{port_base + 4}: {exc.strerror}",
            hint="choose other ports with --port-base, or --port-base 0 for any free ones",
        ) from None
    try:
        if seed:
            seed_demo(sandbox)
        notes = workdir.install(target, sandbox.files(target.state_dir))
        table = Table(title="syncctl sandbox", show_lines=False)
        table.add_column("service")
        table.add_column("base URL")
        for name, url in sandbox.urls.items():
            table.add_row(name, url)
        err.print(table)
        for note in notes:
            err.print(note, markup=False, soft_wrap=True)
        err.print(
            f"wrote {target.config_path} and {target.env_path} (secrets, mode 0600)", markup=False
        )
        if webhook_url is not None:
            for service, sender in sandbox.send_webhooks(webhook_url).items():
                err.print(f"{service} webhooks -> {sender.url}", markup=False)
        err.print("try: syncctl reconcile --dry-run    (Ctrl-C stops the sandbox)", markup=False)
        _serve_until_stopped(sandbox)
    finally:
        sandbox.stop()


def _check_webhook_url(url: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - urlsplit checks the range only when asked
    except ValueError:
        parts = parts._replace(netloc="")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise UsageError(
            f"--webhook-url {url!r} is not an http(s) base URL",
            hint="give where `syncctl watch --listen` serves, e.g. http://127.0.0.1:8787",
        )


def _serve_until_stopped(sandbox: Any) -> None:
    """Block until Ctrl-C or SIGTERM (tests replace this to act on the running sandbox)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


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


@contextlib.contextmanager
def _stop_on_signals(stop: StopRequest, *, quiet: bool) -> Iterator[None]:
    """Ctrl-C or SIGTERM while applying: finish the calls in flight, start no new one.

    Before the run applies anything (or at a second signal) it stops at
    once, as a plain Ctrl-C would.
    """

    def handle(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if not stop.applying or stop.is_set():
            raise KeyboardInterrupt
        stop.set(name)
        if not quiet:
            err.print(
                f"{name}: stopping after the actions in progress (again to quit at once)",
                markup=False,
                highlight=False,
            )

    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only (CliRunner in a worker thread)
        return
    before = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, previous in before.items():
            signal.signal(signum, previous)


def _echo_json(document: Any) -> None:
    """`typer.echo(json.dumps(document, indent=2))`, written in pieces as it is encoded.

    The same text, without building it whole first: at 100k contacts a
    first run's document is tens of megabytes, and `json.dumps` with an
    indent holds every small piece of it in a list before joining them.
    """
    buffer: list[str] = []
    size = 0
    for chunk in json.JSONEncoder(indent=2).iterencode(document):
        buffer.append(chunk)
        size += len(chunk)
        if size >= 1 << 16:
            typer.echo("".join(buffer), nl=False)
            buffer.clear()
            size = 0
    buffer.append("\n")
    typer.echo("".join(buffer), nl=False)


def _debug(message: str) -> None:
    logs.event(logs.LOGGER, logging.DEBUG, message)


def _report_run(state: AppState, result: RunResult, *, outcomes_logged: bool) -> None:
    """The end-of-run report: tables on a terminal, else lines through the log handler."""
    from syncctl.commands import render

    if state.rich:
        render.show_result(err, result)
        return
    if state.log_format == "json":
        if result.dry_run or result.refused:
            for action in result.plan.actions:
                logs.event(logs.REPORT, logging.INFO, "planned", **render.action_fields(action))
        level = logging.WARNING if not result.ok else logging.INFO
        logs.event(logs.REPORT, level, "run finished", **render.summary_fields(result))
        return
    for level, line in render.result_lines(result, outcomes_logged=outcomes_logged):
        logs.event(logs.REPORT, level, line)


def _out_console() -> Console:
    """Stdout, for commands whose report is their product (doctor, status, history)."""
    return Console(highlight=False)


def _lines(console: Console, lines: list[str]) -> None:
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


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


def _say(ctx: typer.Context, lines: list[str]) -> None:
    """A command's own report lines: on a terminal printed, else through the log handler."""
    state = _state(ctx)
    for line in lines:
        if state.rich and state.log_format == "text":
            if not state.quiet:
                err.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            logs.event(logs.REPORT, logging.INFO, line)


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


# -- set-up: init, schedule -------------------------------------------------------


@app.command()
def init(
    directory: Annotated[
        Path,
        typer.Option("--dir", help="Where to write syncctl.toml and .env.", file_okay=False),
    ] = Path("."),
    force: Annotated[
        bool,
        typer.Option("--force", help="Overwrite existing files (values already in .env are kept)."),
    ] = False,
) -> None:
    """Write a commented syncctl.toml and a .env template (mode 0600) for the secrets.

    Refuses to overwrite either file without --force. Then edit both and run
    `syncctl doctor`.

    \b
    Example:
      syncctl init --dir /etc/syncctl
    """
    from syncctl.commands.scaffold import write_files

    result = write_files(directory, force=force)
    err.print(f"wrote {result.config_path}: fill in your ids and URLs", markup=False)
    kept = f" (kept the values of {', '.join(result.kept)})" if result.kept else ""
    err.print(f"wrote {result.env_path} (mode 0600): fill in the secrets{kept}", markup=False)
    here = directory.resolve() == Path.cwd().resolve()
    step = "syncctl doctor" if here else f"cd {directory} && syncctl doctor"
    err.print(f"next: edit both, then run `{step}`", markup=False)


@app.command()
def alert(
    ctx: typer.Context,
    unit: Annotated[
        str,
        typer.Option(
            "--unit",
            metavar="UNIT",
            help="The unit that failed (systemd passes it: syncctl-alert@%n.service).",
        ),
    ],
) -> None:
    """Raise the alert for a failed syncctl unit (systemd's OnFailure= runs this).

    Writes one error line (the unit, the host, how the last run ended, where
    its log is) to stderr, so the journal has it; pings <ping_url>/fail with
    it when [alert] ping_url is set; runs [alert] command (e.g. mail) with it
    on stdin and in $SYNCCTL_ALERT_MESSAGE. Reads only the [alert] section
    when the rest of the config is broken, so a bad config still alerts.
    Exit 1 when the command fails. Run it by hand to test your hook.

    \b
    Examples:
      syncctl alert --unit syncctl.service
      syncctl --config /etc/syncctl/syncctl.toml alert --unit syncctl-watch.service
    """
    from syncctl.alert import alert_settings, last_run_line, run_alert

    state = _state(ctx)
    settings, problem, cfg = alert_settings(state.config_path, lambda: state.config)
    outcome = run_alert(unit, settings, config_problem=problem, last_run=last_run_line(cfg))
    logs.event(logs.LOGGER, logging.ERROR, outcome.line)
    if outcome.pinged is None and outcome.command is None:
        logs.event(
            logs.LOGGER,
            logging.INFO,
            "no [alert] ping_url or command is set: this line in the journal is the only alert",
        )
    if outcome.command:
        raise SyncctlError(
            f"[alert] command failed: {outcome.command}",
            hint="run it by hand with the same account to see why",
        )


class ScheduleKind(StrEnum):
    SYSTEMD = "systemd"
    CRON = "cron"


class ScheduleMode(StrEnum):
    TIMER = "timer"
    WATCH = "watch"


@app.command()
def schedule(
    ctx: typer.Context,
    kind: Annotated[ScheduleKind, typer.Argument(help="systemd timers or crontab lines.")],
    install: Annotated[
        bool,
        typer.Option(
            "--install",
            help="Write the units (systemd) or update your crontab (cron) instead of printing.",
        ),
    ] = False,
    user: Annotated[
        bool,
        typer.Option("--user", help="systemd: user units in ~/.config/systemd/user."),
    ] = False,
    mode: Annotated[
        ScheduleMode,
        typer.Option(
            "--mode",
            help="systemd: timer (a reconcile every --every minutes and a nightly audit) or "
            "watch (one long-running `syncctl watch` service, restarted on failure).",
            case_sensitive=False,
        ),
    ] = ScheduleMode.TIMER,
    every: Annotated[
        int | None,
        typer.Option(
            "--every",
            min=1,
            help="Minutes between runs: 5, 10, 15, 20, 30 (any divisor of 60) or 60, 120, ... "
            "(default 15; timer mode).",
        ),
    ] = None,
    audit_at: Annotated[
        str | None,
        typer.Option(
            "--audit-at",
            help="Time (HH:MM) of the nightly --full audit (default 03:30; timer mode).",
        ),
    ] = None,
    delay: Annotated[
        int | None,
        typer.Option(
            "--delay",
            min=0,
            help="systemd RandomizedDelaySec of the frequent timer (default 60; timer mode).",
        ),
    ] = None,
    user_name: Annotated[
        str | None,
        typer.Option(
            "--user-name",
            metavar="NAME",
            help="systemd: the account the system units run as (default: the user behind "
            "sudo, else the one running this).",
        ),
    ] = None,
    allow_root: Annotated[
        bool,
        typer.Option(
            "--allow-root",
            help="systemd: let the units run as root (refused otherwise: never needed).",
        ),
    ] = False,
) -> None:
    """Print (or install) a systemd timer or crontab lines that run reconcile.

    systemd: a Type=oneshot service and a timer (OnCalendar, Persistent=true,
    RandomizedDelaySec), plus a nightly `reconcile --full` audit service and
    timer. cron: the same two lines. No flock wrapper: syncctl locks its
    state directory itself. Commands use the absolute paths of this syncctl
    and of the config (and .env) in use; --log-format json is carried over.
    --mode watch (systemd): one syncctl-watch.service (Type=simple,
    Restart=on-failure) instead of the timers; the [watch] section of the
    config sets its interval, listen address and audit time.
    Both modes: each service has OnFailure=syncctl-alert@%n.service, a
    template running `syncctl alert --unit` for the unit that failed.

    \b
    Examples:
      syncctl --config /etc/syncctl/syncctl.toml schedule systemd
      syncctl schedule systemd --user --install
      syncctl schedule systemd --mode watch --install
      syncctl schedule cron --every 10 --install
    """
    from syncctl.commands import schedule as sched

    state = _state(ctx)
    if kind is ScheduleKind.CRON:
        for flag, given in (
            ("--user", user),
            ("--user-name", user_name),
            ("--allow-root", allow_root),
            ("--mode watch", mode is ScheduleMode.WATCH),
        ):
            if given:
                raise UsageError(
                    f"{flag} applies to systemd units only",
                    hint="cron cannot keep `syncctl watch` running: use systemd"
                    if flag == "--mode watch"
                    else f"drop {flag} for cron",
                )
    if mode is ScheduleMode.WATCH:
        timer_only = {"--every": every, "--audit-at": audit_at, "--delay": delay}
        for flag, value in timer_only.items():
            if value is not None:
                raise UsageError(
                    f"{flag} applies to --mode timer",
                    hint="watch takes its interval and audit time from the [watch] section of "
                    f"the config: drop {flag}",
                )
    every = 15 if every is None else every
    sched.check_every(every)
    cfg = state.config
    config_path = cfg.path.resolve()
    env_file = state.env_file
    if env_file is None:
        for candidate in (Path(".env"), config_path.parent / ".env"):
            if candidate.is_file():
                env_file = candidate
                break
    spec = sched.ScheduleSpec(
        executable=sched.find_executable(),
        config=config_path,
        env_file=env_file.resolve() if env_file is not None else None,
        every_minutes=every,
        audit_at=sched.parse_audit_at("03:30" if audit_at is None else audit_at),
        delay_seconds=60 if delay is None else delay,
        log_format=state.log_format,
        state_dir=cfg.settings.run.state_path.resolve(),
    )
    if kind is ScheduleKind.CRON:
        block = sched.crontab_block(spec)
        if install:
            sched.install_crontab(block)
            err.print("updated your crontab (crontab -l shows it)", markup=False)
        else:
            typer.echo(block, nl=False)
        return
    run_as = sched.choose_run_as(user_name=user_name, allow_root=allow_root, user_units=user)
    units = sched.systemd_units(
        spec, user_units=user, run_as=None if user else run_as.name, mode=str(mode.value)
    )
    directory = sched.unit_dir(user)
    if run_as.is_root:
        err.print(
            "warning: the units run as root (--allow-root): every run may read and change "
            "anything on this machine",
            markup=False,
            soft_wrap=True,
        )
    elif not user:
        err.print(
            f"the units run as {run_as.name} (User=; --user-name NAME chooses another account)",
            markup=False,
            soft_wrap=True,
        )
    if install:
        for path in sched.install_units(units, directory):
            err.print(f"wrote {path}", markup=False)
        err.print("now run:", markup=False)
        for line in sched.enable_commands(user, str(mode.value)):
            err.print(f"  {line}", markup=False)
        return
    for unit in units:
        typer.echo(f"# {directory / unit.name}\n{unit.text}")
    watch = " --mode watch" if mode is ScheduleMode.WATCH else ""
    err.print(
        f"install with: syncctl schedule systemd{' --user' if user else ''}{watch} --install",
        markup=False,
    )


# -- demo -----------------------------------------------------------------------


@app.command()
def demo(
    latency: Annotated[
        float, typer.Option(help="Seconds each emulated call takes.", min=0.0, max=60.0)
    ] = 0.0,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", help="Show syncctl watch answering a purchase and an opt-in in seconds."
        ),
    ] = False,
) -> None:
    """Run a real reconcile against the bundled sandbox: plan, apply, re-run.

    Needs no credentials: starts the five emulated services on loopback with a
    seeded campaign, shows the dry-run plan, applies it, shows that a second
    run has nothing to do, then a refund and a hold, each answered by the
    next run.

    With --watch: `syncctl watch` on a loopback port, the sandbox posting
    signed webhooks as Stripe and Mautic do; a purchase and an opt-in are
    each answered within seconds.

    \b
    Examples:
      syncctl demo
      syncctl demo --watch
    """
    from syncctl.commands.demo import story, watch_story

    console = Console(highlight=False)
    raise typer.Exit(watch_story(console, latency) if watch else story(console, latency))


def main() -> None:
    """Console-script entry point."""
    from syncctl.malloc import release_big_buffers

    release_big_buffers()
    app()
