"""Shopware traffic (client <-> emulator) checked against the 6.7.10.1 Admin API schema.

Every request the client sends (query and JSON body) and every answer the
emulator gives is validated against Shopware's own generated schema for
release 6.7.10.1 (`@shopware/api-client` 1.6.0, api-types/adminApiSchema.json).
Answers are validated in their `application/json` variant, which is what the
client asks for.

Spec errata (each verified by a test below, so they are dropped when the
schema is fixed):

1. `components.schemas.error.meta` is `{"$ref": meta (an object), "type":
   "array"}`, which no value satisfies, while `meta` is also required: no
   error body can pass. Shopware's errors carry `meta` as an object
   (`{"parameters": ...}`) or not at all (OAuth and generic HTTP errors),
   and write violations add `template` without `title`. The patched schema
   keeps `additionalProperties: false` and the documented properties, makes
   `meta` an object, adds `template`, and requires only `status` and `code`.
2. No entity property is marked nullable, but Shopware's JsonEntityEncoder
   keeps unset fields as `null` (`payload`, `updatedAt`, `validFrom`, ...) and
   OAuth errors have `detail: null`. Nulls are removed before validation.
3. Statuses Shopware sends but the spec does not list for an operation (401
   from the token endpoint, 403, and the 500 of a duplicate code) are
   validated against `components.schemas.failure`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from syncctl.clients.shopware import ShopwareClient, code_id
from syncctl.errors import AuthRejected, Conflict, NotFound
from syncctl.sandbox.server import EmulatorServer, Exchange
from syncctl.sandbox.shopware import ShopwareEmulator
from tests.contract.openapi import load_spec, operation_for

pytestmark = pytest.mark.contract

SPEC = "shopware-adminapi-6.7.10.1.json"
PREFIX = "/api"
CLIENT_ID = "SWIACONTRACTKEY000000000"
SECRET = "contract-secret-value"


def patched_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with erratum 1 applied (a shallow copy; the cached spec stays intact)."""
    schemas = dict(spec["components"]["schemas"])
    error = copy.deepcopy(schemas["error"])
    error["properties"]["meta"] = {"type": "object"}
    error["properties"]["template"] = {"type": "string"}
    error["required"] = ["status", "code"]
    schemas["error"] = error
    return {**spec, "components": {**spec["components"], "schemas": schemas}}


