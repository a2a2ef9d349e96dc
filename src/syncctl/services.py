"""The five vendor clients of a run, built from one config.

One `CallStats` is shared by all of them, so a run's summary and the
benchmark count every call in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from syncctl.clients.discord import DiscordClient
from syncctl.clients.espocrm import EspoClient
from syncctl.clients.mautic import MauticClient
from syncctl.clients.shopware import ShopwareClient
from syncctl.clients.stripe import StripeAPI
from syncctl.config import Config
from syncctl.http import CallStats, RetryPolicy


@dataclass
class Services:
    stripe: StripeAPI
    mautic: MauticClient
    discord: DiscordClient
    shopware: ShopwareClient
    espocrm: EspoClient
    stats: CallStats = field(default_factory=CallStats)

    @classmethod
    def connect(cls, config: Config, *, stats: CallStats | None = None) -> Services:
        """Clients for every service; raises ConfigError when a secret is missing."""
        config.secrets.require()
        s = config.settings
        stats = stats if stats is not None else CallStats()
        common = {
            "stats": stats,
            "retry": RetryPolicy(attempts=s.run.retries + 1),
            "timeout": s.run.timeout_seconds,
            "max_concurrency": s.run.concurrency,
        }
        secret = config.secret
        return cls(
            stripe=StripeAPI(s.stripe.api_base, secret("STRIPE_API_KEY"), **common),
            mautic=MauticClient(
                s.mautic.base_url,
                secret("MAUTIC_USERNAME"),
                secret("MAUTIC_PASSWORD"),
                **common,
            ),
            discord=DiscordClient(s.discord.api_base, secret("DISCORD_BOT_TOKEN"), **common),
            shopware=ShopwareClient(
                s.shopware.base_url,
                secret("SHOPWARE_CLIENT_ID"),
                secret("SHOPWARE_CLIENT_SECRET"),
                **common,
            ),
            espocrm=EspoClient(s.espocrm.base_url, secret("ESPOCRM_API_KEY"), **common),
            stats=stats,
        )

    def close(self) -> None:
        for client in (self.stripe, self.mautic, self.discord, self.shopware, self.espocrm):
            client.close()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
