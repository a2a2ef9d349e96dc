"""Fixtures of the Mautic client tests: one emulator server per module, a fresh
emulator (on a controllable clock) per test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from syncctl.clients.mautic import MauticClient
from syncctl.net.http import CallStats
from syncctl.sandbox.mautic import MauticEmulator
from syncctl.sandbox.server import EmulatorServer
from tests.clients.mautic_fixtures import PASSWORD, USER, Clock, transport


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def emulator(clock: Clock) -> MauticEmulator:
    emu = MauticEmulator(username=USER, password=PASSWORD, clock=clock)
    emu.add_email(11, "Invite VIP")
    emu.add_email(13, "Coupon")
    return emu


@pytest.fixture(scope="module")
def _shared_server() -> Iterator[EmulatorServer]:
    srv = EmulatorServer(MauticEmulator(username=USER, password=PASSWORD)).start()
    yield srv
    srv.stop()


@pytest.fixture
def server(_shared_server: EmulatorServer, emulator: MauticEmulator) -> EmulatorServer:
    """One loopback server per module (stopping one costs 50 ms); a fresh emulator per test."""
    _shared_server.emulator = emulator
    _shared_server._server.emulator = emulator  # what the request handler reads
    return _shared_server


@pytest.fixture
def stats() -> CallStats:
    return CallStats()


@pytest.fixture
def client(server: EmulatorServer, stats: CallStats) -> Iterator[MauticClient]:
    with MauticClient(
        server.url, USER, PASSWORD, stats=stats, timeout=5.0, transport=transport()
    ) as c:
        yield c


@pytest.fixture
def raw(server: EmulatorServer) -> Iterator[httpx.Client]:
    """Plain HTTP to the emulator, to pin its vendor behaviour."""
    with httpx.Client(base_url=server.url, auth=(USER, PASSWORD), transport=transport()) as c:
        yield c
