"""Shared helpers for the EspoCRM client and contract tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from syncctl.clients.espocrm import EspoClient
from syncctl.sandbox.espocrm import EspoEmulator
from syncctl.sandbox.server import EmulatorServer

API_KEY = "espo-test-key-7d41c0a9e2"


def start_server(emulator: EspoEmulator) -> EmulatorServer:
    """An EmulatorServer whose sockets send at once.

    Workaround (asked of the base server): without TCP_NODELAY every answer
    with a body waits ~40 ms for a delayed ACK on a keep-alive connection.
    """
    server = EmulatorServer(emulator)
    handler = server._server.RequestHandlerClass
    server._server.RequestHandlerClass = type(
        "NoDelayHandler", (handler,), {"disable_nagle_algorithm": True}
    )
    return server.start()


def plain_transport() -> httpx.HTTPTransport:
    """Loopback is plain HTTP: skip building a TLS context (20 ms per client)."""
    return httpx.HTTPTransport(verify=False)


@contextmanager
def serve(emulator: EspoEmulator, **client_kwargs: Any) -> Iterator[EspoClient]:
    """A started emulator and a client bound to it, both closed afterwards."""
    server = start_server(emulator)
    try:
        client_kwargs.setdefault("transport", plain_transport())
        with EspoClient(server.url, API_KEY, **client_kwargs) as client:
            yield client
    finally:
        server.stop()
