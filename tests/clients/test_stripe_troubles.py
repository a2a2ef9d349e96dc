"""Refunds and disputes (desired-state rule 17): the Stripe emulator and StripeAPI over loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from syncctl.sandbox.server import EmulatorServer
from syncctl.sandbox.stripe import (
    CHARGE_REFUNDED,
    DISPUTE_CLOSED,
    DISPUTE_CREATED,
    DISPUTE_FUNDS_REINSTATED,
    DISPUTE_FUNDS_WITHDRAWN,
    SESSION_COMPLETED,
    StripeEmulator,
)
from tests.clients.stripe_fixtures import (
    KEY,
    NOW,
    VIP,
    disable_nagle,
    new_emulator,
    seed_catalog,
)

PRICE = 1000  # the fixtures' VIP price, in cents


@pytest.fixture(autouse=True)
def _fast_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    disable_nagle(monkeypatch)


@pytest.fixture(scope="module")
def _shared() -> Iterator[tuple[StripeEmulator, EmulatorServer]]:
    emulator = new_emulator()
    server = EmulatorServer(emulator).start()
    yield emulator, server
    server.stop()


@pytest.fixture
def emulator(_shared: tuple[StripeEmulator, EmulatorServer]) -> StripeEmulator:
    emulator = _shared[0]
    emulator.reset()
    seed_catalog(emulator)
    return emulator


@pytest.fixture
def server(
    _shared: tuple[StripeEmulator, EmulatorServer], emulator: StripeEmulator
) -> EmulatorServer:
    return _shared[1]


def raw(server: EmulatorServer, path: str, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{server.url}{path}", params=params, headers={"Authorization": f"Bearer {KEY}"}
    )


def paid(emulator: StripeEmulator, email: str, created: int) -> dict[str, Any]:
    return emulator.add_session(email, line_items=VIP, created=created)


# -- emulator: charges ------------------------------------------------------------------------


def test_emulator_paid_session_has_a_charge_for_its_payment_intent(server, emulator):
    session = paid(emulator, "a@x.io", NOW - 60)

    (charge,) = raw(server, "/v1/charges").json()["data"]

    assert session["payment_intent"].startswith("pi_")
    assert charge["id"].startswith("ch_")
    assert charge["payment_intent"] == session["payment_intent"]
    assert (charge["amount"], charge["amount_refunded"], charge["status"]) == (
        PRICE,
        0,
        "succeeded",
    )
    assert (charge["refunded"], charge["disputed"], charge["created"]) == (False, False, NOW - 60)


def test_emulator_unpaid_session_gets_its_charge_when_the_payment_succeeds(server, emulator):
    slow = emulator.add_session("s@x.io", line_items=VIP, payment_status="unpaid")
    assert slow["payment_intent"] and raw(server, "/v1/charges").json()["data"] == []

    emulator.mark_paid(slow["id"])

    (charge,) = raw(server, "/v1/charges").json()["data"]
    assert charge["payment_intent"] == slow["payment_intent"]


def test_emulator_setup_and_open_sessions_have_no_charge(server, emulator):
    emulator.add_session("o@x.io", line_items=VIP, status="open")
    emulator.add_session("s@x.io", mode="setup", payment_status="no_payment_required")

    assert raw(server, "/v1/charges").json()["data"] == []


def test_emulator_charges_are_paged_newest_first(server, emulator):
    for i in range(5):
        paid(emulator, f"b{i}@x.io", NOW - 100 + i)

    first = raw(server, "/v1/charges", limit=3).json()
    rest = raw(server, "/v1/charges", limit=3, starting_after=first["data"][-1]["id"]).json()

    created = [c["created"] for c in first["data"] + rest["data"]]
    assert created == [NOW - 96, NOW - 97, NOW - 98, NOW - 99, NOW - 100]
    assert (first["has_more"], rest["has_more"], first["url"]) == (True, False, "/v1/charges")


def test_emulator_charges_filter_by_created_and_payment_intent(server, emulator):
    old = paid(emulator, "old@x.io", NOW - 1000)
    new = paid(emulator, "new@x.io", NOW - 10)

    recent = raw(server, "/v1/charges", **{"created[gte]": NOW - 500}).json()["data"]
    by_intent = raw(server, "/v1/charges", payment_intent=old["payment_intent"]).json()["data"]
    unknown = raw(server, "/v1/charges", payment_intent="pi_unknown").json()["data"]

    assert [c["payment_intent"] for c in recent] == [new["payment_intent"]]
    assert [c["payment_intent"] for c in by_intent] == [old["payment_intent"]]
    assert unknown == []


def test_emulator_charges_refuse_limit_above_100_and_unknown_parameters(server):
    too_many = raw(server, "/v1/charges", limit=101)
    unknown = raw(server, "/v1/charges", status="succeeded")

    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "limit"
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "status"


def test_emulator_unknown_charge_is_resource_missing(server):
    response = raw(server, "/v1/charges/ch_missing")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "resource_missing"


def test_emulator_charge_leaves_out_refunds_like_stripe_since_2022_11_15(server, emulator):
    paid(emulator, "a@x.io", NOW - 60)

    (charge,) = raw(server, "/v1/charges").json()["data"]

    assert "refunds" not in charge


# -- emulator: refunds ----------------------------------------------------------------------


def test_emulator_partial_refund_records_charge_refunded_without_refunded(emulator):
    session = paid(emulator, "a@x.io", NOW - 60)

    charge = emulator.refund(session["id"], 300, at=NOW - 30)

    assert (charge["amount_refunded"], charge["refunded"]) == (300, False)
    event = emulator.events[0]
    assert (event["type"], event["created"]) == (CHARGE_REFUNDED, NOW - 30)
    assert event["data"]["object"]["amount_refunded"] == 300
    assert event["data"]["object"]["object"] == "charge"


def test_emulator_refunds_add_up_to_a_full_refund(emulator):
    session = paid(emulator, "a@x.io", NOW - 60)

    emulator.refund(session["id"], 300)
    charge = emulator.refund(session["id"])

    assert (charge["amount_refunded"], charge["refunded"]) == (PRICE, True)
    assert [e["type"] for e in emulator.events[:2]] == [CHARGE_REFUNDED, CHARGE_REFUNDED]


def test_emulator_refund_leaves_the_session_paid(server, emulator):
    session = paid(emulator, "a@x.io", NOW - 60)

    emulator.refund(session["id"])

    shown = raw(server, f"/v1/checkout/sessions/{session['id']}").json()
    assert (shown["status"], shown["payment_status"]) == ("complete", "paid")


def test_emulator_refund_beyond_what_is_left_is_refused(emulator):
    session = paid(emulator, "a@x.io", NOW - 60)
    emulator.refund(session["id"], 900)

    with pytest.raises(ValueError, match="between 1 and 100"):
        emulator.refund(session["id"], 101)
    emulator.refund(session["id"])
    with pytest.raises(ValueError, match="already fully refunded"):
        emulator.refund(session["id"])


def test_emulator_refund_of_an_unpaid_session_is_refused(emulator):
    slow = emulator.add_session("s@x.io", line_items=VIP, payment_status="unpaid")

    with pytest.raises(KeyError, match="no paid payment"):
        emulator.refund(slow["id"])


# -- emulator: disputes ---------------------------------------------------------------------


def test_emulator_dispute_marks_the_charge_and_records_the_dispute_event(emulator):
    session = paid(emulator, "a@x.io", NOW - 60)

    dispute = emulator.dispute(session["id"], reason="product_not_received", at=NOW - 20)

    assert dispute["id"].startswith("dp_")
    assert (dispute["charge"], dispute["payment_intent"]) == (
        emulator.charge_of(session["id"])["id"],
        session["payment_intent"],
    )
    assert (dispute["status"], dispute["amount"], dispute["reason"], dispute["created"]) == (
        "needs_response",
        PRICE,
        "product_not_received",
        NOW - 20,
    )
    assert emulator.charge_of(session["id"])["disputed"] is True
    kinds = {e["type"]: e["data"]["object"] for e in emulator.events[:2]}
    assert set(kinds) == {DISPUTE_CREATED, DISPUTE_FUNDS_WITHDRAWN}
    assert kinds[DISPUTE_CREATED] == dispute


def test_emulator_inquiry_withdraws_no_funds(emulator):
    session = paid(emulator, "a@x.io", NOW - 60)

    emulator.dispute(session["id"], status="warning_needs_response")

    assert [e["type"] for e in emulator.events[:2]] == [DISPUTE_CREATED, SESSION_COMPLETED]


def test_emulator_won_dispute_keeps_the_charge_disputed(emulator):
    session = paid(emulator, "a@x.io", NOW - 60)
    dispute = emulator.dispute(session["id"])

    closed = emulator.close_dispute(dispute["id"], "won")

    assert closed["status"] == "won"
    assert emulator.charge_of(session["id"])["disputed"] is True
    assert [e["type"] for e in emulator.events[:2]] == [DISPUTE_FUNDS_REINSTATED, DISPUTE_CLOSED]


def test_emulator_inquiry_closes_as_warning_closed_and_a_chargeback_as_won_or_lost(emulator):
    inquiry = emulator.dispute(paid(emulator, "a@x.io", NOW)["id"], status="warning_under_review")
    chargeback = emulator.dispute(paid(emulator, "b@x.io", NOW)["id"])

    with pytest.raises(ValueError, match="warning_closed"):
        emulator.close_dispute(inquiry["id"], "won")
    with pytest.raises(ValueError, match="won"):
        emulator.close_dispute(chargeback["id"], "warning_closed")
    emulator.close_dispute(chargeback["id"], "lost")
    with pytest.raises(ValueError, match="already lost"):
        emulator.close_dispute(chargeback["id"], "won")


def test_emulator_second_dispute_on_one_charge_is_refused(emulator):
    session = paid(emulator, "a@x.io", NOW - 60)
    emulator.dispute(session["id"])

    with pytest.raises(ValueError, match="already disputed"):
        emulator.dispute(session["id"])


def test_emulator_disputes_list_filters_by_charge_and_payment_intent(server, emulator):
    first = paid(emulator, "a@x.io", NOW - 60)
    second = paid(emulator, "b@x.io", NOW - 50)
    emulator.dispute(first["id"], at=NOW - 40)
    wanted = emulator.dispute(second["id"], at=NOW - 30)

    by_charge = raw(server, "/v1/disputes", charge=wanted["charge"]).json()["data"]
    by_intent = raw(server, "/v1/disputes", payment_intent=second["payment_intent"]).json()
    everything = raw(server, "/v1/disputes").json()

    assert [d["id"] for d in by_charge] == [wanted["id"]]
    assert [d["id"] for d in by_intent["data"]] == [wanted["id"]]
    assert [d["created"] for d in everything["data"]] == [NOW - 30, NOW - 40]
    assert everything["url"] == "/v1/disputes"


def test_emulator_events_types_filter_mixes_charge_and_session_events(server, emulator):
    session = paid(emulator, "a@x.io", NOW - 60)
    emulator.refund(session["id"], 100, at=NOW - 50)
    emulator.dispute(session["id"], at=NOW - 40)

    response = raw(server, "/v1/events", **{"types[]": [SESSION_COMPLETED, CHARGE_REFUNDED]}).json()

    assert [e["type"] for e in response["data"]] == [CHARGE_REFUNDED, SESSION_COMPLETED]


def test_emulator_dispute_events_match_the_wildcard_type(server, emulator):
    session = paid(emulator, "a@x.io", NOW - 60)
    dispute = emulator.dispute(session["id"], at=NOW - 40)
    emulator.close_dispute(dispute["id"], "lost", at=NOW - 30)

    response = raw(server, "/v1/events", type="charge.dispute.*").json()

    assert [e["type"] for e in response["data"]] == [
        DISPUTE_CLOSED,
        DISPUTE_FUNDS_WITHDRAWN,
        DISPUTE_CREATED,
    ]


def test_emulator_restricted_key_names_the_charge_permission(server, emulator):
    emulator.deny(r"^/v1/charges")

    response = raw(server, "/v1/charges")

    assert response.status_code == 403
    assert "rak_charge_read" in response.json()["error"]["message"]
