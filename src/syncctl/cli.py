"""The `syncctl` command line: thin Typer commands over the library.

Every error the library raises is a `SyncctlError`; `_Group.invoke` turns it
into one line on stderr and the documented exit code, so no command prints a
traceback for a condition an operator can fix.

Exit codes: 0 success (in sync); 1 an action or a service failed; 2 bad
config, secret or usage; 3 another run holds the lock; with
`--detailed-exitcode`, 2 also means changes were pending or applied.
"""

from __future__ import annotations

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
from syncctl.errors import SyncctlError

err = Console(stderr=True, highlight=False)


class _Group(typer.core.TyperGroup):
    """Maps library errors to one clean line and an exit code."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SyncctlError as exc:
            err.print(f"syncctl: error: {exc}", markup=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
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


def main() -> None:
    """Console-script entry point."""
    app()
