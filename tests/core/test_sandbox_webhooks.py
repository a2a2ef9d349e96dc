"""The sandbox sends webhooks as Stripe and Mautic do: signed, retried, in the vendors' shapes.

A loopback receiver stands in for `syncctl watch --listen`; Stripe's own SDK
checks the signatures, as the receiving end is told to.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator

import httpx
import pytest
import stripe

from syncctl.sandbox.mautic import MauticEmulator
from syncctl.sandbox.stack import Sandbox
from syncctl.sandbox.stripe import StripeEmulator
from syncctl.sandbox.webhooks import (
    MAUTIC_CONTACT_NEW,
    MAUTIC_CONTACT_UPDATE,
    mautic_signature,
    php_json,
    stripe_signature,
)
from tests.loopback import Receiver

SECRET = "whsec_test_0123456789abcdef"
FAST = (0.05, 0.1)  # retry schedule for tests
VIP = [("price_vip", "prod_vip", 1)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


@pytest.fixture
def stripe_emulator() -> Iterator[StripeEmulator]:
    emulator = StripeEmulator(api_key="rk_test_sandbox", rate_limit_per_second=None)
    yield emulator
    emulator.stop_webhooks()


@pytest.fixture
def mautic() -> Iterator[MauticEmulator]:
    emulator = MauticEmulator(username="u", password="p")
    yield emulator
    emulator.stop_webhooks()


# -- Stripe -----------------------------------------------------------------------------------


def test_a_stripe_event_arrives_signed_so_the_stripe_sdk_accepts_it(
    stripe_emulator: StripeEmulator, receiver: Receiver
) -> None:
    sender = stripe_emulator.send_webhooks(f"{receiver.url}/webhooks/stripe", SECRET)
    session = stripe_emulator.add_session("ada@example.com", line_items=VIP)
    [got] = receiver.wait_for(1)
    assert got.path == "/webhooks/stripe"
    assert got.headers["content-type"].startswith("application/json")
    header = got.headers["stripe-signature"]
    assert stripe.WebhookSignature.verify_header(got.body, header, SECRET, tolerance=300)
    event = stripe.Webhook.construct_event(got.body, header, SECRET)
    assert event["type"] == "checkout.session.completed"
    assert event["data"]["object"]["id"] == session["id"]
    # The very Event the Events API serves.
    assert json.loads(got.body) == stripe_emulator.events[0]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(got.body, header, "whsec_wrong", tolerance=300)
    assert sender.wait_idle(2) and [a.status for a in sender.attempts] == [200]


def test_an_account_seeding_the_past_still_signs_with_the_time_of_delivery(
    receiver: Receiver,
) -> None:
    """The `now` knob stamps objects; Stripe signs when it sends."""
    emulator = StripeEmulator(api_key="rk_test_sandbox", now=lambda: time.time() - 86400)
    try:
        emulator.send_webhooks(receiver.url, SECRET)
        emulator.add_session("ada@example.com", line_items=VIP)
        [got] = receiver.wait_for(1)
    finally:
        emulator.stop_webhooks()
    assert json.loads(got.body)["created"] < time.time() - 86000
    assert stripe.WebhookSignature.verify_header(
        got.body, got.headers["stripe-signature"], SECRET, tolerance=300
    )


def test_refunds_and_disputes_are_sent_as_their_own_events(
    stripe_emulator: StripeEmulator, receiver: Receiver
) -> None:
    session = stripe_emulator.add_session("ada@example.com", line_items=VIP)
    stripe_emulator.send_webhooks(receiver.url, SECRET)  # events from now on only
    stripe_emulator.refund(session["id"], 100)
    stripe_emulator.dispute(session["id"])
    types = [json.loads(r.body)["type"] for r in receiver.wait_for(3)]
    assert types == ["charge.refunded", "charge.dispute.created", "charge.dispute.funds_withdrawn"]


def test_a_non_2xx_answer_is_retried_with_a_fresh_signature(
    stripe_emulator: StripeEmulator,
) -> None:
    receiver = Receiver(answers=[500, 302])
    try:
        sender = stripe_emulator.send_webhooks(receiver.url, SECRET, retry_delays=FAST)
        stripe_emulator.add_session("ada@example.com", line_items=VIP)
        first, second, third = receiver.wait_for(3)
        assert sender.wait_idle(2)
    finally:
        receiver.close()
    assert [a.status for a in sender.attempts] == [500, 302, 200]  # a redirect is not followed
    assert [a.number for a in sender.attempts] == [1, 2, 3]
    assert first.body == second.body == third.body
    for got in (first, second, third):
        assert stripe.WebhookSignature.verify_header(
            got.body, got.headers["stripe-signature"], SECRET, tolerance=300
        )
    assert second.at - first.at >= FAST[0] and third.at - second.at >= FAST[1]
    assert sender.given_up == []


def test_a_delivery_is_given_up_after_the_last_retry_and_newer_ones_still_go(
    stripe_emulator: StripeEmulator,
) -> None:
    """The receiver refuses Ada's purchase every time, and takes Grace's."""
    receiver = Receiver(answer=lambda body: 503 if b"ada@example.com" in body else 200)
    try:
        sender = stripe_emulator.send_webhooks(receiver.url, SECRET, retry_delays=(0.3, 0.3))
        stripe_emulator.add_session("ada@example.com", line_items=VIP)
        receiver.wait_for(1)
        stripe_emulator.add_session("grace@example.com", line_items=VIP)
        assert sender.wait_idle(3)
    finally:
        receiver.close()
    ada, grace = (e["id"] for e in reversed(stripe_emulator.events))
    assert [(a.event_ids[0], a.status) for a in sender.attempts] == [
        (ada, 503),
        (grace, 200),  # Ada's retry waits for its time; Grace's event goes out meanwhile
        (ada, 503),
        (ada, 503),  # no 2xx within the schedule: given up
    ]
    assert [d.event_ids for d in sender.given_up] == [(ada,)]


def test_no_answer_at_all_is_a_failed_attempt_too(stripe_emulator: StripeEmulator) -> None:
    closed = Receiver()
    url = closed.url
    closed.close()  # nothing listens there any more: connection refused
    sender = stripe_emulator.send_webhooks(url, SECRET, retry_delays=(0.01,))
    stripe_emulator.add_session("ada@example.com", line_items=VIP)
    assert sender.wait_idle(3)
    assert [a.status for a in sender.attempts] == [None, None]
    assert all("Connection" in (a.error or "") for a in sender.attempts)
    assert len(sender.given_up) == 1


def test_the_api_call_behind_an_event_never_waits_for_the_receiver() -> None:
    slow = Receiver(delay=1.0)
    try:
        with Sandbox() as sandbox:
            senders = sandbox.send_webhooks(slow.url)
            started = time.monotonic()
            answer = httpx.post(
                f"{sandbox.urls['mautic']}/api/contacts/new",
                json={"email": "ada@example.com"},
                auth=(sandbox.secrets["MAUTIC_USERNAME"], sandbox.secrets["MAUTIC_PASSWORD"]),
            )
            took = time.monotonic() - started
            assert answer.status_code == 201
            assert took < 0.5, took
            [got] = slow.wait_for(1)
            assert got.path == "/webhooks/mautic"
            assert senders["mautic"].wait_idle(3)
    finally:
        slow.close()


def test_duplicates_and_reordering_on_request(
    stripe_emulator: StripeEmulator, receiver: Receiver
) -> None:
    sender = stripe_emulator.send_webhooks(receiver.url, SECRET, reorder=1.0, duplicate=1.0)
    sender.pause()  # a backlog: three events waiting
    for name in ("ada", "grace", "alan"):
        stripe_emulator.add_session(f"{name}@example.com", line_items=VIP)
    sender.resume()
    got = receiver.wait_for(6)
    assert sender.wait_idle(2)
    ids = [json.loads(r.body)["id"] for r in got]
    in_order = [e["id"] for e in reversed(stripe_emulator.events)]
    assert ids[0] == in_order[-1]  # the newest went first
    assert sorted(ids) == sorted(in_order * 2)  # each delivered exactly twice


def test_signature_helpers_match_the_vendor_formulas() -> None:
    body = b'{"id": "evt_1"}'
    header = stripe_signature(SECRET, body, 1700000000)
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert (
        mautic_signature("s", body)
        == base64.b64encode(hmac.new(b"s", body, hashlib.sha256).digest()).decode()
    )
    assert php_json({"url": "https://x.io/a", "name": "Zoë"}) == (
        b'{"url":"https:\\/\\/x.io\\/a","name":"Zo\\u00eb"}'
    )


# -- Mautic -----------------------------------------------------------------------------------


def test_mautic_posts_contact_saves_in_its_shape_with_a_webhook_signature(
    mautic: MauticEmulator, receiver: Receiver
) -> None:
    secret = "mautic-webhook-secret"
    mautic.send_webhooks(
        f"{receiver.url}/webhooks/mautic", secret, origin="http://mautic.local", retry_delays=FAST
    )
    cid = mautic.add_contact("ada@example.com", firstname="Ada")
    mautic.set_fields(cid, discord_invite_link_basic="https://discord.gg/abc")
    mautic.set_fields(cid, discord_invite_link_basic="https://discord.gg/abc")  # no change
    new, update = receiver.wait_for(2)
    time.sleep(0.1)
    assert len(receiver.received) == 2  # a save that changed nothing sends nothing
    for got in (new, update):
        assert got.path == "/webhooks/mautic"
        assert got.headers["content-type"] == "application/json"
        assert got.headers["x-origin-base-url"] == "http://mautic.local"
        expected = base64.b64encode(hmac.new(secret.encode(), got.body, hashlib.sha256).digest())
        assert hmac.compare_digest(got.headers["webhook-signature"].encode(), expected)
    first = json.loads(new.body)
    assert list(first) == [MAUTIC_CONTACT_NEW]
    [entry] = first[MAUTIC_CONTACT_NEW]
    assert entry["contact"]["id"] == cid
    assert entry["contact"]["fields"]["core"]["email"]["value"] == "ada@example.com"
    assert entry["timestamp"].endswith("+00:00")
    second = json.loads(update.body)
    [entry] = second[MAUTIC_CONTACT_UPDATE]
    assert entry["contact"]["fields"]["all"]["discord_invite_link_basic"] == (
        "https://discord.gg/abc"
    )
    assert b"https:\\/\\/discord.gg\\/abc" in update.body  # PHP's json_encode, byte for byte


def test_an_anonymous_contact_sends_nothing_until_it_is_identified(
    mautic: MauticEmulator, receiver: Receiver
) -> None:
    mautic.send_webhooks(receiver.url, "s")
    cid = mautic.add_contact(None, firstname="Visitor")
    mautic.set_fields(cid, firstname="Still anonymous")
    mautic.set_fields(cid, email="ada@example.com")
    [got] = receiver.wait_for(1)
    assert list(json.loads(got.body)) == [MAUTIC_CONTACT_NEW]


def test_mautic_queue_mode_batches_several_events_into_one_post(
    mautic: MauticEmulator, receiver: Receiver
) -> None:
    sender = mautic.send_webhooks(receiver.url, "s", batch=10)
    sender.pause()
    ada = mautic.add_contact("ada@example.com")
    mautic.add_contact("grace@example.com")
    mautic.add_tag(ada, "vip")
    sender.resume()
    [got] = receiver.wait_for(1)
    body = json.loads(got.body)
    assert [len(body[MAUTIC_CONTACT_NEW]), len(body[MAUTIC_CONTACT_UPDATE])] == [2, 1]
    assert got.headers["webhook-signature"] == mautic_signature("s", got.body)
