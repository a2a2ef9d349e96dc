"""A seeded sandbox and a config pointing at it, for end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syncctl import config as config_mod
from syncctl.sandbox.seed import seed_demo
from syncctl.sandbox.stack import Sandbox


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sb:
        seed_demo(sb)
        yield sb


@pytest.fixture
def config(sandbox: Sandbox, tmp_path: Path) -> config_mod.Config:
    config_path, env_path = sandbox.write_files(tmp_path / "campaign")
    return config_mod.load(config_path, env_path)
