"""`syncctl watch` against the in-process sandbox: a campaign, signers, a running service."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from syncctl import config as config_mod
from syncctl.engine.reconcile import RunResult
from syncctl.sandbox.seed import seed_demo
from syncctl.sandbox.stack import COUPON_EMAIL, VIP_PRICE_ID, VIP_PRODUCT_ID, Sandbox
from syncctl.service.loop import LoopOptions
from syncctl.service.watch import WatchService

STRIPE_SECRET = "whsec_sandbox_0123456789abcdef"
MAUTIC_SECRET = "mautic-webhook-secret-0123456789"


def stripe_headers(body: str, secret: str = STRIPE_SECRET, at: int | None = None) -> dict:
    """`Stripe-Signature` as Stripe makes it: t=..., v1=HMAC-SHA256(secret, "t.body")."""
    stamp = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{stamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={stamp},v1={mac}", "Content-Type": "application/json"}


def mautic_headers(body: bytes, secret: str = MAUTIC_SECRET) -> dict:
    """`Webhook-Signature` as Mautic makes it: base64(HMAC-SHA256(secret, body))."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return {
        "Webhook-Signature": base64.b64encode(digest).decode(),
        "Content-Type": "application/json",
    }


def completed_event(session_id: str = "cs_test_hint") -> str:
    return (
        '{"id": "evt_1", "object": "event", "type": "checkout.session.completed", '
        f'"data": {{"object": {{"id": "{session_id}", "object": "checkout.session"}}}}}}'
    )


def vip_purchase(sandbox: Sandbox, email: str) -> str:
    """A VIP Checkout Session completed now; its id."""
    session = sandbox.stripe.add_session(
        email, name="New Buyer", line_items=[(VIP_PRICE_ID, VIP_PRODUCT_ID, 1)]
    )
    return str(session["id"])


def coupon_sends(sandbox: Sandbox, email: str) -> int:
    return sum(1 for s in sandbox.mautic.sent(COUPON_EMAIL) if s["email_address"] == email)


@dataclass
class Cycles:
    """What the service's cycles did, as they end (thread-safe enough for lists)."""

    seen: list[tuple[float, RunResult, str]] = field(default_factory=list)
    _event: threading.Condition = field(default_factory=threading.Condition)

    def __call__(self, result: RunResult, outcome: str) -> None:
        with self._event:
            self.seen.append((time.monotonic(), result, outcome))
            self._event.notify_all()

    def __len__(self) -> int:
        return len(self.seen)

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._event:
            while len(self.seen) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"only {len(self.seen)} of {count} cycles within {timeout} s"
                self._event.wait(left)

    def after(self, moment: float) -> list[tuple[float, RunResult, str]]:
        return [c for c in self.seen if c[0] > moment]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sb:
        seed_demo(sb)
        yield sb


@pytest.fixture
def campaign(sandbox: Sandbox, tmp_path: Path) -> config_mod.Config:
    """The sandbox's config, with both webhook secrets in its .env."""
    config_path, env_path = sandbox.write_files(tmp_path / "campaign")
    with env_path.open("a", encoding="utf-8") as env:
        env.write(f"STRIPE_WEBHOOK_SECRET={STRIPE_SECRET}\nMAUTIC_WEBHOOK_SECRET={MAUTIC_SECRET}\n")
    return config_mod.load(config_path, env_path)


#: Short enough for tests: nothing waits for a 30 s interval.
FAST = LoopOptions(interval=30.0, min_gap=0.3, backoff_initial=0.05, busy_retry=0.1)


@pytest.fixture
def watching(campaign: config_mod.Config) -> Iterator[Callable[..., tuple[WatchService, Cycles]]]:
    """Start a watch service (listening on a free loopback port); stopped at teardown.

    The first cycles (the first run, then a settle run) have ended when it returns.
    """
    started: list[WatchService] = []

    def start(
        options: LoopOptions = FAST, *, settled: int = 2, **kwargs: Any
    ) -> tuple[WatchService, Cycles]:
        cycles = Cycles()
        kwargs.setdefault("listen", "127.0.0.1:0")
        service = WatchService(campaign, options=options, on_cycle=cycles, **kwargs)
        started.append(service.start())
        if settled:
            cycles.wait_for(1)
            if settled > 1:  # the run after the first settles what it changed: then idle
                service.wakeup.set("test")
                cycles.wait_for(settled)
        return service, cycles

    yield start
    for service in started:
        service.request_stop("test over")
        service.finish()


@dataclass
class Idle:
    """One service shared by the tests that must trigger nothing: it stays idle."""

    service: WatchService
    cycles: Cycles
    sandbox: Sandbox


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Idle]:
    """A settled campaign and its watch service, shared by a module's refusal tests.

    Nothing but a wake-up can start a cycle here (the interval is 30 s), so a
    test counts cycles and sandbox calls around what it sends. The secrets
    come from the campaign's .env alone, whatever the shell exports.
    """
    with Sandbox() as sandbox:
        seed_demo(sandbox)
        config_path, env_path = sandbox.write_files(tmp_path_factory.mktemp("idle") / "campaign")
        with env_path.open("a", encoding="utf-8") as env:
            env.write(
                f"STRIPE_WEBHOOK_SECRET={STRIPE_SECRET}\nMAUTIC_WEBHOOK_SECRET={MAUTIC_SECRET}\n"
            )
        config = config_mod.Config(
            settings=config_mod.read_settings(config_path),
            secrets=config_mod.read_secrets(env_path, environ={}),
            path=config_path,
        )
        cycles = Cycles()
        service = WatchService(config, options=FAST, listen="127.0.0.1:0", on_cycle=cycles)
        service.start()
        try:
            cycles.wait_for(1)
            yield Idle(service, cycles, sandbox)
        finally:
            service.request_stop("test over")
            service.finish()


@pytest.fixture
def quiet(idle: Idle) -> Iterator[Idle]:
    """The shared idle service, with the sandbox's log cleared; checks it stayed idle."""
    idle.sandbox.clear_logs()
    yield idle
