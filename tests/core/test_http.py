"""The HTTP layer: what is retried, what is never retried, what is counted."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from syncctl.errors import (
    AuthRejected,
    BadResponse,
    Conflict,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    Unavailable,
)
from syncctl.net.http import CallStats, RetryPolicy, ServiceHTTP, parse_json
from syncctl.sandbox.server import Emulator, EmulatorServer, Request, Response, route


class Echo(Emulator):
    """A tiny service: GET /things, POST /things, and a bucket of 2 calls."""

    name = "echo"

    def __init__(self) -> None:
        super().__init__()
        self.created = 0
        self.bucket_remaining = 2
        self.user_agents: list[str] = []

    @route("GET", "/things")
    def list_things(self, request: Request) -> Response:
        self.user_agents.append(request.headers.get("user-agent", ""))
        return Response(200, {"things": [], "auth": "Authorization" in request.headers})

    @route("POST", "/things")
    def create_thing(self, request: Request) -> Response:
        self.created += 1
        return Response(200, {"id": self.created})

    @route("GET", "/limited")
    def limited(self, request: Request) -> Response:
        if self.bucket_remaining <= 0:
            return Response(429, {"message": "slow down", "retry_after": 0.2})
        self.bucket_remaining -= 1
        return Response(
            200,
            {},
            headers={
                "X-RateLimit-Limit": "2",
                "X-RateLimit-Remaining": str(self.bucket_remaining),
                "X-RateLimit-Reset-After": "0.15",
                "X-RateLimit-Bucket": "abc",
            },
        )

    @route("GET", "/page")
    def page(self, request: Request) -> Response:
        return Response(200, b"<html>login</html>", content_type="text/html")


@pytest.fixture
def echo() -> Iterator[tuple[Echo, str]]:
    server = EmulatorServer(Echo()).start()
    yield server.emulator, server.url  # type: ignore[misc]
    server.stop()


@pytest.fixture
def client(echo: tuple[Echo, str]) -> Iterator[ServiceHTTP]:
    http = ServiceHTTP(
        "echo", echo[1], headers={"Authorization": "Bearer s3cret-token"}, stats=CallStats()
    )
    yield http
    http.close()


def test_safe_call_is_retried_after_a_5xx(echo, client) -> None:
    emulator, _ = echo
    emulator.inject(method="GET", path="/things", status=503)
    assert client.request("GET", "/things").status_code == 200
    assert len(emulator.exchanges("GET")) == 2
    assert client.stats.service("echo").retries == 1


def test_safe_call_gives_up_as_unavailable_after_the_attempts(echo, client) -> None:
    emulator, _ = echo
    emulator.inject(method="GET", path="/things", status=502, times=None)
    with pytest.raises(Unavailable, match="answered 502"):
        client.request("GET", "/things")
    assert len(emulator.exchanges("GET")) == RetryPolicy().attempts


def test_retry_after_is_honoured(echo, client) -> None:
    emulator, _ = echo
    emulator.inject(method="GET", path="/things", status=429, headers={"Retry-After": "0.3"})
    started = time.monotonic()
    client.request("GET", "/things")
    assert time.monotonic() - started >= 0.3
    assert client.stats.service("echo").throttled == 1


def test_a_burst_of_429s_longer_than_the_attempts_is_waited_out(echo, client) -> None:
    emulator, _ = echo
    burst = RetryPolicy().attempts + 2
    emulator.inject(
        method="GET", path="/things", status=429, headers={"Retry-After": "0"}, times=burst
    )
    assert client.request("GET", "/things").status_code == 200
    assert client.stats.service("echo").throttled == burst


def test_a_429_burst_gives_up_after_twice_the_attempts(echo, client) -> None:
    emulator, _ = echo
    emulator.inject(
        method="GET", path="/things", status=429, headers={"Retry-After": "0"}, times=None
    )
    with pytest.raises(RateLimited):
        client.request("GET", "/things")
    assert len(emulator.exchanges("GET")) == 2 * RetryPolicy().attempts


def test_retry_after_beyond_the_cap_fails_fast_as_rate_limited(echo) -> None:
    emulator, url = echo
    http = ServiceHTTP("echo", url, retry=RetryPolicy(max_retry_after=1.0))
    emulator.inject(method="GET", path="/things", status=429, headers={"Retry-After": "3600"})
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        http.request("GET", "/things")
    assert time.monotonic() - started < 1.0
    assert caught.value.retry_after == 3600


def test_write_rejected_by_a_rate_limiter_is_retried(echo, client) -> None:
    emulator, _ = echo
    emulator.inject(method="POST", path="/things", status=429, headers={"Retry-After": "0"})
    assert client.request("POST", "/things").json() == {"id": 1}


def test_write_whose_connection_drops_after_sending_is_outcome_unknown(echo, client) -> None:
    emulator, _ = echo
    emulator.inject(method="POST", path="/things", kind="reset", when="after")
    with pytest.raises(OutcomeUnknown, match="may have happened"):
        client.request("POST", "/things")
    assert emulator.created == 1  # applied once, and not retried
    assert len(emulator.exchanges("POST")) == 1


def test_write_answered_5xx_is_outcome_unknown_not_retried(echo, client) -> None:
    emulator, _ = echo
    emulator.inject(method="POST", path="/things", status=500)
    with pytest.raises(OutcomeUnknown):
        client.request("POST", "/things")
    assert len(emulator.exchanges("POST")) == 1


def test_write_marked_idempotent_is_retried_after_a_5xx(echo, client) -> None:
    emulator, _ = echo
    emulator.inject(method="POST", path="/things", status=500)
    client.request("POST", "/things", idempotent=True)
    assert len(emulator.exchanges("POST")) == 2


def test_write_timeout_is_outcome_unknown(echo) -> None:
    emulator, url = echo
    http = ServiceHTTP("echo", url, timeout=0.2)
    emulator.inject(method="POST", path="/things", kind="timeout", delay=0.6)
    with pytest.raises(OutcomeUnknown, match="timed out"):
        http.request("POST", "/things")


def test_refused_connection_is_retried_then_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    http = ServiceHTTP("echo", f"http://127.0.0.1:{port}")
    with pytest.raises(Unavailable, match=r"cannot connect.*check the base URL"):
        http.request("POST", "/things")
    assert http.stats.service("echo").retries == RetryPolicy().attempts - 1


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, AuthRejected), (403, AuthRejected), (404, NotFound), (409, Conflict)],
)
def test_client_errors_map_to_their_type_without_retry(echo, client, status, error) -> None:
    emulator, _ = echo
    emulator.inject(method="GET", path="/things", status=status, body={"message": "nope"})
    with pytest.raises(error, match=f"answered {status}: nope"):
        client.request("GET", "/things")
    assert len(emulator.exchanges("GET")) == 1


def test_empty_bucket_is_waited_for_before_sending(echo, client) -> None:
    emulator, _ = echo
    client.request("GET", "/limited")
    client.request("GET", "/limited")  # remaining now 0, resets in 0.15 s
    emulator.bucket_remaining = 2
    started = time.monotonic()
    client.request("GET", "/limited")
    assert time.monotonic() - started >= 0.1
    assert client.stats.service("echo").throttled == 0


def test_retry_after_from_discord_style_body_is_honoured(echo, client) -> None:
    emulator, _ = echo
    emulator.bucket_remaining = 0
    started = time.monotonic()
    with pytest.raises(RateLimited):
        client.request("GET", "/limited")
    assert time.monotonic() - started >= 0.2 * (RetryPolicy().attempts - 1)


def test_html_instead_of_json_is_a_bad_response(client) -> None:
    response = client.request("GET", "/page")
    with pytest.raises(BadResponse, match=r"not JSON \(text/html\)"):
        parse_json("echo", response)


def test_reads_and_writes_are_counted_per_service(client) -> None:
    client.request("GET", "/things")
    client.request("POST", "/things")
    client.request("POST", "/things", write=False, idempotent=True)
    stats = client.stats.service("echo")
    assert (stats.reads, stats.writes) == (2, 1)
    assert client.stats.total_calls == 3


def test_user_agent_names_syncctl(echo, client) -> None:
    client.request("GET", "/things")
    assert echo[0].user_agents[-1].startswith("syncctl/")


def test_credentials_stay_out_of_repr_and_errors(echo, client) -> None:
    emulator, _ = echo
    emulator.inject(method="GET", path="/things", status=401)
    with pytest.raises(AuthRejected) as caught:
        client.request("GET", "/things")
    assert "s3cret" not in str(caught.value)
    assert "s3cret" not in repr(client)
