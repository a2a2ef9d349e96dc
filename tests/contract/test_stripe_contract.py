"""The Stripe emulator and client against Stripe's own descriptions of its API.

Three references, three checks:
- the OpenAPI spec (API version 2024-04-10, OpenAPI 3.0): every request the
  client sent and every answer the emulator gave, for the keys the spec
  defines (its schemas allow extra keys, so fields added after 2024-04 pass);
- `stripe-fixtures3.json` (current example objects): every emulated object
  has exactly the keys of the matching resource;
- the stripe SDK the client is built on: every emulated object parses into
  the SDK's classes with the values the client relies on.

OpenAPI 3.0 marks optional values with `nullable: true`, which JSON Schema
2020-12 ignores; `nullable_spec` rewrites those to `anyOf: [null, ...]`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from syncctl.clients.stripe import StripeAPI
from syncctl.errors import AuthRejected, NotFound, RateLimited
from syncctl.net.http import RetryPolicy
from syncctl.sandbox.server import EmulatorServer, Exchange
from syncctl.sandbox.stripe import StripeEmulator
from tests.clients.stripe_fixtures import (
    BASIC_PRICE,
    BASIC_PRODUCT,
    KEY,
    NOW,
    VIP,
    VIP_PRICE,
    VIP_PRODUCT,
    disable_nagle,
    new_emulator,
)
from tests.contract.openapi import load_spec, operation_for

pytestmark = pytest.mark.contract

SPEC = "stripe-spec3-2024-04-10.json"
FIXTURES = "stripe-fixtures3.json"
RESOURCES = ("checkout.session", "item", "event", "price", "product", "charge", "dispute")
#: Keys present only when asked for (`expand[]`): absent from the fixtures
#: (a session's `line_items`), or shown there but not answered by default
#: (a charge's `refunds`, no longer included since API 2022-11-15).
INCLUDABLE = {"checkout.session": {"line_items"}, "charge": {"refunds"}}
#: Free-form maps whose keys are data, not shape.
FREE_FORM = {"metadata", "payment_method_options", "previous_attributes"}

OPERATIONS = {
    ("GET", "/v1/checkout/sessions"),
    ("GET", "/v1/checkout/sessions/{session}"),
    ("GET", "/v1/checkout/sessions/{session}/line_items"),
    ("GET", "/v1/events"),
    ("GET", "/v1/prices/{price}"),
    ("GET", "/v1/products/{id}"),
    ("GET", "/v1/charges"),
    ("GET", "/v1/charges/{charge}"),
    ("GET", "/v1/disputes"),
}


def _allow_null(node: Any) -> Any:
    if isinstance(node, dict):
        converted = {k: _allow_null(v) for k, v in node.items() if k != "nullable"}
        if node.get("nullable") is True:
            return {"anyOf": [{"type": "null"}, converted]}
        return converted
    if isinstance(node, list):
        return [_allow_null(v) for v in node]
    return node


@functools.cache
def _converted() -> dict[str, Any]:
    return _allow_null(load_spec(SPEC))


def nullable_spec() -> dict[str, Any]:
    """The spec with OpenAPI 3.0 `nullable` turned into JSON Schema (skips if absent)."""
    load_spec(SPEC)
    return _converted()


def fixtures() -> dict[str, Any]:
    return load_spec(FIXTURES)["resources"]


# -- the traffic under test -----------------------------------------------------------------


def _seed(emulator: StripeEmulator) -> None:
    emulator.add_session(
        "ada@example.com",
        name="Ada Lovelace",
        line_items=VIP,
        created=NOW - 3000,
        metadata={"campaign": "spring"},
    )
    emulator.add_session(
        "many@example.com",
        name="Many Items",
        line_items=[(BASIC_PRICE, BASIC_PRODUCT, 1)] * 7 + [(VIP_PRICE, VIP_PRODUCT, 2)],
        created=NOW - 2000,
    )
    slow = emulator.add_session(
        "slow@example.com", line_items=VIP, payment_status="unpaid", created=NOW - 1500
    )
    emulator.mark_paid(slow["id"])
    emulator.add_session(None, customer_email="prefill@example.com", line_items=VIP)
    emulator.add_session("free@example.com", payment_status="no_payment_required")
    emulator.add_session("open@example.com", line_items=VIP, status="open", created=NOW - 100)
    for i in range(6):
        emulator.add_session(f"b{i}@example.com", line_items=VIP, created=NOW - 900 + i)
    # Rule 17: a partial and a full refund, a chargeback won, an inquiry still open.
    partial, full, won, inquiry = (
        emulator.add_session(f"{who}@example.com", line_items=VIP, created=NOW - 800 + n)["id"]
        for n, who in enumerate(("partial", "full", "won", "inquiry"))
    )
    emulator.refund(partial, 300, at=NOW - 700)
    emulator.refund(full, at=NOW - 690)
    chargeback = emulator.dispute(won, reason="product_not_received", at=NOW - 680)
    emulator.close_dispute(chargeback["id"], "won", at=NOW - 600)
    emulator.dispute(inquiry, status="warning_needs_response", reason="general", at=NOW - 590)


def _drive(api: StripeAPI, emulator: StripeEmulator, server: EmulatorServer) -> None:
    """Every client call, the error paths included, plus raw calls the client never makes."""
    sessions = list(api.iter_completed_sessions(NOW - 86400, page_size=4))
    api.get_session(sessions[0].id)
    list(api.iter_session_events(NOW - 86400, page_size=3))
    list(api.iter_purchase_events(NOW - 86400, page_size=4))
    list(api.iter_payment_troubles(NOW - 86400, page_size=2))
    api.check_payment_access()
    api.session_for_payment(sessions[0].payment_intent or "pi_none")
    api.get_price(VIP_PRICE)
    api.get_product(VIP_PRODUCT)
    api.check_access()
    for call in (lambda: api.get_session("cs_test_missing"), lambda: api.get_price("price_x")):
        with pytest.raises(NotFound):
            call()
    with StripeAPI(server.url, "sk_test_wrongwrongwrong1234") as wrong, pytest.raises(AuthRejected):
        wrong.check_access()
    emulator.rate_limit_per_second = 0.001
    api.check_access()
    with pytest.raises(RateLimited):
        api.check_access()
    emulator.rate_limit_per_second = None
    auth = {"Authorization": f"Bearer {KEY}"}
    httpx.get(f"{server.url}/v1/checkout/sessions", params={"limit": 101}, headers=auth)
    httpx.get(
        f"{server.url}/v1/checkout/sessions",
        params={"limit": 2, "ending_before": sessions[3].id, "status": "complete"},
        headers=auth,
    )
    httpx.get(
        f"{server.url}/v1/checkout/sessions/{sessions[1].id}/line_items",
        params={"limit": 3},
        headers=auth,
    )
    # What the client reads for a dispute that does not name its PaymentIntent.
    charge = emulator.charges[0]["id"]
    httpx.get(f"{server.url}/v1/charges/{charge}", headers=auth)
    httpx.get(f"{server.url}/v1/charges/ch_missing", headers=auth)
    intent = emulator.charges[0]["payment_intent"]
    httpx.get(f"{server.url}/v1/charges", params={"payment_intent": intent}, headers=auth)
    httpx.get(f"{server.url}/v1/disputes", params={"charge": charge, "limit": 5}, headers=auth)


@pytest.fixture(scope="module")
def traffic() -> Iterator[tuple[StripeEmulator, list[Exchange]]]:
    nullable_spec()  # skip early when the spec is absent
    with pytest.MonkeyPatch.context() as patch:
        disable_nagle(patch)
        emulator = new_emulator()
        _seed(emulator)
        server = EmulatorServer(emulator).start()
        try:
            with StripeAPI(server.url, KEY, retry=RetryPolicy(attempts=2)) as api:
                _drive(api, emulator, server)
        finally:
            server.stop()
    yield emulator, list(emulator.log)


def _objects(node: Any) -> Iterator[dict[str, Any]]:
    """Every Stripe object (a dict with a known `object`) anywhere in a body."""
    if isinstance(node, dict):
        if node.get("object") in RESOURCES:
            yield node
        for value in node.values():
            yield from _objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value)


def _answers(traffic: tuple[StripeEmulator, list[Exchange]]) -> list[Any]:
    return [e.response for e in traffic[1] if e.status == 200 and e.response is not None]


def _of_type(traffic: tuple[StripeEmulator, list[Exchange]], kind: str) -> list[dict[str, Any]]:
    return [obj for body in _answers(traffic) for obj in _objects(body) if obj["object"] == kind]


# -- OpenAPI spec ---------------------------------------------------------------------------


def _template(spec: dict[str, Any], exchange: Exchange) -> str:
    return operation_for(spec, exchange.method, exchange.path).template


def _grouped(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding back into values: a[0]=x -> list, a[gte]=1 -> dict."""
    grouped: dict[str, Any] = {}
    for key, value in pairs:
        match = re.fullmatch(r"([^\[\]]+)(?:\[([^\[\]]*)\])?", key)
        assert match, f"query parameter {key!r} is not Stripe's form encoding"
        name, sub = match.groups()
        if sub is None:
            grouped[name] = value
        elif sub == "" or sub.isdigit():
            grouped.setdefault(name, []).append(value)
        else:
            grouped.setdefault(name, {})[sub] = value
    return grouped


