"""A buyer with several VIP purchases: one coupon email each, the newest code kept.

Mautic's stats log when a coupon email went out, not which code it carried:
another purchase's email must never count as the one still missing (rule 3),
and a delayed payment of an older purchase must not replace the newer code
(rule 2).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncctl import config as config_mod
from syncctl.commands.reissue import reissue
from syncctl.engine import sendlog
from syncctl.engine.codes import coupon_code
from syncctl.engine.reconcile import reconcile
from syncctl.sandbox.stack import COUPON_EMAIL, VIP_PRICE_ID, VIP_PRODUCT_ID, Sandbox
from syncctl.sandbox.verify import violations

EMAIL = "dora@example.com"
VIP = [(VIP_PRICE_ID, VIP_PRODUCT_ID, 1)]


@pytest.fixture(autouse=True, params=["lookups", "bulk"])
def reads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each case twice: facts asked about one by one, and read in bulk (many unknowns)."""
    if request.param == "bulk":
        monkeypatch.setattr(sendlog, "BULK_THRESHOLD", 0)
    return request.param


@pytest.fixture
def shop() -> Sandbox:
    with Sandbox() as sb:
        yield sb


@pytest.fixture
def config(shop: Sandbox, tmp_path: Path) -> config_mod.Config:
    loaded = config_mod.load(*shop.write_files(tmp_path / "campaign"))
    run = loaded.settings.run.model_copy(update={"concurrency": 1})
    return dataclasses.replace(loaded, settings=loaded.settings.model_copy(update={"run": run}))


def buy(shop: Sandbox, minutes_ago: int, **fields) -> str:
    created = int(time.time()) - minutes_ago * 60
    session = shop.stripe.add_session(
        EMAIL, name="Dora X", line_items=VIP, created=created, **fields
    )
    return session["id"] if isinstance(session, dict) else session


def coupon_codes_mailed(shop: Sandbox, contact_id: int) -> list[str]:
    sends = shop.mautic.sent(email_id=COUPON_EMAIL, contact_id=contact_id)
    return sorted(s["tokens"]["{promo_code}"] for s in sends if not s["failed"])


def issued_codes(shop: Sandbox, config: config_mod.Config) -> list[str]:
    codes = shop.shopware.codes(config.settings.shopware.vip_promotion_id)
    return sorted(c["code"] for c in codes)


def test_an_older_purchase_whose_coupon_failed_still_gets_its_email(shop, config) -> None:
    cid = shop.mautic.add_contact(EMAIL, firstname="Dora", lastname="X")
    buy(shop, 10)
    buy(shop, 5)
    shop.shopware.inject(
        method="POST", path="^/api/promotion-individual-code$", status=503, times=1
    )
    # The older purchase's coupon failed and the newer one's email went out;
    # the run found the code absent and created it after all, then mailed it.
    assert reconcile(config).ok
    assert coupon_codes_mailed(shop, cid) == issued_codes(shop, config)
    assert reconcile(config, full=True).plan.is_empty
    assert violations(shop, config) == []


def test_a_delayed_payment_after_a_newer_purchase_gets_its_own_email(shop, config) -> None:
    cid = shop.mautic.add_contact(EMAIL, firstname="Dora", lastname="X")
    delayed = buy(shop, 180, payment_status="unpaid")
    buy(shop, 120)
    reconcile(config)
    shop.stripe.mark_paid(delayed)
    reconcile(config)
    assert len(coupon_codes_mailed(shop, cid)) == 2
    assert coupon_codes_mailed(shop, cid) == issued_codes(shop, config)
    assert violations(shop, config) == []


def test_recovery_does_not_take_another_purchases_send_for_a_lost_one(shop, config) -> None:
    cid = shop.mautic.add_contact(EMAIL, firstname="Dora", lastname="X")
    buy(shop, 10)
    buy(shop, 5)
    # The first coupon email's connection drops before Mautic sees it: unknown outcome.
    shop.mautic.inject(method="POST", path=r"/send$", kind="reset", when="before", times=1)
    first = reconcile(config)
    assert [r.result for r in first.settled.resolutions] == ["aborted"]
    assert coupon_codes_mailed(shop, cid) == issued_codes(shop, config)
    assert violations(shop, config) == []


def test_a_delayed_older_payment_after_lost_state_keeps_the_newer_code(shop, config) -> None:
    delayed = buy(shop, 180, payment_status="unpaid")
    buy(shop, 120)
    reconcile(config)
    cid = shop.mautic.find(EMAIL)[0]
    newest = shop.mautic.contact(cid)["promo_code"]
    shutil.rmtree(config.settings.run.state_path)
    assert reconcile(config, full=True).plan.is_empty
    shop.stripe.mark_paid(delayed)
    reconcile(config)
    assert shop.mautic.contact(cid)["promo_code"] == newest
    assert reconcile(config, full=True).plan.is_empty


