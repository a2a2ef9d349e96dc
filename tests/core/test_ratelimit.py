"""Client-side buckets: wait before the vendor says no, and queue at a reset."""

from __future__ import annotations

import pytest

from syncctl.ratelimit import BucketLimiter


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
