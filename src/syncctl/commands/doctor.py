"""`syncctl doctor`: is everything in place for a run? One line per check, with the fix.

Checks are data: each is a `CheckResult(name, ok, detail, fix)`, produced in
order, so the CLI renders them as a table or plain lines and `--json` prints
them as they are. Doctor only reads: every call it makes is a GET (or one of
the searches and token requests vendors send as POST), never a write, and
the journal is opened read-only. A check that cannot run because an earlier
one failed (no credentials, no access) is reported as skipped, not failed:
the failure that caused it is already on its own line.

What is checked, in order: the config file; the secrets; the state
directory; per service, that it answers and accepts the credentials, then
what syncctl needs from it (Stripe: sessions, events, the VIP prices and
products; Mautic: the five custom fields with their types, the three
template emails published; Discord: the bot may view, create invites in,
and manage both channels, and may grant each role in `vip_role_ids` and
`basic_role_ids` (the role exists, the bot has MANAGE_ROLES, the role is
below the bot's highest role); Shopware: the VIP promotion exists and its codes
can be redeemed now (active, inside its valid dates, individual codes on,
below its global maximum: rule 23); EspoCRM: the API user may read and
create Leads, and `lead_source` is one of the Lead's source options).
"""

from __future__ import annotations

import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from syncctl.clients.discord import ChannelPermissions, DiscordClient
from syncctl.clients.espocrm import EspoClient
from syncctl.clients.mautic import MauticClient
from syncctl.clients.shopware import (
    CREDENTIALS_HINT,
    PROMOTION_HINT,
    PROMOTION_SCREEN,
    Promotion,
    ShopwareClient,
    promotion_problems,
)
from syncctl.clients.stripe import StripeAPI
from syncctl.config import SECRET_NAMES, Config
from syncctl.errors import (
    AuthRejected,
    ConfigError,
    NotFound,
    RateLimited,
    ServiceError,
    StateError,
    Unavailable,
)
from syncctl.net.http import CallStats, RetryPolicy
from syncctl.state.journal import Journal
from syncctl.state.location import FIX as STATE_DIR_FIX
from syncctl.state.location import state_dir_problem

FORMAT_VERSION = 1
#: Doctor answers within seconds: one retry, short timeouts.
RETRY = RetryPolicy(attempts=2, backoff_initial=0.5, backoff_max=2.0, max_retry_after=10.0)
MAX_TIMEOUT = 10.0

#: [mautic.fields] name -> (accepted Mautic field types, the type to create).
FIELD_TYPES: dict[str, tuple[frozenset[str], str]] = {
    "vip_status": (frozenset({"boolean"}), "Boolean"),
    "promo_code": (frozenset({"text"}), "Text"),
    "invite_link_vip": (frozenset({"text", "url"}), "Text (or URL)"),
    "invite_link_basic": (frozenset({"text", "url"}), "Text (or URL)"),
    "opt_in_confirmed": (frozenset({"boolean"}), "Boolean"),
}
SERVICE_SECRETS: dict[str, tuple[str, ...]] = {
    "stripe": ("STRIPE_API_KEY",),
    "mautic": ("MAUTIC_USERNAME", "MAUTIC_PASSWORD"),
    "discord": ("DISCORD_BOT_TOKEN",),
    "shopware": ("SHOPWARE_CLIENT_ID", "SHOPWARE_CLIENT_SECRET"),
    "espocrm": ("ESPOCRM_API_KEY",),
}
DISCORD_NEEDS = ("VIEW_CHANNEL", "CREATE_INSTANT_INVITE", "MANAGE_CHANNELS")


