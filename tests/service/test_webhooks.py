"""Webhooks wake the loop, never feed it: only a genuine delivery starts a cycle."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest

from syncctl.service.http import MAX_BODY

from .conftest import (
    MAUTIC_SECRET,
    STRIPE_SECRET,
    completed_event,
    coupon_sends,
    mautic_headers,
    stripe_headers,
    vip_purchase,
)

#: Long enough that no cycle in these tests comes from the interval.
QUIET = 0.6


def test_a_signed_stripe_delivery_mails_the_coupon_within_a_second_exactly_once(
    watching, sandbox
) -> None:
    service, cycles = watching()
    session = vip_purchase(sandbox, "fresh.buyer@example.com")
    sent = time.monotonic()
    body = completed_event(session)
    answer = httpx.post(
        f"{service.url}/webhooks/stripe", content=body, headers=stripe_headers(body)
    )
    assert answer.status_code == 200
    assert time.monotonic() - sent < 0.5  # answered at once, not after the cycle
    deadline = sent + 1.5
    while coupon_sends(sandbox, "fresh.buyer@example.com") == 0:
        assert time.monotonic() < deadline, "no coupon email within 1.5 s"
        time.sleep(0.02)
    service.wakeup.set("test")  # one more cycle: nothing is sent twice
    cycles.wait_for(len(cycles) + 1)
    assert coupon_sends(sandbox, "fresh.buyer@example.com") == 1


def test_a_signed_mautic_delivery_wakes_a_cycle(watching) -> None:
    service, cycles = watching()
    before = len(cycles)
    body = b'{"mautic.lead_post_save_update": [{"contact": {"id": 1}}]}'
    answer = httpx.post(
        f"{service.url}/webhooks/mautic", content=body, headers=mautic_headers(body)
    )
    assert answer.status_code == 200
    cycles.wait_for(before + 1, timeout=2)


def _forged(body: str) -> tuple[bytes, dict]:
    headers = stripe_headers(body)
    stamp = headers["Stripe-Signature"].split(",")[0]
    return body.encode(), {"Stripe-Signature": f"{stamp},v1={'0' * 64}"}


def _replayed(body: str) -> tuple[bytes, dict]:  # genuine, but 10 minutes old
    return body.encode(), stripe_headers(body, at=int(time.time()) - 600)


def _wrong_secret(body: str) -> tuple[bytes, dict]:
    return body.encode(), stripe_headers(body, secret="whsec_not_the_one_configured")


def _altered(body: str) -> tuple[bytes, dict]:  # signed, then the body changed
    return body.replace("evt_1", "evt_2").encode(), stripe_headers(body)


def _unsigned(body: str) -> tuple[bytes, dict]:
    return body.encode(), {"Content-Type": "application/json"}


def _oversized(body: str) -> tuple[bytes, dict]:
    big = body + " " * MAX_BODY
    return big.encode(), stripe_headers(big)


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (_forged, 400),
        (_replayed, 400),
        (_wrong_secret, 400),
        (_altered, 400),
        (_unsigned, 400),
        (_oversized, 413),
    ],
    ids=["forged", "replayed", "wrong-secret", "altered", "unsigned", "oversized"],
)
def test_a_bad_stripe_delivery_is_refused_and_triggers_nothing(quiet, make, status) -> None:
    before = len(quiet.cycles)
    body, headers = make(completed_event())
    answer = httpx.post(f"{quiet.service.url}/webhooks/stripe", content=body, headers=headers)
    assert answer.status_code == status
    time.sleep(QUIET)
    assert len(quiet.cycles) == before
    assert quiet.sandbox.call_count() == 0


@pytest.mark.parametrize("signature", ["", "bm90IHRoZSBzaWduYXR1cmU=", "not base64 at all"])
def test_a_bad_mautic_delivery_is_refused_and_triggers_nothing(quiet, signature) -> None:
    before = len(quiet.cycles)
    headers = {"Webhook-Signature": signature} if signature else {}
    wrong = mautic_headers(b"{}", secret="another-" + MAUTIC_SECRET)
    for sent in (headers, wrong):
        answer = httpx.post(f"{quiet.service.url}/webhooks/mautic", content=b"{}", headers=sent)
        assert answer.status_code == 400
    time.sleep(QUIET)
    assert len(quiet.cycles) == before and quiet.sandbox.call_count() == 0


def test_a_replay_of_an_accepted_delivery_is_answered_but_wakes_nothing(watching) -> None:
    service, cycles = watching()
    body = completed_event()
    headers = stripe_headers(body)
    first = httpx.post(f"{service.url}/webhooks/stripe", content=body, headers=headers)
    assert first.status_code == 200
    cycles.wait_for(3)
    time.sleep(0.4)  # past the gap: a wake-up now would start a cycle at once
    before = len(cycles)
    again = httpx.post(f"{service.url}/webhooks/stripe", content=body, headers=headers)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    time.sleep(QUIET)
    assert len(cycles) == before


def test_a_burst_of_fifty_deliveries_makes_at_most_two_cycles(watching) -> None:
    service, cycles = watching()
    before = len(cycles)
    started = time.monotonic()
    with httpx.Client() as client:
        for i in range(50):
            body = completed_event(f"cs_test_burst{i}")
            answer = client.post(
                f"{service.url}/webhooks/stripe", content=body, headers=stripe_headers(body)
            )
            assert answer.status_code == 200
    assert time.monotonic() - started < 1.0, "the burst itself took too long to mean anything"
    cycles.wait_for(before + 1)
    time.sleep(QUIET)
    assert 1 <= len(cycles) - before <= 2


def test_a_thousand_unsigned_requests_in_a_second_cause_no_vendor_call(quiet) -> None:
    before = len(quiet.cycles)
    url = f"{quiet.service.url}/webhooks/stripe"
    body = completed_event()

    def flood(n: int) -> list[int]:
        with httpx.Client() as client:
            return [client.post(url, content=body).status_code for _ in range(n)]

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        statuses = [s for batch in pool.map(flood, [250] * 4) for s in batch]
    took = time.monotonic() - started
    assert len(statuses) == 1000 and set(statuses) == {400}
    assert took < 5, took  # about 1.5 s here, the client's share of it most
    time.sleep(QUIET)
    assert len(quiet.cycles) == before
    assert quiet.sandbox.call_count() == 0


def test_unknown_paths_wrong_methods_and_unsized_bodies_are_refused(quiet) -> None:
    url = quiet.service.url
    assert httpx.get(f"{url}/webhooks/stripe").status_code == 405
    assert httpx.get(f"{url}/webhooks/stripe").headers["allow"] == "POST"
    assert httpx.post(f"{url}/healthz", content=b"").status_code == 405
    assert httpx.get(f"{url}/nothing-here").status_code == 404
    assert httpx.post(f"{url}/webhooks/other", content=b"{}").status_code == 404
    chunked = httpx.post(f"{url}/webhooks/stripe", content=iter([b"{}"]))
    assert chunked.status_code == 411
    assert quiet.sandbox.call_count() == 0


def test_a_path_whose_secret_is_unset_answers_404(campaign, sandbox) -> None:
    import dataclasses

    from syncctl.config import Secrets
    from syncctl.service.watch import WatchService

    values = {k: v for k, v in campaign.secrets.values.items() if k != "STRIPE_WEBHOOK_SECRET"}
    config = dataclasses.replace(campaign, secrets=Secrets(values))
    service = WatchService(config, listen="127.0.0.1:0").start()
    try:
        body = completed_event()
        stripe = httpx.post(
            f"{service.url}/webhooks/stripe", content=body, headers=stripe_headers(body)
        )
        assert stripe.status_code == 404
        mautic = httpx.post(
            f"{service.url}/webhooks/mautic", content=b"{}", headers=mautic_headers(b"{}")
        )
        assert mautic.status_code == 200
    finally:
        service.request_stop("test over")
        service.finish()


def test_the_stripe_check_is_the_sdks() -> None:
    """A header made by the SDK's own signer passes the check: the schemes agree."""
    import stripe

    from syncctl.service.http import stripe_check

    body = completed_event()
    header = stripe.WebhookSignature.generate_signature_header(body, STRIPE_SECRET)
    check = stripe_check(STRIPE_SECRET)
    assert check(body.encode(), {"stripe-signature": header}) is None
    other = stripe_headers(body, secret="whsec_other")["Stripe-Signature"]
    assert check(body.encode(), {"stripe-signature": other}) == "bad_signature"
