"""All five emulators together: started, wired to a config, inspected.

`syncctl sandbox serve`, `syncctl demo`, the test suite and the benchmark all
use this, so a newcomer's first run and the suite exercise the same servers.
"""

from __future__ import annotations

import json
import secrets as _secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from syncctl.sandbox.discord import DiscordEmulator
from syncctl.sandbox.espocrm import EspoEmulator
from syncctl.sandbox.mautic import MauticEmulator
from syncctl.sandbox.server import Emulator, EmulatorServer
from syncctl.sandbox.shopware import ShopwareEmulator
from syncctl.sandbox.stripe import StripeEmulator
from syncctl.sandbox.webhooks import WebhookSender
from syncctl.sandbox.workdir import CONFIG_NAME, ENV_NAME, MARKER, Workdir, write_files

GUILD_ID = "100000000000000000"
VIP_CHANNEL_ID = "100000000000000001"
BASIC_CHANNEL_ID = "100000000000000002"
#: Roles a campaign's invites may grant ([discord] vip_role_ids / basic_role_ids);
#: the bot's own role sits above both.
VIP_ROLE_ID = "100000000000000101"
BASIC_ROLE_ID = "100000000000000102"
VIP_PROMOTION_ID = "5a4d1c0f2e8b4f6a9c3d7e1f0a2b4c6d"
VIP_PRICE_ID = "price_sandboxVIPreservation"
VIP_PRODUCT_ID = "prod_sandboxVIPreservation"
SUPPORTER_PRICE_ID = "price_sandboxSupporter"
SUPPORTER_PRODUCT_ID = "prod_sandboxSupporter"
INVITE_EMAIL_VIP = 11
INVITE_EMAIL_BASIC = 12
COUPON_EMAIL = 13

SERVICES = ("stripe", "mautic", "discord", "shopware", "espocrm")
#: Where `send_webhooks` posts, below the base URL it is given (`syncctl watch`'s paths).
WEBHOOK_PATHS = {"stripe": "/webhooks/stripe", "mautic": "/webhooks/mautic"}
#: The secrets the two webhook endpoints sign with (in the .env like the others).
WEBHOOK_SECRETS = {"stripe": "STRIPE_WEBHOOK_SECRET", "mautic": "MAUTIC_WEBHOOK_SECRET"}


def new_secrets() -> dict[str, str]:
    """Fresh random credentials, so nothing real-looking ever gets recorded."""
    token = _secrets.token_hex
    return {
        "STRIPE_API_KEY": f"rk_sandbox_{token(12)}",
        "MAUTIC_USERNAME": "syncctl-api",
        "MAUTIC_PASSWORD": token(12),
        "DISCORD_BOT_TOKEN": f"sandbox.{token(16)}",
        "SHOPWARE_CLIENT_ID": f"SWIA{token(10).upper()}",
        "SHOPWARE_CLIENT_SECRET": token(16),
        "ESPOCRM_API_KEY": token(16),
        "SYNCCTL_CODE_SECRET": token(16),
        **_webhook_secrets(),
    }


def _webhook_secrets() -> dict[str, str]:
    """A Stripe endpoint's signing secret looks like `whsec_...`; Mautic's is any string."""
    return {
        WEBHOOK_SECRETS["stripe"]: f"whsec_{_secrets.token_urlsafe(24)}",
        WEBHOOK_SECRETS["mautic"]: _secrets.token_urlsafe(24),
    }


