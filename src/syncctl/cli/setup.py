"""Set-up commands: config show, sandbox serve, init, alert, schedule, demo."""

from __future__ import annotations

import logging
import shlex
import signal
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.table import Table

from syncctl import config as config_mod
from syncctl import logs
from syncctl.errors import SyncctlError, UsageError

if TYPE_CHECKING:
    # Typer vendors click; its base Context (what Group.invoke receives) is not re-exported.

    pass

from syncctl.cli.base import _state, app, config_app, err, sandbox_app

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
    # The options that chose who the units run as must come again, or the
    # install is refused (as root) or writes other units than these.
    who = f" --user-name {shlex.quote(user_name)}" if user_name else ""
    who += " --allow-root" if allow_root else ""
    err.print(
        f"install with: syncctl schedule systemd{' --user' if user else ''}{watch}{who} --install",
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
