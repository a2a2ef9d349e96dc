"""ShopwareClient against the Shopware emulator over loopback HTTP.

Each test names one behaviour: token caching and renewal, code look-up and
idempotent creation (with every duplicate shape Shopware can answer), paging,
the promotion check, the shared HTTP behaviours, and the emulator's own
vendor quirks (JSON:API default, criteria paging, total-count modes, 1062).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from syncctl.clients.shopware import (
    IndividualCode,
    Promotion,
    ShopwareClient,
    code_id,
    code_key,
    redeemable,
)
from syncctl.errors import (
    AuthRejected,
    BadResponse,
    Conflict,
    InvalidRequest,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    Unavailable,
)
from syncctl.net.http import CallStats, RetryPolicy
from syncctl.sandbox.server import EmulatorServer
from syncctl.sandbox.shopware import RedemptionRefused, ShopwareEmulator

CLIENT_ID = "SWIAEMULATORKEY000000000"
SECRET = "Sh0pware-s3cret-never-printed"
SEARCH = r"/api/search/promotion-individual-code$"
CREATE = r"/api/promotion-individual-code$"
TOKEN = r"/api/oauth/token$"


@pytest.fixture
def emulator() -> ShopwareEmulator:
    return ShopwareEmulator(client_id=CLIENT_ID, client_secret=SECRET)


@pytest.fixture(scope="module")
def _loopback() -> Iterator[EmulatorServer]:
    """One loopback server per module (stopping one costs a poll interval)."""
    srv = EmulatorServer(ShopwareEmulator(client_id=CLIENT_ID, client_secret=SECRET)).start()
    yield srv
    srv.stop()


@pytest.fixture
def server(_loopback: EmulatorServer, emulator: ShopwareEmulator) -> EmulatorServer:
    """The shared server, now answering with this test's fresh emulator."""
    _loopback.emulator = emulator
    _loopback._server.emulator = emulator  # what the request handler reads
    return _loopback


@pytest.fixture
def promotion_id(emulator: ShopwareEmulator) -> str:
    return emulator.add_promotion()


def make_client(server: EmulatorServer, secret: str = SECRET, **options: Any) -> ShopwareClient:
    """A client for the loopback server; plain HTTP needs no CA bundle (saves 25 ms)."""
    options.setdefault("transport", httpx.HTTPTransport(verify=False))
    options.setdefault("timeout", 5.0)
    return ShopwareClient(server.url, CLIENT_ID, secret, **options)


@pytest.fixture
def client(server: EmulatorServer) -> Iterator[ShopwareClient]:
    with make_client(server) as c:
        yield c


def token_requests(emulator: ShopwareEmulator) -> int:
    return len(emulator.exchanges("POST", TOKEN))


def raw(server: EmulatorServer, emulator: ShopwareEmulator, accept: str) -> httpx.Client:
    """A plain httpx client with a valid token, for the emulator's own behaviour."""
    return httpx.Client(
        base_url=server.url,
        verify=False,
        headers={"Authorization": f"Bearer {emulator.issue_token()}", "Accept": accept},
    )


class RecordingTransport(httpx.HTTPTransport):
    """Keeps the headers of every request the client sends."""

    def __init__(self) -> None:
        super().__init__(verify=False)
        self.headers: list[httpx.Headers] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.headers.append(request.headers)
        return super().handle_request(request)


class AcceptDroppingTransport(httpx.HTTPTransport):
    """A proxy that replaces the Accept header by */* (so Shopware answers JSON:API)."""

    def __init__(self) -> None:
        super().__init__(verify=False)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["Accept"] = "*/*"
        return super().handle_request(request)


# -- token -------------------------------------------------------------------------


def test_token_is_fetched_once_and_reused(client, emulator, promotion_id):
    client.find_code("VIP-A")
    client.get_promotion(promotion_id)
    assert token_requests(emulator) == 1


def test_token_is_renewed_shortly_before_it_expires(client, emulator):
    now = [1000.0]
    client._tokens.clock = lambda: now[0]
    client.find_code("VIP-A")
    now[0] += 575  # within the 30 s margin of the 600 s lifetime
    client.find_code("VIP-A")
    assert token_requests(emulator) == 2
    assert [e.status for e in emulator.exchanges(path=SEARCH)] == [200, 200]


def test_expired_token_401_is_renewed_once_and_the_call_repeated(client, emulator):
    client.find_code("VIP-A")
    emulator.advance(601)  # the server's clock: the cached token is now expired
    assert client.find_code("VIP-A") is None
    assert [e.status for e in emulator.exchanges(path=SEARCH)] == [200, 401, 200]
    assert token_requests(emulator) == 2


def test_concurrent_callers_share_one_renewal(client, emulator):
    client.find_code("VIP-A")
    emulator.expire_tokens()
    errors: list[BaseException] = []

    def look_up() -> None:
        try:
            client.find_code("VIP-A")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=look_up) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert token_requests(emulator) == 2


def test_401_again_after_renewal_is_auth_rejected(client, emulator):
    client.find_code("VIP-A")
    emulator.inject(method="POST", path=SEARCH, status=401, times=2)
    with pytest.raises(AuthRejected) as caught:
        client.find_code("VIP-A")
    assert "even with a new token" in str(caught.value)
    assert token_requests(emulator) == 2


def test_wrong_credentials_are_auth_rejected_naming_the_env_vars(server, emulator):
    with make_client(server, "wrong-secret-value") as client, pytest.raises(AuthRejected) as caught:
        client.find_code("VIP-A")
    message = str(caught.value)
    assert "SHOPWARE_CLIENT_ID" in message and "SHOPWARE_CLIENT_SECRET" in message
    assert "Client authentication failed" in message
    assert "wrong-secret-value" not in message
    assert emulator.exchanges(path=SEARCH) == []


