"""Webhook deliveries from the emulators, sent the way Stripe and Mautic send them.

A `WebhookSender` posts what an emulator hands it to one URL from a
background thread, so the API request that caused an event never waits for
the receiver. What the two vendors do, and so what the senders do:

- **Stripe** posts one Event per request (the object its Events API serves),
  pretty-printed JSON, with `Stripe-Signature: t=<unix>,v1=<hex>`: an
  HMAC-SHA256 of `"<t>.<raw body>"` keyed with the endpoint's `whsec_...`
  secret, signed afresh (new `t`) at every attempt. Any answer but a 2xx,
  a timeout or a refused connection is retried with exponential backoff, in
  live mode for up to three days; events are not ordered, and one may be
  delivered more than once (stripe.com/docs/webhooks: "Retry behavior",
  "Event ordering", "Handle duplicate events"). Here the backoff schedule
  is short and configurable (`retry_delays`), and `duplicate` / `reorder`
  make the redeliveries and the disorder happen on purpose.
- **Mautic** posts `{"<event type>": [{"contact": {...}, "timestamp": "..."}]}`
  (one entry per event; its queue mode batches several events, of several
  types, into one POST: `batch`), PHP's `json_encode` of it (slashes
  escaped as `\\/`, non-ASCII as `\\uXXXX`), with `Webhook-Signature:
  base64(HMAC-SHA256(secret, raw body))`, `Content-Type: application/json`
  and `X-Origin-Base-URL` (mautic/mautic `WebhookBundle/Http/Client.php`,
  `WebhookModel::getWebhookPayload`; the event types and the `contact` key
  from `LeadBundle/EventListener/WebhookSubscriber.php`; the shapes in
  mautic/developer-documentation-new `docs/webhooks/`). A failed POST is
  sent again later, on the same schedule.

Retries never hold up the deliveries behind them (a retry waits for its own
time while newer events go out); the first attempts go out in the order the
events happened unless `reorder` says otherwise. Test switches: `pause()`
and `resume()` let a backlog build up; `duplicate` (0..1) redelivers a
delivered event once more with that probability; `reorder` (0..1) sends,
with that probability, the newest waiting delivery instead of the oldest;
`seed` makes both repeatable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import random
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

#: Short stand-in for Stripe's three days of exponential backoff: seconds
#: before the 2nd, 3rd, ... attempt; after the last one the delivery is given up.
DEFAULT_RETRY_DELAYS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
DEFAULT_TIMEOUT = 10.0
STRIPE_USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
MAUTIC_USER_AGENT = "GuzzleHttp/7"
#: The contact events syncctl's watch listens for (Mautic: "Contact identified",
#: "Contact updated").
MAUTIC_CONTACT_NEW = "mautic.lead_post_save_new"
MAUTIC_CONTACT_UPDATE = "mautic.lead_post_save_update"


def stripe_signature(secret: str, body: bytes, timestamp: int) -> str:
    """The `Stripe-Signature` value Stripe sends for `body` at `timestamp`."""
    signed = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def mautic_signature(secret: str, body: bytes) -> str:
    """The `Webhook-Signature` value Mautic sends: base64 of the raw HMAC-SHA256."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def php_json(value: Any) -> bytes:
    """`json_encode($value)` with PHP's default flags: `/` as `\\/`, non-ASCII as `\\uXXXX`."""
    # A "/" only ever occurs inside a JSON string, where "\/" means the same.
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).replace("/", "\\/").encode()


@dataclass(frozen=True)
class Event:
    """One event as the vendor queued it: its id, type and the object sent."""

    id: str
    type: str
    payload: Any


@dataclass
class Delivery:
    """One POST's worth of events (one for Stripe; up to `batch` for Mautic)."""

    id: int
    events: list[Event]
    attempts: int = 0
    due: float = 0.0
    #: The delivery this one repeats (a deliberate duplicate), if any.
    repeats: int | None = None

    @property
    def event_ids(self) -> tuple[str, ...]:
        return tuple(e.id for e in self.events)


