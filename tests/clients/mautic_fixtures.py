"""Helpers of the Mautic client tests (the fixtures are in mautic/conftest.py)."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

USER = "api-user"

PASSWORD = "s3cret-Pa55word"

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

#: Building an SSL context costs ~40 ms per httpx client; loopback needs none, share one.
_SSL = ssl.create_default_context()


def transport() -> httpx.HTTPTransport:
    return httpx.HTTPTransport(verify=_SSL)


class Clock:
    """A controllable clock for the emulator's dateAdded/dateModified."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 1.0) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def where(*clauses: tuple[str, str, Any]) -> list[tuple[str, str]]:
    params = []
    for i, (col, expr, val) in enumerate(clauses):
        params += [(f"where[{i}][col]", col), (f"where[{i}][expr]", expr)]
        if val is not None:
            params.append((f"where[{i}][val]", str(val)))
    return params
