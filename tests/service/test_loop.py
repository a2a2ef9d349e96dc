"""The cycle loop: the engine's cost per idle cycle, the shared lock, backoff, the audit."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from datetime import time as dtime

from syncctl.engine.reconcile import reconcile
from syncctl.sandbox.server import Fault
from syncctl.service.loop import AuditClock, LoopOptions, last_audit
from syncctl.state.lock import state_lock

from .conftest import coupon_sends, vip_purchase

#: What an idle `syncctl reconcile` costs today: Stripe's events page, Mautic's two
#: modified-since streams and its Do-Not-Contact table (one call a run since
#: issue 12's rules 19-20). Issue 13 asks <= 3: that is the engine's to win back;
#: the watch adds nothing to it (the test below compares with a plain run).
#: Issue 13: an idle cycle costs <= 3 calls (Stripe events, Mautic's changed
#: contacts in one query, the Do-Not-Contact entries since the last seen).
IDLE_CALLS = 3


def test_an_idle_cycle_costs_what_an_idle_reconcile_costs_and_writes_nothing(
    watching, sandbox, campaign
) -> None:
    service, cycles = watching(LoopOptions(interval=0.1, min_gap=0.05))
    sandbox.clear_logs()
    mark = time.monotonic()
    cycles.wait_for(len(cycles) + 3)
    service.request_stop("measured")
    service.finish()
    idle = cycles.after(mark)
    assert all(outcome == "ok" for _, _, outcome in idle)
    assert sandbox.write_count() == 0
    assert sum(result.stats.total_writes for _, result, _ in idle) == 0
    plain = reconcile(campaign)  # the timer's idle run, for comparison
    assert plain.plan.is_empty
    costs = {result.stats.total_calls for _, result, _ in idle}
    assert costs == {plain.stats.total_calls}
    assert plain.stats.total_calls <= IDLE_CALLS


def test_each_cycle_pings_start_then_success_under_its_own_run_id(campaign) -> None:
    import dataclasses
    from urllib.parse import parse_qs, urlsplit

    from syncctl.service.loop import CycleLoop
    from syncctl.service.metrics import Figures
    from syncctl.service.wakeup import Wakeup
    from tests.loopback import Receiver

    receiver = Receiver()
    try:
        alert = campaign.settings.alert.model_copy(update={"ping_url": f"{receiver.url}/check"})
        config = dataclasses.replace(
            campaign, settings=campaign.settings.model_copy(update={"alert": alert})
        )
        loop = CycleLoop(
            config, LoopOptions(), wakeup=Wakeup(), figures=Figures(), audit=AuditClock(None, None)
        )
        assert loop._cycle(full=False) == "ok"
        assert loop._cycle(full=False) == "ok"
        paths = [urlsplit(r.path) for r in receiver.received]
        assert [p.path for p in paths] == ["/check/start", "/check", "/check/start", "/check"]
        rids = [parse_qs(p.query)["rid"][0] for p in paths]
        assert rids[0] == rids[1] != rids[2] == rids[3]
    finally:
        receiver.close()


def test_cycles_come_every_interval_without_wakeups(watching) -> None:
    _, cycles = watching(LoopOptions(interval=0.2, min_gap=0.05), settled=1)
    cycles.wait_for(4, timeout=5)
    gaps = [b[0] - a[0] for a, b in zip(cycles.seen[1:], cycles.seen[2:], strict=False)]
    assert all(0.15 < gap < 1.0 for gap in gaps), gaps


def test_a_timer_run_holding_the_lock_keeps_watch_from_applying(
    watching, sandbox, campaign
) -> None:
    service, _ = watching()
    with state_lock(campaign.settings.run.state_path):  # the timer's reconcile, as it runs
        vip_purchase(sandbox, "during.timer@example.com")
        sandbox.clear_logs()
        service.wakeup.set("test")
        time.sleep(0.8)  # several busy retries (every 0.1 s)
        assert sandbox.call_count() == 0
        assert service.figures.cycles[("incremental", "busy")] >= 2
        assert service.loop.busy_since is not None
    deadline = time.monotonic() + 3
    while coupon_sends(sandbox, "during.timer@example.com") == 0:
        assert time.monotonic() < deadline, "the pending wake-up was not served after the lock"
        time.sleep(0.02)
    assert coupon_sends(sandbox, "during.timer@example.com") == 1


def test_a_failing_cycle_is_retried_with_backoff_and_the_loop_lives_on(watching, sandbox) -> None:
    service, cycles = watching(LoopOptions(interval=5, min_gap=0.05, backoff_initial=0.05))
    outage = sandbox.mautic.inject(Fault(method=None, path=".", status=503, times=None))
    started = time.monotonic()
    service.wakeup.set("test")
    time.sleep(1.0)
    errors = service.figures.cycles[("incremental", "error")]
    assert 3 <= errors <= 8, errors  # 0.05, 0.1, 0.2, 0.4 s apart: not 1 every 50 ms
    assert service.loop.alive and service.loop.failures >= 3
    sandbox.mautic.faults.remove(outage)
    before = len(cycles)
    cycles.wait_for(before + 1, timeout=5)
    assert cycles.seen[-1][2] == "ok"
    assert service.loop.failures == 0
    assert time.monotonic() - started < 5  # back before the 5 s interval: the backoff ended it


def test_a_failing_engine_even_by_a_bug_does_not_end_the_loop(watching) -> None:
    calls: list[float] = []

    def broken(config, **kwargs):
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise KeyError("a bug")
        return reconcile(config, **kwargs)

    service, cycles = watching(LoopOptions(interval=5, backoff_initial=0.05), run=broken, settled=1)
    assert len(calls) == 3 and service.loop.alive
    assert cycles.seen[0][2] == "ok"


def test_an_outage_error_is_one_warning_line_per_cycle(watching, sandbox, caplog) -> None:
    sandbox.mautic.inject(Fault(method=None, path=".", status=503, times=None))
    service, _ = watching(LoopOptions(interval=5, backoff_initial=0.05), settled=0)
    time.sleep(0.5)
    failed = [r for r in caplog.records if r.getMessage().startswith("cycle failed")]
    assert failed and all(r.exc_info is None for r in failed)  # no traceback for an outage
    assert service.loop.last_outcome == "error"


# -- the daily audit ----------------------------------------------------------------------


def _clock(moment: datetime):
    return lambda: moment


def test_the_audit_is_due_once_its_slot_passed_until_a_full_run_covers_it() -> None:
    now = datetime(2026, 3, 10, 4, 0).astimezone()
    clock = AuditClock(dtime(3, 30), now - timedelta(days=1), now=_clock(now))
    assert clock.due()
    clock.done(now)
    assert not clock.due()
    assert abs(clock.seconds_until_next() - 23.5 * 3600) < 1


def test_before_its_slot_the_audit_waits_for_it() -> None:
    now = datetime(2026, 3, 10, 3, 0).astimezone()
    clock = AuditClock(dtime(3, 30), now - timedelta(hours=20), now=_clock(now))
    assert not clock.due()
    assert abs(clock.seconds_until_next() - 1800) < 1


def test_no_audit_at_means_never_due() -> None:
    clock = AuditClock(None, None)
    assert not clock.due() and clock.seconds_until_next() is None


def test_an_audit_missed_while_down_is_caught_up_once_at_start(campaign, sandbox) -> None:
    state_dir = campaign.settings.run.state_path
    reconcile(campaign)  # the first run: a full read
    slot_before_it = datetime.now().astimezone() - timedelta(hours=1)
    assert last_audit(state_dir, slot_before_it) is not None  # covered: nothing to catch up
    slot_after_it = datetime.now().astimezone() + timedelta(seconds=1)
    reconcile(campaign)  # incremental runs only since...
    time.sleep(1.1)
    assert last_audit(state_dir, slot_after_it) is None  # ...the slot: catch up


def test_the_audit_cycle_is_a_full_one(watching, campaign) -> None:
    reconcile(campaign)  # a first (full) run long before...
    reconcile(campaign)
    at = (datetime.now() + timedelta(minutes=1)).time().replace(second=0, microsecond=0)
    options = LoopOptions(interval=30, audit_at=at)
    service, cycles = watching(options, settled=1)
    assert cycles.seen[0][1].mode == "incremental"  # its slot is still to come
    service.loop.audit.last_audit = datetime.now().astimezone() - timedelta(days=1)
    service.loop.audit.at = (datetime.now() - timedelta(minutes=1)).time()  # ...now it passed
    service.wakeup.set("test")
    cycles.wait_for(2)
    assert cycles.seen[1][1].mode == "full"
    assert not service.loop.audit.due()
