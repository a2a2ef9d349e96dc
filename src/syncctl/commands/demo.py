"""`syncctl demo`: a real reconcile against the bundled sandbox, as a story.

No credentials: the five emulated services start on loopback with a seeded
campaign. The story shows the dry-run plan, applies it, shows that a second
run has nothing to do, then the campaign's life after the first sale: a
refund (rule 17) and a hold (rule 18) that is released later, each with the
run that answers it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from syncctl import config as config_mod
from syncctl.commands import render
from syncctl.engine.reconcile import RunResult
from syncctl.engine.reconcile import reconcile as run
from syncctl.sandbox.seed import seed_demo
from syncctl.sandbox.stack import VIP_PRICE_ID, VIP_PRODUCT_ID, Sandbox
from syncctl.state.journal import HoldKind, Journal

if TYPE_CHECKING:
    from syncctl.service.watch import WatchService

#: The demo's refunded buyer and the one who asks to wait.
REFUNDED = "ada.lovelace@example.com"
HELD = "alan.turing@example.com"


def story(console: Console, latency: float = 0.0) -> int:
    """Tell the demo on `console`; the exit code (1 when a step went wrong)."""
    rich = render.use_rich(console)  # tables on a terminal, plain lines elsewhere

    def say(*lines: str) -> None:
        for line in lines:
            console.print(line, markup=False, highlight=False, soft_wrap=True)

    def heading(text: str) -> None:
        if rich:
            console.rule(text)
        else:
            say(f"== {text}")

    def show_applied(result: RunResult) -> None:
        if rich:
            console.print(render.outcome_table(result.outcomes))
        else:
            say(*render.plan_lines(result.plan), render.outcome_line(result.outcomes))
        say(*(f"note: {n.subject}: {n.message}" for n in result.plan.notes))
        say(render.calls_line(result))

    with (
        tempfile.TemporaryDirectory(prefix="syncctl-demo-") as tmp,
        Sandbox(latency=latency) as sandbox,
    ):
        seed_demo(sandbox)
        config_path, env_path = sandbox.write_files(Path(tmp))
        cfg = config_mod.load(config_path, env_path)
        heading("1. dry run: what syncctl would change")
        planned = run(cfg, dry_run=True)
        if rich:
            console.print(render.plan_table(planned.plan))
        else:
            say(*render.plan_lines(planned.plan))
        say(*(f"note: {note.subject}: {note.message}" for note in planned.plan.notes))
        say(render.calls_line(planned))
        heading("2. reconcile: applying it")
        applied = run(cfg)
        show_applied(applied)
        heading("3. reconcile again: nothing left to do")
        again = run(cfg)
        if rich:
            render.show_result(console, again)
        else:
            say(*(line for _, line in render.result_lines(again)))
        life = _life_after_the_sale(cfg, sandbox, heading, say, show_applied)
        say(
            f"sandbox now holds {len(sandbox.shopware.codes())} coupon code(s), "
            f"{len(sandbox.discord.invites())} live invite(s), "
            f"{len(sandbox.mautic.sent())} email(s) sent, {len(sandbox.espocrm.leads())} lead(s)"
        )
    failed = applied.failed or again.failed or not again.plan.is_empty or not life
    return 1 if failed else 0


def _life_after_the_sale(
    cfg: config_mod.Config,
    sandbox: Sandbox,
    heading: Callable[[str], None],
    say: Callable[..., None],
    show_applied: Callable[[RunResult], None],
) -> bool:
    """A refund and a hold, each answered by the next run; True when all went right."""
    state = cfg.state
    heading(f"4. a refund and a hold: {REFUNDED} is refunded; {HELD} asks to wait")
    refunded = next(
        s["id"]
        for s in sandbox.stripe.sessions
        if ((s.get("customer_details") or {}).get("email") or "").lower() == REFUNDED
        and s["payment_status"] == "paid"
    )
    sandbox.stripe.refund(refunded)
    say(f"stripe: payment of {refunded} refunded in full (the Dashboard's Refund button)")
    with Journal.open(state) as journal:
        journal.hold(HELD, HoldKind.EMAIL, reason="asked to wait before a second order", by="demo")
    say(f'syncctl hold {HELD} --reason "asked to wait before a second order"')
    sandbox.stripe.add_session(
        HELD, name="Alan Turing", line_items=[(VIP_PRICE_ID, VIP_PRODUCT_ID, 1)]
    )
    say(f"stripe: {HELD} buys a second VIP reservation")
    held = run(cfg)
    show_applied(held)
    heading(f"5. syncctl release {HELD}: the next run serves the purchase, once")
    with Journal.open(state) as journal:
        journal.release(HELD, by="demo")
    released = run(cfg)
    show_applied(released)
    quiet = run(cfg, full=True)
    say(f"a full audit afterwards plans {len(quiet.plan)} action(s)")
    served = any(o.action.subject == HELD for o in released.applied)
    untouched = not any(o.action.subject == HELD for o in held.applied)
    return held.ok and released.ok and served and untouched and quiet.plan.is_empty


#: How long the watch demo waits for an answer before calling it a failure.
ANSWER_TIMEOUT = 20.0
#: The watch demo's buyer and sign-up (not in the seeded campaign).
WATCH_BUYER = "barbara.liskov@example.com"
WATCH_SIGN_UP = "frances.allen@example.com"


def watch_story(console: Console, latency: float = 0.0) -> int:
    """`demo --watch`: `syncctl watch` answering a purchase and an opt-in in seconds.

    The sandbox posts signed webhooks, as Stripe and Mautic do, to a watch
    service on a free loopback port; a webhook only wakes it, and the cycle
    it starts reads the services as every run does. Exit 1 when an answer
    took longer than `ANSWER_TIMEOUT` or an email went out twice.
    """
    from syncctl.service.loop import LoopOptions
    from syncctl.service.watch import WatchService

    def say(*lines: str) -> None:
        for line in lines:
            console.print(line, markup=False, highlight=False, soft_wrap=True)

    with (
        tempfile.TemporaryDirectory(prefix="syncctl-demo-") as tmp,
        Sandbox(latency=latency) as sandbox,
    ):
        seed_demo(sandbox)
        config_path, env_path = sandbox.write_files(Path(tmp))
        cfg = config_mod.load(config_path, env_path)
        sends = _sends_to(sandbox)
        # A long interval: only the webhooks can explain a quick answer.
        options = LoopOptions(interval=300.0, audit_at=None)
        with WatchService(cfg, listen="127.0.0.1:0", options=options) as service:
            say(f"syncctl watch is listening on {service.url} (interval 300 s, webhooks on)")
            _settled(service)
            say("first cycles done: the seeded campaign is in sync")
            sandbox.send_webhooks(service.url or "", retry_delays=(0.2, 0.5, 1.0))
            vip = [(VIP_PRICE_ID, VIP_PRODUCT_ID, 1)]
            started = time.monotonic()
            sandbox.stripe.add_session(WATCH_BUYER, name="Barbara Liskov", line_items=vip)
            say(f"stripe: {WATCH_BUYER} completes a VIP checkout (Stripe posts the event)")
            bought = _answered(WATCH_BUYER, sends, started)
            say(_answer_line("coupon email", bought))
            started = time.monotonic()
            sandbox.mautic.add_contact(
                WATCH_SIGN_UP, firstname="Frances", lastname="Allen", opt_in_confirmed=True
            )
            say(f"mautic: {WATCH_SIGN_UP} confirms the opt-in (Mautic posts the contact)")
            signed = _answered(WATCH_SIGN_UP, sends, started)
            say(_answer_line("invite email", signed))
        once = all(sends(e) == 1 for e in (WATCH_BUYER, WATCH_SIGN_UP))
        say("each got exactly one email" if once else "an email went out twice: a defect")
    return 0 if bought is not None and signed is not None and once else 1


def _sends_to(sandbox: Sandbox) -> Callable[[str], int]:
    def sends(email: str) -> int:
        return sum(
            1
            for s in sandbox.mautic.sent()
            if not s["failed"] and (s["email_address"] or "").lower() == email
        )

    return sends


def _settled(service: WatchService) -> None:
    """Wait for the first run and the run after it (which settles what it changed)."""
    deadline = time.monotonic() + 60
    service.wakeup.set("demo")
    while service.loop.cycles < 2 and time.monotonic() < deadline:
        if not service.wakeup.pending and service.loop.cycles >= 1:
            service.wakeup.set("demo")
        time.sleep(0.05)


def _answered(email: str, sent: Callable[[str], int], started: float) -> float | None:
    """Seconds until `email` got its first email, or None after `ANSWER_TIMEOUT`."""
    while time.monotonic() - started < ANSWER_TIMEOUT:
        if sent(email):
            return time.monotonic() - started
        time.sleep(0.02)
    return None


def _answer_line(what: str, seconds: float | None) -> str:
    if seconds is None:
        return f"no {what} within {ANSWER_TIMEOUT:g} s: a defect"
    return f"syncctl: {what} sent {seconds:.1f} s later (the timer would take up to 15 min)"
