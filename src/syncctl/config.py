"""Loading and validating the TOML config and the secrets.

Everything is checked at load, before any call to a vendor: a run that would
fail half-way because of a typo in a channel id must fail at once instead,
with one line naming the file, the key and the fix. pydantic does the
validation (types, unknown keys, defaults); this module turns its reports
into those lines.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from syncctl.errors import ConfigError

if TYPE_CHECKING:
    from syncctl.state.location import StateLocation

SECRET_NAMES = (
    "STRIPE_API_KEY",
    "MAUTIC_USERNAME",
    "MAUTIC_PASSWORD",
    "DISCORD_BOT_TOKEN",
    "SHOPWARE_CLIENT_ID",
    "SHOPWARE_CLIENT_SECRET",
    "ESPOCRM_API_KEY",
    "SYNCCTL_CODE_SECRET",
)
#: Secrets that may be left unset: each turns one feature on. Read like the
#: others, masked like them, never required: `syncctl watch`'s webhook paths,
#: and SYNCCTL_STATE_URL, the shared PostgreSQL state store (it may carry a
#: password; it wins over [run] state_url).
OPTIONAL_SECRET_NAMES = (
    "STRIPE_WEBHOOK_SECRET",
    "MAUTIC_WEBHOOK_SECRET",
    "SYNCCTL_STATE_URL",
)
#: The secrets each service's calls are made with, for fix hints.
SERVICE_SECRETS = {
    "stripe": ("STRIPE_API_KEY",),
    "mautic": ("MAUTIC_USERNAME", "MAUTIC_PASSWORD"),
    "discord": ("DISCORD_BOT_TOKEN",),
    "shopware": ("SHOPWARE_CLIENT_ID", "SHOPWARE_CLIENT_SECRET"),
    "espocrm": ("ESPOCRM_API_KEY",),
}


def _url_parts(value: str, example: str, credentials: str = "") -> SplitResult:
    """An http(s) URL with a host, no user:password and a valid port; else ValueError."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s) URL such as {example}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"must not carry user:password{credentials}")
    try:
        parts.port  # noqa: B018 - urlsplit checks the range only when asked
    except ValueError:
        raise ValueError("has a port outside 1-65535") from None
    return parts


def _http_url(value: str) -> str:
    parts = _url_parts(value, "https://example.org", ": put credentials in the .env secrets")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query string or fragment")
    return value.rstrip("/")


def _ping_url(value: str) -> str:
    """`[alert] ping_url`: "" (no pings) or an http(s) URL; a query (`?create=1`) may stay."""
    if value == "":
        return value
    parts = _url_parts(value, 'https://hc-ping.com/<uuid>, or ""')
    if parts.fragment:
        raise ValueError("must not carry a fragment")
    return parts._replace(path=parts.path.rstrip("/")).geturl()


#: Config values that are secrets all the same (a ping URL's path is its token):
#: shown and logged only through `redact_url`.
SECRET_KEYS = (("alert", "ping_url"),)


