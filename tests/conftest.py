"""Suite-wide fixtures: instant backoff and no stray environment."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from syncctl.config import OPTIONAL_SECRET_NAMES, SECRET_NAMES
from syncctl.net import http


@pytest.fixture(autouse=True)
def _instant_backoff() -> Iterator[None]:
    """Retries happen at once; vendor-requested waits (Retry-After) still apply."""
    http.set_testing(True)
    yield
    http.set_testing(False)


@pytest.fixture(autouse=True)
def _isolated_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No secret or config from the developer's shell leaks into a test."""
    for name in (*SECRET_NAMES, *OPTIONAL_SECRET_NAMES, "SYNCCTL_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "160")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg")))


def make_settings():
    """Settings as an operator would write them, for the sandbox's ids."""
    from syncctl.config import Settings

    return Settings.model_validate(
        {
            "stripe": {"vip_price_ids": ["price_vip"], "vip_product_ids": ["prod_vip"]},
            "mautic": {
                "base_url": "http://127.0.0.1:1",
                "invite_email_vip": 11,
                "invite_email_basic": 12,
                "coupon_email": 13,
            },
            "discord": {
                "vip_channel_id": "100000000000000001",
                "basic_channel_id": "100000000000000002",
            },
            "shopware": {
                "base_url": "http://127.0.0.1:1",
                "vip_promotion_id": "5a4d1c0f2e8b4f6a9c3d7e1f0a2b4c6d",
            },
            "espocrm": {"base_url": "http://127.0.0.1:1"},
        }
    )


@pytest.fixture
def settings():
    return make_settings()


# -- a real PostgreSQL, for the shared state store ----------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[object]:
    """One throwaway PostgreSQL server for the session, started on first use.

    Its binaries come from PATH or /usr/lib/postgresql/*/bin (`.ci/run`
    installs Debian's package when missing). Without them the tests that
    need it are skipped, except under CI, where that is a failure.
    """
    from tests.pgserver import PgServer, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        message = (
            "no PostgreSQL server binaries (initdb, postgres) on PATH or in /usr/lib/postgresql"
        )
        if os.environ.get("CI"):
            pytest.fail(message + ": .ci/run should have installed them")
        pytest.skip(message)
    server = PgServer(bin_dir)
    try:
        server.init()
        server.start()
        server.setup_roles()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def pg_schema(pg_server) -> str:
    """A fresh schema owned by the syncctl role (the store's tables go there); its name."""
    return pg_server.create_schema()


@pytest.fixture
def pg_url(pg_server, pg_schema: str) -> str:
    """`postgresql://syncctl:PASSWORD@127.0.0.1:PORT/syncctl_tests?options=-csearch_path=S`:
    a fresh, empty store for one test."""
    return pg_server.url(pg_schema)
