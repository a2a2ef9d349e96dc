"""Client-side rate-limit buckets learnt from response headers.

Discord (and Mautic with its rate limiter on) announce their limits in
`X-RateLimit-*` headers. Waiting *before* a bucket is empty costs a sleep;
hitting it costs a 429, and Discord bans IPs that collect too many. So every
response updates a bucket and every request reserves a slot in it first.

Before the first answer nothing is known of a bucket: with `probe=True`
one request goes first and the others of its route wait for its headers
(as discord.py does), instead of a burst of `concurrency` requests into a
bucket that may hold fewer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass
class _Bucket:
    limit: int | None
    remaining: int
    reset_at: float  # monotonic seconds
    window: float = 0.0  # longest reset-after seen: how long a window lasts


class BucketLimiter:
    """Tracks `X-RateLimit-*` buckets; thread-safe.

    `route_key` maps (method, path) to the key a vendor rate-limits on (for
    Discord: the route with its major parameter). Responses tell which shared
    bucket (`X-RateLimit-Bucket`) a route belongs to.
    """

    #: How often a caller held back by a probe looks again (seconds).
    PROBE_POLL = 0.01

    def __init__(
        self,
        route_key: Callable[[str, str], str] | None = None,
        *,
        probe: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._route_key = route_key or (lambda method, path: f"{method} {path}")
        self._clock = clock
        self._lock = threading.Lock()
        self._route_to_bucket: dict[str, str] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._global_until = 0.0
        self._probe = probe
        self._probing: set[str] = set()  # routes whose first request is out
        self._unlimited: set[str] = set()  # routes answered without bucket headers

    def _bucket_id(self, route: str) -> str:
        return self._route_to_bucket.get(route, route)

    def reserve(self, method: str, path: str) -> float:
        """Reserve a slot for a request; return how long to wait first (seconds)."""
        route = self._route_key(method, path)
        with self._lock:
            now = self._clock()
            wait = max(0.0, self._global_until - now)
            bucket = self._buckets.get(self._bucket_id(route))
            if bucket is None:
                if not self._probe or route in self._unlimited:
                    return wait
                if route in self._probing:
                    return max(wait, self.PROBE_POLL)
                if wait <= 0:  # only a request that goes now probes
                    self._probing.add(route)
                return wait
            if now >= bucket.reset_at:
                if bucket.limit is None or bucket.window <= 0:
                    # Nothing known of the next window: no constraint until a
                    # response tells the new state of the bucket.
                    del self._buckets[self._bucket_id(route)]
                    return wait
                # Assume a fresh window of the same size, so that callers that
                # waited for this reset do not all go at once.
                bucket.remaining = bucket.limit
                bucket.reset_at = now + bucket.window
            if bucket.remaining > 0:
                bucket.remaining -= 1
                return wait
            return max(wait, bucket.reset_at - now)

    def update(self, method: str, path: str, status: int, headers: Mapping[str, str]) -> None:
        """Learn from a response's headers (any status)."""
        route = self._route_key(method, path)
        remaining = _number(headers.get("x-ratelimit-remaining"))
        reset_after = _number(headers.get("x-ratelimit-reset-after"))
        if reset_after is None:
            reset_at_epoch = _number(headers.get("x-ratelimit-reset"))
            if reset_at_epoch is not None:
                # Mautic sends an epoch, Discord an epoch with decimals.
                reset_after = max(0.0, reset_at_epoch - time.time())
        limit = _number(headers.get("x-ratelimit-limit"))
        bucket_name = headers.get("x-ratelimit-bucket")
        with self._lock:
            self._probing.discard(route)
            now = self._clock()
            if status == 429 and headers.get("x-ratelimit-global", "").lower() == "true":
                retry_after = _number(headers.get("retry-after")) or 1.0
                self._global_until = max(self._global_until, now + retry_after)
            if bucket_name:
                self._route_to_bucket[route] = bucket_name
            if remaining is None or reset_after is None:
                # A success without bucket headers: the route is not limited.
                # (A 429 or a proxy's 502 says nothing about that.)
                if (
                    self._probe
                    and 200 <= status < 300
                    and self._bucket_id(route) not in self._buckets
                ):
                    self._unlimited.add(route)
                return
            key = self._bucket_id(route)
            reset_at = now + reset_after
            known = self._buckets.get(key)
            if known is not None and abs(known.reset_at - reset_at) < 0.5:
                # Same window: answers to earlier requests may arrive late;
                # never give back slots that were reserved meanwhile.
                remaining = min(remaining, known.remaining)
            self._buckets[key] = _Bucket(
                limit=int(limit) if limit is not None else None,
                remaining=int(remaining),
                reset_at=reset_at,
                window=max(reset_after, known.window if known else 0.0),
            )

    def unanswered(self, method: str, path: str) -> None:
        """A request got no answer: the next one of its route may probe."""
        route = self._route_key(method, path)
        with self._lock:
            self._probing.discard(route)


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