def redact_url(url: str) -> str:
    """`https://hc-ping.com/[redacted]`: scheme and host only; "" stays ""."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "[redacted]"
    try:
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
    except ValueError:
        host = parts.hostname
    hidden = "/[redacted]" if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{host}{hidden}"


def _redacted(value: object) -> object:
    """A URL with the userinfo masked: a password typed there must not be echoed."""
    if isinstance(value, str) and "@" in value and "://" in value:
        scheme, _, rest = value.partition("://")
        userinfo, at, host = rest.partition("@")
        if at and "/" not in userinfo:
            return f"{scheme}://***@{host}"
    return value


def _snowflake(value: str) -> str:
    if not re.fullmatch(r"\d{1,21}", value):
        raise ValueError("must be a Discord channel id (digits only; Developer Mode > Copy ID)")
    return value


def _role_id(value: str) -> str:
    if not re.fullmatch(r"\d{1,21}", value):
        raise ValueError(
            "must be a Discord role id "
            "(digits only; Server Settings > Roles, right-click > Copy Role ID)"
        )
    return value


def _distinct_roles(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("lists a role twice")
    return values


def _shopware_id(value: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{32}", value):
        raise ValueError("must be a Shopware id: 32 hexadecimal characters")
    return value.lower()


def _alias(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9_]+", value):
        raise ValueError("must be a Mautic field alias (lower-case letters, digits, _)")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]
Snowflake = Annotated[str, AfterValidator(_snowflake)]
#: Roles an invite grants (Create Channel Invite `role_ids`: up to 250, unique).
RoleIds = Annotated[
    list[Annotated[str, AfterValidator(_role_id)]],
    Field(max_length=250),
    AfterValidator(_distinct_roles),
]
ShopwareId = Annotated[str, AfterValidator(_shopware_id)]
PingUrl = Annotated[str, AfterValidator(_ping_url)]
Alias = Annotated[str, AfterValidator(_alias)]
EmailId = Annotated[int, Field(gt=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class StripeSettings(_Section):
    api_base: HttpUrl = "https://api.stripe.com"
    # Stripe mints price_... and prod_..., but products (and legacy plans used
    # as prices) may carry ids their creator chose: any id without spaces.
    vip_price_ids: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]+$")]] = []
    vip_product_ids: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]+$")]] = []
    lookback_hours: Annotated[int, Field(ge=1, le=24 * 30)] = 26
    #: Incremental reads: "events" (Events API, cheapest) or "sessions".
    incremental_source: Literal["events", "sessions"] = "events"
    #: Rule 17: a fully refunded or disputed VIP purchase stops being one
    #: ("revoke"), or stays as it is and is only noted ("keep").
    on_refund: Literal["revoke", "keep"] = "revoke"

    @model_validator(mode="after")
    def _some_vip_id(self) -> StripeSettings:
        if not self.vip_price_ids and not self.vip_product_ids:
            raise ValueError("set vip_price_ids or vip_product_ids: otherwise nothing is VIP")
        return self


class MauticFields(_Section):
    vip_status: Alias = "vip_status"
    promo_code: Alias = "promo_code"
    invite_link_vip: Alias = "discord_invite_link_vip"
    invite_link_basic: Alias = "discord_invite_link_basic"
    opt_in_confirmed: Alias = "opt_in_confirmed"

    @model_validator(mode="after")
    def _one_field_per_key(self) -> MauticFields:
        # Two keys on one field make every run overwrite what the last one
        # wrote (a VIP link replaced by a Basic one, and back): never converges.
        keys = list(type(self).model_fields)
        for i, key in enumerate(keys):
            alias = getattr(self, key)
            clash = next((k for k in keys[i + 1 :] if getattr(self, k) == alias), None)
            if clash is not None:
                # Point at the key that left its default: that is the likely typo.
                fields = type(self).model_fields
                moved = key if fields[key].default != alias else clash
                raise ValueError(
                    f"{key} and {clash} both name the Mautic field '{alias}': give each key "
                    f'its own field (e.g. {moved} = "{fields[moved].default}", the default)'
                )
        return self


class MauticSettings(_Section):
    base_url: HttpUrl
    invite_email_vip: EmailId
    invite_email_basic: EmailId
    coupon_email: EmailId
    coupon_email_requires_opt_in: bool = False
    #: Contacts with this tag are held: no run does anything for them (rule 18).
    hold_tag: Annotated[str, Field(max_length=255)] = "syncctl-hold"
    fields: MauticFields = MauticFields()


class DiscordSettings(_Section):
    api_base: HttpUrl = "https://discord.com/api/v10"
    vip_channel_id: Snowflake
    basic_channel_id: Snowflake
    invite_max_age: Annotated[int, Field(ge=0, le=604800)] = 0
    #: Revoke the unused invite of a contact who withdrew the opt-in or is on
    #: the Do-Not-Contact list, and clear its field (rule 20).
    revoke_on_opt_out: bool = True
    #: Roles each tier's invite grants to whoever accepts it (needs MANAGE_ROLES).
    vip_role_ids: RoleIds = []
    basic_role_ids: RoleIds = []

    @model_validator(mode="after")
    def _distinct_channels(self) -> DiscordSettings:
        if self.vip_channel_id == self.basic_channel_id:
            raise ValueError("vip_channel_id and basic_channel_id must be different channels")
        return self


class ShopwareSettings(_Section):
    base_url: HttpUrl
    vip_promotion_id: ShopwareId
    code_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{0,20}$")] = "VIP-"


class EspoSettings(_Section):
    base_url: HttpUrl
    lead_source: str = "Campaign"


def _state_url(value: str) -> str:
    if not value:
        return value
    from syncctl.state.location import PG_SCHEMES

    parts = urlsplit(value)
    if parts.scheme not in PG_SCHEMES or not parts.path.strip("/"):
        raise ValueError(
            "must be a PostgreSQL URL such as postgresql://syncctl@db.example.org/syncctl, "
            'or "" for the SQLite file in state_dir'
        )
    if parts.password is not None or "password=" in parts.query.lower():
        raise ValueError(
            "must not carry a password: put the whole URL in SYNCCTL_STATE_URL "
            "(environment or .env) instead"
        )
    return value


class AlertSettings(_Section):
    #: Healthchecks-style dead-man's switch: `<ping_url>/start` once a run holds
    #: the lock, `<ping_url>` on success, `<ping_url>/fail` with the summary.
    ping_url: PingUrl = ""
    #: Shell command `syncctl alert` runs when a syncctl unit fails (OnFailure=).
    command: str = ""


class RunSettings(_Section):
    state_dir: str = "~/.local/state/syncctl"
    #: A PostgreSQL database for the journal and the run lock, shared by several
    #: hosts; "" keeps them in state_dir (SQLite). SYNCCTL_STATE_URL wins.
    state_url: Annotated[str, AfterValidator(_state_url)] = ""
    #: Actions one run applies at most; the rest waits for the next runs (rule 24).
    max_actions: Annotated[int, Field(ge=1)] = 500
    #: A run meeting the lock held by one other run for longer than this many
    #: seconds exits 1 instead of 3 (0: never). The timer unit's TimeoutStartSec.
    lock_busy_fail_after: Annotated[int, Field(ge=0)] = 3600
    #: A plan that looks like a configuration mistake is refused whole: new
    #: invite emails for more than this share of the contacts who had one...
    max_resend_share: Annotated[float, Field(ge=0, le=1)] = 0.1
    #: ...or revoking live invites for more than this share of the contacts...
    max_revoke_share: Annotated[float, Field(ge=0, le=1)] = 0.1
    #: ...never below this many (small campaigns, or a few deliberate reissues).
    mass_change_floor: Annotated[int, Field(ge=0)] = 25
    #: Calls in flight at once per service (buckets and 429s still rule).
    concurrency: Annotated[int, Field(ge=1, le=32)] = 4
    timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 30.0
    retries: Annotated[int, Field(ge=0, le=10)] = 3

    @property
    def state_path(self) -> Path:
        """The state directory; read from a file, it is already absolute (`read_settings`)."""
        return Path(os.path.expandvars(self.state_dir)).expanduser()


def _listen(value: str) -> str:
    if value:
        parse_listen(value)  # raises ValueError with the fix
    return value


def _audit_at(value: str) -> str:
    if value and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ValueError('must be a local time HH:MM such as "03:30", or "" for no audit')
    return value


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT`, `[v6]:PORT` or `:PORT` (loopback) -> (host, port); ValueError if not."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(
            'must be HOST:PORT such as "127.0.0.1:8787" (":8787" binds loopback), or "" for none'
        )
    host = host.strip("[]") or "127.0.0.1"
    if any(c.isspace() or c in "/[]" for c in host):
        raise ValueError(f'has a bad host {host!r}: use an address such as "127.0.0.1"')
    return host, int(port)


class WatchSettings(_Section):
    """`syncctl watch`: the long-running mode."""

    #: Seconds between incremental cycles when nothing wakes it earlier.
    interval: Annotated[float, Field(ge=0.1, le=86400)] = 30
    #: HOST:PORT for the webhooks, /healthz and /metrics; "" = no listener.
    listen: Annotated[str, AfterValidator(_listen)] = ""
    #: Local time of the daily --full audit; "" = none.
    audit_at: Annotated[str, AfterValidator(_audit_at)] = "03:30"


class Settings(_Section):
    stripe: StripeSettings
    mautic: MauticSettings
    discord: DiscordSettings
    shopware: ShopwareSettings
    espocrm: EspoSettings
    alert: AlertSettings = AlertSettings()
    run: RunSettings = RunSettings()
    watch: WatchSettings = WatchSettings()


@dataclass(frozen=True)
class Secrets:
    """The credentials, from the environment or a .env file. Never printed."""

    values: Mapping[str, SecretStr]
    sources: Mapping[str, str] = field(default_factory=dict)
    #: The .env file that was read (absolute), or None.
    env_file: Path | None = None
    #: Where a .env was looked for when none was named and none was found.
    looked_for: Path | None = None
    #: A .env beside the config file that was not read (only a named or ./.env is).
    unread: Path | None = None

    def optional(self, name: str) -> str | None:
        """An optional secret's value, or None when it is unset or empty."""
        secret = self.values.get(name)
        return secret.get_secret_value() or None if secret is not None else None

    def get(self, name: str) -> str:
        secret = self.values.get(name)
        if secret is None or not secret.get_secret_value():
            raise self.missing_error([name])
        return secret.get_secret_value()

    def missing(self, names: tuple[str, ...] = SECRET_NAMES) -> list[str]:
        return [n for n in names if not (n in self.values and self.values[n].get_secret_value())]

    def require(self, names: tuple[str, ...] = SECRET_NAMES) -> None:
        """Raise one ConfigError naming every missing secret, where they were looked for."""
        missing = self.missing(names)
        if missing:
            raise self.missing_error(missing)

    def missing_error(self, missing: list[str]) -> ConfigError:
        problem, fix = self.explain_missing(missing)
        return ConfigError(problem, hint=fix)

    def explain_missing(self, missing: list[str]) -> tuple[str, str]:
        """(what is missing and which .env was read, how to fix it): one line each."""
        names = ", ".join(missing)
        them = "them" if len(missing) > 1 else "it"
        what = f"secrets {names} are not set" if len(missing) > 1 else f"secret {names} is not set"
        if self.env_file is not None:
            # "set" means a value: NAME= with nothing after it counts as missing.
            where = f"in neither the environment nor {self.env_file} (or empty there)"
            fix = f"add {them} to {self.env_file}, or export {them}"
        else:
            looked = f"looked for {self.looked_for}" if self.looked_for else "none was named"
            where = f"not in the environment, and no .env file was read ({looked})"
            fix = (
                f"export {them}, or write a .env (`syncctl init` writes a template) "
                "and pass --env-file PATH"
            )
        if self.unread is not None:
            where += f"; {self.unread} beside the config was not read"
            fix = f"pass --env-file {self.unread}, or " + fix
        return f"{what}: {where}", fix

    def __repr__(self) -> str:
        return f"Secrets({sorted(self.values)})"


