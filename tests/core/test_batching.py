"""Coalescer: concurrent single requests become one batch call, results kept apart."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from syncctl.net.batching import Coalescer


def _recording(
    seen: list[list[int]], answer: Callable[[list[int]], list[int]] = list
) -> Callable[[list[int]], list[int]]:
    """A batch call that records the batches it got."""

    def call(args: list[int]) -> list[int]:
        seen.append(list(args))
        return answer(args)

    return call


def _together(coalescer: Coalescer[int, int], args: list[int]) -> list[int | BaseException]:
    """Submit every arg from its own thread, all released at once."""
    start = threading.Barrier(len(args))

    def one(arg: int) -> int | BaseException:
        start.wait()
        try:
            return coalescer.submit(arg)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(args)) as pool:
        return list(pool.map(one, args))


def test_concurrent_requests_share_one_call() -> None:
    seen: list[list[int]] = []
    coalescer: Coalescer[int, int] = Coalescer(
        _recording(seen, lambda args: [a * 10 for a in args]), max_size=50
    )
    assert _together(coalescer, [1, 2, 3, 4]) == [10, 20, 30, 40]
    assert coalescer.calls == 1 and sorted(seen[0]) == [1, 2, 3, 4]


def test_a_batch_never_exceeds_its_maximum_size() -> None:
    seen: list[list[int]] = []
    coalescer: Coalescer[int, int] = Coalescer(_recording(seen), max_size=3)
    assert sorted(_together(coalescer, list(range(7)))) == list(range(7))  # type: ignore[type-var]
    assert max(map(len, seen)) <= 3 and sum(map(len, seen)) == 7


def test_a_lone_request_is_sent_after_the_linger_without_waiting_for_company() -> None:
    coalescer: Coalescer[int, int] = Coalescer(
        lambda args: [a + 1 for a in args], max_size=10, linger=0.01
    )
    assert coalescer.submit(1) == 2
    assert coalescer.calls == 1


def test_an_error_for_one_item_reaches_only_its_caller() -> None:
    def call(args: list[int]) -> list[int | BaseException]:
        return [ValueError(f"bad {a}") if a == 2 else a for a in args]

    results = _together(Coalescer[int, int](call, max_size=10), [1, 2, 3])
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad 2"


def test_a_failed_batch_call_reaches_every_caller_of_the_batch() -> None:
    def call(args: list[int]) -> list[int]:
        raise ConnectionError("down")

    results = _together(Coalescer[int, int](call, max_size=10), [1, 2])
    assert all(isinstance(r, ConnectionError) for r in results)


def test_a_call_answering_too_few_results_fails_loudly() -> None:
    coalescer: Coalescer[int, int] = Coalescer(lambda args: [], max_size=10, linger=0)
    with pytest.raises(RuntimeError, match="answered 0 of 1"):
        coalescer.submit(1)


def test_requests_after_a_batch_left_go_into_the_next_one() -> None:
    calls: list[list[int]] = []
    coalescer: Coalescer[int, int] = Coalescer(_recording(calls), max_size=10, linger=0)
    assert coalescer.submit(1) == 1
    assert coalescer.submit(2) == 2
    assert calls == [[1], [2]]
