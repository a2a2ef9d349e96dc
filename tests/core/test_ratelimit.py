"""Client-side buckets: wait before the vendor says no, and queue at a reset."""

from __future__ import annotations

import pytest

from syncctl.net.ratelimit import BucketLimiter


def headers(limit: int, remaining: int, reset_after: float) -> dict[str, str]:
    return {
        "x-ratelimit-limit": str(limit),
        "x-ratelimit-remaining": str(remaining),
        "x-ratelimit-reset-after": str(reset_after),
        "x-ratelimit-bucket": "b1",
    }


@pytest.fixture
def clock() -> list[float]:
    return [100.0]


@pytest.fixture
def limiter(clock: list[float]) -> BucketLimiter:
    return BucketLimiter(clock=lambda: clock[0])


def test_unknown_route_is_not_held_back(limiter) -> None:
    assert limiter.reserve("POST", "/x") == 0


def test_empty_bucket_makes_the_next_caller_wait_for_the_reset(limiter) -> None:
    limiter.update("POST", "/x", 200, headers(2, 1, 1.0))
    assert limiter.reserve("POST", "/x") == 0
    assert limiter.reserve("POST", "/x") == pytest.approx(1.0)


def test_callers_waiting_for_a_reset_share_the_new_window_not_all_go(limiter, clock) -> None:
    limiter.update("POST", "/x", 200, headers(2, 0, 1.0))
    clock[0] += 1.0
    assert limiter.reserve("POST", "/x") == 0
    assert limiter.reserve("POST", "/x") == 0
    assert limiter.reserve("POST", "/x") == pytest.approx(1.0)  # waits one more window


def test_late_answer_of_the_same_window_gives_back_no_slots(limiter) -> None:
    limiter.update("POST", "/x", 200, headers(3, 2, 1.0))
    limiter.reserve("POST", "/x")
    limiter.reserve("POST", "/x")  # both slots reserved by requests in flight
    limiter.update("POST", "/x", 200, headers(3, 2, 1.0))  # an older answer arrives
    assert limiter.reserve("POST", "/x") == pytest.approx(1.0)


def test_routes_sharing_a_bucket_share_its_counter(limiter) -> None:
    limiter.update("POST", "/a", 200, headers(1, 0, 2.0))
    limiter.update("POST", "/b", 200, headers(1, 0, 2.0))
    assert limiter.reserve("POST", "/a") == pytest.approx(2.0)


def test_global_429_holds_every_route(limiter) -> None:
    limiter.update("GET", "/x", 429, {"x-ratelimit-global": "true", "retry-after": "3"})
    assert limiter.reserve("DELETE", "/other") == pytest.approx(3.0)


@pytest.fixture
def prober(clock: list[float]) -> BucketLimiter:
    return BucketLimiter(probe=True, clock=lambda: clock[0])


def test_probing_limiter_sends_one_request_first_into_an_unknown_bucket(prober) -> None:
    assert prober.reserve("POST", "/x") == 0
    assert prober.reserve("POST", "/x") == pytest.approx(BucketLimiter.PROBE_POLL)


def test_probing_limiter_lets_others_go_once_the_first_answer_tells_the_bucket(prober) -> None:
    prober.reserve("POST", "/x")
    prober.update("POST", "/x", 200, headers(5, 4, 5.0))
    assert [prober.reserve("POST", "/x") for _ in range(4)] == [0, 0, 0, 0]
    assert prober.reserve("POST", "/x") == pytest.approx(5.0)


def test_probing_limiter_stops_probing_a_route_answered_without_headers(prober) -> None:
    prober.reserve("GET", "/y")
    prober.update("GET", "/y", 200, {})
    assert [prober.reserve("GET", "/y") for _ in range(3)] == [0, 0, 0]


def test_probe_without_an_answer_lets_the_next_request_probe(prober) -> None:
    prober.reserve("POST", "/x")
    prober.unanswered("POST", "/x")
    assert prober.reserve("POST", "/x") == 0
    assert prober.reserve("POST", "/x") == pytest.approx(BucketLimiter.PROBE_POLL)


def test_probing_one_route_does_not_hold_back_another(prober) -> None:
    prober.reserve("POST", "/x")
    assert prober.reserve("POST", "/z") == 0


def test_a_caller_held_back_by_a_global_429_probes_when_it_wakes(prober, clock) -> None:
    prober.update("POST", "/y", 429, {"x-ratelimit-global": "true", "retry-after": "2"})
    assert prober.reserve("POST", "/x") == pytest.approx(2.0)
    clock[0] += 2.0
    assert prober.reserve("POST", "/x") == 0  # it goes now, as the probe
    assert prober.reserve("POST", "/x") == pytest.approx(BucketLimiter.PROBE_POLL)


def test_an_error_answer_without_headers_does_not_mark_a_route_unlimited(prober) -> None:
    prober.reserve("POST", "/x")
    prober.update("POST", "/x", 502, {})
    assert prober.reserve("POST", "/x") == 0
    assert prober.reserve("POST", "/x") == pytest.approx(BucketLimiter.PROBE_POLL)