@dataclass(frozen=True)
class Config:
    """A validated config file and the secrets that go with it."""

    settings: Settings
    secrets: Secrets
    path: Path

    def secret(self, name: str) -> str:
        return self.secrets.get(name)

    @property
    def state(self) -> StateLocation:
        """Where the journal and the run lock live: `SYNCCTL_STATE_URL` (environment
        or .env) wins over `[run] state_url`; with neither, the SQLite file in
        `[run] state_dir`. A URL that is not PostgreSQL's is a ConfigError (exit 2)."""
        from syncctl.state.location import StateLocation, check_state_url

        run = self.settings.run
        url = self.secrets.optional("SYNCCTL_STATE_URL")
        source = "SYNCCTL_STATE_URL"
        if url is None and run.state_url:
            url, source = run.state_url, f"{self.path}: [run] state_url"
        if url is None:
            return StateLocation(run.state_path)
        return StateLocation(run.state_path, check_state_url(url, source), source)


# -- locating files -----------------------------------------------------------


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "syncctl" / "config.toml"


def find_config(explicit: Path | None) -> Path:
    """--config, else $SYNCCTL_CONFIG, else ./syncctl.toml, else the user config dir."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"{explicit}: config file not found", hint="check the --config path")
        return explicit
    from_env = os.environ.get("SYNCCTL_CONFIG")
    if from_env:
        path = Path(from_env).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"{path}: config file not found (from $SYNCCTL_CONFIG)",
                hint="fix or unset SYNCCTL_CONFIG",
            )
        return path
    for candidate in (Path("syncctl.toml"), user_config_path()):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no config file: looked for --config, $SYNCCTL_CONFIG, ./syncctl.toml and "
        f"{user_config_path()}",
        hint="run `syncctl init` to write one, or `syncctl demo` to try the sandbox",
    )


# -- reading ------------------------------------------------------------------


def read_settings(path: Path) -> Settings:
    """Parse and validate one TOML file; raise ConfigError with one line."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}", hint="fix the syntax there") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(path, exc, raw)) from None
    return _resolve_paths(settings, path)


