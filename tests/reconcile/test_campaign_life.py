"""The campaign's life after the first sale: what people did on purpose stays done.

Rules 16 (fulfilment sticks to the purchase), 21 (one person, one invite) and
22 (email change), end to end against the sandbox: no second email, code,
contact or lead, whatever happened to the contact since.
"""

from __future__ import annotations

import shutil

from syncctl.engine.reconcile import reconcile
from syncctl.sandbox.stack import COUPON_EMAIL, GUILD_ID, VIP_PRICE_ID, VIP_PRODUCT_ID, Sandbox
from syncctl.sandbox.verify import violations

VIP = [(VIP_PRICE_ID, VIP_PRODUCT_ID, 1)]
ADA = "ada.lovelace@example.com"
ALAN = "alan.turing@example.com"
GRACE = "grace.hopper@example.com"
MILES = "miles.o'brien@example.com"


def coupon_sends(sandbox: Sandbox) -> list[str]:
    """Every coupon code mailed so far, once per send (deleted contacts' too)."""
    return sorted(
        s["tokens"]["{promo_code}"]
        for s in sandbox.mautic.sent(email_id=COUPON_EMAIL)
        if not s["failed"]
    )


def notes(result) -> list[str]:
    return [f"{n.subject}: {n.message}" for n in result.plan.notes]


# -- rule 16: fulfilment sticks to the purchase ----------------------------------------


def test_an_erased_buyer_is_not_recreated_nor_mailed_again(sandbox, config) -> None:
    reconcile(config)
    mailed = coupon_sends(sandbox)
    sandbox.mautic.delete_contact(sandbox.mautic.find(ALAN)[0])  # an erasure request
    incremental = reconcile(config)
    audit = reconcile(config, full=True)
    assert not sandbox.mautic.find(ALAN)
    assert coupon_sends(sandbox) == mailed
    assert not [a for a in audit.plan.actions if a.subject == ALAN]
    assert any(ALAN in n and "fulfilled" in n for n in notes(audit))
    assert incremental.ok and audit.ok


def test_after_a_lost_state_dir_an_erased_buyers_code_is_reported_not_recreated(
    sandbox, config
) -> None:
    reconcile(config)
    mailed = coupon_sends(sandbox)
    sandbox.mautic.delete_contact(sandbox.mautic.find(ALAN)[0])
    shutil.rmtree(config.settings.run.state_path)
    audit = reconcile(config, full=True)
    again = reconcile(config, full=True)
    assert not sandbox.mautic.find(ALAN)
    assert coupon_sends(sandbox) == mailed
    assert any(ALAN in n and "reported, not recreated" in n for n in notes(audit))
    assert not [a for a in again.plan.actions if a.subject == ALAN]


def test_a_vip_flag_switched_off_by_hand_is_not_switched_on_again(sandbox, config) -> None:
    reconcile(config)
    ada = sandbox.mautic.find(ADA)[0]
    sandbox.mautic.set_fields(ada, vip_status=False)  # the operator's decision
    reconcile(config)
    reconcile(config, full=True)
    reconcile(config, full=True)
    assert sandbox.mautic.contact(ada)["vip_status"] in (False, 0, None, "0", "")
    invite_mails = [
        s["email_id"] for s in sandbox.mautic.sent(contact_id=ada) if s["email_id"] in (11, 12)
    ]
    assert invite_mails == [11, 12]  # VIP first, Basic once it was switched off: no flip back


def test_a_new_purchase_after_an_erasure_is_fulfilled_as_a_new_decision(sandbox, config) -> None:
    reconcile(config)
    sandbox.mautic.delete_contact(sandbox.mautic.find(ALAN)[0])
    reconcile(config)
    sandbox.stripe.add_session(ALAN, name="Alan Turing", line_items=VIP)
    reconcile(config)
    assert sandbox.mautic.find(ALAN)  # the buyer came back and bought again
    assert len(coupon_sends(sandbox)) == len(set(coupon_sends(sandbox)))


# -- rule 21: one person, one invite ---------------------------------------------------


def test_two_contacts_with_one_email_get_one_invite_one_email_and_one_lead(sandbox, config) -> None:
    second = sandbox.mautic.add_contact(
        GRACE.upper(), firstname="Grace", lastname="Hopper", opt_in_confirmed=True
    )
    result = reconcile(config)
    first = sandbox.mautic.find(GRACE)[0]
    assert first != second
    invites = [a for a in result.plan.actions if a.key.startswith("invite:") and a.subject == GRACE]
    assert [a.params["contact_id"] for a in invites] == [first]
    assert any("share this email" in n and "merge" in n for n in notes(result))
    sent = [s for s in sandbox.mautic.sent() if s["contact_id"] in (first, second)]
    assert len(sent) == 1
    assert violations(sandbox, config) == []
    assert reconcile(config, full=True).plan.is_empty


