"""`syncctl schedule systemd|cron`: run reconcile on a timer, plus a nightly audit.

systemd: a `Type=oneshot` service started by a timer (`OnCalendar`,
`Persistent=true` so a run missed while the machine was off happens at boot,
`RandomizedDelaySec` so many machines do not hit the APIs at the same
second), and a second service + timer for the nightly `reconcile --full`.
cron: the same two lines. No `flock` wrapper in either: syncctl takes its own
lock on the state directory, so an overlapping start exits 3 at once (the
frequent service counts that as success; a holder older than `[run]
lock_busy_fail_after` makes it exit 1) and the audit queues with `--wait`.

`--mode watch` (systemd only): one long-running `syncctl-watch.service`
(`Type=simple`, `Restart=on-failure`) instead of the timers; `syncctl watch`
runs its own cycles and nightly audit.

Both modes: every service has `OnFailure=syncctl-alert@%n.service`, a
template running `syncctl alert --unit <the failed unit>` (the journal line,
`[alert] ping_url`'s `/fail`, `[alert] command`).

Commands use absolute paths (the running syncctl executable, the config
file, the `.env` file when there is one) and run from the config's
directory, because cron and systemd start with an almost empty environment.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from syncctl.errors import StateError, UsageError

SERVICE = "syncctl"
AUDIT = "syncctl-audit"
WATCH = "syncctl-watch"
#: The OnFailure= template: `syncctl-alert@<failed unit>.service`.
ALERT = "syncctl-alert"
MODES = ("timer", "watch")
#: A crashed watch is restarted after this long; this many starts in the
#: window below make systemd give up: the unit fails and OnFailure= fires.
WATCH_RESTART_SEC = 30
WATCH_START_LIMIT_BURST = 5
WATCH_START_LIMIT_INTERVAL = "1h"
BEGIN = "# BEGIN syncctl (written by `syncctl schedule cron`)"
END = "# END syncctl"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")


@dataclass(frozen=True)
class ScheduleSpec:
    """What to schedule: how syncctl is called, how often, and when the audit runs."""

    executable: tuple[str, ...]
    config: Path
    env_file: Path | None
    every_minutes: int = 15
    audit_at: str = "03:30"
    delay_seconds: int = 60
    log_format: str = "text"
    state_dir: Path | None = None

    @property
    def uses_tmp(self) -> bool:
        """Whether syncctl's files live under /tmp, which PrivateTmp= would hide."""
        paths = [self.config, self.env_file, self.state_dir, Path(self.executable[0])]
        return any(
            p is not None and (p.is_relative_to("/tmp") or p.is_relative_to("/var/tmp"))
            for p in paths
        )

    @property
    def workdir(self) -> Path:
        return self.config.parent

    def argv(self, *command: str, quiet: bool = False) -> list[str]:
        args = [*self.executable]
        if self.log_format != "text":
            args += ["--log-format", self.log_format]
        if quiet:
            args.append("-q")
        args += ["--config", str(self.config)]
        if self.env_file is not None:
            args += ["--env-file", str(self.env_file)]
        return [*args, *command]


@dataclass(frozen=True)
class UnitFile:
    name: str
    text: str


