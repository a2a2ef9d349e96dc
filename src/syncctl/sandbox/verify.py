"""The desired state, checked on the sandbox's own records (not syncctl's).

Like the outside test rig of desired-state.md: whatever syncctl believes, the
services must show every side effect exactly once. The tests, the storm
benchmark and the demo use it; it reads the emulators' records only, never
syncctl's journal.
"""

from __future__ import annotations

from collections import Counter

from syncctl.config import Config
from syncctl.engine.codes import coupon_code, invite_code
from syncctl.sandbox.stack import Sandbox


def _flag(value: object) -> bool:
    return value in (True, 1, "1", "true", "yes")


def _tokens(send: dict) -> dict[str, str]:
    return {k.strip("{}"): v for k, v in send["tokens"].items()}


def violations(sandbox: Sandbox, config: Config) -> list[str]:
    """Every way the sandbox differs from the desired state (empty: converged)."""
    s = config.settings
    secret = config.secret("SYNCCTL_CODE_SECRET")
    f = s.mautic.fields
    problems: list[str] = []
    mautic, discord, espo, shopware = (
        sandbox.mautic,
        sandbox.discord,
        sandbox.espocrm,
        sandbox.shopware,
    )
    vip_prices = set(s.stripe.vip_price_ids)

    def is_vip(session: dict) -> bool:
        items = (session.get("line_items") or {}).get("data") or []
        return any((i.get("price") or {}).get("id") in vip_prices for i in items)

    purchases = [
        x
        for x in sandbox.stripe.sessions
        if x["status"] == "complete" and x["payment_status"] == "paid" and is_vip(x)
    ]
    codes = Counter(row["code"] for row in shopware.codes(s.shopware.vip_promotion_id))
    expected_codes = {coupon_code(p["id"], secret, s.shopware.code_prefix) for p in purchases}
    for code, n in codes.items():
        if n != 1:
            problems.append(f"code {code} exists {n} times")
    if set(codes) != expected_codes:
        problems.append(f"codes {sorted(codes)} != expected {sorted(expected_codes)}")
    sends = [x for x in mautic.sent() if not x["failed"]]
    latest: dict[str, dict] = {}
    for p in sorted(purchases, key=lambda p: (p["created"], p["id"])):
        email = str((p["customer_details"] or {}).get("email") or p.get("customer_email") or "")
        latest[email.lower()] = p
        ids = mautic.find(email)
        if not ids:
            problems.append(f"no contact for buyer {email}")
            continue
        code = coupon_code(p["id"], secret, s.shopware.code_prefix)
        mails = [
            x
            for x in sends
            if x["email_id"] == s.mautic.coupon_email
            and x["contact_id"] == ids[0]
            and _tokens(x).get("promo_code") == code
        ]
        if len(mails) != 1:
            problems.append(f"coupon email for {p['id']} sent {len(mails)} times")
    for email, p in latest.items():
        ids = mautic.find(email)
        if not ids:
            continue
        c = mautic.contact(ids[0])
        if not _flag(c.get(f.vip_status)):
            problems.append(f"{email} is not VIP")
        want = coupon_code(p["id"], secret, s.shopware.code_prefix)
        if c.get(f.promo_code) != want:
            problems.append(f"{email} promo_code {c.get(f.promo_code)!r} != {want}")
    live = {inv["code"]: inv for inv in discord.invites()}
    held: set[str] = set()
    lead_counts: Counter[str] = Counter()
    for lead in espo.leads():
        for address in lead.get("emailAddressData") or [{"emailAddress": lead.get("emailAddress")}]:
            if address.get("emailAddress"):
                lead_counts[address["emailAddress"].lower()] += 1
    for cid in mautic.contact_ids():
        c = mautic.contact(cid)
        email = (c.get("email") or "").lower()
        links = {
            "vip": c.get(f.invite_link_vip) or "",
            "basic": c.get(f.invite_link_basic) or "",
        }
        held.update(code for code in map(invite_code, links.values()) if code)
        invite_mails = [
            x
            for x in sends
            if x["contact_id"] == cid
            and x["email_id"] in (s.mautic.invite_email_vip, s.mautic.invite_email_basic)
        ]
        if not _flag(c.get(f.opt_in_confirmed)):
            if invite_mails:
                problems.append(f"{email} got an invite email without opt-in")
            continue
        tier = "vip" if _flag(c.get(f.vip_status)) else "basic"
        other = "basic" if tier == "vip" else "vip"
        if links[other]:
            problems.append(f"{email} still holds a {other} link")
        code = invite_code(links[tier])
        channel = s.discord.vip_channel_id if tier == "vip" else s.discord.basic_channel_id
        if code is None or code not in live:
            problems.append(f"{email} has no live {tier} invite ({links[tier]!r})")
        elif live[code]["channel"]["id"] != channel:
            problems.append(f"{email}'s invite is in the wrong channel")
        email_id = s.mautic.invite_email_vip if tier == "vip" else s.mautic.invite_email_basic
        this_link = [
            x
            for x in invite_mails
            if x["email_id"] == email_id
            and invite_code(_tokens(x).get("discord_invite_link")) == code
        ]
        if len(this_link) != 1:
            problems.append(f"{email}: invite email for its link sent {len(this_link)} times")
        if lead_counts[email] != 1:
            problems.append(f"{email} has {lead_counts[email]} leads")
    bot = discord.bot_user_id
    orphans = sorted(
        code
        for code, inv in live.items()
        if code not in held and (inv.get("inviter") or {}).get("id") == bot
    )
    if orphans:
        problems.append(f"orphan invites: {orphans}")
    return problems
