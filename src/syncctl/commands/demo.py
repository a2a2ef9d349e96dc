"""`syncctl demo`: a real reconcile against the bundled sandbox, as a story.

No credentials: the five emulated services start on loopback with a seeded
campaign. The story shows the dry-run plan, applies it, shows that a second
run has nothing to do, then the campaign's life after the first sale: a
refund (rule 17) and a hold (rule 18) that is released later, each with the
run that answers it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from syncctl import config as config_mod
from syncctl.commands import render
from syncctl.engine.reconcile import RunResult
from syncctl.engine.reconcile import reconcile as run
from syncctl.sandbox.seed import seed_demo
from syncctl.sandbox.stack import VIP_PRICE_ID, VIP_PRODUCT_ID, Sandbox
from syncctl.state.journal import HoldKind, Journal

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
    state = cfg.settings.run.state_path
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
