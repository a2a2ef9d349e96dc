"""Fixtures of the proof suite: no network for replays, a campaign for CLI runs."""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import typer.main
import typer.testing
from typer.testing import CliRunner, Result

from syncctl.cli import app
from syncctl.sandbox.seed import seed_demo
from syncctl.sandbox.stack import Sandbox


class NetworkBlocked(RuntimeError):
    """A test that must not touch the network tried to."""


@contextlib.contextmanager
def blocked_network() -> Iterator[None]:
    """No socket may connect or resolve, loopback included; no sandbox may run."""
    running = [t.name for t in threading.enumerate() if t.name.startswith("sandbox-")]
    assert not running, f"a sandbox is running during a replay: {running}"

    def refuse(*args: object, **kwargs: object) -> None:
        raise NetworkBlocked(f"network access during a replay: {args[1:] or args}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket.socket, "connect_ex", refuse)
        mp.setattr(socket, "create_connection", refuse)
        mp.setattr(socket, "getaddrinfo", refuse)
        yield


@pytest.fixture
def no_network() -> Iterator[None]:
    with blocked_network():
        yield


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sb:
        seed_demo(sb)
        yield sb


@pytest.fixture
def campaign(sandbox: Sandbox, tmp_path: Path) -> tuple[Path, Path]:
    """syncctl.toml and .env of a seeded sandbox (sandbox.write_files)."""
    return sandbox.write_files(tmp_path / "campaign")


Invoke = Callable[..., Result]


_command = functools.cache(typer.main.get_command)


@pytest.fixture(autouse=True)
def _build_the_cli_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Typer rebuilds the Click command on every invoke (~35 ms here): once is enough."""
    monkeypatch.setattr(typer.testing, "_get_command", _command, raising=False)


def run_cli(args: Sequence[str]) -> Result:
    """`syncctl ARGS` in-process."""
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def cli(campaign: tuple[Path, Path]) -> Invoke:
    """`syncctl --config ... --env-file ... ARGS` on the seeded campaign."""
    config_path, env_path = campaign

    def invoke(*args: str, config: Path | None = None, env: Path | None = None) -> Result:
        return run_cli(
            ["--config", str(config or config_path), "--env-file", str(env or env_path), *args]
        )

    return invoke


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def assert_one_clean_line(result: Result) -> str:
    """Exactly one non-empty stderr line, no traceback anywhere; returns it."""
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    return lines[0]
