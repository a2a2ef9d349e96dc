"""Suite-wide fixtures: instant backoff and no stray environment."""

from __future__ import annotations

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
