"""Many workers' single requests, sent as one batch call.

The applier works person by person, in parallel: each person's chain reads
and writes its own Mautic contact. Mautic can read and edit up to 200
contacts in one call, so requests that arrive within a moment of each other
(people whose invites came back from the same Discord window, say) are
gathered and sent together. Each caller still gets its own result, or its
own error, as if it had called alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

A = TypeVar("A")
R = TypeVar("R")

#: How long the first request of a batch waits for others to join (seconds).
#: When Discord paces a run, people reach Mautic in bursts a few round trips
#: wide; 50 ms gathers a burst (a day of churn at 1k contacts: 79 calls with
#: 20 ms, 67 with 50 ms) and costs a person at most a few hundred ms.
LINGER = 0.05


class _Batch(Generic[A, R]):
    __slots__ = ("full", "items")

    def __init__(self) -> None:
        self.items: list[tuple[A, Future[R]]] = []
        self.full = threading.Event()


class Coalescer(Generic[A, R]):
    """Gathers concurrent `submit(arg)` calls into `call_many(args)` calls.

    `call_many` returns one result per argument, in order; a result that is
    an exception is raised to its caller only. An exception raised by
    `call_many` itself reaches every caller of that batch.
    """

    def __init__(
        self,
        call_many: Callable[[list[A]], Sequence[R | BaseException]],
        *,
        max_size: int,
        linger: float = LINGER,
    ) -> None:
        self._call_many = call_many
        self._max_size = max(1, max_size)
        self._linger = linger
        self._lock = threading.Lock()
        self._open: _Batch[A, R] | None = None
        #: Batch calls made and requests they carried (for tests and logs).
        self.calls = 0
        self.requests = 0

    def submit(self, arg: A) -> R:
        future: Future[R] = Future()
        with self._lock:
            batch = self._open
            leader = batch is None
            if batch is None:
                batch = self._open = _Batch()
            batch.items.append((arg, future))
            if len(batch.items) >= self._max_size:
                self._open = None
                batch.full.set()
        if leader:
            batch.full.wait(self._linger)
            with self._lock:
                if self._open is batch:
                    self._open = None
            self._run(batch)
        return future.result()

    def _run(self, batch: _Batch[A, R]) -> None:
        args = [arg for arg, _ in batch.items]
        with self._lock:
            self.calls += 1
            self.requests += len(args)
        try:
            results = self._call_many(args)
            if len(results) != len(args):
                raise RuntimeError(f"batch call answered {len(results)} of {len(args)} requests")
        except BaseException as exc:  # every caller learns what happened to its request
            for _, future in batch.items:
                future.set_exception(exc)
            return
        for (_, future), result in zip(batch.items, results, strict=True):
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