#: (section, key) of every config value that is a filesystem path.
PATH_KEYS = (("run", "state_dir"),)


def _resolve_paths(settings: Settings, path: Path) -> Settings:
    """Make every path key absolute: `~` and `$VARS` expanded, relative ones taken
    from the config file's folder.

    Relative to the working directory, one config would name a different state
    dir (and lock) for each folder it is run from: two runs applying at once.
    """
    base = path.parent.absolute()
    update: dict[str, BaseModel] = {}
    for section_name, key in PATH_KEYS:
        section = update.get(section_name) or getattr(settings, section_name)
        value = Path(os.path.expandvars(getattr(section, key))).expanduser()
        if not value.is_absolute():
            value = base / value
        update[section_name] = section.model_copy(update={key: str(value)})
    return settings.model_copy(update=update)


def _describe(path: Path, exc: ValidationError, raw: Mapping[str, Any]) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = [str(part) for part in first["loc"] if not isinstance(part, int)]
    index = next((part for part in first["loc"] if isinstance(part, int)), None)
    kind = first["type"]
    more = (
        f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        if len(errors) > 1
        else ""
    )
    if kind == "extra_forbidden":
        *section, key = loc
        if not section:
            known = ", ".join(f"[{name}]" for name in Settings.model_fields)
            return f"{path}: unknown section [{key}] (known sections: {known}){more}"
        model = _model_at(section)
        known = ", ".join(model.model_fields) if model else ""
        return f"{path}: [{'.'.join(section)}] unknown key '{key}' (known keys: {known}){more}"
    if not loc:
        return f"{path}: {first['msg']}{more}"
    if kind == "missing":
        if len(loc) == 1:
            return (
                f"{path}: section [{loc[0]}] is missing: add it (`syncctl init --dir DIR` "
                f"writes a commented example of every section){more}"
            )
        return f"{path}: [{'.'.join(loc[:-1])}] {loc[-1]} is required{more}"
    where = f"[{'.'.join(loc[:-1])}] {loc[-1]}" if len(loc) > 1 else f"[{loc[0]}]"
    if index is not None:
        where += f"[{index}]"
    message = (
        first["msg"]
        .removeprefix("Value error, ")
        .replace("Input should be", "must be")
        .replace("String should match pattern", "must match the pattern")
    )
    if kind in ("model_type", "dict_type"):
        message = f"must be a table: write it as a [{'.'.join(loc)}] section"
    if kind == "string_type":
        message += " (put the value in quotes)"
    if "input" in first and kind not in ("missing",) and not isinstance(first["input"], dict):
        got = _redacted(first["input"])
        if tuple(loc) in SECRET_KEYS:
            got = redact_url(got) if isinstance(got, str) else "[redacted]"
        message += f" (got {got!r})"
    if kind == "value_error" and _model_at(loc) is not None:
        # A whole section's check (e.g. two keys that must differ): no key to point at.
        return f"{path}: [{'.'.join(loc)}] {message}{more}"
    return f"{path}: {where} {message}{more}"


