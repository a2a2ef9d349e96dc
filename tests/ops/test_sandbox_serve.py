"""`syncctl sandbox serve --dir D`: what it may replace in D, and what it must keep.

D defaults to the current folder, which may be a real campaign's. Files the
sandbox wrote are replaced; anything else is refused unless --force, and
even then kept as a backup. A folder it cannot write is one clean line. A
new sandbox starts with a fresh state dir, since its services start afresh.
"""

from __future__ import annotations

import errno
import stat
import threading
from pathlib import Path

import pytest
import stripe

from syncctl import config as config_mod
from syncctl.engine.reconcile import reconcile
from syncctl.sandbox.webhooks import mautic_signature
from syncctl.state.lock import state_lock
from tests.loopback import Receiver
from tests.ops.conftest import one_error_line


def backups(directory: Path, name: str) -> list[Path]:
    return sorted(directory.glob(f"{name}.bak-*"))


def no_sandbox_running() -> bool:
    return not [t for t in threading.enumerate() if t.name.startswith("sandbox-")]


# -- item: an existing .env is never lost ---------------------------------------------------


def test_refuses_a_env_it_did_not_write_and_writes_nothing(
    serve, tmp_path: Path, real_env: str
) -> None:
    (tmp_path / ".env").write_text(real_env)
    result = serve("--dir", str(tmp_path))
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert f"{tmp_path / '.env'} exists and was not written by the sandbox" in line
    assert "--force" in line
    assert (tmp_path / ".env").read_text() == real_env
    assert not (tmp_path / "syncctl.toml").exists()
    assert no_sandbox_running()


def test_force_keeps_the_old_env_as_a_private_backup_and_says_so(
    serve, tmp_path: Path, real_env: str
) -> None:
    env = tmp_path / ".env"
    env.write_text(real_env)
    env.chmod(0o600)
    result = serve("--dir", str(tmp_path), "--force")
    assert result.exit_code == 0, result.output
    [backup] = backups(tmp_path, ".env")
    assert backup.read_text() == real_env
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert f"kept the previous .env as {backup} (it holds your SYNCCTL_CODE_SECRET" in (
        result.stderr
    )
    assert "the-one-true-secret" not in result.output
    assert env.read_text().startswith("# Written by `syncctl sandbox`")


def test_replaces_the_files_it_wrote_itself_without_force(serve, tmp_path: Path) -> None:
    assert serve("--dir", str(tmp_path)).exit_code == 0
    first = (tmp_path / ".env").read_text()
    again = serve("--dir", str(tmp_path))
    assert again.exit_code == 0, again.output
    assert (tmp_path / ".env").read_text() != first  # the new servers' credentials
    assert backups(tmp_path, ".env") == backups(tmp_path, "syncctl.toml") == []


# -- item: a folder it cannot write is one clean line ---------------------------------------