def _coerce(value: Any, schema: dict[str, Any]) -> Any:
    """Form values are strings; turn them into what the schema describes."""
    for option in schema.get("anyOf", []):
        coerced = _coerce(value, option)
        if coerced is not value:
            return coerced
    kind = schema.get("type")
    if kind == "integer" and isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    if kind == "boolean" and value in ("true", "false"):
        return value == "true"
    if kind == "object" and isinstance(value, dict):
        props = schema.get("properties", {})
        return {k: _coerce(v, props.get(k, {})) for k, v in value.items()}
    if kind == "array" and isinstance(value, list):
        return [_coerce(v, schema.get("items", {})) for v in value]
    return value


def _validate(spec: dict[str, Any], schema: dict[str, Any], value: Any, what: str) -> None:
    root = {"allOf": [schema], "components": spec["components"]}
    try:
        Draft202012Validator(root).validate(value)
    except ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        raise AssertionError(f"{what} breaks the spec at '{where}': {exc.message}") from None


def test_traffic_covers_every_operation_the_client_uses(traffic):
    spec = nullable_spec()
    hit = {(e.method, _template(spec, e)) for e in traffic[1]}
    assert hit >= OPERATIONS


def test_every_request_is_documented_by_the_spec(traffic):
    spec = nullable_spec()
    for exchange in traffic[1]:
        operation = operation_for(spec, exchange.method, exchange.path)
        # Stripe's spec gives GETs an empty form requestBody; nothing is sent.
        assert exchange.body in (None, b"", ""), f"{exchange.path} sent a body"
        params = {p["name"]: p for p in operation.parameters}
        what = f"{exchange.method} {exchange.path}"
        for name, value in _grouped(exchange.query).items():
            assert name in params, f"{what} sends {name!r}, which the spec does not know"
            schema = params[name]["schema"]
            _validate(spec, schema, _coerce(value, schema), f"{what} parameter {name}")
        names = re.findall(r"\{([^}]+)\}", operation.template)
        pattern = re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(operation.template))
        values = re.fullmatch(pattern, exchange.path)
        assert values is not None
        for name, value in zip(names, values.groups(), strict=True):
            _validate(spec, params[name]["schema"], value, f"{what} path parameter {name}")


