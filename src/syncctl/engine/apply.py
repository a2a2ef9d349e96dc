"""Applying a plan: each action journaled, executed, verified, isolated.

Every side effect follows the intent-journal discipline: a row is committed
`in_flight` before the vendor call and `done` with the external reference
after it. When the outcome of a write is unknown (timeout, reset), the row
stays in flight and `recover` resolves it against the service at the start
of the next run; nothing is retried blindly.

Actions of one person run in plan order (their dependencies are within the
person); different people run concurrently, bounded by `[run] concurrency`.
One person's failure skips only that person's dependent actions. Their
Mautic contact reads and edits, though, travel together: requests made
within a moment of each other go out as one batch call (`batching`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from syncctl.clients.mautic import BATCH_MAX, HOLDING_CHUNK, dropped_by_mautic
from syncctl.clients.mautic import Contact as MauticContact
from syncctl.clients.services import Services
from syncctl.clients.shopware import IndividualCode
from syncctl.config import Settings
from syncctl.engine.codes import invite_code, invite_url
from syncctl.engine.model import Action, ActionKind, Plan, Tier
from syncctl.engine.plan import NEW, invite_email_id, mail_key
from syncctl.engine.sends import WAIVED
from syncctl.engine.stop import NOT_STARTED, StopRequest
from syncctl.errors import (
    AuthRejected,
    BadResponse,
    NotFound,
    OutcomeUnknown,
    ServiceError,
    StoreLost,
    SyncctlError,
)
from syncctl.net.batching import LINGER, Coalescer
from syncctl.state.journal import Entry, EntryState, Journal

log = logging.getLogger(__name__)


#: Workers per admitted call of a service: one per service a person's
#: actions may touch.
WORKERS_PER_SLOT = 5
UNRESOLVED = "an earlier attempt's outcome is still unknown; resolved next run"
SETTLED = "its answer was lost, and the service shows it happened"


class Status(StrEnum):
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Outcome:
    action: Action
    status: Status
    key: str  # the journal key (placeholders resolved)
    ref: str | None = None
    message: str = ""
    transient: bool = False
    #: The item stays pending and is retried next run whatever the cursors say.
    retry: bool = False
    #: The service refused the request itself: it waits until its inputs change.
    refused: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "planned_key": self.action.key,
            "kind": str(self.action.kind),
            "system": self.action.system,
            "subject": self.action.subject,
            "status": str(self.status),
            "ref": self.ref,
            "message": self.message,
        }


class ActionFailed(Exception):
    """An action failed in a way already recorded; carries the outcome's text."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass
class Chain:
    """What earlier actions of the same person produced in this run."""

    outcomes: dict[str, Outcome] = field(default_factory=dict)
    contact_id: int | None = None
    minted: dict[str, str] = field(default_factory=dict)  # tier -> invite code
    #: Orphan invite codes of this chain, in order, and who holds each as
    #: Mautic answered right before its revocation (rule 14).
    orphans: list[str] = field(default_factory=list)
    holders: dict[str, list[int]] = field(default_factory=dict)

    def record(self, outcome: Outcome) -> None:
        """Note an outcome, and what a done one produced for later actions."""
        action = outcome.action
        self.outcomes[action.key] = outcome
        if outcome.status is not Status.DONE or not outcome.ref:
            return
        if action.kind is ActionKind.CONTACT_CREATE and outcome.ref.isdigit():
            self.contact_id = int(outcome.ref)
        elif action.kind is ActionKind.INVITE:
            self.minted[str(action.params["tier"])] = outcome.ref


