"""How many runs a campaign needs to converge through a storm of vendor trouble.

Each seed builds the same small campaign (the demo's backers, new sign-ups,
VIP purchases by known and unknown buyers) and turns a seeded `Storm` on in
all five emulators: 20 % of calls answered 503 (before or after the service
acted) or cut off, plus 429 bursts, with the given latency. `reconcile` then
runs until the services show the desired state (checked on their own
records, `syncctl.sandbox.verify`), at most `max_runs` times; then the storm
stops and one calm run must plan nothing and find everything exactly once.

    python -m benchmarks.storm --seeds 20 --latency 0.2     # docs/benchmarks.md

Issue 11's target: converged within 3 runs for at least 19 of 20 seeds,
every side effect exactly once.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from syncctl import config as config_mod
from syncctl.engine.reconcile import reconcile
from syncctl.errors import SyncctlError
from syncctl.sandbox.seed import seed_demo
from syncctl.sandbox.stack import VIP_PRICE_ID, VIP_PRODUCT_ID, Sandbox
from syncctl.sandbox.storm import Storm
from syncctl.sandbox.verify import violations

#: Discord's invite buckets opened: the storm's own 429 bursts are the test.
ROOMY = {
    "discord": {
        "invite_bucket_limit": 1000,
        "invite_bucket_window": 1.0,
        "route_bucket_limit": 1000,
        "global_limit_per_second": 1000,
    }
}
#: A problem that means something happened twice (never allowed).
_TWICE = re.compile(r"exists [2-9]\d* times|sent [2-9]\d* times|has [2-9]\d* leads")


@dataclass
class SeedResult:
    seed: int
    #: Runs until the services showed the desired state (None: not within max_runs).
    converged_after: int | None
    #: What was still wrong after each storm run.
    left: list[int] = field(default_factory=list)
    #: Runs that stopped with an error (Mautic, the hub, could not be read).
    stopped: list[str] = field(default_factory=list)
    #: Anything done twice, at any point (must stay empty).
    duplicates: list[str] = field(default_factory=list)
    #: The calm run after the storm: its plan and what it found.
    calm_plan: int = 0
    calm_problems: list[str] = field(default_factory=list)
    storm_counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def seed_campaign(sandbox: Sandbox, sign_ups: int = 12, buyers: int = 6) -> None:
    """The demo's backers, new opted-in sign-ups and VIP purchases."""
    seed_demo(sandbox)
    vip = [(VIP_PRICE_ID, VIP_PRODUCT_ID, 1)]
    for i in range(sign_ups):
        sandbox.mautic.add_contact(
            f"signup{i:03d}@example.com", firstname="Sign", lastname=f"Up{i}", opt_in_confirmed=True
        )
    for i in range(buyers):
        email = f"signup{i:03d}@example.com" if i % 2 else f"buyer{i:03d}@example.com"
        sandbox.stripe.add_session(email, name=f"Buyer {i}", line_items=vip)


def run_seed(
    seed: int,
    *,
    latency: float = 0.0,
    max_runs: int = 3,
    rate: float = 0.2,
    state_root: Path | None = None,
) -> SeedResult:
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix=f"storm{seed}-", dir=state_root))
    with Sandbox(latency=latency, emulator_options=ROOMY) as sandbox:
        seed_campaign(sandbox)
        config = config_mod.load(*sandbox.write_files(root))
        storms = {}
        for i, (name, emulator) in enumerate(sorted(sandbox.emulators.items())):
            storms[name] = emulator.storm = Storm(seed * 10 + i, rate=rate)
        result = SeedResult(seed, None)
        for run in range(1, max_runs + 1):
            try:
                reconcile(config)
            except SyncctlError as exc:  # Mautic unreadable: the run stops, exit 1
                result.stopped.append(f"run {run}: {exc}")
            problems = violations(sandbox, config)
            result.left.append(len(problems))
            result.duplicates += [p for p in problems if _TWICE.search(p)]
            if not problems:
                result.converged_after = run
                break
        for name, emulator in sandbox.emulators.items():
            emulator.storm = None
            for fate, n in storms[name].counts.items():
                result.storm_counts[fate] = result.storm_counts.get(fate, 0) + n
        calm = reconcile(config)
        second = reconcile(config)
        result.calm_plan = len(second.plan)
        result.calm_problems = violations(sandbox, config)
        result.duplicates += [p for p in result.calm_problems if _TWICE.search(p)]
        del calm
    result.seconds = round(time.monotonic() - started, 1)
    return result


def summary(results: Sequence[SeedResult], max_runs: int) -> dict[str, Any]:
    within = sum(1 for r in results if r.converged_after is not None)
    return {
        "seeds": len(results),
        "converged_within_max_runs": within,
        "max_runs": max_runs,
        "runs_needed": [r.converged_after for r in results],
        "duplicates": sum(len(r.duplicates) for r in results),
        "runs_stopped": sum(len(r.stopped) for r in results),
        "calm_run_clean": sum(1 for r in results if not r.calm_problems and not r.calm_plan),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--rate", type=float, default=0.2)
    parser.add_argument("--max-runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=4, help="seeds run side by side")
    parser.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    args = parser.parse_args(argv)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    kwargs = {"latency": args.latency, "max_runs": args.max_runs, "rate": args.rate}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(_run, seeds, [kwargs] * len(seeds)))
    for r in results:
        print(
            f"seed {r.seed:2d}: converged after {r.converged_after} run(s); left {r.left}; "
            f"duplicates {len(r.duplicates)}; calm plan {r.calm_plan}; {r.seconds}s",
            file=sys.stderr,
        )
    document = {
        "parameters": vars(args) | {"out": str(args.out) if args.out else None},
        "summary": summary(results, args.max_runs),
        "seeds": [asdict(r) for r in results],
    }
    text = json.dumps(document, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(json.dumps(document["summary"]))
    return 0


def _run(seed: int, kwargs: dict[str, Any]) -> SeedResult:
    return run_seed(seed, **kwargs)


if __name__ == "__main__":
    raise SystemExit(main())
