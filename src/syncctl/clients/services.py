"""The five vendor clients of a run, built from one config.

One `CallStats` is shared by all of them, so a run's summary and the
benchmark count every call in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from syncctl.clients.discord import DiscordClient
from syncctl.clients.espocrm import EspoClient
from syncctl.clients.mautic import MauticClient
from syncctl.clients.shopware import ShopwareClient
from syncctl.clients.stripe import StripeAPI
from syncctl.config import Config
from syncctl.net.http import CallStats, RetryPolicy


@dataclass
class Services:
    stripe: StripeAPI
    mautic: MauticClient
    discord: DiscordClient
    shopware: ShopwareClient
    espocrm: EspoClient
    stats: CallStats = field(default_factory=CallStats)

    @classmethod
    def connect(
        cls,
        config: Config,
        *,
        stats: CallStats | None = None,
        transport_for: Callable[[str], httpx.BaseTransport | None] | None = None,
    ) -> Services:
        """Clients for every service; raises ConfigError when a secret is missing.

        `transport_for(service)` lets tests and the cassette recorder put
        their own transport under a client.
        """
        config.secrets.require()
        s = config.settings
        stats = stats if stats is not None else CallStats()

        def common(service: str) -> dict[str, Any]:
            return {
                "stats": stats,
                "retry": RetryPolicy(attempts=s.run.retries + 1),
                "timeout": s.run.timeout_seconds,
                "max_concurrency": s.run.concurrency,
                "transport": transport_for(service) if transport_for else None,
            }

        secret = config.secret
        return cls(
            stripe=StripeAPI(s.stripe.api_base, secret("STRIPE_API_KEY"), **common("stripe")),
            mautic=MauticClient(
                s.mautic.base_url,
                secret("MAUTIC_USERNAME"),
                secret("MAUTIC_PASSWORD"),
                **common("mautic"),
            ),
            discord=DiscordClient(
                s.discord.api_base, secret("DISCORD_BOT_TOKEN"), **common("discord")
            ),
            shopware=ShopwareClient(
                s.shopware.base_url,
                secret("SHOPWARE_CLIENT_ID"),
                secret("SHOPWARE_CLIENT_SECRET"),
                **common("shopware"),
            ),
            espocrm=EspoClient(s.espocrm.base_url, secret("ESPOCRM_API_KEY"), **common("espocrm")),
            stats=stats,
        )

    def guard_writes(self, check: Callable[[], None] | None) -> None:
        """Call `check` before every write any client sends (None: stop); it raises to
        stop the write (fencing: a run that lost a shared store's run lock)."""
        for client in (self.stripe, self.mautic, self.discord, self.shopware, self.espocrm):
            guard = getattr(client, "guard_writes", None)
            if guard is not None:  # tests' stand-ins for a client may lack it
                guard(check)

    def close(self) -> None:
        for client in (self.stripe, self.mautic, self.discord, self.shopware, self.espocrm):
            client.close()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