class Applier:
    def __init__(
        self,
        services: Services,
        journal: Journal,
        settings: Settings,
        run_id: int | None,
        *,
        on_outcome: Callable[[Outcome], None] | None = None,
        retry_refused: bool = False,
        stop: StopRequest | None = None,
    ) -> None:
        self.sv = services
        self.stop = stop or StopRequest()
        self.retry_refused = retry_refused
        self.journal = journal
        self.settings = settings
        self.run_id = run_id
        self.on_outcome = on_outcome
        self.fields = settings.mautic.fields
        self._down: dict[str, str] = {}  # service -> why it is not used any more this run
        self._lock = threading.Lock()
        # One worker has nobody to share a batch with: no reason to wait.
        linger = 0.0 if settings.run.concurrency <= 1 else LINGER
        self._reads: Coalescer[int, MauticContact] = Coalescer(
            self._read_many, max_size=BATCH_MAX, linger=linger
        )
        self._edits: Coalescer[tuple[int, Mapping[str, Any]], MauticContact] = Coalescer(
            self._edit_many, max_size=BATCH_MAX, linger=linger
        )

    # -- driving ------------------------------------------------------------------

    def apply(self, plan: Plan) -> list[Outcome]:
        return self.again(plan.actions, {})

    def again(self, actions: Iterable[Action], before: Mapping[str, Outcome]) -> list[Outcome]:
        """Run `actions` person by person, each person's in plan order.

        `before`: outcomes earlier in this run of the actions they depend on
        (`settle` runs what a storm left undone once more).
        """
        actions = list(actions)
        chains: dict[str, list[Action]] = defaultdict(list)
        for action in actions:
            chains[action.subject].append(action)
        # Each service admits `concurrency` calls at once (ServiceHTTP); people
        # waiting on one service's rate limit must not keep the others idle,
        # so there are enough workers to keep every service busy.
        concurrency = max(1, self.settings.run.concurrency)
        workers = 1 if concurrency == 1 else min(64, concurrency * WORKERS_PER_SLOT)
        ordered = _interleave(list(chains.values()))

        def run(chain: list[Action]) -> list[Outcome]:
            return self._run_chain(chain, before)

        if workers == 1 or len(chains) == 1:
            results = [run(chain) for chain in ordered]
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="apply") as pool:
                results = list(pool.map(run, ordered))
        by_key = {o.action.key: o for chain in results for o in chain}
        return [by_key[a.key] for a in actions]

    def _run_chain(
        self, actions: Iterable[Action], before: Mapping[str, Outcome] | None = None
    ) -> list[Outcome]:
        actions = list(actions)
        chain = Chain(orphans=[str(a.params["code"]) for a in actions if a.params.get("orphan")])
        for outcome in (before or {}).values():
            if outcome.action.subject == actions[0].subject:
                chain.record(outcome)
        done: list[Outcome] = []
        for action in actions:
            outcome = self._run_one(action, chain)
            chain.record(outcome)
            done.append(outcome)
            if self.on_outcome and outcome.message != NOT_STARTED:  # one summary line says so
                self.on_outcome(outcome)
        return done

    def _run_one(self, action: Action, chain: Chain) -> Outcome:
        if self.stop.is_set():
            return Outcome(action, Status.SKIPPED, action.key, message=NOT_STARTED, retry=True)
        held = self._held_now(action)
        if held:
            why = f"held since the run began: {held}"
            return Outcome(action, Status.SKIPPED, action.key, message=why, retry=True)
        for dep in action.depends_on:
            before = chain.outcomes.get(dep)
            if before is not None and before.status is not Status.DONE:
                return Outcome(
                    action,
                    Status.SKIPPED,
                    action.key,
                    message=f"waits for {dep}",
                    retry=not before.refused,
                    refused=before.refused,
                )
        down = self._down.get(action.system)
        if down:
            return Outcome(action, Status.SKIPPED, action.key, message=down, retry=True)
        latest = self.journal.latest(action.key)
        if (
            latest is not None
            and latest.state is EntryState.DONE
            and latest.run_id == self.run_id
            and self.run_id is not None
        ):
            # An earlier attempt this run whose answer was lost: the service
            # showed it happened (`settle`).
            return Outcome(action, Status.DONE, action.key, ref=latest.ref, message=SETTLED)
        blocked = self._blocked(action, action.key, latest)
        if blocked is not None:
            return blocked
        handler = getattr(self, f"_do_{action.kind.name.lower()}")
        try:
            return handler(action, chain)
        except StoreLost:
            raise  # the run lock is gone: the whole run stops, not just this action
        except ActionFailed as exc:
            return Outcome(
                action,
                Status.FAILED,
                action.key,
                message=str(exc),
                transient=exc.transient,
                retry=True,
            )
        except ServiceError as exc:
            if isinstance(exc, AuthRejected):
                with self._lock:
                    self._down.setdefault(
                        exc.service, f"not attempted: {exc.service} rejected the credentials"
                    )
            was_refused = refusal(exc)
            return Outcome(
                action,
                Status.FAILED,
                action.key,
                message=str(exc),
                transient=exc.transient,
                retry=not was_refused,
                refused=was_refused,
            )
        except SyncctlError as exc:
            return Outcome(action, Status.FAILED, action.key, message=str(exc), retry=True)

    def _held_now(self, action: Action) -> str:
        """A hold set after the run planned (rule 18): what is left of it waits.

        One small query per action (holds are few); empty when not held.
        """
        subjects = {action.subject}
        if "session_id" in action.params:
            subjects.add(str(action.params["session_id"]))
        found = self.journal.held(subjects)
        return next(iter(found.values())).reason if found else ""

    # -- journal helpers ----------------------------------------------------------

    def _blocked(self, action: Action, key: str, latest: Entry | None) -> Outcome | None:
        """Why an earlier attempt at `key` (the journal's `latest`) stops this one, if it does.

        An attempt whose outcome is unknown waits for recovery. What the
        vendor refused with these very inputs is skipped until they change:
        a validation error is not cured by asking again (a fixed name,
        another config value, or `--retry-refused` lets it through).
        """
        if latest is None:
            return None
        if not latest.state.terminal:
            return Outcome(action, Status.SKIPPED, key, message=UNRESOLVED, retry=True)
        if self.retry_refused or latest.state is not EntryState.FAILED:
            return None
        if not latest.detail.get("refused") or latest.detail.get("inputs") != inputs_of(action):
            return None
        return Outcome(
            action,
            Status.SKIPPED,
            latest.key,
            message=f"refused before with the same inputs ({latest.error}); fix them or run "
            "with --retry-refused",
            refused=True,
        )

    def _start(self, key: str, action: Action, detail: dict[str, Any] | None = None) -> int:
        detail = {**(detail or {}), "inputs": inputs_of(action)}
        return self.journal.start(
            key, str(action.kind), action.subject, run_id=self.run_id, detail=detail
        )

    def _guard(self, entry: int, call: Callable[[], Any]) -> Any:
        """Run a vendor write; record a definite failure, leave unknown ones in flight."""
        try:
            return call()
        except OutcomeUnknown as exc:
            # The row stays in flight (`recover` resolves it next run); the
            # error is kept for `history --failed`.
            self.journal.mark(entry, EntryState.IN_FLIGHT, error=str(exc))
            raise
        except ServiceError as exc:
            detail = {"refused": True} if refusal(exc) else None
            self.journal.mark(entry, EntryState.FAILED, error=str(exc), detail=detail)
            raise

    def _done(
        self, action: Action, entry: int, key: str, ref: str | None, **detail: Any
    ) -> Outcome:
        self.journal.mark(entry, EntryState.DONE, ref=ref, detail=detail or None)
        return Outcome(action, Status.DONE, key, ref=ref)

    # -- Mautic contact reads and edits, batched across people -------------------

    def read_contact(self, contact_id: int) -> MauticContact:
        """The contact as Mautic has it now (NotFound when it is gone)."""
        return self._reads.submit(contact_id)

    def edit_contact(self, contact_id: int, changes: Mapping[str, Any]) -> MauticContact:
        """`MauticClient.update`, sent in a batch with other people's edits."""
        return self._edits.submit((contact_id, changes))

    def _read_many(self, ids: list[int]) -> list[MauticContact | ServiceError]:
        with _whole_batch():
            found = self.sv.mautic.get_many(ids)
        return [
            found.get(cid)
            or NotFound("mautic", f"contact {cid} does not exist (deleted or merged)", status=404)
            for cid in ids
        ]

    def _edit_many(
        self, edits: list[tuple[int, Mapping[str, Any]]]
    ) -> list[MauticContact | ServiceError]:
        with _whole_batch():
            return self.sv.mautic.update_many(edits)

    # -- Shopware -----------------------------------------------------------------

    def _do_coupon(self, action: Action, chain: Chain) -> Outcome:
        p = action.params
        entry = self._start(action.key, action, {"session_id": p["session_id"], "code": p["code"]})
        # No payload: Shopware's checkout accepts only codes whose payload is null.
        row, created = self._guard(
            entry, lambda: self.sv.shopware.create_code(p["promotion_id"], p["code"])
        )
        return self._done(action, entry, action.key, row.code, created=created)

    def _do_coupon_unblock(self, action: Action, chain: Chain) -> Outcome:
        p = action.params
        row = IndividualCode(p["code_id"], "", p["code"], {"stripe_session": None})
        entry = self._start(action.key, action, {"code": p["code"]})
        self._guard(entry, lambda: self.sv.shopware.clear_payload(row))
        return self._done(action, entry, action.key, p["code"])

    def _do_coupon_delete(self, action: Action, chain: Chain) -> Outcome:
        """Rule 17: a withdrawn purchase's unused code leaves the promotion.

        The code is read again first: one redeemed since the plan was made
        stays (an order used it), and one gone already is done.
        """
        p = action.params
        entry = self._start(action.key, action, {"session_id": p["session_id"], "code": p["code"]})
        row = self._guard(entry, lambda: self.sv.shopware.find_code(p["code"]))
        if row is not None and row.redeemed:
            why = f"redeemed meanwhile (order {row.order_id}): the code stays"
            self.journal.mark(entry, EntryState.ABORTED, error=why)
            return Outcome(action, Status.SKIPPED, action.key, message=why)
        if row is None:
            return self._done(action, entry, action.key, p["code"], deleted=False)
        found = row
        deleted = self._guard(entry, lambda: self.sv.shopware.delete_code(found))
        return self._done(action, entry, action.key, p["code"], deleted=deleted)

    # -- Mautic contacts ----------------------------------------------------------

    def _alias(self, name: str) -> str:
        return getattr(self.fields, name)

    def _do_contact_create(self, action: Action, chain: Chain) -> Outcome:
        p = action.params
        entry = self._start(action.key, action, _purchase_detail(p))
        # A name Mautic cannot store ("0") is left out, not a reason to
        # leave the buyer without a contact and a coupon email.
        first, last = (
            "" if dropped_by_mautic(name) else name for name in (p["firstname"], p["lastname"])
        )
        body = {
            "email": p["email"],
            "firstname": first,
            "lastname": last,
            self._alias("vip_status"): True,
            self._alias("promo_code"): p["promo_code"],
        }
        contact = self._guard(entry, lambda: self.sv.mautic.create(body))
        chain.contact_id = contact.id
        if not contact.flag(self._alias("vip_status")) or (
            contact.text(self._alias("promo_code")) != p["promo_code"]
        ):
            self.journal.mark(entry, EntryState.FAILED, error="fields not stored")
            raise ActionFailed(self._not_stored("vip_status/promo_code"))
        return self._done(action, entry, action.key, str(contact.id))

    def _do_contact_update(self, action: Action, chain: Chain) -> Outcome:
        p = action.params
        changes = {self._alias(name): value for name, value in p["changes"].items()}
        entry = self._start(action.key, action, _purchase_detail(p))
        contact = self._guard(entry, lambda: self.edit_contact(p["contact_id"], changes))
        for alias, value in changes.items():
            stored = contact.flag(alias) if isinstance(value, bool) else contact.text(alias)
            if stored != value:
                self.journal.mark(entry, EntryState.FAILED, error=f"{alias} not stored")
                raise ActionFailed(self._not_stored(alias))
        return self._done(action, entry, action.key, str(contact.id))

    def _not_stored(self, alias: str) -> str:
        return (
            f"mautic: the contact did not keep {alias}: does the custom field exist with "
            "that alias? (check [mautic.fields] and the field list in Mautic)"
        )

    def _do_unset_link(self, action: Action, chain: Chain) -> Outcome:
        p = action.params
        alias = self.link_alias(Tier(p["tier"]))
        current = self.read_contact(p["contact_id"]).text(alias).strip()
        if not current:
            return Outcome(action, Status.DONE, action.key, message="already empty")
        if current != p["expected"]:
            raise ActionFailed(f"mautic: {alias} changed since it was read ({current!r}); next run")
        entry = self._start(action.key, action, {"cleared": current})
        contact = self._guard(entry, lambda: self.edit_contact(p["contact_id"], {alias: ""}))
        if contact.text(alias).strip():
            self.journal.mark(entry, EntryState.FAILED, error="field not cleared")
            raise ActionFailed(f"mautic: {alias} could not be cleared")
        return self._done(action, entry, action.key, None)

    def link_alias(self, tier: Tier) -> str:
        return self._alias("invite_link_vip" if tier is Tier.VIP else "invite_link_basic")

    # -- Discord ------------------------------------------------------------------

    def _do_revoke(self, action: Action, chain: Chain) -> Outcome:
        code = action.params["code"]
        if action.params.get("orphan"):
            holders = self._holders_now(code, chain)
            if holders:
                ids = ", ".join(map(str, holders))
                return Outcome(
                    action,
                    Status.SKIPPED,
                    action.key,
                    message=f"contact {ids} holds it now (another writer stored it): kept",
                )
        entry = self._start(action.key, action, {"reason": action.reason})
        existed = self._guard(
            entry, lambda: self.sv.discord.revoke_invite(code, reason=f"syncctl: {action.reason}")
        )
        return self._done(action, entry, action.key, code, existed=existed)

    def _holders_now(self, code: str, chain: Chain) -> list[int]:
        """Who holds an orphan's code, asked right before revoking it (rule 14).

        Another writer may have stored the link after the run read that
        contact. The chain's next orphans are asked about in the same query.
        """
        if code not in chain.holders:
            if any(ch in code for ch in "%_"):
                raise ActionFailed(f"cannot ask Mautic who holds {code!r}: not revoked")
            start = chain.orphans.index(code) if code in chain.orphans else 0
            ahead = [c for c in chain.orphans[start:] if c not in chain.holders]
            batch = [c for c in ahead if not any(ch in c for ch in "%_")][:HOLDING_CHUNK]
            if code not in batch:
                batch = [code]
            aliases = (self.link_alias(Tier.VIP), self.link_alias(Tier.BASIC))
            found = self.sv.mautic.find_holding_any(aliases, batch)
            chain.holders.update({c: [contact.id for contact in found[c]] for c in batch})
        return chain.holders[code]

    def _do_invite(self, action: Action, chain: Chain) -> Outcome:
        """Rules 8-10: re-read, mint, store, read back; never two live links."""
        p = action.params
        tier = Tier(p["tier"])
        cid = p["contact_id"]
        alias = self.link_alias(tier)
        current = self.read_contact(cid).text(alias).strip()  # rule 9: check before minting
        if current:
            return Outcome(
                action,
                Status.SKIPPED,
                action.key,
                ref=invite_code(current),
                message="a link appeared meanwhile (another writer): kept it, minted nothing",
            )
        detail = {"contact_id": cid, "tier": str(tier), "channel_id": p["channel_id"]}
        if p.get("no_email"):
            detail["no_email"] = True  # kept for recovery, should the store's answer be lost
        entry = self._start(action.key, action, detail)
        invite = self._guard(
            entry,
            lambda: self.sv.discord.create_invite(
                p["channel_id"],
                max_age=p["max_age"],
                max_uses=1,
                unique=True,
                reason=f"syncctl {action.key}",
                role_ids=self._role_ids(tier),
            ),
        )
        self.journal.mark(entry, EntryState.MINTED, ref=invite.code)
        if invite.inviter_id and self.journal.get_meta("discord.bot_user_id") is None:
            self.journal.set_meta("discord.bot_user_id", invite.inviter_id)
        return self.store_invite(action, entry, cid, tier, invite.code, chain)

    def _role_ids(self, tier: Tier) -> list[str]:
        """Roles the tier's invite grants (a role-gated VIP channel needs them)."""
        d = self.settings.discord
        return list(d.vip_role_ids if tier is Tier.VIP else d.basic_role_ids)

    def store_invite(
        self, action: Action, entry: int, cid: int, tier: Tier, code: str, chain: Chain
    ) -> Outcome:
        """Store a minted invite and verify it (also used by `recover`)."""
        alias = self.link_alias(tier)
        url = invite_url(code)
        try:
            self.edit_contact(cid, {alias: url})
        except OutcomeUnknown:
            raise  # stays minted: the next run stores or revokes it
        except ServiceError as exc:
            if exc.transient:  # the edit may have landed: stays minted, recovery looks
                raise
            self.revoke_quietly(code, "could not be stored in Mautic")
            self.journal.mark(entry, EntryState.FAILED, error=str(exc))
            raise
        stored = self.read_contact(cid).text(alias).strip()  # rule 10: read back
        if invite_code(stored) != code:
            self.revoke_quietly(code, "another value was stored meanwhile")
            self.journal.mark(entry, EntryState.FAILED, error=f"conflict: field holds {stored!r}")
            raise ActionFailed(
                f"mautic: conflict: contact {cid} {alias} holds {stored!r}; not emailed"
            )
        chain.minted[str(tier)] = code
        if action.params.get("no_email"):
            self.waive_invite_email(action.subject, cid, tier, code)
        return self._done(action, entry, action.key, code)

    def waive_invite_email(self, email: str, cid: int, tier: Tier, code: str) -> None:
        """`reissue-invite --no-email`: this link's email is recorded as not to be sent.

        Otherwise the next run would find a stored link never emailed and send
        it, undoing the operator's choice. Written once the link is stored,
        here or by the recovery that finds it stored.
        """
        email_id = invite_email_id(self.settings, tier)
        detail = {"waived": "reissue-invite --no-email", "contact_id": cid, "email_id": email_id}
        key = mail_key(email_id, cid, code)
        entry = self.journal.start(
            key, str(ActionKind.MAIL), email, run_id=self.run_id, detail=detail
        )
        self.journal.mark(entry, EntryState.DONE, ref=WAIVED)

    def revoke_quietly(self, code: str, why: str) -> None:
        try:
            self.sv.discord.revoke_invite(code, reason=f"syncctl: {why}")
        except ServiceError as exc:  # left for the orphan sweep of a full run
            log.warning("could not revoke orphan invite %s: %s", code, exc)

    # -- mail ---------------------------------------------------------------------

    def _do_mail(self, action: Action, chain: Chain) -> Outcome:
        p = action.params
        cid = p["contact_id"]
        if cid == NEW:
            cid = chain.contact_id or self._contact_id_for(p["email"])
        ref = p["ref"]
        tokens = dict(p["tokens"])
        if ref == NEW:
            ref = chain.minted.get(p["tier"])
            if ref is None:
                raise ActionFailed("no invite was minted for this email")
            tokens = {"discord_invite_link": invite_url(ref)}
        key = mail_key(p["email_id"], cid, ref)
        latest = self.journal.latest(key)
        if latest is not None and latest.state is EntryState.DONE:
            return Outcome(action, Status.SKIPPED, key, message="already sent")
        blocked = self._blocked(action, key, latest)
        if blocked is not None:
            return blocked
        entry = self._start(
            key, action, {"email_id": p["email_id"], "contact_id": cid, "purpose": p["purpose"]}
        )
        self._guard(entry, lambda: self.sv.mautic.send_email(p["email_id"], cid, tokens))
        return self._done(action, entry, key, f"{p['email_id']}:{cid}")

    def _contact_id_for(self, email: str) -> int:
        found = self.sv.mautic.find_by_email(email)
        if not found:
            raise ActionFailed(f"mautic: no contact with {email} to send to")
        return min(c.id for c in found)

    # -- EspoCRM ------------------------------------------------------------------

    def _do_lead(self, action: Action, chain: Chain) -> Outcome:
        p = action.params
        # The contact is kept: if its email changes, the lead follows it (rule 22).
        entry = self._start(
            action.key, action, {"email": p["email"], "contact_id": p["contact_id"]}
        )
        result = self._guard(
            entry,
            lambda: self.sv.espocrm.create_lead(
                first_name=p["first_name"],
                last_name=p["last_name"] or p["email"].split("@")[0],
                email=p["email"],
                source=p["source"],
            ),
        )
        return self._done(action, entry, action.key, result.lead.id, created=result.created)

    def _do_lead_move(self, action: Action, chain: Chain) -> Outcome:
        """Rule 22: the contact's lead takes its new email, instead of a second lead.

        A lead deleted in Espo meanwhile is not brought back under the old
        id: the next run creates one for the new address (rule 12).
        """
        p = action.params
        detail = {"email": p["email"], "contact_id": p["contact_id"], "moved_from": p["old_email"]}
        entry = self._start(action.key, action, detail)
        try:
            lead = self._guard(entry, lambda: self.sv.espocrm.move_lead(p["lead_id"], p["email"]))
        except NotFound:
            self._forget_lead(p["old_email"], action.subject, "deleted in EspoCRM")
            raise
        self._forget_lead(p["old_email"], action.subject, f"moved to {p['email']}")
        return self._done(action, entry, action.key, lead.id)

    def _forget_lead(self, old_email: str, subject: str, why: str) -> None:
        """The old address has no lead of ours any more: someone signing up with it gets one."""
        key = f"lead:{old_email}"
        entry = self.journal.start(
            key, str(ActionKind.LEAD_MOVE), subject, run_id=self.run_id, detail={"gone": why}
        )
        self.journal.mark(entry, EntryState.SKIPPED)


