"""Services wired with test transports (to interpose on the HTTP traffic)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from syncctl.clients.discord import DiscordClient
from syncctl.clients.espocrm import EspoClient
from syncctl.clients.mautic import MauticClient
from syncctl.clients.shopware import ShopwareClient
from syncctl.clients.stripe import StripeAPI
from syncctl.config import Config
from syncctl.http import CallStats
from syncctl.services import Services


def build_services(
    config: Config, transport_for: Callable[[str], httpx.BaseTransport | None]
) -> Services:
    """Like `Services.connect`, with `transport_for(service)` under each client."""
    s, secret = config.settings, config.secret
    stats = CallStats()
    return Services(
        stripe=StripeAPI(
            s.stripe.api_base,
            secret("STRIPE_API_KEY"),
            stats=stats,
            transport=transport_for("stripe"),
        ),
        mautic=MauticClient(
            s.mautic.base_url,
            secret("MAUTIC_USERNAME"),
            secret("MAUTIC_PASSWORD"),
            stats=stats,
            transport=transport_for("mautic"),
        ),
        discord=DiscordClient(
            s.discord.api_base,
            secret("DISCORD_BOT_TOKEN"),
            stats=stats,
            transport=transport_for("discord"),
        ),
        shopware=ShopwareClient(
            s.shopware.base_url,
            secret("SHOPWARE_CLIENT_ID"),
            secret("SHOPWARE_CLIENT_SECRET"),
            stats=stats,
            transport=transport_for("shopware"),
        ),
        espocrm=EspoClient(
            s.espocrm.base_url,
            secret("ESPOCRM_API_KEY"),
            stats=stats,
            transport=transport_for("espocrm"),
        ),
        stats=stats,
    )


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
