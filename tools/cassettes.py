"""Recorded HTTP conversations (vcrpy cassettes): scenarios, scrubbing, recording, replay.

A cassette holds every request syncctl's real clients sent during one
scenario (one or more commands in a row) and every answer they got, plus, in
the cassette's `metadata`, what a replay needs to be exact:

- the config the commands ran with, base URLs rewritten to
  `https://<service>.cassette.invalid` (nothing can resolve them);
- for each command: the frozen wall clock it ran under (`now`: the one input
  of syncctl's requests that is not in the recorded answers; the Stripe
  cursor and look-back windows derive from it), how many interactions it
  used, and its result (the plan, the outcomes, the API call counts and the
  exit code; for doctor, its checks).

Replays run the same commands on a fresh state directory, with no network,
with `record_mode="none"` and `allow_playback_repeats=False`: each recorded
answer is used once, in the recorded order, and only for a request equal to
the recorded one in method, URL, query, body (POST/PATCH included) and
Discord's audit-log reason. Everything random on the service side (ids,
invite codes, tokens, timestamps) comes from the recorded answers, so a
replay is deterministic; coupon codes are derived with the public
`CODE_SECRET` below, so the bodies that carry them match too.

Scrubbing happens before anything is written (and the same function
normalises the requests of a replay before they are matched): request
headers are cut down to an allow-list (no Authorization, X-Api-Key, cookies,
Stripe's client user agent), `Set-Cookie` answers are dropped, OAuth client
ids and secrets, passwords and tokens in bodies become `SCRUBBED`, the
recording's secret values are replaced wherever they occur, and email
addresses outside example.com/.org/.net become stable pseudonyms.

`python -m tools.record_cassettes` re-records (see that module and README).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import html
import importlib
import json
import os
import pkgutil
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import vcr
from vcr.request import Request as VcrRequest

ROOT = Path(__file__).resolve().parents[1]
CASSETTE_DIR = ROOT / "cassettes"
LIVE_DIR = CASSETTE_DIR / "live"
METADATA_KEY = "syncctl"
FORMAT = 1

SERVICES = ("stripe", "mautic", "discord", "shopware", "espocrm")
CANONICAL = {name: f"https://{name}.cassette.invalid" for name in SERVICES}
DISCORD_API_PATH = "/api/v10"

#: The credentials of sandbox recordings: fixed (so the secret scan can look
#: for them) and fake. The code secret is public on purpose: coupon codes are
#: derived from it, and a replay must derive the same ones. Live recordings
#: use it too, so record only against test instances.
RECORDING_SECRETS: dict[str, str] = {
    "STRIPE_API_KEY": "rk_sandbox_CASSETTEfakeStripeKey01",
    "MAUTIC_USERNAME": "cassette-mautic-user",
    "MAUTIC_PASSWORD": "CASSETTEfakeMauticPassword01",
    "DISCORD_BOT_TOKEN": "CASSETTEfake.DiscordBotToken.0000000001",
    "SHOPWARE_CLIENT_ID": "SWIACASSETTEFAKECLIENTID01",
    "SHOPWARE_CLIENT_SECRET": "CASSETTEfakeShopwareClientSecret01",
    "ESPOCRM_API_KEY": "CASSETTEfakeEspoApiKey000000001",
    "SYNCCTL_CODE_SECRET": "cassette-code-secret-public-not-secret",
}
CODE_SECRET = RECORDING_SECRETS["SYNCCTL_CODE_SECRET"]

#: A replay authenticates with these: different from the recording's, to show
#: credentials play no part in matching.
REPLAY_SECRETS: dict[str, str] = {
    **{name: f"replay-{name.lower().replace('_', '-')}-0000" for name in RECORDING_SECRETS},
    "SYNCCTL_CODE_SECRET": CODE_SECRET,
}

# -- scrubbing ------------------------------------------------------------------------

SCRUBBED = "SCRUBBED"
#: Request headers kept in a cassette; every other one (Authorization,
#: X-Api-Key, Cookie, X-Stripe-Client-User-Agent with the host's uname...) goes.
KEEP_REQUEST_HEADERS = frozenset(
    {
        "content-type",
        "accept",
        "x-audit-log-reason",
        "x-skip-duplicate-check",
        "x-no-total",
        "idempotency-key",
    }
)
DROP_RESPONSE_HEADERS = frozenset(
    {"set-cookie", "cookie", "authorization", "proxy-authorization", "x-api-key"}
)
#: JSON or form fields whose values never reach a cassette.
SECRET_FIELDS = frozenset(
    {
        "client_id",
        "client_secret",
        "access_token",
        "refresh_token",
        "id_token",
        "password",
        "api_key",
        "apikey",
        "token",
        "secret",
        "bot_token",
    }
)
SAFE_EMAIL_DOMAINS = ("example.com", "example.org", "example.net")
SAFE_EMAIL_SUFFIXES = (".example", ".invalid", ".test", ".localhost")

_EMAIL = re.compile(
    r"(?P<local>[A-Za-z0-9._%+'!#$&*?^`{|}~;-]+)(?P<at>@|%40)"
    r"(?P<domain>[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,})"
)


def is_safe_email_domain(domain: str) -> bool:
    domain = domain.lower()
    return any(domain == d or domain.endswith("." + d) for d in SAFE_EMAIL_DOMAINS) or (
        domain.endswith(SAFE_EMAIL_SUFFIXES)
    )


def real_looking_emails(text: str) -> list[str]:
    """Email addresses in `text` outside the documentation domains."""
    return sorted({m[0] for m in _EMAIL.finditer(text) if not is_safe_email_domain(m["domain"])})


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Scrubber:
    """Makes requests and answers safe to commit; idempotent.

    `origins` maps each real base URL origin to its canonical stand-in,
    `secrets` are values to cut wherever they appear, `salt` keys the email
    pseudonyms (random per recording, never stored).
    """

    def __init__(
        self,
        origins: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
        salt: bytes | None = None,
    ) -> None:
        self._origins = [
            (re.compile(re.escape(real) + r"(?![0-9A-Za-z.-])"), canonical)
            for real, canonical in sorted((origins or {}).items(), key=lambda kv: -len(kv[0]))
            for real, canonical in (
                (real, canonical),
                (real.replace("/", "\\/"), canonical.replace("/", "\\/")),
            )
        ]
        self._secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)
        self._salt = salt if salt is not None else os.urandom(16)

    # -- text ---------------------------------------------------------------------

    def text(self, value: str) -> str:
        for pattern, canonical in self._origins:
            value = pattern.sub(canonical.replace("\\", "\\\\"), value)
        for secret in self._secrets:
            value = value.replace(secret, SCRUBBED)
        return _EMAIL.sub(self._email, value)

    def _email(self, match: re.Match[str]) -> str:
        if is_safe_email_domain(match["domain"]):
            return match[0]
        address = f"{html.unescape(unquote(match['local']))}@{match['domain']}".lower()
        digest = hmac.new(self._salt, address.encode(), hashlib.sha256).hexdigest()[:10]
        return f"scrubbed-{digest}{match['at']}example.com"

    def obj(self, value: Any) -> Any:
        """Scrub every string of a JSON-like value (results stored in metadata)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.obj(k): self.obj(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.obj(v) for v in value]
        return value

    # -- vcrpy hooks --------------------------------------------------------------

    def request(self, request: VcrRequest) -> VcrRequest:
        scrubbed = copy.deepcopy(request)
        scrubbed.uri = self._uri(request.uri)
        kept = {
            name: self.text(str(value))
            for name, value in request.headers.items()
            if name.lower() in KEEP_REQUEST_HEADERS
        }
        scrubbed.headers = kept
        body = request.body
        if isinstance(body, bytes | str) and body:
            content_type = str(request.headers.get("content-type", ""))
            scrubbed.body = self._body(body, content_type)
        return scrubbed

    def response(self, response: dict[str, Any]) -> dict[str, Any]:
        scrubbed = copy.deepcopy(response)
        headers = {
            name: [self.text(str(v)) for v in values]
            for name, values in response.get("headers", {}).items()
            if name.lower() not in DROP_RESPONSE_HEADERS
        }
        body = response.get("body", {}).get("string")
        if isinstance(body, bytes | str) and body:
            content_type = next(
                (v[0] for k, v in headers.items() if k.lower() == "content-type" and v), ""
            )
            new = self._body(body, content_type)
            scrubbed["body"]["string"] = new
            for name in headers:
                if name.lower() == "content-length":
                    headers[name] = [str(len(new))]
        scrubbed["headers"] = headers
        return scrubbed

    # -- parts --------------------------------------------------------------------

    def _uri(self, uri: str) -> str:
        parts = urlsplit(uri)
        origin = self.text(f"{parts.scheme}://{parts.netloc}")
        scheme, netloc = urlsplit(origin)[:2]
        path = parts.path
        clean = self.text(unquote(path))
        if clean != unquote(path):
            path = quote(clean, safe="/@:+,;=!$&'()*~")
        query = parts.query
        pairs = parse_qsl(query, keep_blank_values=True)
        clean_pairs = [
            (k, SCRUBBED if k.lower() in SECRET_FIELDS else self.text(v)) for k, v in pairs
        ]
        if clean_pairs != pairs:
            query = urlencode(clean_pairs, quote_via=quote)
        return urlunsplit((scheme, netloc, path, query, parts.fragment))

    def _body(self, body: bytes | str, content_type: str) -> bytes:
        raw = body.encode() if isinstance(body, str) else body
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw
        if "x-www-form-urlencoded" in content_type.lower():
            pairs = parse_qsl(text, keep_blank_values=True)
            clean = [
                (k, SCRUBBED if k.lower() in SECRET_FIELDS else self.text(v)) for k, v in pairs
            ]
            return (urlencode(clean) if clean != pairs else text).encode()
        return self.text(_scrub_json_fields(text)).encode()


