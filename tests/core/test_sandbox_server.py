"""The sandbox's HTTP server stays quiet when a client hangs up."""

from __future__ import annotations

import socket
import struct
import time

import pytest

from syncctl.sandbox.mautic import MauticEmulator
from syncctl.sandbox.server import EmulatorServer


def test_a_client_resetting_its_connection_leaves_no_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = EmulatorServer(MauticEmulator(username="u", password="p")).start()
    try:
        host, port = server.url.removeprefix("http://").split(":")
        client = socket.create_connection((host, int(port)))
        client.sendall(b"GET /api/contacts HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # RST instead of FIN: the server's read fails with a reset
        time.sleep(0.3)
    finally:
        server.stop()
    assert "Traceback" not in capsys.readouterr().err
