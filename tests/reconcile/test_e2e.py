"""End to end against the sandbox: converge, then stay quiet."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from syncctl.engine.model import ActionKind
from syncctl.engine.reconcile import reconcile
from syncctl.errors import LockBusy
from syncctl.sandbox.stack import BASIC_CHANNEL_ID
from syncctl.sandbox.verify import violations
from syncctl.state.lock import state_lock

ADA = "ada.lovelace@example.com"


def test_first_run_converges_every_rule(sandbox, config) -> None:
    assert violations(sandbox, config)  # the seeded campaign needs work
    result = reconcile(config)
    assert result.ok, [o.message for o in result.failed]
    assert violations(sandbox, config) == []


def test_second_run_plans_nothing_and_writes_nothing(sandbox, config) -> None:
    reconcile(config)
    sandbox.clear_logs()
    second = reconcile(config)
    assert second.plan.is_empty
    assert sandbox.write_count() == 0
    assert second.stats.total_writes == 0


def test_steady_state_run_costs_at_most_five_calls(sandbox, config) -> None:
    reconcile(config)
    reconcile(config)
    sandbox.clear_logs()
    third = reconcile(config)
    assert third.stats.total_calls <= 5, third.stats.routes
    assert sandbox.call_count() == third.stats.total_calls


def test_an_idle_run_costs_three_calls_and_no_write(sandbox, config) -> None:
    reconcile(config)
    reconcile(config)
    sandbox.clear_logs()
    idle = reconcile(config)
    # Stripe's events; Mautic's changed contacts (one query for edited and new
    # ones); the Do-Not-Contact entries since the last one seen.
    assert idle.stats.total_calls == 3, idle.stats.routes
    assert idle.stats.total_writes == 0


def test_dry_run_writes_nothing_and_changes_no_state(sandbox, config) -> None:
    state = config.settings.run.state_path
    dry = reconcile(config, dry_run=True)
    assert not dry.plan.is_empty
    assert sandbox.write_count() == 0
    assert not (state / "state.db").exists()
    real = reconcile(config)
    assert [a.key for a in real.plan.actions] == [a.key for a in dry.plan.actions]


def test_dry_run_after_a_real_run_shows_nothing(sandbox, config) -> None:
    reconcile(config)
    assert reconcile(config, dry_run=True).plan.is_empty


def test_full_audit_after_convergence_plans_nothing(sandbox, config) -> None:
    reconcile(config)
    sandbox.clear_logs()
    audit = reconcile(config, full=True)
    assert audit.plan.is_empty
    assert sandbox.write_count() == 0


def test_lost_state_then_full_repeats_nothing(sandbox, config) -> None:
    import shutil

    reconcile(config)
    shutil.rmtree(config.settings.run.state_path)
    sandbox.clear_logs()
    again = reconcile(config, full=True)
    assert again.plan.is_empty, [a.key for a in again.plan.actions]
    assert sandbox.write_count() == 0
    assert violations(sandbox, config) == []


def test_new_purchase_is_picked_up_incrementally(sandbox, config) -> None:
    from syncctl.sandbox.stack import VIP_PRICE_ID, VIP_PRODUCT_ID

    reconcile(config)
    sandbox.stripe.add_session(
        "grace.hopper@example.com",
        name="Grace Hopper",
        line_items=[(VIP_PRICE_ID, VIP_PRODUCT_ID, 1)],
    )
    result = reconcile(config)
    assert result.mode == "incremental"
    assert {str(a.kind) for a in result.plan.actions} >= {
        "create_coupon",
        "revoke_invite",
        "issue_invite",
    }
    assert violations(sandbox, config) == []


def test_buyer_whose_name_mautic_cannot_store_still_gets_contact_and_coupon(
    sandbox, config
) -> None:
    from syncctl.sandbox.stack import VIP_PRICE_ID, VIP_PRODUCT_ID

    # Stripe's name "Buyer 0": Mautic silently drops a last name of "0".
    sandbox.stripe.add_session(
        "buyer0@example.com", name="Buyer 0", line_items=[(VIP_PRICE_ID, VIP_PRODUCT_ID, 1)]
    )
    result = reconcile(config)
    assert result.ok, [o.message for o in result.failed]
    created = sandbox.mautic.contact(sandbox.mautic.find("buyer0@example.com")[0])
    assert created["firstname"] == "Buyer" and not created["lastname"]
    assert violations(sandbox, config) == []


def test_operator_clearing_a_link_gets_a_new_one_and_the_old_revoked(sandbox, config) -> None:
    reconcile(config)
    contact = sandbox.mautic.find("grace.hopper@example.com")[0]
    old = sandbox.mautic.contact(contact)["discord_invite_link_basic"]
    sandbox.mautic.set_fields(contact, discord_invite_link_basic=None)
    reconcile(config)
    new = sandbox.mautic.contact(contact)["discord_invite_link_basic"]
    assert new and new != old
    assert old.rsplit("/", 1)[1] not in {i["code"] for i in sandbox.discord.invites()}
    assert violations(sandbox, config) == []


def mary_holding_an_n8n_invite(sandbox) -> tuple[int, str]:
    """An opted-in contact holding a live invite the bot minted under the old workflow."""
    legacy = sandbox.discord.seed_invite(BASIC_CHANNEL_ID)
    cid = sandbox.mautic.add_contact(
        "mary.jackson@example.com",
        firstname="Mary",
        lastname="Jackson",
        opt_in_confirmed=True,
        discord_invite_link_basic=f"https://discord.gg/{legacy}",
    )
    return cid, legacy


def test_clearing_a_link_the_old_workflow_minted_revokes_it_in_the_incremental_run(
    sandbox, config
) -> None:
    cid, legacy = mary_holding_an_n8n_invite(sandbox)
    reconcile(config)  # the first run is a full one: it writes Mary's stored invite down
    sandbox.mautic.set_fields(cid, discord_invite_link_basic=None)

    result = reconcile(config)

    assert result.mode == "incremental"
    revokes = [o for o in result.outcomes if o.action.kind is ActionKind.REVOKE]
    assert [o.action.params["code"] for o in revokes] == [legacy]
    assert legacy not in {i["code"] for i in sandbox.discord.invites()}
    assert not reconcile(config, full=True).plan.actions  # nothing left for the audit
    assert violations(sandbox, config) == []


def test_a_full_run_writes_down_a_changed_stored_invite(sandbox, config) -> None:
    cid, _first = mary_holding_an_n8n_invite(sandbox)
    reconcile(config)  # writes her first invite down
    second = sandbox.discord.seed_invite(BASIC_CHANNEL_ID)  # stored by the old workflow again
    sandbox.mautic.set_fields(cid, discord_invite_link_basic=f"https://discord.gg/{second}")
    reconcile(config, full=True)
    sandbox.mautic.set_fields(cid, discord_invite_link_basic=None)

    result = reconcile(config)

    revoked = [
        o.action.params["code"] for o in result.outcomes if o.action.kind is ActionKind.REVOKE
    ]
    assert second in revoked
    assert second not in {i["code"] for i in sandbox.discord.invites()}


def test_failing_purchase_leaves_others_done_and_is_retried(sandbox, config) -> None:
    sandbox.shopware.inject(
        method="POST", path="^/api/promotion-individual-code$", status=500, times=None, skip=2
    )
    first = reconcile(config)
    failed = [o for o in first.outcomes if str(o.status) == "failed"]
    assert [o.action.kind.value for o in failed] == ["create_coupon"]
    skipped = {o.key for o in first.outcomes if str(o.status) == "skipped"}
    assert skipped  # that purchase's contact update and email waited
    assert first.exit_code(False) == 1
    sandbox.shopware.clear_faults()
    second = reconcile(config)
    assert second.ok
    assert violations(sandbox, config) == []


def test_second_run_exits_at_once_while_the_lock_is_held(config) -> None:
    with state_lock(config.settings.run.state_path), pytest.raises(LockBusy, match="--wait"):
        reconcile(config)


def test_overlapping_runs_apply_everything_exactly_once(sandbox, config) -> None:
    results = []
    errors = []

    def run() -> None:
        try:
            results.append(reconcile(config, wait=True))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert sorted(len(r.plan) > 0 for r in results) == [False, True]
    assert violations(sandbox, config) == []


def test_max_actions_caps_each_run_and_the_next_runs_finish_the_rest(sandbox, config) -> None:
    runs = []
    while not runs or runs[-1].plan.actions:
        result = reconcile(config, max_actions=3)
        assert len(result.outcomes) <= 3 and result.exit_code(False) == 0
        runs.append(result)
        assert len(runs) < 20
    assert len(runs) > 2  # it did take several runs
    assert violations(sandbox, config) == []


def test_full_audit_recreates_a_lead_deleted_in_espo(sandbox, config) -> None:
    reconcile(config)
    lead = sandbox.espocrm.find("grace.hopper@example.com")[0]
    sandbox.espocrm.remove_lead(lead["id"])
    assert reconcile(config).plan.is_empty  # incremental runs trust the journal
    audit = reconcile(config, full=True)
    assert [a.key for a in audit.plan.actions] == ["lead:grace.hopper@example.com"]
    assert violations(sandbox, config) == []


def test_incremental_run_after_a_lost_state_audit_stays_cheap(sandbox, config) -> None:
    import shutil

    reconcile(config)
    shutil.rmtree(config.settings.run.state_path)
    reconcile(config, full=True)
    sandbox.clear_logs()
    after = reconcile(config)
    assert after.plan.is_empty
    assert after.stats.total_calls <= 5, after.stats.routes


def test_pending_contact_deleted_in_mautic_is_dropped(sandbox, config) -> None:
    from syncctl.state.journal import Journal

    sandbox.espocrm.set_lead_acl(create=False)
    reconcile(config)  # lead creations fail: those contacts stay pending
    with Journal.open(config.settings.run.state_path, readonly=True) as journal:
        pending = journal.pending("contact")
    assert pending
    for item in pending:
        sandbox.mautic.delete_contact(int(item.ref))
    sandbox.espocrm.set_lead_acl(create=True)
    reconcile(config)
    with Journal.open(config.settings.run.state_path, readonly=True) as journal:
        assert journal.pending("contact") == []


def test_purchase_handled_by_the_old_workflow_keeps_its_code(sandbox, config) -> None:
    """Migration from n8n: its random code stands for the purchase; nothing is re-sent."""
    from syncctl.sandbox.stack import COUPON_EMAIL, VIP_PROMOTION_ID

    cid = sandbox.mautic.find("ada.lovelace@example.com")[0]
    sandbox.shopware.add_code(VIP_PROMOTION_ID, "N8N-LEGACY-0001")
    sandbox.mautic.set_fields(cid, vip_status=True, promo_code="N8N-LEGACY-0001")
    sandbox.mautic.record_send(COUPON_EMAIL, cid, {"{promo_code}": "N8N-LEGACY-0001"})
    result = reconcile(config)
    ada = [a for a in result.plan.actions if a.subject == "ada.lovelace@example.com"]
    assert not [a for a in ada if str(a.kind) in ("create_coupon", "update_contact")]
    assert not [a for a in ada if a.params.get("purpose") == "coupon"]
    assert sandbox.mautic.contact(cid)["promo_code"] == "N8N-LEGACY-0001"
    sandbox.clear_logs()
    assert reconcile(config).plan.is_empty
    assert reconcile(config, full=True).plan.is_empty


def test_delayed_payment_succeeding_later_becomes_a_purchase(sandbox, config) -> None:
    reconcile(config)
    pending = next(s for s in sandbox.stripe.sessions if s["payment_status"] == "unpaid")
    sandbox.stripe.mark_paid(pending["id"])
    result = reconcile(config)
    assert result.mode == "incremental"
    assert f"coupon:{pending['id']}" in {a.key for a in result.plan.actions}
    assert violations(sandbox, config) == []


def test_links_a_misconfigured_run_revoked_are_replaced_once_the_config_is_fixed(
    sandbox, config
) -> None:
    # Issue 11.5.2: two fields shared one alias (config load refuses that now);
    # the runs made then revoked links that contacts still held.
    reconcile(config)
    mautic = config.settings.mautic
    shared = mautic.fields.model_copy(update={"invite_link_basic": "discord_invite_link_vip"})
    broken = dataclasses.replace(
        config,
        settings=config.settings.model_copy(
            update={"mautic": mautic.model_copy(update={"fields": shared})}
        ),
    )
    for _ in range(3):
        reconcile(broken)
    reconcile(config)
    reconcile(config, full=True)
    assert violations(sandbox, config) == []
    assert reconcile(config, full=True).plan.is_empty


def test_the_codes_syncctl_creates_are_accepted_at_checkout(sandbox, config) -> None:
    reconcile(config)
    for row in sandbox.shopware.codes(config.settings.shopware.vip_promotion_id):
        redeemed = sandbox.shopware.redeem_code(row["code"], via_cart=True)
        assert redeemed["payload"]["orderId"]


def test_codes_an_earlier_syncctl_created_with_a_payload_are_made_usable(sandbox, config) -> None:
    from syncctl.engine.codes import coupon_code

    promotion = config.settings.shopware.vip_promotion_id
    secret = config.secret("SYNCCTL_CODE_SECRET")
    ada = next(
        s for s in sandbox.stripe.sessions if (s["customer_details"] or {}).get("email") == ADA
    )
    code = coupon_code(ada["id"], secret, config.settings.shopware.code_prefix)
    # What syncctl up to the previous release wrote: the checkout refuses it.
    sandbox.shopware.add_code(promotion, code, payload={"stripe_session": ada["id"]})
    first = reconcile(config)
    assert f"unblock:{code}" in {a.key for a in first.plan.actions}
    assert sandbox.shopware.redeem_code(code, via_cart=True)["payload"]["orderId"]
    assert reconcile(config, full=True).plan.is_empty