def test_every_answer_matches_the_spec(traffic):
    spec = nullable_spec()
    statuses = set()
    for exchange in traffic[1]:
        if exchange.response is None:
            continue
        statuses.add(exchange.status)
        operation = operation_for(spec, exchange.method, exchange.path)
        operation.validate_response(exchange.status, exchange.response)
    assert {200, 400, 401, 404, 429} <= statuses


def test_objects_inside_events_match_their_schema(traffic):
    spec = nullable_spec()
    seen = set()
    for event in _of_type(traffic, "event"):
        obj = event["data"]["object"]
        seen.add(obj["object"])
        schema = {"$ref": f"#/components/schemas/{obj['object']}"}
        _validate(spec, schema, obj, f"event {event['id']} data.object")
    assert seen == {"checkout.session", "charge", "dispute"}


# -- fixture shapes -------------------------------------------------------------------------


def _key_differences(ours: dict[str, Any], example: dict[str, Any], where: str) -> list[str]:
    problems = []
    includable = INCLUDABLE.get(str(ours.get("object")), set())
    extra = set(ours) - set(example) - includable
    missing = set(example) - set(ours) - includable
    if extra or missing:
        problems.append(f"{where}: extra {sorted(extra)}, missing {sorted(missing)}")
    for key in set(ours) & set(example):
        mine, theirs = ours[key], example[key]
        if key in FREE_FORM or (where.endswith("event") and key == "data"):
            continue
        if isinstance(mine, dict) and isinstance(theirs, dict) and theirs:
            problems += _key_differences(mine, theirs, f"{where}.{key}")
    return problems


def test_every_emulated_object_has_the_fixture_keys(traffic):
    examples = fixtures()
    seen = set()
    problems: list[str] = []
    for body in _answers(traffic):
        for obj in _objects(body):
            kind = obj["object"]
            seen.add(kind)
            problems += _key_differences(obj, examples[kind], kind)
    assert seen == set(RESOURCES)
    assert not sorted(set(problems))


# -- round trip through the SDK ---------------------------------------------------------------


