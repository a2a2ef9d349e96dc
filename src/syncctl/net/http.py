"""The one place that builds HTTP clients and sends requests to vendors.

Why one place: timeouts, the User-Agent, retries with backoff, `Retry-After`,
rate-limit buckets, the per-service call counters and the mapping of every
failure onto `syncctl.errors` must behave the same for all five services.

Retry rules (see docs in README, "HTTP behaviour"):
- Safe calls (GET/HEAD/PUT/DELETE, and POSTs the caller marks idempotent,
  such as searches) are retried on 429, 5xx and connection errors, with
  exponential backoff and jitter, honouring `Retry-After`.
- A non-idempotent write is retried only when it provably never reached the
  service (connection refused) or was refused by a rate limiter (429). A
  timeout, a reset after sending or a 5xx makes its outcome unknown: we raise
  `OutcomeUnknown` and the caller verifies against the service before any retry.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import json
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import certifi
import httpx
import tenacity

from syncctl import __version__
from syncctl.config import SERVICE_SECRETS
from syncctl.errors import (
    AuthRejected,
    BadResponse,
    Conflict,
    InvalidRequest,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    ServiceError,
    Unavailable,
)
from syncctl.net.ratelimit import BucketLimiter

USER_AGENT = f"syncctl/{__version__} (+https://github.com/syncctl/syncctl)"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})

_testing = False


def set_testing(enabled: bool) -> None:
    """Switch backoff sleeps off (tests): retries happen at once.

    `Retry-After` and rate-limit bucket waits are still honoured, because they
    are what the vendor asked for; test servers announce small ones.
    """
    global _testing
    _testing = enabled


def is_testing() -> bool:
    """Backoff sleeps are off (see `set_testing`)."""
    return _testing


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try a call before giving up for this run."""

    #: Attempts at a call (twice as many for 429s: each names its own wait,
    #: so a burst of them, an emptied bucket or a busy proxy, is waited out).
    attempts: int = 4
    backoff_initial: float = 0.5
    backoff_max: float = 20.0
    #: A `Retry-After` longer than this is not waited out: the call fails as
    #: rate limited and the next run tries again.
    max_retry_after: float = 60.0


@dataclass
class ServiceStats:
    """Calls made to one service during a run."""

    reads: int = 0
    writes: int = 0
    retries: int = 0
    throttled: int = 0  # 429 answers received
    failures: int = 0
    waited: float = 0.0  # seconds slept for rate limits and backoff

    @property
    def calls(self) -> int:
        return self.reads + self.writes


@dataclass
class CallStats:
    """Per-service call counters, shared by all clients of a run (thread-safe)."""

    services: dict[str, ServiceStats] = field(default_factory=dict)
    routes: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def service(self, name: str) -> ServiceStats:
        with self._lock:
            return self.services.setdefault(name, ServiceStats())

    def record(self, name: str, *, write: bool, route: str) -> None:
        with self._lock:
            stats = self.services.setdefault(name, ServiceStats())
            if write:
                stats.writes += 1
            else:
                stats.reads += 1
            self.routes[f"{name} {route}"] += 1

    def add(self, name: str, **deltas: float) -> None:
        with self._lock:
            stats = self.services.setdefault(name, ServiceStats())
            for key, value in deltas.items():
                setattr(stats, key, getattr(stats, key) + value)

    @property
    def total_calls(self) -> int:
        return sum(s.calls for s in self.services.values())

    @property
    def total_writes(self) -> int:
        return sum(s.writes for s in self.services.values())