def _scrub_json_fields(text: str) -> str:
    """Replace the values of secret fields; the text is left as is when none."""
    try:
        data = json.loads(text)
    except ValueError:
        return text
    changed = False

    def walk(node: Any) -> None:
        nonlocal changed
        if isinstance(node, dict):
            for key, value in node.items():
                if str(key).lower() in SECRET_FIELDS and isinstance(value, str):
                    if value != SCRUBBED:
                        node[key] = SCRUBBED
                        changed = True
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(data)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False) if changed else text


# -- the secret scan ----------------------------------------------------------------------

SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    "a Stripe secret key": re.compile(r"\bsk_(?:live|test)_\w+"),
    "a Stripe restricted key": re.compile(r"\brk_\w{6,}"),
    "a Discord bot token": re.compile(r"\bBot [A-Za-z0-9._-]{16,}"),
    "HTTP Basic credentials": re.compile(r"\bBasic [A-Za-z0-9+/]{12,}={0,2}"),
    "a bearer token": re.compile(r"\bBearer [A-Za-z0-9._~+/-]{8,}=*"),
    "a JSON web token": re.compile(r"\beyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}"),
}
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "cookie", "set-cookie"}
)


def find_secrets(text: str, values: Iterable[str] = ()) -> list[str]:
    """What in `text` looks like a credential: one line per finding."""
    found = [
        f"{what}: {match[0][:12]}..."
        for what, pattern in SECRET_PATTERNS.items()
        for match in pattern.finditer(text)
    ]
    found += [f"a configured secret ({v[:4]}...)" for v in values if v and v in text]
    found += [f"a real-looking email address: {e}" for e in real_looking_emails(text)]
    return found


