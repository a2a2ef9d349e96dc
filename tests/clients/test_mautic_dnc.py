"""Do-Not-Contact and tags (rules 18-20): the Mautic emulator.

The `test_emulator_*` tests pin the emulator to what Mautic's source
(mautic@2427149) does: LeadApiController add/removeDncAction,
DoNotContactModel, LeadModel::modifyTags, the serializer groups of the
contact list.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from syncctl.clients.mautic import MauticClient
from syncctl.sandbox.mautic import (
    DNC_BOUNCED,
    DNC_MANUAL,
    DNC_UNSUBSCRIBED,
    MauticEmulator,
)
from syncctl.sandbox.server import EmulatorServer
from tests.clients.test_mautic import transport, where

USER = "api-user"
PASSWORD = "s3cret-Pa55word"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 1.0) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def emulator(clock: Clock) -> MauticEmulator:
    emu = MauticEmulator(username=USER, password=PASSWORD, clock=clock)
    emu.add_email(11, "Invite VIP")
    return emu


@pytest.fixture(scope="module")
def _shared_server() -> Iterator[EmulatorServer]:
    srv = EmulatorServer(MauticEmulator(username=USER, password=PASSWORD)).start()
    yield srv
    srv.stop()


@pytest.fixture
def server(_shared_server: EmulatorServer, emulator: MauticEmulator) -> EmulatorServer:
    _shared_server.emulator = emulator
    _shared_server._server.emulator = emulator  # what the request handler reads
    return _shared_server


@pytest.fixture
def client(server: EmulatorServer) -> Iterator[MauticClient]:
    with MauticClient(server.url, USER, PASSWORD, timeout=5.0, transport=transport()) as c:
        yield c


@pytest.fixture
def raw(server: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, auth=(USER, PASSWORD), transport=transport()) as c:
        yield c


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