def test_throttled_token_requests_are_rate_limited_with_the_named_wait(server, emulator):
    emulator.auth_failure_limit = 2
    for _run in range(2):  # each run is a new client
        with make_client(server, "nope") as client, pytest.raises(AuthRejected):
            client.find_code("VIP-A")
    with make_client(server, "nope") as client, pytest.raises(RateLimited) as caught:
        client.find_code("VIP-A")
    assert caught.value.retry_after is not None and caught.value.retry_after >= 1
    assert [e.status for e in emulator.exchanges(path=TOKEN)] == [401, 401, 429]


def test_a_plain_429_on_the_token_request_is_waited_out_once(client, emulator):
    # A rate limiter in front of the shop, not Shopware's login throttle.
    emulator.inject(
        method="POST", path=TOKEN, status=429, body={"errors": []}, headers={"Retry-After": "0.1"}
    )
    assert client.find_code("VIP-A") is None
    assert [e.status for e in emulator.exchanges(path=TOKEN)] == [429, 200]


def test_token_answer_without_access_token_is_bad_response(client, emulator):
    emulator.inject(
        method="POST", path=TOKEN, status=200, body={"token_type": "Bearer", "expires_in": 600}
    )
    with pytest.raises(BadResponse, match="access_token"):
        client.find_code("VIP-A")


def test_secret_and_token_never_appear_in_reprs_or_errors(client, emulator):
    client.find_code("VIP-A")
    token = emulator.exchanges(path=TOKEN)[0].response["access_token"]
    emulator.inject(method="POST", path=SEARCH, status=401, times=2)
    with pytest.raises(AuthRejected) as caught:
        client.find_code("VIP-A")
    for text in (repr(client), repr(client._tokens), repr(client._http), str(caught.value)):
        assert SECRET not in text and token not in text


def test_every_request_asks_for_json_and_carries_the_bearer_token(server, emulator):
    transport = RecordingTransport()
    with make_client(server, transport=transport) as client:
        client.find_code("VIP-A")
    token_headers, search_headers = transport.headers
    assert token_headers["accept"] == "application/json"
    assert "authorization" not in token_headers
    assert search_headers["accept"] == "application/json"
    assert search_headers["authorization"].startswith("Bearer ")


def test_token_request_counts_as_a_read_and_a_create_as_a_write(server, emulator, promotion_id):
    stats = CallStats()
    with make_client(server, stats=stats) as client:
        client.add_code(promotion_id, "VIP-A")
    counts = stats.service("shopware")
    assert (counts.reads, counts.writes) == (1, 1)
    assert emulator.write_count() == 1


# -- find_code ---------------------------------------------------------------------------


def test_find_code_returns_none_when_missing(client):
    assert client.find_code("VIP-NOPE") is None


def test_find_code_matches_case_insensitively_like_mysql(client, emulator, promotion_id):
    emulator.add_code(promotion_id, "VIP-AbC")
    found = client.find_code("vip-abc")
    assert found is not None and found.code == "VIP-AbC" and found.promotion_id == promotion_id


def test_find_code_refuses_an_answer_for_another_code(client, emulator, promotion_id):
    stray = {"id": "a" * 32, "promotionId": promotion_id, "code": "OTHER", "payload": None}
    emulator.inject(method="POST", path=SEARCH, status=200, body={"total": 1, "data": [stray]})
    with pytest.raises(BadResponse, match="filter was ignored"):
        client.find_code("VIP-A")


def test_find_code_with_missing_field_is_bad_response_naming_it(client, emulator, promotion_id):
    broken = {"id": "a" * 32, "code": "VIP-A"}
    emulator.inject(method="POST", path=SEARCH, status=200, body={"total": 1, "data": [broken]})
    with pytest.raises(BadResponse, match="promotionId"):
        client.find_code("VIP-A")


def test_find_codes_looks_up_many_codes_in_one_search(client, emulator, promotion_id):
    emulator.add_code(promotion_id, "VIP-A")
    emulator.add_code(promotion_id, "VIP-bb")

    found = client.find_codes(["VIP-A", "VIP-BB", "VIP-NOPE"])

    assert {k: row.code for k, row in found.items()} == {
        code_key("VIP-A"): "VIP-A",
        code_key("VIP-BB"): "VIP-bb",
    }
    [search] = emulator.exchanges("POST", SEARCH)
    assert search.body["filter"][0]["type"] == "equalsAny"


def test_find_codes_refuses_an_answer_for_a_code_not_asked_for(client, emulator, promotion_id):
    stray = {"id": "a" * 32, "promotionId": promotion_id, "code": "OTHER", "payload": None}
    emulator.inject(method="POST", path=SEARCH, status=200, body={"total": 1, "data": [stray]})
    with pytest.raises(BadResponse, match="filter was ignored"):
        client.find_codes(["VIP-A", "VIP-B"])


def test_client_reads_jsonapi_answers_when_a_proxy_drops_accept(server, emulator, promotion_id):
    emulator.add_code(promotion_id, "VIP-A", payload={"k": "v"})
    with make_client(server, transport=AcceptDroppingTransport()) as c:
        found = c.find_code("VIP-A")
        promotion = c.get_promotion(promotion_id)
    assert found is not None and found.code == "VIP-A" and dict(found.payload or {}) == {"k": "v"}
    assert promotion.use_individual_codes is True


