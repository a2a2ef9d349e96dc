"""Telling someone when runs stop succeeding: pings, and the OnFailure= hook.

Two ways, meant to be used together:

- **A dead-man's switch** (`[alert] ping_url`, Healthchecks.io's URL scheme):
  a run pings `<ping_url>/start` once it holds the lock, then `<ping_url>`
  when it succeeds or `<ping_url>/fail` when it does not, with its one-line
  summary as the body; all three carry the same `?rid=<uuid>` so the
  service pairs them (healthchecks.io/docs/measuring_script_run_time). The
  service alerts when a failure arrives, and when pings stop coming (a
  timer that no longer fires, a host that is down), which no hook on the
  host itself can notice. A ping never fails the run: one attempt, a short
  timeout, and a failing ping is logged once (then again only after it
  worked in between). The URL's path is its token: it is added to the log
  filter's secrets and shown only as `https://host/[redacted]`.
- **`syncctl alert --unit UNIT`** (`run_alert`), started by the units'
  `OnFailure=syncctl-alert@%n.service`: one error line for the journal,
  `<ping_url>/fail` at once, and `[alert] command` (mail, a chat webhook,
  ...) with the line on stdin. It works from the `[alert]` section alone,
  so a config broken elsewhere (the very failure being reported) still
  alerts.

For `syncctl watch` (one process, many cycles): keep one `Pinger` for the
process and make a `RunPings(pinger)` per cycle; pass its `start` as the
engine's `on_start`, then call `finish(result)` (or `fail(line)` when the
cycle raised). `Pinger` logs a failing ping once per outage, not per cycle.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
import tomllib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlencode, urlsplit

import httpx
from pydantic import ValidationError

from syncctl import __version__, logs
from syncctl.config import AlertSettings, Config, find_config, redact_url
from syncctl.errors import ConfigError, SyncctlError

if TYPE_CHECKING:
    from syncctl.engine.reconcile import RunResult

#: Seconds a ping may take (connect + answer); a run waits at most this per ping.
PING_TIMEOUT = 5.0
#: Seconds `[alert] command` may run.
COMMAND_TIMEOUT = 60.0
#: Longest ping body or alert line sent (Healthchecks keeps 100 kB of a body).
MAX_BODY = 10_000

PingKind = Literal["start", "success", "fail"]
_SUFFIX: Mapping[PingKind, str] = {"start": "/start", "success": "", "fail": "/fail"}


def _secret_parts(url: str) -> list[str]:
    """What in a ping URL is a credential: its path (the uuid, or ping key and slug)."""
    parts = urlsplit(url)
    path = parts.path.strip("/")
    return [p for p in (path, parts.path, parts.query) if p]


class Pinger:
    """Sends Healthchecks-style pings to one URL; never raises, logs trouble once."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = PING_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        #: The URL as it may be shown: scheme and host only.
        self.shown = redact_url(url)
        self.timeout = timeout
        self._transport = transport
        self._failing = False
        self._lock = threading.Lock()
        logs.add_secrets(_secret_parts(url))

    def target(self, kind: PingKind, rid: str | None = None) -> str:
        """The URL a `kind` ping goes to (suffix on the path, `rid` in the query)."""
        parts = urlsplit(self.url)
        query = parts.query
        if rid:
            query = (query + "&" if query else "") + urlencode({"rid": rid})
        return parts._replace(path=parts.path + _SUFFIX[kind], query=query).geturl()

    def ping(self, kind: PingKind, body: str = "", *, rid: str | None = None) -> bool:
        """POST one ping; True when the service answered 2xx. Never raises."""
        problem: str | None = None
        try:
            with httpx.Client(
                timeout=self.timeout,
                transport=self._transport,
                headers={"User-Agent": f"syncctl/{__version__}"},
            ) as client:
                content = logs.redact(body)[:MAX_BODY].encode()
                response = client.post(self.target(kind, rid), content=content)
            if not response.is_success:
                problem = f"HTTP {response.status_code}"
        except Exception as exc:  # a ping must never fail the run
            problem = logs.redact(f"{type(exc).__name__}: {exc}".rstrip(": "))
        self._note(kind, problem)
        return problem is None

    def _note(self, kind: PingKind, problem: str | None) -> None:
        with self._lock:
            was_failing, self._failing = self._failing, problem is not None
        if problem is None:
            if was_failing:
                logs.event(logs.LOGGER, logging.INFO, f"alert pings reach {self.shown} again")
            return
        level = logging.DEBUG if was_failing else logging.WARNING
        logs.event(
            logs.LOGGER,
            level,
            f"alert ping ({kind}) to {self.shown} failed: {problem}; the run goes on",
        )


def pinger_for(config: Config) -> Pinger | None:
    """The config's pinger, or None when `[alert] ping_url` is empty."""
    url = config.settings.alert.ping_url
    return Pinger(url) if url else None