def strip_nulls(value: Any) -> Any:
    """Erratum 2: drop null members (Shopware sends them; the spec has no nullables)."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


def validate_failure(spec: dict[str, Any], body: Any) -> None:
    root = {"$ref": "#/components/schemas/failure", "components": spec["components"]}
    Draft202012Validator(root).validate(body)


def validate_exchange(spec: dict[str, Any], exchange: Exchange) -> tuple[str, str, int]:
    """Check one logged request and its answer; returns (method, template, status)."""
    operation = operation_for(spec, exchange.method, exchange.path, prefix=PREFIX)
    operation.validate_query(exchange.query)
    operation.validate_request(exchange.body)
    responses = operation.op.get("responses", {})
    status = exchange.status
    body = strip_nulls(exchange.response)
    documented = str(status) in responses or f"{str(status)[0]}XX" in responses
    if documented or "default" in responses:
        operation.validate_response(status, body)
    else:
        assert status >= 400, f"{exchange.method} {exchange.path}: undocumented {status}"
        validate_failure(spec, body)
    return exchange.method, operation.template, status


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return patched_spec(load_spec(SPEC))


@pytest.fixture
def emulator() -> ShopwareEmulator:
    return ShopwareEmulator(client_id=CLIENT_ID, client_secret=SECRET)


@pytest.fixture
def server(emulator: ShopwareEmulator) -> Iterator[EmulatorServer]:
    srv = EmulatorServer(emulator).start()
    yield srv
    srv.stop()


def make_client(server: EmulatorServer, secret: str = SECRET) -> ShopwareClient:
    return ShopwareClient(
        server.url, CLIENT_ID, secret, transport=httpx.HTTPTransport(verify=False)
    )


def test_every_client_call_matches_the_spec(spec, server, emulator):
    vip = emulator.add_promotion()
    other = emulator.add_promotion(name="Other", pattern=None)
    emulator.add_code(other, "TAKEN-1")
    emulator.add_codes(vip, [f"VIP-{i:03d}" for i in range(7)])
    with make_client(server) as client:
        client.check_access()
        client.get_promotion(vip)
        assert client.find_code("NEW-1") is None
        client.add_code(vip, "NEW-1", payload={"session": "cs_test_1"})  # 200 basic
        client.add_code(vip, "NEW-1")  # 400 write-type intend, then a search
        client.ensure_code(vip, "NEW-2")
        assert len(list(client.iter_codes(vip, page_size=3))) == 9
        emulator.expire_tokens()  # 401, a new token, the search again
        assert client.find_code("new-1") is not None
        dated = emulator.add_promotion(
            name="Dated", pattern=None, valid_from=datetime(2026, 1, 1, tzinfo=UTC)
        )
        assert client.find_promotion(dated) is not None  # validFrom as a date-time
        emulator.redeem_code("VIP-000")
        assert client.find_code("VIP-000").redeemed  # payload {orderId, ...}
        assert client.delete_code(code_id("NEW-1")) is True  # 204
    seen = {validate_exchange(spec, e) for e in emulator.log}
    assert seen >= {
        ("POST", "/oauth/token", 200),
        ("GET", "/_info/version", 200),
        ("GET", "/promotion/{id}", 200),
        ("DELETE", "/promotion-individual-code/{id}", 204),
        ("POST", "/search/promotion-individual-code", 200),
        ("POST", "/search/promotion-individual-code", 401),
        ("POST", "/promotion-individual-code", 200),
        ("POST", "/promotion-individual-code", 400),
    }


def test_error_answers_match_the_spec(spec, server, emulator):
    vip = emulator.add_promotion()
    other = emulator.add_promotion(name="Other", pattern=None)
    emulator.add_code(other, "TAKEN-1")
    with make_client(server) as client:
        with pytest.raises(Conflict):
            client.add_code(vip, "taken-1")  # 500 SQLSTATE 1062 + search
        with pytest.raises(NotFound):
            client.add_code("0" * 32, "NEW-9")  # 500 SQLSTATE 1452
        with pytest.raises(NotFound):
            client.get_promotion("f" * 32)  # 404
        assert client.delete_code("f" * 32) is False  # 404
        emulator.privileges = {"promotion:read"}
        assert client.check_access().can_read_codes is False  # 403
    with make_client(server, "wrong") as client, pytest.raises(AuthRejected):
        client.find_code("NEW-1")  # token 401
    seen = {validate_exchange(spec, e) for e in emulator.log}
    assert seen >= {
        ("POST", "/promotion-individual-code", 500),
        ("GET", "/promotion/{id}", 404),
        ("DELETE", "/promotion-individual-code/{id}", 404),
        ("POST", "/search/promotion-individual-code", 403),
        ("POST", "/oauth/token", 401),
    }


def test_unpatched_error_schema_rejects_every_shopware_error(server, emulator):
    """Erratum 1 still holds: without the patch not even a plain 404 body passes."""
    raw_spec = load_spec(SPEC)
    with make_client(server) as client, pytest.raises(NotFound):
        client.get_promotion("f" * 32)
    body = emulator.exchanges("GET", "/api/promotion/")[-1].response
    with pytest.raises(ValidationError, match="is not of type"):
        validate_failure(raw_spec, body)
    validate_failure(patched_spec(raw_spec), body)


def test_entities_with_nulls_need_erratum_2(spec, server, emulator):
    """Erratum 2 still holds: the raw answer (with `payload: null`) breaks the schema."""
    vip = emulator.add_promotion()
    emulator.add_code(vip, "VIP-1")
    with make_client(server) as client:
        client.find_code("VIP-1")
    exchange = emulator.exchanges("POST", "/api/search/")[-1]
    operation = operation_for(spec, exchange.method, exchange.path, prefix=PREFIX)
    assert exchange.response["data"][0]["payload"] is None
    with pytest.raises(AssertionError, match="breaks the spec"):
        operation.validate_response(200, exchange.response)
    operation.validate_response(200, strip_nulls(exchange.response))