# -- add_code / ensure_code ------------------------------------------------------------------


def test_add_code_creates_it_with_the_md5_id_and_payload(client, emulator, promotion_id):
    created = client.add_code(promotion_id, "VIP-A", payload={"session": "cs_1"})
    assert created == IndividualCode(code_id("VIP-A"), promotion_id, "VIP-A", {"session": "cs_1"})
    assert emulator.find("VIP-A")["id"] == code_id("VIP-A")


def test_add_code_twice_returns_the_existing_code(client, emulator, promotion_id):
    first = client.add_code(promotion_id, "VIP-A")
    second = client.add_code(promotion_id, "VIP-A")
    assert second == first
    assert len(emulator.codes(promotion_id)) == 1
    assert [e.status for e in emulator.exchanges("POST", CREATE)] == [200, 400]


def test_create_code_sends_one_create_and_no_lookup(client, emulator, promotion_id):
    row, created = client.create_code(promotion_id, "VIP-A")
    assert created and row.code == "VIP-A"
    assert [e.path for e in emulator.log if "oauth" not in e.path] == [
        "/api/promotion-individual-code"
    ]


def test_create_code_that_exists_reports_it_not_created(client, emulator, promotion_id):
    emulator.add_code(promotion_id, "VIP-A", code_id=code_id("VIP-A"))
    row, created = client.create_code(promotion_id, "VIP-A")
    assert not created and row.id == code_id("VIP-A")
    assert len(emulator.codes(promotion_id)) == 1


def test_add_code_taken_under_another_id_in_the_promotion_returns_it(
    client, emulator, promotion_id
):
    seeded = emulator.add_code(promotion_id, "vip-a")  # random id, other case
    found = client.add_code(promotion_id, "VIP-A")
    assert found.id == seeded and found.code == "vip-a"
    assert [e.status for e in emulator.exchanges("POST", CREATE)] == [500]


def test_add_code_taken_by_another_promotion_is_conflict(client, emulator, promotion_id):
    other = emulator.add_promotion(name="Summer", pattern=None)
    emulator.add_code(other, "VIP-A")
    with pytest.raises(Conflict, match="already belongs to promotion"):
        client.add_code(promotion_id, "VIP-A")
    assert emulator.codes(promotion_id) == []


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (
            500,
            {
                "code": "1062",
                "status": "500",
                "title": "Internal Server Error",
                "detail": "An exception occurred while executing a query: SQLSTATE[23000]: "
                "Integrity constraint violation: 1062 Duplicate entry '\\x8F' for key "
                "'promotion_individual_code.PRIMARY'",
            },
        ),
        (409, {"status": "409", "code": "0", "title": "Conflict", "detail": "already exists"}),
        (400, {"status": "400", "code": "X", "title": "Bad Request", "detail": "Duplicate code"}),
    ],
    ids=["primary-key-500", "proxy-409", "duplicate-400"],
)
def test_add_code_other_duplicate_shapes_resolve_by_lookup(
    client, emulator, promotion_id, status, error
):
    emulator.add_code(promotion_id, "VIP-A", code_id=code_id("VIP-A"))
    emulator.inject(method="POST", path=CREATE, status=status, body={"errors": [error]})
    assert client.add_code(promotion_id, "VIP-A").id == code_id("VIP-A")


def test_add_code_for_an_unknown_promotion_is_not_found_with_config_hint(client):
    with pytest.raises(NotFound) as caught:
        client.add_code("0" * 32, "VIP-A")
    assert "vip_promotion_id" in str(caught.value)


def test_add_code_refused_by_validation_is_invalid_request(client, promotion_id):
    with pytest.raises(InvalidRequest, match="/0/code"):
        client.add_code(promotion_id, "V" * 256)


def test_add_code_rejects_an_empty_code_without_a_call(client, emulator, promotion_id):
    with pytest.raises(InvalidRequest):
        client.add_code(promotion_id, "  ")
    assert emulator.log == []


def test_add_code_answer_lost_after_the_write_returns_the_stored_code(
    client, emulator, promotion_id
):
    emulator.inject(method="POST", path=CREATE, kind="reset", when="after")
    assert client.add_code(promotion_id, "VIP-A").id == code_id("VIP-A")
    assert len(emulator.codes(promotion_id)) == 1


def test_add_code_timeout_after_the_write_returns_the_stored_code(server, emulator, promotion_id):
    emulator.inject(method="POST", path=CREATE, kind="timeout", when="after", delay=0.6)
    with make_client(server, timeout=0.3) as client:
        assert client.add_code(promotion_id, "VIP-A").code == "VIP-A"


def test_add_code_timeout_before_the_write_is_outcome_unknown_and_safe_to_repeat(
    server, emulator, promotion_id
):
    emulator.inject(method="POST", path=CREATE, kind="timeout", when="before", delay=0.6)
    with make_client(server, timeout=0.3) as client:
        with pytest.raises(OutcomeUnknown):
            client.add_code(promotion_id, "VIP-A")
        time.sleep(0.35)  # let the stalled request finish
        assert client.add_code(promotion_id, "VIP-A").id == code_id("VIP-A")
    assert len(emulator.codes(promotion_id)) == 1


def test_add_code_500_without_a_write_is_unavailable(client, emulator, promotion_id):
    emulator.inject(method="POST", path=CREATE, status=500)
    with pytest.raises(Unavailable, match="not there"):
        client.add_code(promotion_id, "VIP-A")


def test_add_code_502_after_the_write_returns_the_stored_code(client, emulator, promotion_id):
    emulator.inject(method="POST", path=CREATE, status=502, when="after")
    assert client.add_code(promotion_id, "VIP-A").id == code_id("VIP-A")