def test_a_dir_under_a_regular_file_is_one_clean_line(serve, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = serve("--dir", str(blocker / "campaign"))
    assert result.exit_code == 1
    line = one_error_line(result)
    assert f"--dir {blocker / 'campaign'} cannot be created: {blocker} is a file" in line
    assert "choose another --dir" in line
    assert no_sandbox_running()


def test_an_unwritable_dir_is_one_clean_line(
    serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root ignores permission bits, so the kernel's answer is simulated."""
    monkeypatch.setattr("syncctl.state.location._may_write", lambda _: False)
    result = serve("--dir", str(tmp_path))
    assert result.exit_code == 1
    assert f"--dir {tmp_path} is not writable" in one_error_line(result)
    assert list(tmp_path.iterdir()) == []


def test_a_write_that_fails_anyway_is_one_clean_line_and_leaves_no_file(
    serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(*args: object, **kwargs: object) -> int:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("syncctl.sandbox.workdir.os.open", read_only)
    result = serve("--dir", str(tmp_path))
    assert result.exit_code == 1
    assert f"cannot write into {tmp_path}: Read-only file system" in one_error_line(result)
    assert list(tmp_path.iterdir()) == []
    assert no_sandbox_running()


# -- item: a fresh sandbox starts with a fresh state dir ------------------------------------


def _run(directory: Path, *, dry_run: bool = False):
    cfg = config_mod.load(directory / "syncctl.toml", directory / ".env")
    return reconcile(cfg, dry_run=dry_run)


def test_serving_again_clears_the_previous_sandboxs_state_dir(serve, tmp_path: Path) -> None:
    first = serve("--dir", str(tmp_path), while_up=lambda _: _run(tmp_path))
    assert first.exit_code == 0, first.output
    assert (tmp_path / ".syncctl-state" / "state.db").is_file()
    planned = []
    again = serve(
        "--dir", str(tmp_path), while_up=lambda _: planned.append(_run(tmp_path, dry_run=True))
    )
    assert again.exit_code == 0, again.output
    kinds = {str(a.kind) for a in planned[0].plan.actions}
    assert {"create_coupon", "issue_invite", "send_email"} <= kinds  # the seeded campaign, anew
    assert f"cleared the previous sandbox's state dir {tmp_path / '.syncctl-state'}" in (
        again.stderr
    )
    assert backups(tmp_path, ".syncctl-state") == []


def test_the_state_dir_of_a_config_it_did_not_write_is_moved_aside(serve, tmp_path: Path) -> None:
    (tmp_path / "syncctl.toml").write_text("# a real campaign's config\n")
    journal = tmp_path / ".syncctl-state" / "state.db"
    journal.parent.mkdir()
    journal.write_text("the real journal")
    result = serve("--dir", str(tmp_path), "--force")
    assert result.exit_code == 0, result.output
    [aside] = backups(tmp_path, ".syncctl-state")
    assert (aside / "state.db").read_text() == "the real journal"
    assert f"moved the state dir {tmp_path / '.syncctl-state'} aside to {aside.name}" in (
        result.stderr
    )


def test_a_run_holding_the_old_state_dir_stops_the_serve_before_any_write(
    serve, tmp_path: Path
) -> None:
    assert serve("--dir", str(tmp_path)).exit_code == 0
    before = (tmp_path / ".env").read_text()
    with state_lock(tmp_path / ".syncctl-state"):
        result = serve("--dir", str(tmp_path))
    assert result.exit_code == 3
    assert "a syncctl run is using" in one_error_line(result)
    assert (tmp_path / ".env").read_text() == before
    assert no_sandbox_running()


# -- webhooks: the sandbox posts them where `syncctl watch --listen` serves --------------------


def _env_values(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {name: value for name, value in pairs}


def test_webhook_url_sends_signed_stripe_and_mautic_webhooks_there(serve, tmp_path: Path) -> None:
    receiver = Receiver()
    secrets: dict[str, str] = {}

    def purchase(sandbox) -> None:
        secrets.update(_env_values(tmp_path / ".env"))
        sandbox.stripe.add_session("new.backer@example.com", line_items=[("price_x", "prod_x", 1)])
        sandbox.mautic.add_contact("new.fan@example.com")
        receiver.wait_for(2)

    try:
        result = serve("--dir", str(tmp_path), "--webhook-url", receiver.url, while_up=purchase)
    finally:
        receiver.close()
    assert result.exit_code == 0, result.output
    assert f"stripe webhooks -> {receiver.url}/webhooks/stripe" in result.stderr
    assert f"mautic webhooks -> {receiver.url}/webhooks/mautic" in result.stderr
    by_path = {r.path: r for r in receiver.received}
    assert set(by_path) == {"/webhooks/stripe", "/webhooks/mautic"}  # the seed sent nothing
    stripe_secret = secrets["STRIPE_WEBHOOK_SECRET"]
    assert stripe_secret.startswith("whsec_")
    got = by_path["/webhooks/stripe"]
    assert stripe.WebhookSignature.verify_header(
        got.body, got.headers["stripe-signature"], stripe_secret, tolerance=300
    )
    got = by_path["/webhooks/mautic"]
    assert got.headers["webhook-signature"] == mautic_signature(
        secrets["MAUTIC_WEBHOOK_SECRET"], got.body
    )
    assert no_sandbox_running()


@pytest.mark.parametrize("url", ["localhost:8787", "ftp://127.0.0.1/", "http://127.0.0.1:99999"])
def test_a_webhook_url_that_is_not_http_is_one_line_before_anything_starts(
    serve, tmp_path: Path, url: str
) -> None:
    result = serve("--dir", str(tmp_path), "--webhook-url", url)
    assert result.exit_code == 2
    assert "--webhook-url" in one_error_line(result)
    assert list(tmp_path.iterdir()) == []
    assert no_sandbox_running()
