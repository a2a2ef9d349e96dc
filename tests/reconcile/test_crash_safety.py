"""Crash safety: kill the run at any write, rerun, find every effect exactly once.

A "crash" is an exception no code catches (like SIGKILL, it skips every
handler between the HTTP call and the top), raised at the k-th write call of
a run, either before the request leaves or after the service applied it.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from syncctl import config as config_mod
from syncctl.clients.services import Services
from syncctl.engine.reconcile import reconcile
from syncctl.sandbox.seed import seed_demo
from syncctl.sandbox.stack import Sandbox
from syncctl.sandbox.verify import violations

from .wiring import build_services


class Crash(BaseException):
    """The process dies here."""


class CrashingTransport(httpx.HTTPTransport):
    """Counts write calls across all services; dies at the chosen one."""

    counter = 0
    lock = threading.Lock()

    def __init__(self, at: int, when: str) -> None:
        super().__init__()
        self.at = at
        self.when = when

    @staticmethod
    def is_write(request: httpx.Request) -> bool:
        path = request.url.path
        return request.method in ("POST", "PATCH", "PUT", "DELETE") and not (
            "/search/" in path or path.endswith("/oauth/token")
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        number = 0
        if self.is_write(request):
            with CrashingTransport.lock:
                CrashingTransport.counter += 1
                number = CrashingTransport.counter
            if number == self.at and self.when == "before":
                raise Crash(f"before write {number}")
        response = super().handle_request(request)
        if number == self.at and self.when == "after":
            response.read()
            raise Crash(f"after write {number}")
        return response


def crashing_services(config: config_mod.Config, at: int, when: str) -> Services:
    CrashingTransport.counter = 0
    return build_services(config, lambda service: CrashingTransport(at, when))


def sequential(config: config_mod.Config) -> config_mod.Config:
    run = config.settings.run.model_copy(update={"concurrency": 1})
    return dataclasses.replace(config, settings=config.settings.model_copy(update={"run": run}))


def campaign(tmp_path: Path, name: str) -> tuple[Sandbox, config_mod.Config]:
    sandbox = Sandbox().start()
    seed_demo(sandbox)
    config_path, env_path = sandbox.write_files(tmp_path / name)
    return sandbox, sequential(config_mod.load(config_path, env_path))


def writes_in_a_clean_run(tmp_path: Path) -> int:
    sandbox, config = campaign(tmp_path, "baseline")
    try:
        result = reconcile(config)
        assert result.ok
        return result.stats.total_writes
    finally:
        sandbox.stop()


def crashes_at_each_write(
    tmp_path: Path,
    when: str,
    total: int,
    make: Callable[[Path, str], tuple[Sandbox, config_mod.Config]],
    holds: tuple[str, ...] = (),
    *,
    audit: bool = True,
) -> dict[int, list[str]]:
    """For k = 1..total: a fresh campaign, a run killed at its k-th write, a rerun
    (and, with `audit`, a full audit that must plan nothing); what the services
    show wrong afterwards, per k."""
    problems: dict[int, list[str]] = {}
    for k in range(1, total + 1):
        sandbox, config = make(tmp_path, f"{when}-{k}")
        try:
            services = crashing_services(config, k, when)
            with pytest.raises(Crash):
                reconcile(config, services=services)
            services.close()
            runs = [reconcile(config)] + ([reconcile(config, full=True)] if audit else [])
            found = violations(sandbox, config, holds=holds)
            if not all(run.ok for run in runs):
                found.append(f"rerun failed: {[o.message for run in runs for o in run.failed]}")
            if audit and not runs[-1].plan.is_empty:
                found.append(f"audit still plans {[a.key for a in runs[-1].plan.actions]}")
            if found:
                problems[k] = found
        finally:
            sandbox.stop()
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before", "after"])
def test_a_crash_at_any_write_is_recovered_exactly_once(tmp_path: Path, when: str) -> None:
    total = writes_in_a_clean_run(tmp_path)
    assert total > 10
    assert crashes_at_each_write(tmp_path, when, total, campaign, audit=False) == {}


# -- the campaign's life after the first sale (rules 16-22) -----------------------------

HELD = "katherine.johnson@example.com"


def life_after_the_sale(sandbox: Sandbox, config: config_mod.Config) -> None:
    """A refund, a hold with a purchase behind it, a DNC contact, an erasure, a
    changed email and a new buyer, all at once after a converged first run."""
    from syncctl.sandbox.stack import VIP_PRICE_ID, VIP_PRODUCT_ID
    from syncctl.state.journal import HoldKind, Journal

    vip = [(VIP_PRICE_ID, VIP_PRODUCT_ID, 1)]
    ada = next(
        s["id"]
        for s in sandbox.stripe.sessions
        if (s.get("customer_details") or {}).get("email") == "ada.lovelace@example.com"
    )
    sandbox.stripe.refund(ada)
    with Journal.open(config.settings.run.state_path) as journal:
        journal.hold(HELD, HoldKind.EMAIL, reason="asked to wait")
    sandbox.stripe.add_session(HELD, name="Katherine Johnson", line_items=vip)
    sandbox.mautic.add_dnc(sandbox.mautic.find("grace.hopper@example.com")[0], reason=1)
    sandbox.mautic.delete_contact(sandbox.mautic.find("alan.turing@example.com")[0])
    miles = sandbox.mautic.find("miles.o'brien@example.com")[0]
    sandbox.mautic.set_fields(miles, email="miles.obrien@example.com")
    sandbox.stripe.add_session("new.buyer@example.com", name="New Buyer", line_items=vip)


def lived_campaign(tmp_path: Path, name: str) -> tuple[Sandbox, config_mod.Config]:
    sandbox, config = campaign(tmp_path, f"life-{name}")
    assert reconcile(config).ok
    life_after_the_sale(sandbox, config)
    return sandbox, config


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before", "after"])
def test_a_crash_at_any_write_after_refunds_holds_and_erasures_is_recovered_exactly_once(
    tmp_path: Path, when: str
) -> None:
    sandbox, config = lived_campaign(tmp_path, "baseline")
    try:
        clean = reconcile(config)
        assert clean.ok and violations(sandbox, config, holds=[HELD]) == []
        total = clean.stats.total_writes
    finally:
        sandbox.stop()
    assert total >= 8
    assert crashes_at_each_write(tmp_path, when, total, lived_campaign, (HELD,)) == {}