def test_ensure_code_creates_a_missing_code(client, emulator, promotion_id):
    row, created = client.ensure_code(promotion_id, "VIP-A")
    assert created is True and row.code == "VIP-A"
    assert emulator.write_count() == 1


def test_ensure_code_finds_an_existing_code_without_writing(client, emulator, promotion_id):
    emulator.add_code(promotion_id, "VIP-A")
    row, created = client.ensure_code(promotion_id, "VIP-A")
    assert created is False and row.code == "VIP-A"
    assert emulator.write_count() == 0


def test_empty_payload_comes_back_as_php_list_and_reads_as_empty_mapping(
    client, emulator, promotion_id
):
    emulator.add_code(promotion_id, "VIP-A", payload={})
    assert emulator.find("VIP-A")["payload"] == []
    found = client.find_code("VIP-A")
    assert found is not None and found.payload == {}


# -- iter_codes ------------------------------------------------------------------------------


def test_iter_codes_pages_through_every_code_sorted_by_code(client, emulator, promotion_id):
    codes = [f"VIP-{i:05d}" for i in range(1203)]
    emulator.add_codes(promotion_id, reversed(codes))
    listed = [c.code for c in client.iter_codes(promotion_id, page_size=500)]
    assert listed == codes
    assert len(emulator.exchanges(path=SEARCH)) == 3


def test_iter_codes_yields_only_the_promotions_codes(client, emulator, promotion_id):
    other = emulator.add_promotion(name="Other", pattern=None)
    emulator.add_codes(promotion_id, ["VIP-1", "VIP-2"])
    emulator.add_codes(other, ["X-1"])
    assert [c.code for c in client.iter_codes(promotion_id)] == ["VIP-1", "VIP-2"]


def test_iter_codes_refuses_a_server_that_ignores_paging(client, emulator, promotion_id):
    rows = [
        {"id": f"{i:032x}", "promotionId": promotion_id, "code": f"VIP-{i}", "payload": None}
        for i in range(2)
    ]
    emulator.inject(method="POST", path=SEARCH, status=200, body={"data": rows}, times=2)
    with pytest.raises(BadResponse, match="repeats"):
        list(client.iter_codes(promotion_id, page_size=2))


def test_iter_codes_page_size_above_shopware_max_is_refused(client, promotion_id):
    with pytest.raises(ValueError):
        list(client.iter_codes(promotion_id, page_size=501))


# -- promotion --------------------------------------------------------------------------------


def test_get_promotion_reads_the_code_flags(client, emulator):
    pid = emulator.add_promotion(name="VIP", use_individual_codes=False, pattern="V-%d")
    promotion = client.get_promotion(pid.upper())
    assert (promotion.id, promotion.name, promotion.individual_code_pattern) == (pid, "VIP", "V-%d")
    assert promotion.use_codes is True and promotion.accepts_individual_codes is False


def test_get_promotion_name_falls_back_to_the_translation(client, emulator, promotion_id):
    data = {
        "id": promotion_id,
        "name": None,
        "translated": {"name": "VIP (de)"},
        "active": True,
        "useCodes": True,
        "useIndividualCodes": True,
        "individualCodePattern": None,
    }
    emulator.inject(method="GET", path="/api/promotion/", status=200, body={"data": data})
    assert client.get_promotion(promotion_id).name == "VIP (de)"


def test_get_promotion_missing_is_not_found_with_config_hint(client):
    with pytest.raises(NotFound) as caught:
        client.get_promotion("f" * 32)
    assert "vip_promotion_id" in str(caught.value)
    assert "FRAMEWORK__RESOURCE_NOT_FOUND" in str(caught.value)


def test_get_promotion_with_a_malformed_id_is_refused_without_a_call(client, emulator):
    with pytest.raises(InvalidRequest, match="vip_promotion_id"):
        client.get_promotion("VIP-promo")
    assert emulator.log == []


def test_get_promotion_without_a_flag_is_bad_response_naming_it(client, emulator, promotion_id):
    data = {"id": promotion_id, "name": "VIP", "active": True, "useCodes": True}
    emulator.inject(method="GET", path="/api/promotion/", status=200, body={"data": data})
    with pytest.raises(BadResponse, match="useIndividualCodes"):
        client.get_promotion(promotion_id)


# -- HTTP behaviours ---------------------------------------------------------------------------


def test_429_with_retry_after_is_waited_out_and_retried(server, emulator):
    emulator.inject(method="POST", path=SEARCH, status=429, headers={"Retry-After": "0.05"})
    stats = CallStats()
    with make_client(server, stats=stats) as client:
        started = time.monotonic()
        assert client.find_code("VIP-A") is None
    assert time.monotonic() - started >= 0.05
    assert stats.service("shopware").throttled == 1
    assert [e.status for e in emulator.exchanges(path=SEARCH)] == [429, 200]


def test_5xx_on_a_search_is_retried(client, emulator):
    emulator.inject(method="POST", path=SEARCH, status=503, times=2)
    assert client.find_code("VIP-A") is None
    assert [e.status for e in emulator.exchanges(path=SEARCH)] == [503, 503, 200]


def test_persistent_5xx_on_a_read_is_unavailable(server, emulator, promotion_id):
    emulator.inject(method="GET", path="/api/promotion/", status=500, times=None)
    with make_client(server, retry=RetryPolicy(attempts=2)) as client, pytest.raises(Unavailable):
        client.get_promotion(promotion_id)
    assert len(emulator.exchanges("GET", "/api/promotion/")) == 2


