"""A seeded sandbox, a campaign directory pointing at it, and a CLI runner for it."""

from __future__ import annotations

import io
import json
import os
import pwd
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from syncctl import config as config_mod
from syncctl.cli import app
from syncctl.sandbox.seed import seed_demo
from syncctl.sandbox.stack import Sandbox
from syncctl.state.journal import DB_NAME, Journal
from syncctl.state.lock import state_lock

Run = Callable[..., Result]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sb:
        seed_demo(sb)
        yield sb


@pytest.fixture
def campaign(sandbox: Sandbox, tmp_path: Path) -> Path:
    """A directory with syncctl.toml and .env for the sandbox."""
    directory = tmp_path / "campaign"
    sandbox.write_files(directory)
    return directory


@pytest.fixture
def odd_campaign(sandbox: Sandbox, tmp_path: Path) -> Path:
    """The campaign directory in a folder whose path holds a space and a percent sign."""
    directory = tmp_path / "odd dir" / "50%"
    sandbox.write_files(directory)
    return directory


@pytest.fixture
def terminal_80(monkeypatch: pytest.MonkeyPatch) -> Console:
    """A terminal of COLUMNS=80 (the suite's default is 160) writing into a buffer."""
    monkeypatch.setenv("COLUMNS", "80")
    return Console(file=io.StringIO(), force_terminal=True, color_system=None)


@pytest.fixture
def config(campaign: Path) -> config_mod.Config:
    return config_mod.load(campaign / "syncctl.toml", campaign / ".env")


@pytest.fixture
def lock_held_briefly(config: config_mod.Config) -> Iterator[None]:
    """Another run holding the state directory's lock for half a second from now."""
    held = threading.Event()

    def hold() -> None:
        with state_lock(config.settings.run.state_path):
            held.set()
            time.sleep(0.5)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    yield
    holder.join(10)


@pytest.fixture
def lock_held_for_hours(config: config_mod.Config) -> Iterator[None]:
    """Another run holding the state lock since seven hours ago (a hung run)."""
    state_dir = config.settings.run.state_path
    with state_lock(state_dir):
        started = datetime.now(UTC) - timedelta(hours=7)
        line = json.dumps({"pid": 4242, "started": started.isoformat(timespec="seconds")})
        (state_dir / "lock").write_text(line + "\n")
        yield


@pytest.fixture
def run(campaign: Path) -> Run:
    """`syncctl --config ... --env-file ... ARGS` in-process; global options may lead."""

    def invoke(*args: str, globals_: tuple[str, ...] = ()) -> Result:
        return CliRunner().invoke(
            app,
            [
                *globals_,
                "--config",
                str(campaign / "syncctl.toml"),
                "--env-file",
                str(campaign / ".env"),
                *args,
            ],
        )

    return invoke


def run_in(campaign: Path, *args: str) -> Result:
    """`syncctl --config ... --env-file ... ARGS` for the campaign in `campaign`."""
    return CliRunner().invoke(
        app,
        ["--config", str(campaign / "syncctl.toml"), "--env-file", str(campaign / ".env"), *args],
    )


def set_secret(campaign: Path, name: str, value: str | None) -> None:
    """Change (or with None, remove) one secret in the campaign's .env."""
    env = campaign / ".env"
    lines = [line for line in env.read_text().splitlines() if not line.startswith(f"{name}=")]
    if value is not None:
        lines.append(f"{name}={value}")
    env.write_text("".join(line + "\n" for line in lines))


def set_lead_source(campaign: Path, value: str) -> None:
    """Set `[espocrm] lead_source` in the campaign's syncctl.toml."""
    config = campaign / "syncctl.toml"
    text = config.read_text()
    assert "\nlead_source" not in text
    config.write_text(text.replace("[espocrm]\n", f'[espocrm]\nlead_source = "{value}"\n'))


def one_error_line(result: Result) -> str:
    """The single stderr line of a failed command (and no traceback anywhere)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output + result.stderr
    return lines[0]


def set_state_dir(campaign: Path, value: str) -> None:
    """Point the campaign's [run] state_dir at `value`, as written (relative stays relative)."""
    config = campaign / "syncctl.toml"
    text = re.sub(r"(?m)^state_dir = .*$", f"state_dir = {json.dumps(value)}", config.read_text())
    config.write_text(text)


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """`syncctl sandbox serve --port-base 0 ARGS` in-process.

    Instead of blocking until Ctrl-C, it calls `while_up(sandbox)` (if given)
    while the servers run, then stops them as Ctrl-C would.
    """

    def invoke(*args: str, while_up: Callable[[Sandbox], object] | None = None) -> Result:
        def up(sandbox: Sandbox) -> None:
            if while_up is not None:
                while_up(sandbox)

        monkeypatch.setattr("syncctl.cli.setup._serve_until_stopped", up)
        return CliRunner().invoke(app, ["sandbox", "serve", "--port-base", "0", *args])

    return invoke