def find_executable() -> tuple[str, ...]:
    """The absolute command that runs this syncctl."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "syncctl":
        found = shutil.which(str(argv0)) if not argv0.is_absolute() else str(argv0)
        if found:
            return (str(Path(found).absolute()),)
    beside = Path(sys.executable).with_name("syncctl")
    if beside.is_file() and os.access(beside, os.X_OK):
        return (str(beside.absolute()),)
    on_path = shutil.which("syncctl")
    if on_path:
        return (str(Path(on_path).absolute()),)
    return (str(Path(sys.executable).absolute()), "-m", "syncctl")


def parse_audit_at(text: str) -> str:
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", text.strip())
    if not match:
        raise UsageError(f"--audit-at {text!r} is not a time", hint="use HH:MM, e.g. 03:30")
    return f"{int(match.group(1)):02d}:{match.group(2)}"


def check_every(minutes: int) -> None:
    """A calendar (cron's */N, systemd's 0/N) repeats evenly only when N divides
    the hour (or, in hours, the day): else the last run of each hour comes early."""
    if (minutes < 60 and 60 % minutes == 0) or (minutes % 60 == 0 and 24 % (minutes // 60) == 0):
        return
    choices = ", ".join(str(m) for m in range(1, 60) if 60 % m == 0)
    hours = ", ".join(str(h * 60) for h in range(1, 25) if 24 % h == 0)
    raise UsageError(
        f"--every {minutes}: runs must divide the hour or the day evenly",
        hint=f"use {choices} minutes, or {hours}",
    )


# -- systemd ------------------------------------------------------------------------


# systemd.syntax(7) and systemd.service(5) read a unit's values in two ways,
# so each value is escaped for the way its setting reads it:
# - command lines (ExecStart=), like Environment= and the path lists
#   (ReadWritePaths=, ...), are split into words: a word with a space,
#   quote, backslash or `;` goes in double quotes, where C escapes apply
#   (`\\`, `\"`, `\xNN`); `$` must be `$$` (ExecStart= expands variables);
# - single-path settings (WorkingDirectory=) take the rest of the line as it
#   is: no quotes (they would become part of the path, which systemd then
#   rejects as not absolute) and no C escapes (`\x20` would stay four
#   characters), so a space is written as a space;
# and every value expands specifiers, so `%` is always written `%%`.
_NEEDS_QUOTES = re.compile(r"[\s\"'\\;]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _exec_word(arg: str) -> str:
    """One word of a command line (ExecStart=), as systemd splits and unescapes it."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if escaped and not _NEEDS_QUOTES.search(escaped):
        return escaped
    escaped = escaped.replace("\\", "\\\\").replace('"', '\\"')
    escaped = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", escaped)
    return f'"{escaped}"'


def _exec(args: list[str]) -> str:
    return " ".join(_exec_word(a) for a in args)


def _path_value(path: Path) -> str:
    """A single-path setting's value (WorkingDirectory=): the path itself, `%` doubled.

    What such a setting cannot carry is refused: a line break or control
    character, and spaces or a backslash at the end of the line (systemd
    strips the former and reads the latter as a line continuation).
    """
    text = str(path)
    if _CONTROL.search(text) or text != text.rstrip() or text.endswith("\\"):
        raise UsageError(
            f"{text!r} cannot be written into a systemd unit",
            hint="move the config into a directory whose path has no control characters "
            "and does not end in a space or a backslash",
        )
    return text.replace("%", "%%")


def on_calendar(minutes: int) -> str:
    if minutes < 60:
        return f"*:0/{minutes}"
    return f"0/{minutes // 60}:00"


#: In [Unit] of every service: a failure starts the alert template's instance
#: for it (`%n`: the failed unit's full name, e.g. syncctl.service).
ON_FAILURE = f"OnFailure={ALERT}@%n.service\n"