def test_malformed_json_is_bad_response(client, emulator):
    emulator.inject(method="POST", path=SEARCH, kind="malformed")
    with pytest.raises(BadResponse, match="not JSON"):
        client.find_code("VIP-A")


def test_html_page_is_bad_response(client, emulator):
    emulator.inject(method="POST", path=SEARCH, kind="html")
    with pytest.raises(BadResponse, match="text/html"):
        client.find_code("VIP-A")


def test_check_access_reports_version_and_read_permission(client):
    info = client.check_access()
    assert info.version == "6.7.10.1" and info.can_read_codes is True


def test_check_access_without_read_privilege_says_so(server, emulator):
    emulator.privileges = {"promotion:read"}
    with make_client(server) as client:
        assert client.check_access().can_read_codes is False


def test_missing_create_privilege_is_auth_rejected(server, emulator, promotion_id):
    emulator.privileges = {"promotion_individual_code:read"}
    denied = pytest.raises(AuthRejected, match="promotion_individual_code:create")
    with make_client(server) as client, denied:
        client.add_code(promotion_id, "VIP-A")


def test_base_url_with_api_suffix_is_accepted(server, emulator):
    with ShopwareClient(
        server.url + "/api/", CLIENT_ID, SECRET, transport=httpx.HTTPTransport(verify=False)
    ) as client:
        assert client.find_code("VIP-A") is None


# -- the emulator's vendor behaviour -------------------------------------------------------------


def test_emulator_answers_jsonapi_unless_json_is_accepted(server, emulator, promotion_id):
    emulator.add_code(promotion_id, "VIP-A")
    with raw(server, emulator, "*/*") as http:
        answer = http.post("/api/search/promotion-individual-code", json={})
    assert answer.headers["content-type"] == "application/vnd.api+json"
    resource = answer.json()["data"][0]
    assert resource["type"] == "promotion_individual_code"
    assert resource["attributes"]["code"] == "VIP-A"
    assert answer.json()["meta"] == {"totalCountMode": 0, "total": 1}


def test_emulator_refuses_an_unsupported_accept_with_415(server, emulator):
    with raw(server, emulator, "text/html") as http:
        answer = http.post("/api/search/promotion-individual-code", json={})
    assert answer.status_code == 415
    assert "unsupported" in answer.json()["errors"][0]["detail"]


def test_emulator_total_follows_the_total_count_mode(server, emulator, promotion_id):
    emulator.add_codes(promotion_id, [f"C-{i:03d}" for i in range(40)])
    totals = {}
    with raw(server, emulator, "application/json") as http:
        for mode in ("none", "exact", "next-pages"):
            body = {"limit": 5, "total-count-mode": mode}
            totals[mode] = http.post("/api/search/promotion-individual-code", json=body).json()[
                "total"
            ]
    assert totals == {"none": 5, "exact": 40, "next-pages": 31}


def test_emulator_page_without_limit_starts_at_offset_zero(server, emulator, promotion_id):
    emulator.add_codes(promotion_id, ["A", "B", "C"])
    sort = [{"field": "code", "order": "ASC"}]
    with raw(server, emulator, "application/json") as http:
        answer = http.post(
            "/api/search/promotion-individual-code", json={"page": 3, "sort": sort}
        ).json()
    assert [row["code"] for row in answer["data"]] == ["A", "B", "C"]


def test_emulator_limit_above_max_limit_is_400(server, emulator):
    with raw(server, emulator, "application/json") as http:
        answer = http.post("/api/search/promotion-individual-code", json={"limit": 501})
    assert answer.status_code == 400
    error = answer.json()["errors"][0]
    assert error["code"] == "FRAMEWORK__QUERY_LIMIT_EXCEEDED"
    assert error["source"] == {"pointer": "/limit"}


def test_emulator_create_without_response_param_is_204_with_location(
    server, emulator, promotion_id
):
    with raw(server, emulator, "application/json") as http:
        answer = http.post(
            "/api/promotion-individual-code", json={"promotionId": promotion_id, "code": "X"}
        )
    assert answer.status_code == 204 and answer.content == b""
    assert answer.headers["location"].endswith(emulator.find("X")["id"])


def test_emulator_missing_fields_are_violations_at_their_pointers(server, emulator):
    with raw(server, emulator, "application/json") as http:
        answer = http.post("/api/promotion-individual-code", json={})
    assert answer.status_code == 400
    errors = answer.json()["errors"]
    assert [e["source"]["pointer"] for e in errors] == ["/0/promotionId", "/0/code"]
    assert all(
        "title" not in e and e["detail"] == "This value should not be blank." for e in errors
    )


def test_emulator_duplicate_code_is_a_raw_1062_even_across_promotions(
    server, emulator, promotion_id
):
    other = emulator.add_promotion(name="Other", pattern=None)
    emulator.add_code(other, "SAME")
    with raw(server, emulator, "application/json") as http:
        answer = http.post(
            "/api/promotion-individual-code", json={"promotionId": promotion_id, "code": "same "}
        )
    assert answer.status_code == 500
    error = answer.json()["errors"][0]
    assert error["code"] == "1062" and "Duplicate entry 'same '" in error["detail"]


def test_emulator_sync_upserts_codes_by_id(server, emulator, promotion_id):
    record = {"id": code_id("S-1"), "promotionId": promotion_id, "code": "S-1"}
    operations = [{"entity": "promotion_individual_code", "action": "upsert", "payload": [record]}]
    with raw(server, emulator, "application/json") as http:
        first = http.post("/api/_action/sync", json=operations)
        again = http.post("/api/_action/sync", json=operations)
    assert first.status_code == again.status_code == 200
    assert first.json()["data"] == {"promotion_individual_code": [code_id("S-1")]}
    assert len(emulator.codes(promotion_id)) == 1


