"""Rule 18: a held person or purchase gets nothing in any run until released."""

from __future__ import annotations

from syncctl.engine.reconcile import reconcile
from syncctl.sandbox.verify import violations
from syncctl.state.journal import HoldKind, Journal

GRACE = "grace.hopper@example.com"
ALAN = "alan.turing@example.com"


def hold(config, subject: str, kind: HoldKind, reason: str = "backer asked to wait") -> None:
    with Journal.open(config.settings.run.state_path) as journal:
        journal.hold(subject, kind, reason, by="operator")


def release(config, subject: str) -> None:
    with Journal.open(config.settings.run.state_path) as journal:
        journal.release(subject, by="operator")


def test_a_held_person_gets_nothing_and_the_plan_says_why(sandbox, config) -> None:
    hold(config, GRACE.upper(), HoldKind.EMAIL)
    result = reconcile(config)
    assert not [a for a in result.plan.actions if a.subject == GRACE]
    assert any(
        n.subject == GRACE and "backer asked to wait" in n.message for n in result.plan.notes
    )
    assert not sandbox.mautic.sent(contact_id=sandbox.mautic.find(GRACE)[0])
    assert result.ok


def test_the_run_after_a_release_does_what_was_held(sandbox, config) -> None:
    hold(config, GRACE, HoldKind.EMAIL)
    reconcile(config)
    reconcile(config)  # still held, nothing changed in Mautic
    release(config, GRACE)
    after = reconcile(config)  # incremental: Grace is found although nothing changed
    assert after.mode == "incremental"
    assert [a for a in after.plan.actions if a.subject == GRACE]
    assert violations(sandbox, config) == []


def test_a_held_purchase_waits_while_the_buyers_other_work_goes_on(sandbox, config) -> None:
    alan = next(
        s
        for s in sandbox.stripe.sessions
        if (s["customer_details"] or {}).get("email", "").lower() == ALAN
    )
    hold(config, alan["id"], HoldKind.SESSION, "payment under review")
    result = reconcile(config)
    assert not [a for a in result.plan.actions if a.params.get("session_id") == alan["id"]]
    assert not sandbox.mautic.find(ALAN)
    assert [a for a in result.plan.actions if a.subject == GRACE]  # the others go on
    release(config, alan["id"])
    reconcile(config)
    assert violations(sandbox, config) == []


def test_the_mautic_hold_tag_holds_and_removing_it_releases(sandbox, config) -> None:
    grace = sandbox.mautic.find(GRACE)[0]
    sandbox.mautic.add_tag(grace, "syncctl-hold")
    held = reconcile(config)
    assert not [a for a in held.plan.actions if a.subject == GRACE]
    assert any("Mautic tag 'syncctl-hold'" in n.message for n in held.plan.notes)
    sandbox.mautic.remove_tag(grace, "syncctl-hold")
    reconcile(config)
    assert violations(sandbox, config) == []


def test_a_hold_set_while_a_run_applies_stops_that_persons_actions(sandbox, config) -> None:
    def hold_grace_once_applying(outcome) -> None:
        hold(config, GRACE, HoldKind.EMAIL, "set mid-run")

    result = reconcile(config, on_outcome=hold_grace_once_applying)
    graces = [o for o in result.outcomes if o.action.subject == GRACE]
    assert graces and all(
        "held since the run began" in o.message for o in graces if str(o.status) == "skipped"
    )
    assert not sandbox.mautic.sent(contact_id=sandbox.mautic.find(GRACE)[0])
