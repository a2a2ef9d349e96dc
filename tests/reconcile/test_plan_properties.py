"""Property: for any campaign, applying the plan converges in one step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from syncctl.engine.codes import coupon_code, invite_code
from syncctl.engine.model import Contact, Invite, Purchase, Snapshot, Tier
from syncctl.engine.plan import plan

from .simulate import held_codes, simulate

EMAILS = ["a@example.com", "b@example.com", "c@example.com", "o'neil@example.com"]
READ_AT = datetime(2026, 11, 2, 3, 30, tzinfo=UTC)
OLD, YOUNG = READ_AT - timedelta(days=3), READ_AT
LINKS = ["", "", "https://discord.gg/lnk0001", "https://discord.gg/lnk0002", "discord.gg/lnk0003"]


@st.composite
def campaigns(draw: st.DrawFn) -> Snapshot:
    purchases = tuple(
        Purchase(
            session_id=f"cs_{i}",
            email=draw(st.sampled_from(EMAILS)),
            name=draw(st.sampled_from(["Ada Lovelace", "", "Cher"])),
            created=draw(st.integers(1, 50)),
            vip=draw(st.booleans()),
            paid=draw(st.booleans()),
            code=coupon_code(f"cs_{i}", "s"),
        )
        for i in range(draw(st.integers(0, 4)))
    )
    emails = draw(st.lists(st.sampled_from(EMAILS), max_size=4))
    contacts = tuple(
        Contact(
            id=i + 1,
            email=email,
            firstname="F",
            lastname="L",
            vip=draw(st.booleans()),
            promo_code=draw(st.sampled_from(["", *(p.code for p in purchases)])),
            link_vip=draw(st.sampled_from(LINKS)),
            link_basic=draw(st.sampled_from(LINKS)),
            opt_in=draw(st.booleans()),
        )
        for i, email in enumerate(emails)
    )
    codes = frozenset(p.code for p in purchases if draw(st.booleans()))
    # Codes this state dir made; the others were found (n8n, or a lost state dir).
    own = frozenset(p.session_id for p in purchases if p.code in codes and draw(st.booleans()))
    leads = frozenset(e for e in EMAILS if draw(st.booleans()))
    issued = {(c.id, Tier.BASIC): "old0001" for c in contacts if draw(st.booleans())}
    full = draw(st.booleans())
    invites = None
    if full:
        invites = {
            code: Invite(code, "1", draw(st.sampled_from([OLD, YOUNG])), max_uses=1)
            for code in ("lnk0001", "lnk0002", "lnk0003", "stray01")
            if draw(st.booleans())
        }
    return Snapshot(
        purchases=purchases,
        contacts=contacts,
        existing_codes=codes,
        own_coupons=own,
        leads=leads,
        issued=issued,
        invites=invites,
        observed_at=READ_AT,
        full=full,
    )


@given(campaigns())
@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_applying_the_plan_converges_and_keeps_every_rule(snapshot: Snapshot) -> None:
    from tests.conftest import make_settings

    settings = make_settings()
    after = simulate(snapshot, plan(snapshot, settings))
    assert plan(after, settings).is_empty

    by_email: dict[str, list[Contact]] = {}
    for c in sorted(after.contacts, key=lambda c: c.id):
        assert c.email is not None
        by_email.setdefault(c.email, []).append(c)
    emails_before = {c.email for c in snapshot.contacts}
    for p in snapshot.purchases:
        if not p.is_vip_purchase:
            continue
        found_not_made = (
            p.code in snapshot.existing_codes and p.session_id not in snapshot.own_coupons
        )
        if found_not_made and p.email not in emails_before:
            continue  # rule 16: reported, not recreated
        assert p.code in after.existing_codes  # rule 1
        buyer = by_email[p.email][0]  # rule 2
        assert buyer.vip
        assert buyer.promo_code == after.latest_purchase[p.email].code
        assert f"mail:13:{buyer.id}:{p.code}" in after.sent  # rule 3
    for email, everyone in by_email.items():
        opted_in = [c for c in everyone if c.opt_in]
        if not opted_in:
            continue
        # Rule 21: one person per email, VIP when any of its contacts is.
        tier = Tier.VIP if any(c.vip for c in everyone) else Tier.BASIC
        email_id = 11 if tier is Tier.VIP else 12
        served = [
            c
            for c in opted_in
            if c.link(tier)
            and not c.link(tier.other)  # rule 8
            and f"mail:{email_id}:{c.id}:{invite_code(c.link(tier))}" in after.sent  # rule 11
        ]
        assert served, email
        assert email in after.leads  # rule 12
    if after.invites is not None:
        # Rule 14; an invite minted as the run began may be another writer's.
        young = {code for code, i in after.invites.items() if i.created_at == YOUNG}
        assert set(after.invites) <= held_codes(after) | young