def test_a_vip_and_a_basic_contact_of_one_person_get_one_vip_invite(sandbox, config) -> None:
    # Katherine bought VIP (her oldest contact); she signed up again later.
    sandbox.mautic.add_contact(
        "Katherine.Johnson@example.com",
        firstname="Katherine",
        lastname="Johnson",
        opt_in_confirmed=True,
    )
    reconcile(config)
    ids = sandbox.mautic.find("katherine.johnson@example.com")
    invite_ids = [
        s["email_id"]
        for s in sandbox.mautic.sent()
        if s["contact_id"] in ids and s["email_id"] != 13
    ]
    assert invite_ids == [11]  # one VIP invite, no Basic one
    assert violations(sandbox, config) == []


# -- rule 22: email change ------------------------------------------------------------


def test_a_changed_email_moves_the_lead_syncctl_made_instead_of_a_second(sandbox, config) -> None:
    reconcile(config)  # syncctl created Miles's lead
    miles = sandbox.mautic.find(MILES)[0]
    new = "miles.obrien@example.com"
    sandbox.mautic.set_fields(miles, email=new)
    before = sandbox.espocrm.lead_count()
    result = reconcile(config)
    moves = [a for a in result.plan.actions if str(a.kind) == "move_lead"]
    assert [a.params["email"] for a in moves] == [new]
    assert sandbox.espocrm.lead_count() == before
    assert sandbox.espocrm.find(new) and not sandbox.espocrm.find(MILES)
    assert reconcile(config, full=True).plan.is_empty


def test_a_buyer_who_changed_email_is_not_recreated_under_the_old_address(sandbox, config) -> None:
    reconcile(config)
    ada = sandbox.mautic.find(ADA)[0]
    sandbox.mautic.set_fields(ada, email="ada.king@example.com")
    mailed = coupon_sends(sandbox)
    reconcile(config)
    audit = reconcile(config, full=True)
    assert not sandbox.mautic.find(ADA)  # no contact recreated under the purchase's address
    assert coupon_sends(sandbox) == mailed
    assert not [a for a in audit.plan.actions if a.subject == ADA]


# -- rules 19 and 20: Do-Not-Contact and opt-out ---------------------------------------


def link_code(sandbox: Sandbox, cid: int, tier: str = "basic") -> str:
    return sandbox.mautic.contact(cid)[f"discord_invite_link_{tier}"].rsplit("/", 1)[-1]


def test_a_contact_on_the_dnc_list_gets_no_email_and_the_plan_says_so(sandbox, config) -> None:
    grace = sandbox.mautic.find(GRACE)[0]
    sandbox.mautic.add_dnc(grace, reason=1)  # unsubscribed
    result = reconcile(config)
    assert not sandbox.mautic.sent(contact_id=grace)
    assert any(GRACE in n and "Do-Not-Contact" in n for n in notes(result))


def test_a_buyer_on_the_dnc_list_gets_the_code_and_flag_but_no_email(sandbox, config) -> None:
    ada = sandbox.mautic.find(ADA)[0]
    sandbox.mautic.add_dnc(ada, reason=2)  # bounced
    reconcile(config)
    contact = sandbox.mautic.contact(ada)
    assert contact["vip_status"] in (True, 1, "1") and contact["promo_code"]
    assert not sandbox.mautic.sent(contact_id=ada)


def test_a_withdrawn_opt_in_revokes_the_unused_invite_and_clears_it(sandbox, config) -> None:
    reconcile(config)
    grace = sandbox.mautic.find(GRACE)[0]
    code = link_code(sandbox, grace)
    sandbox.mautic.set_fields(grace, opt_in_confirmed=False)
    reconcile(config)
    assert code not in {i["code"] for i in sandbox.discord.invites()}
    assert not sandbox.mautic.contact(grace)["discord_invite_link_basic"]
    assert reconcile(config, full=True).plan.is_empty