def find_cassette_secrets(path: Path, values: Iterable[str] = ()) -> list[str]:
    """`find_secrets` over a cassette's text, plus its headers and JSON fields."""
    import yaml

    text = path.read_text(encoding="utf-8")
    found = find_secrets(text, values)
    data = yaml.safe_load(text) or {}
    for number, interaction in enumerate(data.get("interactions", []), start=1):
        for part in ("request", "response"):
            item = interaction.get(part, {})
            for name in item.get("headers", {}) or {}:
                if name.lower() in CREDENTIAL_HEADERS:
                    found.append(f"interaction {number}: {part} header {name}")
            body = item.get("body")
            body = body.get("string") if isinstance(body, dict) else body
            if isinstance(body, str):
                for key in _unscrubbed_fields(body):
                    found.append(f"interaction {number}: {part} body field {key!r} not scrubbed")
    return found


def _unscrubbed_fields(text: str) -> list[str]:
    try:
        data = json.loads(text)
    except ValueError:
        return []
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if str(key).lower() in SECRET_FIELDS and isinstance(value, str):
                    if value != SCRUBBED:
                        found.append(str(key))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(data)
    return found


# -- vcrpy ------------------------------------------------------------------------------

MATCH_ON = ("method", "scheme", "host", "port", "path", "query", "body", "audit_reason")