def test_emulator_without_authorization_header_is_oauth_401(server):
    answer = httpx.post(
        f"{server.url}/api/search/promotion-individual-code",
        json={},
        headers={"Accept": "application/json"},
        verify=False,
    )
    assert answer.status_code == 401
    assert answer.json()["errors"][0]["detail"] == 'Missing "Authorization" header'


def test_emulator_counts_only_real_writes(client, emulator, promotion_id):
    client.find_code("VIP-A")
    client.add_code(promotion_id, "VIP-A")
    client.add_code(promotion_id, "VIP-A")  # refused create + look-up
    assert emulator.write_count() == 2


def test_emulator_answers_a_100k_code_shop_in_milliseconds(client, emulator, promotion_id):
    emulator.add_codes(promotion_id, (f"VIP-{i:06d}" for i in range(100_000)))
    started = time.perf_counter()
    assert client.find_code("VIP-054321") is not None
    page = next(iter(client.iter_codes(promotion_id, page_size=100)))
    elapsed = time.perf_counter() - started
    assert page.code == "VIP-000000"
    assert elapsed < 1.0


def test_refused_credentials_are_not_retried_within_a_run(server, emulator):
    with make_client(server, "wrong-secret-value") as client:
        for _ in range(3):
            with pytest.raises(AuthRejected, match="SHOPWARE_CLIENT_SECRET"):
                client.find_code("VIP-A")
    assert token_requests(emulator) == 1


def test_emulator_log_never_holds_the_client_secret(client, emulator):
    client.find_code("VIP-A")
    logged = emulator.exchanges(path=TOKEN)[0].body
    assert logged["client_secret"] == "<redacted>" and logged["client_id"] == CLIENT_ID


def test_emulator_token_body_that_is_not_json_is_unsupported_grant(server):
    form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET}
    with httpx.Client(base_url=server.url, verify=False) as http:
        as_form = http.post("/api/oauth/token", data=form)
        as_text = http.post(
            "/api/oauth/token", content=json.dumps(form), headers={"Content-Type": "text/plain"}
        )
    assert as_form.status_code == 200 and as_form.json()["expires_in"] == 600
    assert as_text.status_code == 400
    assert as_text.json()["errors"][0]["code"] == "2"


def test_emulator_sync_deletes_and_reports_unknown_ids(server, emulator, promotion_id):
    kept = emulator.add_code(promotion_id, "KEEP")
    gone = emulator.add_code(promotion_id, "GONE")
    missing = "b" * 32
    operations = {
        "drop": {
            "entity": "promotion_individual_code",
            "action": "delete",
            "payload": [{"id": gone}, {"id": missing}],
        }
    }
    with raw(server, emulator, "application/json") as http:
        answer = http.post("/api/_action/sync", json=operations).json()
    assert answer["deleted"] == {"promotion_individual_code": [gone]}
    assert answer["notFound"] == {"promotion_individual_code": [missing]}
    assert [row["id"] for row in emulator.codes()] == [kept]


# -- promotion validity (rule 23) ---------------------------------------------------------------

NOON = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def promo(**fields: Any) -> Promotion:
    """A promotion whose codes can be redeemed, with `fields` changed."""
    values: dict[str, Any] = {
        "id": "a" * 32,
        "name": "VIP backers",
        "active": True,
        "use_codes": True,
        "use_individual_codes": True,
        "individual_code_pattern": None,
    }
    return Promotion(**{**values, **fields})


def test_find_promotion_of_an_unknown_id_is_none(client):
    assert client.find_promotion("f" * 32) is None


def test_find_promotion_reads_the_validity_window_in_utc(client, emulator):
    pid = emulator.add_promotion(
        valid_from="2026-04-01T08:00:00.000+02:00", valid_until=datetime(2026, 6, 1, tzinfo=UTC)
    )
    promotion = client.find_promotion(pid)
    assert promotion is not None
    assert promotion.valid_from == datetime(2026, 4, 1, 6, 0, tzinfo=UTC)
    assert promotion.valid_until == datetime(2026, 6, 1, tzinfo=UTC)


def test_find_promotion_without_dates_has_an_open_window(client, promotion_id):
    promotion = client.find_promotion(promotion_id)
    assert promotion is not None and (promotion.valid_from, promotion.valid_until) == (None, None)


def test_find_promotion_reads_the_global_limit_and_order_count(client, emulator):
    pid = emulator.add_promotion(max_redemptions_global=2)
    emulator.add_code(pid, "VIP-A")
    emulator.redeem_code("VIP-A")
    promotion = client.find_promotion(pid)
    assert promotion is not None
    assert (promotion.max_redemptions_global, promotion.order_count) == (2, 1)


def test_a_date_that_is_not_iso_8601_is_bad_response(client, emulator, promotion_id):
    data = {
        "id": promotion_id,
        "name": "VIP",
        "active": True,
        "useCodes": True,
        "useIndividualCodes": True,
        "validUntil": "next Tuesday",
    }
    emulator.inject(method="GET", path="/api/promotion/", status=200, body={"data": data})
    with pytest.raises(BadResponse, match="validUntil"):
        client.find_promotion(promotion_id)


def test_an_active_promotion_with_individual_codes_and_open_dates_is_redeemable():
    assert redeemable(promo(), NOON) is None


