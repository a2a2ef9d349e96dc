"""The demo campaign: a handful of backers that exercise every rule.

Seeded into a `Sandbox` by `syncctl sandbox serve` and `syncctl demo`, so a
newcomer sees coupons minted, invites issued, an upgrade, emails and leads,
all with example.com addresses.
"""

from __future__ import annotations

import time

from syncctl.sandbox.stack import (
    BASIC_CHANNEL_ID,
    SUPPORTER_PRICE_ID,
    SUPPORTER_PRODUCT_ID,
    VIP_PRICE_ID,
    VIP_PRODUCT_ID,
    Sandbox,
)


def seed_demo(sandbox: Sandbox) -> None:
    """Backers in every situation the reconciler has a rule for."""
    hour = 3600
    now = time.time()
    vip = [(VIP_PRICE_ID, VIP_PRODUCT_ID, 1)]
    supporter = [(SUPPORTER_PRICE_ID, SUPPORTER_PRODUCT_ID, 1)]
    m, s = sandbox.mautic, sandbox.stripe

    # Opted in, bought VIP: coupon, VIP flag, VIP invite, emails, lead.
    m.add_contact(
        "ada.lovelace@example.com", firstname="Ada", lastname="Lovelace", opt_in_confirmed=True
    )
    s.add_session(
        "ada.lovelace@example.com", name="Ada Lovelace", line_items=vip, created=int(now - 2 * hour)
    )
    # Opted in, no purchase: a Basic invite and a lead.
    m.add_contact(
        "grace.hopper@example.com", firstname="Grace", lastname="Hopper", opt_in_confirmed=True
    )
    # Bought VIP but never signed up in Mautic: the contact is created.
    s.add_session(
        "Alan.Turing@Example.com", name="Alan Turing", line_items=vip, created=int(now - hour)
    )
    # Had a Basic invite already, then bought VIP: upgrade, Basic revoked.
    basic = sandbox.discord.seed_invite(BASIC_CHANNEL_ID)
    m.add_contact(
        "katherine.johnson@example.com",
        firstname="Katherine",
        lastname="Johnson",
        opt_in_confirmed=True,
        discord_invite_link_basic=f"https://discord.gg/{basic}",
    )
    s.add_session(
        "katherine.johnson@example.com",
        name="Katherine Johnson",
        line_items=vip,
        created=int(now - 30 * 60),
    )
    # Not opted in: no invite, no lead.
    m.add_contact(
        "edsger.dijkstra@example.com",
        firstname="Edsger",
        lastname="Dijkstra",
        opt_in_confirmed=False,
    )
    # An apostrophe in the address (Mautic HTML-encodes it in filters).
    m.add_contact(
        "miles.o'brien@example.com", firstname="Miles", lastname="O'Brien", opt_in_confirmed=True
    )
    # A supporter (not VIP) purchase: nothing to do for it.
    s.add_session(
        "grace.hopper@example.com",
        name="Grace Hopper",
        line_items=supporter,
        created=int(now - 3 * hour),
    )
    # A delayed payment still pending: not a purchase yet.
    s.add_session(
        "barbara.liskov@example.com",
        name="Barbara Liskov",
        line_items=vip,
        payment_status="unpaid",
        created=int(now - 20 * 60),
    )
    # A lead that already exists in EspoCRM (different case): not duplicated.
    sandbox.espocrm.add_lead("Grace", "Hopper", "Grace.Hopper@example.com")