def test_a_reissued_links_failed_email_is_sent_though_the_old_one_went_minutes_ago(
    shop, config
) -> None:
    cid = shop.mautic.add_contact(EMAIL, firstname="Dora", lastname="X", opt_in_confirmed=True)
    reconcile(config)
    shop.mautic.set_fields(cid, discord_invite_link_basic="")  # the operator asks for a new link
    shop.mautic.inject(method="POST", path=r"/send$", status=500, times=1)
    assert reconcile(config).ok  # not in the stats: sent again in the same run
    delivered = [s for s in shop.mautic.sent(contact_id=cid) if not s["failed"]]
    assert len(delivered) == 2  # one email per stored link
    assert violations(shop, config) == []


def test_a_buyer_typing_their_address_in_other_capitals_is_the_same_contact(shop, config) -> None:
    cid = shop.mautic.add_contact(EMAIL, firstname="Dora", lastname="X")
    shop.stripe.add_session(
        "Dora@Example.COM", name="Dora X", line_items=VIP, created=int(time.time()) - 60
    )
    reconcile(config)
    assert shop.mautic.find(EMAIL) == [cid]
    assert shop.mautic.contact(cid)["vip_status"] in (True, 1, "1")
    assert len(coupon_codes_mailed(shop, cid)) == 1


def test_an_upgrade_whose_coupon_fails_keeps_the_basic_invite(shop, config) -> None:
    cid = shop.mautic.add_contact(EMAIL, firstname="Dora", lastname="X", opt_in_confirmed=True)
    reconcile(config)
    basic = shop.mautic.contact(cid)["discord_invite_link_basic"]
    buy(shop, 1)
    shop.shopware.inject(
        method="POST", path="^/api/promotion-individual-code$", status=503, times=None
    )
    assert not reconcile(config).ok
    assert shop.mautic.contact(cid)["discord_invite_link_basic"] == basic
    assert shop.discord.invite(basic.rsplit("/", 1)[-1]) is not None  # still live


def test_invites_wait_while_shopware_codes_cannot_be_read(shop, config) -> None:
    cid = shop.mautic.add_contact(EMAIL, firstname="Dora", lastname="X")
    reconcile(config)
    buy(shop, 1)
    shop.mautic.set_fields(cid, opt_in_confirmed=True)
    shop.shopware.inject(
        method="POST", path="^/api/search/promotion-individual-code$", status=503, times=None
    )
    assert "shopware" in reconcile(config).observe_errors
    assert not shop.mautic.contact(cid)["discord_invite_link_basic"]
    assert shop.discord.created_count == 0


@pytest.mark.parametrize("mautic_ahead", [False, True], ids=["same-clock", "mautic-a-day-ahead"])
def test_an_adopted_old_send_never_claims_a_new_purchases_send(
    shop, config, mautic_ahead: bool
) -> None:
    settings = config.settings
    long_ago = int(time.time()) - 60 * 86400
    old = shop.stripe.add_session(EMAIL, name="Dora X", line_items=VIP, created=long_ago)
    code = coupon_code(
        old["id"], config.secret("SYNCCTL_CODE_SECRET"), settings.shopware.code_prefix
    )
    # What the old workflows did 60 days ago: the first run adopts it from the stats.
    shop.shopware.add_code(settings.shopware.vip_promotion_id, code)
    cid = shop.mautic.add_contact(
        EMAIL, firstname="Dora", lastname="X", vip_status=True, promo_code=code
    )
    sent_then = datetime.fromtimestamp(long_ago + 60, UTC)
    shop.mautic.record_sends([(COUPON_EMAIL, cid, {"{promo_code}": code}, sent_then)])
    assert reconcile(config).plan.is_empty
    buy(shop, 0)
    if mautic_ahead:
        shop.mautic.clock = lambda: datetime.now(UTC) + timedelta(days=1)
    # The new purchase's email goes out, but its answer is lost.
    shop.mautic.inject(method="POST", path=r"/send$", kind="reset", when="after", times=1)
    reconcile(config)
    shop.mautic.clear_faults()
    reconcile(config)  # recovery finds the send: it is not sent again
    assert coupon_codes_mailed(shop, cid) == issued_codes(shop, config)


def test_reissue_no_email_holds_when_the_stores_answer_is_lost(shop, config) -> None:
    cid = shop.mautic.add_contact(EMAIL, firstname="Dora", lastname="X", opt_in_confirmed=True)
    reconcile(config)
    # The edit storing the new link lands (after the clearing edit), but its answer is lost.
    shop.mautic.inject(
        method=None, path=r"(batch/edit|/edit)$", kind="reset", when="after", times=None, skip=1
    )
    reissue(config, EMAIL, send_email=False)
    shop.mautic.clear_faults()
    reconcile(config)  # recovery finds the link stored: it writes down the waived email
    delivered = [s for s in shop.mautic.sent(contact_id=cid) if not s["failed"]]
    assert len(delivered) == 1  # the first link's email only