def test_an_inactive_promotion_is_not_redeemable_and_the_reason_names_it_and_the_fix():
    reason = redeemable(promo(active=False), NOON)
    assert reason is not None
    assert "'VIP backers' (" + "a" * 32 + ")" in reason
    assert "not active" in reason and "set it active" in reason
    assert "Marketing > Promotions" in reason


def test_a_promotion_before_its_start_is_not_redeemable():
    reason = redeemable(promo(valid_from=NOON + timedelta(days=1)), NOON)
    assert reason is not None and "starts only at 2026-05-02 12:00 UTC" in reason


def test_a_promotion_is_redeemable_from_the_moment_it_starts():
    assert redeemable(promo(valid_from=NOON), NOON) is None


def test_a_promotion_after_its_end_is_not_redeemable():
    reason = redeemable(promo(valid_until=NOON - timedelta(hours=1)), NOON)
    assert reason is not None and "ended at 2026-05-01 11:00 UTC" in reason
    assert "end date" in reason


def test_a_promotion_is_no_longer_redeemable_at_its_end():
    """ActiveDateRange keeps validUntil > now: the end itself is outside."""
    assert redeemable(promo(valid_until=NOON), NOON) is not None


def test_a_promotion_inside_both_dates_is_redeemable():
    window = promo(valid_from=NOON - timedelta(days=1), valid_until=NOON + timedelta(days=1))
    assert redeemable(window, NOON) is None


def test_now_in_another_time_zone_is_compared_as_the_same_instant():
    berlin = NOON.astimezone(timezone(timedelta(hours=2)))
    assert redeemable(promo(valid_until=NOON + timedelta(minutes=1)), berlin) is None


@pytest.mark.parametrize("flag", ["use_codes", "use_individual_codes"])
def test_a_promotion_without_individual_codes_is_not_redeemable(flag):
    reason = redeemable(promo(**{flag: False}), NOON)
    assert reason is not None and "individual codes" in reason


def test_a_promotion_at_its_global_maximum_is_not_redeemable():
    reason = redeemable(promo(max_redemptions_global=100, order_count=100), NOON)
    assert reason is not None and "maximum" in reason


def test_a_missing_promotion_is_not_redeemable_and_names_the_config_key():
    reason = redeemable(None, NOON, promotion_id="f" * 32)
    assert reason is not None
    assert "f" * 32 in reason and "does not exist" in reason and "vip_promotion_id" in reason


def test_every_problem_is_named_on_one_line():
    reason = redeemable(promo(active=False, valid_until=NOON, use_codes=False), NOON)
    assert reason is not None and "\n" not in reason
    assert "not active" in reason and "ended" in reason and "individual codes" in reason


def test_a_promotion_without_a_name_is_named_by_its_id():
    reason = redeemable(promo(name=None, active=False), NOON)
    assert reason is not None and reason.startswith("VIP promotion " + "a" * 32 + ":")


# -- redemption and deletion (rule 17) ---------------------------------------------------------


def test_a_code_with_syncctls_own_payload_is_not_redeemed(client, emulator, promotion_id):
    emulator.add_code(promotion_id, "VIP-A", payload={"stripe_session": "cs_1"})
    found = client.find_code("VIP-A")
    assert found is not None and found.redeemed is False and found.order_id is None


def test_find_code_shows_a_code_an_order_used_as_redeemed(client, emulator, promotion_id):
    emulator.add_code(promotion_id, "VIP-A")
    emulator.redeem_code("VIP-A", order_id="b" * 32)
    found = client.find_code("VIP-A")
    assert found is not None and found.redeemed is True and found.order_id == "b" * 32


def test_find_codes_shows_which_codes_were_redeemed(client, emulator, promotion_id):
    emulator.add_codes(promotion_id, ["VIP-A", "VIP-B"])
    emulator.redeem_code("VIP-B")
    found = client.find_codes(["VIP-A", "VIP-B"])
    assert {key: row.redeemed for key, row in found.items()} == {"vip-a": False, "vip-b": True}


def test_iter_codes_shows_which_codes_were_redeemed(client, emulator, promotion_id):
    emulator.add_codes(promotion_id, ["VIP-A", "VIP-B"])
    emulator.redeem_code("VIP-A")
    assert [(c.code, c.redeemed) for c in client.iter_codes(promotion_id)] == [
        ("VIP-A", True),
        ("VIP-B", False),
    ]


def test_delete_code_removes_the_row_and_says_so(client, emulator, promotion_id):
    emulator.add_code(promotion_id, "VIP-A")
    row = client.find_code("VIP-A")
    assert row is not None
    assert client.delete_code(row) is True
    assert emulator.find("VIP-A") is None
    (exchange,) = emulator.exchanges("DELETE")
    assert (exchange.path, exchange.status) == (f"/api/promotion-individual-code/{row.id}", 204)


def test_delete_code_takes_the_id_too(client, emulator, promotion_id):
    cid = emulator.add_code(promotion_id, "VIP-A")
    assert client.delete_code(cid.upper()) is True
    assert emulator.codes(promotion_id) == []


def test_delete_code_of_a_code_already_gone_is_false(client, emulator, promotion_id):
    cid = emulator.add_code(promotion_id, "VIP-A")
    client.delete_code(cid)
    assert client.delete_code(cid) is False


def test_delete_code_whose_answer_was_lost_is_retried_and_done(client, emulator, promotion_id):
    cid = emulator.add_code(promotion_id, "VIP-A")
    emulator.inject(
        method="DELETE", path="/api/promotion-individual-code/", kind="reset", when="after"
    )
    assert client.delete_code(cid) is False  # the retry found it gone: deleted either way
    assert emulator.find("VIP-A") is None
    assert [e.status for e in emulator.exchanges("DELETE")] == [0, 404]  # 0: connection cut


