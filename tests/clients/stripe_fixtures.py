"""Helpers shared by the Stripe client and contract tests (plain functions, no fixtures)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from syncctl.sandbox import server as server_module
from syncctl.sandbox.stripe import StripeEmulator

KEY = "sk_test_51SyncctlUnitTestKeyAbCdEfGh9876"
NOW = 1_750_000_000
VIP_PRICE, VIP_PRODUCT = "price_vip", "prod_vip"
BASIC_PRICE, BASIC_PRODUCT = "price_basic", "prod_basic"
VIP = [(VIP_PRICE, VIP_PRODUCT, 1)]


def new_emulator(**options: Any) -> StripeEmulator:
    """An emulator with a fixed clock, no rate limit unless asked, two products."""
    options.setdefault("rate_limit_per_second", None)
    options.setdefault("now", lambda: NOW)
    emulator = StripeEmulator(api_key=KEY, **options)
    seed_catalog(emulator)
    return emulator


def seed_catalog(emulator: StripeEmulator) -> None:
    """The two products (and their prices) most tests buy."""
    emulator.add_product(VIP_PRODUCT, name="VIP reservation")
    emulator.add_price(VIP_PRICE, VIP_PRODUCT)
    emulator.add_product(BASIC_PRODUCT, name="Supporter")
    emulator.add_price(BASIC_PRICE, BASIC_PRODUCT)


def disable_nagle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Work around the sandbox server answering in two writes (headers, then body).

    With keep-alive, Nagle's algorithm holds the body until the client ACKs
    the headers, and the client delays that ACK by ~40 ms: every request
    costs 40 ms. Setting TCP_NODELAY per connection brings it to < 1 ms.
    The real fix belongs in `sandbox/server.py` (`_Handler.setup`).
    """
    handler = server_module._Handler
    original = handler.setup

    def setup(self: Any) -> None:
        original(self)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    monkeypatch.setattr(handler, "setup", setup)