def test_sessions_parse_into_the_sdk_with_the_values_the_client_uses(traffic):
    emulator = traffic[0]
    sessions = _of_type(traffic, "checkout.session")
    assert sessions
    for raw in sessions:
        session = stripe.checkout.Session.construct_from(raw, KEY)
        assert isinstance(session, stripe.checkout.Session)
        assert session.id == raw["id"]
        assert session.created == raw["created"]
        assert session.status in ("open", "complete", "expired")
        assert session.payment_status in ("paid", "unpaid", "no_payment_required")
        if session.customer_details is not None:
            assert session.customer_details.email == raw["customer_details"]["email"]
        if "line_items" in raw:
            assert isinstance(session.line_items, stripe.ListObject)
            for item in session.line_items.data:
                assert isinstance(item, stripe.LineItem)
                assert isinstance(item.price, stripe.Price)
                stored = emulator.prices[item.price.id]
                assert item.price.product == stored["product"]


def test_events_parse_into_the_sdk_with_their_object(traffic):
    classes = {
        "checkout.session.": stripe.checkout.Session,
        "charge.dispute.": stripe.Dispute,
        "charge.refunded": stripe.Charge,
    }
    events = _of_type(traffic, "event")
    for raw in events:
        event = stripe.Event.construct_from(raw, KEY)
        (cls,) = (c for prefix, c in classes.items() if event.type.startswith(prefix))
        assert isinstance(event.data.object, cls)
        assert event.data.object.id == raw["data"]["object"]["id"]


def test_charges_and_disputes_parse_into_the_sdk_with_the_values_the_client_uses(traffic):
    charges, disputes = _of_type(traffic, "charge"), _of_type(traffic, "dispute")
    assert charges and disputes
    for raw in charges:
        charge = stripe.Charge.construct_from(raw, KEY)
        assert (charge.payment_intent, charge.amount, charge.amount_refunded) == (
            raw["payment_intent"],
            raw["amount"],
            raw["amount_refunded"],
        )
        assert charge.refunded is (charge.amount_refunded >= charge.amount)
        assert isinstance(charge.disputed, bool)
    for raw in disputes:
        dispute = stripe.Dispute.construct_from(raw, KEY)
        assert (dispute.charge, dispute.payment_intent, dispute.status) == (
            raw["charge"],
            raw["payment_intent"],
            raw["status"],
        )


def test_client_reports_every_refunded_or_disputed_charge_as_the_emulator_holds_it(
    traffic, monkeypatch
):
    disable_nagle(monkeypatch)
    emulator = traffic[0]
    server = EmulatorServer(emulator).start()
    try:
        with StripeAPI(server.url, KEY) as api:
            found = {(t.kind, t.charge_id): t for t in api.iter_payment_troubles(page_size=3)}
    finally:
        server.stop()
    refunded = {c["id"]: c for c in emulator.charges if c["refunded"]}
    disputes = {d["charge"]: d for d in emulator.disputes}
    assert set(found) == {("refunded", c) for c in refunded} | {("disputed", c) for c in disputes}
    for charge_id, charge in refunded.items():
        assert found["refunded", charge_id].payment_intent == charge["payment_intent"]
    for charge_id, dispute in disputes.items():
        trouble = found["disputed", charge_id]
        assert (trouble.dispute_id, trouble.dispute_status, trouble.payment_intent) == (
            dispute["id"],
            dispute["status"],
            dispute["payment_intent"],
        )


def test_prices_and_products_parse_into_the_sdk(traffic):
    for raw in _of_type(traffic, "price"):
        price = stripe.Price.construct_from(raw, KEY)
        assert (price.id, price.active, price.product) == (raw["id"], raw["active"], raw["product"])
    for raw in _of_type(traffic, "product"):
        product = stripe.Product.construct_from(raw, KEY)
        assert (product.id, product.active, product.name) == (
            raw["id"],
            raw["active"],
            raw["name"],
        )


def test_client_reads_every_session_as_the_emulator_holds_it(traffic, monkeypatch):
    disable_nagle(monkeypatch)
    emulator = traffic[0]
    emulator.clear_log()
    server = EmulatorServer(emulator).start()
    try:
        with StripeAPI(server.url, KEY) as api:
            read = {s.id: s for s in api.iter_completed_sessions(page_size=3)}
    finally:
        server.stop()
    held = [s for s in emulator.sessions if s["status"] == "complete"]
    assert set(read) == {s["id"] for s in held}
    for stored in held:
        session = read[stored["id"]]
        assert session.payment_intent == stored["payment_intent"]
        details = stored["customer_details"] or {}
        assert session.email == (details.get("email") or stored["customer_email"])
        assert (session.status, session.payment_status) == (
            stored["status"],
            stored["payment_status"],
        )
        assert [(i.id, i.price_id, i.product_id, i.quantity) for i in session.line_items] == [
            (i["id"], i["price"]["id"], i["price"]["product"], i["quantity"])
            for i in stored["line_items"]["data"]
        ]
