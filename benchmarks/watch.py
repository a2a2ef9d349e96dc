"""How fast `syncctl watch` answers: from a purchase (or an opt-in) to the email send call.

The watch runs as the real command line in a child process (`python -m
syncctl ... watch --listen ...`), against the sandbox this process serves
(20 ms a call by default), as `benchmarks.run` does for `reconcile`. Each
phase starts a fresh seeded campaign, settles it with two plain reconcile
runs, then starts the child:

- **webhooks**: `--events` changes spread evenly over `--spread` seconds,
  two thirds VIP purchases by new buyers (the coupon email), one third
  opt-ins of known contacts (the invite email); each is followed by a
  signed delivery to the child, Stripe's or Mautic's, made by the small
  signer below (Stripe's `t=...,v1=...` scheme, Mautic's base64 HMAC);
- **polling**: the same without any delivery, `--poll-interval` seconds
  between cycles (30 s by default, as `[watch] interval`);
- **burst**: `--burst` VIP purchases within `--burst-spread` seconds, each
  with its delivery: every buyer must get exactly one coupon email;
- **idle**: `--idle-cycles` cycles at `--idle-interval` seconds with
  nothing to do: calls per cycle (from the child's /metrics) and the
  child's resident memory (VmRSS) after the first 50 cycles and at the end.

Latency: the sandbox's clock when the change was made (just before its
delivery is sent) to the moment the emulator answered the send call
(`POST /api/emails/{id}/contact/{id}/send`, its exchange log).

    python -m benchmarks.watch --out benchmarks/results/watch.json
    python -m benchmarks.watch --phases webhooks --events 200 --spread 600   # the issue's scale
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from syncctl import config as config_mod
from syncctl.config import OPTIONAL_SECRET_NAMES, SECRET_NAMES
from syncctl.engine.reconcile import reconcile
from syncctl.sandbox.seed import seed_demo
from syncctl.sandbox.stack import (
    COUPON_EMAIL,
    INVITE_EMAIL_BASIC,
    VIP_PRICE_ID,
    VIP_PRODUCT_ID,
    Sandbox,
)

STRIPE_SECRET = "whsec_benchmark_0123456789"
MAUTIC_SECRET = "mautic-benchmark-secret"
#: Discord's invite bucket opened: this measures watch, not the 5-per-5-s window.
ROOMY = {"discord": {"invite_bucket_limit": 1000, "invite_bucket_window": 1.0}}
_SEND = re.compile(r"/emails/(\d+)/contact/(\d+)/send$")


def stripe_signature(body: str, secret: str = STRIPE_SECRET) -> str:
    stamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{stamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


def mautic_signature(body: bytes, secret: str = MAUTIC_SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


@dataclass
class Event:
    kind: str  # "purchase" | "opt-in"
    email: str
    at: float  # wall clock when the change was made
    email_id: int


@dataclass
class PhaseResult:
    phase: str
    interval: float
    webhooks: bool
    events: int = 0
    spread_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    sent_twice: list[str] = field(default_factory=list)
    cycles: float = 0.0
    calls: float = 0.0
    writes: float = 0.0
    rss_mb: list[tuple[float, float]] = field(default_factory=list)
    wall_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_s)
        doc: dict[str, Any] = {
            "phase": self.phase,
            "interval_s": self.interval,
            "webhooks": self.webhooks,
            "events": self.events,
            "spread_s": self.spread_s,
            "cycles": self.cycles,
            "missing": len(self.missing),
            "sent_twice": len(self.sent_twice),
            "wall_s": round(self.wall_s, 1),
        }
        if lat:
            doc |= {
                "p50_s": round(statistics.median(lat), 3),
                "p95_s": round(lat[max(0, round(0.95 * len(lat)) - 1)], 3),
                "max_s": round(lat[-1], 3),
            }
        if self.phase == "idle" and self.cycles:
            doc |= {
                "calls_per_cycle": round(self.calls / self.cycles, 2),
                "writes": self.writes,
                "rss_mb": self.rss_mb,
            }
        return doc


class Child:
    """`syncctl watch` in a child process, listening on a free loopback port."""

    def __init__(self, config: Path, env_file: Path, interval: float) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "syncctl", "--config", str(config)]
        cmd += ["--env-file", str(env_file), "watch", "--interval", str(interval)]
        cmd += ["--listen", f"127.0.0.1:{self.port}"]
        scrub = (*SECRET_NAMES, *OPTIONAL_SECRET_NAMES, "SYNCCTL_CONFIG")
        env = {k: v for k, v in os.environ.items() if k not in scrub} | {"NO_COLOR": "1"}
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=self.log, env=env, cwd=config.parent
        )
        self.client = httpx.Client(timeout=10)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.client.get(f"{self.url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"watch did not start: {self.stderr()}")
            time.sleep(0.05)

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def metrics(self) -> dict[str, float]:
        """Sums of the families the benchmark reads (one value each)."""
        text = self.client.get(f"{self.url}/metrics").text
        sums: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name_labels, _, value = line.rpartition(" ")
            name = name_labels.split("{", 1)[0]
            if name == "syncctl_api_calls_total" and 'access="write"' in name_labels:
                name = "syncctl_api_writes_total"
            if name == "syncctl_cycles_total" and 'outcome="busy"' in name_labels:
                continue
            sums[name] = sums.get(name, 0.0) + float(value)
        return sums

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def wake(self, event: Event) -> None:
        # Bodies as the vendors send them, one per change: watch answers an
        # identical signed body a second time without waking (a replay).
        if event.kind == "purchase":
            body = json.dumps(
                {
                    "id": f"evt_bench_{event.email}",
                    "object": "event",
                    "type": "checkout.session.completed",
                    "created": int(event.at),
                    "data": {"object": {"customer_details": {"email": event.email}}},
                }
            )
            headers = {"Stripe-Signature": stripe_signature(body)}
            answer = self.client.post(f"{self.url}/webhooks/stripe", content=body, headers=headers)
        else:
            change = {"contact": {"email": event.email}, "timestamp": f"{event.at:.6f}"}
            raw = json.dumps({"mautic.lead_post_save_update": [change]}).encode()
            headers = {"Webhook-Signature": mautic_signature(raw)}
            answer = self.client.post(f"{self.url}/webhooks/mautic", content=raw, headers=headers)
        answer.raise_for_status()

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.client.close()


def campaign(sandbox: Sandbox, root: Path) -> tuple[Path, Path]:
    seed_demo(sandbox)
    config_path, env_path = sandbox.write_files(root)
    with env_path.open("a") as env:
        env.write(f"STRIPE_WEBHOOK_SECRET={STRIPE_SECRET}\nMAUTIC_WEBHOOK_SECRET={MAUTIC_SECRET}\n")
    config = config_mod.Config(
        settings=config_mod.read_settings(config_path),
        secrets=config_mod.read_secrets(env_path, environ={}),
        path=config_path,
    )
    reconcile(config)
    reconcile(config)  # settled: the child starts idle
    return config_path, env_path


def run_events(
    phase: str,
    *,
    events: int,
    spread: float,
    interval: float,
    webhooks: bool,
    latency: float,
    opt_in_share: float = 1 / 3,
    seed: int = 1,
) -> PhaseResult:
    rng = random.Random(seed)
    result = PhaseResult(phase, interval, webhooks, events=events, spread_s=spread)
    with (
        tempfile.TemporaryDirectory(prefix=f"watch-{phase}-") as tmp,
        Sandbox(latency=latency, emulator_options=ROOMY) as sandbox,
    ):
        config_path, env_path = campaign(sandbox, Path(tmp) / "campaign")
        plan: list[tuple[str, str]] = []
        waiting: dict[str, int] = {}
        for i in range(events):
            if rng.random() < opt_in_share:
                email = f"optin{i:04d}@example.com"
                waiting[email] = sandbox.mautic.add_contact(email, firstname="Opt", lastname="In")
                plan.append(("opt-in", email))
            else:
                plan.append(("purchase", f"buyer{i:04d}@example.com"))
        settle = config_mod.load(config_path, env_path)
        reconcile(settle)  # the new contacts (not opted in yet) are known: nothing to do
        child = Child(config_path, env_path, interval)
        started = time.monotonic()
        made: list[Event] = []
        try:
            for n, (kind, email) in enumerate(plan):
                due = started + spread * n / max(1, events)
                time.sleep(max(0.0, due - time.monotonic()))
                if kind == "purchase":
                    sandbox.stripe.add_session(
                        email, name="Buyer", line_items=[(VIP_PRICE_ID, VIP_PRODUCT_ID, 1)]
                    )
                    event = Event(kind, email, time.time(), COUPON_EMAIL)
                else:
                    sandbox.mautic.set_fields(waiting[email], opt_in_confirmed=True)
                    event = Event(kind, email, time.time(), INVITE_EMAIL_BASIC)
                made.append(event)
                if webhooks:
                    child.wake(event)
            # Every change answered, or an interval and a half more at most.
            deadline = time.monotonic() + max(60.0, 1.5 * interval)
            while time.monotonic() < deadline and _unanswered(sandbox, made):
                time.sleep(0.2)
            result.cycles = child.metrics().get("syncctl_cycles_total", 0.0)
        finally:
            code = child.stop()
            if code != 0:
                print(f"{phase}: watch exited {code}: {child.stderr()}", file=sys.stderr)
        result.wall_s = time.monotonic() - started
        _latencies(sandbox, made, result)
    return result


def _sends(sandbox: Sandbox) -> dict[tuple[int, str], list[float]]:
    """(email id, address) -> the times the emulator answered each send call."""
    address = {s["contact_id"]: s["email_address"] for s in sandbox.mautic.sent()}
    found: dict[tuple[int, str], list[float]] = {}
    for exchange in sandbox.mautic.exchanges("POST", _SEND.pattern):
        match = _SEND.search(exchange.path)
        if match is None or exchange.status >= 300:
            continue
        email_id, contact_id = int(match.group(1)), int(match.group(2))
        who = address.get(contact_id)
        if who:
            found.setdefault((email_id, who), []).append(exchange.at)
    return found


def _unanswered(sandbox: Sandbox, made: list[Event]) -> bool:
    sends = _sends(sandbox)
    return any((e.email_id, e.email) not in sends for e in made)


def _latencies(sandbox: Sandbox, made: list[Event], result: PhaseResult) -> None:
    sends = _sends(sandbox)
    for event in made:
        times = sends.get((event.email_id, event.email), [])
        if not times:
            result.missing.append(event.email)
            continue
        if len(times) > 1:
            result.sent_twice.append(event.email)
        result.latencies_s.append(round(min(times) - event.at, 3))


def run_idle(cycles: int, interval: float, latency: float) -> PhaseResult:
    result = PhaseResult("idle", interval, webhooks=False)
    with (
        tempfile.TemporaryDirectory(prefix="watch-idle-") as tmp,
        Sandbox(latency=latency) as sandbox,
    ):
        config_path, env_path = campaign(sandbox, Path(tmp) / "campaign")
        child = Child(config_path, env_path, interval)
        started = time.monotonic()
        try:
            base: dict[str, float] = {}
            while True:
                figures = child.metrics()
                done = figures.get("syncctl_cycles_total", 0.0)
                if not base and done >= 50:  # warmed up: caches, pools, first pages
                    base = figures
                    result.rss_mb.append((done, round(child.rss_mb(), 1)))
                if base and done - base["syncctl_cycles_total"] >= cycles:
                    result.rss_mb.append((done, round(child.rss_mb(), 1)))
                    break
                time.sleep(0.5)
            result.cycles = done - base["syncctl_cycles_total"]
            result.calls = figures["syncctl_api_calls_total"] - base["syncctl_api_calls_total"]
            result.writes = figures["syncctl_api_writes_total"] - base["syncctl_api_writes_total"]
        finally:
            child.stop()
        result.wall_s = time.monotonic() - started
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phases", default="webhooks,polling,burst,idle")
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--spread", type=float, default=600.0, help="seconds")
    parser.add_argument("--interval", type=float, default=30.0, help="watch interval, webhooks")
    parser.add_argument("--poll-events", type=int, default=200)
    parser.add_argument("--poll-spread", type=float, default=600.0)
    parser.add_argument("--poll-interval", type=float, default=30.0)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--burst-spread", type=float, default=60.0)
    parser.add_argument("--idle-cycles", type=int, default=1000)
    parser.add_argument("--idle-interval", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    phases = args.phases.split(",")
    results: list[PhaseResult] = []
    for phase in phases:
        if phase == "webhooks":
            results.append(
                run_events(
                    "webhooks",
                    events=args.events,
                    spread=args.spread,
                    interval=args.interval,
                    webhooks=True,
                    latency=args.latency,
                )
            )
        elif phase == "polling":
            results.append(
                run_events(
                    "polling",
                    events=args.poll_events,
                    spread=args.poll_spread,
                    interval=args.poll_interval,
                    webhooks=False,
                    latency=args.latency,
                )
            )
        elif phase == "burst":
            results.append(
                run_events(
                    "burst",
                    events=args.burst,
                    spread=args.burst_spread,
                    interval=args.interval,
                    webhooks=True,
                    latency=args.latency,
                    opt_in_share=0.0,
                )
            )
        elif phase == "idle":
            results.append(run_idle(args.idle_cycles, args.idle_interval, args.latency))
        else:
            parser.error(f"unknown phase {phase}")
        print(json.dumps(results[-1].summary()), flush=True)
    document = {
        "command": "python -m benchmarks.watch " + " ".join(sys.argv[1:] if argv is None else argv),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "latency_s": args.latency,
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.platform()}",
        "code": _commit(),
        "phases": [r.summary() for r in results],
        "latencies": {r.phase: r.latencies_s for r in results if r.latencies_s},
    }
    if args.out is not None:
        args.out.write_text(json.dumps(document, indent=1) + "\n")
    return 0


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], capture_output=True, text=True
        )
        return out.stdout.strip() + (" (src modified)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
