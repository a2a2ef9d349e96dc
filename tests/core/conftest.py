"""The state store's tests run against both backends: SQLite and a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncctl.state.location import StateLocation

#: Overrides `backend` for a test about one backend only (direct parametrization).
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"])
POSTGRES_ONLY = pytest.mark.parametrize("backend", ["postgresql"])


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def where(backend: str, state_dir: Path, request: pytest.FixtureRequest) -> Path | StateLocation:
    """The store under test: the state dir (SQLite), or a fresh PostgreSQL database."""
    if backend == "sqlite":
        return state_dir
    return StateLocation(state_dir, request.getfixturevalue("pg_url"), "SYNCCTL_STATE_URL")
