"""One reconcile run: lock, recover, observe, plan, apply, remember.

The order matters: the lock makes runs exclusive; recovery settles what an
interrupted run left in flight before anything is planned; observe and plan
are the same code in a dry run and a real one (only the writes are skipped);
cursors move only once the work they cover is done, and never in a dry run.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from syncctl.clients.services import Services
from syncctl.config import Config
from syncctl.engine.apply import UNRESOLVED, Applier, Outcome, Status
from syncctl.engine.budget import alarms, cap, refusal
from syncctl.engine.codes import invite_code
from syncctl.engine.model import (
    Action,
    ActionKind,
    Plan,
    Snapshot,
    Tier,
    holders,
    newest_purchases,
)
from syncctl.engine.observe import Observation, observe
from syncctl.engine.plan import plan as make_plan
from syncctl.engine.recover import Recovery, Resolution
from syncctl.engine.settle import Settled, settle
from syncctl.engine.stop import StopRequest
from syncctl.engine.troubles import REFUND_KIND, refund_key
from syncctl.engine.troubles import news as trouble_news
from syncctl.net.http import CallStats
from syncctl.state.journal import EntryState, Journal, open_for_run

FORMAT_VERSION = 1


@dataclass
class RunResult:
    mode: str
    dry_run: bool
    plan: Plan
    outcomes: list[Outcome] = field(default_factory=list)
    recovered: list[Resolution] = field(default_factory=list)
    unresolved_before: int = 0  # in-flight rows a dry run left alone
    stats: CallStats = field(default_factory=CallStats)
    scanned: dict[str, int] = field(default_factory=dict)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    duration: float = 0.0
    refused: bool = False
    #: Why the plan was refused whole (rule 24's mistake guard), one line.
    refusal: str = ""
    max_actions: int = 0
    #: Actions over max_actions, left for the next runs (a dry run: would be).
    deferred: tuple[Action, ...] = ()
    run_id: int | None = None
    #: Services that could not be read (service -> error); what depends on
    #: them waited, the rest went on.
    observe_errors: dict[str, str] = field(default_factory=dict)
    #: What the run settled itself after trouble (lost answers checked, retries).
    settled: Settled = field(default_factory=Settled)
    #: Asked to stop while applying (the signal's name): what was not started waits.
    interrupted: str = ""

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status is Status.FAILED]

    @property
    def held(self) -> list[Outcome]:
        """Actions skipped because the service refused them before with these inputs."""
        return [o for o in self.outcomes if o.refused and o.status is Status.SKIPPED]

    @property
    def applied(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status is Status.DONE]

    @property
    def ok(self) -> bool:
        # A held refusal is not asked again, but it is not done either: every
        # run that plans it (the nightly audit does) says so in its exit status.
        return (
            not self.failed
            and not self.held
            and not self.refused
            and not self.observe_errors
            and not any(r.result == "unresolved" for r in self.recovered)
            and not any(o.message == UNRESOLVED for o in self.outcomes)
            and not self.plan.blocked
        )

    def exit_code(self, detailed: bool) -> int:
        """0 in sync / all done; 1 failures; 4 refused; detailed: 2 changes;
        130/143 stopped by SIGINT/SIGTERM."""
        if self.interrupted:
            return 143 if self.interrupted == "SIGTERM" else 130
        if self.refused:
            return 4
        if not self.ok:
            return 1
        if detailed and (not self.plan.is_empty or self.recovered):
            return 2
        return 0

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "mode": self.mode,
            "dry_run": self.dry_run,
            "started_at": self.started_at.isoformat(),
            "duration_seconds": round(self.duration, 3),
            "refused": self.refused,
            "refusal": self.refusal or None,
            "interrupted": self.interrupted or None,
            "max_actions": self.max_actions,
            "deferred": [a.key for a in self.deferred],
            "plan": {
                "actions": [a.to_dict() for a in self.plan.actions],
                "notes": [n.to_dict() for n in self.plan.notes],
                "counts": self.plan.counts(),
            },
            "outcomes": [o.to_dict() for o in self.outcomes],
            "recovered": [r.to_dict() for r in self.recovered],
            "settled": {
                "rounds": self.settled.rounds,
                "retried": self.settled.retried,
                "checked": [r.to_dict() for r in self.settled.resolutions],
            },
            "service_errors": dict(self.observe_errors),
            "api_calls": {
                name: {
                    "reads": s.reads,
                    "writes": s.writes,
                    "retries": s.retries,
                    "throttled": s.throttled,
                }
                for name, s in sorted(self.stats.services.items())
            },
            "scanned": self.scanned,
        }


def reconcile(
    config: Config,
    *,
    dry_run: bool = False,
    full: bool = False,
    max_actions: int | None = None,
    wait: bool = False,
    retry_refused: bool = False,
    allow_mass_change: bool = False,
    stop: StopRequest | None = None,
    progress: Callable[[str], None] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    services: Services | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    on_wait: Callable[[str], None] | None = None,
    on_start: Callable[[], None] | None = None,
    journal: Journal | None = None,
) -> RunResult:
    """Run once; the result says what was planned and what happened.

    `on_plan` hears the plan just before it is applied (a progress bar's
    total); `on_wait`, with `wait`, who holds the lock it waits for;
    `on_start`, once the run has begun (a real run holds the lock then),
    before anything is read: the alert pings' `/start` (`syncctl.alert`).
    `journal`: a journal that holds the run lock already (a long-running
    leader, e.g. `watch` keeping a shared store's lock between cycles, or
    a standby that took it over with `open_for_run(..., wait=True,
    timeout=...)`); by default the run opens and locks its own.
    """
    settings = config.settings
    config.secrets.require()
    code_secret = config.secret("SYNCCTL_CODE_SECRET")
    limit = max_actions or settings.run.max_actions
    started = time.monotonic()
    with (
        _journal(config, journal, dry_run=dry_run, wait=wait, on_wait=on_wait) as journal,
        _services(config, services) as sv,
        fenced(sv, journal),
    ):
        run_id = (
            None if dry_run else journal.begin_run("full" if full else "incremental", dry_run=False)
        )
        if on_start is not None:
            on_start()
        result = RunResult(
            mode="", dry_run=dry_run, plan=Plan(), stats=sv.stats, max_actions=limit, run_id=run_id
        )
        finished = False
        try:
            stop = stop or StopRequest()
            applier = Applier(
                sv,
                journal,
                settings,
                run_id,
                on_outcome=on_outcome,
                retry_refused=retry_refused,
                stop=stop,
            )
            if dry_run:
                result.unresolved_before = len(journal.in_flight())
            else:
                result.recovered = Recovery(sv, journal, applier).run()
            stop.reading = True
            try:
                observation = observe(
                    sv, journal, settings, code_secret, full=full, progress=progress
                )
            finally:
                stop.reading = False
            result.mode = observation.mode
            result.scanned = observation.scanned
            result.observe_errors = observation.errors
            snapshot = observation.snapshot
            result.plan = make_plan(snapshot, settings)
            contacts = _contacts_total(journal, snapshot)
            found = alarms(
                result.plan,
                emailed=_emailed(snapshot),
                contacts=contacts,
                settings=settings.run,
            )
            if found and not allow_mass_change:
                result.refused = True
                result.refusal = refusal(found)
            taken, result.deferred = cap(result.plan, limit)
            if dry_run or result.refused:
                finished = True
                return result
            scope = Scope.of(snapshot)
            with journal.batch():  # observed facts, apart from what the plan will do
                _adopt(journal, snapshot)
                if snapshot.full:
                    journal.set_meta(META_CONTACTS, str(contacts))
            # The plan carries what applying needs: let the snapshot go (at
            # 100k contacts some 70 MB) before the run's busiest part.
            observation.snapshot = snapshot = Snapshot()
            if on_plan is not None:
                on_plan(taken)
            stop.applying = True
            try:
                outcomes = applier.apply(taken)
                result.outcomes, result.settled = settle(
                    applier, lambda: Recovery(sv, journal, applier), outcomes, stop=stop.is_set
                )
            finally:
                stop.applying = False
            result.interrupted = stop.reason if stop.is_set() else ""
            _remember(journal, observation, scope, result)
            finished = True
            return result
        finally:
            result.duration = time.monotonic() - started
            if stop is not None and stop.is_set() and not result.interrupted:
                result.interrupted = stop.reason  # stopped before it applied anything
            if run_id is not None and not journal.lost:
                word = _outcome_word(result) if finished or result.interrupted else "failed"
                journal.finish_run(run_id, word, _summary(result))


@contextlib.contextmanager
def _journal(
    config: Config,
    given: Journal | None,
    *,
    dry_run: bool,
    wait: bool,
    on_wait: Callable[[str], None] | None,
) -> Iterator[Journal]:
    if given is not None:
        yield given
        return
    with open_for_run(config.state, readonly=dry_run, wait=wait, on_wait=on_wait) as journal:
        yield journal


@contextlib.contextmanager
def fenced(sv: Services, journal: Journal) -> Iterator[None]:
    """Fencing for a shared store: no vendor write once the run lock is lost.

    Every intent is written on the lock's connection in a transaction that
    proves the lock is held; the HTTP layer also asks before each write it
    sends (a retry after a 429 included), so a run whose connection was cut
    makes no side effect after the cut. Nothing to do for SQLite (a flock
    cannot be lost by a living process) or a dry run.
    """
    if not journal.shared or journal.readonly:
        yield
        return
    sv.guard_writes(journal.check_leadership)
    try:
        yield
    finally:
        sv.guard_writes(None)


@contextlib.contextmanager
def _services(config: Config, given: Services | None) -> Iterator[Services]:
    if given is not None:
        yield given
        return
    with Services.connect(config) as sv:
        yield sv


@dataclass(frozen=True)
class Scope:
    """What a run observed, by id: its items stay pending or are let go after it."""

    sessions: frozenset[str]
    contacts: frozenset[int]

    @classmethod
    def of(cls, snapshot: Snapshot) -> Scope:
        return cls(
            frozenset(p.session_id for p in snapshot.purchases),
            frozenset(c.id for c in snapshot.contacts),
        )


def _remember(journal: Journal, observation: Observation, scope: Scope, result: RunResult) -> None:
    """Keep failed items pending, drop finished ones, then move the cursors."""
    retry_sessions: set[str] = set()
    retry_contacts: set[str] = set()
    waiting = [o.action for o in result.outcomes if o.retry] + list(result.deferred)
    for action in waiting:
        params = action.params
        if "session_id" in params:
            retry_sessions.add(str(params["session_id"]))
        if isinstance(params.get("contact_id"), int):
            retry_contacts.add(str(params["contact_id"]))
    # With a service unread, what depends on its facts was not planned at all:
    # an item in scope without a failure is not finished, so nothing is let go.
    settled = not observation.errors
    with journal.batch():
        for sid in sorted(scope.sessions):
            if sid in retry_sessions:
                journal.add_pending("session", sid, "an action failed")
            elif settled:
                journal.remove_pending("session", sid)
        for cid in sorted(scope.contacts):
            if str(cid) in retry_contacts:
                journal.add_pending("contact", str(cid), "an action failed")
            elif settled:
                journal.remove_pending("contact", str(cid))
        for sid in retry_sessions - scope.sessions:
            journal.add_pending("session", sid, "an action failed")
        for ref in retry_contacts - {str(c) for c in scope.contacts}:
            journal.add_pending("contact", ref, "an action failed or waits")
        # Held items stay pending: the first run after the release finds them,
        # although nothing about them changed in the services (rule 18).
        for sid in sorted(result.plan.held_sessions):
            journal.add_pending("session", sid, "held")
        for cid in sorted(result.plan.held_contacts):
            journal.add_pending("contact", str(cid), "held")
        for kind, ref in observation.gone:
            journal.remove_pending(kind, ref)
        if observation.errors:
            return  # what was not seen is read again next run: cursors stay
        for name, value in observation.cursors.items():
            journal.set_cursor(name, value)


def _adopt(journal: Journal, snapshot: Snapshot) -> None:
    """Record what the services showed was done, so later runs need not ask again.

    After a lost state dir, or for work the old workflows did, a full run
    derives these facts from the services; writing them down keeps the next
    incremental runs at a handful of calls.
    """
    # Unresolved attempts are recovery's: the journal's few in-flight rows.
    open_attempts = {entry.key for entry in journal.in_flight()}

    def record(facts: Iterable[Fact], *, checked: bool = False) -> None:
        """Write (key, kind, subject, ref, detail) facts the journal lacks, a chunk at a time.

        A first run over 100k contacts observes some 150k facts: held all at
        once beside the snapshot, they would set the run's peak memory.
        `checked`: the facts were compared with the journal already.
        """
        items = iter(facts)
        while chunk := list(itertools.islice(items, _ADOPT_CHUNK)):
            keys = [key for key, *_ in chunk]
            todo = set(keys if checked else journal.not_done(keys)) - open_attempts
            for key, kind, subject, ref, detail in sorted(
                (f for f in chunk if f[0] in todo), key=lambda f: f[0]
            ):
                entry = journal.start(
                    key, kind, subject, run_id=None, detail={"observed": True, **detail}
                )
                journal.mark(entry, EntryState.DONE, ref=ref)

    mail, lead, coupon = str(ActionKind.MAIL), str(ActionKind.LEAD), str(ActionKind.COUPON)
    emails = {c.id: c.email or "" for c in snapshot.contacts}

    def subject_of(mail_key: str) -> str:
        contact_id = mail_key.split(":")[2]
        return emails.get(int(contact_id), "") if contact_id.isdigit() else ""

    # A send found in the stats keeps its logged time: it claims that send later.
    record((key, mail, subject_of(key), None, _sent_at(snapshot, key)) for key in snapshot.sent)
    record((f"lead:{email}", lead, email, None, {}) for email in snapshot.leads)
    record(
        (f"coupon:{p.session_id}", coupon, p.email or "", p.code, {})
        for p in snapshot.purchases
        if p.code in snapshot.existing_codes
    )
    record(_held_codes(snapshot))
    # Rule 17: a refund's event is read once; the journal keeps what it said.
    bought = [p for p in snapshot.purchases if p.vip and p.paid]
    refs = journal.done_refs(refund_key(p.session_id) for p in bought) if bought else {}
    record(
        (
            (key, REFUND_KIND, p.email or "", ref, {"payment_intent": p.payment_intent})
            for key, p, ref in trouble_news(bought, refs)
        ),
        checked=True,
    )
    # An invite the journal knows as done with another code than the contact
    # holds is news too: compared with the journal's refs, not just its state.
    record(
        (
            (key, kind, subject, ref, {})
            for key, (kind, subject, ref) in _stored_invites(journal, snapshot).items()
        ),
        checked=True,
    )


#: Facts checked against the journal and written per chunk.
_ADOPT_CHUNK = 5000
#: What a full run saw done: (key, kind, subject, ref, detail) of a journal row.
Fact = tuple[str, str, str, str | None, dict[str, Any]]


def _sent_at(snapshot: Snapshot, key: str) -> dict[str, str]:
    when = snapshot.sent_at.get(key)
    return {"sent_at": when.astimezone(UTC).isoformat()} if when else {}


def _held_codes(snapshot: Snapshot) -> Iterator[Fact]:
    """Buyers whose contact holds their latest purchase's code, as rule 2's record.

    An incremental run sees only new sessions; a delayed payment of an older
    purchase must not replace the newer code the contact holds. Planning
    compares with the latest purchase the journal stored; after a lost state
    dir, this is where the full run writes it down.
    """
    latest = newest_purchases(snapshot.purchases)
    if not latest:
        return
    holder = holders(c for c in snapshot.contacts if c.email in latest)
    update = str(ActionKind.CONTACT_UPDATE)
    for email, p in sorted(latest.items()):
        held = holder.get(email)
        if held is not None and held.vip and held.promo_code == p.code:
            yield (
                f"vip:{held.id}:{p.code}",
                update,
                email,
                None,
                {"session_id": p.session_id, "created": p.created, "promo_code": p.code},
            )


def _stored_invites(journal: Journal, snapshot: Snapshot) -> dict[str, tuple[str, str, str]]:
    """Live invites of the bot that contacts hold, not known to the journal as ours.

    The old workflows minted them (or a lost state dir forgot them). Once
    written down, an operator clearing the field later gets the old invite
    revoked by the incremental run that reissues it (rule 13), instead of
    leaving it to the nightly audit.
    """
    if snapshot.invites is None:
        return {}
    held: dict[str, tuple[str, str]] = {}
    for c in snapshot.contacts:
        for tier in Tier:
            code = invite_code(c.link(tier))
            if code and code in snapshot.invites:
                held[f"invite:{c.id}:{tier}"] = (c.email or "", code)
    if not held:
        return {}
    known = journal.latest_many(held)
    return {
        key: (str(ActionKind.INVITE), email, code)
        for key, (email, code) in held.items()
        if key not in known or known[key].state is not EntryState.DONE or known[key].ref != code
    }


#: Contacts the last full read counted: the scale a mistake is judged on.
META_CONTACTS = "mautic.contacts"


def _contacts_total(journal: Journal, snapshot: Snapshot) -> int:
    if snapshot.full:
        return len(snapshot.contacts)
    known = journal.get_meta(META_CONTACTS)
    return max(int(known) if known and known.isdigit() else 0, len(snapshot.contacts))


def _emailed(snapshot: Snapshot) -> set[tuple[int, int]]:
    """(email id, contact id) pairs sent before: the journal's sends and Mautic's log."""
    pairs = set(snapshot.logged_sends)
    for key in snapshot.sent:
        _, email_id, contact_id, _ = key.split(":", 3)
        if email_id.isdigit() and contact_id.isdigit():
            pairs.add((int(email_id), int(contact_id)))
    return pairs


def _outcome_word(result: RunResult) -> str:
    if result.interrupted:
        return "interrupted"
    if result.refused:
        return "refused"
    if not result.ok:
        return "failed"
    return "ok"


def _summary(result: RunResult) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for outcome in result.outcomes:
        counts[str(outcome.status)] = counts.get(str(outcome.status), 0) + 1
    return {
        "mode": result.mode,
        "planned": len(result.plan),
        "outcomes": counts,
        "calls": result.stats.total_calls,
        "writes": result.stats.total_writes,
        "duration_seconds": round(result.duration, 3),
    }
