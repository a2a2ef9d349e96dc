"""A seeded sandbox, a campaign directory pointing at it, and a CLI runner for it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from syncctl import config as config_mod
from syncctl.cli import app
from syncctl.sandbox.seed import seed_demo
from syncctl.sandbox.stack import Sandbox

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
def config(campaign: Path) -> config_mod.Config:
    return config_mod.load(campaign / "syncctl.toml", campaign / ".env")


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


def set_secret(campaign: Path, name: str, value: str | None) -> None:
    """Change (or with None, remove) one secret in the campaign's .env."""
    env = campaign / ".env"
    lines = [line for line in env.read_text().splitlines() if not line.startswith(f"{name}=")]
    if value is not None:
        lines.append(f"{name}={value}")
    env.write_text("".join(line + "\n" for line in lines))


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
