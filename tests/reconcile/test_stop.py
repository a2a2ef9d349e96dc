"""Ctrl-C or SIGTERM while applying: calls in flight finish and are recorded,
nothing new starts, the run ends with its summary (issue 11.5.14)."""

from __future__ import annotations

import signal
from pathlib import Path

from syncctl import config as config_mod
from syncctl.engine.reconcile import reconcile
from syncctl.engine.stop import NOT_STARTED, StopRequest
from syncctl.sandbox.seed import seed_demo
from syncctl.sandbox.stack import Sandbox
from syncctl.sandbox.verify import violations
from tests.processes import signal_after_first_action


def test_a_stop_while_applying_starts_nothing_new_and_the_next_run_finishes(
    sandbox, config
) -> None:
    stop = StopRequest()

    def stop_after_the_first(outcome) -> None:
        stop.set("SIGINT")

    result = reconcile(config, stop=stop, on_outcome=stop_after_the_first)
    started = [o for o in result.outcomes if o.message != NOT_STARTED]
    assert len(started) <= config.settings.run.concurrency * 2  # in flight, finished
    assert any(o.message == NOT_STARTED for o in result.outcomes)
    assert result.interrupted == "SIGINT" and result.exit_code(False) == 130
    reconcile(config)
    assert violations(sandbox, config) == []


def test_sigint_stops_the_command_within_seconds_with_a_summary(tmp_path: Path) -> None:
    with Sandbox(latency=0.15) as sandbox:
        seed_demo(sandbox)
        config_path, env_path = sandbox.write_files(tmp_path / "campaign")
        stopped = signal_after_first_action(config_path, env_path, ["reconcile"], signal.SIGINT)
        text, took = stopped.text, stopped.took
        assert stopped.returncode == 130, text
        assert took < 5, took
        assert "SIGINT: stopping after the actions in progress" in text
        assert "stopped by SIGINT" in text and "wait for the next run" in text
        assert "Outcome:" in text  # the summary
        config = config_mod.load(config_path, env_path)
        reconcile(config)
        assert violations(sandbox, config) == []


def last_run_outcome(config: config_mod.Config) -> str | None:
    from syncctl.state.journal import Journal

    with Journal.open(config.settings.run.state_path, readonly=True) as journal:
        return journal.runs(limit=1)[0].outcome


def test_a_run_stopped_before_it_applied_is_recorded_as_interrupted(sandbox, config) -> None:
    stop = StopRequest()
    stop.set("SIGTERM")  # arrived while it was reading
    result = reconcile(config, stop=stop)
    assert result.interrupted == "SIGTERM"
    assert last_run_outcome(config) == "interrupted"


def test_a_run_that_ends_in_an_error_is_recorded_as_failed_not_ok(sandbox, config) -> None:
    import pytest

    from syncctl.errors import SyncctlError

    sandbox.mautic.inject(method="GET", path=r"/contacts$", status=500, times=None)
    with pytest.raises(SyncctlError):
        reconcile(config)  # Mautic is the hub: without its contacts the run stops
    assert last_run_outcome(config) == "failed"


def test_a_ctrl_c_swallowed_while_syncctl_started_stops_the_run_before_its_first_action(
    sandbox, config
) -> None:
    from typer.testing import CliRunner

    from syncctl.cli import app
    from syncctl.entry import INTERRUPTED

    INTERRUPTED.set()  # what the start-up handler remembers of a Ctrl-C
    try:
        args = ["--config", str(config.path), "--env-file", str(config.path.parent / ".env")]
        result = CliRunner().invoke(app, [*args, "reconcile"])
    finally:
        INTERRUPTED.clear()
    assert result.exit_code == 130, result.output
    assert sandbox.write_count() == 0
    assert reconcile(config).ok  # the next run does the work
    assert violations(sandbox, config) == []
