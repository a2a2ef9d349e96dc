"""`syncctl reissue-invite EMAIL`: a fresh invite for one person, by hand.

The same actions and applier as a reconcile run: clear the current link
(revoking its invite), mint, store, verify, email. Only the plan is built
here, from one contact instead of the whole campaign.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from syncctl.clients.services import Services
from syncctl.config import Config, Settings
from syncctl.engine.apply import Applier
from syncctl.engine.codes import invite_code, invite_url
from syncctl.engine.model import (
    Action,
    ActionKind,
    Contact,
    Plan,
    Tier,
    is_valid_email,
    normalize_email,
)
from syncctl.engine.observe import to_contact
from syncctl.engine.plan import NEW, channel_id, invite_email_id, mail_key
from syncctl.engine.reconcile import RunResult, fenced
from syncctl.errors import UsageError
from syncctl.state.journal import open_for_run


@dataclass(frozen=True)
class ReissueTarget:
    contact: Contact
    tier: Tier
    duplicates: int  # other contacts sharing the email


def find_target(services: Services, settings: Settings, email: str) -> ReissueTarget:
    """The contact to reissue for; refuses malformed, unknown or not-opted-in emails."""
    if not is_valid_email(email):
        raise UsageError(f"{email!r} is not an email address", hint="check the spelling")
    wanted = normalize_email(email)
    found = sorted(services.mautic.find_by_email(email.strip()), key=lambda c: c.id)
    contacts = [to_contact(c, settings) for c in found if normalize_email(c.email) == wanted]
    if not contacts:
        raise UsageError(
            f"no Mautic contact has the email {email.strip()}",
            hint="check the address; the contact must exist and have opted in",
        )
    contact = contacts[0]
    if not contact.opt_in:
        alias = settings.mautic.fields.opt_in_confirmed
        raise UsageError(
            f"{contact.email} has not opted in ({alias} is not true): no invite is sent",
            hint="the contact must confirm opt-in first",
        )
    if contact.dnc:
        # Mautic's API send ignores the list (rule 19), and the next run would
        # revoke an unused link of someone on it (rule 20).
        raise UsageError(
            f"{contact.email} is on Mautic's Do-Not-Contact list: no invite is sent",
            hint="if they asked for one, take them off the list in Mautic first",
        )
    tier = Tier.VIP if contact.vip else Tier.BASIC
    return ReissueTarget(contact, tier, len(contacts) - 1)


def reissue_plan(target: ReissueTarget, settings: Settings, *, email: bool) -> Plan:
    c, tier = target.contact, target.tier
    assert c.email is not None
    actions: list[Action] = []
    deps: list[str] = []
    for t in (tier, tier.other):
        current = c.link(t)
        if not current:
            continue
        code = invite_code(current)
        if code:
            actions.append(
                Action(
                    ActionKind.REVOKE,
                    f"revoke:{code}",
                    c.email,
                    "reissue requested by an operator",
                    params={"code": code},
                    before={"invite": invite_url(code)},
                    after={"invite": "revoked"},
                )
            )
        revoke = (f"revoke:{code}",) if code else ()
        key = f"unset:{c.id}:{t}"
        actions.append(
            Action(
                ActionKind.UNSET_LINK,
                key,
                c.email,
                "reissue requested by an operator",
                params={"contact_id": c.id, "tier": str(t), "expected": current},
                before={f"link_{t}": current},
                after={f"link_{t}": ""},
                # The old link (often the one that leaked) must be dead before
                # anything changes: a failed revoke leaves the contact as it was.
                depends_on=revoke,
            )
        )
        deps.append(key)
    invite_key = f"invite:{c.id}:{tier}"
    actions.append(
        Action(
            ActionKind.INVITE,
            invite_key,
            c.email,
            "reissue requested by an operator",
            params={
                "contact_id": c.id,
                "tier": str(tier),
                "channel_id": channel_id(settings, tier),
                "max_age": settings.discord.invite_max_age,
                # --no-email: the stored link's email is waived, not left for the next run.
                "no_email": not email,
            },
            before={f"link_{tier}": c.link(tier)},
            after={f"link_{tier}": "(new single-use invite)"},
            depends_on=tuple(deps),
        )
    )
    if email:
        email_id = invite_email_id(settings, tier)
        actions.append(
            Action(
                ActionKind.MAIL,
                mail_key(email_id, c.id, NEW),
                c.email,
                "the new invite link gets its email",
                params={
                    "email_id": email_id,
                    "contact_id": c.id,
                    "email": c.email,
                    "tier": str(tier),
                    "ref": NEW,
                    "tokens": {},
                    "purpose": "invite",
                },
                after={"email": f"{tier} invite"},
                depends_on=(invite_key,),
            )
        )
    return Plan(actions=tuple(actions))


def reissue(
    config: Config,
    email: str,
    *,
    dry_run: bool = False,
    send_email: bool = True,
    confirm: Callable[[Plan], bool] | None = None,
    wait: bool = False,
    on_wait: Callable[[str], None] | None = None,
) -> RunResult:
    """Find, plan, confirm and apply one reissue under the run lock.

    `on_wait`, with `wait`, hears who holds the lock it waits for.
    """
    settings = config.settings
    config.secrets.require()
    started = time.monotonic()
    with (
        open_for_run(config.state, readonly=dry_run, wait=wait, on_wait=on_wait) as journal,
        Services.connect(config) as sv,
        fenced(sv, journal),
    ):
        target = find_target(sv, settings, email)
        plan = reissue_plan(target, settings, email=send_email)
        result = RunResult(mode="reissue", dry_run=dry_run, plan=plan, stats=sv.stats)
        if dry_run or (confirm is not None and not confirm(plan)):
            result.duration = time.monotonic() - started
            return result
        run_id = journal.begin_run("reissue", dry_run=False)
        result.run_id = run_id
        try:
            result.outcomes = Applier(sv, journal, settings, run_id).apply(plan)
        finally:
            result.duration = time.monotonic() - started
            if not journal.lost:
                journal.finish_run(
                    run_id, "failed" if result.failed else "ok", {"planned": len(plan)}
                )
        return result
