"""Secrets stay secret: no command shows one anywhere, and the files are owner-only.

Every command runs with distinctive fake credentials (accepted by the
sandbox) at full verbosity, and nothing it leaves behind may hold one: stdout,
stderr, the JSON documents, every log record (raw, before the handlers'
redaction, at DEBUG for every library), the state directory's files (the
SQLite database read as bytes, its WAL, the lock) and a cassette recorded
with them. Wrong credentials are tried too, since that is when vendors and
error paths echo them.
"""

from __future__ import annotations

import base64
import logging
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tools.cassettes import cli_has_command, find_secrets
from tools.record_cassettes import record_all

from syncctl.sandbox.seed import seed_demo
from syncctl.sandbox.stack import Sandbox

from .conftest import run_cli
from .test_cassette_hygiene import live_env

PROBES = {
    "STRIPE_API_KEY": "rk_test_PROBEstripe7f3a9c",
    "MAUTIC_USERNAME": "probe-mautic-user-5b1d",
    "MAUTIC_PASSWORD": "PROBEmauticPass-8e2c",
    "DISCORD_BOT_TOKEN": "PROBE.discord.token-4d7e",
    "SHOPWARE_CLIENT_ID": "SWIAPROBESHOPWARE6a1f",
    "SHOPWARE_CLIENT_SECRET": "PROBEshopwareSecret-2b9d",
    "ESPOCRM_API_KEY": "PROBEespoKey-0c3e",
    "SYNCCTL_CODE_SECRET": "PROBEcodeSecret-9f4b",
}
#: Each value, and the forms it travels in (Basic auth is base64 of user:password).
FORBIDDEN = [
    *PROBES.values(),
    base64.b64encode(f"{PROBES['MAUTIC_USERNAME']}:{PROBES['MAUTIC_PASSWORD']}".encode()).decode(),
    "PROBE",  # any part of any of them
]

EMAIL = "grace.hopper@example.com"


def commands() -> list[tuple[str, ...]]:
    """Every command that loads the secrets, in an order that exercises them all."""
    listed: list[tuple[str, ...]] = [
        ("config", "show"),
        ("reconcile", "--dry-run"),
        ("reconcile", "--dry-run", "--json"),
        ("reconcile", "--json"),
        ("reconcile",),
        ("reconcile", "--full", "--json", "--detailed-exitcode"),
        ("reissue-invite", EMAIL, "--dry-run", "--json"),
        ("reissue-invite", EMAIL, "--yes", "--json"),
        ("reissue-invite", EMAIL, "--yes", "--no-email"),
    ]
    optional = {
        "doctor": [("doctor",), ("doctor", "--json")],
        "status": [("status", EMAIL), ("status", EMAIL, "--json")],
        "history": [("history",), ("history", "--json"), ("history", "--email", EMAIL)],
        "export": [("export",), ("export", "--live"), ("export", "--live", "--format", "json")],
    }
    for name, extra in optional.items():
        if cli_has_command(name):
            listed += extra
    return listed