@dataclass
class RunPings:
    """One run's pings, under one run id: `start` once it holds the lock, then
    `finish` (or `fail`). Without a pinger every call does nothing."""

    pinger: Pinger | None
    rid: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: bool = False
    finished: bool = False

    def start(self) -> None:
        if self.pinger is not None and not self.started:
            self.started = True
            self.pinger.ping("start", rid=self.rid)

    def finish(self, result: RunResult) -> None:
        """Success when the run would exit 0, else /fail; the summary line as body."""
        ok = result.exit_code(False) == 0
        self._end("success" if ok else "fail", summary_line(result))

    def fail(self, line: str) -> None:
        """A run that ended in an error (or could not start: the lock held too long)."""
        self._end("fail", line)

    def _end(self, kind: PingKind, body: str) -> None:
        if self.pinger is not None and not self.finished:
            self.finished = True
            self.pinger.ping(kind, body, rid=self.rid)


def summary_line(result: RunResult) -> str:
    """The run in one line: mode, what went wrong, outcomes, calls, duration."""
    from syncctl.commands import render

    parts = [render.run_label(result)]
    if refused := render.refusal_line(result):
        parts.append(refused)
    if stopped := render.interrupted_line(result):
        parts.append(stopped)
    parts += [f"could not read {s}: {e}" for s, e in sorted(result.observe_errors.items())]
    unresolved = sum(1 for r in result.recovered if r.result == "unresolved")
    if unresolved:
        parts.append(f"{unresolved} interrupted write(s) still unresolved")
    if result.outcomes or not result.plan.is_empty:
        parts.append(render.outcome_line(result.outcomes))
    elif not result.observe_errors:
        parts.append(render.empty_plan_line(result))
    if result.held:
        parts.append(f"{len(result.held)} refused before with the same inputs (held)")
    parts.append(render.calls_line(result))
    return " ".join("; ".join(parts).split())[:MAX_BODY]


# -- `syncctl alert --unit UNIT`: the OnFailure= hook -------------------------------------------


@dataclass(frozen=True)
class AlertOutcome:
    """What the hook did: the line, and each channel's result (None: not configured)."""

    line: str
    pinged: bool | None
    command: str | None  # None: no command; "": it ran fine; else what went wrong


def alert_settings(
    config_path: Path | None, load: Callable[[], Config]
) -> tuple[AlertSettings, str | None, Config | None]:
    """`[alert]` from the full config, or from the TOML alone when the rest is broken.

    Returns (settings, the config problem if any, the config when it loaded).
    """
    try:
        config = load()
    except ConfigError as exc:
        problem = str(exc)
    else:
        return config.settings.alert, None, config
    try:
        raw = tomllib.loads(find_config(config_path).read_text(encoding="utf-8"))
        return AlertSettings.model_validate(raw.get("alert", {})), problem, None
    except (ConfigError, OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ValidationError):
        return AlertSettings(), problem, None


def last_run_line(config: Config | None) -> str:
    """How the journal's latest finished run ended, for the alert line ("" if unknown)."""
    if config is None:
        return ""
    from syncctl.state.journal import Journal

    try:
        with Journal.open(config.state, readonly=True) as journal:
            runs = journal.runs(5)
    except (SyncctlError, OSError):
        return ""
    for run in runs:
        if run.finished_at is None or run.dry_run:
            continue
        counts = ", ".join(f"{k} {v}" for k, v in sorted(run.summary.get("outcomes", {}).items()))
        when = run.finished_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"last run: {run.mode} {run.outcome} at {when}" + (f" ({counts})" if counts else "")
    return ""


def run_alert(
    unit: str,
    settings: AlertSettings,
    *,
    config_problem: str | None = None,
    last_run: str = "",
    pinger: Pinger | None = None,
) -> AlertOutcome:
    """Raise the alert for a failed unit: the line, `/fail`, `[alert] command`."""
    host = socket.gethostname()
    parts = [f"{unit} failed on {host}"]
    if config_problem:
        parts.append(f"config: {config_problem}")
    if last_run:
        parts.append(last_run)
    parts.append(f"see: journalctl -u {unit} -n 50")
    line = logs.redact("; ".join(parts))[:MAX_BODY]
    pinged: bool | None = None
    if pinger is None and settings.ping_url:
        pinger = Pinger(settings.ping_url)
    if pinger is not None:
        pinged = pinger.ping("fail", line)
    command: str | None = None
    if settings.command:
        command = _run_command(settings.command, line, unit=unit, host=host)
    return AlertOutcome(line, pinged, command)


def _run_command(command: str, line: str, *, unit: str, host: str) -> str:
    """Run the operator's command with the line on stdin; "" when it succeeded."""
    env = {
        **os.environ,
        "SYNCCTL_ALERT_UNIT": unit,
        "SYNCCTL_ALERT_HOST": host,
        "SYNCCTL_ALERT_MESSAGE": line,
    }
    try:
        done = subprocess.run(
            ["/bin/sh", "-c", command],
            input=line + "\n",
            capture_output=True,
            text=True,
            env=env,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"did not finish within {COMMAND_TIMEOUT:g} s"
    except OSError as exc:
        return f"could not start: {exc.strerror or exc}"
    if done.returncode != 0:
        said = " ".join((done.stderr or done.stdout).split())[:200]
        return f"exit {done.returncode}" + (f": {logs.redact(said)}" if said else "")
    return ""