class Sandbox:
    """The five emulators on loopback, with credentials and a matching config."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        secrets: Mapping[str, str] | None = None,
        ports: Mapping[str, int] | None = None,
        emulator_options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.secrets = dict(secrets or new_secrets())
        for name, value in _webhook_secrets().items():
            self.secrets.setdefault(name, value)
        options = {name: dict((emulator_options or {}).get(name, {})) for name in SERVICES}
        s = self.secrets
        self.stripe = StripeEmulator(
            api_key=s["STRIPE_API_KEY"], latency=latency, **options["stripe"]
        )
        self.mautic = MauticEmulator(
            username=s["MAUTIC_USERNAME"],
            password=s["MAUTIC_PASSWORD"],
            latency=latency,
            **options["mautic"],
        )
        options["discord"].setdefault(
            "channels", {VIP_CHANNEL_ID: GUILD_ID, BASIC_CHANNEL_ID: GUILD_ID}
        )
        self.discord = DiscordEmulator(
            bot_token=s["DISCORD_BOT_TOKEN"], latency=latency, **options["discord"]
        )
        self.shopware = ShopwareEmulator(
            client_id=s["SHOPWARE_CLIENT_ID"],
            client_secret=s["SHOPWARE_CLIENT_SECRET"],
            latency=latency,
            **options["shopware"],
        )
        self.espocrm = EspoEmulator(
            api_key=s["ESPOCRM_API_KEY"], latency=latency, **options["espocrm"]
        )
        self._ports = dict(ports or {})
        self._servers: dict[str, EmulatorServer] = {}
        self._prepare()

    def _prepare(self) -> None:
        """What every campaign needs to exist before syncctl can run."""
        self.stripe.add_product(VIP_PRODUCT_ID, name="VIP reservation")
        self.stripe.add_price(VIP_PRICE_ID, VIP_PRODUCT_ID)
        self.stripe.add_product(SUPPORTER_PRODUCT_ID, name="Supporter")
        self.stripe.add_price(SUPPORTER_PRICE_ID, SUPPORTER_PRODUCT_ID)
        self.shopware.add_promotion(VIP_PROMOTION_ID, name="VIP backers")
        self.discord.add_role(GUILD_ID, role_id=VIP_ROLE_ID, name="VIP")
        self.discord.add_role(GUILD_ID, role_id=BASIC_ROLE_ID, name="Backer")
        self.mautic.add_email(INVITE_EMAIL_VIP, "Your VIP Discord invite")
        self.mautic.add_email(INVITE_EMAIL_BASIC, "Your Discord invite")
        self.mautic.add_email(COUPON_EMAIL, "Your VIP coupon")

    @property
    def emulators(self) -> dict[str, Emulator]:
        return {name: getattr(self, name) for name in SERVICES}

    def start(self) -> Sandbox:
        for name, emulator in self.emulators.items():
            self._servers[name] = EmulatorServer(emulator, port=self._ports.get(name, 0)).start()
        return self

    def send_webhooks(self, base_url: str, **options: Any) -> dict[str, WebhookSender]:
        """Have Stripe and Mautic post their webhooks to `base_url` from now on.

        Stripe's events go to `<base_url>/webhooks/stripe` signed with
        `STRIPE_WEBHOOK_SECRET`, Mautic's contact saves to
        `<base_url>/webhooks/mautic` signed with `MAUTIC_WEBHOOK_SECRET` (both
        in `secrets`, and in the .env `files` writes), each from a background
        thread of its own. `options` go to both senders (`retry_delays`,
        `timeout`, `duplicate`, `reorder`, `seed`; `batch` to Mautic's only).
        Returns the senders by service, for inspection.
        """
        base = base_url.rstrip("/")
        stripe_options = {k: v for k, v in options.items() if k != "batch"}
        origin = self._servers["mautic"].url if "mautic" in self._servers else ""
        return {
            "stripe": self.stripe.send_webhooks(
                base + WEBHOOK_PATHS["stripe"],
                self.secrets[WEBHOOK_SECRETS["stripe"]],
                **stripe_options,
            ),
            "mautic": self.mautic.send_webhooks(
                base + WEBHOOK_PATHS["mautic"],
                self.secrets[WEBHOOK_SECRETS["mautic"]],
                origin=origin,
                **options,
            ),
        }

    def stop_webhooks(self) -> None:
        self.stripe.stop_webhooks()
        self.mautic.stop_webhooks()

    def stop(self) -> None:
        self.stop_webhooks()
        for server in self._servers.values():
            server.stop()
        self._servers.clear()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def urls(self) -> dict[str, str]:
        if not self._servers:
            raise RuntimeError("the sandbox is not started")
        return {name: server.url for name, server in self._servers.items()}

    def write_count(self) -> int:
        """Write calls received by all five emulators since their logs were cleared."""
        return sum(e.write_count() for e in self.emulators.values())

    def call_count(self) -> int:
        return sum(len(e.log) for e in self.emulators.values())

    def clear_logs(self) -> None:
        for emulator in self.emulators.values():
            emulator.clear_log()

    def config_toml(self, state_dir: Path | str, *, max_actions: int = 500) -> str:
        """A complete syncctl.toml pointing at these servers."""
        u = self.urls
        return f"""\
{MARKER}: points every service at the local sandbox.
[stripe]
api_base = "{u["stripe"]}"
vip_price_ids = ["{VIP_PRICE_ID}"]
vip_product_ids = []

[mautic]
base_url = "{u["mautic"]}"
invite_email_vip = {INVITE_EMAIL_VIP}
invite_email_basic = {INVITE_EMAIL_BASIC}
coupon_email = {COUPON_EMAIL}

[discord]
api_base = "{u["discord"]}/api/v10"
vip_channel_id = "{VIP_CHANNEL_ID}"
basic_channel_id = "{BASIC_CHANNEL_ID}"
vip_role_ids = ["{VIP_ROLE_ID}"]
basic_role_ids = ["{BASIC_ROLE_ID}"]

[shopware]
base_url = "{u["shopware"]}"
vip_promotion_id = "{VIP_PROMOTION_ID}"

[espocrm]
base_url = "{u["espocrm"]}"

[run]
state_dir = {json.dumps(str(state_dir))}
max_actions = {max_actions}
"""

    def env_text(self) -> str:
        header = f"{MARKER}: the emulators' credentials, replaced on every serve.\n"
        return header + "".join(f"{name}={value}\n" for name, value in self.secrets.items())

    def files(self, state_dir: Path) -> dict[str, tuple[str, int]]:
        """syncctl.toml and .env (mode 0600) for these servers: name -> (text, mode)."""
        return {
            CONFIG_NAME: (self.config_toml(state_dir), 0o644),
            ENV_NAME: (self.env_text(), 0o600),
        }

    def write_files(self, directory: Path, *, state_dir: Path | None = None) -> tuple[Path, Path]:
        """Write syncctl.toml and .env (mode 0600) into `directory`, replacing any."""
        target = Workdir(directory)
        write_files(directory, self.files(state_dir or target.state_dir))
        return target.config_path, target.env_path