def _audit_reason(r1: VcrRequest, r2: VcrRequest) -> None:
    """Discord invites of two people differ only in this header: match on it."""
    a = r1.headers.get("X-Audit-Log-Reason")
    b = r2.headers.get("X-Audit-Log-Reason")
    if a != b:
        raise AssertionError(f"X-Audit-Log-Reason {a!r} != {b!r}")


def use_cassette(path: Path, scrubber: Scrubber, record_mode: str) -> Any:
    """vcrpy's context manager: scrubbing, body matching, each answer used once."""
    recorder = vcr.VCR(
        serializer="yaml",
        record_mode=record_mode,
        match_on=MATCH_ON,
        before_record_request=scrubber.request,
        before_record_response=scrubber.response,
        decode_compressed_response=True,
        record_on_exception=False,
    )
    recorder.register_matcher("audit_reason", _audit_reason)
    return recorder.use_cassette(str(path), allow_playback_repeats=False)


# -- the clock ----------------------------------------------------------------------------


def _syncctl_modules() -> list[Any]:
    """Every syncctl module except the sandbox (which keeps real time)."""
    import syncctl

    for info in pkgutil.walk_packages(syncctl.__path__, "syncctl."):
        if not info.name.startswith("syncctl.sandbox") and info.name != "syncctl.__main__":
            importlib.import_module(info.name)
    return [
        module
        for name, module in list(sys.modules.items())
        if (name == "syncctl" or name.startswith("syncctl."))
        and not name.startswith("syncctl.sandbox")
    ]


class _FrozenTime:
    """The `time` module, except that `time()` answers a fixed moment."""

    def __init__(self, epoch: int) -> None:
        self._epoch = epoch

    def time(self) -> float:
        return float(self._epoch)

    def time_ns(self) -> int:
        return self._epoch * 1_000_000_000

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)  # monotonic, sleep, ... stay real


@contextlib.contextmanager
def frozen_clock(epoch: int) -> Iterator[None]:
    """syncctl's wall clock (`datetime.now()`, `time.time()`) answers `epoch`.

    The cursors and look-back windows, thus the query strings, derive from
    it; monotonic time (timeouts, rate-limit buckets) and sleeps stay real.
    """
    fixed = datetime.fromtimestamp(epoch, UTC)

    class FrozenDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            local = fixed.astimezone(tz) if tz is not None else fixed.astimezone()
            return local if tz is not None else local.replace(tzinfo=None)

        @classmethod
        def utcnow(cls) -> datetime:  # type: ignore[override]
            return fixed.replace(tzinfo=None)

    frozen_time = _FrozenTime(epoch)
    patched: list[tuple[Any, str, Any]] = []
    for module in _syncctl_modules():
        for name, real, fake in (
            ("datetime", datetime, FrozenDatetime),
            ("time", time, frozen_time),
        ):
            if getattr(module, name, None) is real:
                patched.append((module, name, real))
                setattr(module, name, fake)
    try:
        yield
    finally:
        for module, name, real in patched:
            setattr(module, name, real)


# -- config ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignIds:
    """The ids a config names (prices, channels, promotion, Mautic emails)."""

    vip_price_ids: tuple[str, ...]
    vip_channel_id: str
    basic_channel_id: str
    vip_promotion_id: str
    invite_email_vip: int
    invite_email_basic: int
    coupon_email: int


def config_text(bases: Mapping[str, str], ids: CampaignIds, state_dir: str) -> str:
    """A syncctl.toml for these base URLs; one action at a time (a fixed order)."""
    return f"""\
# Cassette config: one action at a time, so a replay sends requests in the
# recorded order.
[stripe]
api_base = "{bases["stripe"]}"
vip_price_ids = {json.dumps(list(ids.vip_price_ids))}

[mautic]
base_url = "{bases["mautic"]}"
invite_email_vip = {ids.invite_email_vip}
invite_email_basic = {ids.invite_email_basic}
coupon_email = {ids.coupon_email}

[discord]
api_base = "{bases["discord"]}"
vip_channel_id = "{ids.vip_channel_id}"
basic_channel_id = "{ids.basic_channel_id}"

[shopware]
base_url = "{bases["shopware"]}"
vip_promotion_id = "{ids.vip_promotion_id}"

[espocrm]
base_url = "{bases["espocrm"]}"

[run]
state_dir = "{state_dir}"
concurrency = 1
"""


