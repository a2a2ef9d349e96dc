"""Shared helpers for the Discord client and contract tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from syncctl.clients.discord import DiscordClient
from syncctl.net.http import CallStats, RetryPolicy
from syncctl.sandbox.discord import DEFAULT_CHANNELS, DiscordEmulator
from syncctl.sandbox.server import EmulatorServer

TOKEN = "sandbox.bot-token-5f2b9c1d"
VIP_CHANNEL, BASIC_CHANNEL = list(DEFAULT_CHANNELS)
UNKNOWN_CHANNEL = "100000000000000999"


@dataclass
class Seen:
    """One request as it left the client, and the answer's headers."""

    method: str
    path: str
    request_headers: httpx.Headers
    status: int
    response_headers: httpx.Headers


class RecordingTransport(httpx.HTTPTransport):
    """A real loopback transport that remembers headers (the emulator log does not)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Seen] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.seen.append(
            Seen(
                request.method,
                request.url.path,
                request.headers,
                response.status_code,
                response.headers,
            )
        )
        return response


@dataclass
class DiscordRig:
    emulator: DiscordEmulator
    server: EmulatorServer
    clients: list[DiscordClient] = field(default_factory=list)

    @property
    def api_base(self) -> str:
        return f"{self.server.url}/api/v10"

    def client(self, token: str = TOKEN, **kwargs: Any) -> DiscordClient:
        kwargs.setdefault("retry", RetryPolicy(attempts=3))
        kwargs.setdefault("stats", CallStats())
        client = DiscordClient(kwargs.pop("api_base", self.api_base), token, **kwargs)
        self.clients.append(client)
        return client


@contextmanager
def discord_rig(**options: Any) -> Iterator[DiscordRig]:
    """An emulator on loopback; every client made from the rig is closed after."""
    emulator = DiscordEmulator(bot_token=TOKEN, **options)
    server = EmulatorServer(emulator).start()
    rig = DiscordRig(emulator, server)
    try:
        yield rig
    finally:
        for client in rig.clients:
            client.close()
        server.stop()
