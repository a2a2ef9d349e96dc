"""Rule 24: bursts drain over runs with nobody stepping in; mistakes stop whole."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from syncctl import config as config_mod
from syncctl.engine.budget import alarms, cap
from syncctl.engine.model import Action, ActionKind, Plan
from syncctl.engine.reconcile import reconcile
from syncctl.sandbox.seed import seed_demo
from syncctl.sandbox.stack import Sandbox
from syncctl.sandbox.verify import violations


def action(key: str, kind: ActionKind = ActionKind.LEAD, *deps: str, **params) -> Action:
    return Action(kind, key, "a@example.com", "test", params=params, depends_on=deps)


def with_run(config: config_mod.Config, **changes) -> config_mod.Config:
    run = config.settings.run.model_copy(update=changes)
    return dataclasses.replace(config, settings=config.settings.model_copy(update={"run": run}))


def with_fields(config: config_mod.Config, **aliases: str) -> config_mod.Config:
    mautic = config.settings.mautic
    fields = mautic.fields.model_copy(update=aliases)
    mautic = mautic.model_copy(update={"fields": fields})
    return dataclasses.replace(
        config, settings=config.settings.model_copy(update={"mautic": mautic})
    )


def sign_ups(sandbox: Sandbox, n: int, start: int = 0) -> list[int]:
    return sandbox.mautic.add_contacts(
        {
            "email": f"backer{i:05d}@example.com",
            "firstname": "Backer",
            "lastname": f"No{i}",
            "opt_in_confirmed": True,
        }
        for i in range(start, start + n)
    )


# -- the cap (pure) -------------------------------------------------------------------


def test_cap_takes_the_first_actions_in_plan_order() -> None:
    plan = Plan(actions=tuple(action(f"lead:{i}") for i in range(5)))
    taken, deferred = cap(plan, 3)
    assert [a.key for a in taken.actions] == ["lead:0", "lead:1", "lead:2"]
    assert [a.key for a in deferred] == ["lead:3", "lead:4"]


def test_cap_never_takes_an_action_without_what_it_depends_on() -> None:
    plan = Plan(
        actions=(
            action("invite:1", ActionKind.INVITE),
            action("mail:1", ActionKind.MAIL, "invite:1"),
            action("invite:2", ActionKind.INVITE),
            action("mail:2", ActionKind.MAIL, "invite:2"),
        )
    )
    taken, deferred = cap(plan, 3)
    assert [a.key for a in taken.actions] == ["invite:1", "mail:1", "invite:2"]
    assert [a.key for a in deferred] == ["mail:2"]


def test_cap_keeps_the_notes() -> None:
    from syncctl.engine.model import Note

    plan = Plan(actions=(action("lead:0"),), notes=(Note("x", "y"),))
    assert cap(plan, 0)[0].notes == plan.notes


# -- the mistake guard (pure) ---------------------------------------------------------


def invite_mail(cid: int) -> Action:
    return action(
        f"mail:12:{cid}:new", ActionKind.MAIL, email_id=12, contact_id=cid, purpose="invite"
    )


def test_new_links_mailed_to_many_who_had_one_look_like_a_mistake(settings) -> None:
    plan = Plan(actions=tuple(invite_mail(cid) for cid in range(1, 41)))
    before = {(12, cid) for cid in range(1, 41)}
    found = alarms(plan, emailed=before, contacts=100, settings=settings.run)
    assert [a.count for a in found] == [40]
    assert "sent one before" in found[0].cause


def test_invite_emails_to_new_people_are_work_not_a_mistake(settings) -> None:
    plan = Plan(actions=tuple(invite_mail(cid) for cid in range(1, 2001)))
    assert alarms(plan, emailed=set(), contacts=2100, settings=settings.run) == []


def test_revoking_many_live_invites_looks_like_a_mistake(settings) -> None:
    revokes = tuple(
        action(f"revoke:c{i}", ActionKind.REVOKE, code=f"c{i}", orphan=True) for i in range(30)
    )
    found = alarms(Plan(actions=revokes), emailed=set(), contacts=100, settings=settings.run)
    assert [a.count for a in found] == [30]
    assert "revoke" in found[0].cause


def test_a_few_deliberate_reissues_pass_the_floor(settings) -> None:
    plan = Plan(actions=tuple(invite_mail(cid) for cid in range(1, 11)))
    before = {(12, cid) for cid in range(1, 11)}
    assert alarms(plan, emailed=before, contacts=12, settings=settings.run) == []


TYPO = "discord_invite_lnk_basic"


# -- end to end -----------------------------------------------------------------------


@pytest.fixture
def sandbox() -> Sandbox:
    """Discord's invite buckets opened wide: these tests count runs, not waits."""
    limits = {
        "discord": {
            "invite_bucket_limit": 100_000,
            "invite_bucket_window": 1.0,
            "route_bucket_limit": 100_000,
            "global_limit_per_second": 100_000,
        }
    }
    with Sandbox(emulator_options=limits) as sb:
        seed_demo(sb)
        yield sb


