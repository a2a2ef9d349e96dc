"""`syncctl init`: a commented `syncctl.toml` and a `.env` template (mode 0600).

The config is the packaged copy of `config.example.toml` (every key with its
meaning and default), so an installed syncctl writes it without the source
tree. The `.env` lists every secret with what it is for; values are empty,
which `syncctl doctor` reports as "not set" until they are filled in.

Nothing is overwritten without `--force`. With `--force` an existing `.env`
keeps its values: they are carried into the new template, so re-running
`init --force` to refresh the config never loses a secret.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from syncctl.config import OPTIONAL_SECRET_NAMES, SECRET_NAMES
from syncctl.errors import StateError, UsageError

CONFIG_NAME = "syncctl.toml"
ENV_NAME = ".env"
TEMPLATE = "config.example.toml"

SECRET_HELP = {
    "STRIPE_API_KEY": "Stripe restricted key, read-only: Checkout Sessions, Events, Prices, "
    "Products (rk_live_...)",
    "MAUTIC_USERNAME": "Mautic user for the API (HTTP Basic auth enabled in Mautic)",
    "MAUTIC_PASSWORD": "that user's password",
    "DISCORD_BOT_TOKEN": "Discord bot token (Developer Portal > your app > Bot)",
    "SHOPWARE_CLIENT_ID": "Shopware integration access key id (Settings > System > Integrations)",
    "SHOPWARE_CLIENT_SECRET": "that integration's secret access key",
    "ESPOCRM_API_KEY": "EspoCRM API user's key (Administration > API Users)",
    "SYNCCTL_CODE_SECRET": "random key for deriving coupon codes; keep it forever "
    "(e.g. python3 -c 'import secrets; print(secrets.token_hex(32))')",
    "STRIPE_WEBHOOK_SECRET": "optional, for `syncctl watch`: the signing secret (whsec_...) of "
    "the Stripe webhook endpoint pointing at /webhooks/stripe; empty = that path answers 404",
    "MAUTIC_WEBHOOK_SECRET": "optional, for `syncctl watch`: the secret of the Mautic webhook "
    "pointing at /webhooks/mautic; empty = that path answers 404",
    "SYNCCTL_STATE_URL": "optional: postgresql://USER:PASSWORD@HOST/DB, a state store shared by "
    "several hosts (wins over [run] state_url); empty = the SQLite file in state_dir",
}

_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_./:@+,=-]*$")


def example_config() -> str:
    """The packaged, commented example config."""
    return resources.files("syncctl").joinpath("templates", TEMPLATE).read_text(encoding="utf-8")


def _quoted(value: str) -> str:
    return value if _SAFE_VALUE.match(value) else json.dumps(value)


def env_template(existing: dict[str, str] | None = None) -> str:
    """The `.env` text: every secret, with a comment; `existing` values are kept."""
    existing = dict(existing or {})
    lines = [
        "# Secrets for syncctl: NAME=value, one per line. Keep this file private (mode 0600)",
        "# and out of version control. Real environment variables win over it.",
        "# `syncctl doctor` tells which are missing or rejected.",
        "",
    ]
    for name in (*SECRET_NAMES, *OPTIONAL_SECRET_NAMES):
        lines.append(f"# {SECRET_HELP[name]}")
        lines.append(f"{name}={_quoted(existing.pop(name, ''))}")
    others = {k: v for k, v in existing.items() if v is not None}
    if others:
        lines += ["", "# kept from the previous file"]
        lines += [f"{k}={_quoted(v)}" for k, v in others.items()]
    return "\n".join(lines) + "\n"


@dataclass
class InitResult:
    config_path: Path
    env_path: Path
    kept: list[str] = field(default_factory=list)


def write_files(directory: Path, *, force: bool = False) -> InitResult:
    """Write syncctl.toml and .env into `directory`; refuse to overwrite unless `force`."""
    config_path = directory / CONFIG_NAME
    env_path = directory / ENV_NAME
    present = [p for p in (config_path, env_path) if p.exists()]
    if present and not force:
        names = " and ".join(str(p) for p in present)
        raise UsageError(
            f"{names} already exist{'s' if len(present) == 1 else ''}; nothing was written",
            hint="use --force to overwrite (values already in .env are kept)",
        )
    existing: dict[str, str] = {}
    if env_path.exists():
        from dotenv import dotenv_values

        existing = {k: v for k, v in dotenv_values(env_path).items() if v}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _write(config_path, example_config(), 0o644)
        _write(env_path, env_template(existing), 0o600)
    except OSError as exc:
        raise StateError(
            f"cannot write into {directory}: {exc.strerror or exc}",
            hint="choose another --dir, or fix its permissions",
        ) from None
    kept = [name for name in existing if existing[name]]
    return InitResult(config_path, env_path, kept)


def _write(path: Path, text: str, mode: int) -> None:
    """Write via a temporary file created with `mode`, then rename over `path`."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(tmp, mode)  # the umask may have narrowed it
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
