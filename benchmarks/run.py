"""The benchmark: a generated campaign of N contacts, five runs, one report.

    python -m benchmarks.run --contacts 1000 10000 100000 --latency 0.02

For each N it serves the sandbox (in this process) with a generated campaign
(benchmarks/campaign.py), per-call latency L and the vendor rate limits of
`Limits`, then runs `syncctl reconcile --json` in a child process five
times: the first run, a settle run, a steady-state run (nothing changed), a
day of churn (changes made in the sandbox, then a run; or several runs with
--churn-batches) and a `--full` audit. Each run's wall time, calls per
service, 429s and peak RSS (of the child only) are recorded in
<out-dir>/N<n>.json; the report (benchmarks/report.py) renders every result
file into docs/benchmarks.md with --update-doc.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import n8n, report
from benchmarks.campaign import Churn, Shape, churn_events, seed_campaign
from benchmarks.floor import Limits, floor
from benchmarks.measure import RunOutput, run_reconcile
from benchmarks.traffic import count_traffic, snapshot
from syncctl.sandbox.stack import Sandbox

PHASES = report.PHASES
ROOT = Path(__file__).resolve().parents[1]


def _log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _phase_result(name: str, out: RunOutput, traffic: dict[str, Any], n: int) -> dict[str, Any]:
    doc = out.document
    calls = doc.get("api_calls", {})
    reads = sum(s["reads"] for s in calls.values())
    writes = sum(s["writes"] for s in calls.values())
    throttled = sum(s["throttled"] for s in calls.values())
    outcomes = Counter(o["status"] for o in doc.get("outcomes", []))
    failed = [o["message"] for o in doc.get("outcomes", []) if o["status"] == "failed"]
    return {
        "phase": name,
        "exit_code": out.exit_code,
        "wall_seconds": round(out.wall, 3),
        "run_seconds": doc.get("duration_seconds"),
        "cpu_seconds": round(out.cpu_seconds, 3),
        "peak_rss_mb": round(out.peak_rss_mb, 1),
        "mode": doc.get("mode"),
        "calls": calls,
        "reads": reads,
        "writes": writes,
        "total_calls": reads + writes,
        "calls_per_contact": round((reads + writes) / n, 4) if n else None,
        "throttled": throttled,
        "throttled_share": round(throttled / (reads + writes), 5) if reads + writes else 0.0,
        "planned": len(doc.get("plan", {}).get("actions", [])),
        "planned_kinds": dict(
            Counter(f"{a['kind']}: {a['reason']}" for a in doc.get("plan", {}).get("actions", []))
        ),
        "plan_counts": doc.get("plan", {}).get("counts", {}),
        "outcomes": dict(outcomes),
        "failures": failed[:5],
        "scanned": doc.get("scanned", {}),
        "server": traffic,
        "stderr_tail": "" if out.exit_code == 0 else out.stderr_tail,
        "rss_timeline": _thin(out.rss_timeline, 120),
    }


def _thin(samples: list[tuple[float, float]], most: int) -> list[tuple[float, float]]:
    """At most `most` samples, the peak always kept."""
    if len(samples) <= most:
        return samples
    step = len(samples) / most
    kept = {int(i * step) for i in range(most)}
    kept.add(max(range(len(samples)), key=lambda i: samples[i][1]))
    return [samples[i] for i in sorted(kept)]


def _merge(name: str, parts: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """Several churn runs as one phase: sums, except RSS (max)."""
    if len(parts) == 1:
        return {**parts[0], "phase": name, "runs": 1}
    merged = {**parts[-1], "phase": name, "runs": len(parts)}
    summed = ("wall_seconds", "run_seconds", "cpu_seconds", "sandbox_cpu_seconds")
    for key in (*summed, "reads", "writes", "throttled"):
        merged[key] = round(sum(p[key] or 0 for p in parts), 3)
    merged["total_calls"] = merged["reads"] + merged["writes"]
    merged["calls_per_contact"] = round(merged["total_calls"] / n, 4)
    merged["throttled_share"] = (
        round(merged["throttled"] / merged["total_calls"], 5) if merged["total_calls"] else 0.0
    )
    merged["peak_rss_mb"] = max(p["peak_rss_mb"] for p in parts)
    merged["planned"] = sum(p["planned"] for p in parts)
    kinds: Counter[str] = Counter()
    for p in parts:
        kinds.update(p["planned_kinds"])
    merged["planned_kinds"] = dict(kinds)
    merged["exit_code"] = max(p["exit_code"] for p in parts)
    calls: dict[str, dict[str, int]] = {}
    for p in parts:
        for service, stats in p["calls"].items():
            into = calls.setdefault(service, Counter())
            into.update(stats)
    merged["calls"] = {s: dict(c) for s, c in calls.items()}
    outcomes: Counter[str] = Counter()
    for p in parts:
        outcomes.update(p["outcomes"])
    merged["outcomes"] = dict(outcomes)
    merged["failures"] = [f for p in parts for f in p["failures"]][:5]
    server: dict[str, Any] = {}
    for p in parts:
        for service, seen in p["server"].items():
            into = server.setdefault(service, {"requests": 0, "throttled": 0, "routes": Counter()})
            into["requests"] += seen["requests"]
            into["throttled"] += seen["throttled"]
            into["routes"].update(seen["routes"])
    merged["server"] = {
        s: {**v, "routes": dict(sorted(v["routes"].items()))} for s, v in server.items()
    }
    return merged


def run_benchmark(
    n: int,
    *,
    latency: float = 0.02,
    concurrency: int = 4,
    limits: Limits | None = None,
    shape: Shape | None = None,
    churn: Churn | None = None,
    churn_batches: int = 1,
    seed: int = 1,
    phases: Sequence[str] = PHASES,
    phase_timeout: float | None = None,
    profile_dir: Path | None = None,
    code_rev: str | None = None,
    log: Callable[[str], None] = _log,
) -> dict[str, Any]:
    """Run the phases against a fresh sandbox of `n` contacts; the result document."""
    limits = limits or Limits()
    shape = shape or Shape()
    churn = churn or Churn()
    result: dict[str, Any] = {
        "format_version": 1,
        "n": n,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "parameters": {
            "latency": latency,
            "concurrency": concurrency,
            "seed": seed,
            "churn_batches": churn_batches,
            "limits": limits.to_dict(),
            "shape": asdict(shape),
            "churn": asdict(churn),
        },
        "phases": {},
    }
    with tempfile.TemporaryDirectory(prefix="syncctl-bench-") as tmp:
        # The reconciler runs from a copy of src/ taken now: code edited while
        # the benchmark runs does not mix into its phases.
        code_dir = Path(tmp) / "code"
        result["code"] = _code_version(code_rev)
        _copy_code(code_dir, code_rev)
        sandbox = Sandbox(latency=latency, emulator_options=limits.emulator_options())
        started = time.monotonic()
        campaign = seed_campaign(sandbox, n, shape=shape, seed=seed, now=time.time())
        result["seed_seconds"] = round(time.monotonic() - started, 2)
        result["campaign"] = {
            "contacts": n,
            "sessions": campaign.sessions,
            "needing_action": campaign.needing_action,
            "counts": dict(sorted(campaign.counts.items())),
        }
        log(
            f"N={n}: seeded {n} contacts, {campaign.sessions} sessions, "
            f"{campaign.needing_action} needing action in {result['seed_seconds']} s"
        )
        with sandbox:
            logs = count_traffic(sandbox)
            config, env = sandbox.write_files(Path(tmp) / "campaign", state_dir=Path(tmp) / "state")
            with config.open("a") as f:  # [run] is the file's last table
                f.write(f"concurrency = {concurrency}\n")

            last_end = [0.0]
            # A timer runs syncctl minutes apart, never inside the rate-limit
            # windows its previous run opened: without this pause the phases,
            # run back to back, would start with a bucket the last one emptied.
            quiet = max(limits.discord_invite_window, 1.0)

            def run(name: str, *, full: bool = False) -> dict[str, Any]:
                time.sleep(max(0.0, last_end[0] + quiet - time.monotonic()))
                snapshot(logs, sandbox)  # drop whatever came before
                profile = profile_dir / f"N{n}-{name}.prof" if profile_dir else None
                began = time.time()
                own = resource.getrusage(resource.RUSAGE_SELF)
                out = run_reconcile(
                    config,
                    env,
                    full=full,
                    timeout=phase_timeout,
                    profile=profile,
                    pythonpath=code_dir,
                )
                last_end[0] = time.monotonic()
                phase = _phase_result(name, out, snapshot(logs, sandbox, began), n)
                done = resource.getrusage(resource.RUSAGE_SELF)
                phase["sandbox_cpu_seconds"] = round(
                    done.ru_utime + done.ru_stime - own.ru_utime - own.ru_stime, 3
                )
                log(
                    f"N={n} {name}: {phase['wall_seconds']:.1f} s, {phase['total_calls']} calls "
                    f"({phase['writes']} writes, {phase['throttled']} x 429), "
                    f"{phase['planned']} planned, rss {phase['peak_rss_mb']} MB, "
                    f"exit {phase['exit_code']}"
                )
                return phase

            for name in phases:
                if name == "churn":
                    events = churn_events(sandbox, campaign, churn=churn, seed=seed + 1)
                    kinds = Counter(e.kind for e in events)
                    result["churn"] = {
                        "events": dict(sorted(kinds.items())),
                        "n8n": n8n.cost(kinds),
                    }
                    batches = max(1, churn_batches)
                    parts = []
                    for b in range(batches):
                        for event in events[b::batches]:
                            event.apply()
                        parts.append(run(f"churn-{b + 1}" if batches > 1 else "churn"))
                    result["phases"]["churn"] = _merge("churn", parts, n)
                else:
                    result["phases"][name] = run(name, full=name == "full")
            first = result["phases"].get("first")
            if first is not None:
                result["floor"] = floor(
                    first["server"], latency=latency, concurrency=concurrency, limits=limits
                )
    return result


def _git(*args: str) -> str:
    import subprocess

    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip()


def _code_version(rev: str | None) -> dict[str, Any]:
    """The code measured: a commit, or the working tree (and whether src/ differs from HEAD)."""
    import hashlib

    if rev is not None:
        return {"commit": _git("rev-parse", "--short", rev) or rev, "src_dirty": False}
    diff = _git("diff", "HEAD", "--", "src")
    return {
        "commit": _git("rev-parse", "--short", "HEAD") or None,
        "src_dirty": bool(diff),
        "src_diff_sha": hashlib.sha256(diff.encode()).hexdigest()[:12] if diff else None,
    }


def _copy_code(into: Path, rev: str | None) -> None:
    """`src/syncctl` of the working tree, or of commit `rev`, as `into/syncctl`."""
    if rev is None:
        shutil.copytree(
            ROOT / "src" / "syncctl", into / "syncctl", ignore=shutil.ignore_patterns("__pycache__")
        )
        return
    import io
    import subprocess
    import tarfile

    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "src/syncctl"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = []
        for member in tar.getmembers():
            member.name = member.name.removeprefix("src/")
            members.append(member)
        tar.extractall(into, members=members, filter="data")


def _machine() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--contacts", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per call (0.02)")
    parser.add_argument("--concurrency", type=int, default=4, help="[run] concurrency (4)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--churn-batches", type=int, default=1, help="spread the day of churn over K runs (1)"
    )
    parser.add_argument(
        "--phases", default=",".join(PHASES), help=f"comma-separated subset of {PHASES}"
    )
    parser.add_argument("--phase-timeout", type=float, default=None, help="kill a run after S s")
    parser.add_argument("--stripe-rate", type=float, default=Limits.stripe_per_second)
    parser.add_argument("--discord-invite-limit", type=int, default=Limits.discord_invite_limit)
    parser.add_argument("--discord-invite-window", type=float, default=Limits.discord_invite_window)
    parser.add_argument("--mautic-per-hour", type=int, default=Limits.mautic_per_hour)
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--tag", default="", help="suffix of the result file names")
    parser.add_argument("--profile-dir", type=Path, help="cProfile each run into this directory")
    parser.add_argument(
        "--code",
        metavar="REV",
        help="run the reconciler of this commit (git archive) instead of the working tree",
    )
    parser.add_argument(
        "--update-doc",
        type=Path,
        nargs="?",
        const=ROOT / "docs" / "benchmarks.md",
        help="render every result file of --out-dir into this document (docs/benchmarks.md)",
    )
    args = parser.parse_args(argv)
    phases = [p for p in args.phases.split(",") if p]
    unknown = set(phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    limits = Limits(
        stripe_per_second=args.stripe_rate or None,
        discord_invite_limit=args.discord_invite_limit,
        discord_invite_window=args.discord_invite_window,
        mautic_per_hour=args.mautic_per_hour,
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.profile_dir:
        args.profile_dir.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:])
    for n in args.contacts:
        result = run_benchmark(
            n,
            latency=args.latency,
            concurrency=args.concurrency,
            limits=limits,
            churn_batches=args.churn_batches,
            seed=args.seed,
            phases=phases,
            phase_timeout=args.phase_timeout,
            profile_dir=args.profile_dir,
            code_rev=args.code,
        )
        result["command"] = command
        path = args.out_dir / f"N{n}{args.tag}.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        _log(f"N={n}: results in {path}")
        print(report.summary(result))
    if args.update_doc:
        report.update_doc(args.update_doc, sorted(args.out_dir.glob("N*.json")))
        _log(f"updated {args.update_doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
