"""Server-side call counts: what each emulator received, by route shape and status.

The emulators keep every exchange (with its response body) for the tests to
inspect; at 100k contacts that is hundreds of megabytes in the benchmark
process. `count_traffic` swaps each emulator's log for a counter that keeps
only (method, route shape, answered 429?) counts. These counts are the
ground truth the floor is computed from, and a cross-check of the
reconciler's own counters.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from syncctl.sandbox.server import Exchange, Request
from syncctl.sandbox.stack import Sandbox

_ID = re.compile(r"^(?:\d+|[0-9a-f]{32}|cs_\w+|evt_\w+|[A-Za-z0-9]{10})$")
_DISCORD_CHANNEL = re.compile(r"^/api/v10/channels/\d+/invites$")


def route_shape(service: str, method: str, path: str) -> str:
    """`GET /api/contacts/17` -> `GET /api/contacts/{id}`; Discord channel ids are kept
    (each channel has its own invite bucket)."""
    if service == "discord" and _DISCORD_CHANNEL.match(path):
        return f"{method} {path}"
    parts = ["{id}" if _ID.match(part) and part != "contacts" else part for part in path.split("/")]
    return f"{method} {'/'.join(parts)}"


def is_lookup(entry: Exchange) -> bool:
    """A one-item search on a list route (by email, code, contact), not a page of a scan."""
    cols = {v for k, v in entry.query if k.endswith("[col]")}
    if entry.path in ("/api/contacts", "/api/stats/email_stats"):  # Mautic
        return bool(cols & {"email", "lead_id"}) or ("limit", "1") in entry.query
    if entry.path == "/api/v1/Lead":  # Espo: a page has no `where`
        return any(k.startswith("where[") for k, _ in entry.query)
    if entry.path.startswith("/api/search/"):  # Shopware: a code lookup filters on `code`
        body = entry.body if isinstance(entry.body, dict) else {}
        return any(f.get("field") == "code" for f in body.get("filter", []) if isinstance(f, dict))
    return False


class CountingLog(list[Exchange]):
    """Stands in for an emulator's `log`: counts exchanges, keeps none."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        self.counts: Counter[tuple[str, int]] = Counter()  # (route, status) -> n
        self.spans: dict[str, list[float]] = {}  # route -> [first, last] answer time
        self.slowest: dict[str, float] = {}  # route -> longest handling time, seconds
        self._lock = threading.Lock()

    def append(self, entry: Exchange) -> None:
        shape = route_shape(self.service, entry.method, entry.path)
        if is_lookup(entry):
            shape += " [lookup]"
        with self._lock:
            self.counts[(shape, entry.status)] += 1
            span = self.spans.setdefault(shape, [entry.at, entry.at])
            span[1] = entry.at

    def handled(self, method: str, path: str, seconds: float) -> None:
        shape = route_shape(self.service, method, path)
        with self._lock:
            if seconds > self.slowest.get(shape, 0.0):
                self.slowest[shape] = seconds

    def take(
        self,
    ) -> tuple[Counter[tuple[str, int]], dict[str, list[float]], dict[str, float]]:
        with self._lock:
            counts, self.counts = self.counts, Counter()
            spans, self.spans = self.spans, {}
            slowest, self.slowest = self.slowest, {}
        return counts, spans, slowest


def count_traffic(sandbox: Sandbox) -> dict[str, CountingLog]:
    """Swap each emulator's log for a counter; also time how long each request is handled."""
    logs = {}
    for name, emulator in sandbox.emulators.items():
        log = CountingLog(name)
        emulator.log = log
        emulator.handle = _timed(emulator.handle, log)  # type: ignore[method-assign,assignment]
        logs[name] = log
    return logs


def _timed(handle: Callable[[Request], Any], log: CountingLog) -> Callable[[Request], Any]:
    def timed(request: Request) -> Any:
        started = time.monotonic()
        try:
            return handle(request)
        finally:
            log.handled(request.method, request.path, time.monotonic() - started)

    return timed


def snapshot(
    logs: dict[str, CountingLog], sandbox: Sandbox, since: float | None = None
) -> dict[str, Any]:
    """Counts since the last snapshot, per service: routes, totals, 429s.

    With `since` (a time.time() stamp: the run's start), `spans` gives each
    route's first and last answer in seconds after it.
    """
    # Espo keeps a header log for its tests: drop it, it only grows.
    header_log = getattr(sandbox.espocrm, "header_log", None)
    if isinstance(header_log, list):
        header_log.clear()
    result: dict[str, Any] = {}
    for name, log in logs.items():
        counts, spans, slowest = log.take()
        routes: Counter[str] = Counter()
        throttled = 0
        for (shape, status), n in counts.items():
            if status == 429:
                throttled += n
            else:
                routes[shape] += n
        result[name] = {
            "requests": sum(counts.values()),
            "throttled": throttled,
            "routes": dict(sorted(routes.items())),
            "slowest": {k: round(v, 3) for k, v in sorted(slowest.items())},
        }
        if since is not None:
            result[name]["spans"] = {
                route: [round(first - since, 2), round(last - since, 2)]
                for route, (first, last) in sorted(spans.items())
            }
    return result
