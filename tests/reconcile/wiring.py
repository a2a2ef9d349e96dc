"""Services wired with test transports (to interpose on the HTTP traffic)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from syncctl.clients.services import Services
from syncctl.config import Config


def build_services(
    config: Config, transport_for: Callable[[str], httpx.BaseTransport | None]
) -> Services:
    """Like `Services.connect`, with `transport_for(service)` under each client."""
    return Services.connect(config, transport_for=transport_for)


class Hook(httpx.HTTPTransport):
    """Runs `before(request)` / `after(request)` around matching requests."""

    def __init__(
        self,
        match: Callable[[httpx.Request], bool],
        *,
        before: Callable[[httpx.Request], None] | None = None,
        after: Callable[[httpx.Request], None] | None = None,
    ) -> None:
        super().__init__()
        self.match = match
        self.before = before
        self.after = after

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        hit = self.match(request)
        if hit and self.before:
            self.before(request)
        response = super().handle_request(request)
        if hit and self.after:
            response.read()
            self.after(request)
        return response
