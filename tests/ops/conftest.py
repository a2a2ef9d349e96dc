"""A seeded sandbox, a campaign directory pointing at it, and a CLI runner for it."""

from __future__ import annotations

import io
import json
import os
import pwd
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from syncctl import config as config_mod
from syncctl.cli import app
from syncctl.sandbox.seed import seed_demo
from syncctl.sandbox.stack import Sandbox
from syncctl.state.lock import state_lock

Run = Callable[..., Result]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sb:
        seed_demo(sb)
        yield sb


@pytest.fixture
def campaign(sandbox: Sandbox, tmp_path: Path) -> Path:
    """A directory with syncctl.toml and .env for the sandbox."""
    directory = tmp_path / "campaign"
    sandbox.write_files(directory)
    return directory


@pytest.fixture
def odd_campaign(sandbox: Sandbox, tmp_path: Path) -> Path:
    """The campaign directory in a folder whose path holds a space and a percent sign."""
    directory = tmp_path / "odd dir" / "50%"
    sandbox.write_files(directory)
    return directory


@pytest.fixture
def terminal_80(monkeypatch: pytest.MonkeyPatch) -> Console:
    """A terminal of COLUMNS=80 (the suite's default is 160) writing into a buffer."""
    monkeypatch.setenv("COLUMNS", "80")
    return Console(file=io.StringIO(), force_terminal=True, color_system=None)


@pytest.fixture
def config(campaign: Path) -> config_mod.Config:
    return config_mod.load(campaign / "syncctl.toml", campaign / ".env")


@pytest.fixture
def lock_held_briefly(config: config_mod.Config) -> Iterator[None]:
    """Another run holding the state directory's lock for half a second from now."""
    held = threading.Event()

    def hold() -> None:
        with state_lock(config.settings.run.state_path):
            held.set()
            time.sleep(0.5)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    yield
    holder.join(10)


@pytest.fixture
def lock_held_for_hours(config: config_mod.Config) -> Iterator[None]:
    """Another run holding the state lock since seven hours ago (a hung run)."""
    state_dir = config.settings.run.state_path
    with state_lock(state_dir):
        started = datetime.now(UTC) - timedelta(hours=7)
        line = json.dumps({"pid": 4242, "started": started.isoformat(timespec="seconds")})
        (state_dir / "lock").write_text(line + "\n")
        yield


@pytest.fixture
def run(campaign: Path) -> Run:
    """`syncctl --config ... --env-file ... ARGS` in-process; global options may lead."""

    def invoke(*args: str, globals_: tuple[str, ...] = ()) -> Result:
        return CliRunner().invoke(
            app,
            [
                *globals_,
                "--config",
                str(campaign / "syncctl.toml"),
                "--env-file",
                str(campaign / ".env"),
                *args,
            ],
        )

    return invoke


def run_in(campaign: Path, *args: str) -> Result:
    """`syncctl --config ... --env-file ... ARGS` for the campaign in `campaign`."""
    return CliRunner().invoke(
        app,
        ["--config", str(campaign / "syncctl.toml"), "--env-file", str(campaign / ".env"), *args],
    )


def set_secret(campaign: Path, name: str, value: str | None) -> None:
    """Change (or with None, remove) one secret in the campaign's .env."""
    env = campaign / ".env"
    lines = [line for line in env.read_text().splitlines() if not line.startswith(f"{name}=")]
    if value is not None:
        lines.append(f"{name}={value}")
    env.write_text("".join(line + "\n" for line in lines))


def set_lead_source(campaign: Path, value: str) -> None:
    """Set `[espocrm] lead_source` in the campaign's syncctl.toml."""
    config = campaign / "syncctl.toml"
    text = config.read_text()
    assert "\nlead_source" not in text
    config.write_text(text.replace("[espocrm]\n", f'[espocrm]\nlead_source = "{value}"\n'))


def one_error_line(result: Result) -> str:
    """The single stderr line of a failed command (and no traceback anywhere)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output + result.stderr
    return lines[0]


def set_state_dir(campaign: Path, value: str) -> None:
    """Point the campaign's [run] state_dir at `value`, as written (relative stays relative)."""
    config = campaign / "syncctl.toml"
    text = re.sub(r"(?m)^state_dir = .*$", f"state_dir = {json.dumps(value)}", config.read_text())
    config.write_text(text)


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """`syncctl sandbox serve --port-base 0 ARGS` in-process.

    Instead of blocking until Ctrl-C, it calls `while_up(sandbox)` (if given)
    while the servers run, then stops them as Ctrl-C would.
    """

    def invoke(*args: str, while_up: Callable[[Sandbox], object] | None = None) -> Result:
        def up(sandbox: Sandbox) -> None:
            if while_up is not None:
                while_up(sandbox)

        monkeypatch.setattr("syncctl.cli._serve_until_stopped", up)
        return CliRunner().invoke(app, ["sandbox", "serve", "--port-base", "0", *args])

    return invoke


@pytest.fixture
def real_env() -> str:
    """A .env an operator filled in by hand (values are made up)."""
    return "STRIPE_API_KEY=rk_live_not_a_sandbox_key\nSYNCCTL_CODE_SECRET=the-one-true-secret\n"


# -- who runs `syncctl schedule` --------------------------------------------------------


@pytest.fixture
def other_account() -> pwd.struct_passwd:
    """An existing account of this machine that is not root."""
    for entry in sorted(pwd.getpwall(), key=lambda e: e.pw_uid):
        if entry.pw_uid != 0 and entry.pw_name != "nobody":  # systemd warns about nobody
            return entry
    pytest.skip("this machine has no account but root")


@pytest.fixture
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """A root shell: effective uid 0 and no SUDO_USER."""
    monkeypatch.delenv("SUDO_USER", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 0)


@pytest.fixture
def behind_sudo(monkeypatch: pytest.MonkeyPatch, other_account: pwd.struct_passwd) -> str:
    """`sudo syncctl ...` run by `other_account`: root, with SUDO_USER naming them."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("SUDO_USER", other_account.pw_name)
    return other_account.pw_name


@pytest.fixture
def as_operator(monkeypatch: pytest.MonkeyPatch, other_account: pwd.struct_passwd) -> str:
    """`other_account`'s own shell, no sudo."""
    monkeypatch.delenv("SUDO_USER", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: other_account.pw_uid)
    return other_account.pw_name