@dataclass(frozen=True)
class Attempt:
    """One POST and how the receiver answered it (for tests and the sandbox log)."""

    delivery: int
    event_ids: tuple[str, ...]
    types: tuple[str, ...]
    number: int  # 1: the first try
    url: str
    body: bytes
    headers: dict[str, str]
    status: int | None  # None: no answer (refused, reset, timeout)
    error: str | None
    at: float  # wall clock when sent
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


Render = Callable[[Sequence[Event]], bytes]
Sign = Callable[[bytes], dict[str, str]]


class WebhookSender:
    """Posts deliveries to `url` from one background thread, with retries.

    `render` turns a delivery's events into the raw body; `sign` gives the
    headers for a body (called at every attempt, so timestamps are fresh).
    `send` only queues: it never touches the network.
    """

    def __init__(
        self,
        url: str,
        *,
        render: Render,
        sign: Sign,
        name: str = "webhooks",
        events: Collection[str] | None = None,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        timeout: float = DEFAULT_TIMEOUT,
        batch: int = 1,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        seed: int | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook URL must be http(s)://host[:port]/path, not {url!r}")
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.url = url
        self.name = name
        self.events = frozenset(events) if events is not None else None
        self.retry_delays = tuple(float(d) for d in retry_delays)
        self.timeout = timeout
        self.batch = batch
        self.duplicate = duplicate
        self.reorder = reorder
        self._render = render
        self._sign = sign
        self._random = random.Random(seed)
        self._cond = threading.Condition()
        self._queue: list[Delivery] = []
        self._inflight: Delivery | None = None
        self._next_id = 1
        self._paused = False
        self._closed = False
        #: Every POST made, in order.
        self.attempts: list[Attempt] = []
        #: Deliveries whose every attempt failed.
        self.given_up: list[Delivery] = []
        self._thread = threading.Thread(target=self._run, name=f"sandbox-{name}", daemon=True)
        self._thread.start()

    # -- what emulators call --------------------------------------------------------------

    def wants(self, event_type: str) -> bool:
        """Whether the endpoint subscribed to this event type (None: all)."""
        return self.events is None or event_type in self.events

    def send(self, event_id: str, event_type: str, payload: Any) -> None:
        """Queue one event for delivery; returns at once."""
        if not self.wants(event_type):
            return
        with self._cond:
            if self._closed:
                return
            self._push(Delivery(self._take_id(), [Event(event_id, event_type, payload)]))

    # -- test switches and inspection -------------------------------------------------------

    def pause(self) -> None:
        """Hold every delivery (a backlog builds up) until `resume`."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def pending(self) -> int:
        """Deliveries queued or being posted (retries waiting for their time included)."""
        with self._cond:
            return len(self._queue) + (1 if self._inflight is not None else 0)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until nothing is queued or in flight; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._inflight is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def delivered(self) -> list[Attempt]:
        """The attempts the receiver answered with a 2xx, in order."""
        with self._cond:
            return [a for a in self.attempts if a.ok]

    def close(self, timeout: float = 5.0) -> None:
        """Stop sending; what is still queued is dropped (the attempt in flight ends)."""
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # -- the sender thread --------------------------------------------------------------------

    def _take_id(self) -> int:
        number = self._next_id
        self._next_id += 1
        return number

    def _push(self, delivery: Delivery) -> None:
        self._queue.append(delivery)
        self._cond.notify_all()

    def _due(self, now: float) -> list[Delivery]:
        return [d for d in self._queue if d.due <= now]

    def _next_wait(self, now: float) -> float | None:
        if self._paused or not self._queue:
            return None
        return max(0.0, min(d.due for d in self._queue) - now)

    def _pick(self) -> Delivery | None:
        """Wait for a due delivery and take it off the queue (None: closed)."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                now = time.monotonic()
                due = [] if self._paused else self._due(now)
                if due:
                    break
                self._cond.wait(self._next_wait(now))
            key = lambda d: (d.due, d.id)  # noqa: E731
            newest = self.reorder and len(due) > 1 and self._random.random() < self.reorder
            chosen = max(due, key=key) if newest else min(due, key=key)
            self._queue.remove(chosen)
            if self.batch > 1 and chosen.attempts == 0:
                for other in sorted(due, key=key):
                    if len(chosen.events) >= self.batch:
                        break
                    if other is not chosen and other.attempts == 0 and other.repeats is None:
                        self._queue.remove(other)
                        chosen.events.extend(other.events)
            self._inflight = chosen
            return chosen

    def _run(self) -> None:
        while True:
            delivery = self._pick()
            if delivery is None:
                return
            body = self._render(delivery.events)
            headers = self._sign(body)
            started, at = time.monotonic(), time.time()
            status, error = _post(self.url, body, headers, self.timeout)
            attempt = Attempt(
                delivery=delivery.id,
                event_ids=delivery.event_ids,
                types=tuple(e.type for e in delivery.events),
                number=delivery.attempts + 1,
                url=self.url,
                body=body,
                headers=headers,
                status=status,
                error=error,
                at=at,
                seconds=time.monotonic() - started,
            )
            self._settle(delivery, attempt)

    def _settle(self, delivery: Delivery, attempt: Attempt) -> None:
        with self._cond:
            self.attempts.append(attempt)
            delivery.attempts += 1
            self._inflight = None
            if self._closed:
                self._cond.notify_all()
                return
            now = time.monotonic()
            if attempt.ok:
                if (
                    self.duplicate
                    and delivery.repeats is None
                    and self._random.random() < self.duplicate
                ):
                    again = Delivery(
                        self._take_id(), list(delivery.events), due=now, repeats=delivery.id
                    )
                    self._queue.append(again)
            elif delivery.attempts <= len(self.retry_delays):
                delivery.due = now + self.retry_delays[delivery.attempts - 1]
                self._queue.append(delivery)
            else:
                self.given_up.append(delivery)
            self._cond.notify_all()


def _post(
    url: str, body: bytes, headers: dict[str, str], timeout: float
) -> tuple[int | None, str | None]:
    """POST without following redirects (a 3xx is a failed delivery, as at Stripe)."""
    parts = urlsplit(url)
    connection_type = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_type(parts.hostname or "", parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, None
    except (OSError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()


# -- the two vendors' ways ------------------------------------------------------------------


def stripe_sender(
    url: str,
    secret: str,
    *,
    events: Collection[str] | None = None,
    clock: Callable[[], float] = time.time,
    **options: Any,
) -> WebhookSender:
    """A sender that posts Stripe Events as Stripe does (one per POST, signed)."""

    def render(events_: Sequence[Event]) -> bytes:
        (event,) = events_
        return json.dumps(event.payload, indent=2, ensure_ascii=False).encode()

    def sign(body: bytes) -> dict[str, str]:
        return {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": STRIPE_USER_AGENT,
            "Cache-Control": "no-cache",
            "Stripe-Signature": stripe_signature(secret, body, int(clock())),
        }

    options.pop("batch", None)  # Stripe sends one event per request
    return WebhookSender(
        url, render=render, sign=sign, name="stripe-webhooks", events=events, **options
    )


def mautic_sender(
    url: str,
    secret: str,
    *,
    origin: str = "",
    events: Collection[str] | None = (MAUTIC_CONTACT_NEW, MAUTIC_CONTACT_UPDATE),
    **options: Any,
) -> WebhookSender:
    """A sender that posts Mautic webhook payloads (grouped by type, signed)."""

    def render(events_: Sequence[Event]) -> bytes:
        grouped: dict[str, list[Any]] = {}
        for event in events_:
            grouped.setdefault(event.type, []).append(event.payload)
        return php_json(grouped)

    def sign(body: bytes) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "User-Agent": MAUTIC_USER_AGENT,
            "X-Origin-Base-URL": origin,
            "Webhook-Signature": mautic_signature(secret, body),
        }

    return WebhookSender(
        url, render=render, sign=sign, name="mautic-webhooks", events=events, **options
    )
