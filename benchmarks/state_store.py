"""The state store's cost: idle runs on SQLite against the same runs on PostgreSQL.

    python -m benchmarks.state_store --contacts 10000 --idle-runs 5

Seeds a generated campaign of N contacts (benchmarks/campaign.py) into the
sandbox, with Discord's invite bucket relaxed (the first run is not what is
measured), brings it in sync with the SQLite store (a first run and a
settle run), then measures `--idle-runs` idle runs (`syncctl reconcile
--json`, nothing changed: the timer's usual run, and a watch cycle's cost).
Then it moves the state into a PostgreSQL database with `syncctl state
migrate` (timed) and measures the same idle runs on it. The PostgreSQL
server is a local one this script starts (tests/pgserver.py), with fsync
on, over TCP on loopback: a network between host and database adds its
round trips on top.

Writes one JSON document (--out) and prints a Markdown table for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.pgserver import PgServer, find_bin_dir

from benchmarks.campaign import seed_campaign
from benchmarks.floor import Limits
from benchmarks.measure import RunOutput, run_reconcile
from syncctl.sandbox.stack import Sandbox

ROOT = Path(__file__).resolve().parents[1]


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _summary(runs: list[RunOutput]) -> dict[str, Any]:
    walls = [r.wall for r in runs]
    inside = [float(r.document.get("duration_seconds") or 0) for r in runs]
    cpu = [r.cpu_seconds for r in runs]
    calls = [
        sum(s["reads"] + s["writes"] for s in r.document.get("api_calls", {}).values())
        for r in runs
    ]
    planned = [len(r.document.get("plan", {}).get("actions", [])) for r in runs]
    return {
        "runs": len(runs),
        "exit_codes": [r.exit_code for r in runs],
        "wall_seconds_median": round(statistics.median(walls), 3),
        "run_seconds_median": round(statistics.median(inside), 3),
        "run_seconds_all": [round(x, 3) for x in inside],
        "cpu_seconds_median": round(statistics.median(cpu), 3),
        "peak_rss_mb_median": round(statistics.median(r.peak_rss_mb for r in runs), 1),
        "api_calls": calls,
        "planned": planned,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=10000)
    parser.add_argument("--idle-runs", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    n = args.contacts
    out_path = args.out or ROOT / "benchmarks" / "results" / "state-store" / f"N{n}.json"
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit("no PostgreSQL binaries (initdb, postgres): apt-get install postgresql")
    server = PgServer(bin_dir, durable=True)
    limits = Limits(discord_invite_limit=100_000, discord_invite_window=1.0)
    result: dict[str, Any] = {"format_version": 1, "n": n, "parameters": vars(args) | {}}
    result["parameters"]["out"] = str(out_path)
    try:
        server.init()
        server.start()
        server.setup_roles()
        url = server.url(server.create_schema())
        with tempfile.TemporaryDirectory(prefix="syncctl-state-bench-") as tmp:
            sandbox = Sandbox(latency=args.latency, emulator_options=limits.emulator_options())
            seed_campaign(sandbox, n, seed=args.seed, now=time.time())
            with sandbox:
                config, env = sandbox.write_files(Path(tmp) / "campaign", state_dir=Path(tmp) / "s")
                with config.open("a") as f:
                    f.write(f"concurrency = {args.concurrency}\n")
                for name in ("first", "settle"):
                    out = run_reconcile(config, env)
                    _log(f"N={n} sqlite {name}: {out.wall:.1f} s, exit {out.exit_code}")
                    result[f"sqlite_{name}_seconds"] = round(out.wall, 2)
                idle = []
                for i in range(args.idle_runs):
                    idle.append(run_reconcile(config, env))
                    _log(f"N={n} sqlite idle {i + 1}: {idle[-1].wall:.2f} s")
                result["sqlite_idle"] = _summary(idle)

                started = time.monotonic()
                moved = subprocess.run(
                    [sys.executable, "-m", "syncctl", "--config", str(config), "--env-file",
                     str(env), "state", "migrate", "--to", url, "--json"],
                    capture_output=True, text=True, check=True,
                    env={k: v for k, v in os.environ.items() if not k.startswith("SYNCCTL_")},
                )  # fmt: skip
                result["migrate_seconds"] = round(time.monotonic() - started, 2)
                result["migrate"] = json.loads(moved.stdout)["tables"]
                _log(f"N={n} state migrate to PostgreSQL: {result['migrate_seconds']} s")
                with env.open("a") as f:
                    f.write(f"SYNCCTL_STATE_URL={url}\n")
                idle = []
                for i in range(args.idle_runs):
                    idle.append(run_reconcile(config, env))
                    _log(f"N={n} postgresql idle {i + 1}: {idle[-1].wall:.2f} s")
                result["postgresql_idle"] = _summary(idle)
    finally:
        server.cleanup()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    s, p = result["sqlite_idle"], result["postgresql_idle"]
    print(f"| N={n}, idle run (median of {s['runs']}) | SQLite | PostgreSQL |")
    print("|---|---|---|")
    for key, label in (
        ("run_seconds_median", "time inside the run (s)"),
        ("wall_seconds_median", "process wall time (s)"),
        ("cpu_seconds_median", "CPU time (s)"),
        ("peak_rss_mb_median", "peak RSS (MB)"),
    ):
        print(f"| {label} | {s[key]} | {p[key]} |")
    print(f"| API calls | {s['api_calls'][0]} | {p['api_calls'][0]} |")
    print(f"\nstate migrate SQLite -> PostgreSQL: {result['migrate_seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
