"""The `syncctl` command line: thin Typer commands over the library.

Every error the library raises is a `SyncctlError`; `_Group.invoke` turns it
into one line on stderr and the documented exit code, so no command prints a
traceback for a condition an operator can fix.

Exit codes (README, "Exit codes"):
  0  success: in sync, or every planned action done
  1  an action or a service failed (details on stderr / in --json)
  2  bad config, secret or command line (with --detailed-exitcode: changes
     were pending or applied, and config errors exit 1 instead)
  3  another run holds the state directory's lock
  4  the plan exceeded max_actions and was not applied
"""

from __future__ import annotations

import json
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from syncctl import __version__
from syncctl import config as config_mod
from syncctl.errors import SyncctlError, UsageError

err = Console(stderr=True, highlight=False)


class _Group(typer.core.TyperGroup):
    """Maps library errors to one clean line and an exit code."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SyncctlError as exc:
            err.print(f"syncctl: error: {exc}", markup=False, soft_wrap=True)
            state = ctx.find_object(AppState)
            code = exc.exit_code
            if state is not None and state.detailed_exitcode and code == 2:
                code = 1  # with --detailed-exitcode, 2 means "changes", never an error
            raise typer.Exit(code) from None
        except KeyboardInterrupt:
            err.print("syncctl: interrupted", markup=False)
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=_Group,
    name="syncctl",
    help="Keep Stripe, Shopware, Mautic, Discord and EspoCRM in step for a campaign.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
sandbox_app = typer.Typer(
    help="Run the bundled local emulators of the five services.", no_args_is_help=True
)
app.add_typer(config_app, name="config")
app.add_typer(sandbox_app, name="sandbox")


@dataclass
class AppState:
    """What the global options decided; commands load the config through it."""

    config_path: Path | None = None
    env_file: Path | None = None
    detailed_exitcode: bool = False
    _config: config_mod.Config | None = field(default=None, repr=False)

    @property
    def config(self) -> config_mod.Config:
        if self._config is None:
            self._config = config_mod.load(self.config_path, self.env_file)
        return self._config


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
) -> None:
    """Keep Stripe, Shopware, Mautic, Discord and EspoCRM in step for a campaign.

    Example: syncctl --config /etc/syncctl/syncctl.toml reconcile --dry-run
    """
    ctx.obj = AppState(config_path=config, env_file=env_file)


def _state(ctx: typer.Context) -> AppState:
    obj = ctx.find_object(AppState)
    return obj if obj is not None else AppState()


# -- config ---------------------------------------------------------------------


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the resolved configuration, secrets masked.

    Example: syncctl --config syncctl.toml config show
    """
    cfg = _state(ctx).config
    console = Console(highlight=False)
    console.print(f"# config: {cfg.path}", markup=False)
    data = cfg.settings.model_dump()
    for section, values in data.items():
        _print_section(console, section, values)
    console.print("\n# secrets", markup=False)
    for name in config_mod.SECRET_NAMES:
        source = cfg.secrets.sources.get(name)
        shown = f"******** (from {source})" if source else "MISSING"
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
        int, typer.Option(help="First of five consecutive loopback ports (0: any free ports).")
    ] = 8710,
    latency: Annotated[float, typer.Option(help="Seconds each emulated call takes.")] = 0.0,
    seed: Annotated[bool, typer.Option(help="Seed the demo campaign.")] = True,
    force: Annotated[
        bool, typer.Option(help="Overwrite a syncctl.toml not written by the sandbox.")
    ] = False,
) -> None:
    """Serve the five emulated APIs on loopback until interrupted.

    Writes a ready syncctl.toml and .env pointing at them, so `syncctl reconcile`
    run from that directory talks to the sandbox.

    Example: syncctl sandbox serve --dir /tmp/campaign --latency 0.02
    """
    from syncctl.sandbox.seed import seed_demo
    from syncctl.sandbox.stack import SERVICES, Sandbox

    target = directory / "syncctl.toml"
    if (
        target.exists()
        and not force
        and not target.read_text().startswith("# Written by `syncctl sandbox`")
    ):
        raise SyncctlError(
            f"{target} exists and was not written by the sandbox",
            hint="use --dir elsewhere, or --force to overwrite it",
        )
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
        config_path, env_path = sandbox.write_files(directory)
        table = Table(title="syncctl sandbox", show_lines=False)
        table.add_column("service")
        table.add_column("base URL")
        for name, url in sandbox.urls.items():
            table.add_row(name, url)
        err.print(table)
        err.print(f"wrote {config_path} and {env_path} (secrets, mode 0600)", markup=False)
        err.print("try: syncctl reconcile --dry-run    (Ctrl-C stops the sandbox)", markup=False)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while True:
            time.sleep(3600)
    finally:
        sandbox.stop()


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
        typer.Option("--max-actions", min=1, help="Allow a plan this large (default: config)."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Queue behind a running syncctl instead of exiting.")
    ] = False,
) -> None:
    """Bring every service to the desired state; apply only what is missing.

    Example: syncctl reconcile --dry-run      (what would change)
    Example: syncctl reconcile --full --json  (nightly audit, machine-readable)
    """
    from syncctl.reconcile import reconcile as run
    from syncctl.render import show_result

    state = _state(ctx)
    state.detailed_exitcode = detailed_exitcode
    cfg = state.config
    result = run(
        cfg,
        dry_run=dry_run,
        full=full,
        max_actions=max_actions,
        wait=wait,
        progress=_progress,
    )
    show_result(err, result)
    if json_out:
        typer.echo(json.dumps(result.to_json(), indent=2))
    raise typer.Exit(result.exit_code(detailed_exitcode))


