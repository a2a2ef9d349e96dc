"""The HTTP side of `syncctl watch`: signed webhooks as wake-ups, /healthz, /metrics.

The standard library's threading server, as the sandbox uses: four paths,
small bodies, no framework needed. Every request is answered at once; a
webhook never waits for a cycle.

Webhooks wake, never feed. A delivery whose signature checks out answers
200 and raises the loop's `Wakeup`; its body is not parsed, let alone
trusted: the cycle reads Stripe and Mautic as every cycle does. So a
forged, replayed, duplicated, reordered or lost delivery can at worst cost
one cycle, never cause an action. What is refused, and wakes nothing:

- a path whose secret is unset, and any unknown path: 404;
- a wrong method: 405 (with `Allow`);
- no `Content-Length` (chunked bodies): 411; over `MAX_BODY` (1 MiB): 413,
  refused from the header, before a byte of the body is read;
- no signature header: 400; a signature that does not match (forged, wrong
  secret, body altered): 400; a Stripe signature older than the SDK's
  tolerance (300 s, a replay): 400. A body that is not UTF-8 (Stripe signs
  text): 400.

Stripe: `Stripe-Signature` checked by the official SDK's
`stripe.WebhookSignature.verify_header` (what `stripe.Webhook.construct_event`
runs before parsing) with its default tolerance of 300 s. Mautic:
`Webhook-Signature` is base64(HMAC-SHA256(secret, raw body)), as Mautic's
WebhookBundle computes it; Mautic signs no timestamp, so a replay of a
genuine delivery cannot be told by age. Both: a signature seen in the last
24 hours (the last 10,000) answers 200 again but wakes nothing
(`duplicate`), so replaying a captured delivery costs nothing.

At most `MAX_CONNECTIONS` connections are served at once (the rest are
closed at once) and each read times out after `READ_TIMEOUT` seconds.
Exposed beyond loopback only through a TLS reverse proxy that forwards
/webhooks/* alone (docs/operator-guide.md).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import stripe
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from syncctl import logs

MAX_BODY = 1 << 20
#: The Stripe SDK's default (`stripe.Webhook.DEFAULT_TOLERANCE`).
STRIPE_TOLERANCE = 300
MAX_CONNECTIONS = 64
READ_TIMEOUT = 10.0
REPLAY_WINDOW = 24 * 3600.0
REPLAY_ENTRIES = 10_000

STRIPE_PATH = "/webhooks/stripe"
MAUTIC_PATH = "/webhooks/mautic"
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"

#: A check: (raw body, headers) -> None when genuine, else the refusal's word.
Check = Callable[[bytes, Mapping[str, str]], str | None]


def stripe_check(secret: str) -> Check:
    """`Stripe-Signature` verified by the Stripe SDK (tolerance 300 s)."""

    def check(body: bytes, headers: Mapping[str, str]) -> str | None:
        header = headers.get("stripe-signature")
        if not header:
            return "unsigned"
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return "bad_body"
        try:
            stripe.WebhookSignature.verify_header(text, header, secret, STRIPE_TOLERANCE)
        except stripe.SignatureVerificationError as exc:
            # The SDK checks the signature before the age: "tolerance" means genuine but old.
            return "expired" if "tolerance" in str(exc).lower() else "bad_signature"
        return None

    return check


def mautic_signature(secret: str, body: bytes) -> str:
    """base64(HMAC-SHA256(secret, raw body)): Mautic's `Webhook-Signature`."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def mautic_check(secret: str) -> Check:
    def check(body: bytes, headers: Mapping[str, str]) -> str | None:
        given = headers.get("webhook-signature")
        if not given:
            return "unsigned"
        if not hmac.compare_digest(mautic_signature(secret, body), given.strip()):
            return "bad_signature"
        return None

    return check


