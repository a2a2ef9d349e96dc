"""StripeAPI against the Stripe emulator over real loopback HTTP."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from syncctl.clients.stripe import CheckoutSession, Event, LineItem, Price, Product, StripeAPI
from syncctl.errors import (
    AuthRejected,
    BadResponse,
    InvalidRequest,
    NotFound,
    RateLimited,
    Unavailable,
)
from syncctl.sandbox.server import EmulatorServer
from syncctl.sandbox.stripe import (
    ASYNC_PAYMENT_SUCCEEDED,
    SESSION_COMPLETED,
    StripeEmulator,
    mask_key,
)
from tests.clients.stripe_fixtures import (
    BASIC_PRICE,
    BASIC_PRODUCT,
    KEY,
    NOW,
    VIP,
    VIP_PRICE,
    VIP_PRODUCT,
)


def list_calls(emulator: StripeEmulator, path: str = r"^/v1/checkout/sessions$") -> int:
    return len(emulator.exchanges("GET", path))


# -- listing sessions ---------------------------------------------------------------------


def test_completed_sessions_come_newest_first_across_pages(api, emulator):
    ids = [
        emulator.add_session(f"b{i}@x.io", line_items=VIP, created=NOW - 100 + i)["id"]
        for i in range(25)
    ]

    sessions = list(api.iter_completed_sessions(NOW - 1000, page_size=10))

    assert [s.id for s in sessions] == list(reversed(ids))
    assert list_calls(emulator) == 3


def test_completed_sessions_are_fetched_lazily(api, emulator):
    for i in range(30):
        emulator.add_session(f"b{i}@x.io", line_items=VIP, created=NOW - 100 + i)

    first = next(api.iter_completed_sessions(page_size=10))

    assert first.email == "b29@x.io"
    assert list_calls(emulator) == 1


def test_created_gte_is_inclusive_and_excludes_older_sessions(api, emulator):
    emulator.add_session("old@x.io", line_items=VIP, created=NOW - 3600)
    edge = emulator.add_session("edge@x.io", line_items=VIP, created=NOW - 600)

    sessions = list(api.iter_completed_sessions(NOW - 600))

    assert [s.id for s in sessions] == [edge["id"]]


def test_open_and_expired_sessions_are_not_listed(api, emulator):
    emulator.add_session("open@x.io", line_items=VIP, status="open", created=NOW - 10)
    gone = emulator.add_session("gone@x.io", line_items=VIP, status="open", created=NOW - 9)
    emulator.expire_session(gone["id"])
    done = emulator.add_session("done@x.io", line_items=VIP, created=NOW - 8)

    assert [s.id for s in api.iter_completed_sessions()] == [done["id"]]


def test_page_size_above_stripe_maximum_is_clamped_to_100(api, emulator):
    emulator.add_session("a@x.io", line_items=VIP)

    list(api.iter_completed_sessions(page_size=500))

    assert ("limit", "100") in emulator.exchanges("GET", r"^/v1/checkout/sessions$")[0].query


def test_session_fields_are_parsed(api, emulator):
    emulator.add_session(
        "Ada@Example.com",
        name="Ada Lovelace",
        line_items=[(VIP_PRICE, VIP_PRODUCT, 2)],
        created=NOW - 5,
        metadata={"campaign": "spring"},
    )

    (session,) = api.iter_completed_sessions()

    assert isinstance(session, CheckoutSession)
    assert session.created == NOW - 5
    assert (session.status, session.payment_status, session.mode) == ("complete", "paid", "payment")
    assert (session.email, session.name) == ("Ada@Example.com", "Ada Lovelace")
    assert session.metadata == {"campaign": "spring"}
    (item,) = session.line_items
    assert item == LineItem(
        id=item.id,
        price_id=VIP_PRICE,
        product_id=VIP_PRODUCT,
        quantity=2,
        description="VIP reservation",
    )


def test_email_falls_back_to_prefilled_customer_email(api, emulator):
    emulator.add_session(None, customer_email="prefill@x.io", line_items=VIP)

    (session,) = api.iter_completed_sessions()

    assert session.email == "prefill@x.io"


# -- payment status pitfalls ----------------------------------------------------------------


def test_complete_but_unpaid_session_is_listed_but_not_paid(api, emulator):
    emulator.add_session("slow@x.io", line_items=VIP, payment_status="unpaid")

    (session,) = api.iter_completed_sessions()

    assert session.status == "complete"
    assert not session.is_paid


def test_unpaid_session_becomes_paid_after_async_success(api, emulator):
    created = emulator.add_session("slow@x.io", line_items=VIP, payment_status="unpaid")
    emulator.mark_paid(created["id"])

    assert api.get_session(created["id"]).is_paid


def test_no_payment_required_is_not_a_purchase(api, emulator):
    emulator.add_session("free@x.io", line_items=VIP, payment_status="no_payment_required")

    (session,) = api.iter_completed_sessions()

    assert not session.is_paid


# -- line items ------------------------------------------------------------------------------


def test_line_items_beyond_the_embedded_handful_are_paged(api, emulator):
    items = [(BASIC_PRICE, BASIC_PRODUCT, 1)] * 6 + [(VIP_PRICE, VIP_PRODUCT, 1)]
    emulator.add_session("many@x.io", line_items=items)

    (session,) = api.iter_completed_sessions()

    assert len(session.line_items) == 7
    assert session.line_items[-1].price_id == VIP_PRICE
    (extra,) = emulator.exchanges("GET", r"/line_items$")
    assert ("starting_after", session.line_items[4].id) in extra.query


def test_line_items_over_several_endpoint_pages_are_all_read(api, emulator):
    emulator.add_session("bulk@x.io", line_items=[(BASIC_PRICE, BASIC_PRODUCT, 1)] * 230)

    (session,) = api.iter_completed_sessions()

    assert len({item.id for item in session.line_items}) == 230
    assert len(emulator.exchanges("GET", r"/line_items$")) == 3


def test_get_session_returns_all_line_items(api, emulator):
    created = emulator.add_session("one@x.io", line_items=[(VIP_PRICE, VIP_PRODUCT, 1)] * 8)

    session = api.get_session(created["id"])

    assert [item.id for item in session.line_items] == [
        item["id"] for item in emulator.session(created["id"])["line_items"]["data"]
    ]


def test_get_unknown_session_raises_not_found(api):
    with pytest.raises(NotFound, match="cs_test_missing"):
        api.get_session("cs_test_missing")


# -- events ----------------------------------------------------------------------------------


def test_session_events_include_completed_and_async_succeeded(api, emulator):
    paid = emulator.add_session("now@x.io", line_items=VIP, created=NOW - 60)
    slow = emulator.add_session(
        "slow@x.io", line_items=VIP, payment_status="unpaid", created=NOW - 50
    )
    emulator.mark_paid(slow["id"])

    events = list(api.iter_session_events(NOW - 3600))

    assert [(e.type, e.session.id) for e in events] == [
        (ASYNC_PAYMENT_SUCCEEDED, slow["id"]),
        (SESSION_COMPLETED, slow["id"]),
        (SESSION_COMPLETED, paid["id"]),
    ]
    assert all(isinstance(e, Event) for e in events)


def test_event_sessions_are_fetched_with_line_items_and_current_state(api, emulator):
    slow = emulator.add_session(
        "slow@x.io", line_items=VIP, payment_status="unpaid", created=NOW - 50
    )
    emulator.mark_paid(slow["id"])

    events = list(api.iter_session_events(NOW - 3600))

    completed = next(e for e in events if e.type == SESSION_COMPLETED)
    # The event's own snapshot says unpaid and has no line items: the client re-reads.
    assert completed.session.is_paid
    assert completed.session.line_items[0].price_id == VIP_PRICE


def test_each_event_session_is_fetched_once(api, emulator):
    slow = emulator.add_session(
        "slow@x.io", line_items=VIP, payment_status="unpaid", created=NOW - 50
    )
    emulator.mark_paid(slow["id"])

    list(api.iter_session_events(NOW - 3600))

    assert len(emulator.exchanges("GET", r"^/v1/checkout/sessions/cs_[^/]+$")) == 1


def test_many_event_sessions_are_read_from_one_list_page(api, emulator):
    for i in range(5):
        emulator.add_session(f"b{i}@x.io", line_items=VIP, created=NOW - 600 + i)

    events = list(api.iter_session_events(NOW - 3600))

    assert all(e.session.line_items[0].price_id == VIP_PRICE for e in events)
    assert len(events) == 5
    assert list_calls(emulator) == 1
    assert not emulator.exchanges("GET", r"^/v1/checkout/sessions/cs_[^/]+$")


def test_event_sessions_the_list_does_not_reach_are_read_one_by_one(api, emulator):
    # An old delayed payment settles today: listing back to its creation would
    # take many pages, so after its page budget the list gives way to a read.
    old = emulator.add_session(
        "old@x.io", line_items=VIP, payment_status="unpaid", created=NOW - 20 * 86400
    )
    for i in range(150):
        emulator.add_session(f"m{i}@x.io", line_items=VIP, created=NOW - 10 * 86400 + i)
    recent = [
        emulator.add_session(f"r{i}@x.io", line_items=VIP, created=NOW - 600 + i) for i in range(3)
    ]
    emulator.mark_paid(old["id"])

    events = list(api.iter_session_events(NOW - 3600))

    assert {e.session.id for e in events} == {old["id"], *(r["id"] for r in recent)}
    assert next(e for e in events if e.session.id == old["id"]).session.is_paid
    assert list_calls(emulator) == 1
    assert len(emulator.exchanges("GET", r"^/v1/checkout/sessions/cs_[^/]+$")) == 1


def test_events_older_than_30_days_are_not_listed(api, emulator):
    emulator.add_session("ancient@x.io", line_items=VIP, created=NOW - 31 * 86400)
    recent = emulator.add_session("recent@x.io", line_items=VIP, created=NOW - 86400)

    events = list(api.iter_session_events(NOW - 40 * 86400))

    assert [e.session.id for e in events] == [recent["id"]]


def test_events_are_paged(api, emulator):
    for i in range(12):
        emulator.add_session(f"b{i}@x.io", line_items=VIP, created=NOW - 1000 + i)

    events = list(api.iter_session_events(NOW - 3600, page_size=5))

    assert len({e.id for e in events}) == 12
    assert len(emulator.exchanges("GET", r"^/v1/events$")) == 3


def test_non_checkout_event_types_are_refused(api):
    with pytest.raises(ValueError, match=r"charge\.succeeded"):
        next(api.iter_session_events(NOW, types=["charge.succeeded"]))


# -- prices, products, doctor ------------------------------------------------------------------


def test_get_price_and_product(api):
    assert api.get_price(VIP_PRICE) == Price(id=VIP_PRICE, active=True, product=VIP_PRODUCT)
    assert api.get_product(VIP_PRODUCT) == Product(
        id=VIP_PRODUCT, active=True, name="VIP reservation"
    )


def test_inactive_price_is_reported_inactive(api, emulator):
    emulator.add_price("price_old", VIP_PRODUCT, active=False)

    assert api.get_price("price_old").active is False


def test_unknown_price_raises_not_found(api):
    with pytest.raises(NotFound, match="price_nope"):
        api.get_price("price_nope")


def test_check_access_makes_one_read(api, stats):
    api.check_access()

    assert stats.service("stripe").reads == 1


def test_wrong_key_raises_auth_rejected_without_the_key(server):
    wrong = "sk_test_51WrongKeyForTheTestZZZ4321"
    with StripeAPI(server.url, wrong) as client, pytest.raises(AuthRejected) as caught:
        client.check_access()

    text = str(caught.value)
    assert caught.value.status == 401
    assert wrong not in text
    assert "4321" not in text  # not even Stripe's masked form
    assert "STRIPE_API_KEY" in text


def test_restricted_key_without_permission_raises_auth_rejected(api, emulator):
    emulator.deny(r"^/v1/events")

    with pytest.raises(AuthRejected) as caught:
        next(api.iter_session_events(NOW - 60))

    assert caught.value.status == 403
    assert KEY[-4:] not in str(caught.value)


def test_empty_key_is_refused_before_any_call(server):
    with pytest.raises(AuthRejected, match="STRIPE_API_KEY"):
        StripeAPI(server.url, "")


def test_repr_hides_the_key(api):
    assert KEY not in repr(api)


def test_base_url_with_v1_suffix_is_tolerated(server, emulator):
    emulator.add_session("a@x.io", line_items=VIP)
    with StripeAPI(server.url + "/v1/", KEY) as client:
        assert len(list(client.iter_completed_sessions())) == 1


# -- transport: 429, 5xx, broken bodies ------------------------------------------------------


RATE_LIMIT_BODY = {
    "error": {
        "code": "rate_limit",
        "message": "Request rate limit exceeded.",
        "type": "invalid_request_error",
    }
}


def test_429_with_retry_after_is_waited_out_and_retried(api, emulator, stats):
    emulator.inject(
        method="GET",
        path=r"^/v1/checkout/sessions$",
        status=429,
        body=RATE_LIMIT_BODY,
        headers={"Retry-After": "0.05"},
        times=2,
    )
    started = time.monotonic()

    api.check_access()

    assert time.monotonic() - started >= 0.1
    assert stats.service("stripe").throttled == 2


def test_emulator_token_bucket_429_is_survived_with_retry_after(server, emulator, stats):
    emulator.rate_limit_per_second = 4
    emulator.retry_after = 0.3
    with StripeAPI(server.url, KEY, stats=stats) as client:
        for _ in range(5):
            client.check_access()

    assert stats.service("stripe").throttled >= 1
    assert emulator.log[-1].status == 200


def test_sustained_429_without_retry_after_raises_rate_limited(api, emulator, stats):
    emulator.rate_limit_per_second = 0.001  # one request, then a long wait
    api.check_access()

    with pytest.raises(RateLimited):
        api.check_access()

    throttled = [e for e in emulator.log if e.status == 429]
    assert len(throttled) == 6  # every attempt of the policy, twice as many for 429s
    assert stats.service("stripe").throttled == 6


def test_5xx_is_retried(api, emulator, stats):
    emulator.inject(method="GET", path=r"^/v1/checkout/sessions$", status=500, times=2)

    api.check_access()

    assert stats.service("stripe").retries == 2


def test_persistent_5xx_raises_unavailable(api, emulator):
    emulator.inject(method="GET", path=r"^/v1/checkout/sessions$", status=503, times=None)

    with pytest.raises(Unavailable):
        api.check_access()


def test_connection_reset_on_a_read_is_retried(api, emulator):
    emulator.add_session("a@x.io", line_items=VIP)
    emulator.inject(method="GET", path=r"^/v1/checkout/sessions$", kind="reset", times=1)

    assert len(list(api.iter_completed_sessions())) == 1


def test_unreachable_service_raises_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with StripeAPI(f"http://127.0.0.1:{port}", KEY) as client, pytest.raises(Unavailable):
        client.check_access()


def test_malformed_json_raises_bad_response(api, emulator):
    emulator.inject(method="GET", path=r"^/v1/checkout/sessions$", kind="malformed")

    with pytest.raises(BadResponse):
        list(api.iter_completed_sessions())


def test_html_page_raises_bad_response(api, emulator):
    emulator.inject(method="GET", path=r"^/v1/prices/", kind="html")

    with pytest.raises(BadResponse, match="api_base"):
        api.get_price(VIP_PRICE)


def test_session_missing_payment_status_raises_bad_response_naming_it(api, emulator):
    broken = emulator.add_session("a@x.io", line_items=VIP)
    del broken["payment_status"]
    emulator.inject(method="GET", path=r"^/v1/checkout/sessions/cs_", status=200, body=broken)

    with pytest.raises(BadResponse, match="payment_status"):
        api.get_session(broken["id"])


def test_list_without_has_more_raises_bad_response(api, emulator):
    emulator.inject(
        method="GET",
        path=r"^/v1/checkout/sessions$",
        status=200,
        body={"object": "list", "data": [], "url": "/v1/checkout/sessions"},
    )

    with pytest.raises(BadResponse, match="has_more"):
        list(api.iter_completed_sessions())


def test_expanded_product_object_on_a_price_is_tolerated(api, emulator):
    session = emulator.add_session("a@x.io", line_items=VIP)
    product = emulator.products[VIP_PRODUCT]
    session["line_items"]["data"][0]["price"]["product"] = product
    emulator.inject(method="GET", path=r"^/v1/checkout/sessions/cs_", status=200, body=session)

    assert api.get_session(session["id"]).line_items[0].product_id == VIP_PRODUCT


def test_invalid_request_is_not_retried(api, emulator, stats):
    emulator.inject(
        method="GET",
        path=r"^/v1/checkout/sessions$",
        status=400,
        body={
            "error": {"type": "invalid_request_error", "message": "Received unknown parameter: x"}
        },
    )

    with pytest.raises(InvalidRequest, match="unknown parameter"):
        api.check_access()
    assert stats.service("stripe").retries == 0


# -- emulator behaviour (the vendor's pitfalls reproduced) ------------------------------------


def raw(
    server: EmulatorServer, path: str, key: str | None = KEY, **params: object
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{server.url}{path}", params=params, headers=headers)


def test_emulator_401_masks_the_wrong_key_like_stripe(server):
    response = raw(server, "/v1/checkout/sessions", key="sk_test_abcdefgh1234")

    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"] == "Invalid API Key provided: sk_test_********1234"
    assert response.headers["Request-Id"].startswith("req_")


def test_emulator_401_without_key(server):
    response = raw(server, "/v1/checkout/sessions", key=None)

    assert response.status_code == 401
    assert "did not provide an API key" in response.json()["error"]["message"]


def test_emulator_rejects_limit_above_100(server):
    response = raw(server, "/v1/checkout/sessions", limit=101)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "limit"


def test_emulator_rejects_unknown_parameters(server):
    response = raw(server, "/v1/checkout/sessions", customer_email="a@x.io")

    assert response.status_code == 400
    assert "unknown parameter: customer_email" in response.json()["error"]["message"]


def test_emulator_refuses_expansion_deeper_than_four_levels(server):
    response = raw(
        server, "/v1/checkout/sessions", **{"expand[]": "data.line_items.data.price.product"}
    )

    assert response.status_code == 400
    assert "more than 4 levels" in response.json()["error"]["message"]


def test_emulator_embeds_only_a_handful_of_line_items(server, emulator):
    emulator.add_session("a@x.io", line_items=VIP * 9)

    response = raw(server, "/v1/checkout/sessions", **{"expand[]": "data.line_items"})

    embedded = response.json()["data"][0]["line_items"]
    assert (len(embedded["data"]), embedded["has_more"]) == (5, True)


def test_emulator_unknown_session_is_resource_missing(server):
    response = raw(server, "/v1/checkout/sessions/cs_test_nope")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "resource_missing"


def test_emulator_ending_before_returns_the_newer_neighbours(server, emulator):
    ids = [emulator.add_session(f"b{i}@x.io", created=NOW - 10 + i)["id"] for i in range(5)]

    response = raw(server, "/v1/checkout/sessions", limit=2, ending_before=ids[1])

    body = response.json()
    assert [s["id"] for s in body["data"]] == [ids[3], ids[2]]
    assert body["has_more"] is True


def test_emulator_rate_limit_answers_429_without_retry_after(server, emulator):
    emulator.rate_limit_per_second = 1

    answers = [raw(server, "/v1/checkout/sessions") for _ in range(3)]

    limited = answers[-1]
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limit"
    assert "Retry-After" not in limited.headers


def test_mask_key_keeps_prefix_and_last_four():
    assert mask_key("rk_live_abcdefgh") == "rk_live_****efgh"
    assert mask_key("garbage") == "***bage"


def test_emulator_answers_a_page_quickly_with_100k_sessions(server, emulator, api):
    emulator.add_sessions(
        {"email": f"b{i}@x.io", "line_items": VIP, "created": NOW - 200_000 + i}
        for i in range(100_000)
    )
    started = time.perf_counter()

    page = []
    for session in api.iter_completed_sessions(NOW - 150_000, page_size=100):
        page.append(session)
        if len(page) == 100:
            break

    assert time.perf_counter() - started < 0.5
    assert page[0].created == NOW - 200_000 + 99_999
    assert page[-1].created == NOW - 200_000 + 99_900