def canonical_bases(bases: Mapping[str, str]) -> dict[str, str]:
    """The recorded base URLs: same paths, canonical origins."""
    return {name: CANONICAL[name] + urlsplit(url).path.rstrip("/") for name, url in bases.items()}


def write_campaign_files(
    directory: Path, config: str, secrets: Mapping[str, str]
) -> tuple[Path, Path]:
    """syncctl.toml and an owner-only .env in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "syncctl.toml"
    env_path = directory / ".env"
    config_path.write_text(config)
    env_path.touch(mode=0o600)
    env_path.chmod(0o600)
    env_path.write_text("".join(f"{k}={v}\n" for k, v in secrets.items()))
    return config_path, env_path


# -- running one command ----------------------------------------------------------------------

#: Result keys that differ between two runs of the same traffic.
VOLATILE_KEYS = frozenset({"started_at", "duration_seconds"})


@dataclass
class StepResult:
    summary: dict[str, Any]
    #: Seconds each service's HTTP layer asked to sleep (Retry-After, buckets).
    waits: dict[str, list[float]] = field(default_factory=dict)
    stderr: str = ""


def summarize(document: Mapping[str, Any], exit_code: int, workdir: Path) -> dict[str, Any]:
    """The comparable part of a command's JSON: no timings, no local paths."""
    kept = {"exit_code": exit_code, **{k: v for k, v in document.items() if k not in VOLATILE_KEYS}}
    text = json.dumps(kept).replace(json.dumps(str(workdir))[1:-1], "{workdir}")
    return dict(json.loads(text))


