"""MauticClient against the Mautic 5.1 emulator over loopback HTTP.

There is no Mautic OpenAPI document, so instead of a contract test the
`test_emulator_*` tests pin the emulator to the shapes and pitfalls that
api-notes.md section 2 documents; the client tests then show the client copes.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from syncctl.clients import mautic as mautic_module
from syncctl.clients.mautic import Contact, MauticClient, as_flag, as_text
from syncctl.errors import (
    AuthRejected,
    BadResponse,
    InvalidRequest,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    Unavailable,
)
from syncctl.net.http import CallStats, RetryPolicy
from syncctl.sandbox.mautic import MauticEmulator
from syncctl.sandbox.server import EmulatorServer
from tests.clients.mautic_fixtures import PASSWORD, T0, USER, Clock, transport, where

# -- Contact helpers (no HTTP) -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, True),
        (0, False),
        ("1", True),
        ("0", False),
        (True, True),
        (False, False),
        (None, False),
        ("true", True),
        ("false", False),
        ("yes", True),
        (" On ", True),
        ("", False),
        (1.0, True),
    ],
)
def test_flag_normalises_every_boolean_shape(value: Any, expected: bool) -> None:
    assert as_flag(value) is expected


def test_text_is_empty_string_for_none() -> None:
    contact = Contact(1, None, None, None, T0, {"promo_code": None, "n": 5})
    assert contact.text("promo_code") == ""
    assert contact.text("missing") == ""
    assert contact.text("n") == "5"
    assert as_text(2.0) == "2"


# -- emulator fidelity (api-notes.md section 2) ------------------------------------------


def test_emulator_list_shape_total_is_string_and_contacts_keyed_by_id(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    cid = emulator.add_contact("ann@example.com", firstname="Ann", vip_status=True)
    body = raw.get("/api/contacts").json()
    assert body["total"] == "1"
    contact = body["contacts"][str(cid)]
    assert contact["id"] == cid
    assert contact["fields"]["all"]["email"] == "ann@example.com"
    assert contact["fields"]["all"]["vip_status"] == 1
    assert contact["fields"]["core"]["firstname"]["value"] == "Ann"
    assert contact["fields"]["personal"] == []
    assert contact["dateAdded"] == "2024-05-01T12:00:00+00:00"


def test_emulator_empty_list_is_a_json_array(raw: httpx.Client) -> None:
    assert raw.get("/api/contacts").json() == {"total": "0", "contacts": []}


def test_emulator_new_contact_has_null_date_modified_like_5_1(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    cid = emulator.add_contact("ann@example.com")
    assert raw.get(f"/api/contacts/{cid}").json()["contact"]["dateModified"] is None


def test_emulator_default_limit_is_30_and_zero_means_all(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    for i in range(35):
        emulator.add_contact(f"u{i}@example.com")
    assert len(raw.get("/api/contacts").json()["contacts"]) == 30
    assert len(raw.get("/api/contacts", params={"limit": 0}).json()["contacts"]) == 35


def test_emulator_order_by_camel_case_is_a_sql_error(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    emulator.add_contact("ann@example.com")
    response = raw.get("/api/contacts", params={"orderBy": "dateModified"})
    assert response.status_code == 500
    assert "Unknown column" in response.json()["errors"][0]["message"]
    assert raw.get("/api/contacts", params={"orderBy": "date_modified"}).status_code == 200


def test_emulator_where_eq_does_not_match_html_special_email(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    emulator.add_contact("o'neil@example.com")
    body = raw.get("/api/contacts", params=where(("email", "eq", "o'neil@example.com"))).json()
    assert body["total"] == "0"


def test_emulator_search_email_is_a_prefix_like_with_wildcards(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    emulator.add_contact("bob@x.io")
    emulator.add_contact("bob@x.io.evil")
    emulator.add_contact("bobXx@x.io")
    loose = raw.get("/api/contacts", params={"search": "email:bob@x.io"}).json()
    assert loose["total"] == "2"
    wildcard = raw.get("/api/contacts", params={"search": "email:+bob_x@x.io"}).json()
    assert [c["fields"]["all"]["email"] for c in wildcard["contacts"].values()] == ["bobXx@x.io"]


def test_emulator_patch_drops_numeric_zero(emulator: MauticEmulator, raw: httpx.Client) -> None:
    cid = emulator.add_contact("ann@example.com", promo_code="ABC")
    raw.patch(f"/api/contacts/{cid}/edit", json={"promo_code": "0"})
    assert emulator.contact(cid)["promo_code"] == "ABC"


def test_emulator_patch_skips_blank_without_overwrite_with_blank(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    cid = emulator.add_contact("ann@example.com", promo_code="ABC", vip_status=True)
    raw.patch(f"/api/contacts/{cid}/edit", json={"promo_code": None, "vip_status": False})
    assert emulator.contact(cid)["promo_code"] == "ABC"
    assert emulator.contact(cid)["vip_status"] == 1
    raw.patch(
        f"/api/contacts/{cid}/edit",
        json={"promo_code": None, "vip_status": False, "overwriteWithBlank": True},
    )
    assert emulator.contact(cid)["promo_code"] is None
    assert emulator.contact(cid)["vip_status"] == 0


def test_emulator_patch_with_another_contacts_email_merges_them(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    keep = emulator.add_contact("a@example.com", firstname="A")
    other = emulator.add_contact("b@example.com", promo_code="B-CODE")
    response = raw.patch(f"/api/contacts/{keep}/edit", json={"email": "b@example.com"})
    assert response.status_code == 200
    assert emulator.contact_ids() == [keep]
    assert emulator.contact(keep)["promo_code"] == "B-CODE"
    assert other not in emulator.contact_ids()


def test_emulator_post_with_existing_email_updates_that_contact(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    cid = emulator.add_contact("Ann@Example.com")
    response = raw.post("/api/contacts/new", json={"email": "ann@example.com", "firstname": "A"})
    assert response.status_code == 200
    assert response.json()["contact"]["id"] == cid
    fresh = raw.post("/api/contacts/new", json={"email": "new@example.com"})
    assert fresh.status_code == 201


def test_emulator_put_creates_a_missing_contact(raw: httpx.Client) -> None:
    response = raw.put("/api/contacts/999/edit", json={"email": "p@example.com"})
    assert response.status_code == 201


def test_emulator_patch_moves_date_modified(
    emulator: MauticEmulator, raw: httpx.Client, clock: Clock
) -> None:
    cid = emulator.add_contact("ann@example.com")
    clock.tick(60)
    raw.patch(f"/api/contacts/{cid}/edit", json={"promo_code": "X"})
    assert emulator.date_modified(cid) == clock.now
    clock.tick(60)
    raw.patch(f"/api/contacts/{cid}/edit", json={"promo_code": "X"})  # no change
    assert emulator.date_modified(cid) == clock.now - timedelta(seconds=60)


def test_emulator_wrong_credentials_answer_401(server: EmulatorServer) -> None:
    with httpx.Client(transport=transport()) as c:
        response = c.get(server.url + "/api/contacts", auth=(USER, "nope"))
    assert response.status_code == 401
    assert response.json()["errors"][0]["message"] == "API authorization denied."


def test_emulator_rate_limit_answers_429_with_headers(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    emulator.rate_limit_per_hour = 2
    first = raw.get("/api/contacts")
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert first.headers["X-RateLimit-Remaining"] == "1"
    raw.get("/api/contacts")
    limited = raw.get("/api/contacts")
    assert limited.status_code == 429
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert int(limited.headers["X-RateLimit-Reset"]) > time.time()
    assert "rate limit of 2 API calls per hour" in limited.json()["errors"][0]["message"]


def test_emulator_stats_where_error_comes_inside_a_200(raw: httpx.Client) -> None:
    response = raw.get("/api/stats/email_stats", params=where(("nope", "eq", "1")))
    assert response.status_code == 200
    assert "Unknown column" in response.json()["errors"][0]["message"]


def test_emulator_answers_a_page_of_100k_contacts_in_milliseconds(clock: Clock) -> None:
    emu = MauticEmulator(username=USER, password=PASSWORD, clock=clock)
    for i in range(100_000):
        if i % 100 == 0:
            clock.tick()
        emu.add_contact(f"user{i}@example.com")
    for cid in range(1, 100_001, 7):
        emu.set_fields(cid, promo_code=f"P{cid}")
    srv = EmulatorServer(emu).start()
    try:
        stats = CallStats()
        with MauticClient(srv.url, USER, PASSWORD, stats=stats, transport=transport()) as c:
            per_request = []
            for call in (
                lambda: c.find_by_email("USER99999@example.com"),
                lambda: list(islice(c.iter_modified_since(T0, page_size=200), 200)),
                lambda: list(islice(c.iter_all(page_size=200), 200)),
            ):
                calls = stats.total_calls
                started = time.perf_counter()
                result = call()
                per_request.append((time.perf_counter() - started) / (stats.total_calls - calls))
                assert result
        # A page of 200 contacts is some 600 kB of JSON to decode on this side;
        # quiet, each request takes 0.05-0.15 s; with the other test worker busy
        # up to 0.5 s. Unindexed, one query over 100k contacts takes 2 s and more.
        assert max(per_request) < 0.75, per_request
    finally:
        srv.stop()


# -- reading contacts ------------------------------------------------------------------


def test_get_returns_a_typed_contact(emulator: MauticEmulator, client: MauticClient) -> None:
    cid = emulator.add_contact(
        "ann@example.com", firstname="Ann", lastname="Lee", vip_status=True, promo_code="VIP-1"
    )
    contact = client.get(cid)
    assert (contact.id, contact.email, contact.firstname, contact.lastname) == (
        cid,
        "ann@example.com",
        "Ann",
        "Lee",
    )
    assert contact.flag("vip_status") is True
    assert contact.flag("opt_in_confirmed") is False
    assert contact.text("promo_code") == "VIP-1"
    assert contact.date_modified == T0  # never edited: dateAdded stands in
    assert contact.date_modified.tzinfo is not None


def test_get_missing_contact_raises_not_found(client: MauticClient) -> None:
    with pytest.raises(NotFound):
        client.get(4242)


def test_iter_all_pages_by_id(emulator: MauticEmulator, client: MauticClient) -> None:
    ids = [emulator.add_contact(f"u{i}@example.com") for i in range(25)]
    emulator.delete_contact(ids[3])
    got = [c.id for c in client.iter_all(page_size=10)]
    assert got == [i for i in ids if i != ids[3]]
    assert len(emulator.exchanges("GET", "/api/contacts$")) == 3


def test_iter_modified_since_returns_changed_contacts_oldest_first(
    emulator: MauticEmulator, client: MauticClient, clock: Clock
) -> None:
    old = emulator.add_contact("old@example.com")
    a = emulator.add_contact("a@example.com")
    b = emulator.add_contact("b@example.com")
    clock.tick(3600)
    since = clock.tick(1)
    emulator.set_fields(b, promo_code="B")
    clock.tick(5)
    emulator.set_fields(a, promo_code="A")
    got = list(client.iter_modified_since(since))
    assert [c.id for c in got] == [b, a]
    assert old not in [c.id for c in got]
    assert got[0].date_modified == since


def test_iter_modified_since_includes_never_edited_new_contacts(
    emulator: MauticEmulator, client: MauticClient, clock: Clock
) -> None:
    since = clock.tick(10)
    created = emulator.add_contact("new@example.com")  # 5.1: dateModified stays null
    assert emulator.date_modified(created) is None
    assert [c.id for c in client.iter_modified_since(since)] == [created]


def test_iter_modified_since_reads_a_page_of_edited_and_new_contacts_in_one_call(
    emulator: MauticEmulator, client: MauticClient, clock: Clock, stats: CallStats
) -> None:
    edited = emulator.add_contact("edited@example.com")
    since = clock.tick(10)
    emulator.set_fields(edited, promo_code="E")
    created = emulator.add_contact("new@example.com")  # never edited: dateModified null
    assert sorted(c.id for c in client.iter_modified_since(since)) == sorted([edited, created])
    assert stats.total_calls == 1  # one orX query, not one per kind


def test_iter_modified_since_pages_both_kinds_when_a_page_is_not_enough(
    emulator: MauticEmulator, client: MauticClient, clock: Clock
) -> None:
    since = clock.tick(10)
    edited = [emulator.add_contact(f"e{i}@example.com") for i in range(4)]
    for cid in edited:
        emulator.set_fields(cid, promo_code="E")
    created = [emulator.add_contact(f"n{i}@example.com") for i in range(4)]
    got = [c.id for c in client.iter_modified_since(since, page_size=3)]
    assert sorted(set(got)) == sorted(edited + created)


def test_iter_modified_since_drains_many_contacts_sharing_one_second(
    emulator: MauticEmulator, client: MauticClient, clock: Clock
) -> None:
    since = clock.tick(10)
    ids = [emulator.add_contact(f"u{i}@example.com") for i in range(5)]
    clock.tick(1)
    for cid in ids:  # 5 in one second ...
        emulator.set_fields(cid, promo_code="X")
    clock.tick(1)
    same = [emulator.add_contact(f"s{i}@example.com") for i in range(23)]
    for cid in same:  # ... then 23 in the next one, more than two pages of 10
        emulator.set_fields(cid, promo_code="Y")
    clock.tick(1)
    last = emulator.add_contact("last@example.com")
    emulator.set_fields(last, promo_code="Z")
    got = [c.id for c in client.iter_modified_since(since, page_size=10)]
    assert sorted(got) == sorted([*ids, *same, last])
    assert len(got) == len(set(got))
    assert got[-1] == last
    drained = [e for e in emulator.exchanges("GET") if ("where[0][expr]", "eq") in e.query]
    assert drained, "a page full of one second must be drained by id"


def test_iter_modified_since_yields_a_contact_again_when_edited_meanwhile(
    emulator: MauticEmulator, client: MauticClient, clock: Clock
) -> None:
    since = clock.tick(10)
    ids = []
    for i in range(6):
        ids.append(emulator.add_contact(f"u{i}@example.com"))
        emulator.set_fields(ids[-1], promo_code="1")
        clock.tick(1)
    seen = []
    for contact in client.iter_modified_since(since, page_size=2):
        seen.append((contact.id, contact.text("promo_code")))
        if contact.id == ids[1] and contact.text("promo_code") == "1":
            clock.tick(1)
            emulator.set_fields(ids[0], promo_code="2")  # moves to the end
    assert seen[-1] == (ids[0], "2")
    assert {cid for cid, _ in seen} == set(ids)


def test_iter_modified_since_rejects_naive_datetimes(client: MauticClient) -> None:
    with pytest.raises(ValueError):
        list(client.iter_modified_since(datetime(2024, 1, 1)))


def test_iter_modified_since_uses_snake_case_order_and_camel_case_where(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    list(client.iter_modified_since(T0, include_unmodified=False))
    (exchange,) = emulator.exchanges("GET", "/api/contacts$")
    query = dict(exchange.query)
    assert query["orderBy"] == "date_modified"
    assert query["where[0][col]"] == "dateModified"
    assert query["where[0][expr]"] == "gte"
    assert query["where[0][val]"] == "2024-05-01 12:00:00"


# -- find by email ------------------------------------------------------------------------


def test_find_by_email_is_exact_and_case_insensitive(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    ann = emulator.add_contact("Ann.Lee+vip@Example.com")
    emulator.add_contact("ann.lee+vip@example.com.evil")
    emulator.add_contact("annXlee+vip@example.com")
    assert [c.id for c in client.find_by_email("ann.lee+vip@example.com")] == [ann]


def test_find_by_email_treats_underscore_and_percent_literally(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    emulator.add_contact("a1b@example.com")
    under = emulator.add_contact("a_b@example.com")
    assert [c.id for c in client.find_by_email("a_b@example.com")] == [under]
    assert client.find_by_email("a%b@example.com") == []


@pytest.mark.parametrize(
    "address", ["o'neil@example.com", "tom&jerry@example.com", "'lead@example.com", "x@ex'"]
)
def test_find_by_email_finds_addresses_mautic_html_encodes(
    emulator: MauticEmulator, client: MauticClient, address: str
) -> None:
    emulator.add_contact("oneil@example.com")
    emulator.add_contact("decoy@example.com")
    wanted = emulator.add_contact(address)
    assert [c.id for c in client.find_by_email(address.upper())] == [wanted]
    assert ("where[0][expr]", "like") in emulator.exchanges("GET")[0].query


def test_find_by_email_returns_duplicates_oldest_first(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    first = emulator.add_contact("dup@example.com")
    second = emulator.add_contact("DUP@example.com")
    assert [c.id for c in client.find_by_email("dup@example.com")] == [first, second]


def test_find_by_email_unknown_returns_empty(client: MauticClient) -> None:
    assert client.find_by_email("nobody@example.com") == []


# -- writes ---------------------------------------------------------------------------------


def test_create_makes_a_contact(emulator: MauticEmulator, client: MauticClient) -> None:
    contact = client.create({"email": "new@example.com", "firstname": "New", "vip_status": True})
    assert contact.email == "new@example.com"
    assert emulator.contact(contact.id)["vip_status"] == 1
    assert emulator.exchanges("POST")[0].status == 201


def test_create_with_existing_email_merges_into_that_contact(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    cid = emulator.add_contact("ann@example.com", promo_code="KEEP")
    contact = client.create({"email": "ANN@example.com", "vip_status": True, "lastname": None})
    assert contact.id == cid
    assert contact.text("promo_code") == "KEEP"
    assert emulator.contact_ids() == [cid]


def test_create_with_email_is_retried_after_a_server_error(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    emulator.inject(method="POST", path="/contacts/new", status=502, when="after")
    contact = client.create({"email": "new@example.com"})
    assert emulator.contact_ids() == [contact.id]


def test_update_sends_only_the_changes(emulator: MauticEmulator, client: MauticClient) -> None:
    cid = emulator.add_contact("ann@example.com", firstname="Ann")
    contact = client.update(cid, {"promo_code": "VIP-9", "vip_status": True})
    assert contact.text("promo_code") == "VIP-9" and contact.flag("vip_status")
    (patch,) = emulator.exchanges("PATCH")
    assert patch.body == {"promo_code": "VIP-9", "vip_status": True}


def test_update_refuses_to_send_email(emulator: MauticEmulator, client: MauticClient) -> None:
    cid = emulator.add_contact("ann@example.com")
    with pytest.raises(InvalidRequest, match="merges"):
        client.update(cid, {"email": "other@example.com"})
    assert emulator.write_count() == 0


@pytest.mark.parametrize("zero", [0, "0", 0.0, "0.0", " 0"])
def test_update_refuses_numeric_zero_mautic_would_drop(
    emulator: MauticEmulator, client: MauticClient, zero: Any
) -> None:
    cid = emulator.add_contact("ann@example.com")
    with pytest.raises(InvalidRequest, match="zero"):
        client.update(cid, {"promo_code": zero})
    assert emulator.write_count() == 0


def test_update_to_empty_sends_overwrite_with_blank(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    cid = emulator.add_contact("ann@example.com", discord_invite_link_basic="https://discord.gg/x")
    contact = client.update(cid, {"discord_invite_link_basic": None})
    assert contact.text("discord_invite_link_basic") == ""
    assert emulator.exchanges("PATCH")[0].body["overwriteWithBlank"] is True


def test_update_boolean_false_sticks(emulator: MauticEmulator, client: MauticClient) -> None:
    cid = emulator.add_contact("ann@example.com", vip_status=True)
    contact = client.update(cid, {"vip_status": False})
    assert contact.flag("vip_status") is False
    assert emulator.contact(cid)["vip_status"] == 0


def test_update_unknown_alias_raises_instead_of_silently_doing_nothing(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    cid = emulator.add_contact("ann@example.com")
    with pytest.raises(InvalidRequest, match="no published field 'promocode'"):
        client.update(cid, {"promocode": "X"})


def test_update_missing_contact_raises_not_found(client: MauticClient) -> None:
    with pytest.raises(NotFound):
        client.update(999, {"promo_code": "X"})


# -- batches -------------------------------------------------------------------------------------


def test_emulator_batch_edit_answers_a_status_per_item_and_errors_by_position(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    cid = emulator.add_contact("ann@example.com")
    body = raw.patch(
        "/api/contacts/batch/edit",
        json=[{"id": 999, "promo_code": "X"}, {"id": cid, "promo_code": "Y"}],
    ).json()
    assert body["statusCodes"] == [404, 200]
    assert body["errors"]["0"]["code"] == 404
    assert list(body["contacts"]) == ["1"]  # a gap at 0: a PHP array with keys 1.. is an object
    assert emulator.contact(cid)["promo_code"] == "Y"


def test_emulator_batch_edit_refuses_more_than_the_batch_limit(raw: httpx.Client) -> None:
    answer = raw.patch("/api/contacts/batch/edit", json=[{"id": i} for i in range(201)])
    assert answer.status_code == 400
    assert "max of 200" in answer.json()["errors"][0]["message"]


def test_get_many_reads_contacts_by_id_in_one_call(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    ids = [emulator.add_contact(f"u{i}@example.com") for i in range(5)]
    found = client.get_many([*ids, 999])
    assert sorted(found) == ids
    assert found[ids[2]].email == "u2@example.com"
    assert len(emulator.exchanges("GET")) == 1


def test_get_many_splits_ids_into_batches_of_200(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    ids = [emulator.add_contact(f"u{i}@example.com") for i in range(450)]
    assert len(client.get_many(ids)) == 450
    assert len(emulator.exchanges("GET")) == 3


def test_update_many_patches_several_contacts_in_one_call(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    a = emulator.add_contact("a@example.com")
    b = emulator.add_contact("b@example.com", promo_code="OLD")
    saved = client.update_many([(a, {"vip_status": True}), (b, {"promo_code": None})])
    assert isinstance(saved[0], Contact) and saved[0].flag("vip_status")
    assert isinstance(saved[1], Contact) and saved[1].text("promo_code") == ""
    (patch,) = emulator.exchanges("PATCH")
    assert patch.body == [
        {"id": a, "vip_status": True},
        {"id": b, "promo_code": None, "overwriteWithBlank": True},
    ]


def test_update_many_sends_two_edits_of_one_contact_in_separate_batches(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    a = emulator.add_contact("a@example.com")
    saved = client.update_many([(a, {"promo_code": "X"}), (a, {"vip_status": True})])
    assert all(isinstance(c, Contact) for c in saved)
    assert len(emulator.exchanges("PATCH")) == 2
    assert emulator.contact(a)["promo_code"] == "X" and emulator.contact(a)["vip_status"] == 1


def test_update_many_reports_a_missing_contact_alone(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    a = emulator.add_contact("a@example.com")
    saved = client.update_many([(999, {"promo_code": "X"}), (a, {"promo_code": "Y"})])
    assert isinstance(saved[0], NotFound)
    assert isinstance(saved[1], Contact) and saved[1].text("promo_code") == "Y"


def test_update_many_refuses_an_unsafe_change_without_sending_it(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    a = emulator.add_contact("a@example.com")
    b = emulator.add_contact("b@example.com")
    saved = client.update_many([(a, {"email": "x@example.com"}), (b, {"promo_code": "Y"})])
    assert isinstance(saved[0], InvalidRequest)
    (patch,) = emulator.exchanges("PATCH")
    assert patch.body == [{"id": b, "promo_code": "Y"}]


def test_update_many_reports_an_alias_mautic_ignored(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    a = emulator.add_contact("a@example.com")
    (saved,) = client.update_many([(a, {"promocode": "X"})])
    assert isinstance(saved, InvalidRequest) and "promocode" in str(saved)


def test_update_many_tolerates_list_and_object_answers() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        contact = {
            "id": 7,
            "dateAdded": "2024-05-01T12:00:00+00:00",
            "dateModified": "2024-05-01T12:00:01+00:00",
            "fields": {"all": {"id": 7, "email": "a@example.com", "promo_code": "Y"}},
        }
        return httpx.Response(
            200,
            json={
                "contacts": {"1": contact},
                "statusCodes": {"0": "404", "1": "200"},
                "errors": [{"code": 404, "message": "Item was not found."}],
            },
        )

    with MauticClient(
        "https://mautic.test", USER, PASSWORD, transport=httpx.MockTransport(handler)
    ) as c:
        saved = c.update_many([(5, {"promo_code": "X"}), (7, {"promo_code": "Y"})])
    assert isinstance(saved[0], NotFound)
    assert isinstance(saved[1], Contact) and saved[1].id == 7


def test_find_by_emails_reads_plain_addresses_in_one_call_and_encoded_ones_alone(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    ann = emulator.add_contact("Ann@Example.com")
    bob = emulator.add_contact("bob@example.com")
    odd = emulator.add_contact("o'neil@example.com")
    found = client.find_by_emails(
        ["ann@example.com", "BOB@example.com", "o'neil@example.com", "x@y.io"]
    )
    assert [c.id for c in found["ann@example.com"]] == [ann]
    assert [c.id for c in found["bob@example.com"]] == [bob]
    assert [c.id for c in found["o'neil@example.com"]] == [odd]
    assert found["x@y.io"] == []
    assert len(emulator.exchanges("GET")) == 2


# -- sends and stats ----------------------------------------------------------------------------


def test_send_email_records_the_send_with_tokens(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    cid = emulator.add_contact("ann@example.com")
    client.send_email(13, cid, {"coupon_code": "VIP-ABC", "{link}": "https://x"})
    (sent,) = emulator.sent(email_id=13, contact_id=cid)
    assert sent["tokens"] == {"{coupon_code}": "VIP-ABC", "{link}": "https://x"}
    assert sent["failed"] is False


def test_send_email_success_false_raises_invalid_request(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    cid = emulator.add_contact("ann@example.com")
    emulator.set_email_published(13, False)
    with pytest.raises(InvalidRequest, match="success=false"):
        client.send_email(13, cid, {})


def test_send_email_failed_answer_raises_invalid_request(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    cid = emulator.add_contact("ann@example.com")
    emulator.send_failure = "Connection refused by smtp"
    with pytest.raises(InvalidRequest, match="smtp"):
        client.send_email(13, cid, {})


def test_send_email_to_a_missing_email_raises_not_found(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    cid = emulator.add_contact("ann@example.com")
    with pytest.raises(NotFound):
        client.send_email(99, cid, {})


def test_send_email_server_error_is_outcome_unknown_and_not_retried(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    cid = emulator.add_contact("ann@example.com")
    emulator.inject(method="POST", path="/send$", status=503, when="after")
    with pytest.raises(OutcomeUnknown):
        client.send_email(13, cid, {})
    assert len(emulator.exchanges("POST")) == 1
    assert len(emulator.sent()) == 1  # it did happen: the reconciler must check stats first


def test_send_email_connection_lost_after_sending_is_outcome_unknown(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    cid = emulator.add_contact("ann@example.com")
    emulator.inject(method="POST", path="/send$", kind="reset", when="after")
    with pytest.raises(OutcomeUnknown):
        client.send_email(13, cid, {})
    assert len(emulator.exchanges("POST")) == 1


def test_email_stats_lists_sends_of_one_email_to_one_contact(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    ann = emulator.add_contact("ann@example.com")
    bob = emulator.add_contact("bob@example.com")
    emulator.record_send(13, ann)
    emulator.record_send(11, ann)
    emulator.record_send(13, bob)
    emulator.record_send(13, ann, failed=True)
    stats = client.email_stats(ann, 13)
    assert [(s.email_id, s.lead_id, s.is_failed) for s in stats] == [
        (13, ann, False),
        (13, ann, True),
    ]
    assert stats[0].email_address == "ann@example.com"
    assert stats[0].date_sent == T0


def test_iter_email_stats_pages_all_sends_after_since_id(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    contacts = [emulator.add_contact(f"u{i}@example.com") for i in range(12)]
    stat_ids = [emulator.record_send(13, cid) for cid in contacts]
    emulator.record_send(11, contacts[0])
    got = list(client.iter_email_stats(13, since_id=stat_ids[1], page_size=4))
    assert [s.id for s in got] == stat_ids[2:]
    assert [s.lead_id for s in got] == contacts[2:]
    assert len(emulator.exchanges("GET", "/stats/")) == 3


def test_stats_error_inside_a_200_raises(emulator: MauticEmulator, client: MauticClient) -> None:
    emulator.inject(
        method="GET",
        path="/stats/",
        status=200,
        body={"errors": [{"message": "You do not have the view permission", "code": 403}]},
    )
    with pytest.raises(AuthRejected, match="view permission"):
        client.email_stats(1, 13)


# -- doctor helpers ------------------------------------------------------------------------------


def test_list_contact_fields_includes_the_custom_fields(client: MauticClient) -> None:
    fields = {f.alias: f for f in client.list_contact_fields()}
    assert fields["vip_status"].type == "boolean"
    assert fields["discord_invite_link_vip"].type == "url"
    assert fields["opt_in_confirmed"].published is True


def test_get_email_returns_its_state(emulator: MauticEmulator, client: MauticClient) -> None:
    emulator.add_email(12, "Invite Basic", published=False)
    info = client.get_email(12)
    assert (info.id, info.name, info.is_published, info.email_type) == (
        12,
        "Invite Basic",
        False,
        "template",
    )


def test_check_access_counts_contacts(emulator: MauticEmulator, client: MauticClient) -> None:
    emulator.add_contact("a@example.com")
    assert client.check_access() == 1


# -- failures --------------------------------------------------------------------------------------


def test_wrong_password_raises_auth_rejected_without_leaking_it(server: EmulatorServer) -> None:
    with MauticClient(server.url, USER, "wrong-" + PASSWORD, transport=transport()) as bad:
        with pytest.raises(AuthRejected) as caught:
            bad.check_access()
        assert "authorization denied" in str(caught.value)
        assert PASSWORD not in str(caught.value) and PASSWORD not in repr(bad)


def test_disabled_api_raises_auth_rejected_with_mauting_reason(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    emulator.api_enabled = False
    with pytest.raises(AuthRejected, match="API disabled"):
        client.check_access()


def test_429_with_retry_after_is_retried(
    emulator: MauticEmulator, client: MauticClient, stats: CallStats
) -> None:
    emulator.inject(
        method="GET",
        path="/api/contacts$",
        status=429,
        headers={"Retry-After": "0.05"},
        body={"errors": [{"code": 429, "message": "slow down", "details": []}]},
    )
    assert client.check_access() == 0
    assert stats.service("mautic").throttled == 1
    assert stats.service("mautic").retries == 1


def test_exhausted_hourly_limit_fails_fast_as_rate_limited(
    emulator: MauticEmulator, client: MauticClient, raw: httpx.Client
) -> None:
    emulator.rate_limit_per_hour = 1
    raw.get("/api/contacts")  # another program used the hour up
    started = time.perf_counter()
    with pytest.raises(RateLimited) as caught:
        client.check_access()
    assert time.perf_counter() - started < 2
    assert caught.value.retry_after is not None and caught.value.retry_after > 60
    assert len(emulator.exchanges("GET")) == 2  # one 429, then no more calls


def test_server_errors_on_reads_are_retried(
    emulator: MauticEmulator, client: MauticClient, stats: CallStats
) -> None:
    cid = emulator.add_contact("ann@example.com")
    emulator.inject(method="GET", path="/api/contacts/", status=502, times=2)
    assert client.get(cid).id == cid
    assert stats.service("mautic").retries == 2


def test_persistent_server_error_raises_unavailable(
    emulator: MauticEmulator, server: EmulatorServer
) -> None:
    emulator.inject(method="GET", path="/api/contacts", status=500, times=None)
    policy = RetryPolicy(attempts=2)
    with (
        MauticClient(server.url, USER, PASSWORD, retry=policy, transport=transport()) as c,
        pytest.raises(Unavailable),
    ):
        c.check_access()
    assert len(emulator.exchanges("GET")) == 2


def test_malformed_json_raises_bad_response(emulator: MauticEmulator, client: MauticClient) -> None:
    emulator.inject(method="GET", path="/api/contacts", kind="malformed")
    with pytest.raises(BadResponse):
        client.check_access()


def test_html_page_raises_bad_response(emulator: MauticEmulator, client: MauticClient) -> None:
    emulator.inject(method="GET", path="/api/contacts", kind="html")
    with pytest.raises(BadResponse, match="not JSON"):
        client.check_access()


def test_contact_without_fields_all_raises_bad_response_naming_it(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    emulator.inject(
        method="GET",
        path="/api/contacts/7",
        status=200,
        body={"contact": {"id": 7, "dateAdded": "2024-05-01T12:00:00+00:00", "fields": {}}},
    )
    with pytest.raises(BadResponse, match=r"fields\.all"):
        client.get(7)


def test_contact_dates_with_offsets_and_string_ids_are_tolerated(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    emulator.inject(
        method="GET",
        path="/api/contacts/7",
        status=200,
        body={
            "contact": {
                "id": "7",
                "dateAdded": "2024-05-01 10:00:00",
                "dateModified": "2024-05-01T14:00:00+02:00",
                "fields": {"all": {"email": "a@b.io", "vip_status": "1"}},
            }
        },
    )
    contact = client.get(7)
    assert contact.id == 7
    assert contact.date_modified == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert contact.date_added == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert contact.flag("vip_status")


def test_contact_pages_keep_only_what_a_contact_is_read_from(
    emulator: MauticEmulator, client: MauticClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A page of contacts repeats every field definition per contact; decoding
    # keeps the flat `fields.all` map only (and what was read of the DNC
    # entries and tags), so a page of 1000 stays small.
    emulator.add_contact("ann@example.com", promo_code="VIP-1", tags=["hold"], dnc=1)
    seen: list[Any] = []
    original = mautic_module._contact_list
    monkeypatch.setattr(
        mautic_module, "_contact_list", lambda body, what: seen.append(body) or original(body, what)
    )
    (contact,) = client.iter_all()
    (raw,) = seen[0]["contacts"].values()
    slim = {"id", "dateAdded", "dateModified", "fields", "_syncctl_dnc_email", "_syncctl_tags"}
    assert set(raw) <= slim
    assert list(raw["fields"]) == ["all"]
    assert contact.text("promo_code") == "VIP-1"
    assert contact.dnc_email
    assert contact.tags == {"hold"}


# -- who holds an invite code ---------------------------------------------------------

LINK_FIELDS = ("discord_invite_link_vip", "discord_invite_link_basic")


def test_find_holding_any_names_each_codes_holders_in_one_query(client, emulator) -> None:
    a = emulator.add_contact("a@example.com", discord_invite_link_vip="https://discord.gg/AAA111")
    b = emulator.add_contact("b@example.com", discord_invite_link_basic="https://discord.gg/BBB222")
    emulator.add_contact("c@example.com", discord_invite_link_basic="https://discord.gg/CCC333")
    found = client.find_holding_any(LINK_FIELDS, ["AAA111", "BBB222", "ZZZ999"])
    assert {code: [c.id for c in held] for code, held in found.items()} == {
        "AAA111": [a],
        "BBB222": [b],
        "ZZZ999": [],
    }
    assert len(emulator.exchanges("GET", r"^/api/contacts$")) == 1


def test_find_holding_any_keeps_each_query_short(client, emulator) -> None:
    codes = [f"code{i:05d}x" for i in range(40)]
    emulator.add_contact("a@example.com", discord_invite_link_vip=f"https://discord.gg/{codes[-1]}")
    found = client.find_holding_any(LINK_FIELDS, codes)
    assert [c.email for c in found[codes[-1]]] == ["a@example.com"]
    queries = emulator.exchanges("GET", r"^/api/contacts$")
    assert len(queries) == 3  # 15 codes a query
    assert all(len(urlencode(e.query)) < 6000 for e in queries)


def test_find_holding_any_refuses_like_wildcards(client) -> None:
    with pytest.raises(ValueError, match="LIKE"):
        client.find_holding_any(LINK_FIELDS, ["ab_cd"])