@dataclass(frozen=True)
class CheckResult:
    """One check: passed or not, what was found, and how to fix it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    skipped: bool = False

    @property
    def status(self) -> str:
        return "skip" if self.skipped else ("ok" if self.ok else "FAIL")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.lower(),
            "ok": self.ok,
            "detail": self.detail,
            "fix": self.fix or None,
        }


@dataclass
class DoctorReport:
    checks: list[CheckResult] = field(default_factory=list)
    config_path: Path | None = None
    stats: CallStats = field(default_factory=CallStats)
    duration: float = 0.0

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.ok and not c.skipped]

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "ok": self.ok,
            "config": str(self.config_path) if self.config_path else None,
            "checks": [c.to_dict() for c in self.checks],
            "api_calls": {
                name: {"reads": s.reads, "writes": s.writes}
                for name, s in sorted(self.stats.services.items())
            },
            "duration_seconds": round(self.duration, 3),
        }


def run_doctor(load: Callable[[], Config]) -> DoctorReport:
    """Run every check; `load` reads the config (its failure is the first check)."""
    started = time.monotonic()
    report = DoctorReport()
    try:
        config = load()
    except ConfigError as exc:
        report.checks.append(
            CheckResult(
                "config",
                False,
                exc.message,
                exc.hint
                or "fix the config file (`syncctl init --dir DIR` writes a commented example "
                "of every key)",
            )
        )
        report.duration = time.monotonic() - started
        return report
    report.config_path = config.path
    _Doctor(config, report).run()
    report.duration = time.monotonic() - started
    return report


class _Doctor:
    def __init__(self, config: Config, report: DoctorReport) -> None:
        self.config = config
        self.settings = config.settings
        self.report = report
        self.timeout = min(self.settings.run.timeout_seconds, MAX_TIMEOUT)

    # -- plumbing -----------------------------------------------------------------

    def add(self, name: str, ok: bool, detail: str, fix: str = "") -> bool:
        self.report.checks.append(CheckResult(name, ok, detail, "" if ok else fix))
        return ok

    def skip(self, name: str, why: str) -> None:
        self.report.checks.append(CheckResult(name, False, why, skipped=True))

    @contextmanager
    def probe(self, name: str, fix: str = "", auth_fix: str = "") -> Iterator[list[bool]]:
        """Run a service check; a ServiceError becomes a failed line with its hint.

        Yields a one-element list the caller may set to False to tell that
        the check failed (so dependent checks are skipped).
        """
        passed = [True]
        try:
            yield passed
        except ServiceError as exc:
            passed[0] = False
            use = auth_fix if auth_fix and isinstance(exc, AuthRejected) else fix
            self.add(name, False, exc.message, _fix_for(exc, use))

    def common(self) -> dict[str, Any]:
        return {
            "stats": self.report.stats,
            "retry": RETRY,
            "timeout": self.timeout,
            "max_concurrency": 2,
        }

    def client(self, service: str, build: Callable[[Callable[[str], str]], Any]) -> Any:
        """The service's client, or None (with a skipped line) when its secrets are missing."""
        missing = self.config.secrets.missing(SERVICE_SECRETS[service])
        if missing:
            self.skip(f"{service}.access", f"not checked: {', '.join(missing)} not set")
            return None
        try:
            return build(self.config.secret)
        except ServiceError as exc:
            self.add(f"{service}.access", False, exc.message, _fix_for(exc, ""))
        except ConfigError as exc:
            self.add(f"{service}.access", False, exc.message, exc.hint or "")
        return None

    # -- the checks -----------------------------------------------------------------

    def run(self) -> None:
        self.add("config", True, f"{self.config.path}: valid")
        self.secrets()
        self.state_store()
        for check in (self.stripe, self.mautic, self.discord, self.shopware, self.espocrm):
            check()

    def secrets(self) -> None:
        secrets = self.config.secrets
        missing = secrets.missing()
        if missing:
            problem, fix = secrets.explain_missing(missing)
            self.add("secrets", False, problem, fix)
            return
        sources: dict[str, int] = {}
        for name in SECRET_NAMES:
            source = secrets.sources.get(name, "?")
            sources[source] = sources.get(source, 0) + 1
        where = ", ".join(f"{n} from {s}" for s, n in sorted(sources.items()))
        self.add("secrets", True, f"all {len(SECRET_NAMES)} set ({where})")
        for source in sorted(set(sources) - {"environment", "?"}):
            self.secrets_file(Path(source))

    def secrets_file(self, path: Path) -> None:
        """A .env others on the machine can read gives the campaign away."""
        try:
            mode = path.stat().st_mode
        except OSError:
            return
        if mode & 0o077:
            self.add(
                "secrets.file",
                False,
                f"{path} is readable by others (mode {stat.S_IMODE(mode):04o})",
                f"chmod 600 {path}",
            )

    def state_store(self) -> None:
        """The SQLite file in state_dir, or the shared PostgreSQL store."""
        try:
            location = self.config.state
        except ConfigError as exc:
            self.add("state_store", False, exc.message, exc.hint or "")
            return
        if not location.url:
            self.state_dir()
            return
        from syncctl.state.migrations import SCHEMA_VERSION
        from syncctl.state.postgres import inspect

        where = location.describe()
        try:
            found = inspect(location)
        except StateError as exc:
            self.add("state_store", False, exc.message, exc.hint or "")
            self.skip("state_store.privileges", "the store could not be reached")
            self.skip("state_store.lock", "the store could not be reached")
            return
        server = f"PostgreSQL {found.server_version.split()[0]}, schema {found.schema}"
        if found.version > SCHEMA_VERSION:
            self.add(
                "state_store",
                False,
                f"{where}: written by a newer syncctl (schema {found.version}; this one knows "
                f"up to {SCHEMA_VERSION})",
                "upgrade syncctl on this host",
            )
        elif found.version == 0:
            self.add(
                "state_store",
                True,
                f"{where}: {server}; no tables yet (the first run creates them)",
            )
        else:
            upgrade = "" if found.version == SCHEMA_VERSION else " (the next run upgrades it)"
            self.add(
                "state_store",
                True,
                f"{where}: {server}; store schema {found.version}{upgrade}"
                f" (from {location.source})",
            )
        if found.missing:
            self.add(
                "state_store.privileges",
                False,
                f"the role may not: {', '.join(found.missing)}",
                "as the database owner: GRANT the rights docs/operator-guide.md lists "
                "(Two hosts: the PostgreSQL state store)",
            )
        else:
            self.add("state_store.privileges", True, "may read, write and (if needed) migrate")
        holder = found.holder
        if holder is None:
            self.add("state_store.lock", True, "free: no run holds it now")
        else:
            since = (
                f" since {holder.started:%Y-%m-%d %H:%M:%S} UTC"
                f" ({(datetime.now(UTC) - holder.started).total_seconds() / 60:.0f} min)"
                if holder.started
                else ""
            )
            who = f"syncctl@{holder.host} pid {holder.pid}" if holder.host else f"pid {holder.pid}"
            self.add(
                "state_store.lock",
                not holder.stuck,
                f"held by {who}{since}",
                f"that run looks stuck: check it on {holder.host or 'its host'} "
                f"(ps -p {holder.pid}); if it hangs, stop it: the lock is freed at once",
            )

    def state_dir(self) -> None:
        path = self.settings.run.state_path
        problem = state_dir_problem(path)
        if problem is not None:
            self.add("state_dir", False, problem, STATE_DIR_FIX)
            return
        if not path.exists():
            self.add("state_dir", True, f"{path}: will be created by the first run")
            return
        try:
            with Journal.open(path, readonly=True) as journal:
                runs = journal.runs(limit=1)
        except StateError as exc:
            self.add("state_dir", False, exc.message, exc.hint or STATE_DIR_FIX)
            return
        last = "no run yet"
        if runs:
            outcome = runs[0].outcome or "unfinished"
            last = f"last run {runs[0].started_at:%Y-%m-%d %H:%M} UTC ({outcome})"
        self.add("state_dir", True, f"{path}: writable; {last}")

    # -- Stripe ---------------------------------------------------------------------

    def stripe(self) -> None:
        s = self.settings.stripe
        client: StripeAPI | None = self.client(
            "stripe",
            lambda secret: StripeAPI(s.api_base, secret("STRIPE_API_KEY"), **self.common()),
        )
        if client is None:
            return self._skip_rest("stripe", "stripe.access")
        with client:
            with self.probe("stripe.access") as passed:
                client.check_access()
                self.add("stripe.access", True, "key accepted; may read Checkout Sessions")
            if not passed[0]:
                return self._skip_rest("stripe", "stripe.access")
            if s.incremental_source == "events":
                with self.probe("stripe.events", _EVENTS_FIX):
                    next(iter(client.iter_session_events(int(time.time()), page_size=1)), None)
                    self.add("stripe.events", True, "may read Events (incremental_source = events)")
            with self.probe("stripe.refunds", _REFUNDS_FIX):
                client.check_payment_access()
                self.add("stripe.refunds", True, "may read Charges and Disputes (rule 17)")
            for price_id in s.vip_price_ids:
                name = f"stripe.price {price_id}"
                with self.probe(name, _STRIPE_ID_FIX.format(key="vip_price_ids")):
                    price = client.get_price(price_id)
                    state = "active" if price.active else "archived: new checkouts cannot use it"
                    self.add(name, True, f"exists ({state}; product {price.product})")
            for product_id in s.vip_product_ids:
                name = f"stripe.product {product_id}"
                with self.probe(name, _STRIPE_ID_FIX.format(key="vip_product_ids")):
                    product = client.get_product(product_id)
                    state = "active" if product.active else "archived"
                    self.add(name, True, f"exists ({product.name or 'unnamed'}, {state})")

    # -- Mautic -------------------------------------------------------------------------

    def mautic(self) -> None:
        m = self.settings.mautic
        client: MauticClient | None = self.client(
            "mautic",
            lambda secret: MauticClient(
                m.base_url, secret("MAUTIC_USERNAME"), secret("MAUTIC_PASSWORD"), **self.common()
            ),
        )
        if client is None:
            return self._skip_rest("mautic", "mautic.access")
        with client:
            with self.probe(
                "mautic.access",
                "enable the API and HTTP basic auth (Settings > Configuration > API Settings) "
                "and check MAUTIC_USERNAME / MAUTIC_PASSWORD",
            ) as passed:
                total = client.check_access()
                self.add("mautic.access", True, f"credentials accepted ({total} contacts)")
            if not passed[0]:
                return self._skip_rest("mautic", "mautic.access")
            with self.probe("mautic.fields") as passed:
                fields = {f.alias: f for f in client.list_contact_fields()}
            if passed[0]:
                for name, (types, create_as) in FIELD_TYPES.items():
                    self.mautic_field(name, getattr(m.fields, name), types, create_as, fields)
            for key in ("invite_email_vip", "invite_email_basic", "coupon_email"):
                email_id = getattr(m, key)
                name = f"mautic.email {email_id}"
                fix = (
                    f"create the template email (Channels > Emails > New > Template email) "
                    f"and set [mautic] {key} to its id"
                )
                with self.probe(name, fix):
                    info = client.get_email(email_id)
                    label = f"{key}: {info.name!r}"
                    if info.is_published:
                        kind = f", {info.email_type} email" if info.email_type else ""
                        self.add(name, True, f"{label}, published{kind}")
                    else:
                        self.add(
                            name,
                            False,
                            f"{label} is not published: Mautic will not send it",
                            f"publish email {email_id} in Mautic (Channels > Emails)",
                        )

    def mautic_field(
        self,
        name: str,
        alias: str,
        types: frozenset[str],
        create_as: str,
        fields: dict[str, Any],
    ) -> None:
        check = f"mautic.field {alias}"
        info = fields.get(alias)
        create = (
            f"create a contact custom field with alias {alias}, type {create_as} "
            f"(Settings > Custom Fields), or set [mautic.fields] {name} to the alias you use"
        )
        if info is None:
            self.add(check, False, f"no contact field with alias {alias} ({name})", create)
        elif info.type not in types:
            self.add(
                check,
                False,
                f"{name}: type is {info.type}, syncctl needs {create_as}",
                f"recreate the field as {create_as} (Mautic cannot change a field's type), "
                f"or set [mautic.fields] {name} to a field of that type",
            )
        elif not info.published:
            self.add(
                check,
                False,
                f"{name}: the field is unpublished, so the API ignores it",
                f"publish the field {alias} (Settings > Custom Fields)",
            )
        else:
            self.add(check, True, f"{name}: {info.type}, published")

    # -- Discord ------------------------------------------------------------------------

    def discord(self) -> None:
        d = self.settings.discord
        client: DiscordClient | None = self.client(
            "discord",
            lambda secret: DiscordClient(d.api_base, secret("DISCORD_BOT_TOKEN"), **self.common()),
        )
        if client is None:
            return self._skip_rest("discord", "discord.access")
        with client:
            with self.probe(
                "discord.access",
                "check DISCORD_BOT_TOKEN (Developer Portal > your app > Bot > Reset Token)",
            ) as passed:
                bot = client.current_user_id()
                self.add("discord.access", True, f"bot token accepted (bot user {bot})")
            if not passed[0]:
                return self._skip_rest("discord", "discord.access")
            tiers = (
                ("vip", d.vip_channel_id, d.vip_role_ids),
                ("basic", d.basic_channel_id, d.basic_role_ids),
            )
            for tier, channel, role_ids in tiers:
                name = f"discord.channel {tier}"
                fix = (
                    f"check [discord] {tier}_channel_id and that the bot is in that server; "
                    f"grant its role {', '.join(DISCORD_NEEDS)} on the channel"
                )
                perms: ChannelPermissions | None = None
                with self.probe(name, fix):
                    perms = client.channel_permissions(channel, bot)
                    missing = perms.missing(*DISCORD_NEEDS)
                    if missing:
                        self.add(
                            name,
                            False,
                            f"channel {channel}: the bot lacks {', '.join(missing)}",
                            f"grant the bot's role {', '.join(missing)} on channel {channel} "
                            "(channel settings > Permissions)",
                        )
                    else:
                        self.add(
                            name,
                            True,
                            f"channel {channel}: may create invites and manage (revoke) them",
                        )
                self.discord_roles(tier, role_ids, perms)

    def discord_roles(
        self, tier: str, role_ids: list[str], perms: ChannelPermissions | None
    ) -> None:
        """Each role the tier's invites grant: Discord refuses the whole invite otherwise.

        Read from what the channel check already fetched (the server's roles,
        the bot's roles and server-wide permissions): no further call.
        """
        key = f"[discord] {tier}_role_ids"
        for role_id in role_ids:
            name = f"discord.role {tier} {role_id}"
            if perms is None:
                self.skip(name, f"not checked: discord.channel {tier} did not pass")
                continue
            problems = perms.grant_problems([role_id])
            if not problems:
                role = perms.role(role_id)
                top = perms.highest_role
                label = repr(role.name) if role is not None else role_id
                below = f" (below the bot's role {top.name!r})" if top is not None else ""
                self.add(name, True, f"{label}: {tier} invites may grant it{below}")
                continue
            fixes = [p.fix for p in problems]
            if any(p.kind in ("unknown", "everyone", "managed") for p in problems):
                fixes.append(f"or remove it from {key}")
            self.add(
                name,
                False,
                f"{'; '.join(p.problem for p in problems)}: Discord would refuse every "
                f"{tier} invite",
                ", ".join(dict.fromkeys(fixes)),
            )

    # -- Shopware -----------------------------------------------------------------------

    def shopware(self) -> None:
        sw = self.settings.shopware
        client: ShopwareClient | None = self.client(
            "shopware",
            lambda secret: ShopwareClient(
                sw.base_url,
                secret("SHOPWARE_CLIENT_ID"),
                secret("SHOPWARE_CLIENT_SECRET"),
                **self.common(),
            ),
        )
        if client is None:
            return self._skip_rest("shopware", "shopware.access")
        with client:
            with self.probe("shopware.access", CREDENTIALS_HINT) as passed:
                access = client.check_access()
                version = f"Shopware {access.version}" if access.version else "Shopware"
                if access.can_read_codes:
                    self.add("shopware.access", True, f"credentials accepted ({version})")
                else:
                    self.add(
                        "shopware.access",
                        False,
                        f"credentials accepted ({version}) but the integration may not read "
                        "promotion individual codes",
                        _SHOPWARE_ACL,
                    )
            if not passed[0]:
                return self._skip_rest("shopware", "shopware.access")
            with self.probe("shopware.promotion", PROMOTION_HINT, _SHOPWARE_ACL):
                self.shopware_promotion(client.get_promotion(sw.vip_promotion_id))

    def shopware_promotion(self, promotion: Promotion) -> None:
        """Rule 23: codes of a promotion the cart would refuse are neither minted nor mailed."""
        problems = promotion_problems(promotion, datetime.now(UTC))
        label = promotion.name or promotion.id
        if problems:
            self.add(
                "shopware.promotion",
                False,
                f"{label}: {'; '.join(p for p, _ in problems)}: buyers could not redeem its "
                "codes, so reconcile mints and mails none",
                f"open the promotion ({PROMOTION_SCREEN} > {label}): "
                + ", ".join(f for _, f in problems),
            )
            return
        window = _validity(promotion)
        self.add(
            "shopware.promotion",
            True,
            f"{label}: active, uses individual codes{window}",
        )

    # -- EspoCRM ------------------------------------------------------------------------

    def espocrm(self) -> None:
        e = self.settings.espocrm
        client: EspoClient | None = self.client(
            "espocrm",
            lambda secret: EspoClient(e.base_url, secret("ESPOCRM_API_KEY"), **self.common()),
        )
        if client is None:
            return self._skip_rest("espocrm", "espocrm.access")
        with client:
            with self.probe(
                "espocrm.access",
                "check ESPOCRM_API_KEY (Administration > API Users > the user's API key)",
            ) as passed:
                report = client.check_access()
                who = report.user_name or report.user_id or "the API user"
                if report.ok:
                    self.add("espocrm.access", True, f"{who} may read and create Leads")
                else:
                    passed[0] = False
                    rights = (("read", report.can_read_leads), ("create", report.can_create_leads))
                    lacks = [verb for verb, may in rights if not may]
                    self.add(
                        "espocrm.access",
                        False,
                        f"{who} may not {' or '.join(lacks)} Leads",
                        "give the API user a role with Lead: create yes, read all (or team) "
                        "(Administration > Roles, then the API user's Roles)",
                    )
            if not passed[0]:
                return self._skip_rest("espocrm", "espocrm.access")
            self.espocrm_lead_source(client, e.lead_source)

    def espocrm_lead_source(self, client: EspoClient, source: str) -> None:
        """Espo refuses (400) every Lead whose `source` is not one of the field's options."""
        name = "espocrm.lead_source"
        with self.probe(name, "check that the API user may read Espo's metadata"):
            field_defs = client.lead_field("source")
            if field_defs is None:
                self.skip(name, "not checked: Espo's metadata shows the API user no Lead source")
            elif field_defs.options is None:
                kind = field_defs.type or "untyped"
                self.add(name, True, f"{source!r}: the Lead's source is a {kind} field")
            elif source in field_defs.options:
                self.add(name, True, f"{source!r} is one of the Lead's source options")
            else:
                allowed = ", ".join(repr(o) for o in field_defs.options if o)
                self.add(
                    name,
                    False,
                    f"[espocrm] lead_source = {source!r} is not one of the Lead's source "
                    f"options ({allowed}): EspoCRM would refuse every new lead",
                    f"set [espocrm] lead_source to one of them, or add {source!r} to the options "
                    "(Administration > Entity Manager > Lead > Fields > Source)",
                )

    def _skip_rest(self, service: str, because: str) -> None:
        """Name the checks that did not run because `because` failed."""
        names = {
            "stripe": ["stripe.prices/products"],
            "mautic": ["mautic.fields", "mautic.emails"],
            "discord": ["discord.channels"],
            "shopware": ["shopware.promotion"],
            "espocrm": ["espocrm.lead_source"],
        }.get(service, [])
        for name in names:
            self.skip(name, f"not checked: {because} did not pass")