@contextlib.contextmanager
def _whole_batch() -> Iterator[None]:
    """A batch call refused as a whole says nothing about each person in it.

    (A proxy's 413, PATCH blocked upstream...) Its people are retried next
    run rather than each recorded as refused.
    """
    try:
        yield
    except ServiceError as exc:
        if not exc.refusal:
            raise
        raise BadResponse(exc.service, f"a batch call was refused as a whole: {exc}") from None


def refusal(exc: ServiceError) -> bool:
    """Did the vendor refuse the request itself (asking again with it cannot help)?"""
    return exc.refusal and not exc.transient


def inputs_of(action: Action) -> str:
    """A fingerprint of what an action sends: when it changes, a refusal is retried."""
    text = json.dumps([str(action.kind), action.params], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _interleave(chains: list[list[Action]]) -> list[list[Action]]:
    """People taken in turns by the Discord channel they need an invite in.

    Discord limits invite creation per channel: with the people of one
    channel first, every worker would wait on that channel's bucket while
    the other channel's stays unused. Taking them in turns keeps both busy.
    """
    lanes: dict[str, list[list[Action]]] = defaultdict(list)
    for chain in chains:
        lane = next((str(a.params["channel_id"]) for a in chain if a.kind is ActionKind.INVITE), "")
        lanes[lane].append(chain)
    ordered: list[list[Action]] = []
    queues = list(lanes.values())
    for turn in range(max(map(len, queues), default=0)):
        ordered.extend(queue[turn] for queue in queues if turn < len(queue))
    return ordered


def _purchase_detail(params: dict[str, Any] | Any) -> dict[str, Any]:
    """What `observe` needs later to know which purchase's code a contact holds."""
    keys = ("session_id", "created", "promo_code")
    detail = {k: params[k] for k in keys if k in params}
    if "changes" in params and "promo_code" in params["changes"]:
        detail["promo_code"] = params["changes"]["promo_code"]
    return detail
