"""The planner, rule by rule (design/desired-state.md), on plain data."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from syncctl.engine.codes import coupon_code
from syncctl.engine.model import ActionKind, Contact, Invite, Purchase, Snapshot, Tier
from syncctl.engine.plan import plan

SECRET = "test-secret"


def purchase(sid: str = "cs_1", email: str | None = "ada@example.com", **kw) -> Purchase:
    values = dict(
        session_id=sid,
        email=email,
        name="Ada King Lovelace",
        created=1_700_000_000,
        vip=True,
        paid=True,
        code=coupon_code(sid, SECRET),
    )
    values.update(kw)
    return Purchase(**values)  # type: ignore[arg-type]


def contact(cid: int = 1, email: str | None = "ada@example.com", **kw) -> Contact:
    values = dict(
        id=cid,
        email=email,
        firstname="Ada",
        lastname="Lovelace",
        vip=False,
        promo_code="",
        link_vip="",
        link_basic="",
        opt_in=True,
    )
    values.update(kw)
    return Contact(**values)  # type: ignore[arg-type]


def kinds(p) -> list[str]:
    return [str(a.kind) for a in p.actions]


def keys(p) -> set[str]:
    return {a.key for a in p.actions}


# -- rule 1: coupon ---------------------------------------------------------------


def test_paid_vip_purchase_gets_its_derived_coupon(settings) -> None:
    p = purchase()
    result = plan(Snapshot(purchases=(p,), contacts=(contact(),)), settings)
    coupon = result.by_key()["coupon:cs_1"]
    assert coupon.params["code"] == p.code
    assert coupon.params["promotion_id"] == settings.shopware.vip_promotion_id


def test_existing_coupon_is_not_created_again(settings) -> None:
    p = purchase()
    result = plan(
        Snapshot(purchases=(p,), contacts=(contact(),), existing_codes=frozenset({p.code})),
        settings,
    )
    assert "coupon:cs_1" not in keys(result)


def test_coupon_code_is_stable_and_secret_dependent() -> None:
    assert coupon_code("cs_1", "a") == coupon_code("cs_1", "a")
    assert coupon_code("cs_1", "a") != coupon_code("cs_1", "b")
    assert coupon_code("cs_1", "a").startswith("VIP-")


# -- rule 2: contact --------------------------------------------------------------


def test_missing_buyer_is_created_in_mautic_with_stripe_name(settings) -> None:
    p = purchase()
    result = plan(Snapshot(purchases=(p,)), settings)
    create = result.by_key()["contact:ada@example.com"]
    assert create.params["firstname"] == "Ada King"
    assert create.params["lastname"] == "Lovelace"
    assert create.params["vip_status"] is True
    assert create.params["promo_code"] == p.code
    assert create.depends_on == ("coupon:cs_1",)


def test_buyer_contact_gets_vip_flag_and_code(settings) -> None:
    p = purchase()
    result = plan(Snapshot(purchases=(p,), contacts=(contact(),)), settings)
    update = next(a for a in result.actions if a.kind is ActionKind.CONTACT_UPDATE)
    assert update.params["changes"] == {"vip_status": True, "promo_code": p.code}


def test_promo_code_is_the_latest_purchase_code(settings) -> None:
    old = purchase("cs_old", created=1)
    new = purchase("cs_new", created=2)
    c = contact(vip=True, promo_code=old.code)
    result = plan(Snapshot(purchases=(new, old), contacts=(c,)), settings)
    update = next(a for a in result.actions if a.kind is ActionKind.CONTACT_UPDATE)
    assert update.params["changes"] == {"promo_code": new.code}


def test_older_purchase_seen_again_does_not_overwrite_newer_code(settings) -> None:
    old = purchase("cs_old", created=1)
    new = purchase("cs_new", created=2)
    c = contact(vip=True, promo_code=new.code)
    snapshot = Snapshot(
        purchases=(old,),
        contacts=(c,),
        existing_codes=frozenset({old.code, new.code}),
        latest_purchase={"ada@example.com": new},
    )
    assert not any(a.kind is ActionKind.CONTACT_UPDATE for a in plan(snapshot, settings).actions)


def test_coupon_email_carries_the_purchase_code_as_token(settings) -> None:
    p = purchase()
    result = plan(Snapshot(purchases=(p,), contacts=(contact(),)), settings)
    mail = result.by_key()[f"mail:13:1:{p.code}"]
    assert mail.params["tokens"] == {"promo_code": p.code}
    assert mail.params["email_id"] == settings.mautic.coupon_email


def test_coupon_email_waits_for_coupon_and_contact_update(settings) -> None:
    p = purchase()
    result = plan(Snapshot(purchases=(p,), contacts=(contact(),)), settings)
    mail = result.by_key()[f"mail:13:1:{p.code}"]
    assert set(mail.depends_on) == {"coupon:cs_1", f"vip:1:{p.code}"}
    order = [a.key for a in result.actions]
    assert order.index("coupon:cs_1") < order.index(f"vip:1:{p.code}") < order.index(mail.key)


def test_sent_coupon_email_is_not_sent_again(settings) -> None:
    p = purchase()
    c = contact(vip=True, promo_code=p.code)
    snapshot = Snapshot(
        purchases=(p,),
        contacts=(c,),
        existing_codes=frozenset({p.code}),
        sent=frozenset({f"mail:13:1:{p.code}"}),
        leads=frozenset({"ada@example.com"}),
    )
    assert [a.kind for a in plan(snapshot, settings).actions] == [
        ActionKind.INVITE,
        ActionKind.MAIL,
    ]


def test_each_purchase_gets_its_own_coupon_email(settings) -> None:
    a, b = purchase("cs_a", created=1), purchase("cs_b", created=2)
    result = plan(Snapshot(purchases=(a, b), contacts=(contact(opt_in=False),)), settings)
    mails = [x for x in result.actions if x.kind is ActionKind.MAIL]
    assert {m.params["tokens"]["promo_code"] for m in mails} == {a.code, b.code}


# -- rule 5: not VIP, not paid ----------------------------------------------------


@pytest.mark.parametrize(
    "p",
    [purchase(vip=False), purchase(paid=False)],
    ids=["not-vip", "unpaid"],
)
def test_non_vip_or_unpaid_session_produces_nothing(settings, p) -> None:
    assert plan(Snapshot(purchases=(p,), contacts=(contact(opt_in=False),)), settings).is_empty


# -- rule 6: opt-in gate of the coupon email --------------------------------------


def test_coupon_email_is_not_gated_on_opt_in_by_default(settings) -> None:
    p = purchase()
    result = plan(Snapshot(purchases=(p,), contacts=(contact(opt_in=False),)), settings)
    assert f"mail:13:1:{p.code}" in keys(result)


def test_coupon_email_waits_for_opt_in_when_configured(settings) -> None:
    gated = settings.model_copy(
        update={"mautic": settings.mautic.model_copy(update={"coupon_email_requires_opt_in": True})}
    )
    p = purchase()
    result = plan(Snapshot(purchases=(p,), contacts=(contact(opt_in=False),)), gated)
    assert not any(a.kind is ActionKind.MAIL for a in result.actions)
    assert any("waits for opt-in" in n.message for n in result.notes)


# -- rules 7, 8, 11: tier, one link, invite email ---------------------------------


def test_opted_in_contact_gets_a_basic_invite_and_its_email(settings) -> None:
    result = plan(Snapshot(contacts=(contact(),)), settings)
    invite = result.by_key()["invite:1:basic"]
    assert invite.params["channel_id"] == settings.discord.basic_channel_id
    assert invite.params["max_age"] == 0
    mail = result.by_key()["mail:12:1:new"]
    assert mail.depends_on == ("invite:1:basic",)


def test_vip_contact_gets_a_vip_invite(settings) -> None:
    result = plan(Snapshot(contacts=(contact(vip=True),)), settings)
    assert result.by_key()["invite:1:vip"].params["channel_id"] == settings.discord.vip_channel_id


def test_buyer_becoming_vip_this_run_gets_the_vip_invite_after_the_flag(settings) -> None:
    p = purchase()
    result = plan(Snapshot(purchases=(p,), contacts=(contact(),)), settings)
    invite = result.by_key()["invite:1:vip"]
    assert f"vip:1:{p.code}" in invite.depends_on
    assert "invite:1:basic" not in keys(result)


def test_upgrade_revokes_and_clears_the_basic_link(settings) -> None:
    c = contact(vip=True, link_basic="https://discord.gg/basic01")
    result = plan(Snapshot(contacts=(c,), leads=frozenset({"ada@example.com"})), settings)
    assert keys(result) == {"revoke:basic01", "unset:1:basic", "invite:1:vip", "mail:11:1:new"}
    assert "unset:1:basic" in result.by_key()["invite:1:vip"].depends_on


def test_buyer_upgrade_touches_the_basic_link_only_after_the_vip_flag(settings) -> None:
    p = purchase()
    c = contact(link_basic="https://discord.gg/basic01")
    result = plan(Snapshot(purchases=(p,), contacts=(c,)), settings).by_key()
    assert result["revoke:basic01"].depends_on == (f"vip:1:{p.code}",)
    assert result["unset:1:basic"].depends_on == (f"vip:1:{p.code}", "revoke:basic01")


def test_upgrade_clears_the_basic_field_only_once_its_invite_is_revoked(settings) -> None:
    # A failed revoke must leave the link where it is, not an orphan nobody holds.
    c = contact(vip=True, link_basic="https://discord.gg/basic01")
    result = plan(Snapshot(contacts=(c,)), settings).by_key()
    assert result["unset:1:basic"].depends_on == ("revoke:basic01",)


def test_buyers_invite_waits_while_coupon_codes_cannot_be_read(settings) -> None:
    c = contact(link_basic="https://discord.gg/basic01")
    snapshot = Snapshot(purchases=(purchase(),), contacts=(c,), unknown=frozenset({"codes"}))
    result = plan(snapshot, settings)
    assert kinds(result) == ["create_lead"]
    assert any("invite waits" in n.message for n in result.notes)


def test_invites_of_basic_contacts_wait_while_purchases_cannot_be_read(settings) -> None:
    snapshot = Snapshot(contacts=(contact(),), unknown=frozenset({"purchases"}))
    result = plan(snapshot, settings)
    assert kinds(result) == ["create_lead"]
    assert "1 opted-in Basic contact(s) wait" in result.notes[0].message


def test_only_basic_contacts_missing_a_link_are_counted_as_waiting(settings) -> None:
    linked = contact(2, "b@example.com", link_basic="https://discord.gg/abc123")
    snapshot = Snapshot(contacts=(contact(), linked), unknown=frozenset({"purchases"}))
    assert "1 opted-in Basic contact(s) wait" in plan(snapshot, settings).notes[0].message


def test_vip_contacts_invites_go_on_while_purchases_cannot_be_read(settings) -> None:
    snapshot = Snapshot(contacts=(contact(vip=True),), unknown=frozenset({"purchases"}))
    assert "invite:1:vip" in keys(plan(snapshot, settings))


def test_stored_link_without_sent_email_gets_its_email(settings) -> None:
    c = contact(link_basic="https://discord.gg/abc123")
    result = plan(Snapshot(contacts=(c,), leads=frozenset({"ada@example.com"})), settings)
    mail = result.by_key()["mail:12:1:abc123"]
    assert mail.params["tokens"] == {"discord_invite_link": "https://discord.gg/abc123"}


def test_stored_link_with_sent_email_needs_nothing(settings) -> None:
    c = contact(link_basic="https://discord.gg/abc123")
    snapshot = Snapshot(
        contacts=(c,), leads=frozenset({"ada@example.com"}), sent=frozenset({"mail:12:1:abc123"})
    )
    assert plan(snapshot, settings).is_empty


def test_link_in_another_accepted_form_is_understood(settings) -> None:
    c = contact(link_basic="discord.com/invite/abc123")
    snapshot = Snapshot(
        contacts=(c,), leads=frozenset({"ada@example.com"}), sent=frozenset({"mail:12:1:abc123"})
    )
    assert plan(snapshot, settings).is_empty


# -- rule 12: lead ----------------------------------------------------------------


def test_opted_in_contact_without_lead_gets_one(settings) -> None:
    result = plan(Snapshot(contacts=(contact(),)), settings)
    lead = result.by_key()["lead:ada@example.com"]
    assert lead.params == {
        "contact_id": 1,
        "email": "ada@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "source": "Campaign",
    }


def test_one_lead_for_two_contacts_sharing_an_email(settings) -> None:
    result = plan(Snapshot(contacts=(contact(1), contact(2))), settings)
    assert [a.key for a in result.actions if a.kind is ActionKind.LEAD] == ["lead:ada@example.com"]


# -- rule 13: reissue by clearing the field ---------------------------------------


def test_cleared_field_revokes_the_old_invite_and_reissues(settings) -> None:
    snapshot = Snapshot(
        contacts=(contact(),),
        leads=frozenset({"ada@example.com"}),
        issued={(1, Tier.BASIC): "old001"},
    )
    result = plan(snapshot, settings)
    assert keys(result) == {"revoke:old001", "invite:1:basic", "mail:12:1:new"}
    assert "revoke:old001" in result.by_key()["invite:1:basic"].depends_on
    assert result.by_key()["invite:1:basic"].reason == "link field was cleared: reissue"


# -- rule 14: orphans -------------------------------------------------------------


READ_AT = datetime(2026, 11, 2, 3, 30, tzinfo=UTC)
AN_HOUR_BEFORE = READ_AT - timedelta(hours=1)


def orphan_audit(settings, *invites: Invite, contacts: tuple[Contact, ...] = ()) -> Snapshot:
    return Snapshot(
        contacts=contacts,
        leads=frozenset(c.email for c in contacts if c.email),
        sent=frozenset(f"mail:12:{c.id}:{c.link_basic.rsplit('/', 1)[-1]}" for c in contacts),
        invites={i.code: i for i in invites},
        observed_at=READ_AT,
        full=True,
    )


def test_live_invite_held_by_nobody_is_revoked_on_full_audit(settings) -> None:
    basic, vip = settings.discord.basic_channel_id, settings.discord.vip_channel_id
    snapshot = orphan_audit(
        settings,
        Invite("held01", basic, AN_HOUR_BEFORE, max_uses=1),
        Invite("orphan1", vip, AN_HOUR_BEFORE, max_uses=1),
        contacts=(contact(link_basic="https://discord.gg/held01"),),
    )
    result = plan(snapshot, settings)
    assert keys(result) == {"revoke:orphan1"}
    assert result.by_key()["revoke:orphan1"].params["orphan"] is True


def test_multi_use_invite_of_the_same_bot_is_not_an_orphan(settings) -> None:
    event = Invite("event01", settings.discord.basic_channel_id, AN_HOUR_BEFORE, max_uses=0)
    assert plan(orphan_audit(settings, event), settings).is_empty


def test_invite_minted_after_the_run_began_reading_is_not_judged_an_orphan(settings) -> None:
    # Another writer may store it on a contact whose page the run read already.
    young = Invite("young01", settings.discord.vip_channel_id, READ_AT, max_uses=1)
    assert plan(orphan_audit(settings, young), settings).is_empty


def test_orphan_age_allows_for_discords_clock_running_ahead(settings) -> None:
    skewed = READ_AT - timedelta(seconds=5)
    invite = Invite("skew01", settings.discord.vip_channel_id, skewed, max_uses=1)
    assert plan(orphan_audit(settings, invite), settings).is_empty


def test_invite_of_unknown_age_is_left_alone(settings) -> None:
    undated = Invite("nodate1", settings.discord.vip_channel_id, None, max_uses=1)
    assert plan(orphan_audit(settings, undated), settings).is_empty


# -- rule 15: no opt-in -----------------------------------------------------------


def test_contact_without_opt_in_gets_no_invite_mail_or_lead(settings) -> None:
    assert plan(Snapshot(contacts=(contact(opt_in=False),)), settings).is_empty


def test_vip_buyer_without_opt_in_still_gets_flag_coupon_and_coupon_email(settings) -> None:
    p = purchase()
    result = plan(Snapshot(purchases=(p,), contacts=(contact(opt_in=False),)), settings)
    assert {a.kind for a in result.actions} == {
        ActionKind.COUPON,
        ActionKind.CONTACT_UPDATE,
        ActionKind.MAIL,
    }


# -- odd data -----------------------------------------------------------------------


def test_contact_without_email_is_noted_not_acted_on(settings) -> None:
    result = plan(Snapshot(contacts=(contact(email=None),)), settings)
    assert result.is_empty
    assert result.notes


def test_paid_vip_purchase_without_email_is_noted(settings) -> None:
    result = plan(Snapshot(purchases=(purchase(email=None),)), settings)
    assert result.is_empty
    assert "without an email" in result.notes[0].message


def test_plan_is_deterministic(settings) -> None:
    snapshot = Snapshot(
        purchases=(purchase("cs_2", "b@example.com"), purchase("cs_1")),
        contacts=(contact(2, "b@example.com"), contact(1)),
    )
    reordered = replace(
        snapshot,
        purchases=tuple(reversed(snapshot.purchases)),
        contacts=tuple(reversed(snapshot.contacts)),
    )
    assert plan(snapshot, settings) == plan(reordered, settings)


def test_contact_with_an_invalid_address_is_noted_not_acted_on(settings) -> None:
    result = plan(Snapshot(contacts=(contact(email="not-an-email"),)), settings)
    assert result.is_empty
    assert "not valid" in result.notes[0].message


# -- a stored link syncctl revoked itself (issue 11.5.2) --------------------------


def test_a_stored_link_syncctl_revoked_is_cleared_and_replaced(settings) -> None:
    c = contact(link_basic="https://discord.gg/dead001")
    snapshot = Snapshot(
        contacts=(c,),
        leads=frozenset({"ada@example.com"}),
        sent=frozenset({"mail:12:1:dead001"}),
        revoked=frozenset({"dead001"}),
    )
    result = plan(snapshot, settings).by_key()
    assert set(result) == {"unset:1:basic", "invite:1:basic", "mail:12:1:new"}
    assert result["invite:1:basic"].depends_on == ("unset:1:basic",)
    assert "revoked" in result["invite:1:basic"].reason
    assert "revoke:dead001" not in result  # revoked already


def test_a_live_link_into_the_other_tiers_channel_is_noted(settings) -> None:
    c = contact(link_basic="https://discord.gg/vipchan")
    invite = Invite("vipchan", settings.discord.vip_channel_id, AN_HOUR_BEFORE, max_uses=1)
    snapshot = orphan_audit(settings, invite, contacts=(c,))
    result = plan(snapshot, settings)
    assert result.is_empty
    assert any("other tier's channel" in n.message for n in result.notes)


# -- rules 16, 21, 22 ---------------------------------------------------------------


def test_a_purchase_whose_coupon_email_went_out_is_not_redone(settings) -> None:
    p = purchase()
    snapshot = Snapshot(
        purchases=(p,),
        existing_codes=frozenset({p.code}),
        sent=frozenset({f"mail:13:7:{p.code}"}),  # mailed, to a contact since erased
    )
    result = plan(snapshot, settings)
    assert result.is_empty
    assert any("fulfilled" in n.message for n in result.notes)


def test_a_found_code_without_contact_is_reported_not_recreated(settings) -> None:
    p = purchase()
    snapshot = Snapshot(purchases=(p,), existing_codes=frozenset({p.code}))
    result = plan(snapshot, settings)
    assert result.is_empty
    assert any("reported, not recreated" in n.message for n in result.notes)


def test_a_code_this_state_dir_made_gets_its_missing_contact(settings) -> None:
    p = purchase()
    snapshot = Snapshot(
        purchases=(p,), existing_codes=frozenset({p.code}), own_coupons=frozenset({p.session_id})
    )
    assert "create_contact" in kinds(plan(snapshot, settings))


def test_contacts_sharing_an_email_get_one_invite_and_one_lead(settings) -> None:
    result = plan(Snapshot(contacts=(contact(1), contact(2, email="ada@example.com"))), settings)
    assert keys(result) == {"invite:1:basic", "mail:12:1:new", "lead:ada@example.com"}
    assert any("share this email" in n.message for n in result.notes)


def test_the_duplicate_already_holding_a_link_keeps_it(settings) -> None:
    holder = contact(2, link_basic="https://discord.gg/held02")
    snapshot = Snapshot(
        contacts=(contact(1), holder),
        sent=frozenset({"mail:12:2:held02"}),
        leads=frozenset({"ada@example.com"}),
    )
    assert plan(snapshot, settings).is_empty


def test_the_lead_syncctl_made_follows_a_changed_email(settings) -> None:
    snapshot = Snapshot(
        contacts=(contact(1, email="ada.king@example.com", link_basic="https://discord.gg/l1"),),
        sent=frozenset({"mail:12:1:l1"}),
        lead_owners={1: ("lead01", "ada@example.com")},
    )
    (move,) = plan(snapshot, settings).actions
    assert move.kind is ActionKind.LEAD_MOVE and move.key == "lead:ada.king@example.com"
    assert move.params["lead_id"] == "lead01"