class SeenSignatures:
    """Signatures accepted lately, to tell a replayed delivery (bounded, thread-safe)."""

    def __init__(
        self,
        window: float = REPLAY_WINDOW,
        size: int = REPLAY_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._window = window
        self._size = size
        self._clock = clock
        self._lock = threading.Lock()

    def first_time(self, signature: str) -> bool:
        """Remember `signature`; whether it was new."""
        now = self._clock()
        with self._lock:
            while self._seen:
                oldest, when = next(iter(self._seen.items()))
                if now - when <= self._window and len(self._seen) < self._size:
                    break
                del self._seen[oldest]
            if signature in self._seen:
                return False
            self._seen[signature] = now
            return True


@dataclass(frozen=True)
class Hook:
    source: str  # "stripe" | "mautic": metrics label and wake-up source
    check: Check
    header: str  # the signature header (lower case), for the replay memory


class Endpoints:
    """What the server answers: the configured webhooks, health and metrics."""

    def __init__(
        self,
        *,
        hooks: Mapping[str, Hook],
        wake: Callable[[str], None],
        health: Callable[[], tuple[bool, str]],
        registry: CollectorRegistry,
        record: Callable[[str, str], None],
        before_metrics: Callable[[], None] = lambda: None,
        seen: SeenSignatures | None = None,
    ) -> None:
        self.hooks = dict(hooks)
        self.wake = wake
        self.health = health
        self.registry = registry
        self.record = record
        self.before_metrics = before_metrics
        self.seen = seen or SeenSignatures()

    def allowed(self, path: str) -> tuple[str, ...] | None:
        """The methods a path answers, or None for a path that is not served."""
        if path in self.hooks:
            return ("POST",)
        if path in (HEALTH_PATH, METRICS_PATH):
            return ("GET", "HEAD")
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # too many at once: close, serve the rest
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hung up or timed out is not worth a traceback."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = READ_TIMEOUT
    server: _Server
    server_version = "syncctl"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        logs.event(logs.LOGGER, logging.DEBUG, "http " + (format % args))

    def _any(self) -> None:
        endpoints = self.server.endpoints
        path = urlsplit(self.path).path
        methods = endpoints.allowed(path)
        if methods is None:
            self._answer(404, "not found\n", close=self._has_body())
            return
        if self.command not in methods:
            self._answer(405, "method not allowed\n", close=self._has_body(), allow=methods)
            return
        if path == HEALTH_PATH:
            healthy, why = endpoints.health()
            self._answer(200 if healthy else 503, ("ok: " if healthy else "unhealthy: ") + why)
        elif path == METRICS_PATH:
            endpoints.before_metrics()
            body = generate_latest(endpoints.registry)
            self._answer(200, body, content_type=CONTENT_TYPE_LATEST)
        else:
            self._webhook(endpoints.hooks[path])

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _any

    def _has_body(self) -> bool:
        return bool(self.headers.get("content-length") or self.headers.get("transfer-encoding"))

    def _webhook(self, hook: Hook) -> None:
        endpoints = self.server.endpoints
        raw_length = self.headers.get("content-length")
        if raw_length is None or self.headers.get("transfer-encoding"):
            endpoints.record(hook.source, "no_length")
            self._answer(411, "Content-Length required\n", close=True)
            return
        try:
            length = int(raw_length)
            if length < 0:
                raise ValueError
        except ValueError:
            endpoints.record(hook.source, "bad_request")
            self._answer(400, "bad Content-Length\n", close=True)
            return
        if length > MAX_BODY:
            endpoints.record(hook.source, "too_large")
            self._answer(413, f"body over {MAX_BODY} bytes\n", close=True)
            return
        body = self.rfile.read(length)
        if len(body) < length:
            endpoints.record(hook.source, "cut_short")
            self.close_connection = True
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        refusal = hook.check(body, headers)
        if refusal is not None:
            endpoints.record(hook.source, refusal)
            self._answer(400, f"{refusal.replace('_', ' ')}: nothing done\n")
            return
        if not endpoints.seen.first_time(f"{hook.source} {headers.get(hook.header, '')}"):
            endpoints.record(hook.source, "duplicate")
            self._answer(200, '{"received": true, "duplicate": true}\n', content_type=_JSON)
            return
        endpoints.record(hook.source, "accepted")
        endpoints.wake(hook.source)
        self._answer(200, '{"received": true}\n', content_type=_JSON)

    def _answer(
        self,
        status: int,
        body: str | bytes,
        *,
        content_type: str = "text/plain; charset=utf-8",
        close: bool = False,
        allow: tuple[str, ...] = (),
    ) -> None:
        payload = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        if allow:
            self.send_header("Allow", ", ".join(allow))
        if close:
            # Its body (if any) stays unread: this connection cannot carry another request.
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            with contextlib.suppress(OSError):
                self.wfile.write(payload)


_JSON = "application/json"


class HTTPService:
    """The server on its own thread; `address` is where it listens (port 0: any)."""

    def __init__(self, host: str, port: int, endpoints: Endpoints) -> None:
        self._server = _Server((host, port), endpoints)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> HTTPService:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name="watch-http",
            kwargs={"poll_interval": 0.1},
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