def test_a_used_invite_stays_when_the_opt_in_is_withdrawn(sandbox, config) -> None:
    reconcile(config)
    grace = sandbox.mautic.find(GRACE)[0]
    code = link_code(sandbox, grace)
    sandbox.discord.use_invite(code, user_id="555555555555555555")  # she joined
    sandbox.mautic.set_fields(grace, opt_in_confirmed=False)
    result = reconcile(config)
    assert not [a for a in result.plan.actions if a.subject == GRACE]
    assert sandbox.mautic.contact(grace)["discord_invite_link_basic"].endswith(code)


def test_landing_on_the_dnc_list_is_seen_by_the_next_incremental_run(sandbox, config) -> None:
    reconcile(config)
    grace = sandbox.mautic.find(GRACE)[0]
    code = link_code(sandbox, grace)
    sandbox.mautic.add_dnc(grace, reason=1)  # moves no dateModified on current Mautic
    result = reconcile(config)
    assert result.mode == "incremental"
    assert f"revoke:{code}" in {a.key for a in result.plan.actions}
    assert not sandbox.mautic.contact(grace)["discord_invite_link_basic"]


# -- rule 23: a code that cannot be redeemed is not sent -------------------------------


def test_purchases_wait_while_the_promotion_is_inactive_then_go_out(sandbox, config) -> None:
    promotion = config.settings.shopware.vip_promotion_id
    sandbox.shopware.update_promotion(promotion, active=False)
    blocked = reconcile(config)
    assert not sandbox.shopware.codes(promotion)
    assert not sandbox.mautic.sent(email_id=COUPON_EMAIL)
    assert not blocked.ok and blocked.exit_code(False) == 1
    assert any("not active" in n and "purchase(s) wait" in n for n in notes(blocked))
    assert [a for a in blocked.plan.actions if a.subject == GRACE]  # everyone else goes on
    sandbox.shopware.update_promotion(promotion, active=True)
    fixed = reconcile(config)  # incremental: the waiting purchases were kept pending
    assert fixed.ok
    assert violations(sandbox, config) == []


def test_a_promotion_past_its_end_date_stops_new_codes(sandbox, config) -> None:
    from datetime import UTC, datetime, timedelta

    promotion = config.settings.shopware.vip_promotion_id
    sandbox.shopware.update_promotion(promotion, valid_until=datetime.now(UTC) - timedelta(days=1))
    result = reconcile(config)
    assert not sandbox.shopware.codes(promotion)
    assert result.plan.blocked


# -- Discord roles ---------------------------------------------------------------------


def test_invites_grant_the_configured_roles_of_their_tier(sandbox, config) -> None:
    import dataclasses

    vip_role, basic_role = "100000000000000101", "100000000000000102"
    discord = config.settings.discord.model_copy(
        update={"vip_role_ids": [vip_role], "basic_role_ids": [basic_role]}
    )
    roles = dataclasses.replace(
        config, settings=config.settings.model_copy(update={"discord": discord})
    )
    reconcile(roles)
    grace = sandbox.mautic.find(GRACE)[0]
    code = link_code(sandbox, grace)
    sandbox.discord.use_invite(code, user_id="555555555555555555")
    assert basic_role in sandbox.discord.member_roles(GUILD_ID, "555555555555555555")


# -- rule 17: refunds and disputes -----------------------------------------------------


def buyer_session(sandbox: Sandbox, email: str) -> str:
    """The buyer's one paid VIP session."""
    return next(
        s["id"]
        for s in sandbox.stripe.sessions
        if (s.get("customer_details") or {}).get("email", "").lower() == email
        and s["payment_status"] == "paid"
    )


def promo_code_of(sandbox: Sandbox, config, email: str) -> str:
    contact = sandbox.mautic.contact(sandbox.mautic.find(email)[0])
    return contact[config.settings.mautic.fields.promo_code] or ""


def vip_flag(sandbox: Sandbox, config, email: str) -> bool:
    contact = sandbox.mautic.contact(sandbox.mautic.find(email)[0])
    return contact[config.settings.mautic.fields.vip_status] in (True, 1, "1")


def test_a_refunded_vip_purchase_loses_its_code_flag_and_vip_invite_without_an_email(
    sandbox, config
) -> None:
    reconcile(config)
    session = buyer_session(sandbox, ADA)
    ada = sandbox.mautic.find(ADA)[0]
    code = promo_code_of(sandbox, config, ADA)
    mails_before = len(sandbox.mautic.sent(contact_id=ada))
    sandbox.stripe.refund(session)
    result = reconcile(config)  # incremental: the charge.refunded event
    promotion = config.settings.shopware.vip_promotion_id
    assert code not in {row["code"] for row in sandbox.shopware.codes(promotion)}
    assert not vip_flag(sandbox, config, ADA)
    assert promo_code_of(sandbox, config, ADA) == ""
    fields = config.settings.mautic.fields
    assert not sandbox.mautic.contact(ada)[fields.invite_link_vip]
    sent = [s["email_id"] for s in sandbox.mautic.sent(contact_id=ada)][mails_before:]
    assert COUPON_EMAIL not in sent and 11 not in sent  # no refund email, no VIP invite
    assert result.ok
    assert violations(sandbox, config) == []


