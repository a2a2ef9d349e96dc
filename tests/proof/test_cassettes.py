"""Recorded conversations replayed with no network: the same plan and outcomes.

Each cassette in `cassettes/` was recorded through the real clients against
the sandbox (`python -m tools.record_cassettes`). A replay runs the same
commands on a fresh state directory with every socket blocked; each recorded
answer is given once, in order, and only to a request equal to the recorded
one (body included). So a passing replay shows that our clients and the
reconciler, fed real-shaped answers, send exactly the recorded requests and
reach exactly the recorded plan and outcomes; the scenario tests below then
check that those are the right ones.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from tools.cassettes import (
    CASSETTE_DIR,
    DISCORD_RETRY_AFTER,
    LIVE_DIR,
    METADATA_KEY,
    SCENARIOS,
    Replay,
    cli_has_command,
    replay,
)
from tools.record_cassettes import replay_problems
from vcr.errors import CannotOverwriteExistingCassetteException

from .conftest import blocked_network

RERECORD = "python -m tools.record_cassettes"
CASSETTES = sorted(CASSETTE_DIR.glob("*.yaml")) + sorted(LIVE_DIR.glob("*.yaml"))


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Replay]:
    """Each sandbox cassette replayed once per module, network blocked."""
    cache: dict[str, Replay] = {}

    def get(name: str) -> Replay:
        if name not in cache:
            with blocked_network():
                cache[name] = replay(CASSETTE_DIR / f"{name}.yaml", tmp_path_factory.mktemp(name))
        return cache[name]

    return get


def kinds(result: dict[str, Any]) -> list[str]:
    return [a["kind"] for a in result["plan"]["actions"]]


def statuses(result: dict[str, Any]) -> dict[str, str]:
    return {o["key"]: o["status"] for o in result["outcomes"]}


def writes(result: dict[str, Any]) -> int:
    return sum(s["writes"] for s in result["api_calls"].values())


# -- every cassette -----------------------------------------------------------------------


def test_every_scenario_has_a_cassette_and_no_cassette_is_stray() -> None:
    expected = {
        name for name, s in SCENARIOS.items() if s.requires is None or cli_has_command(s.requires)
    }
    found = {p.stem for p in CASSETTE_DIR.glob("*.yaml")}
    assert found - set(SCENARIOS) == set(), "cassettes without a scenario"
    missing = expected - found
    assert not missing, f"record them: {RERECORD} --only {min(missing)}"


@pytest.mark.parametrize("path", CASSETTES, ids=lambda p: str(p.relative_to(CASSETTE_DIR)))
def test_replay_gives_the_recorded_plan_and_outcomes(
    path: Path, tmp_path: Path, no_network
) -> None:
    hint = f"if syncctl's traffic changed on purpose: {RERECORD} --only {path.stem}"
    try:
        rep = replay(path, tmp_path)
    except CannotOverwriteExistingCassetteException as exc:
        pytest.fail(f"{exc}\n{hint}")
    assert rep.metadata["scenario"] == path.stem
    for step in rep.steps:
        assert step.result.summary == step.recorded["result"], hint
        assert step.played == step.recorded["interactions"], hint
    assert rep.all_played
    assert replay_problems(rep) == []


# -- the scenarios --------------------------------------------------------------------------


def test_first_run_does_every_rule_once(replayed) -> None:
    (step,) = replayed("first_run").steps
    result = step.result.summary
    assert result["mode"] == "full (first run)"
    assert result["exit_code"] == 0
    assert set(statuses(result).values()) == {"done"}
    assert set(kinds(result)) == {
        "create_coupon",
        "create_contact",
        "update_contact",
        "issue_invite",
        "send_email",
        "create_lead",
    }
    subjects = {a["subject"] for a in result["plan"]["actions"]}
    # Mixed-case buyer normalised; not opted in and unpaid: nothing.
    assert subjects == {
        "ada.lovelace@example.com",
        "alan.turing@example.com",
        "grace.hopper@example.com",
    }
    assert kinds(result).count("create_coupon") == 2  # Ada's and Alan's VIP purchases
    assert result["api_calls"]["stripe"]["writes"] == 0  # read-only key is enough
    invites = {a["key"] for a in result["plan"]["actions"] if a["kind"] == "issue_invite"}
    assert len(invites) == 2 and any(k.endswith(":vip") for k in invites)


def test_second_run_plans_nothing_and_writes_nothing(replayed) -> None:
    first, second = replayed("second_run_noop").steps
    assert first.result.summary["outcomes"]
    result = second.result.summary
    assert result["mode"] == "incremental"
    assert result["plan"]["actions"] == []
    assert result["outcomes"] == []
    assert writes(result) == 0
    assert result["exit_code"] == 0
    assert second.played <= 5  # a steady-state run is a handful of reads


def test_upgrade_revokes_basic_and_issues_vip(replayed) -> None:
    first, second = replayed("upgrade").steps
    basic = [o["ref"] for o in first.result.summary["outcomes"] if o["kind"] == "issue_invite"]
    result = second.result.summary
    assert result["mode"] == "incremental"
    assert set(statuses(result).values()) == {"done"}
    assert {"create_coupon", "update_contact", "revoke_invite", "issue_invite"} <= set(
        kinds(result)
    )
    revoked = [o["ref"] for o in result["outcomes"] if o["kind"] == "revoke_invite"]
    assert revoked == basic  # the very link the first run minted
    issued = [a["key"] for a in result["plan"]["actions"] if a["kind"] == "issue_invite"]
    assert issued == ["invite:1:vip"]


def test_reissue_revokes_mints_stores_and_emails(replayed) -> None:
    (step,) = replayed("reissue").steps
    assert step.recorded["command"][:2] == ["reissue-invite", "Grace.Hopper@Example.com"]
    result = step.result.summary
    assert result["exit_code"] == 0
    assert kinds(result) == ["revoke_invite", "clear_link", "issue_invite", "send_email"]
    assert {a["subject"] for a in result["plan"]["actions"]} == {"grace.hopper@example.com"}
    assert set(statuses(result).values()) == {"done"}
    refs = {o["kind"]: o["ref"] for o in result["outcomes"]}
    assert refs["issue_invite"] and refs["issue_invite"] != refs["revoke_invite"]


def test_shopware_failure_fails_one_purchase_only_and_is_retried(replayed) -> None:
    first, second = replayed("shopware_failure").steps
    result = first.result.summary
    assert result["exit_code"] == 1
    failed = [o for o in result["outcomes"] if o["status"] == "failed"]
    assert [(o["kind"], o["system"]) for o in failed] == [("create_coupon", "shopware")]
    assert "500" in failed[0]["message"]
    session = failed[0]["key"].removeprefix("coupon:")
    skipped = [o for o in result["outcomes"] if o["status"] == "skipped"]
    assert skipped and all(o["subject"] == failed[0]["subject"] for o in skipped)
    others = [o for o in result["outcomes"] if o["subject"] != failed[0]["subject"]]
    assert others and {o["status"] for o in others} == {"done"}
    retry = second.result.summary
    assert retry["exit_code"] == 0
    assert f"coupon:{session}" in statuses(retry)
    assert set(statuses(retry).values()) == {"done"}


def test_discord_429_is_waited_out_as_asked(replayed) -> None:
    (step,) = replayed("discord_429").steps
    result = step.result.summary
    assert result["exit_code"] == 0
    assert set(statuses(result).values()) == {"done"}
    discord = result["api_calls"]["discord"]
    assert discord["throttled"] == 1 and discord["retries"] == 1
    # The body's precise retry_after (not the rounded-up header) was slept.
    assert step.result.waits["discord"] == [DISCORD_RETRY_AFTER]


@pytest.mark.skipif(not cli_has_command("doctor"), reason="`syncctl doctor` does not exist yet")
def test_doctor_checks_every_service_and_only_reads(replayed) -> None:
    (step,) = replayed("doctor").steps
    result = step.result.summary
    assert result["exit_code"] == 0, step.result.stderr
    assert result["ok"] is True
    assert {c["status"] for c in result["checks"]} == {"ok"}
    checked = {c["name"].split(".")[0].split(" ")[0] for c in result["checks"]}
    assert {"config", "secrets", "stripe", "mautic", "discord", "shopware", "espocrm"} <= checked
    data = yaml.safe_load((CASSETTE_DIR / "doctor.yaml").read_text())
    sent = [(i["request"]["method"], i["request"]["uri"]) for i in data["interactions"]]
    not_reads = [
        (m, u) for m, u in sent if m != "GET" and not u.endswith(("/oauth/token", "-code"))
    ]
    assert not_reads == []
    assert all("/search/" in u for m, u in sent if m == "POST" and not u.endswith("/token"))


# -- the replay is strict ---------------------------------------------------------------------


def _copy(tmp_path: Path, name: str) -> Path:
    target = tmp_path / f"{name}.yaml"
    shutil.copy(CASSETTE_DIR / f"{name}.yaml", target)
    return target


def _rewrite(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_a_different_request_body_gets_no_answer(tmp_path: Path, no_network) -> None:
    """Another code secret derives other coupon codes: the POSTs no longer match."""
    with pytest.raises(CannotOverwriteExistingCassetteException):
        replay(
            CASSETTE_DIR / "first_run.yaml",
            tmp_path,
            secrets={"SYNCCTL_CODE_SECRET": "another-code-secret"},
        )


def test_each_answer_is_given_once(tmp_path: Path, no_network) -> None:
    """Drop the recorded retry of the throttled invite: the retry finds no answer."""
    path = _copy(tmp_path, "discord_429")

    def drop_second_invite_post(data: dict[str, Any]) -> None:
        posts = [
            i
            for i in data["interactions"]
            if i["request"]["method"] == "POST" and "/invites" in i["request"]["uri"]
        ]
        data["interactions"].remove(posts[1])

    _rewrite(path, drop_second_invite_post)
    with pytest.raises(CannotOverwriteExistingCassetteException):
        replay(path, tmp_path / "run")


def test_the_recorded_clock_drives_the_cursor(tmp_path: Path, no_network) -> None:
    """Run the upgrade's second step two hours later: Stripe is asked another window."""
    path = _copy(tmp_path, "upgrade")

    def later(data: dict[str, Any]) -> None:
        steps = data["metadata"][METADATA_KEY]["steps"]
        steps[0]["now"] += 2 * 3600
        steps[1]["now"] += 2 * 3600

    _rewrite(path, later)
    with pytest.raises(CannotOverwriteExistingCassetteException):
        replay(path, tmp_path / "run")