def _progress(message: str) -> None:
    if err.is_terminal:
        err.print(f"[dim]{message}...[/dim]")


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
) -> None:
    """Revoke a contact's invite, mint a new one, store it, verify it, email it.

    Example: syncctl reissue-invite backer@example.com --dry-run
    """
    from syncctl.reissue import reissue
    from syncctl.render import plan_table, show_result

    cfg = _state(ctx).config

    def confirm(plan: Any) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise UsageError(
                "reissue-invite needs confirmation", hint="pass --yes when not on a terminal"
            )
        err.print(plan_table(plan, title="Reissue"))
        return typer.confirm("Apply these changes?", default=False, err=True)

    result = reissue(cfg, email, dry_run=dry_run, send_email=not no_email, confirm=confirm)
    if dry_run:
        err.print(plan_table(result.plan, title="Reissue (dry run)"))
    elif not result.outcomes:
        err.print("aborted: nothing was changed", markup=False)
        raise typer.Exit(1)
    else:
        show_result(err, result)
    if json_out:
        typer.echo(json.dumps(result.to_json(), indent=2))
    raise typer.Exit(result.exit_code(False))


# -- demo -----------------------------------------------------------------------


@app.command()
def demo(
    latency: Annotated[float, typer.Option(help="Seconds each emulated call takes.")] = 0.0,
) -> None:
    """Run a real reconcile against the bundled sandbox: plan, apply, re-run.

    Needs no credentials: starts the five emulated services on loopback with a
    seeded campaign, shows the dry-run plan, applies it, then shows that a
    second run has nothing to do.

    Example: syncctl demo
    """
    import tempfile

    from syncctl.reconcile import reconcile as run
    from syncctl.render import calls_line, outcome_table, plan_table, show_result
    from syncctl.sandbox.seed import seed_demo
    from syncctl.sandbox.stack import Sandbox

    console = Console(highlight=False)
    with (
        tempfile.TemporaryDirectory(prefix="syncctl-demo-") as tmp,
        Sandbox(latency=latency) as sandbox,
    ):
        seed_demo(sandbox)
        config_path, env_path = sandbox.write_files(Path(tmp))
        cfg = config_mod.load(config_path, env_path)
        console.rule("1. dry run: what syncctl would change")
        planned = run(cfg, dry_run=True)
        console.print(plan_table(planned.plan))
        for note in planned.plan.notes:
            console.print(f"note: {note.subject}: {note.message}", markup=False)
        console.print(calls_line(planned), markup=False)
        console.rule("2. reconcile: applying it")
        applied = run(cfg)
        console.print(outcome_table(applied.outcomes))
        console.print(calls_line(applied), markup=False)
        console.rule("3. reconcile again: nothing left to do")
        again = run(cfg)
        show_result(console, again)
        console.print(
            f"sandbox now holds {len(sandbox.shopware.codes())} coupon code(s), "
            f"{len(sandbox.discord.invites())} live invite(s), "
            f"{len(sandbox.mautic.sent())} email(s) sent, {len(sandbox.espocrm.leads())} lead(s)",
            markup=False,
        )
    failed = applied.failed or again.failed or not again.plan.is_empty
    raise typer.Exit(1 if failed else 0)


def main() -> None:
    """Console-script entry point."""
    app()