class RawRecords:
    """Every log record's text before any handler (or its redacting filter) runs."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def spy(self, original: Callable[..., None]) -> Callable[..., None]:
        def call_handlers(logger: logging.Logger, record: logging.LogRecord) -> None:
            self.texts.append(
                f"{record.name} {record.getMessage()} {getattr(record, 'fields', '')} "
                f"{record.exc_text or ''}"
            )
            original(logger, record)

        return call_handlers


@pytest.fixture
def raw_logs(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> RawRecords:
    caplog.set_level(logging.DEBUG)
    spy = RawRecords()
    monkeypatch.setattr(logging.Logger, "callHandlers", spy.spy(logging.Logger.callHandlers))
    return spy


@pytest.fixture
def probed(tmp_path: Path) -> Iterator[tuple[Sandbox, Path, Path]]:
    """A seeded sandbox that accepts the probe credentials, and its files."""
    # Many reissues in a row: a roomier invite bucket than Discord's 5 per 5 s.
    roomy = {"discord": {"invite_bucket_limit": 100}}
    with Sandbox(secrets=PROBES, emulator_options=roomy) as sb:
        seed_demo(sb)
        config_path, env_path = sb.write_files(tmp_path / "campaign")
        yield sb, config_path, env_path


def leaks(text: str) -> list[str]:
    found = [value for value in FORBIDDEN if value in text]
    return found + find_secrets(text)


def state_files(state_dir: Path) -> list[Path]:
    return [state_dir, *sorted(p for p in state_dir.rglob("*"))]


def test_no_command_shows_a_secret_anywhere(probed, raw_logs: RawRecords, caplog) -> None:
    sb, config_path, env_path = probed
    state_dir = config_path.parent / ".syncctl-state"
    seen: list[str] = []
    old_umask = os.umask(0)  # the worst case: nothing is hidden by the umask
    try:
        for command in commands():
            args = ["-vv", "--config", str(config_path), "--env-file", str(env_path), *command]
            for fmt in ("text", "json"):
                result = run_cli(["--log-format", fmt, *args])
                assert result.exception is None or isinstance(result.exception, SystemExit), (
                    command,
                    repr(result.exception),
                )
                allowed = (0, 2) if "--detailed-exitcode" in command else (0,)
                assert result.exit_code in allowed, (command, result.output)
                for where, text in (("stdout", result.stdout), ("stderr", result.stderr)):
                    assert leaks(text) == [], (command, fmt, where)
                seen.append(result.output)
    finally:
        os.umask(old_umask)
    loggers = {text.split(" ", 1)[0].split(".")[0] for text in raw_logs.texts}
    assert {"syncctl", "httpx", "httpcore"} <= loggers, loggers  # the spy saw them all
    assert leaks("\n".join(raw_logs.texts)) == []
    assert leaks(caplog.text) == []
    assert sb.write_count() > 0  # the runs did write, so the writes' paths were exercised
    assert any('"outcomes"' in text for text in seen)  # and JSON documents were printed
    for path in state_files(state_dir):
        if path.is_file():
            data = path.read_bytes()
            assert [v for v in FORBIDDEN if v.encode() in data] == [], path
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is mode {mode:o}: not owner-only"
    assert (state_dir / "state.db").is_file()


def test_wrong_credentials_are_not_echoed(probed, raw_logs: RawRecords, caplog) -> None:
    """Every service refuses (401/403): the error lines name the service, never the value."""
    sb, config_path, env_path = probed
    wrong = {name: value.replace("PROBE", "PROBEwrong") for name, value in PROBES.items()}
    wrong["SYNCCTL_CODE_SECRET"] = PROBES["SYNCCTL_CODE_SECRET"]
    env_path.write_text("".join(f"{k}={v}\n" for k, v in wrong.items()))
    for command in [("reconcile", "--json"), ("reissue-invite", EMAIL, "--yes")] + (
        [("doctor", "--json")] if cli_has_command("doctor") else []
    ):
        result = run_cli(
            ["-vv", "--config", str(config_path), "--env-file", str(env_path), *command]
        )
        assert result.exit_code in (1, 2), (command, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert leaks(result.output) == [], command
    assert leaks("\n".join(raw_logs.texts)) == []
    assert leaks(caplog.text) == []
    assert sb.write_count() == 0


def test_env_and_state_files_are_owner_only(tmp_path: Path) -> None:
    """`.env` from the sandbox and from `init`, even over a world-readable file."""
    env = tmp_path / "campaign" / ".env"
    env.parent.mkdir()
    env.write_text("OLD=1\n")
    env.chmod(0o644)
    with Sandbox() as sb:
        _, written = sb.write_files(env.parent)
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    if cli_has_command("init"):
        result = run_cli(["init", "--dir", str(tmp_path / "fresh")])
        assert result.exit_code == 0, result.output
        assert stat.S_IMODE((tmp_path / "fresh" / ".env").stat().st_mode) == 0o600


def test_a_cassette_recorded_with_the_secrets_holds_none(tmp_path: Path) -> None:
    with Sandbox(secrets=PROBES) as sb:
        seed_demo(sb)
        env = live_env(sb)
        written, problems = record_all("live", ["first_run"], tmp_path / "cassettes", env)
    assert problems == [] and len(written) == 1
    data = written[0].read_bytes()
    assert [v for v in FORBIDDEN if v.encode() in data] == []
    assert leaks(data.decode()) == []


def test_a_token_the_service_hands_out_is_not_echoed_either(probed) -> None:
    """Shopware answers a token no header can carry: named as a bad answer, not quoted."""
    sb, config_path, env_path = probed
    token = {"access_token": "tok\nenPROBEissued", "token_type": "Bearer", "expires_in": 600}
    sb.shopware.inject(method="POST", path="/api/oauth/token$", status=200, body=token, times=None)
    result = run_cli(["--config", str(config_path), "--env-file", str(env_path), "reconcile"])
    assert result.exit_code == 1
    assert "shopware" in result.stderr
    assert leaks(result.output) == []


def test_the_http_layer_never_quotes_a_header_value_it_could_not_send() -> None:
    """h11's error cites the offending header value (a credential, usually)."""
    from syncctl.errors import Unavailable
    from syncctl.net.http import RetryPolicy, ServiceHTTP

    with (
        Sandbox() as sb,
        ServiceHTTP(
            "mautic",
            sb.urls["mautic"],
            headers={"X-Token": "line1\nPROBEheader"},
            retry=RetryPolicy(attempts=1),
        ) as http,
        pytest.raises(Unavailable) as caught,
    ):
        http.request("GET", "/api/contacts")
    assert "PROBE" not in str(caught.value)
