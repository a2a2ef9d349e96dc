"""Fixtures of the Stripe client tests: one emulator server per module, reset per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from syncctl.clients.stripe import StripeAPI
from syncctl.net.http import CallStats, RetryPolicy
from syncctl.sandbox.server import EmulatorServer
from syncctl.sandbox.stripe import StripeEmulator
from tests.clients.stripe_fixtures import KEY, disable_nagle, new_emulator, seed_catalog


@pytest.fixture(autouse=True)
def _fast_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    disable_nagle(monkeypatch)


@pytest.fixture(scope="module")
def _shared() -> Iterator[tuple[StripeEmulator, EmulatorServer]]:
    """One server per module (starting and stopping one costs ~50 ms)."""
    emulator = new_emulator()
    server = EmulatorServer(emulator).start()
    yield emulator, server
    server.stop()


@pytest.fixture
def emulator(_shared: tuple[StripeEmulator, EmulatorServer]) -> StripeEmulator:
    emulator = _shared[0]
    emulator.reset()
    seed_catalog(emulator)
    return emulator


@pytest.fixture
def server(
    _shared: tuple[StripeEmulator, EmulatorServer], emulator: StripeEmulator
) -> EmulatorServer:
    return _shared[1]


@pytest.fixture
def stats() -> CallStats:
    return CallStats()


@pytest.fixture
def api(server: EmulatorServer, stats: CallStats) -> Iterator[StripeAPI]:
    with StripeAPI(server.url, KEY, stats=stats, retry=RetryPolicy(attempts=3)) as client:
        yield client