def test_the_nightly_audit_does_not_undo_a_refund(sandbox, config) -> None:
    reconcile(config)
    sandbox.stripe.refund(buyer_session(sandbox, ADA))
    reconcile(config)
    ada = sandbox.mautic.find(ADA)[0]
    mails = len(sandbox.mautic.sent(contact_id=ada))
    audit = reconcile(config, full=True)
    again = reconcile(config, full=True)
    assert not vip_flag(sandbox, config, ADA)
    assert len(sandbox.mautic.sent(contact_id=ada)) == mails
    assert not [a for a in audit.plan.actions if a.subject == ADA]
    assert again.plan.is_empty


def test_a_refund_seen_first_by_the_audit_is_applied_once(sandbox, config) -> None:
    reconcile(config)
    sandbox.stripe.refund(buyer_session(sandbox, ADA))
    audit = reconcile(config, full=True)  # reads the charges, not the events
    assert any(a.key.startswith("uncoupon:") for a in audit.plan.actions)
    assert not vip_flag(sandbox, config, ADA)
    assert reconcile(config).plan.is_empty
    assert reconcile(config, full=True).plan.is_empty
    assert violations(sandbox, config) == []


def test_a_refund_before_fulfilment_mints_and_mails_nothing(sandbox, config) -> None:
    from syncctl.engine.codes import coupon_code

    reconcile(config)
    session = sandbox.stripe.add_session(ALAN, name="Alan Turing", line_items=VIP)["id"]
    sandbox.stripe.refund(session)
    reconcile(config)
    code = coupon_code(
        session, config.secret("SYNCCTL_CODE_SECRET"), config.settings.shopware.code_prefix
    )
    promotion = config.settings.shopware.vip_promotion_id
    assert code not in {row["code"] for row in sandbox.shopware.codes(promotion)}
    assert code not in coupon_sends(sandbox)
    assert violations(sandbox, config) == []


def test_a_redeemed_code_stays_after_a_refund_and_the_plan_says_so(sandbox, config) -> None:
    reconcile(config)
    session = buyer_session(sandbox, ADA)
    code = promo_code_of(sandbox, config, ADA)
    sandbox.shopware.redeem_code(code)
    sandbox.stripe.refund(session)
    result = reconcile(config)
    promotion = config.settings.shopware.vip_promotion_id
    assert code in {row["code"] for row in sandbox.shopware.codes(promotion)}
    assert any("redeemed" in n and "stays" in n for n in notes(result))
    assert violations(sandbox, config) == []


def test_a_partial_refund_changes_nothing(sandbox, config) -> None:
    reconcile(config)
    sandbox.stripe.refund(buyer_session(sandbox, ADA), amount=100)
    assert reconcile(config).plan.is_empty
    assert vip_flag(sandbox, config, ADA)


def test_a_disputed_purchase_is_withdrawn_and_a_won_dispute_counts_again(sandbox, config) -> None:
    reconcile(config)
    dispute = sandbox.stripe.dispute(buyer_session(sandbox, ADA))
    reconcile(config)
    assert not vip_flag(sandbox, config, ADA)
    sandbox.stripe.close_dispute(dispute["id"], "won")
    reconcile(config)
    assert vip_flag(sandbox, config, ADA)
    assert violations(sandbox, config) == []
    assert reconcile(config, full=True).plan.is_empty


def test_a_buyer_with_another_vip_purchase_stays_vip_with_that_code(sandbox, config) -> None:
    reconcile(config)
    first = buyer_session(sandbox, ADA)
    sandbox.stripe.add_session(ADA, name="Ada Lovelace", line_items=VIP)
    reconcile(config)
    second_code = promo_code_of(sandbox, config, ADA)
    sandbox.stripe.refund(first)
    reconcile(config)
    assert vip_flag(sandbox, config, ADA)
    assert promo_code_of(sandbox, config, ADA) == second_code
    assert violations(sandbox, config) == []