def run_command(
    command: Sequence[str], config_path: Path, env_path: Path, *, real_sleep: bool
) -> StepResult:
    """Run one syncctl command the way a cassette step does.

    `reconcile` goes through the library (`reconcile(config, services=...)`)
    so the HTTP layer's sleeps can be seen (and skipped on replay); every
    other command goes through the CLI with its JSON output.
    """
    name, *args = command
    if name == "reconcile" and not args:
        return _run_reconcile(config_path, env_path, real_sleep=real_sleep)
    from typer.testing import CliRunner

    from syncctl.cli import app

    result = CliRunner().invoke(
        app, ["--config", str(config_path), "--env-file", str(env_path), name, *args]
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    stdout = result.stdout.strip()
    document = json.loads(stdout) if stdout.startswith("{") else {"stdout": stdout}
    return StepResult(summarize(document, result.exit_code, config_path.parent), {}, result.stderr)


def _run_reconcile(config_path: Path, env_path: Path, *, real_sleep: bool) -> StepResult:
    from syncctl import config as config_mod
    from syncctl.clients.services import Services
    from syncctl.engine.reconcile import reconcile

    config = config_mod.load(config_path, env_path)
    waits: dict[str, list[float]] = {}
    with Services.connect(config) as services:
        for name in SERVICES:
            http = getattr(services, name)._http
            http._sleep = _sleep_recorder(name, waits, real_sleep)
        result = reconcile(config, services=services)
    summary = summarize(result.to_json(), result.exit_code(False), config_path.parent)
    return StepResult(summary, waits)


def _sleep_recorder(
    name: str, waits: dict[str, list[float]], real: bool
) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        waits.setdefault(name, []).append(round(seconds, 3))
        if real:
            time.sleep(seconds)

    return sleep


# -- replay ---------------------------------------------------------------------------------


@dataclass
class ReplayedStep:
    recorded: dict[str, Any]
    result: StepResult
    played: int  # interactions this step used


@dataclass
class Replay:
    metadata: dict[str, Any]
    steps: list[ReplayedStep]
    interactions: int
    all_played: bool


def read_metadata(path: Path) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return dict((data.get("metadata") or {}).get(METADATA_KEY) or {})


def replay(path: Path, workdir: Path, secrets: Mapping[str, str] | None = None) -> Replay:
    """Run a cassette's commands again against its recording, with no network.

    Raises `vcr.errors.CannotOverwriteExistingCassetteException` when syncctl
    sends a request the cassette does not hold (or holds fewer times).
    """
    secrets = {**REPLAY_SECRETS, **(secrets or {})}
    scrubber = Scrubber(secrets=[v for k, v in secrets.items() if k != "SYNCCTL_CODE_SECRET"])
    with use_cassette(path, scrubber, "none") as cassette:
        metadata = cassette.get_metadata(METADATA_KEY, None)
        config = metadata["config"].replace("{state_dir}", str(workdir / "state"))
        config_path, env_path = write_campaign_files(workdir, config, secrets)
        steps: list[ReplayedStep] = []
        for recorded in metadata["steps"]:
            before = cassette.play_count
            with frozen_clock(recorded["now"]):
                result = run_command(recorded["command"], config_path, env_path, real_sleep=False)
            steps.append(ReplayedStep(recorded, result, cassette.play_count - before))
        return Replay(metadata, steps, len(cassette), cassette.all_played)


# -- scenarios --------------------------------------------------------------------------------

HOUR = 3600


def _vip() -> list[tuple[str, str, int]]:
    from syncctl.sandbox.stack import VIP_PRICE_ID, VIP_PRODUCT_ID

    return [(VIP_PRICE_ID, VIP_PRODUCT_ID, 1)]


def _supporter() -> list[tuple[str, str, int]]:
    from syncctl.sandbox.stack import SUPPORTER_PRICE_ID, SUPPORTER_PRODUCT_ID

    return [(SUPPORTER_PRICE_ID, SUPPORTER_PRODUCT_ID, 1)]


def seed_small_campaign(sb: Any, now: float) -> None:
    """Five people, one of each kind the rules tell apart."""
    m, s = sb.mautic, sb.stripe
    # Opted in, bought VIP: coupon, VIP flag, VIP invite, both emails, a lead.
    m.add_contact(
        "ada.lovelace@example.com", firstname="Ada", lastname="Lovelace", opt_in_confirmed=True
    )
    s.add_session(
        "ada.lovelace@example.com",
        name="Ada Lovelace",
        line_items=_vip(),
        created=int(now - 2 * HOUR),
    )
    # Opted in, a supporter (not VIP) purchase: a Basic invite and a lead.
    m.add_contact(
        "grace.hopper@example.com", firstname="Grace", lastname="Hopper", opt_in_confirmed=True
    )
    s.add_session(
        "grace.hopper@example.com",
        name="Grace Hopper",
        line_items=_supporter(),
        created=int(now - 3 * HOUR),
    )
    # Bought VIP (mixed-case address), never signed up: the contact is created.
    s.add_session(
        "Alan.Turing@Example.com", name="Alan Turing", line_items=_vip(), created=int(now - HOUR)
    )
    # Not opted in: nothing.
    m.add_contact(
        "edsger.dijkstra@example.com",
        firstname="Edsger",
        lastname="Dijkstra",
        opt_in_confirmed=False,
    )
    # A delayed payment still pending: not a purchase yet.
    s.add_session(
        "barbara.liskov@example.com",
        name="Barbara Liskov",
        line_items=_vip(),
        payment_status="unpaid",
        created=int(now - 20 * 60),
    )


def seed_two_backers(sb: Any, now: float) -> None:
    m = sb.mautic
    m.add_contact(
        "ada.lovelace@example.com", firstname="Ada", lastname="Lovelace", opt_in_confirmed=True
    )
    sb.stripe.add_session(
        "ada.lovelace@example.com", name="Ada Lovelace", line_items=_vip(), created=int(now - HOUR)
    )
    m.add_contact(
        "grace.hopper@example.com", firstname="Grace", lastname="Hopper", opt_in_confirmed=True
    )


def seed_one_basic_backer(sb: Any, now: float) -> None:
    sb.mautic.add_contact(
        "grace.hopper@example.com", firstname="Grace", lastname="Hopper", opt_in_confirmed=True
    )


def seed_backer_with_link(sb: Any, now: float) -> None:
    from syncctl.sandbox.stack import BASIC_CHANNEL_ID

    code = sb.discord.seed_invite(BASIC_CHANNEL_ID)
    sb.mautic.add_contact(
        "grace.hopper@example.com",
        firstname="Grace",
        lastname="Hopper",
        opt_in_confirmed=True,
        discord_invite_link_basic=f"https://discord.gg/{code}",
    )


def seed_two_buyers(sb: Any, now: float) -> None:
    sb.mautic.add_contact(
        "ada.lovelace@example.com", firstname="Ada", lastname="Lovelace", opt_in_confirmed=True
    )
    sb.stripe.add_session(
        "ada.lovelace@example.com",
        name="Ada Lovelace",
        line_items=_vip(),
        created=int(now - 2 * HOUR),
    )
    sb.stripe.add_session(
        "alan.turing@example.com", name="Alan Turing", line_items=_vip(), created=int(now - HOUR)
    )


def grace_buys_vip(sb: Any) -> None:
    sb.stripe.add_session(
        "grace.hopper@example.com", name="Grace Hopper", line_items=_vip(), created=int(time.time())
    )


def shopware_fails_first_code(sb: Any) -> None:
    """The oldest purchase's code fails, and so do the run's own checked retries of it."""
    oldest = min(
        (s for s in sb.stripe.sessions if s["payment_status"] == "paid"),
        key=lambda s: s["created"],
    )
    from syncctl.engine.codes import coupon_code

    code = coupon_code(oldest["id"], sb.secrets["SYNCCTL_CODE_SECRET"], "VIP-")
    sb.shopware.inject(
        method="POST",
        path=r"^/api/promotion-individual-code$",
        request_body=code,
        status=500,
        times=None,
    )


def shopware_recovers(sb: Any) -> None:
    sb.shopware.clear_faults()


#: What the Discord fault answers: its documented 429 body (the body's
#: `retry_after` is precise, the header is rounded up).
DISCORD_RETRY_AFTER = 0.25


def discord_throttles_first_invite(sb: Any) -> None:
    sb.discord.inject(
        method="POST",
        path=r"/channels/\d+/invites$",
        status=429,
        body={
            "message": "You are being rate limited.",
            "retry_after": DISCORD_RETRY_AFTER,
            "global": False,
        },
        headers={"Retry-After": "1", "X-RateLimit-Scope": "user"},
        times=1,
    )


@dataclass(frozen=True)
class Step:
    #: The syncctl command; `{name}` fields are filled from the world's params.
    command: tuple[str, ...]
    #: A change to the world before the command (sandbox only).
    before: Callable[[Any], None] | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    seed: Callable[[Any, float], None]
    steps: tuple[Step, ...]
    #: Needs a command that may not exist yet (recorded only when it does).
    requires: str | None = None

    @property
    def live(self) -> bool:
        """Recordable against real test accounts: no sandbox-only world changes."""
        return all(step.before is None for step in self.steps)


RECONCILE = Step(("reconcile",))
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("first_run", "first run on a small campaign", seed_small_campaign, (RECONCILE,)),
        Scenario(
            "second_run_noop",
            "a second run finds nothing to do and writes nothing",
            seed_two_backers,
            (RECONCILE, RECONCILE),
        ),
        Scenario(
            "upgrade",
            "a Basic backer buys VIP: the incremental run upgrades them",
            seed_one_basic_backer,
            (RECONCILE, Step(("reconcile",), before=grace_buys_vip)),
        ),
        Scenario(
            "reissue",
            "reissue-invite with a mixed-case address",
            seed_backer_with_link,
            (Step(("reissue-invite", "{reissue_email}", "--yes", "--json")),),
        ),
        Scenario(
            "shopware_failure",
            "Shopware answers 500 for one purchase all run long; the next run retries it",
            seed_two_buyers,
            (
                Step(("reconcile",), before=shopware_fails_first_code),
                Step(("reconcile",), before=shopware_recovers),
            ),
        ),
        Scenario(
            "discord_429",
            "Discord answers 429 with retry_after; the wait is honoured",
            seed_one_basic_backer,
            (Step(("reconcile",), before=discord_throttles_first_invite),),
        ),
        Scenario(
            "doctor",
            "doctor checks every service",
            seed_small_campaign,
            (Step(("doctor", "--json")),),
            requires="doctor",
        ),
    )
}

#: Filled into `{name}` fields of sandbox step commands.
SANDBOX_PARAMS = {"reissue_email": "Grace.Hopper@Example.com"}


def cli_has_command(name: str) -> bool:
    import typer.main

    from syncctl.cli import app

    group = typer.main.get_command(app)
    return name in getattr(group, "commands", {})