def test_delete_code_with_a_malformed_id_is_refused_without_a_call(client, emulator):
    with pytest.raises(InvalidRequest, match="32 hex"):
        client.delete_code("VIP-A")
    assert emulator.log == []


def test_delete_code_without_the_delete_privilege_is_auth_rejected(client, emulator, promotion_id):
    cid = emulator.add_code(promotion_id, "VIP-A")
    emulator.privileges = {"promotion_individual_code:read"}
    with pytest.raises(AuthRejected, match="promotion_individual_code:delete"):
        client.delete_code(cid)
    assert emulator.find("VIP-A") is not None


# -- the emulator's promotions and redemptions ---------------------------------------------------


def test_emulator_serialises_promotion_dates_as_shopware_does(server, emulator):
    pid = emulator.add_promotion(valid_until=datetime(2026, 6, 1, 10, 30, tzinfo=UTC))
    with raw(server, emulator, "application/json") as http:
        data = http.get(f"/api/promotion/{pid}").json()["data"]
    assert data["validUntil"] == "2026-06-01T10:30:00.000+00:00"
    assert data["validFrom"] is None


def test_emulator_update_promotion_changes_only_what_is_given(emulator):
    pid = emulator.add_promotion(valid_until=NOON)
    row = emulator.update_promotion(pid, active=False)
    assert row["active"] is False and row["validUntil"] == "2026-05-01T12:00:00.000+00:00"


def test_emulator_update_promotion_none_clears_a_date(emulator):
    pid = emulator.add_promotion(valid_until=NOON)
    assert emulator.update_promotion(pid, valid_until=None)["validUntil"] is None


def test_emulator_redemption_replaces_the_payload_as_shopwares_redeemer(emulator):
    pid = emulator.add_promotion()
    emulator.add_code(pid, "VIP-A")
    row = emulator.redeem_code(
        "vip-a", order_id="C" * 32, customer_id="D" * 32, customer_name="Ada Lovelace"
    )
    assert row["payload"] == {
        "orderId": "c" * 32,
        "customerId": "d" * 32,
        "customerName": "Ada Lovelace",
    }
    assert emulator.promotion(pid)["orderCount"] == 1


def test_emulator_cart_refuses_a_code_whose_payload_is_not_null(emulator):
    """PermittedIndividualCodePromotions: "a payload of null means, [...] not yet been redeemed"."""
    pid = emulator.add_promotion()
    emulator.add_code(pid, "VIP-A", payload={"stripe_session": "cs_1"})
    with pytest.raises(RedemptionRefused, match="payload is not null"):
        emulator.redeem_code("VIP-A")


def test_emulator_order_written_through_the_api_overwrites_any_payload(emulator):
    pid = emulator.add_promotion()
    emulator.add_code(pid, "VIP-A", payload={"stripe_session": "cs_1"})
    row = emulator.redeem_code("VIP-A", order_id="c" * 32, via_cart=False)
    assert row["payload"]["orderId"] == "c" * 32 and "stripe_session" not in row["payload"]


def test_emulator_refuses_a_second_order_on_a_redeemed_code(emulator):
    pid = emulator.add_promotion()
    emulator.add_code(pid, "VIP-A")
    emulator.redeem_code("VIP-A", order_id="c" * 32)
    with pytest.raises(RedemptionRefused, match="already redeemed"):
        emulator.redeem_code("VIP-A", order_id="e" * 32, via_cart=False)


def test_emulator_cart_refuses_a_code_of_an_inactive_promotion(emulator):
    pid = emulator.add_promotion(active=False)
    emulator.add_code(pid, "VIP-A")
    with pytest.raises(RedemptionRefused, match="not active"):
        emulator.redeem_code("VIP-A")


def test_emulator_cart_refuses_a_code_after_the_promotion_ended(emulator):
    emulator.now = NOON.timestamp()
    pid = emulator.add_promotion(valid_until=NOON)
    emulator.add_code(pid, "VIP-A")
    with pytest.raises(RedemptionRefused, match="ended"):
        emulator.redeem_code("VIP-A")


def test_emulator_cart_takes_a_code_inside_the_promotion_dates(emulator):
    emulator.now = NOON.timestamp()
    pid = emulator.add_promotion(valid_from=NOON, valid_until=NOON + timedelta(seconds=1))
    emulator.add_code(pid, "VIP-A")
    assert emulator.redeem_code("VIP-A")["payload"] is not None


def test_emulator_delete_of_an_unknown_code_is_shopwares_404(server, emulator):
    with raw(server, emulator, "application/json") as http:
        response = http.delete(f"/api/promotion-individual-code/{'f' * 32}")
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "FRAMEWORK__RESOURCE_NOT_FOUND"


def test_emulator_delete_answers_204_with_a_location(server, emulator):
    pid = emulator.add_promotion()
    cid = emulator.add_code(pid, "VIP-A")
    with raw(server, emulator, "application/json") as http:
        response = http.delete(f"/api/promotion-individual-code/{cid}")
    assert response.status_code == 204 and response.content == b""
    assert response.headers["location"].endswith(f"/api/promotion-individual-code/{cid}")


def test_emulator_frees_a_deleted_code_for_a_new_row(client, emulator, promotion_id):
    cid = emulator.add_code(promotion_id, "VIP-A")
    client.delete_code(cid)
    assert client.add_code(promotion_id, "VIP-A").code == "VIP-A"
