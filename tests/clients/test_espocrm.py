"""EspoClient against the EspoCRM emulator over loopback HTTP.

One behaviour per test. The emulator reproduces Espo's pitfalls (duplicate
check on names, 409 bodies with primary addresses only, 403 above maxSize,
reasons in X-Status-Reason), so these tests show the client copes with them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from syncctl.clients.espocrm import EspoClient, Lead
from syncctl.errors import (
    AuthRejected,
    BadResponse,
    ConfigError,
    Conflict,
    InvalidRequest,
    NotFound,
    OutcomeUnknown,
    Unavailable,
)
from syncctl.net.http import CallStats, RetryPolicy
from syncctl.sandbox.espocrm import EspoEmulator
from syncctl.sandbox.server import EmulatorServer
from tests.clients.espocrm_fixtures import API_KEY, plain_transport, serve, start_server


@pytest.fixture
def emulator() -> EspoEmulator:
    return EspoEmulator(api_key=API_KEY)


@pytest.fixture
def server(emulator: EspoEmulator) -> Iterator[EmulatorServer]:
    srv = start_server(emulator)
    yield srv
    srv.stop()


@pytest.fixture
def stats() -> CallStats:
    return CallStats()


@pytest.fixture
def client(server: EmulatorServer, stats: CallStats) -> Iterator[EspoClient]:
    with EspoClient(server.url, API_KEY, stats=stats, transport=plain_transport()) as c:
        yield c


@pytest.fixture
def raw(server: EmulatorServer) -> Iterator[httpx.Client]:
    """Plain HTTP to the emulator, for checking its answers directly."""
    with httpx.Client(
        base_url=server.url + "/api/v1",
        headers={"X-Api-Key": API_KEY},
        transport=plain_transport(),
    ) as c:
        yield c


def query(exchange: Any) -> dict[str, str]:
    return dict(exchange.query)


def lead_posts(emulator: EspoEmulator) -> list[Any]:
    return emulator.exchanges("POST", r"/Lead$")


# -- find ----------------------------------------------------------------------------


def test_find_matches_email_in_any_case(client: EspoClient, emulator: EspoEmulator) -> None:
    lead_id = emulator.add_lead("Grace", "Hopper", "Grace.Hopper@Example.com")
    emulator.add_lead("Ada", "Lovelace", "ada@example.com")

    found = client.find_leads_by_email("grace.hopper@EXAMPLE.COM")

    assert [lead.id for lead in found] == [lead_id]
    assert found[0].email == "Grace.Hopper@Example.com"
    assert found[0].first_name == "Grace"


def test_find_matches_a_secondary_address(client: EspoClient, emulator: EspoEmulator) -> None:
    lead_id = emulator.add_lead(
        "Alan", "Turing", "alan@work.example", other_emails=["at@home.example"]
    )

    found = client.find_leads_by_email("AT@home.example")

    assert [lead.id for lead in found] == [lead_id]
    assert found[0].email_addresses == ("alan@work.example", "at@home.example")


def test_find_returns_nothing_for_an_unknown_email(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    emulator.add_lead("Ada", "Lovelace", "ada@example.com")

    assert client.find_leads_by_email("nobody@example.com") == []


def test_find_sends_an_equals_filter_a_select_and_a_small_page(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    client.find_leads_by_email("ada@example.com")

    [exchange] = emulator.exchanges("GET", r"/Lead$")
    q = query(exchange)
    assert q["where[0][type]"] == "equals"
    assert q["where[0][attribute]"] == "emailAddress"
    assert q["where[0][value]"] == "ada@example.com"
    assert "emailAddressData" in q["select"].split(",")
    assert int(q["maxSize"]) <= 25


def test_find_rechecks_matches_when_the_filter_is_ignored(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    # A proxy that strips the query string makes Espo answer every Lead.
    everyone = [
        {"id": "a1", "emailAddress": "x@example.com", "emailAddressData": []},
        {
            "id": "a2",
            "emailAddress": "ada@example.com",
            "emailAddressData": [{"emailAddress": "ada@example.com", "primary": True}],
        },
    ]
    emulator.inject(method="GET", path=r"/Lead$", status=200, body={"total": -2, "list": everyone})

    found = client.find_leads_by_email("ADA@example.com")

    assert [lead.id for lead in found] == ["a2"]


def test_find_confirms_a_secondary_match_by_reading_the_record() -> None:
    # Some versions send no emailAddressData in lists: only a read shows it.
    emulator = EspoEmulator(api_key=API_KEY, list_email_data=False)
    lead_id = emulator.add_lead(
        "Alan", "Turing", "alan@work.example", other_emails=["at@home.example"]
    )
    with serve(emulator) as client:
        found = client.find_leads_by_email("at@home.example")

    assert [lead.id for lead in found] == [lead_id]
    assert emulator.exchanges("GET", rf"/Lead/{lead_id}$")


def test_emails_with_leads_asks_for_many_addresses_in_one_query(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    emulator.add_lead("Grace", "Hopper", "Grace@Example.com")
    emulator.add_lead("Alan", "Turing", "alan@work.example", other_emails=["at@home.example"])
    emulator.add_lead("Ada", "Lovelace", "ada@example.com")

    found = client.emails_with_leads(["grace@example.com", "AT@home.example", "nobody@x.io"])

    assert found == {"grace@example.com", "at@home.example"}
    [exchange] = emulator.exchanges("GET", r"/Lead$")
    q = query(exchange)
    assert q["where[0][type]"] == "or"
    assert q["where[0][value][2][type]"] == "equals"
    assert q["where[0][value][2][attribute]"] == "emailAddress"


def test_emails_with_leads_queries_25_addresses_at_a_time(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    emails = [f"u{i}@example.com" for i in range(60)]
    for email in emails[::7]:
        emulator.add_lead("U", email, email)

    assert client.emails_with_leads(emails) == set(emails[::7])
    assert len(emulator.exchanges("GET", r"/Lead$")) == 3


def test_emails_with_leads_confirms_secondary_matches_the_list_does_not_show() -> None:
    emulator = EspoEmulator(api_key=API_KEY, list_email_data=False)
    emulator.add_lead("Alan", "Turing", "alan@work.example", other_emails=["at@home.example"])
    with serve(emulator) as client:
        assert client.emails_with_leads(["at@home.example", "bob@x.io"]) == {"at@home.example"}


def test_emails_with_leads_refuses_an_answer_that_ignored_the_filter(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    stranger = {
        "id": "a1",
        "emailAddress": "x@example.com",
        "emailAddressData": [{"emailAddress": "x@example.com", "primary": True}],
    }
    emulator.inject(
        method="GET", path=r"/Lead$", status=200, body={"total": -2, "list": [stranger]}
    )
    with pytest.raises(BadResponse, match="ignored the email filter"):
        client.emails_with_leads(["ada@example.com"])


# -- create --------------------------------------------------------------------------


def test_create_posts_with_the_duplicate_check_on(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    result = client.create_lead(
        first_name="Ada", last_name="Lovelace", email="ada@example.com", source="Campaign"
    )

    assert result.created is True
    assert result.lead.email == "ada@example.com"
    assert result.lead.status == "New"
    assert result.lead.source == "Campaign"
    [post] = lead_posts(emulator)
    assert post.body == {
        "firstName": "Ada",
        "lastName": "Lovelace",
        "emailAddress": "ada@example.com",
        "status": "New",
        "source": "Campaign",
    }
    headers = [h for m, p, h in emulator.header_log if m == "POST"]
    assert "x-skip-duplicate-check" not in headers[0]


def test_create_returns_the_existing_lead_on_a_duplicate_email(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    existing = emulator.add_lead("Grace", "Hopper", "Grace.Hopper@example.com")

    result = client.create_lead(
        first_name="G.", last_name="Hopper", email="grace.hopper@example.com", source="Campaign"
    )

    assert result.created is False
    assert result.lead.id == existing
    assert emulator.lead_count() == 1
    assert emulator.write_count() == 1  # the refused POST only


def test_create_same_name_with_the_same_email_creates_nothing(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    existing = emulator.add_lead("Ada", "Lovelace", "ada@example.com")

    result = client.create_lead(
        first_name="Ada", last_name="Lovelace", email="ADA@example.com", source="Campaign"
    )

    assert (result.created, result.lead.id) == (False, existing)
    assert emulator.lead_count() == 1


def test_create_a_namesake_with_another_email_skips_the_check(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    other = emulator.add_lead("John", "Smith", "john.smith@one.example")

    result = client.create_lead(
        first_name="John", last_name="Smith", email="jsmith@two.example", source="Campaign"
    )

    assert result.created is True
    assert result.lead.email == "jsmith@two.example"
    assert [p.id for p in result.other_people] == [other]
    posts = lead_posts(emulator)
    assert [p.status for p in posts] == [409, 200]
    headers = [h for m, p, h in emulator.header_log if m == "POST"]
    assert headers[1]["x-skip-duplicate-check"] == "true"
    assert emulator.lead_count() == 2


def test_create_does_not_duplicate_a_lead_holding_the_email_as_secondary(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    # The 409 shows only the primary address (another one): Espo's search,
    # which matches any address, tells this is the same person.
    existing = emulator.add_lead("J", "Doe", "jd@work.example", other_emails=["jane@home.example"])

    result = client.create_lead(
        first_name="Jane", last_name="Doe", email="jane@home.example", source="Campaign"
    )

    assert (result.created, result.lead.id) == (False, existing)
    assert emulator.lead_count() == 1


def test_create_reads_duplicates_when_the_409_has_only_ids_and_names() -> None:
    emulator = EspoEmulator(api_key=API_KEY, duplicate_body="id_name")
    other = emulator.add_lead("John", "Smith", "john.smith@one.example")
    with serve(emulator) as client:
        result = client.create_lead(
            first_name="John", last_name="Smith", email="jsmith@two.example", source="Campaign"
        )

    assert result.created is True
    assert emulator.exchanges("GET", rf"/Lead/{other}$")
    assert emulator.lead_count() == 2


def test_create_refuses_when_a_namesake_has_no_email(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    emulator.add_lead("John", "Smith", None)

    with pytest.raises(Conflict, match="without an email"):
        client.create_lead(
            first_name="John", last_name="Smith", email="john@example.com", source="Campaign"
        )
    assert emulator.lead_count() == 1


def test_create_raises_conflict_on_a_409_without_a_duplicate_list(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    # An ORM-level ValidationException also maps to 409, with no body.
    emulator.inject(
        method="POST", path=r"/Lead$", status=409, headers={"X-Status-Reason": "Not unique."}
    )

    with pytest.raises(Conflict, match="Not unique"):
        client.create_lead(
            first_name="Ada", last_name="Lovelace", email="ada@example.com", source="Campaign"
        )
    assert emulator.lead_count() == 0


def test_create_accepts_a_duplicate_list_wrapped_in_an_object(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    body = {"list": [{"id": "dup1", "name": "Ada L", "emailAddress": "Ada@example.com"}]}
    emulator.inject(
        method="POST",
        path=r"/Lead$",
        status=409,
        body=body,
        headers={"X-Status-Reason": "duplicate"},
    )

    result = client.create_lead(
        first_name="Ada", last_name="Lovelace", email="ada@example.com", source="Campaign"
    )

    assert (result.created, result.lead.id) == (False, "dup1")


def test_create_reports_the_validation_failure(client: EspoClient) -> None:
    with pytest.raises(InvalidRequest, match="source") as info:
        client.create_lead(
            first_name="Ada", last_name="Lovelace", email="ada@example.com", source="Newsletter"
        )
    assert info.value.status == 400


def test_create_timeout_after_sending_is_outcome_unknown(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    emulator.inject(method="POST", path=r"/Lead$", kind="reset", when="after")

    with pytest.raises(OutcomeUnknown):
        client.create_lead(
            first_name="Ada", last_name="Lovelace", email="ada@example.com", source="Campaign"
        )
    # The write happened: a lookup finds it, and no retry was sent.
    assert len(lead_posts(emulator)) == 1
    assert len(client.find_leads_by_email("ada@example.com")) == 1


def test_create_5xx_is_not_retried(client: EspoClient, emulator: EspoEmulator) -> None:
    emulator.inject(method="POST", path=r"/Lead$", status=500)

    with pytest.raises(OutcomeUnknown):
        client.create_lead(
            first_name="Ada", last_name="Lovelace", email="ada@example.com", source="Campaign"
        )
    assert len(lead_posts(emulator)) == 1


def test_create_without_create_permission_is_auth_rejected(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    emulator.set_lead_acl(create=False)

    with pytest.raises(AuthRejected, match="No create access") as info:
        client.create_lead(
            first_name="Ada", last_name="Lovelace", email="ada@example.com", source="Campaign"
        )
    assert info.value.status == 403


# -- iterate -------------------------------------------------------------------------


def test_iter_leads_pages_through_every_lead_oldest_first(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    ids = [
        emulator.add_lead(f"P{i}", "Q", f"p{i}@example.com", created_at=1_700_000_000 + i)
        for i in range(45)
    ]

    leads = list(client.iter_leads(page_size=20))

    assert [lead.id for lead in leads] == ids
    pages = emulator.exchanges("GET", r"/Lead$")
    assert [query(p)["offset"] for p in pages] == ["0", "20", "40"]
    assert all(query(p)["maxSize"] == "20" for p in pages)
    assert all(query(p)["orderBy"] == "createdAt" and query(p)["order"] == "asc" for p in pages)


def test_iter_leads_is_stable_when_many_share_a_created_at(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    ids = [
        emulator.add_lead(f"P{i}", "Q", f"p{i}@example.com", created_at="2026-01-01 10:00:00")
        for i in range(30)
    ]

    leads = list(client.iter_leads(page_size=7))

    assert sorted(lead.id for lead in leads) == sorted(ids)
    assert len({lead.id for lead in leads}) == 30


def test_iter_leads_never_asks_for_more_than_200(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    for i in range(3):
        emulator.add_lead(f"P{i}", "Q", f"p{i}@example.com")

    assert len(list(client.iter_leads(page_size=1000))) == 3
    [page] = emulator.exchanges("GET", r"/Lead$")
    assert query(page)["maxSize"] == "200"


def test_iter_leads_stops_on_a_real_total_when_no_total_is_ignored() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        offset = int(request.url.params["offset"])
        records = [{"id": f"id{offset + i}"} for i in range(2)] if offset < 4 else []
        return httpx.Response(200, json={"total": 4, "list": records})

    with EspoClient("http://espo.test", API_KEY, transport=httpx.MockTransport(handler)) as c:
        leads = list(c.iter_leads(page_size=2))

    assert [lead.id for lead in leads] == ["id0", "id1", "id2", "id3"]
    assert len(calls) == 2


def test_iter_leads_rejects_an_answer_without_a_list(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    emulator.inject(method="GET", path=r"/Lead$", status=200, body={"total": 3}, times=None)

    with pytest.raises(BadResponse, match="'list'"):
        list(client.iter_leads())


def test_iter_leads_rejects_a_record_without_an_id(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    body = {"total": -2, "list": [{"firstName": "Ada"}]}
    emulator.inject(method="GET", path=r"/Lead$", status=200, body=body)

    with pytest.raises(BadResponse, match="'id'"):
        list(client.iter_leads())


# -- transport and errors ------------------------------------------------------------


def test_wrong_api_key_is_auth_rejected_and_never_shown(server: EmulatorServer) -> None:
    secret = "wrong-key-0000-secret"
    with EspoClient(server.url, secret) as bad, pytest.raises(AuthRejected) as info:
        bad.find_leads_by_email("ada@example.com")

    assert info.value.status == 401
    assert secret not in str(info.value)
    assert secret not in repr(bad)


def test_empty_api_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ESPOCRM_API_KEY"):
        EspoClient("http://espo.test", "  ")


def test_base_url_may_already_name_the_api_root(
    server: EmulatorServer, emulator: EspoEmulator
) -> None:
    with EspoClient(server.url + "/api/v1/", API_KEY) as c:
        assert c.find_leads_by_email("ada@example.com") == []
    assert emulator.exchanges("GET", r"^/api/v1/Lead$")


def test_429_is_retried_after_retry_after(
    client: EspoClient, emulator: EspoEmulator, stats: CallStats
) -> None:
    emulator.inject(method="GET", path=r"/Lead$", status=429, headers={"Retry-After": "0.05"})
    started = time.monotonic()

    assert client.find_leads_by_email("ada@example.com") == []

    assert time.monotonic() - started >= 0.05
    assert stats.service("espocrm").throttled == 1
    assert stats.service("espocrm").retries == 1


def test_a_proxy_rate_limit_is_waited_out() -> None:
    emulator = EspoEmulator(api_key=API_KEY, rate_limit=(2, 0.1))
    stats = CallStats()
    with serve(emulator, stats=stats) as client:
        for _ in range(4):
            client.find_leads_by_email("ada@example.com")

    assert stats.service("espocrm").throttled >= 1
    assert [e.status for e in emulator.log].count(200) == 4


def test_5xx_on_a_read_is_retried(
    client: EspoClient, emulator: EspoEmulator, stats: CallStats
) -> None:
    emulator.inject(method="GET", path=r"/Lead$", status=503, times=2)

    assert client.find_leads_by_email("ada@example.com") == []
    assert stats.service("espocrm").retries == 2


def test_5xx_that_persists_is_unavailable(server: EmulatorServer, emulator: EspoEmulator) -> None:
    emulator.inject(method="GET", path=r"/Lead$", status=500, times=None)
    with (
        EspoClient(server.url, API_KEY, retry=RetryPolicy(attempts=2)) as c,
        pytest.raises(Unavailable),
    ):
        c.find_leads_by_email("ada@example.com")


def test_malformed_json_is_bad_response(client: EspoClient, emulator: EspoEmulator) -> None:
    emulator.inject(method="GET", path=r"/Lead$", kind="malformed")

    with pytest.raises(BadResponse, match="not JSON"):
        client.find_leads_by_email("ada@example.com")


def test_an_html_page_is_bad_response(client: EspoClient, emulator: EspoEmulator) -> None:
    emulator.inject(method="GET", path=r"/App/user$", kind="html")

    with pytest.raises(BadResponse, match="text/html"):
        client.check_access()


def test_get_lead_of_an_unknown_id_is_not_found(client: EspoClient) -> None:
    with pytest.raises(NotFound, match="Record not found"):
        client.get_lead("0123456789abcdef0")


def test_get_lead_returns_every_address(client: EspoClient, emulator: EspoEmulator) -> None:
    lead_id = emulator.add_lead("A", "B", "a@x.example", other_emails=["b@y.example"])

    lead = client.get_lead(lead_id)

    assert isinstance(lead, Lead)
    assert lead.email_addresses == ("a@x.example", "b@y.example")
    assert lead.created_at is not None and lead.created_at.tzinfo is not None


# -- access check ----------------------------------------------------------------------


def test_check_access_reports_read_and_create(client: EspoClient, emulator: EspoEmulator) -> None:
    report = client.check_access()

    assert report.ok
    assert report.user_type == "api"
    assert (report.lead_read_level, report.lead_create_level) == ("all", "yes")


def test_check_access_reports_a_role_without_create(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    emulator.set_lead_acl(create=False)

    report = client.check_access()

    assert report.can_read_leads and not report.can_create_leads
    assert not report.ok


def test_check_access_treats_a_missing_scope_as_no_access(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    emulator.set_lead_acl(read=False, create=False)

    report = client.check_access()

    assert (report.can_read_leads, report.can_create_leads) == (False, False)


def test_check_access_grants_an_admin_everything() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"user": {"id": "u1", "type": "admin"}, "acl": {"table": {}}, "token": "t0k"}
        return httpx.Response(200, json=body)

    with EspoClient("http://espo.test", API_KEY, transport=httpx.MockTransport(handler)) as c:
        report = c.check_access()

    assert report.ok
    assert "t0k" not in repr(report)


# -- the Lead's source options (doctor) --------------------------------------------------


def test_lead_field_reads_the_source_options_from_metadata(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    field = client.lead_field("source")

    assert field is not None and field.type == "enum"
    assert field.options is not None and "Campaign" in field.options
    (exchange,) = emulator.exchanges("GET", r"/Metadata$")
    assert ("key", "entityDefs.Lead.fields.source") in exchange.query


def test_lead_field_walks_the_whole_document_of_a_version_that_ignores_key() -> None:
    metadata = {"entityDefs": {"Lead": {"fields": {"source": {"type": "enum", "options": ["X"]}}}}}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=metadata)

    with EspoClient("http://espo.test", API_KEY, transport=httpx.MockTransport(handler)) as c:
        field = c.lead_field("source")

    assert field is not None and field.options == ("X",)


def test_lead_field_is_none_for_a_user_without_lead_access(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    emulator.set_lead_acl(read=False, create=False)

    assert client.lead_field("source") is None


def test_a_refused_source_names_the_config_key(client: EspoClient, emulator: EspoEmulator) -> None:
    with pytest.raises(InvalidRequest) as refused:
        client.create_lead(first_name="A", last_name="B", email="a@example.com", source="Bogus")

    assert "field 'source'" in str(refused.value)
    assert "[espocrm] lead_source = 'Bogus'" in str(refused.value)
    assert "syncctl doctor" in str(refused.value)


# -- emulator pitfalls ------------------------------------------------------------------


def test_emulator_answers_403_above_max_size(raw: httpx.Client) -> None:
    response = raw.get("/Lead", params={"maxSize": "201"})

    assert response.status_code == 403
    assert response.content == b""
    assert response.headers["X-Status-Reason"].startswith("Max size should not exceed 200")


def test_emulator_reads_max_size_like_php(raw: httpx.Client) -> None:
    assert raw.get("/Lead", params={"maxSize": "abc"}).json()["list"] == []
    searched = raw.get("/Lead", params={"searchParams": '{"maxSize": "abc"}'})
    assert searched.status_code == 400
    assert searched.headers["X-Status-Reason"] == "maxSize must be integer."


def test_emulator_honours_where_group_and_search_params(
    raw: httpx.Client, emulator: EspoEmulator
) -> None:
    lead_id = emulator.add_lead("Ada", "Lovelace", "ada@example.com")
    emulator.add_lead("Bob", "Byte", "bob@example.com")
    grouped = raw.get(
        "/Lead",
        params={
            "whereGroup[0][type]": "in",
            "whereGroup[0][attribute]": "firstName",
            "whereGroup[0][value][]": "ADA",
            "attributeSelect": "firstName",
        },
    ).json()
    searched = raw.get(
        "/Lead",
        params={
            "searchParams": '{"where":[{"type":"startsWith","attribute":"emailAddress",'
            '"value":"ADA@"}],"select":["lastName"]}'
        },
    ).json()

    assert [r["id"] for r in grouped["list"]] == [lead_id]
    assert "lastName" not in grouped["list"][0]
    assert [r["lastName"] for r in searched["list"]] == ["Lovelace"]


def test_emulator_total_without_count(raw: httpx.Client, emulator: EspoEmulator) -> None:
    for i in range(3):
        emulator.add_lead(f"P{i}", "Q", f"p{i}@example.com")

    assert (
        raw.get("/Lead", params={"maxSize": "2"}, headers={"X-No-Total": "true"}).json()["total"]
        == -1
    )
    last = raw.get("/Lead", params={"maxSize": "2", "offset": "2"}, headers={"X-No-Total": "true"})
    assert last.json()["total"] == -2
    assert raw.get("/Lead", params={"maxSize": "2"}).json()["total"] == 3


def test_emulator_refuses_a_wrong_key_with_an_empty_401(raw: httpx.Client) -> None:
    response = raw.get("/Lead", headers={"X-Api-Key": "nope"})

    assert response.status_code == 401
    assert response.content == b""


def test_emulator_validation_failure_body(raw: httpx.Client) -> None:
    response = raw.post(
        "/Lead",
        json={"lastName": "X", "status": "Hot"},
    )

    assert response.status_code == 400
    assert response.headers["X-Status-Reason"] == "validationFailure"
    assert response.json()["messageTranslation"]["data"] == {"field": "status", "type": "valid"}


def test_emulator_legacy_body_flag_skips_the_duplicate_check(
    raw: httpx.Client, emulator: EspoEmulator
) -> None:
    emulator.add_lead("Ada", "Lovelace", "ada@example.com")
    body = {"firstName": "Ada", "lastName": "Lovelace"}

    assert raw.post("/Lead", json=body).status_code == 409
    assert raw.post("/Lead", json={**body, "_skipDuplicateCheck": True}).is_success


def test_emulator_serves_100k_leads_quickly() -> None:
    emulator = EspoEmulator(api_key=API_KEY)
    for i in range(100_000):
        emulator.add_lead(f"F{i}", "L", f"user{i}@example.com")
    with serve(emulator) as client:
        started = time.monotonic()
        found = client.find_leads_by_email("USER99999@example.com")
        page = next(iter(client.iter_leads()))
        elapsed = time.monotonic() - started

    assert [lead.first_name for lead in found] == ["F99999"]
    assert page.first_name == "F0"
    assert elapsed < 0.5


# -- move (rule 22: the contact's email changed) --------------------------------------


def test_move_gives_the_lead_a_new_primary_address_and_keeps_the_others(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    lead_id = emulator.add_lead("Ada", "Lovelace", "ada@example.com", other_emails=["a@x.org"])
    moved = client.move_lead(lead_id, "ada.king@example.com")
    assert moved.id == lead_id
    assert moved.email == "ada.king@example.com"
    assert [lead["id"] for lead in emulator.find("ada.king@example.com")] == [lead_id]
    assert not emulator.find("ada@example.com")
    assert emulator.find("a@x.org")


def test_move_past_a_namesake_skips_the_duplicate_check(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    emulator.duplicate_check_on_update = True  # an admin turned it on
    lead_id = emulator.add_lead("Ada", "Lovelace", "ada@example.com")
    emulator.add_lead("Ada", "Lovelace", "another.ada@example.com")
    moved = client.move_lead(lead_id, "ada.king@example.com")
    assert moved.email == "ada.king@example.com"
    patches = [h for m, p, h in emulator.header_log if m == "PATCH"]
    assert patches[-1].get("x-skip-duplicate-check") == "true"


def test_move_sends_one_patch_when_the_duplicate_check_on_update_is_off(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    lead_id = emulator.add_lead("Ada", "Lovelace", "ada@example.com")
    emulator.add_lead("Ada", "Lovelace", "another.ada@example.com")
    assert client.move_lead(lead_id, "ada.king@example.com").email == "ada.king@example.com"
    assert len([m for m, _, _ in emulator.header_log if m == "PATCH"]) == 1


def test_move_onto_an_address_another_lead_has_is_a_conflict(
    client: EspoClient, emulator: EspoEmulator
) -> None:
    lead_id = emulator.add_lead("Ada", "Lovelace", "ada@example.com")
    emulator.add_lead("Other", "Person", "taken@example.com")
    with pytest.raises(Conflict, match=r"already has taken@example\.com"):
        client.move_lead(lead_id, "taken@example.com")


def test_move_of_a_deleted_lead_is_not_found(client: EspoClient) -> None:
    with pytest.raises(NotFound):
        client.move_lead("0123456789abcdef0", "ada.king@example.com")
