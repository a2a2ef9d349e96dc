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
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import unquote, urlsplit

import typer
from rich.console import Console
from typer._click.exceptions import UsageError as ClickUsageError

from syncctl import __version__, logs
from syncctl import config as config_mod
from syncctl.engine.stop import StopRequest
from syncctl.entry import INTERRUPTED
from syncctl.errors import LockBusy, SyncctlError

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


@contextlib.contextmanager
def _stop_on_signals(stop: StopRequest, *, quiet: bool) -> Iterator[None]:
    """Ctrl-C or SIGTERM while applying: finish the calls in flight, start no new one.

    Before the run applies anything (or at a second signal) it stops at
    once, as a plain Ctrl-C would.
    """

    def handle(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if not stop.applying or stop.is_set():
            # Remembered too: a KeyboardInterrupt raised inside the import
            # machinery is swallowed, and the run must not go on to apply.
            stop.set(name)
            raise KeyboardInterrupt
        stop.set(name)
        if not quiet:
            err.print(
                f"{name}: stopping after the actions in progress (again to quit at once)",
                markup=False,
                highlight=False,
            )

    if INTERRUPTED.is_set():  # a Ctrl-C while syncctl started, swallowed by an import
        stop.set("SIGINT")
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


def _say(ctx: typer.Context, lines: list[str]) -> None:
    """A command's own report lines: on a terminal printed, else through the log handler."""
    state = _state(ctx)
    for line in lines:
        if state.rich and state.log_format == "text":
            if not state.quiet:
                err.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            logs.event(logs.REPORT, logging.INFO, line)
