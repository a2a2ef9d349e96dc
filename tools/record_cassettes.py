"""Re-record the cassettes in `cassettes/`: `python -m tools.record_cassettes`.

    python -m tools.record_cassettes                    # every scenario, against the sandbox
    python -m tools.record_cassettes --only upgrade     # one scenario
    python -m tools.record_cassettes --against live     # real test accounts -> cassettes/live/

`--against sandbox` (the default) starts the bundled emulators for each
scenario, seeds its campaign, and records with the fixed fake credentials of
`tools.cassettes.RECORDING_SECRETS`. `--against live` records, into
`cassettes/live/`, the scenarios that need no sandbox-only change of the
world (no injected faults, no made-up purchases) against real test accounts
named by environment variables:

    STRIPE_API_KEY                  a test-mode key (sk_test_/rk_test_; live keys are refused)
    MAUTIC_USERNAME, MAUTIC_PASSWORD, DISCORD_BOT_TOKEN,
    SHOPWARE_CLIENT_ID, SHOPWARE_CLIENT_SECRET, ESPOCRM_API_KEY
    SYNCCTL_REC_MAUTIC_URL, SYNCCTL_REC_SHOPWARE_URL, SYNCCTL_REC_ESPOCRM_URL
    SYNCCTL_REC_STRIPE_API_BASE     (default https://api.stripe.com)
    SYNCCTL_REC_DISCORD_API_BASE    (default https://discord.com/api/v10; a test guild)
    SYNCCTL_REC_VIP_PRICE_IDS       comma-separated
    SYNCCTL_REC_VIP_CHANNEL_ID, SYNCCTL_REC_BASIC_CHANNEL_ID, SYNCCTL_REC_VIP_PROMOTION_ID
    SYNCCTL_REC_INVITE_EMAIL_VIP, SYNCCTL_REC_INVITE_EMAIL_BASIC, SYNCCTL_REC_COUPON_EMAIL
    SYNCCTL_REC_REISSUE_EMAIL       an opted-in test contact (else the reissue scenario is skipped)

A live recording writes to those accounts (it reconciles them), and derives
coupon codes with the public cassette code secret: use test instances only.

Every cassette is verified before the command ends: replayed with no
network, it must give the recorded plan and outcomes, and the secret scan
must find nothing (a cassette that fails the scan is deleted).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.cassettes import (
    CANONICAL,
    CASSETTE_DIR,
    CODE_SECRET,
    DISCORD_API_PATH,
    FORMAT,
    LIVE_DIR,
    METADATA_KEY,
    RECORDING_SECRETS,
    SANDBOX_PARAMS,
    SCENARIOS,
    SERVICES,
    CampaignIds,
    Replay,
    Scenario,
    Scrubber,
    canonical_bases,
    cli_has_command,
    config_text,
    find_cassette_secrets,
    frozen_clock,
    origin_of,
    replay,
    run_command,
    use_cassette,
    write_campaign_files,
)

CREDENTIALS = (
    "STRIPE_API_KEY",
    "MAUTIC_USERNAME",
    "MAUTIC_PASSWORD",
    "DISCORD_BOT_TOKEN",
    "SHOPWARE_CLIENT_ID",
    "SHOPWARE_CLIENT_SECRET",
    "ESPOCRM_API_KEY",
)
PREFIX = "SYNCCTL_REC_"


class RecordError(Exception):
    """Recording cannot start or a cassette failed its checks."""


@dataclass
class World:
    """Where a scenario's commands run: its config, secrets and scrubber."""

    source: str  # "sandbox" or "live"
    config_path: Path
    env_path: Path
    recorded_config: str  # canonical base URLs, "{state_dir}" left to fill in
    scrubber: Scrubber
    secrets: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    sandbox: Any = None


# -- worlds -------------------------------------------------------------------------------


@contextlib.contextmanager
def sandbox_world(scenario: Scenario, workdir: Path) -> Iterator[World]:
    """A fresh sandbox seeded with the scenario's campaign."""
    from syncctl.sandbox import stack

    with stack.Sandbox(secrets=RECORDING_SECRETS) as sandbox:
        scenario.seed(sandbox, time.time())
        urls = sandbox.urls
        bases = {name: urls[name] for name in SERVICES}
        bases["discord"] += DISCORD_API_PATH
        ids = CampaignIds(
            vip_price_ids=(stack.VIP_PRICE_ID,),
            vip_channel_id=stack.VIP_CHANNEL_ID,
            basic_channel_id=stack.BASIC_CHANNEL_ID,
            vip_promotion_id=stack.VIP_PROMOTION_ID,
            invite_email_vip=stack.INVITE_EMAIL_VIP,
            invite_email_basic=stack.INVITE_EMAIL_BASIC,
            coupon_email=stack.COUPON_EMAIL,
        )
        yield _world("sandbox", workdir, bases, ids, RECORDING_SECRETS, SANDBOX_PARAMS, sandbox)