def systemd_units(
    spec: ScheduleSpec, *, user_units: bool, run_as: str | None = None, mode: str = "timer"
) -> list[UnitFile]:
    """The units of `mode`: "timer" (the frequent run's service and timer and the
    nightly audit's) or "watch" (one long-running service); the alert template too."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    who = "" if user_units or not run_as else f"User={run_as}\n"
    # PrivateTmp= gives the unit its own /tmp: files kept there would vanish.
    hardening = "NoNewPrivileges=yes\n" + ("" if spec.uses_tmp else "PrivateTmp=yes\n")
    alert = _alert_template(spec, who, private_tmp="" if spec.uses_tmp else "PrivateTmp=yes\n")
    if mode == "watch":
        return [_watch_service(spec, who, hardening, user_units=user_units), alert]
    return [*_timer_units(spec, who, hardening), alert]


_HEADER = "# Written by `syncctl schedule systemd`.\n"


def _alert_template(spec: ScheduleSpec, who: str, *, private_tmp: str) -> UnitFile:
    """`syncctl-alert@.service`: `syncctl alert --unit %i`, %i being the failed unit.

    Without NoNewPrivileges=: an `[alert] command` of `mail` hands the message
    to Postfix's setgid `postdrop`, which that setting would make fail.
    """
    text = (
        f"{_HEADER}"
        "# Started by OnFailure= of syncctl's services, one instance per failed unit.\n"
        "# To alert another way, set [alert] command (or ping_url) in the config, or\n"
        "# override ExecStart= with `systemctl edit syncctl-alert@.service`.\n"
        "[Unit]\n"
        "Description=syncctl alert: %i failed\n\n"
        "[Service]\nType=oneshot\n"
        f"WorkingDirectory={_path_value(spec.workdir)}\n"
        f"ExecStart={_exec(spec.argv('alert', '--unit'))} %i\n"
        "TimeoutStartSec=2min\n"
        f"{who}"
        "# No NoNewPrivileges=: `mail` may hand over to a setgid helper (Postfix's postdrop).\n"
        f"{private_tmp}"
    )
    return UnitFile(f"{ALERT}@.service", text)


def _watch_service(spec: ScheduleSpec, who: str, hardening: str, *, user_units: bool) -> UnitFile:
    """`syncctl-watch.service`: `syncctl watch`, restarted after a crash."""
    wanted_by = "default.target" if user_units else "multi-user.target"
    text = (
        f"{_HEADER}[Unit]\n"
        "Description=syncctl watch: Stripe, Shopware, Mautic, Discord, EspoCRM in step, "
        "woken by webhooks\n"
        "Wants=network-online.target\nAfter=network-online.target\n"
        f"{ON_FAILURE}"
        f"# Restarted after a crash; after {WATCH_START_LIMIT_BURST} starts within "
        f"{WATCH_START_LIMIT_INTERVAL} systemd gives up:\n"
        "# the unit fails and OnFailure= raises the alert.\n"
        f"StartLimitIntervalSec={WATCH_START_LIMIT_INTERVAL}\n"
        f"StartLimitBurst={WATCH_START_LIMIT_BURST}\n\n"
        "[Service]\nType=simple\n"
        f"WorkingDirectory={_path_value(spec.workdir)}\n"
        f"ExecStart={_exec(spec.argv('watch'))}\n"
        "Restart=on-failure\n"
        f"RestartSec={WATCH_RESTART_SEC}\n"
        "# 2: bad config or command line: a restart cannot help; fail and alert at once.\n"
        "RestartPreventExitStatus=2\n"
        f"{who}{hardening}\n"
        f"[Install]\nWantedBy={wanted_by}\n"
    )
    return UnitFile(f"{WATCH}.service", text)


def _timer_units(spec: ScheduleSpec, who: str, hardening: str) -> list[UnitFile]:
    """The service and timer for the frequent run and for the nightly audit."""
    common = (
        f"Wants=network-online.target\nAfter=network-online.target\n{ON_FAILURE}\n"
        "[Service]\nType=oneshot\n"
        f"WorkingDirectory={_path_value(spec.workdir)}\n"
    )
    header = _HEADER
    service = (
        f"{header}[Unit]\n"
        "Description=syncctl reconcile: Stripe, Shopware, Mautic, Discord, EspoCRM in step\n"
        f"{common}"
        f"ExecStart={_exec(spec.argv('reconcile'))}\n"
        "# 3: another syncctl run holds the lock (e.g. the nightly audit): not a failure;\n"
        "# held for over [run] lock_busy_fail_after, the run exits 1 instead.\n"
        "SuccessExitStatus=3\n"
        "TimeoutStartSec=1h\n"
        f"{who}{hardening}"
    )
    timer = (
        f"{header}[Unit]\n"
        f"Description=Run syncctl reconcile every {spec.every_minutes} minutes\n\n"
        "[Timer]\n"
        f"OnCalendar={on_calendar(spec.every_minutes)}\n"
        "Persistent=true\n"
        f"RandomizedDelaySec={spec.delay_seconds}\n"
        f"Unit={SERVICE}.service\n\n"
        "[Install]\nWantedBy=timers.target\n"
    )
    audit = (
        f"{header}[Unit]\n"
        "Description=syncctl nightly audit: reconcile --full re-reads every service\n"
        f"{common}"
        f"ExecStart={_exec(spec.argv('reconcile', '--full', '--wait'))}\n"
        "TimeoutStartSec=3h\n"
        f"{who}{hardening}"
    )
    audit_timer = (
        f"{header}[Unit]\n"
        f"Description=Run the syncctl audit nightly at {spec.audit_at}\n\n"
        "[Timer]\n"
        f"OnCalendar=*-*-* {spec.audit_at}:00\n"
        "Persistent=true\n"
        "RandomizedDelaySec=15min\n"
        f"Unit={AUDIT}.service\n\n"
        "[Install]\nWantedBy=timers.target\n"
    )
    return [
        UnitFile(f"{SERVICE}.service", service),
        UnitFile(f"{SERVICE}.timer", timer),
        UnitFile(f"{AUDIT}.service", audit),
        UnitFile(f"{AUDIT}.timer", audit_timer),
    ]


def unit_dir(user_units: bool) -> Path:
    if not user_units:
        return SYSTEM_UNIT_DIR
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


@dataclass(frozen=True)
class Account:
    """A user account of this machine."""

    name: str
    uid: int

    @property
    def is_root(self) -> bool:
        return self.uid == 0


def _account(name: str) -> Account | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return Account(entry.pw_name, entry.pw_uid)


def effective_account() -> Account:
    """The account this process runs as (root under sudo)."""
    uid = os.geteuid()
    try:
        return Account(pwd.getpwuid(uid).pw_name, uid)
    except KeyError:  # a uid without a passwd entry (containers)
        return Account(str(uid), uid)


def invoking_account() -> Account:
    """Who runs this command: the user behind `sudo`, else the effective user."""
    behind_sudo = os.environ.get("SUDO_USER")
    found = _account(behind_sudo) if behind_sudo else None
    return found if found is not None else effective_account()


_ROOT_HINT = (
    "pass --user-name NAME, the account that owns the config, the .env and the state_dir; "
    "or --allow-root if the units really must run as root"
)


def choose_run_as(*, user_name: str | None, allow_root: bool, user_units: bool) -> Account:
    """The account the units will run as: `User=` of system units, or the user units' owner.

    Never root unless asked for with `allow_root`: a reconcile run needs
    the config, the secrets and the state directory, nothing a root account
    adds, and units written from a root shell (no `SUDO_USER`) would
    otherwise run as root without anyone choosing it.
    """
    if user_units:
        if user_name is not None:
            raise UsageError(
                "--user-name applies to system units",
                hint="user units run as the account that installs them: drop --user-name, "
                "or drop --user",
            )
        owner = effective_account()
        if owner.is_root and not allow_root:
            raise UsageError(
                "user units installed as root would run every reconcile as root",
                hint="run `syncctl schedule systemd --user` (without sudo) as the account "
                "that should run syncctl, or pass --allow-root",
            )
        return owner
    if user_name is None:
        account = invoking_account()
        why = "syncctl runs as root, and no SUDO_USER names the account behind sudo"
    else:
        found = _account(user_name)
        if found is None:
            raise UsageError(
                f"--user-name {user_name}: no such account on this machine",
                hint=f"create it (e.g. `useradd --system {user_name}`) or name an existing one",
            )
        account = found
        why = f"--user-name {user_name} names root"
    if account.is_root and not allow_root:
        raise UsageError(f"the units would run as root: {why}", hint=_ROOT_HINT)
    return account


def install_units(units: list[UnitFile], directory: Path) -> list[Path]:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for unit in units:
            path = directory / unit.name
            path.write_text(unit.text, encoding="utf-8")
            written.append(path)
    except OSError as exc:
        raise StateError(
            f"cannot write the units into {directory}: {exc.strerror or exc}",
            hint="run with sudo for system units, or use --user for user units",
        ) from None
    return written


def enable_commands(user_units: bool, mode: str = "timer") -> list[str]:
    ctl = "systemctl --user" if user_units else "sudo systemctl"
    if mode == "watch":
        lines = [
            f"{ctl} daemon-reload",
            f"{ctl} disable --now {SERVICE}.timer {AUDIT}.timer   # if installed: watch "
            "runs its own cycles and audit",
            f"{ctl} enable --now {WATCH}.service",
            f"{ctl} status {WATCH}.service",
        ]
    else:
        lines = [
            f"{ctl} daemon-reload",
            f"{ctl} enable --now {SERVICE}.timer {AUDIT}.timer",
            f"{ctl} list-timers '{SERVICE}*'",
        ]
    if user_units:
        lines.append("loginctl enable-linger $USER   # keep user timers running after logout")
    return lines


# -- cron ---------------------------------------------------------------------------


def _cron_command(args: list[str], workdir: Path) -> str:
    command = f"cd {shlex.quote(str(workdir))} && " + " ".join(shlex.quote(a) for a in args)
    return command.replace("%", "\\%")  # cron turns a bare % into a newline


def cron_schedule(minutes: int) -> str:
    if minutes < 60:
        return f"*/{minutes} * * * *"
    hours = minutes // 60
    return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"


def crontab_block(spec: ScheduleSpec) -> str:
    """Two crontab lines between markers (so --install can replace them later)."""
    hour, minute = spec.audit_at.split(":")
    frequent = _cron_command(spec.argv("reconcile", quiet=True), spec.workdir)
    audit = _cron_command(spec.argv("reconcile", "--full", "--wait", quiet=True), spec.workdir)
    return (
        f"{BEGIN}\n"
        "# syncctl locks its state directory itself: no flock wrapper. -q: output (and\n"
        "# so cron mail) only for warnings and errors; exit 3 = another run was busy\n"
        "# (silent, unless that run has held the lock for hours).\n"
        f"{cron_schedule(spec.every_minutes)} {frequent}\n"
        f"{int(minute)} {int(hour)} * * * {audit}\n"
        f"{END}\n"
    )


def merge_crontab(current: str, block: str) -> str:
    """`current` with any earlier syncctl block replaced by `block`."""
    kept: list[str] = []
    inside = False
    for line in current.splitlines():
        if line.strip() == BEGIN:
            inside = True
            continue
        if inside:
            if line.strip() == END:
                inside = False
            continue
        kept.append(line)
    text = "\n".join(kept).rstrip("\n")
    return (text + "\n" if text else "") + block


def install_crontab(block: str) -> str:
    """Replace syncctl's lines in the user's crontab; returns the new crontab."""
    crontab = shutil.which("crontab")
    if crontab is None:
        raise StateError("no crontab command found", hint="install cron, or use systemd timers")
    listed = subprocess.run([crontab, "-l"], capture_output=True, text=True, check=False)
    current = listed.stdout if listed.returncode == 0 else ""  # 1: "no crontab for user"
    merged = merge_crontab(current, block)
    written = subprocess.run(
        [crontab, "-"], input=merged, capture_output=True, text=True, check=False
    )
    if written.returncode != 0:
        detail = " ".join(written.stderr.split())[:200] or f"exit {written.returncode}"
        raise StateError(f"crontab refused the new table: {detail}")
    return merged
