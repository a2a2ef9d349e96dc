"""`syncctl watch` as an operator (or systemd) runs it: start-up checks, SIGTERM."""

from __future__ import annotations

import signal
from pathlib import Path

from typer.testing import CliRunner

from syncctl.cli import app
from syncctl.sandbox.seed import seed_demo
from syncctl.sandbox.stack import Sandbox
from syncctl.state.journal import Journal
from syncctl.state.lock import state_lock
from tests.processes import signal_after_first_action


def _invoke(config, *args: str):
    env_file = config.path.parent / ".env"
    return CliRunner().invoke(
        app, ["--config", str(config.path), "--env-file", str(env_file), "watch", *args]
    )


def test_a_bad_listen_address_exits_2_before_any_cycle(campaign, sandbox) -> None:
    result = _invoke(campaign, "--listen", "nowhere")
    assert result.exit_code == 2, result.output
    assert "HOST:PORT" in result.stderr and "Traceback" not in result.output
    assert sandbox.call_count() == 0


def test_a_missing_secret_exits_2_before_any_cycle(campaign, sandbox) -> None:
    env_file = campaign.path.parent / ".env"
    text = env_file.read_text()
    kept = [line for line in text.splitlines() if "DISCORD" not in line]
    env_file.write_text("\n".join(kept) + "\n")
    result = _invoke(campaign)
    assert result.exit_code == 2, result.output
    assert "DISCORD_BOT_TOKEN" in result.stderr
    assert sandbox.call_count() == 0


def test_a_taken_port_exits_2(campaign, sandbox) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _invoke(campaign, "--listen", f"127.0.0.1:{port}")
    assert result.exit_code == 2, result.output
    assert "cannot listen on" in result.stderr


def test_sigterm_during_a_cycle_finishes_the_action_and_exits_0(tmp_path: Path) -> None:
    with Sandbox(latency=0.15) as sandbox:
        seed_demo(sandbox)
        config_path, env_path = sandbox.write_files(tmp_path / "campaign")
        args = ["watch", "--interval", "30"]
        stopped = signal_after_first_action(config_path, env_path, args, signal.SIGTERM, timeout=30)
        text, took = stopped.text, stopped.took
        assert stopped.returncode == 0, text
        assert took < 5, took
        assert "SIGTERM: stopping after the action in progress" in text
        state_dir = tmp_path / "campaign" / ".syncctl-state"
        with state_lock(state_dir):  # released: taken at once, no wait
            pass
        with Journal.open(state_dir, readonly=True) as journal:
            assert journal.in_flight() == []
            last = journal.runs(limit=1)[0]
        assert last.finished_at is not None and last.outcome == "interrupted"