def test_on_refund_keep_leaves_everything_and_notes_it(sandbox, config) -> None:
    import dataclasses

    stripe = config.settings.stripe.model_copy(update={"on_refund": "keep"})
    keep = dataclasses.replace(
        config, settings=config.settings.model_copy(update={"stripe": stripe})
    )
    reconcile(keep)
    sandbox.stripe.refund(buyer_session(sandbox, ADA))
    result = reconcile(keep)
    assert result.plan.is_empty
    assert any("refunded" in n and "keep" in n for n in notes(result))
    assert vip_flag(sandbox, config, ADA)


def test_a_held_buyer_is_left_alone_after_a_refund_until_released(sandbox, config) -> None:
    from syncctl.state.journal import Journal

    reconcile(config)
    with Journal.open(config.settings.run.state_path) as journal:
        journal.hold(ADA, "email", reason="chargeback being discussed", by="ops")
    sandbox.stripe.refund(buyer_session(sandbox, ADA))
    held = reconcile(config)
    assert not [a for a in held.plan.actions if a.subject == ADA]
    assert vip_flag(sandbox, config, ADA)
    with Journal.open(config.settings.run.state_path) as journal:
        journal.release(ADA, by="ops")
    reconcile(config)
    assert not vip_flag(sandbox, config, ADA)
    assert violations(sandbox, config) == []


def test_after_a_lost_state_dir_the_audit_keeps_a_refund_applied(sandbox, config) -> None:
    reconcile(config)
    sandbox.stripe.refund(buyer_session(sandbox, ADA))
    reconcile(config)
    ada = sandbox.mautic.find(ADA)[0]
    mails = len(sandbox.mautic.sent(contact_id=ada))
    shutil.rmtree(config.settings.run.state_path)
    audit = reconcile(config, full=True)
    assert not [a for a in audit.plan.actions if a.subject == ADA]
    assert len(sandbox.mautic.sent(contact_id=ada)) == mails
    assert violations(sandbox, config) == []


# -- every rule of a campaign's life, through a lost state dir -------------------------


def test_a_lived_campaign_survives_a_lost_state_dir_without_a_second_side_effect(
    sandbox, config
) -> None:
    katherine = "katherine.johnson@example.com"
    reconcile(config)
    sandbox.stripe.refund(buyer_session(sandbox, ADA))
    sandbox.mautic.add_tag(sandbox.mautic.find(katherine)[0], "syncctl-hold")
    sandbox.stripe.add_session(katherine, name="Katherine Johnson", line_items=VIP)
    sandbox.mautic.add_dnc(sandbox.mautic.find(GRACE)[0], reason=1)
    sandbox.mautic.delete_contact(sandbox.mautic.find(ALAN)[0])
    sandbox.mautic.set_fields(sandbox.mautic.find(MILES)[0], email="miles.obrien@example.com")
    assert reconcile(config).ok
    assert violations(sandbox, config, holds=[katherine]) == []
    shutil.rmtree(config.settings.run.state_path)
    sandbox.clear_logs()
    audit = reconcile(config, full=True)
    assert not audit.plan.actions, [a.key for a in audit.plan.actions]
    assert sandbox.write_count() == 0
    assert violations(sandbox, config, holds=[katherine]) == []


def test_a_refunded_code_the_operator_deleted_by_hand_is_not_created_again(sandbox, config) -> None:
    from syncctl.clients.services import Services

    reconcile(config)
    code = promo_code_of(sandbox, config, ADA)
    sandbox.stripe.refund(buyer_session(sandbox, ADA))
    with Services.connect(config) as sv:  # the operator, in the Shopware admin
        row = sv.shopware.find_code(code)
        assert row is not None
        sv.shopware.delete_code(row)
    incremental = reconcile(config)
    audit = reconcile(config, full=True)
    promotion = config.settings.shopware.vip_promotion_id
    assert code not in {row["code"] for row in sandbox.shopware.codes(promotion)}
    assert incremental.ok and audit.ok
    assert not any(a.key.startswith("coupon:") for a in audit.plan.actions)
    assert violations(sandbox, config) == []


def test_an_upgrade_of_a_contact_on_the_dnc_list_sends_no_invite_email(sandbox, config) -> None:
    katherine = "katherine.johnson@example.com"
    cid = sandbox.mautic.find(katherine)[0]
    sandbox.mautic.add_dnc(cid, reason=1)  # unsubscribed before buying VIP
    result = reconcile(config)
    assert not sandbox.mautic.sent(contact_id=cid)
    assert any(katherine in n and "Do-Not-Contact" in n for n in notes(result))