@pytest.fixture
def real_env() -> str:
    """A .env an operator filled in by hand (values are made up)."""
    return "STRIPE_API_KEY=rk_live_not_a_sandbox_key\nSYNCCTL_CODE_SECRET=the-one-true-secret\n"


# -- who runs `syncctl schedule` --------------------------------------------------------


@pytest.fixture
def other_account() -> pwd.struct_passwd:
    """An existing account of this machine that is not root."""
    for entry in sorted(pwd.getpwall(), key=lambda e: e.pw_uid):
        if entry.pw_uid != 0 and entry.pw_name != "nobody":  # systemd warns about nobody
            return entry
    pytest.skip("this machine has no account but root")


@pytest.fixture
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """A root shell: effective uid 0 and no SUDO_USER."""
    monkeypatch.delenv("SUDO_USER", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 0)


@pytest.fixture
def behind_sudo(monkeypatch: pytest.MonkeyPatch, other_account: pwd.struct_passwd) -> str:
    """`sudo syncctl ...` run by `other_account`: root, with SUDO_USER naming them."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("SUDO_USER", other_account.pw_name)
    return other_account.pw_name


@pytest.fixture
def as_operator(monkeypatch: pytest.MonkeyPatch, other_account: pwd.struct_passwd) -> str:
    """`other_account`'s own shell, no sudo."""
    monkeypatch.delenv("SUDO_USER", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: other_account.pw_uid)
    return other_account.pw_name


# -- a large journal, for `syncctl export` ------------------------------------------------------

#: A campaign whose services are nowhere (the discard port): for commands that must not
#: need them. The state dir is relative, so it lives beside the file.
OFFLINE_TOML = """\
[stripe]
api_base = "http://127.0.0.1:9"
vip_price_ids = ["price_vip"]

[mautic]
base_url = "http://127.0.0.1:9"
invite_email_vip = 11
invite_email_basic = 12
coupon_email = 13

[discord]
api_base = "http://127.0.0.1:9/api/v10"
vip_channel_id = "100000000000000001"
basic_channel_id = "100000000000000002"

[shopware]
base_url = "http://127.0.0.1:9"
vip_promotion_id = "5a4d1c0f2e8b4f6a9c3d7e1f0a2b4c6d"

[espocrm]
base_url = "http://127.0.0.1:9"

[run]
state_dir = ".syncctl-state"
"""


@pytest.fixture
def offline_campaign(tmp_path: Path) -> Path:
    """A campaign directory (syncctl.toml, an empty .env) with no service behind it."""
    directory = tmp_path / "offline"
    directory.mkdir()
    (directory / "syncctl.toml").write_text(OFFLINE_TOML)
    (directory / ".env").write_text("")
    return directory


def seed_purchases(state_dir: Path, count: int) -> None:
    """A journal holding `count` fulfilled VIP purchases, as runs record them.

    Per purchase `i`: `coupon:<session>` done with its code, its coupon email
    `mail:13:<contact>:<code>` done (contact `i + 1`), and for every tenth a
    `refund:<session>` fact (`refunded`). The rows are made by one SQL
    statement in one transaction, unjournaled, in the database the journal
    created: through `Journal.start`/`mark`, 210k rows would take minutes of
    commits, and the tests that use this are about reading them.
    """
    Journal.open(state_dir).close()  # the schema and its version, as syncctl makes them
    conn = sqlite3.connect(state_dir / DB_NAME, isolation_level=None)
    for pragma in ("journal_mode = DELETE", "journal_mode = OFF", "synchronous = OFF"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute("BEGIN")
    conn.execute(
        """
        WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :count - 1),
        p AS (SELECT i, printf('cs_test_%010d', i) AS sid, printf('buyer%06d@example.com', i)
                  AS email, printf('VIP-%04X-ABCD-EFGH', i) AS code, i + 1 AS cid FROM n)
        INSERT INTO entries (id, run_id, key, kind, subject, subject_ci, state, ref, detail,
                             started_at, finished_at)
        SELECT i * 3 + 1, NULL, 'coupon:' || sid, 'create_coupon', email, email, 'done', code,
               '{"code":"' || code || '","session_id":"' || sid || '"}', :at, :at FROM p
        UNION ALL
        SELECT i * 3 + 2, NULL, 'mail:13:' || cid || ':' || code, 'send_email', email, email,
               'done', '13:' || cid, '{"contact_id":' || cid || ',"email_id":13}', :at, :at
        FROM p
        UNION ALL
        SELECT i * 3 + 3, NULL, 'refund:' || sid, 'refund', email, email, 'done', 'refunded', '{}',
               :at, :at FROM p WHERE i % 10 = 0
        """,
        {"count": count, "at": "2024-05-01T12:00:00.000000+00:00"},
    )
    conn.execute(
        "INSERT INTO current (key, entry_id, state) SELECT key, id, state FROM entries ORDER BY key"
    )
    conn.execute("COMMIT")
    conn.close()