def _model_at(section: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Settings
    for name in section:
        if model is None:
            return None
        info = model.model_fields.get(name)
        annotation = info.annotation if info else None
        model = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
    return model


def read_secrets(env_file: Path | None, environ: Mapping[str, str] | None = None) -> Secrets:
    """Secrets from the environment, falling back to a .env file (env wins)."""
    environ = os.environ if environ is None else environ
    file_values: dict[str, str] = {}
    looked_for: Path | None = None
    if env_file is not None:
        if not env_file.is_file():
            raise ConfigError(f"{env_file}: env file not found", hint="check the --env-file path")
        file_values = _parse_env_file(env_file)
    elif Path(".env").is_file():
        env_file = Path(".env")
        file_values = _parse_env_file(env_file)
    else:
        looked_for = Path(".env").absolute()
    values: dict[str, SecretStr] = {}
    sources: dict[str, str] = {}
    for name in (*SECRET_NAMES, *OPTIONAL_SECRET_NAMES):
        if environ.get(name):
            values[name] = SecretStr(environ[name])
            sources[name] = "environment"
        elif file_values.get(name):
            values[name] = SecretStr(file_values[name])
            sources[name] = str(env_file)
    read = env_file.absolute() if env_file is not None else None
    return Secrets(values, sources, env_file=read, looked_for=looked_for)


def _parse_env_file(path: Path) -> dict[str, str]:
    """NAME=value lines; every line that is not one (nor a comment) is named by number."""
    from dotenv.parser import parse_stream

    values: dict[str, str] = {}
    bad: list[int] = []
    try:
        with path.open(encoding="utf-8") as stream:
            for binding in parse_stream(stream):
                # A bare NAME parses without error but sets nothing (value None):
                # a secret pasted without its "=" must not vanish silently.
                if binding.error or (binding.key is not None and binding.value is None):
                    bad.append(_first_line(binding.original.string, binding.original.line))
                elif binding.key is not None and binding.value is not None:
                    values[binding.key] = binding.value
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    if bad:
        where = f"line {bad[0]}" if len(bad) == 1 else f"lines {', '.join(map(str, bad))}"
        these = "this line" if len(bad) == 1 else "these lines"
        raise ConfigError(
            f"{path} {where}: cannot parse {these}",
            hint="each line must be NAME=value (quote values with spaces; a NAME alone sets "
            "nothing)",
        )
    return values


def _first_line(text: str, line: int) -> int:
    """The line a binding's text starts on: dotenv counts from the blank lines before it."""
    blank = text[: len(text) - len(text.lstrip())]
    return line + blank.count("\n")


def load(config_path: Path | None = None, env_file: Path | None = None) -> Config:
    path = find_config(config_path)
    settings = read_settings(path)
    secrets = read_secrets(env_file)
    beside = (path.parent / ".env").absolute()
    if beside.is_file() and not (secrets.env_file and _same_file(secrets.env_file, beside)):
        # Only --env-file or ./.env is read (the documented interface): say so when
        # the config's own folder holds one, or "not set" makes no sense.
        secrets = dataclasses.replace(secrets, unread=beside)
    return Config(settings=settings, secrets=secrets, path=path)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False