def live_world(workdir: Path, environ: Mapping[str, str]) -> World:
    """Real test accounts, from the environment (see the module docstring)."""
    missing = [name for name in CREDENTIALS if not environ.get(name)]
    required = (
        "MAUTIC_URL",
        "SHOPWARE_URL",
        "ESPOCRM_URL",
        "VIP_PRICE_IDS",
        "VIP_CHANNEL_ID",
        "BASIC_CHANNEL_ID",
        "VIP_PROMOTION_ID",
        "INVITE_EMAIL_VIP",
        "INVITE_EMAIL_BASIC",
        "COUPON_EMAIL",
    )
    missing += [PREFIX + name for name in required if not environ.get(PREFIX + name)]
    if missing:
        raise RecordError(f"--against live needs these environment variables: {', '.join(missing)}")
    key = environ["STRIPE_API_KEY"].strip()
    if key.startswith(("sk_live_", "rk_live_")):
        raise RecordError("STRIPE_API_KEY is a live-mode key: record against test mode only")

    def get(name: str, default: str | None = None) -> str:
        return environ.get(PREFIX + name) or default or ""

    bases = {
        "stripe": get("STRIPE_API_BASE", "https://api.stripe.com"),
        "mautic": get("MAUTIC_URL"),
        "discord": get("DISCORD_API_BASE", "https://discord.com/api/v10"),
        "shopware": get("SHOPWARE_URL"),
        "espocrm": get("ESPOCRM_URL"),
    }
    try:
        ids = CampaignIds(
            vip_price_ids=tuple(p.strip() for p in get("VIP_PRICE_IDS").split(",") if p.strip()),
            vip_channel_id=get("VIP_CHANNEL_ID"),
            basic_channel_id=get("BASIC_CHANNEL_ID"),
            vip_promotion_id=get("VIP_PROMOTION_ID"),
            invite_email_vip=int(get("INVITE_EMAIL_VIP")),
            invite_email_basic=int(get("INVITE_EMAIL_BASIC")),
            coupon_email=int(get("COUPON_EMAIL")),
        )
    except ValueError:
        raise RecordError(f"{PREFIX}*_EMAIL* must be Mautic email ids (numbers)") from None
    secrets = {name: environ[name] for name in CREDENTIALS}
    params = {"reissue_email": environ.get(PREFIX + "REISSUE_EMAIL", "")}
    return _world("live", workdir, bases, ids, secrets, params, None)


def _world(
    source: str,
    workdir: Path,
    bases: Mapping[str, str],
    ids: CampaignIds,
    credentials: Mapping[str, str],
    params: Mapping[str, str],
    sandbox: Any,
) -> World:
    # Coupon codes must be derivable on replay: always the public cassette secret.
    secrets = {**credentials, "SYNCCTL_CODE_SECRET": CODE_SECRET}
    config = config_text(bases, ids, str(workdir / "state"))
    config_path, env_path = write_campaign_files(workdir, config, secrets)
    origins = {origin_of(url): CANONICAL[name] for name, url in bases.items()}
    scrubber = Scrubber(origins, [v for k, v in secrets.items() if k != "SYNCCTL_CODE_SECRET"])
    return World(
        source=source,
        config_path=config_path,
        env_path=env_path,
        recorded_config=config_text(canonical_bases(bases), ids, "{state_dir}"),
        scrubber=scrubber,
        secrets=secrets,
        params=dict(params),
        sandbox=sandbox,
    )


# -- recording ------------------------------------------------------------------------------


def record_scenario(scenario: Scenario, world: World, out_dir: Path) -> Path:
    """Run the scenario's steps against the world, recording every call."""
    from syncctl import __version__

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{scenario.name}.yaml"
    path.unlink(missing_ok=True)
    metadata: dict[str, Any] = {
        "format": FORMAT,
        "scenario": scenario.name,
        "title": scenario.title,
        "source": world.source,
        "syncctl_version": __version__,
        "config": world.recorded_config,
        "steps": [],
    }
    with use_cassette(path, world.scrubber, "once") as cassette:
        cassette.get_metadata(METADATA_KEY, metadata)
        for step in scenario.steps:
            if step.before is not None:
                step.before(world.sandbox)
            command = [part.format(**world.params) for part in step.command]
            now = int(time.time())
            before = len(cassette.data)
            with frozen_clock(now):
                result = run_command(command, world.config_path, world.env_path, real_sleep=True)
            metadata["steps"].append(
                {
                    "command": world.scrubber.obj(command),
                    "now": now,
                    "interactions": len(cassette.data) - before,
                    "result": world.scrubber.obj(result.summary),
                }
            )
    return path


