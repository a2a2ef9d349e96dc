"""`syncctl init`: the packaged example config and a private .env template."""

from __future__ import annotations

import stat
from pathlib import Path

from typer.testing import CliRunner

from syncctl import config as config_mod
from syncctl.cli import app
from syncctl.commands.scaffold import example_config
from syncctl.config import SECRET_NAMES

ROOT = Path(__file__).resolve().parents[2]


def init(*args: str):
    return CliRunner().invoke(app, ["init", *args])


def test_packaged_template_is_the_documented_example() -> None:
    assert example_config() == (ROOT / "config.example.toml").read_text(encoding="utf-8")


def test_writes_config_and_private_env(tmp_path: Path) -> None:
    target = tmp_path / "etc"
    result = init("--dir", str(target))
    assert result.exit_code == 0, result.output
    assert (target / "syncctl.toml").read_text() == example_config()
    env = target / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    text = env.read_text()
    for name in SECRET_NAMES:
        assert f"\n{name}=\n" in text
    assert "syncctl doctor" in result.stderr


def test_the_written_files_load_once_secrets_are_filled_in(tmp_path: Path) -> None:
    init("--dir", str(tmp_path))
    env = tmp_path / ".env"
    env.write_text(env.read_text().replace("=\n", "=filled-in-value\n"))
    loaded = config_mod.load(tmp_path / "syncctl.toml", env)
    assert loaded.secrets.missing() == []
    assert loaded.settings.shopware.code_prefix == "VIP-"


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("STRIPE_API_KEY=rk_live_keepme\n")
    result = init("--dir", str(tmp_path))
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--force" in lines[0]
    assert not (tmp_path / "syncctl.toml").exists()
    assert (tmp_path / ".env").read_text() == "STRIPE_API_KEY=rk_live_keepme\n"


def test_force_overwrites_but_keeps_secret_values(tmp_path: Path) -> None:
    (tmp_path / "syncctl.toml").write_text("# old\n")
    (tmp_path / ".env").write_text("STRIPE_API_KEY=rk_live_keepme\nEXTRA='a b'\n")
    result = init("--dir", str(tmp_path), "--force")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "syncctl.toml").read_text() == example_config()
    env = tmp_path / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    text = env.read_text()
    assert "\nSTRIPE_API_KEY=rk_live_keepme\n" in text
    assert 'EXTRA="a b"' in text
    assert "STRIPE_API_KEY" in result.stderr and "rk_live_keepme" not in result.output


def test_default_dir_is_the_current_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert init().exit_code == 0
    assert (tmp_path / "syncctl.toml").is_file() and (tmp_path / ".env").is_file()
