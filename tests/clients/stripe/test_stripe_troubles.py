"""Refunds and disputes (desired-state rule 17): the Stripe emulator and StripeAPI over loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from syncctl.clients.stripe import (
    Event,
    PaymentTrouble,
    TroubleEvent,
)
from syncctl.errors import AuthRejected, BadResponse
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
    VIP_PRICE,
)

PRICE = 1000  # the fixtures' VIP price, in cents


def raw(server: EmulatorServer, path: str, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{server.url}{path}", params=params, headers={"Authorization": f"Bearer {KEY}"}
    )


def paid(emulator: StripeEmulator, email: str, created: int) -> dict[str, Any]:
    return emulator.add_session(email, line_items=VIP, created=created)


def calls(emulator: StripeEmulator, path: str) -> int:
    return len(emulator.exchanges("GET", path))


def troubles(items: Iterator[Event | TroubleEvent]) -> list[PaymentTrouble]:
    return [item.trouble for item in items if isinstance(item, TroubleEvent)]


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


# -- client: sessions know their payment --------------------------------------------------------


def test_session_carries_its_payment_intent(api, emulator):
    session = paid(emulator, "a@x.io", NOW - 60)

    (read,) = api.iter_completed_sessions()

    assert read.payment_intent == session["payment_intent"]


def test_setup_session_has_no_payment_intent(api, emulator):
    emulator.add_session("s@x.io", mode="setup", payment_status="no_payment_required")

    (read,) = api.iter_completed_sessions()

    assert read.payment_intent is None


def test_expanded_payment_intent_on_a_session_is_tolerated(api, emulator):
    session = paid(emulator, "a@x.io", NOW - 60)
    shown = emulator.session(session["id"])
    shown["payment_intent"] = {"id": session["payment_intent"], "object": "payment_intent"}
    emulator.inject(method="GET", path=r"^/v1/checkout/sessions/cs_", status=200, body=shown)

    assert api.get_session(session["id"]).payment_intent == session["payment_intent"]


def test_session_for_payment_finds_the_session_in_one_call(api, emulator):
    paid(emulator, "other@x.io", NOW - 90)
    session = paid(emulator, "a@x.io", NOW - 60)
    emulator.clear_log()

    found = api.session_for_payment(session["payment_intent"])

    assert found is not None and found.id == session["id"]
    assert found.line_items[0].price_id == VIP_PRICE
    assert len(emulator.log) == 1


def test_session_for_an_unknown_payment_is_none(api):
    assert api.session_for_payment("pi_madeOutsideCheckout") is None


# -- client: refunds and disputes from events (incremental runs) -----------------------------------


def test_purchase_events_read_sessions_and_troubles_in_one_paged_read(api, emulator):
    session = paid(emulator, "a@x.io", NOW - 60)
    emulator.refund(session["id"], at=NOW - 30)

    items = list(api.iter_purchase_events(NOW - 3600))

    assert [type(i) for i in items] == [TroubleEvent, Event]
    assert calls(emulator, r"^/v1/events$") == 1
    (listing,) = emulator.exchanges("GET", r"^/v1/events$")
    asked = [value for key, value in listing.query if key.startswith("types[")]
    assert asked == [
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "charge.refunded",
        "charge.dispute.created",
        "charge.dispute.closed",
    ]


def test_purchase_events_page_troubles_and_sessions_as_one_sequence(api, emulator):
    for i in range(4):
        session = paid(emulator, f"b{i}@x.io", NOW - 600 + i)
        emulator.refund(session["id"], at=NOW - 300 + i)

    items = list(api.iter_purchase_events(NOW - 3600, page_size=3))

    assert [i.created for i in items] == sorted((i.created for i in items), reverse=True)
    assert len(items) == 8
    assert calls(emulator, r"^/v1/events$") == 3


def test_partial_refund_event_comes_through_as_not_full(api, emulator):
    session = paid(emulator, "a@x.io", NOW - 60)
    charge = emulator.refund(session["id"], 250, at=NOW - 30)

    (trouble,) = troubles(api.iter_purchase_events(NOW - 3600))

    assert trouble == PaymentTrouble(
        payment_intent=session["payment_intent"],
        kind="refunded",
        full=False,
        created=NOW - 30,
        charge_id=charge["id"],
        amount=250,
    )


def test_full_refund_event_comes_through_as_full(api, emulator):
    session = paid(emulator, "a@x.io", NOW - 60)
    emulator.refund(session["id"], 250, at=NOW - 30)
    emulator.refund(session["id"], at=NOW - 20)

    latest, earlier = troubles(api.iter_purchase_events(NOW - 3600))

    assert (latest.full, latest.amount, latest.created) == (True, PRICE, NOW - 20)
    assert (earlier.full, earlier.amount) == (False, 250)


def test_dispute_events_carry_the_dispute_and_its_status(api, emulator):
    session = paid(emulator, "a@x.io", NOW - 60)
    dispute = emulator.dispute(session["id"], amount=600, at=NOW - 40)
    emulator.close_dispute(dispute["id"], "won", at=NOW - 10)

    closed, opened = troubles(api.iter_purchase_events(NOW - 3600))

    assert opened == PaymentTrouble(
        payment_intent=session["payment_intent"],
        kind="disputed",
        full=True,
        created=NOW - 40,
        charge_id=dispute["charge"],
        amount=600,
        dispute_id=dispute["id"],
        dispute_status="needs_response",
    )
    assert (closed.dispute_status, closed.dispute_won, opened.dispute_won) == ("won", True, False)


def test_lost_dispute_is_not_won(api, emulator):
    session = paid(emulator, "a@x.io", NOW - 60)
    dispute = emulator.dispute(session["id"], at=NOW - 40)
    emulator.close_dispute(dispute["id"], "lost", at=NOW - 10)

    closed = troubles(api.iter_purchase_events(NOW - 3600))[0]

    assert (closed.dispute_status, closed.dispute_won) == ("lost", False)


def test_trouble_events_cost_no_further_call(api, emulator):
    session = paid(emulator, "a@x.io", NOW - 60)
    emulator.refund(session["id"], at=NOW - 30)
    emulator.dispute(paid(emulator, "b@x.io", NOW - 50)["id"], at=NOW - 20)
    emulator.clear_log()

    found = troubles(api.iter_purchase_events(NOW - 45))  # after both checkouts

    assert [t.kind for t in found] == ["disputed", "refunded"]
    assert [e.path for e in emulator.log] == ["/v1/events"]


def test_session_events_leave_out_troubles_and_ask_only_for_checkout_types(api, emulator):
    session = paid(emulator, "a@x.io", NOW - 60)
    emulator.refund(session["id"], at=NOW - 30)

    events = list(api.iter_session_events(NOW - 3600))

    assert [e.type for e in events] == [SESSION_COMPLETED]
    (listing,) = emulator.exchanges("GET", r"^/v1/events$")
    assert not [v for k, v in listing.query if k.startswith("types[") and v.startswith("charge.")]


def event_page(*objects: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """An events list page holding the given (type, data.object) pairs, newest first."""
    return {
        "object": "list",
        "url": "/v1/events",
        "has_more": False,
        "data": [
            {
                "id": f"evt_{n}",
                "object": "event",
                "type": kind,
                "created": NOW - n,
                "data": {"object": obj},
            }
            for n, (kind, obj) in enumerate(objects, 1)
        ],
    }


CHARGE = {
    "id": "ch_1",
    "object": "charge",
    "payment_intent": "pi_1",
    "amount": PRICE,
    "amount_refunded": PRICE,
    "refunded": True,
    "created": NOW - 500,
}
DISPUTE = {
    "id": "dp_1",
    "object": "dispute",
    "charge": "ch_1",
    "payment_intent": "pi_1",
    "amount": PRICE,
    "status": "needs_response",
    "created": NOW - 100,
}


def serve_events(emulator: StripeEmulator, *objects: tuple[str, dict[str, Any]]) -> None:
    emulator.inject(method="GET", path=r"^/v1/events$", status=200, body=event_page(*objects))


def test_refund_of_a_charge_without_payment_intent_is_skipped(api, emulator):
    serve_events(emulator, (CHARGE_REFUNDED, CHARGE | {"payment_intent": None}))

    assert list(api.iter_purchase_events(NOW - 3600)) == []


def test_refund_event_without_the_refunded_flag_is_judged_by_its_amounts(api, emulator):
    partial = {k: v for k, v in CHARGE.items() if k != "refunded"} | {"amount_refunded": 10}
    serve_events(emulator, (CHARGE_REFUNDED, partial))

    (trouble,) = troubles(api.iter_purchase_events(NOW - 3600))

    assert (trouble.full, trouble.amount) == (False, 10)


def test_refunded_flag_wins_over_the_amounts(api, emulator):
    # A partial capture refunded in full: Stripe says refunded below `amount`.
    captured = CHARGE | {"amount_refunded": 600, "refunded": True}
    serve_events(emulator, (CHARGE_REFUNDED, captured))

    (trouble,) = troubles(api.iter_purchase_events(NOW - 3600))

    assert trouble.full


def test_refund_event_saying_nothing_about_refunds_raises_bad_response(api, emulator):
    bare = {k: v for k, v in CHARGE.items() if k not in ("refunded", "amount_refunded")}
    serve_events(emulator, (CHARGE_REFUNDED, bare))

    with pytest.raises(BadResponse, match="refunded"):
        list(api.iter_purchase_events(NOW - 3600))


def test_expanded_payment_intent_on_a_refunded_charge_is_tolerated(api, emulator):
    expanded = CHARGE | {"payment_intent": {"id": "pi_1", "object": "payment_intent"}}
    serve_events(emulator, (CHARGE_REFUNDED, expanded))

    (trouble,) = troubles(api.iter_purchase_events(NOW - 3600))

    assert trouble.payment_intent == "pi_1"


def test_dispute_with_an_expanded_charge_takes_its_payment_intent(api, emulator):
    expanded = DISPUTE | {"charge": CHARGE, "payment_intent": None}
    serve_events(emulator, (DISPUTE_CREATED, expanded))

    (trouble,) = troubles(api.iter_purchase_events(NOW - 3600))

    assert (trouble.charge_id, trouble.payment_intent) == ("ch_1", "pi_1")


def test_dispute_without_the_payment_intent_field_reads_its_charge_once(api, emulator):
    session = paid(emulator, "a@x.io", NOW - 600)
    charge = emulator.charge_of(session["id"])
    bare = {k: v for k, v in DISPUTE.items() if k != "payment_intent"} | {"charge": charge["id"]}
    serve_events(emulator, (DISPUTE_CLOSED, bare | {"status": "won"}), (DISPUTE_CREATED, bare))

    found = troubles(api.iter_purchase_events(NOW - 3600))

    assert [t.payment_intent for t in found] == [session["payment_intent"]] * 2
    assert calls(emulator, r"^/v1/charges/ch_") == 1


def test_dispute_with_a_null_payment_intent_reads_its_charge(api, emulator):
    session = paid(emulator, "a@x.io", NOW - 600)
    charge = emulator.charge_of(session["id"])["id"]
    serve_events(emulator, (DISPUTE_CREATED, DISPUTE | {"payment_intent": None, "charge": charge}))

    (trouble,) = troubles(api.iter_purchase_events(NOW - 3600))

    assert trouble.payment_intent == session["payment_intent"]
    assert calls(emulator, r"^/v1/charges/ch_") == 1


def test_dispute_of_a_charge_without_payment_intent_is_skipped(api, emulator):
    session = paid(emulator, "a@x.io", NOW - 600)
    legacy = emulator.charge_of(session["id"]) | {"payment_intent": None}
    emulator.inject(method="GET", path=r"^/v1/charges/ch_", status=200, body=legacy)
    serve_events(emulator, (DISPUTE_CREATED, DISPUTE | {"payment_intent": None}))

    assert list(api.iter_purchase_events(NOW - 3600)) == []


def test_event_object_of_the_wrong_kind_raises_bad_response(api, emulator):
    serve_events(emulator, (DISPUTE_CREATED, CHARGE))

    with pytest.raises(BadResponse, match="not a dispute"):
        list(api.iter_purchase_events(NOW - 3600))


def test_event_of_a_type_not_asked_for_raises_bad_response(api, emulator):
    serve_events(emulator, ("charge.succeeded", CHARGE))

    with pytest.raises(BadResponse, match="not asked for"):
        list(api.iter_purchase_events(NOW - 3600))


# -- client: refunds and disputes from charges (full runs) -----------------------------------------


def test_payment_troubles_yield_fully_refunded_and_disputed_charges(api, emulator):
    refunded = paid(emulator, "r@x.io", NOW - 300)
    disputed = paid(emulator, "d@x.io", NOW - 200)
    paid(emulator, "fine@x.io", NOW - 100)
    emulator.refund(refunded["id"])
    dispute = emulator.dispute(disputed["id"], status="warning_needs_response")

    found = list(api.iter_payment_troubles())

    assert [(t.payment_intent, t.kind, t.full) for t in found] == [
        (refunded["payment_intent"], "refunded", True),
        (disputed["payment_intent"], "disputed", True),
    ]
    assert found[0].created == NOW - 300  # the charge's time: a charge has no refund time
    assert (found[1].dispute_id, found[1].dispute_status) == (
        dispute["id"],
        "warning_needs_response",
    )


def test_payment_troubles_leave_out_partial_refunds(api, emulator):
    session = paid(emulator, "p@x.io", NOW - 300)
    emulator.refund(session["id"], 999)

    assert list(api.iter_payment_troubles()) == []


def test_won_dispute_is_still_reported_with_its_status(api, emulator):
    session = paid(emulator, "w@x.io", NOW - 300)
    emulator.close_dispute(emulator.dispute(session["id"])["id"], "won")

    (trouble,) = api.iter_payment_troubles()

    assert (trouble.kind, trouble.dispute_status, trouble.dispute_won) == ("disputed", "won", True)


def test_refunded_and_disputed_charge_yields_both(api, emulator):
    session = paid(emulator, "b@x.io", NOW - 300)
    emulator.dispute(session["id"])
    emulator.refund(session["id"])

    assert sorted(t.kind for t in api.iter_payment_troubles()) == ["disputed", "refunded"]


def test_payment_troubles_page_charges_100_at_a_time(api, emulator):
    emulator.add_sessions(
        {"email": f"b{i}@x.io", "line_items": VIP, "created": NOW - 1000 + i} for i in range(250)
    )

    assert list(api.iter_payment_troubles()) == []
    listings = emulator.exchanges("GET", r"^/v1/charges$")
    assert len(listings) == 3
    assert all(("limit", "100") in e.query for e in listings)


def test_payment_troubles_read_disputes_only_when_a_charge_is_disputed(api, emulator):
    emulator.refund(paid(emulator, "r@x.io", NOW - 300)["id"])

    list(api.iter_payment_troubles())

    assert calls(emulator, r"^/v1/disputes") == 0


def test_payment_troubles_since_bounds_charges_and_disputes(api, emulator):
    old = paid(emulator, "old@x.io", NOW - 5000)
    new = paid(emulator, "new@x.io", NOW - 100)
    emulator.dispute(old["id"], at=NOW - 50)
    emulator.dispute(new["id"], at=NOW - 40)

    found = list(api.iter_payment_troubles(NOW - 1000))

    assert [t.payment_intent for t in found] == [new["payment_intent"]]
    for path in (r"^/v1/charges$", r"^/v1/disputes$"):
        (listing,) = emulator.exchanges("GET", path)
        assert ("created[gte]", str(NOW - 1000)) in listing.query


def test_disputed_charge_without_a_listed_dispute_is_still_reported(api, emulator):
    session = paid(emulator, "d@x.io", NOW - 300)
    emulator.dispute(session["id"])
    emulator.inject(
        method="GET",
        path=r"^/v1/disputes$",
        status=200,
        body={"object": "list", "data": [], "has_more": False, "url": "/v1/disputes"},
    )

    (trouble,) = api.iter_payment_troubles()

    assert (trouble.kind, trouble.dispute_id, trouble.dispute_status) == ("disputed", None, None)


def test_newest_dispute_of_a_charge_is_the_one_reported(api, emulator):
    session = paid(emulator, "d@x.io", NOW - 300)
    emulator.dispute(session["id"])
    older = DISPUTE | {"id": "dp_old", "charge": emulator.charge_of(session["id"])["id"]}
    page = {
        "object": "list",
        "url": "/v1/disputes",
        "has_more": False,
        "data": [older | {"id": "dp_new", "status": "lost"}, older | {"status": "won"}],
    }
    emulator.inject(method="GET", path=r"^/v1/disputes$", status=200, body=page)

    (trouble,) = api.iter_payment_troubles()

    assert (trouble.dispute_id, trouble.dispute_status) == ("dp_new", "lost")


def test_check_payment_access_reads_one_charge_and_one_dispute(api, emulator, stats):
    api.check_payment_access()

    assert [(e.path, ("limit", "1") in e.query) for e in emulator.log] == [
        ("/v1/charges", True),
        ("/v1/disputes", True),
    ]


def test_key_without_charge_access_raises_auth_rejected_naming_charges(api, emulator):
    emulator.deny(r"^/v1/charges")

    with pytest.raises(AuthRejected) as caught:
        list(api.iter_payment_troubles())

    assert "Charges" in (caught.value.hint or "")


@pytest.mark.parametrize(
    ("status", "won"),
    [
        ("won", True),
        ("warning_closed", True),
        ("prevented", True),
        ("lost", False),
        ("needs_response", False),
        (None, False),
    ],
)
def test_only_a_dispute_that_kept_the_money_counts_as_won(status: str | None, won: bool) -> None:
    trouble = PaymentTrouble("pi_1", "disputed", True, 0, "ch_1", dispute_status=status)
    assert trouble.dispute_won is won