_STRIPE_ID_FIX = (
    "check [stripe] {key}: copy the id from the Dashboard (Product catalogue), "
    "in the same mode (test/live) as the key"
)
_EVENTS_FIX = (
    'give the restricted key read access to Events, or set [stripe] incremental_source = "sessions"'
)
_REFUNDS_FIX = (
    "give the restricted key read access to Charges and Disputes: refunds and disputes "
    "(rule 17) are read there"
)
_SHOPWARE_ACL = (
    "give the integration a role with promotion: read and promotion individual codes: "
    "read + create + delete (Settings > System > Integrations), or mark it administrator"
)


def _validity(promotion: Promotion) -> str:
    """ ", valid until 2026-06-01 10:00 UTC" and the like; "" for an open window."""
    parts = []
    if promotion.valid_from is not None:
        parts.append(f"from {promotion.valid_from:%Y-%m-%d %H:%M} UTC")
    if promotion.valid_until is not None:
        parts.append(f"until {promotion.valid_until:%Y-%m-%d %H:%M} UTC")
    return f", valid {' '.join(parts)}" if parts else ""


def _fix_for(exc: ServiceError, fallback: str) -> str:
    if isinstance(exc, Unavailable):
        return "check the base URL in the config and that the service is up (and reachable)"
    if isinstance(exc, RateLimited):
        return "the service is rate limiting; run doctor again in a minute"
    if isinstance(exc, AuthRejected | NotFound) and fallback:
        return fallback
    return exc.hint or fallback
