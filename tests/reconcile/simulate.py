"""A pure model of what applying a plan does to the observed state.

Used by the property test: apply(plan(s)) followed by plan again must give
no actions. It mirrors `syncctl.engine.apply` on data only: no HTTP.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

from syncctl.engine.codes import invite_code
from syncctl.engine.model import ActionKind, Contact, Invite, Plan, Snapshot, Tier
from syncctl.engine.plan import NEW, mail_key

_minted = itertools.count(1)


def simulate(snapshot: Snapshot, plan: Plan) -> Snapshot:
    contacts = {c.id: c for c in snapshot.contacts}
    codes = set(snapshot.existing_codes)
    leads = set(snapshot.leads)
    sent = set(snapshot.sent)
    issued = dict(snapshot.issued)
    invites = dict(snapshot.invites) if snapshot.invites is not None else None
    latest = dict(snapshot.latest_purchase)
    own = set(snapshot.own_coupons)
    own_contacts = set(snapshot.own_contacts)
    new_ids: dict[str, int] = {}
    minted: dict[str, str] = {}
    for action in plan.actions:
        p = action.params
        if action.kind is ActionKind.COUPON:
            codes.add(p["code"])
            own.add(p["session_id"])
        elif action.kind is ActionKind.CONTACT_CREATE:
            cid = max(contacts, default=0) + 1
            new_ids[p["email"]] = cid
            own_contacts.add(p["email"])
            contacts[cid] = Contact(
                id=cid,
                email=p["email"],
                firstname=p["firstname"],
                lastname=p["lastname"],
                vip=True,
                promo_code=p["promo_code"],
                link_vip="",
                link_basic="",
                opt_in=False,
            )
        elif action.kind is ActionKind.CONTACT_UPDATE:
            c = contacts[p["contact_id"]]
            changes = p["changes"]
            contacts[c.id] = replace(
                c,
                vip=changes.get("vip_status", c.vip),
                promo_code=changes.get("promo_code", c.promo_code),
            )
        elif action.kind is ActionKind.UNSET_LINK:
            c = contacts[p["contact_id"]]
            field = "link_vip" if p["tier"] == "vip" else "link_basic"
            contacts[c.id] = replace(c, **{field: ""})
        elif action.kind is ActionKind.REVOKE:
            if invites is not None:
                invites.pop(p["code"], None)
        elif action.kind is ActionKind.INVITE:
            code = f"inv{next(_minted):05d}"
            c = contacts[p["contact_id"]]
            field = "link_vip" if p["tier"] == "vip" else "link_basic"
            contacts[c.id] = replace(c, **{field: f"https://discord.gg/{code}"})
            issued[(c.id, Tier(p["tier"]))] = code
            minted[f"{c.id}:{p['tier']}"] = code
            if invites is not None:
                invites[code] = Invite(code, p["channel_id"], None, max_uses=1)
        elif action.kind is ActionKind.MAIL:
            cid = p["contact_id"]
            if cid == NEW:
                cid = new_ids[p["email"]]
            ref = p["ref"]
            if ref == NEW:
                ref = minted[f"{cid}:{p['tier']}"]
            sent.add(mail_key(p["email_id"], cid, ref))
        elif action.kind in (ActionKind.LEAD, ActionKind.LEAD_MOVE):
            leads.add(p["email"])
    # What the journal records: the purchase whose code went into the contact
    # (or that the contact held already).
    by_session = {p.session_id: p for p in snapshot.purchases}
    stored = {
        a.params["session_id"]
        for a in plan.actions
        if a.kind in (ActionKind.CONTACT_CREATE, ActionKind.CONTACT_UPDATE)
    }
    for c in contacts.values():
        stored |= {
            p.session_id
            for p in snapshot.purchases
            if p.code == c.promo_code and c.vip and p.email == c.email
        }
    for sid in stored:
        purchase = by_session.get(sid)
        if purchase is None or not purchase.is_vip_purchase or purchase.email is None:
            continue
        known = latest.get(purchase.email)
        if known is None or known.recency < purchase.recency:
            latest[purchase.email] = purchase
    return replace(
        snapshot,
        contacts=tuple(contacts.values()),
        existing_codes=frozenset(codes),
        leads=frozenset(leads),
        sent=frozenset(sent),
        issued=issued,
        invites=invites,
        latest_purchase=latest,
        own_coupons=frozenset(own),
        own_contacts=frozenset(own_contacts),
    )


def held_codes(snapshot: Snapshot) -> set[str]:
    return {
        code
        for c in snapshot.contacts
        for code in (invite_code(c.link_vip), invite_code(c.link_basic))
        if code
    }