@pytest.mark.slow
def test_a_burst_of_2000_sign_ups_drains_in_12_runs_with_nobody_stepping_in(
    sandbox, config
) -> None:
    config = with_run(config, max_actions=500)
    reconcile(config)  # the campaign so far is in sync
    sign_ups(sandbox, 2000)
    runs = []
    while not runs or runs[-1].deferred:
        result = reconcile(config)
        assert not result.refused and result.ok, result.refusal
        assert len(result.outcomes) <= 500
        runs.append(result)
        assert len(runs) <= 12, [len(r.deferred) for r in runs]
    assert [len(r.deferred) for r in runs][:3] == [5500, 5000, 4500]
    assert violations(sandbox, config) == []
    assert reconcile(config).plan.is_empty


def test_purchases_go_first_when_a_run_is_capped(sandbox, config) -> None:
    reconcile(config)
    sign_ups(sandbox, 30)
    sandbox.stripe.add_session(
        "late.buyer@example.com",
        name="Late Buyer",
        line_items=[("price_sandboxVIPreservation", "prod_sandboxVIPreservation", 1)],
    )
    result = reconcile(with_run(config, max_actions=4))
    assert [str(o.action.kind) for o in result.outcomes] == [
        "create_coupon",
        "create_contact",
        "send_email",
        "issue_invite",
    ]
    assert len(result.deferred) == 30 * 3 - 1


def test_a_changed_link_alias_is_refused_with_nothing_applied(sandbox, config) -> None:
    sign_ups(sandbox, 40)
    reconcile(config)
    assert violations(sandbox, config) == []
    sandbox.clear_logs()
    # A typo in [mautic.fields]: every opted-in contact looks un-invited.
    result = reconcile(with_fields(config, invite_link_basic=TYPO), full=True)
    assert result.refused and result.exit_code(False) == 4
    assert "--allow-mass-change" in result.refusal
    assert sandbox.write_count() == 0


def test_a_changed_link_alias_is_refused_after_a_lost_state_dir_too(sandbox, config) -> None:
    sign_ups(sandbox, 40)
    reconcile(config)
    shutil.rmtree(config.settings.run.state_path)
    sandbox.clear_logs()
    result = reconcile(with_fields(config, invite_link_basic=TYPO), full=True)
    assert result.refused, [a.key for a in result.plan.actions][:5]
    assert sandbox.write_count() == 0


def test_allow_mass_change_applies_a_refused_plan(sandbox, config) -> None:
    sign_ups(sandbox, 40)
    reconcile(config)
    for cid in sandbox.mautic.contact_ids():
        sandbox.mautic.set_fields(cid, discord_invite_link_basic="")
    refused = reconcile(config, full=True)
    assert refused.refused
    allowed = reconcile(config, full=True, allow_mass_change=True)
    assert not allowed.refused and allowed.ok
    assert violations(sandbox, config) == []