class _Retry(Exception):
    """Internal: a retryable outcome; carries the vendor-requested wait."""

    def __init__(
        self, error: ServiceError, wait: float | None, response: httpx.Response | None = None
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.wait = wait
        self.response = response


class ServiceHTTP:
    """httpx clients bound to one vendor, with retries, limits and counters."""

    def __init__(
        self,
        service: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        keepalive_expiry: float = 5.0,
        retry: RetryPolicy | None = None,
        stats: CallStats | None = None,
        limiter: BucketLimiter | None = None,
        max_concurrency: int = 4,
        user_agent: str = USER_AGENT,
        error_message: Callable[[httpx.Response], str] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.stats = stats if stats is not None else CallStats()
        self.limiter = limiter or BucketLimiter()
        self._error_message = error_message or _generic_error_message
        self._sleep = sleep
        self._slots = threading.BoundedSemaphore(max(1, max_concurrency))
        # httpx clients, one per slot, each lent to one call at a time: never one
        # client shared by the worker threads. httpcore's pool (1.0.9; open bug
        # encode/httpcore#1110) can close, in one thread, an idle connection it has
        # just handed to another thread's request (here: its keep-alive expired in
        # between), and that request loses its answer ("connection lost after
        # sending") or waits out its read timeout. Workers resuming together after
        # a pause as long as the keep-alive expiry (Discord's 5 s invite window,
        # httpx's 5 s default) met it about once per 1,000 invite creations in the
        # benchmark. A client used by one thread at a time cannot.
        self._new_client = functools.partial(
            httpx.Client,
            base_url=self.base_url,
            verify=_tls_context(),
            headers={"User-Agent": user_agent, "Accept": "application/json", **(headers or {})},
            auth=auth,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            # httpx's defaults, with the keep-alive expiry a test can shorten.
            limits=httpx.Limits(
                max_connections=100, max_keepalive_connections=20, keepalive_expiry=keepalive_expiry
            ),
            transport=transport,  # tests' mock transports: shared, they keep no pool
            follow_redirects=False,
        )
        #: Called before each write is sent (every attempt, retries included); it
        #: raises to stop the write. Set while a run holds a shared store's lock:
        #: a run that lost the lock makes no side effect after the loss.
        self.write_guard: Callable[[], None] | None = None
        self._clients_lock = threading.Lock()
        self._clients: list[httpx.Client] = []  # every client made, for close()
        self._idle: list[httpx.Client] = []  # not lent to a call now
        self._closed = False

    def __repr__(self) -> str:  # never show headers: they hold credentials
        return f"ServiceHTTP({self.service!r}, {self.base_url!r})"

    def pause(self, seconds: float) -> None:
        """Wait as a vendor asked, outside a call (counted like any rate-limit wait)."""
        self.stats.add(self.service, waited=seconds)
        self._sleep(seconds)

    def close(self) -> None:
        with self._clients_lock:
            self._closed = True
            clients, self._clients, self._idle = self._clients, [], []
        for client in clients:
            client.close()

    @contextlib.contextmanager
    def _slot(self) -> Iterator[httpx.Client]:
        """One of `max_concurrency` slots, with a client no other thread uses meanwhile."""
        with self._slots:
            with self._clients_lock:
                if self._closed:
                    raise RuntimeError(f"the {self.service} HTTP client is closed")
                if self._idle:
                    client = self._idle.pop()  # the most recent: its connection is warm
                else:
                    client = self._new_client()
                    self._clients.append(client)
            try:
                yield client
            finally:
                with self._clients_lock:
                    if not self._closed:
                        self._idle.append(client)

    def __enter__(self) -> ServiceHTTP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API ---------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        write: bool | None = None,
        ok: Iterable[int] = (),
    ) -> httpx.Response:
        """Send a request; return the response when it is 2xx (or in `ok`).

        Raises a `ServiceError` subclass for everything else, after retrying
        what may be retried.
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in SAFE_METHODS
        if write is None:
            write = method not in {"GET", "HEAD", "OPTIONS"}
        allowed = set(ok)

        def attempt() -> httpx.Response:
            response = self._send_once(
                method, path, params, json_body, content, headers, idempotent, write
            )
            if response.is_success or response.status_code in allowed:
                return response
            error = self._error_for(response)
            retryable = response.status_code == 429 or (idempotent and response.status_code >= 500)
            if retryable:
                raise _Retry(error, _retry_after(response))
            if response.status_code >= 500 and not idempotent:
                raise OutcomeUnknown(
                    self.service,
                    f"{method} {path} answered {response.status_code}; the write may have happened",
                    hint="it is verified against the service before any retry",
                    status=response.status_code,
                )
            raise error

        return self._with_retries(attempt)

    def send_raw(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send with retries but return any final response (for SDK adapters).

        Transport failures still raise `ServiceError`s.
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in SAFE_METHODS
        write = method not in {"GET", "HEAD", "OPTIONS"}

        def attempt() -> httpx.Response:
            response = self._send_once(method, url, None, None, content, headers, idempotent, write)
            if response.status_code == 429 or (idempotent and response.status_code >= 500):
                raise _Retry(self._error_for(response), _retry_after(response), response)
            return response

        return self._with_retries(attempt, return_last_response=True)

    # -- internals ----------------------------------------------------------

    def _with_retries(
        self, attempt: Callable[[], httpx.Response], *, return_last_response: bool = False
    ) -> httpx.Response:
        policy = self.retry
        # "Full jitter" exponential backoff: spreads retries of parallel callers.
        backoff = tenacity.wait_random_exponential(
            multiplier=policy.backoff_initial, max=policy.backoff_max
        )

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            requested = exc.wait if isinstance(exc, _Retry) else None
            if requested is not None:
                return requested
            return 0.0 if _testing else backoff(state)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            self.stats.add(self.service, retries=1, waited=state.upcoming_sleep)

        def give_up(exc: BaseException) -> bool:
            return isinstance(exc, _Retry) and (
                exc.wait is None or exc.wait <= policy.max_retry_after
            )

        def stop(state: tenacity.RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            throttled = isinstance(exc, _Retry) and isinstance(exc.error, RateLimited)
            limit = policy.attempts * 2 if throttled else policy.attempts
            return state.attempt_number >= limit

        retrying = tenacity.Retrying(
            stop=stop,
            wait=wait,
            retry=tenacity.retry_if_exception(give_up),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Retry as final:
            if return_last_response and final.response is not None:
                return final.response
            self.stats.add(self.service, failures=1)
            raise final.error from None
        except ServiceError:
            self.stats.add(self.service, failures=1)
            raise

    def _send_once(
        self,
        method: str,
        path: str,
        params: Any,
        json_body: Any,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        idempotent: bool,
        write: bool,
    ) -> httpx.Response:
        route = httpx.URL(path).path if "://" in path else path
        # Wait until the bucket has a slot for us; others may take the slots
        # of the next window first, so ask again after each wait.
        while (wait := self.limiter.reserve(method, route)) > 0:
            if wait > self.retry.max_retry_after:
                raise RateLimited(
                    self.service,
                    f"{method} {route}: the rate-limit bucket refills in {wait:.0f}s",
                    hint="the next run continues; raise the vendor's limit if this repeats",
                    retry_after=wait,
                )
            self.stats.add(self.service, waited=wait)
            self._sleep(wait)
        with self._slot() as client:
            guard = self.write_guard
            if write and guard is not None:
                guard()  # last thing before the request leaves: no wait comes between
            self.stats.record(self.service, write=write, route=f"{method} {_route_shape(route)}")
            try:
                response = self._request(
                    client, method, path, params, json_body, content, headers, idempotent
                )
            except BaseException:
                self.limiter.unanswered(method, route)
                raise
        self.limiter.update(method, route, response.status_code, response.headers)
        if response.status_code == 429:
            self.stats.add(self.service, throttled=1)
        return response

    def _request(
        self,
        client: httpx.Client,
        method: str,
        path: str,
        params: Any,
        json_body: Any,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        idempotent: bool,
    ) -> httpx.Response:
        """One HTTP exchange, its transport failures mapped to what may be retried."""
        route = httpx.URL(path).path if "://" in path else path
        try:
            return client.request(
                method, path, params=params, json=json_body, content=content, headers=headers
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Never reached the service: safe to retry any method.
            error = Unavailable(
                self.service,
                f"cannot connect to {self.base_url} ({type(exc).__name__})",
                hint="check the base URL in the config and that the service is up",
            )
            raise _Retry(error, None) from None
        except httpx.UnsupportedProtocol:
            raise Unavailable(
                self.service,
                f"cannot send {method} {route}: the base URL's scheme is not http(s)",
                hint="check the base URL in the config",
            ) from None
        except httpx.LocalProtocolError:
            # Never quote the exception: h11 cites the offending header value,
            # which is usually a credential with a stray character in it.
            raise Unavailable(
                self.service,
                f"cannot send {method} {route}: a header value is not valid HTTP",
                hint=f"{self._credentials_hint()} for stray spaces or newlines",
            ) from None
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "lost"
            if idempotent:
                error = Unavailable(
                    self.service,
                    f"{method} {route}: connection {kind}",
                    hint="the next run retries; if this repeats, check the service or raise"
                    " [run] timeout_seconds",
                )
                raise _Retry(error, None) from None
            raise OutcomeUnknown(
                self.service,
                f"{method} {route}: connection {kind} after sending; the write may have happened",
                hint="it is verified against the service before any retry",
            ) from None

    def _credentials_hint(self) -> str:
        names = SERVICE_SECRETS.get(self.service)
        if not names:
            return f"check the {self.service} credentials"
        return f"check {' and '.join(names)} in the environment or the .env file"

    def _error_for(self, response: httpx.Response) -> ServiceError:
        status = response.status_code
        detail = self._error_message(response)
        where = f"{response.request.method} {response.request.url.path}"
        text = f"{where} answered {status}" + (f": {detail}" if detail else "")
        if status == 401:
            return AuthRejected(self.service, text, hint=self._credentials_hint(), status=status)
        if status == 403:
            return AuthRejected(
                self.service,
                text,
                hint=f"give the {self.service} API user the permission this call needs",
                status=status,
            )
        if status == 404:
            return NotFound(self.service, text, status=status)
        if status == 409:
            return Conflict(self.service, text, status=status, payload=_json_or_none(response))
        if status == 429:
            return RateLimited(
                self.service,
                text,
                hint="the next run retries; lower concurrency if this repeats",
                retry_after=_retry_after(response),
            )
        if status >= 500:
            return Unavailable(self.service, text, hint="the next run retries", status=status)
        return InvalidRequest(self.service, text, status=status)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every client: building one costs tens of milliseconds."""
    return ssl.create_default_context(cafile=certifi.where())


def _route_shape(path: str) -> str:
    """`/channels/123/invites` -> `/channels/{id}/invites`: counters stay few."""
    return "/".join(
        "{id}" if any(ch.isdigit() for ch in part) and not part.startswith("v") else part
        for part in path.split("/")
    )


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the service asked us to wait, from headers or Discord's body.

    Discord's body `retry_after` is precise; its header is rounded up to whole
    seconds, so the body wins when both are there.
    """
    body = _json_or_none(response) if response.status_code == 429 else None
    if isinstance(body, dict) and isinstance(body.get("retry_after"), int | float):
        return max(0.0, float(body["retry_after"]))
    header = response.headers.get("retry-after")
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(header)
            if parsed is not None:
                return max(0.0, parsed.timestamp() - time.time())
    reset_after = response.headers.get("x-ratelimit-reset-after")
    if reset_after:
        try:
            return max(0.0, float(reset_after))
        except ValueError:
            pass
    return None


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return None


def _generic_error_message(response: httpx.Response) -> str:
    """A short, secret-free description from the common error body shapes."""
    body = _json_or_none(response)
    message: Any = None
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            message = first.get("detail") or first.get("message") or first.get("title")
        elif isinstance(body.get("error"), dict):
            message = body["error"].get("message")
        else:
            message = body.get("message") or body.get("error")
    if message is None:
        message = response.headers.get("x-status-reason")
    if message is None:
        return ""
    return " ".join(str(message).split())[:200]


def parse_json(
    service: str,
    response: httpx.Response,
    object_hook: Callable[[dict[str, Any]], Any] | None = None,
) -> Any:
    """The response's JSON body, or `BadResponse` naming what came instead.

    `object_hook` (json.loads') may shrink objects as they are decoded.
    """
    try:
        return response.json(object_hook=object_hook)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        raise BadResponse(
            service,
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code} with a body that is not JSON ({kind})",
            hint="check the base URL points at the API, not a web page or proxy",
            status=response.status_code,
        ) from None


def expect_dict(service: str, value: Any, what: str) -> dict[str, Any]:
    """Check a decoded body is a JSON object, as the vendor documents."""
    if not isinstance(value, dict):
        raise BadResponse(service, f"{what}: expected a JSON object, got {type(value).__name__}")
    return value
