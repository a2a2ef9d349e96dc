"""Do-Not-Contact and tags (rules 18-20): the Mautic emulator and the client.

The `test_emulator_*` tests pin the emulator to what Mautic's source
(mautic@2427149) does: LeadApiController add/removeDncAction,
DoNotContactModel, LeadModel::modifyTags, the serializer groups of the
contact list. The client tests show DNC and tags come with every
contact read, at no extra call.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from syncctl.clients import mautic as mautic_module
from syncctl.clients.mautic import Contact, MauticClient
from syncctl.errors import InvalidRequest, NotFound
from syncctl.sandbox.mautic import (
    DNC_BOUNCED,
    DNC_MANUAL,
    DNC_UNSUBSCRIBED,
    MauticEmulator,
)
from tests.clients.mautic_fixtures import T0, Clock, where


def dnc_of(raw: httpx.Client, cid: int) -> list[dict[str, Any]]:
    return raw.get(f"/api/contacts/{cid}").json()["contact"]["doNotContact"]


# -- emulator: shapes ------------------------------------------------------------------


def test_emulator_dnc_entries_have_mautics_shape(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    cid = emulator.add_contact("ann@example.com")
    emulator.add_dnc(cid, DNC_UNSUBSCRIBED, comments="clicked unsubscribe")
    assert dnc_of(raw, cid) == [
        {
            "id": 1,
            "dateAdded": "2024-05-01T12:00:00+00:00",
            "reason": 1,
            "comments": "clicked unsubscribe",
            "channel": "email",
            "channelId": None,
        }
    ]


def test_emulator_tags_have_ids_and_come_sorted_by_name(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    cid = emulator.add_contact("ann@example.com")
    emulator.add_tag(cid, "zeta", "Alpha", "beta")
    tags = raw.get(f"/api/contacts/{cid}").json()["contact"]["tags"]
    assert tags == [
        {"id": 2, "tag": "Alpha", "description": None},
        {"id": 3, "tag": "beta", "description": None},
        {"id": 1, "tag": "zeta", "description": None},
    ]


def test_emulator_list_carries_tags_and_dnc_of_each_contact(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    held = emulator.add_contact("held@example.com", tags=["syncctl-hold"])
    gone = emulator.add_contact("gone@example.com", dnc=DNC_BOUNCED)
    contacts = raw.get("/api/contacts").json()["contacts"]
    assert [t["tag"] for t in contacts[str(held)]["tags"]] == ["syncctl-hold"]
    assert contacts[str(held)]["doNotContact"] == []
    assert [d["reason"] for d in contacts[str(gone)]["doNotContact"]] == [DNC_BOUNCED]


def test_emulator_minimal_list_leaves_out_tags_and_dnc(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    # minimal=1 swaps the leadDetails serializer group for leadList.
    cid = emulator.add_contact("held@example.com", tags=["syncctl-hold"], dnc=DNC_MANUAL)
    contact = raw.get("/api/contacts", params={"minimal": "1"}).json()["contacts"][str(cid)]
    assert "tags" not in contact
    assert "doNotContact" not in contact
    assert {"id", "dateAdded", "dateModified", "fields"} <= set(contact)


def test_emulator_minimal_zero_is_the_full_list(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    cid = emulator.add_contact("held@example.com", tags=["syncctl-hold"])
    contact = raw.get("/api/contacts", params={"minimal": "0"}).json()["contacts"][str(cid)]
    assert "tags" in contact
    assert "doNotContact" in contact


def test_emulator_stats_lead_donotcontact_lists_entries_by_id(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    a = emulator.add_contact("a@example.com")
    b = emulator.add_contact("b@example.com")
    emulator.add_dnc(a, DNC_BOUNCED)
    emulator.add_dnc(b, DNC_MANUAL, channel="sms")
    body = raw.get("/api/stats/lead_donotcontact", params=where(("id", "gt", 0))).json()
    assert body["total"] == "2"
    assert body["stats"][0] == {
        "id": 1,
        "lead_id": a,
        "date_added": "2024-05-01 12:00:00",
        "reason": 2,
        "channel": "email",
        "channel_id": None,
        "comments": "",
    }
    assert body["stats"][1]["channel"] == "sms"


def test_emulator_stats_catalogue_names_lead_donotcontact(raw: httpx.Client) -> None:
    body = raw.get("/api/stats").json()
    assert "lead_donotcontact" in body["availableTables"]
    assert "lead_id" in body["tableColumns"]["lead_donotcontact"]


# -- emulator: the DNC routes -----------------------------------------------------------


def test_emulator_dnc_add_defaults_to_the_manual_reason(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    cid = emulator.add_contact("ann@example.com")
    response = raw.post(f"/api/contacts/{cid}/dnc/email/add", json={})
    assert response.status_code == 200
    (entry,) = response.json()["contact"]["doNotContact"]
    assert (entry["reason"], entry["channel"]) == (DNC_MANUAL, "email")


def test_emulator_dnc_add_with_reason_zero_is_a_400(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    cid = emulator.add_contact("ann@example.com")
    response = raw.post(f"/api/contacts/{cid}/dnc/email/add", json={"reason": 0})
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == "Invalid reason code given"
    assert dnc_of(raw, cid) == []


def test_emulator_dnc_add_for_a_missing_contact_is_a_404(raw: httpx.Client) -> None:
    response = raw.post("/api/contacts/999/dnc/email/add", json={"reason": 1})
    assert response.status_code == 404
    assert response.json()["errors"][0]["message"] == "Item was not found."


def test_emulator_dnc_add_keeps_an_unsubscribe_whatever_reason_is_asked(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    cid = emulator.add_contact("ann@example.com", dnc=DNC_UNSUBSCRIBED)
    response = raw.post(f"/api/contacts/{cid}/dnc/email/add", json={"reason": DNC_BOUNCED})
    assert response.status_code == 200
    assert [d["reason"] for d in response.json()["contact"]["doNotContact"]] == [1]


def test_emulator_dnc_add_updates_another_reason_in_place(
    emulator: MauticEmulator, raw: httpx.Client, clock: Clock
) -> None:
    cid = emulator.add_contact("ann@example.com", dnc=DNC_BOUNCED)
    clock.tick(60)
    body = {"reason": DNC_MANUAL, "comments": "asked by phone"}
    (entry,) = raw.post(f"/api/contacts/{cid}/dnc/email/add", json=body).json()["contact"][
        "doNotContact"
    ]
    assert (entry["id"], entry["reason"], entry["comments"]) == (1, 3, "asked by phone")
    assert entry["dateAdded"] == "2024-05-01T12:01:00+00:00"


def test_emulator_dnc_add_takes_a_form_encoded_body_with_a_channel_id(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    cid = emulator.add_contact("ann@example.com")
    response = raw.post(
        f"/api/contacts/{cid}/dnc/email/add", data={"reason": "1", "channelId": "26"}
    )
    (entry,) = response.json()["contact"]["doNotContact"]
    assert (entry["reason"], entry["channelId"]) == (1, 26)


def test_emulator_dnc_add_html_encodes_comments(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    cid = emulator.add_contact("ann@example.com")
    body = {"reason": 3, "comments": "<b>O'Neil</b>"}
    (entry,) = raw.post(f"/api/contacts/{cid}/dnc/email/add", json=body).json()["contact"][
        "doNotContact"
    ]
    assert entry["comments"] == "&#60;b&#62;O&#39;Neil&#60;/b&#62;"


def test_emulator_dnc_remove_says_whether_an_entry_was_found(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    cid = emulator.add_contact("ann@example.com", dnc=DNC_MANUAL)
    first = raw.post(f"/api/contacts/{cid}/dnc/email/remove").json()
    second = raw.post(f"/api/contacts/{cid}/dnc/email/remove").json()
    assert (first["recordFound"], first["contact"]["doNotContact"]) == (True, [])
    assert second["recordFound"] is False


def test_emulator_dnc_remove_for_a_missing_contact_is_a_404(raw: httpx.Client) -> None:
    assert raw.post("/api/contacts/999/dnc/email/remove").status_code == 404


def test_emulator_dnc_change_leaves_date_modified_alone_by_default(
    emulator: MauticEmulator, raw: httpx.Client, clock: Clock
) -> None:
    # Lead::shouldSkipSettingModifiedProperties (mautic/mautic#13994).
    cid = emulator.add_contact("ann@example.com")
    emulator.set_fields(cid, firstname="Ann")
    before = emulator.date_modified(cid)
    clock.tick(60)
    raw.post(f"/api/contacts/{cid}/dnc/email/add", json={"reason": 1})
    clock.tick(60)
    raw.post(f"/api/contacts/{cid}/dnc/email/remove")
    assert emulator.date_modified(cid) == before


def test_emulator_dnc_change_moves_date_modified_like_5_1_0_when_asked(
    emulator: MauticEmulator, raw: httpx.Client, clock: Clock
) -> None:
    emulator.dnc_moves_date_modified = True
    cid = emulator.add_contact("ann@example.com")
    clock.tick(60)
    raw.post(f"/api/contacts/{cid}/dnc/email/add", json={"reason": 1})
    assert emulator.date_modified(cid) == T0 + timedelta(seconds=60)


def test_emulator_send_ignores_dnc(emulator: MauticEmulator, raw: httpx.Client) -> None:
    cid = emulator.add_contact("ann@example.com", dnc=DNC_UNSUBSCRIBED)
    response = raw.post(f"/api/emails/11/contact/{cid}/send", json={})
    assert response.json() == {"success": True}


# -- emulator: tags and DNC in contact bodies --------------------------------------------


def test_emulator_patch_tags_adds_and_removes(emulator: MauticEmulator, raw: httpx.Client) -> None:
    cid = emulator.add_contact("ann@example.com", tags=["old"])
    response = raw.patch(f"/api/contacts/{cid}/edit", json={"tags": ["syncctl-hold", "-old"]})
    assert [t["tag"] for t in response.json()["contact"]["tags"]] == ["syncctl-hold"]


def test_emulator_patch_tags_moves_date_modified(
    emulator: MauticEmulator, raw: httpx.Client, clock: Clock
) -> None:
    cid = emulator.add_contact("ann@example.com")
    clock.tick(60)
    raw.patch(f"/api/contacts/{cid}/edit", json={"tags": ["syncctl-hold"]})
    assert emulator.date_modified(cid) == T0 + timedelta(seconds=60)


def test_emulator_patch_with_tags_it_has_changes_nothing(
    emulator: MauticEmulator, raw: httpx.Client, clock: Clock
) -> None:
    cid = emulator.add_contact("ann@example.com", tags=["syncctl-hold"])
    clock.tick(60)
    raw.patch(f"/api/contacts/{cid}/edit", json={"tags": ["syncctl-hold", "-absent"]})
    assert emulator.date_modified(cid) is None


def test_emulator_patch_tags_match_names_case_sensitively(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    # modifyTags: array_key_exists on the exact name, so "-Hold" leaves "hold".
    cid = emulator.add_contact("ann@example.com", tags=["hold"])
    response = raw.patch(f"/api/contacts/{cid}/edit", json={"tags": ["-Hold", "HOLD"]})
    assert [t["tag"] for t in response.json()["contact"]["tags"]] == ["hold", "HOLD"]


def test_emulator_patch_tags_as_a_comma_separated_string(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    cid = emulator.add_contact("ann@example.com")
    response = raw.patch(f"/api/contacts/{cid}/edit", json={"tags": "a, b"})
    assert [t["tag"] for t in response.json()["contact"]["tags"]] == ["a", "b"]


def test_emulator_patch_do_not_contact_adds_and_reason_zero_removes(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    cid = emulator.add_contact("ann@example.com")
    add = {"doNotContact": [{"channel": "email", "reason": 2, "comments": "bounce"}]}
    added = raw.patch(f"/api/contacts/{cid}/edit", json=add).json()["contact"]["doNotContact"]
    drop = {"doNotContact": [{"channel": "email", "reason": 0}]}
    dropped = raw.patch(f"/api/contacts/{cid}/edit", json=drop).json()["contact"]["doNotContact"]
    assert [d["reason"] for d in added] == [2]
    assert dropped == []


def test_emulator_create_takes_tags_and_do_not_contact(raw: httpx.Client) -> None:
    body = {
        "email": "new@example.com",
        "tags": ["apitest", "syncctl-hold"],
        "doNotContact": [{"channel": "email", "reason": DNC_BOUNCED}],
    }
    contact = raw.post("/api/contacts/new", json=body).json()["contact"]
    assert [t["tag"] for t in contact["tags"]] == ["apitest", "syncctl-hold"]
    assert [d["reason"] for d in contact["doNotContact"]] == [DNC_BOUNCED]
    assert contact["dateModified"] is None


def test_emulator_batch_edit_changes_tags(emulator: MauticEmulator, raw: httpx.Client) -> None:
    cid = emulator.add_contact("ann@example.com")
    body = [{"id": cid, "tags": ["syncctl-hold"]}]
    (saved,) = raw.patch("/api/contacts/batch/edit", json=body).json()["contacts"]
    assert [t["tag"] for t in saved["tags"]] == ["syncctl-hold"]


def test_emulator_merge_keeps_the_losers_tags_but_drops_its_dnc(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    # ContactMerger::mergeTags; lead_donotcontact rows go with the deleted loser.
    winner = emulator.add_contact("ann@example.com", tags=["a"])
    loser = emulator.add_contact("ann.lee@example.com", tags=["b"], dnc=DNC_UNSUBSCRIBED)
    merged = raw.patch(f"/api/contacts/{winner}/edit", json={"email": "ann.lee@example.com"})
    contact = merged.json()["contact"]
    assert [t["tag"] for t in contact["tags"]] == ["a", "b"]
    assert contact["doNotContact"] == []
    assert raw.get(f"/api/contacts/{loser}").status_code == 404


def test_emulator_deleting_a_contact_deletes_its_dnc_rows(
    emulator: MauticEmulator, raw: httpx.Client
) -> None:
    cid = emulator.add_contact("ann@example.com", dnc=DNC_MANUAL)
    emulator.delete_contact(cid)
    body = raw.get("/api/stats/lead_donotcontact", params=where(("id", "gt", 0))).json()
    assert body["stats"] == []


def test_emulator_operator_tagging_moves_date_modified(
    emulator: MauticEmulator, clock: Clock
) -> None:
    cid = emulator.add_contact("ann@example.com")
    clock.tick(60)
    assert emulator.add_tag(cid, "syncctl-hold")
    assert emulator.date_modified(cid) == T0 + timedelta(seconds=60)


def test_emulator_operator_dnc_leaves_date_modified_alone(
    emulator: MauticEmulator, clock: Clock
) -> None:
    cid = emulator.add_contact("ann@example.com")
    clock.tick(60)
    assert emulator.add_dnc(cid, DNC_UNSUBSCRIBED)
    assert emulator.date_modified(cid) is None


# -- client: reading DNC and tags with the contacts --------------------------------------


def test_get_reads_email_dnc_and_tags(emulator: MauticEmulator, client: MauticClient) -> None:
    cid = emulator.add_contact("ann@example.com", tags=["syncctl-hold", "vip"], dnc=DNC_BOUNCED)
    contact = client.get(cid)
    assert contact.dnc_email
    assert contact.tags == frozenset({"syncctl-hold", "vip"})


def test_a_contact_without_dnc_or_tags_reads_as_such(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    contact = client.get(emulator.add_contact("ann@example.com"))
    assert not contact.dnc_email
    assert contact.tags == frozenset()


@pytest.mark.parametrize("reason", [DNC_UNSUBSCRIBED, DNC_BOUNCED, DNC_MANUAL])
def test_every_dnc_reason_counts(
    emulator: MauticEmulator, client: MauticClient, reason: int
) -> None:
    cid = emulator.add_contact("ann@example.com", dnc=reason)
    assert client.get(cid).dnc_email


def test_dnc_on_another_channel_is_not_email_dnc(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    cid = emulator.add_contact("ann@example.com")
    emulator.add_dnc(cid, DNC_MANUAL, channel="sms")
    assert not client.get(cid).dnc_email


def test_iter_all_reads_dnc_and_tags_in_its_pages(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    ids = [emulator.add_contact(f"u{i}@example.com") for i in range(5)]
    emulator.add_dnc(ids[1], DNC_UNSUBSCRIBED)
    emulator.add_tag(ids[3], "syncctl-hold")
    contacts = list(client.iter_all(page_size=200))
    assert [c.dnc_email for c in contacts] == [False, True, False, False, False]
    assert [c.has_tag("syncctl-hold") for c in contacts] == [False, False, False, True, False]
    assert len(emulator.exchanges("GET")) == 1


def test_iter_modified_since_reads_dnc_and_tags(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    cid = emulator.add_contact("ann@example.com", dnc=DNC_MANUAL)
    emulator.add_tag(cid, "syncctl-hold")
    (contact,) = client.iter_modified_since(T0)
    assert contact.dnc_email
    assert contact.tags == {"syncctl-hold"}


def test_get_many_reads_dnc_and_tags(emulator: MauticEmulator, client: MauticClient) -> None:
    a = emulator.add_contact("a@example.com", dnc=DNC_UNSUBSCRIBED)
    b = emulator.add_contact("b@example.com", tags=["syncctl-hold"])
    found = client.get_many([a, b])
    assert (found[a].dnc_email, found[b].dnc_email) == (True, False)
    assert (found[a].tags, found[b].tags) == (frozenset(), {"syncctl-hold"})


def test_find_by_emails_reads_dnc_and_tags(emulator: MauticEmulator, client: MauticClient) -> None:
    emulator.add_contact("a@example.com", dnc=DNC_BOUNCED, tags=["syncctl-hold"])
    (contact,) = client.find_by_emails(["A@example.com"])["a@example.com"]
    assert contact.dnc_email
    assert contact.has_tag("syncctl-hold")


def test_an_incremental_read_misses_a_dnc_only_change(
    emulator: MauticEmulator, client: MauticClient, clock: Clock
) -> None:
    # Why iter_dnc_entries exists: dateModified does not move for DNC alone.
    cid = emulator.add_contact("ann@example.com")
    emulator.set_fields(cid, firstname="Ann")
    clock.tick(3600)
    emulator.add_dnc(cid, DNC_UNSUBSCRIBED)
    assert list(client.iter_modified_since(clock.now)) == []
    assert [e.contact_id for e in client.iter_dnc_entries()] == [cid]


def test_has_tag_ignores_case_and_blanks() -> None:
    contact = Contact(1, None, None, None, T0, {}, tags=frozenset({"Syncctl-Hold "}))
    assert contact.has_tag("syncctl-hold")
    assert not contact.has_tag("syncctl")


def test_equal_tag_sets_are_shared_between_contacts(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    for i in range(3):
        emulator.add_contact(f"u{i}@example.com", tags=["vip", "syncctl-hold"])
    a, b, c = client.iter_all()
    assert a.tags is b.tags is c.tags


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        ([], False),
        ({}, False),
        ([{"channel": "email", "reason": 1}], True),
        ([{"channel": "Email", "reason": "2"}], True),
        ([{"channel": "sms", "reason": 3}], False),
        ([{"channel": "email", "reason": 0}], False),
        ([{"channel": "email"}], True),
        ([{"reason": 3}], True),
        ([{"channel": "sms", "reason": 1}, {"channel": "email", "reason": 3}], True),
        ({"email": {"id": 4, "reason": 1}}, True),
        ({"sms": {"id": 4, "reason": 1}}, False),
        ({"0": {"channel": "email", "reason": 2}}, True),
        ({"channel": "email", "reason": 3}, True),
        (["email"], True),
        (["sms"], False),
        ("email", False),
    ],
)
def test_email_dnc_reads_every_plausible_shape(value: Any, expected: bool) -> None:
    assert mautic_module._email_dnc(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, set()),
        ([], set()),
        ([{"id": 1, "tag": "hold"}, {"id": 2, "tag": "vip", "description": None}], {"hold", "vip"}),
        ([{"tag": "hold"}], {"hold"}),
        (["hold", "vip"], {"hold", "vip"}),
        ({"hold": {"id": 1, "tag": "hold"}}, {"hold"}),
        ({"0": "hold", "2": "vip"}, {"hold", "vip"}),
        ({"hold": True}, {"hold"}),
        ({"hold": {"id": 1}}, {"hold"}),
        ({"id": 1, "tag": "hold"}, {"hold"}),
        ([{"id": 1}, "", None, 5], set()),
        ("hold", set()),
    ],
)
def test_tag_names_read_every_plausible_shape(value: Any, expected: set[str]) -> None:
    assert mautic_module._tag_names(value) == expected


def test_a_contact_object_without_dnc_and_tags_keys_is_read(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    cid = emulator.add_contact("ann@example.com")
    emulator.inject(
        method="GET",
        path=f"/contacts/{cid}$",
        status=200,
        body={
            "contact": {"id": cid, "dateAdded": "2024-05-01T10:00:00+00:00", "fields": {"all": {}}}
        },
    )
    contact = client.get(cid)
    assert (contact.dnc_email, contact.tags) == (False, frozenset())


# -- client: DNC and tag writes ---------------------------------------------------------------


def test_add_dnc_puts_the_contact_on_the_email_list(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    cid = emulator.add_contact("ann@example.com")
    contact = client.add_dnc(cid, reason=DNC_UNSUBSCRIBED, comments="by phone")
    assert contact.dnc_email
    assert emulator.record(cid)["doNotContact"][0]["comments"] == "by phone"


def test_add_dnc_refuses_reason_zero_without_a_call(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    cid = emulator.add_contact("ann@example.com")
    with pytest.raises(InvalidRequest):
        client.add_dnc(cid, reason=0)
    assert emulator.exchanges("POST") == []


def test_add_dnc_for_a_missing_contact_raises_not_found(client: MauticClient) -> None:
    with pytest.raises(NotFound):
        client.add_dnc(999)


def test_add_dnc_refuses_a_channel_that_would_change_the_path(client: MauticClient) -> None:
    with pytest.raises(InvalidRequest):
        client.add_dnc(1, channel="email/../x")


def test_remove_dnc_reports_whether_an_entry_was_removed(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    cid = emulator.add_contact("ann@example.com", dnc=DNC_MANUAL)
    assert client.remove_dnc(cid) is True
    assert client.remove_dnc(cid) is False
    assert not client.get(cid).dnc_email


def test_add_tags_and_remove_tags(emulator: MauticEmulator, client: MauticClient) -> None:
    cid = emulator.add_contact("ann@example.com", tags=["vip"])
    assert client.add_tags(cid, ["syncctl-hold"]).tags == {"vip", "syncctl-hold"}
    assert client.remove_tags(cid, ["syncctl-hold", "absent"]).tags == {"vip"}


@pytest.mark.parametrize("name", ["", " hold", "-hold", "<b>hold</b>", "a&amp;b"])
def test_add_tags_refuses_a_name_mautic_would_change(
    emulator: MauticEmulator, client: MauticClient, name: str
) -> None:
    cid = emulator.add_contact("ann@example.com")
    with pytest.raises(InvalidRequest):
        client.add_tags(cid, [name])
    assert emulator.exchanges("PATCH") == []


# -- client: polling the DNC table ------------------------------------------------------


def test_iter_dnc_entries_lists_email_entries_after_since_id(
    emulator: MauticEmulator, client: MauticClient
) -> None:
    ids = [emulator.add_contact(f"u{i}@example.com") for i in range(4)]
    for cid in ids:
        emulator.add_dnc(cid, DNC_BOUNCED)
    emulator.add_dnc(ids[0], DNC_MANUAL, channel="sms")
    entries = list(client.iter_dnc_entries(since_id=1))
    assert [e.contact_id for e in entries] == ids[1:]
    assert {(e.channel, e.reason) for e in entries} == {("email", DNC_BOUNCED)}
    assert entries[0].date_added == T0


def test_iter_dnc_entries_pages_by_id(emulator: MauticEmulator, client: MauticClient) -> None:
    for i in range(9):
        emulator.add_contact(f"u{i}@example.com", dnc=DNC_UNSUBSCRIBED)
    assert len(list(client.iter_dnc_entries(page_size=4))) == 9
    assert len(emulator.exchanges("GET", "/stats/lead_donotcontact")) == 3


def test_iter_dnc_entries_of_every_channel(emulator: MauticEmulator, client: MauticClient) -> None:
    cid = emulator.add_contact("ann@example.com", dnc=DNC_MANUAL)
    emulator.add_dnc(cid, DNC_MANUAL, channel="sms")
    assert [e.channel for e in client.iter_dnc_entries(channel=None)] == ["email", "sms"]
