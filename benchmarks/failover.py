"""Failover between two `syncctl watch` hosts on one PostgreSQL store: 20 leader kills.

    python -m benchmarks.failover --kills 20

Two watch processes (each a "host": its own campaign directory, one
SYNCCTL_STATE_URL) run against the sandbox (20 ms a call). Each round adds
new VIP buyers, waits until one host holds the run lock in a busy cycle
(writes reaching the services), SIGKILLs that leader, and measures

- takeover: from the kill to the start of the next run the other host
  records in the shared journal;
- converged: from the kill until the services hold every side effect
  exactly once (`sandbox.verify`), which includes the new leader's wait of
  `[run] timeout_seconds` + 2 s before it settles what the dead one left
  in flight.

The killed host is started again for the next round. Writes one JSON
document (--out) and prints p50/max.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.pgserver import PgServer, find_bin_dir

from syncctl import config as config_mod
from syncctl.sandbox.seed import seed_demo
from syncctl.sandbox.stack import VIP_PRICE_ID, VIP_PRODUCT_ID, Sandbox
from syncctl.sandbox.verify import violations
from syncctl.state.journal import Journal
from syncctl.state.postgres import LOCK_CLASS

ROOT = Path(__file__).resolve().parents[1]


def _watch(host: Path, interval: float) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCCTL_", "STRIPE_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "syncctl", "-q", "watch", "--interval", str(interval)],
        cwd=host,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _holder(server: PgServer) -> int | None:
    with server.admin() as conn:
        row = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.classid::bigint = %s AND l.granted",
            (LOCK_CLASS,),
        ).fetchone()
    return int(row[0].rsplit(":", 1)[1]) if row else None


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--buyers", type=int, default=6, help="new VIP buyers per round")
    parser.add_argument("--interval", type=float, default=5.0, help="watch --interval")
    parser.add_argument("--timeout-seconds", type=float, default=5.0, help="[run] timeout_seconds")
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "state-store" / "failover.json",
    )
    args = parser.parse_args(argv)
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit("no PostgreSQL binaries (initdb, postgres): apt-get install postgresql")
    server = PgServer(bin_dir, durable=True)
    rounds: list[dict[str, Any]] = []
    try:
        server.init()
        server.start()
        server.setup_roles()
        url = server.url(server.create_schema())
        with (
            tempfile.TemporaryDirectory(prefix="syncctl-failover-") as tmp,
            Sandbox(latency=args.latency) as sandbox,
        ):
            seed_demo(sandbox)
            hosts = []
            for name in ("a", "b"):
                config, env = sandbox.write_files(Path(tmp) / name)
                with config.open("a") as f:
                    f.write(f"timeout_seconds = {args.timeout_seconds}\nconcurrency = 2\n")
                with env.open("a") as f:
                    f.write(f"SYNCCTL_STATE_URL={url}\n")
                hosts.append(config.parent)
            config = config_mod.load(hosts[0] / "syncctl.toml", hosts[0] / ".env")
            procs = {host: _watch(host, args.interval) for host in hosts}
            buyer = 0
            for k in range(args.kills):
                for _ in range(args.buyers):
                    email = f"failover{buyer}@example.com"
                    sandbox.mautic.add_contact(
                        email, firstname="F", lastname=str(buyer), opt_in_confirmed=True
                    )
                    sandbox.stripe.add_session(
                        email, name=f"F {buyer}", line_items=[(VIP_PRICE_ID, VIP_PRODUCT_ID, 1)]
                    )
                    buyer += 1  # fmt: skip
                writes = sandbox.write_count()
                deadline = time.monotonic() + 120
                while (holder := _holder(server)) is None or sandbox.write_count() <= writes:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"round {k + 1}: no busy cycle")
                    time.sleep(0.005)
                leader = next(h for h, p in procs.items() if p.pid == holder)
                procs[leader].kill()
                procs[leader].wait()
                killed, t0 = datetime.now(UTC), time.monotonic()
                took = None
                while True:
                    if took is None:
                        with Journal.open(config.state, readonly=True) as journal:
                            later = [r.started_at for r in journal.runs(5) if r.started_at > killed]
                        if later:
                            took = (min(later) - killed).total_seconds()
                    if took is not None and not violations(sandbox, config):
                        break
                    if time.monotonic() - t0 > 120:
                        raise SystemExit(f"round {k + 1}: did not converge")
                    time.sleep(0.05)
                converged = time.monotonic() - t0
                rounds.append({"round": k + 1, "takeover": round(took, 3),
                               "converged": round(converged, 3)})  # fmt: skip
                print(f"round {k + 1}: takeover {took:.2f} s, converged {converged:.2f} s",
                      file=sys.stderr, flush=True)  # fmt: skip
                procs[leader] = _watch(leader, args.interval)
            for proc in procs.values():
                proc.terminate()
                proc.wait(30)
    finally:
        server.cleanup()
    takeover = [r["takeover"] for r in rounds]
    converged = [r["converged"] for r in rounds]
    result = {
        "format_version": 1,
        "parameters": {k: str(v) for k, v in vars(args).items()},
        "rounds": rounds,
        "takeover_p50": round(statistics.median(takeover), 3),
        "takeover_max": max(takeover),
        "converged_p50": round(statistics.median(converged), 3),
        "converged_max": max(converged),
        "takeover_p95": _pct(takeover, 0.95),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"| {len(rounds)} leader kills | p50 | max |\n|---|---|---|")
    print(f"| takeover (kill -> the standby's next run starts) | {result['takeover_p50']} s | "
          f"{result['takeover_max']} s |")  # fmt: skip
    print(f"| converged (kill -> every effect once in the services) | {result['converged_p50']} s"
          f" | {result['converged_max']} s |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
