"""The sandbox's HTTP machinery: one loopback server per emulated vendor.

Each vendor emulator (`syncctl.sandbox.stripe`, ...) subclasses `Emulator`,
declares its routes with `@route`, and keeps its state in plain Python objects
guarded by `self.lock`. This module gives every emulator the same knobs:
latency per call, injected faults (status codes, resets, timeouts, broken
bodies, before or after the write is applied) and a log of the traffic that
tests inspect. It uses the standard library's threading HTTP server: the
emulators need nothing more, and the sandbox ships inside the product.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from syncctl.sandbox.storm import BEFORE_503, RESET_AFTER, THROTTLED, Storm

JSON = "application/json"


@dataclass
class Request:
    """What an emulator handler sees."""

    method: str
    path: str
    query_string: str
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The last value of a query parameter."""
        for key, value in reversed(self.query):
            if key == name:
                return value
        return default

    def args(self, name: str) -> list[str]:
        return [value for key, value in self.query if key == name]

    def nested(self, prefix: str) -> dict[str, Any]:
        """PHP-style nested query (`where[0][col]=x`) as dicts/lists under `prefix`."""
        root: dict[str, Any] = {}
        for key, value in self.query:
            if not key.startswith(prefix + "["):
                continue
            parts = re.findall(r"\[([^\]]*)\]", key[len(prefix) :])
            node = root
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
        return root

    def json(self) -> Any:
        if not self.body:
            return None
        return json.loads(self.body)


@dataclass
class Response:
    status: int = 200
    body: Any = None  # JSON-able, or bytes for raw bodies
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body, separators=(",", ":")).encode()


@dataclass
class Fault:
    """A misbehaviour to inject into matching requests.

    kind: "status" (answer `status` with `body`/`headers`), "reset" (close the
    connection without an answer), "timeout" (answer after `delay` seconds),
    "malformed" (a 200 whose JSON is cut short), "html" (a 200 HTML page).
    when: "before" the emulator handles the request, or "after" it did (so a
    write happened but the caller cannot know).
    times: how many matching requests it hits (None: all).
    """

    method: str | None
    path: str  # regex, matched with re.search against the request path
    kind: str = "status"
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    when: str = "before"
    times: int | None = 1
    delay: float = 5.0
    skip: int = 0  # let this many matching requests through first
    #: A regex the raw request body must contain (None: any body).
    request_body: str | None = None

    def matches(self, method: str, path: str, body: bytes = b"") -> bool:
        if self.method is not None and self.method != method:
            return False
        if re.search(self.path, path) is None:
            return False
        wanted = self.request_body
        return wanted is None or re.search(wanted, body.decode("utf-8", "replace")) is not None


@dataclass
class Exchange:
    """One request and its answer, as logged for tests (no credentials)."""

    method: str
    path: str
    query: list[tuple[str, str]]
    body: Any
    status: int
    response: Any
    fault: str | None = None
    at: float = 0.0

    @property
    def is_write(self) -> bool:
        return self.method not in {"GET", "HEAD", "OPTIONS"}


Handler = Callable[..., Response]


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    """Declare an emulator method as the handler of `method pattern`.

    `pattern` uses `{name}` for a path segment, passed to the handler as a
    keyword argument.
    """

    def mark(fn: Handler) -> Handler:
        fn.__sandbox_routes__ = [*getattr(fn, "__sandbox_routes__", []), (method, pattern)]  # type: ignore[attr-defined]
        return fn

    return mark


