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
from tests.ops.conftest import Run, set_state_dir


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