def replay_problems(rep: Replay) -> list[str]:
    """How a replay differs from its recording (empty: identical)."""
    problems = []
    for number, step in enumerate(rep.steps, start=1):
        if step.result.summary != step.recorded["result"]:
            problems.append(f"step {number} ({' '.join(step.recorded['command'])}): result differs")
        if step.played != step.recorded["interactions"]:
            problems.append(
                f"step {number}: used {step.played} interactions, "
                f"recorded {step.recorded['interactions']}"
            )
    if not rep.all_played:
        problems.append(f"not every one of the {rep.interactions} interactions was replayed")
    return problems


def verify(path: Path, secrets: Mapping[str, str]) -> list[str]:
    """The secret scan, then a replay with no network; problems as lines."""
    values = [v for k, v in secrets.items() if k != "SYNCCTL_CODE_SECRET"]
    found = find_cassette_secrets(path, values)
    if found:
        path.unlink()
        return [f"secret scan (cassette deleted): {line}" for line in found]
    with tempfile.TemporaryDirectory(prefix="syncctl-replay-") as tmp:
        try:
            rep = replay(path, Path(tmp))
        except Exception as exc:  # reported, not raised: the other cassettes go on
            return [f"replay failed: {type(exc).__name__}: {exc}"]
    return replay_problems(rep)


def selected(names: Sequence[str], against: str, params: Mapping[str, str]) -> list[Scenario]:
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        raise RecordError(f"unknown scenario {unknown[0]!r} (known: {', '.join(SCENARIOS)})")
    chosen = [SCENARIOS[n] for n in names] if names else list(SCENARIOS.values())
    out = []
    for scenario in chosen:
        if scenario.requires and not cli_has_command(scenario.requires):
            print(f"skip {scenario.name}: `syncctl {scenario.requires}` does not exist yet")
        elif against == "live" and not scenario.live:
            print(f"skip {scenario.name}: needs a sandbox-only change (fault or new purchase)")
        elif any("{reissue_email}" in p for s in scenario.steps for p in s.command) and not (
            params.get("reissue_email")
        ):
            print(f"skip {scenario.name}: set {PREFIX}REISSUE_EMAIL")
        else:
            out.append(scenario)
    return out


def record_all(
    against: str = "sandbox",
    names: Sequence[str] = (),
    out_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[list[Path], list[str]]:
    """Record and verify; returns the cassettes written and the problems found."""
    environ = os.environ if environ is None else environ
    out_dir = out_dir or (LIVE_DIR if against == "live" else CASSETTE_DIR)
    written: list[Path] = []
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="syncctl-record-") as tmp:
        if against == "live":
            probe = live_world(Path(tmp) / "probe", environ)
            scenarios = selected(names, against, probe.params)
        else:
            scenarios = selected(names, against, SANDBOX_PARAMS)
        for scenario in scenarios:
            workdir = Path(tmp) / scenario.name
            if against == "live":
                world = live_world(workdir, environ)
                path = record_scenario(scenario, world, out_dir)
            else:
                with sandbox_world(scenario, workdir) as world:
                    path = record_scenario(scenario, world, out_dir)
            found = verify(path, world.secrets)
            problems += [f"{scenario.name}: {line}" for line in found]
            if path.exists():
                written.append(path)
            status = "FAILED" if found else "ok"
            print(f"{status:6} {path.relative_to(out_dir.parent) if path.exists() else path}")
    return written, problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.record_cassettes",
        description="Re-record the vcrpy cassettes of syncctl's key scenarios.",
    )
    parser.add_argument(
        "--against",
        choices=("sandbox", "live"),
        default="sandbox",
        help="the bundled sandbox (default) or real test accounts from the environment",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SCENARIO",
        help=f"record only this scenario (repeatable): {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="directory (default cassettes/ or cassettes/live/)"
    )
    args = parser.parse_args(argv)
    try:
        _, problems = record_all(args.against, args.only, args.out)
    except RecordError as exc:
        print(f"record_cassettes: error: {exc}", file=sys.stderr)
        return 2
    for line in problems:
        print(f"record_cassettes: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