class Emulator:
    """Base of the vendor emulators: routing, auth hook, faults, latency, log."""

    #: Service name, as used in config sections and call counters.
    name = "service"
    #: Path prefix every route lives under (e.g. "/api/v10").
    prefix = ""
    #: Requests whose path matches one of these regexes count as reads even
    #: when sent with POST (search endpoints).
    read_posts: tuple[str, ...] = ()

    def __init__(self, *, latency: float = 0.0) -> None:
        self.lock = threading.RLock()
        self.latency = latency
        self.faults: list[Fault] = []
        #: A seeded storm of 5xx, cut connections and 429 bursts (None: calm).
        self.storm: Storm | None = None
        self.log: list[Exchange] = []
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        for attr in dir(type(self)):
            # getattr_static: do not run properties before the subclass is set up.
            static = inspect.getattr_static(self, attr)
            for method, pattern in getattr(static, "__sandbox_routes__", []):
                self._routes.append((method, _compile(self.prefix + pattern), getattr(self, attr)))
        # Literal paths win over placeholders (`/contacts/batch/edit` is not contact
        # "batch"), as the vendors' routers declare or constrain them.
        self._routes.sort(key=lambda r: r[1].pattern.count("(?P<"))

    # -- hooks for vendors ------------------------------------------------

    def authenticate(self, request: Request) -> Response | None:
        """Return an error response when the request's credentials are wrong."""
        return None

    def throttle(self, request: Request) -> Response | None:
        """Return a 429 response when the vendor's rate limit is exhausted."""
        return None

    def decorate(self, request: Request, response: Response) -> None:
        """Add per-response headers (rate-limit state, request ids)."""

    def not_found(self, request: Request) -> Response:
        return Response(404, {"error": "not found"})

    def error_response(self, status: int, message: str) -> Response:
        """The vendor's error body shape for an injected or generic error."""
        return Response(status, {"message": message})

    # -- test helpers -----------------------------------------------------

    def inject(self, fault: Fault | None = None, **kwargs: Any) -> Fault:
        """Add a fault (see `Fault`); returns it so a test can remove it."""
        fault = fault or Fault(**kwargs)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def exchanges(self, method: str | None = None, path: str | None = None) -> list[Exchange]:
        with self.lock:
            return [
                e
                for e in self.log
                if (method is None or e.method == method)
                and (path is None or re.search(path, e.path))
            ]

    def write_count(self) -> int:
        """Calls that changed (or tried to change) state, searches excluded."""
        with self.lock:
            return sum(
                1
                for e in self.log
                if e.is_write and not any(re.search(p, e.path) for p in self.read_posts)
            )

    def clear_log(self) -> None:
        with self.lock:
            self.log.clear()

    # -- dispatch ---------------------------------------------------------

    def _take_fault(self, method: str, path: str, when: str, body: bytes = b"") -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.when != when or not fault.matches(method, path, body):
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    def _route(self, request: Request) -> Response:
        allowed = False
        for method, regex, fn in self._routes:
            match = regex.match(request.path)
            if not match:
                continue
            if method != request.method:
                allowed = True
                continue
            request.params = {k: unquote(v) for k, v in match.groupdict().items()}
            return fn(request, **request.params)
        if allowed:
            return self.error_response(405, "method not allowed")
        return self.not_found(request)

    def handle(self, request: Request) -> tuple[Response | None, Fault | None]:
        """Answer a request; (None, fault) means: drop the connection."""
        if self.latency:
            time.sleep(self.latency)
        fault = self._take_fault(request.method, request.path, "before", request.body)
        if fault is not None:
            return self._fault_response(fault), fault
        fate = self.storm.draw() if self.storm is not None else None
        if fate in (THROTTLED, BEFORE_503):
            return self._storm_response(fate), Fault(None, ".", kind=f"storm {fate}")
        with self.lock:
            denied = self.authenticate(request)
            if denied is not None:
                self.decorate(request, denied)
                return denied, None
            limited = self.throttle(request)
            if limited is not None:
                return limited, None
            try:
                response = self._route(request)
            except (ValueError, KeyError, TypeError) as exc:
                response = self.error_response(400, f"bad request: {exc}")
            self.decorate(request, response)
        after = self._take_fault(request.method, request.path, "after", request.body)
        if after is not None:
            return self._fault_response(after), after
        if fate is not None:  # the service acted; the caller learns nothing of it
            storm = Fault(None, ".", kind=f"storm {fate}")
            return (None if fate == RESET_AFTER else self._storm_response(fate)), storm
        return response, None

    def _storm_response(self, fate: str) -> Response:
        if fate == THROTTLED:
            assert self.storm is not None
            response = self.error_response(429, "Too Many Requests")
            response.headers["Retry-After"] = f"{self.storm.retry_after:g}"
            return response
        return self.error_response(503, "Service Unavailable")

    def _fault_response(self, fault: Fault) -> Response | None:
        if fault.kind == "reset":
            return None
        if fault.kind == "timeout":
            time.sleep(fault.delay)
            return Response(504, {"message": "gateway timeout"})
        if fault.kind == "malformed":
            return Response(200, b'{"data": [{"id": "trunc', content_type=JSON)
        if fault.kind == "html":
            return Response(
                200, b"<html><body><h1>Maintenance</h1></body></html>", content_type="text/html"
            )
        if fault.body is not None:
            return Response(fault.status, fault.body, dict(fault.headers))
        response = self.error_response(fault.status, HTTPStatus(fault.status).phrase)
        response.headers.update(fault.headers)
        return response


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Without it, each answer on a kept-alive connection waits ~40 ms for
    # Nagle's algorithm and the client's delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _dispatch(self) -> None:
        emulator = self.server.emulator
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command,
            path=parts.path,
            query_string=parts.query,
            query=parse_qsl(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        response, fault = emulator.handle(request)
        try:
            logged_body: Any = request.json()
        except ValueError:
            logged_body = body.decode("utf-8", "replace")
        entry = Exchange(
            method=request.method,
            path=request.path,
            query=request.query,
            body=logged_body,
            status=response.status if response else 0,
            response=response.body if response and not isinstance(response.body, bytes) else None,
            fault=fault.kind if fault else None,
            at=time.time(),
        )
        with emulator.lock:
            emulator.log.append(entry)
        if response is None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        payload = response.encode()
        self.send_response(response.status)
        if payload or response.status not in (204, 304):
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        """A client that hung up (a timeout, a closed pool) is not worth a traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class EmulatorServer:
    """Serves one emulator on loopback in a background thread."""

    def __init__(self, emulator: Emulator, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = emulator
        self._server = _Server((host, port), emulator)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name=f"sandbox-{self.emulator.name}",
            kwargs={"poll_interval": 0.01},
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _compile(pattern: str) -> re.Pattern[str]:
    """`/channels/{channel_id}/invites` -> a regex with named groups."""
    parts = re.split(r"\{(\w+)\}", pattern)
    regex = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts)
    )
    return re.compile(f"^{regex}$")
