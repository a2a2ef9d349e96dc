"""The desired state, checked on the sandbox's own records (not syncctl's).

Like the outside test rig of desired-state.md: whatever syncctl believes, the
services must show every side effect exactly once. The tests, the storm
benchmark and the demo use it; it reads the emulators' records only, never
syncctl's journal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from syncctl.config import Config
from syncctl.engine.codes import coupon_code, invite_code
from syncctl.sandbox.stack import Sandbox


def _flag(value: object) -> bool:
    return value in (True, 1, "1", "true", "yes")


def _tokens(send: dict) -> dict[str, str]:
    return {k.strip("{}"): v for k, v in send["tokens"].items()}


def violations(sandbox: Sandbox, config: Config, *, holds: Iterable[str] = ()) -> list[str]:
    """Every way the sandbox differs from the desired state (empty: converged).

    `holds`: emails an operator holds (rule 18): nothing is required of them.
    """
    exempt = {email.lower() for email in holds}
    dnc = _dnc(sandbox)
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

    paid = [
        x
        for x in sandbox.stripe.sessions
        if x["status"] == "complete" and x["payment_status"] == "paid" and is_vip(x)
    ]
    gone = _withdrawn(sandbox, config)
    purchases = [x for x in paid if x["id"] not in gone and _buyer(x) not in exempt]
    rows = shopware.codes(s.shopware.vip_promotion_id)
    codes = Counter(row["code"] for row in rows)
    redeemed = {row["code"] for row in rows if (row.get("payload") or {}).get("orderId")}
    expected_codes = {coupon_code(p["id"], secret, s.shopware.code_prefix) for p in purchases}
    for p in paid:
        if _buyer(p) in exempt:  # held: whatever exists stays as it was
            expected_codes |= {coupon_code(p["id"], secret, s.shopware.code_prefix)} & set(codes)
        elif p["id"] in gone:  # rule 17: its code left unless an order used it
            code = coupon_code(p["id"], secret, s.shopware.code_prefix)
            expected_codes |= {code} & redeemed
    for code, n in codes.items():
        if n != 1:
            problems.append(f"code {code} exists {n} times")
    for row in shopware.codes(s.shopware.vip_promotion_id):
        payload = row.get("payload")
        if payload and not (isinstance(payload, dict) and payload.get("orderId")):
            problems.append(f"code {row['code']} carries a payload: the checkout refuses it")
    if set(codes) != expected_codes:
        problems.append(f"codes {sorted(codes)} != expected {sorted(expected_codes)}")
    sends = [x for x in mautic.sent() if not x["failed"]]
    latest: dict[str, dict] = {}
    for p in sorted(purchases, key=lambda p: (p["created"], p["id"])):
        email = _buyer(p) or str(p.get("customer_email") or "").lower()
        latest[email] = p
        ids = mautic.find(email)
        code = coupon_code(p["id"], secret, s.shopware.code_prefix)
        # To whichever contact it went: an erased or renamed buyer's too (rule 16).
        mails = [
            x
            for x in sends
            if x["email_id"] == s.mautic.coupon_email and _tokens(x).get("promo_code") == code
        ]
        if len(mails) > 1:
            problems.append(f"coupon email for {p['id']} sent {len(mails)} times")
        elif not mails and not ids:
            problems.append(f"no contact for buyer {email}")
        elif not mails and ids[0] not in dnc:  # rule 19: none to a DNC contact
            problems.append(f"coupon email for {p['id']} sent 0 times")
    for p in paid:
        email = _buyer(p)
        ids = mautic.find(email)
        if p["id"] not in gone or email in exempt:
            continue
        code = coupon_code(p["id"], secret, s.shopware.code_prefix)
        mailed = [x for x in sends if _tokens(x).get("promo_code") == code]
        if len(mailed) > 1:
            problems.append(f"coupon email for refunded {p['id']} sent {len(mailed)} times")
        if email in latest or not ids:
            continue
        if _flag(mautic.contact(ids[0]).get(f.vip_status)):
            problems.append(f"{email} is still VIP after {p['id']} was refunded or disputed")
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
    people: dict[str, list[dict]] = {}
    for cid in mautic.contact_ids():
        c = mautic.contact(cid)
        people.setdefault((c.get("email") or "").lower(), []).append(c)
    for email, everyone in people.items():
        if email in exempt:
            held.update(_links(everyone, s))  # a held person's links are not orphans
            continue
        problems += _person(email, everyone, s, live, sends, lead_counts, held, dnc)
    bot = discord.bot_user_id
    orphans = sorted(
        code
        for code, inv in live.items()
        if code not in held and (inv.get("inviter") or {}).get("id") == bot
    )
    if orphans:
        problems.append(f"orphan invites: {orphans}")
    return problems


def _buyer(session: dict) -> str:
    return str((session.get("customer_details") or {}).get("email") or "").lower()


def _links(everyone: list[dict], s: Any) -> set[str]:
    f = s.mautic.fields
    return {
        code
        for c in everyone
        for code in (invite_code(c.get(f.invite_link_vip)), invite_code(c.get(f.invite_link_basic)))
        if code
    }


def _dnc(sandbox: Sandbox) -> set[int]:
    """Contacts on the email Do-Not-Contact list (rules 19, 20)."""
    mautic = sandbox.mautic
    return {
        cid
        for cid in mautic.contact_ids()
        if any(e.get("channel") == "email" for e in mautic.record(cid).get("doNotContact") or ())
    }


def _withdrawn(sandbox: Sandbox, config: Config) -> set[str]:
    """Sessions whose payment Stripe shows fully refunded or disputed (a dispute
    not won): under `on_refund = "revoke"` no longer VIP purchases (rule 17)."""
    if config.settings.stripe.on_refund != "revoke":
        return set()
    stripe = sandbox.stripe
    status: dict[str, str] = {}
    for dispute in stripe.disputes:  # newest first
        status.setdefault(dispute["charge"], dispute["status"])
    gone = set()
    for session in stripe.sessions:
        try:
            charge = stripe.charge_of(session["id"])
        except KeyError:
            continue
        won = status.get(charge["id"]) in ("won", "warning_closed")
        if charge["refunded"] or (charge["disputed"] and not won):
            gone.add(session["id"])
    return gone


def _person(
    email: str,
    everyone: list[dict],
    s: Any,
    live: dict[str, dict],
    sends: list[dict],
    lead_counts: Counter[str],
    held: set[str],
    dnc: set[int],
) -> list[str]:
    """Rules 7-12 and 21 for one person: the contacts sharing an email are one.

    VIP when any of them is; one of the opted-in ones holds one live link of
    that tier (the others none they did not have before: none at all here),
    emailed once; one lead.
    """
    f = s.mautic.fields
    problems: list[str] = []
    invite_ids = (s.mautic.invite_email_vip, s.mautic.invite_email_basic)
    links_of: dict[int, dict[str, str]] = {}
    for c in everyone:
        links_of[c["id"]] = {
            "vip": c.get(f.invite_link_vip) or "",
            "basic": c.get(f.invite_link_basic) or "",
        }
        held.update(code for code in map(invite_code, links_of[c["id"]].values()) if code)
    opted_in = [c for c in everyone if _flag(c.get(f.opt_in_confirmed))]
    for c in everyone:
        mails = [x for x in sends if x["contact_id"] == c["id"] and x["email_id"] in invite_ids]
        if c not in opted_in and mails:
            problems.append(f"{email} got an invite email without opt-in")
    reachable = [c for c in opted_in if c["id"] not in dnc]
    if opted_in and not reachable:  # rule 20: no live unused link (a used one is gone)
        for link in _links(everyone, s):
            if link in live and not live[link].get("uses"):
                problems.append(f"{email} is on the DNC list but holds live invite {link}")
        return problems
    opted_in = reachable
    if not opted_in:
        return problems
    tier = "vip" if any(_flag(c.get(f.vip_status)) for c in everyone) else "basic"
    other = "basic" if tier == "vip" else "vip"
    holders = [c for c in opted_in if links_of[c["id"]][tier]]
    for c in everyone:
        if links_of[c["id"]][other]:
            problems.append(f"{email} still holds a {other} link")
    if len(holders) != 1:
        problems.append(f"{email}: {len(holders)} of its contacts hold a {tier} link, not one")
    if not holders:
        return problems
    holder = holders[0]
    code = invite_code(links_of[holder["id"]][tier])
    channel = s.discord.vip_channel_id if tier == "vip" else s.discord.basic_channel_id
    if code is None or code not in live:
        problems.append(f"{email} has no live {tier} invite ({links_of[holder['id']][tier]!r})")
    elif live[code]["channel"]["id"] != channel:
        problems.append(f"{email}'s invite is in the wrong channel")
    email_id = s.mautic.invite_email_vip if tier == "vip" else s.mautic.invite_email_basic
    ids = {c["id"] for c in everyone}
    this_link = [
        x
        for x in sends
        if x["contact_id"] in ids
        and x["email_id"] == email_id
        and invite_code(_tokens(x).get("discord_invite_link")) == code
    ]
    if len(this_link) != 1:
        problems.append(f"{email}: invite email for its link sent {len(this_link)} times")
    if lead_counts[email] != 1:
        problems.append(f"{email} has {lead_counts[email]} leads")
    return problems
