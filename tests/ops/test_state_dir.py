"""Where the state lives: one directory per config, usable or refused at once.

A relative `state_dir` is taken from the config file's folder, so every run
of one config shares one journal and one lock whatever folder it starts in.
A `state_dir` syncctl cannot create or write is a config mistake: exit 2 with
one line, and a failing doctor check with the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syncctl import config as config_mod
from tests.ops.conftest import Run, one_error_line, set_state_dir


def test_relative_state_dir_is_taken_from_the_config_files_folder(
    campaign: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_state_dir(campaign, "state")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = config_mod.read_settings(Path("..") / "campaign" / "syncctl.toml")
    assert settings.run.state_path == elsewhere / ".." / "campaign" / "state"
    assert settings.run.state_path.resolve() == (campaign / "state").resolve()


def test_home_in_state_dir_is_expanded_at_load(
    campaign: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    set_state_dir(campaign, "~/syncctl-state")
    settings = config_mod.read_settings(campaign / "syncctl.toml")
    assert settings.run.state_dir == str(tmp_path / "home" / "syncctl-state")


def test_runs_from_the_config_folder_and_from_its_parent_share_one_state_dir(
    run: Run, campaign: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_state_dir(campaign, "state")
    monkeypatch.chdir(tmp_path)
    assert run("reconcile").exit_code == 0
    monkeypatch.chdir(campaign)
    again = run("reconcile", "--dry-run", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["plan"]["actions"] == []  # the first run's journal
    assert (campaign / "state" / "state.db").is_file()
    assert not (tmp_path / "state").exists()
    assert not (campaign / "campaign").exists()


def test_config_show_and_doctor_show_the_resolved_state_dir(
    run: Run, campaign: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_state_dir(campaign, "state")
    monkeypatch.chdir(tmp_path)
    shown = run("config", "show")
    assert f'state_dir = "{campaign / "state"}"' in shown.stdout
    doctor = run("doctor")
    assert f"state_dir: {campaign / 'state'}: will be created by the first run" in doctor.stdout


def test_sandbox_config_names_an_absolute_state_dir(
    sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config_path, _ = sandbox.write_files(Path("relcamp"))
    settings = config_mod.read_settings(config_path)
    assert settings.run.state_path == tmp_path / "relcamp" / ".syncctl-state"
    assert f'state_dir = "{tmp_path / "relcamp" / ".syncctl-state"}"' in config_path.read_text()


# -- an unusable state_dir: exit 2 for every command, FAIL in doctor --------------------------


@pytest.fixture
def blocker(tmp_path: Path) -> Path:
    """A regular file where a folder would have to be (stops root too)."""
    path = tmp_path / "a-file"
    path.write_text("not a directory\n")
    return path


@pytest.mark.parametrize(
    "command",
    [("reconcile",), ("reconcile", "--dry-run"), ("history",)],
    ids=" ".join,
)
def test_state_dir_under_a_file_is_a_config_error(
    run: Run, campaign: Path, sandbox, blocker: Path, command: tuple[str, ...]
) -> None:
    set_state_dir(campaign, str(blocker / "state"))
    sandbox.clear_logs()
    result = run(*command)
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert f"state_dir {blocker / 'state'} cannot be created: {blocker} is a file" in line
    assert "point [run] state_dir at a directory" in line
    assert sandbox.call_count() == 0


def test_state_dir_that_is_a_file_is_a_config_error(
    run: Run, campaign: Path, sandbox, blocker: Path
) -> None:
    set_state_dir(campaign, str(blocker))
    result = run("reconcile")
    assert result.exit_code == 2, result.output
    assert f"state_dir {blocker} is a file, not a directory" in one_error_line(result)
    assert sandbox.call_count() == 0


def test_doctor_fails_a_state_dir_under_a_file_with_the_fix(
    run: Run, campaign: Path, blocker: Path
) -> None:
    set_state_dir(campaign, str(blocker / "state"))
    result = run("doctor")
    assert result.exit_code == 1
    line = next(x for x in result.stdout.splitlines() if "state_dir:" in x)
    assert line.startswith("FAIL"), line
    assert f"{blocker} is a file" in line
    assert "-> fix: point [run] state_dir at a directory" in line


def test_doctor_fails_a_state_dir_this_user_cannot_write(
    run: Run, campaign: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root ignores permission bits, so the kernel's answer is simulated."""
    locked = tmp_path / "locked"
    locked.mkdir()
    set_state_dir(campaign, str(locked / "state"))
    monkeypatch.setattr("syncctl.state.location._may_write", lambda _: False)
    result = run("doctor")
    line = next(x for x in result.stdout.splitlines() if "state_dir:" in x)
    assert line.startswith("FAIL"), line
    assert f"{locked / 'state'} cannot be created: {locked} is not writable" in line
