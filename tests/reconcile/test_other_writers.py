"""Rules 9 and 10: another writer touching the link field around our mint."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import httpx

from syncctl.engine.reconcile import reconcile
from syncctl.sandbox.verify import violations
from syncctl.state.journal import Journal

from .wiring import Hook, build_services

GRACE = "grace.hopper@example.com"
SOMEONE = "424242424242424242"  # a moderator handing out an invite by hand


def reads_contact(request: httpx.Request, cid: int) -> bool:
    """A read of contact `cid` (alone, or in a batch query `id in (...)`)."""
    if request.method != "GET":
        return False
    if request.url.path == f"/api/contacts/{cid}":
        return True
    params = request.url.params
    return (
        request.url.path == "/api/contacts"
        and params.get("where[0][col]") == "id"
        and params.get("where[0][expr]") == "in"
        and str(cid) in params.get("where[0][val]", "").split(",")
    )


def edits_contact(request: httpx.Request, cid: int) -> bool:
    """A PATCH of contact `cid` (alone, or in a batch edit)."""
    if request.method != "PATCH":
        return False
    if request.url.path == f"/api/contacts/{cid}/edit":
        return True
    if request.url.path != "/api/contacts/batch/edit":
        return False
    return any(item.get("id") == cid for item in json.loads(request.content))


def sequential(config):
    run = config.settings.run.model_copy(update={"concurrency": 1})
    return dataclasses.replace(config, settings=config.settings.model_copy(update={"run": run}))


def test_link_appearing_before_the_mint_is_kept_and_nothing_minted(sandbox, config) -> None:
    cid = sandbox.mautic.find(GRACE)[0]
    theirs = sandbox.discord.seed_invite(
        config.settings.discord.basic_channel_id, inviter_id=SOMEONE
    )
    reads = []

    def other_writer(request: httpx.Request) -> None:
        reads.append(request.url.path)
        if len(reads) == 1:  # right before syncctl's re-read ahead of minting
            sandbox.mautic.set_fields(cid, discord_invite_link_basic=f"https://discord.gg/{theirs}")

    def is_reread(request: httpx.Request) -> bool:
        return reads_contact(request, cid)

    services = build_services(
        config, lambda s: Hook(is_reread, before=other_writer) if s == "mautic" else None
    )
    result = reconcile(sequential(config), services=services)
    invite = next(o for o in result.outcomes if o.key == f"invite:{cid}:basic")
    assert str(invite.status) == "skipped" and "kept it" in invite.message
    assert sandbox.mautic.contact(cid)["discord_invite_link_basic"].endswith(theirs)
    assert not [a for a in sandbox.discord.audit_log if a.reason and str(cid) in a.reason]
    reconcile(config)  # the next run emails the kept link once
    assert violations(sandbox, config) == []


def test_conflicting_value_after_store_is_reported_revoked_and_not_emailed(sandbox, config) -> None:
    cid = sandbox.mautic.find(GRACE)[0]
    theirs = sandbox.discord.seed_invite(
        config.settings.discord.basic_channel_id, inviter_id=SOMEONE
    )

    def is_store(request: httpx.Request) -> bool:
        return edits_contact(request, cid)

    def overwrite(request: httpx.Request) -> None:
        if b"discord_invite_link_basic" in request.content:
            sandbox.mautic.set_fields(cid, discord_invite_link_basic=f"https://discord.gg/{theirs}")

    services = build_services(
        config, lambda s: Hook(is_store, after=overwrite) if s == "mautic" else None
    )
    result = reconcile(sequential(config), services=services)
    invite = next(o for o in result.outcomes if o.key == f"invite:{cid}:basic")
    assert str(invite.status) == "failed" and "conflict" in invite.message
    mails = [o for o in result.outcomes if o.action.depends_on == (f"invite:{cid}:basic",)]
    assert [str(o.status) for o in mails] == ["skipped"]
    assert not sandbox.mautic.sent(email_id=12, contact_id=cid)
    with Journal.open(config.settings.run.state_path, readonly=True) as journal:
        attempt = journal.latest(f"invite:{cid}:basic")
    assert attempt is not None and attempt.ref  # what syncctl minted for Grace
    ours = attempt.ref
    assert ours != theirs
    live = {i["code"] for i in sandbox.discord.invites()}
    assert theirs in live  # the other writer's link is kept
    assert ours not in live  # ours, which nobody holds, is revoked
    reconcile(config)
    assert violations(sandbox, config) == []


def test_a_conflict_while_recovery_stores_a_minted_invite_is_settled_not_a_crash(
    sandbox, config
) -> None:
    sandbox.mautic.inject(method="PATCH", path=r"/batch/edit$", status=503, times=None)
    reconcile(config)  # invites minted; their links could not be stored
    sandbox.mautic.clear_faults()
    cid = sandbox.mautic.find(GRACE)[0]
    theirs = sandbox.discord.seed_invite(
        config.settings.discord.basic_channel_id, inviter_id=SOMEONE
    )

    def overwrite(request: httpx.Request) -> None:
        if b"discord_invite_link_basic" in request.content:
            sandbox.mautic.set_fields(cid, discord_invite_link_basic=f"https://discord.gg/{theirs}")

    services = build_services(
        config,
        lambda s: Hook(lambda r: edits_contact(r, cid), after=overwrite) if s == "mautic" else None,
    )
    second = reconcile(sequential(config), services=services)
    graces = [r for r in second.recovered if r.subject == GRACE]
    assert [r.result for r in graces] == ["aborted"] and "conflict" in graces[0].detail
    assert len(second.recovered) > 1  # the other rows were settled too
    reconcile(config)
    assert violations(sandbox, config) == []


def test_orphan_sweep_keeps_an_invite_another_writer_stored_after_its_contact_was_read(
    sandbox, config
) -> None:
    # The old workflow, still running during the migration, minted a link an
    # hour ago and stores it on Grace only now: after the audit read her page.
    cid = sandbox.mautic.find(GRACE)[0]
    basic = config.settings.discord.basic_channel_id
    theirs = sandbox.discord.seed_invite(basic, created_at=sandbox.discord.now - timedelta(hours=1))
    stored = []

    def other_writer(request: httpx.Request) -> None:
        if not stored:
            stored.append(theirs)
            sandbox.mautic.set_fields(cid, discord_invite_link_basic=f"https://discord.gg/{theirs}")

    def lists_every_contact(request: httpx.Request) -> bool:
        params = request.url.params
        return request.url.path == "/api/contacts" and params.get("where[0][col]") == "id"

    services = build_services(
        config,
        lambda s: Hook(lists_every_contact, after=other_writer) if s == "mautic" else None,
    )
    result = reconcile(config, full=True, services=services)
    revoke = next(o for o in result.outcomes if o.key == f"revoke:{theirs}")
    assert str(revoke.status) == "skipped" and f"contact {cid} holds it now" in revoke.message
    assert theirs in {i["code"] for i in sandbox.discord.invites()}
    assert sandbox.mautic.contact(cid)["discord_invite_link_basic"].endswith(theirs)
    reconcile(config)
    assert violations(sandbox, config) == []


def test_orphan_recheck_asks_mautic_once_for_many_orphans(sandbox, config) -> None:
    reconcile(config)
    old = sandbox.discord.now - timedelta(hours=1)
    vip = config.settings.discord.vip_channel_id
    orphans = {sandbox.discord.seed_invite(vip, created_at=old) for _ in range(12)}
    sandbox.mautic.clear_log()
    result = reconcile(config, full=True)
    revoked = {o.ref for o in result.applied if o.key.startswith("revoke:")}
    assert revoked == orphans
    holding = [
        e
        for e in sandbox.mautic.exchanges("GET", r"^/api/contacts$")
        if any(k.endswith("[expr]") and v == "orX" for k, v in e.query)
    ]
    assert len(holding) == 1
