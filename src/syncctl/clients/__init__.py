"""One client per vendor API, all built on `syncctl.net.http`."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Self

from syncctl.errors import ConfigError
from syncctl.net.http import CallStats, ServiceHTTP

#: Visible ASCII only: what an HTTP header value can carry without mangling.
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")


def is_header_safe(value: str) -> bool:
    """Visible ASCII without spaces: safe to send as (part of) a header value."""
    return bool(_HEADER_SAFE.fullmatch(value))


def header_credential(value: str, secret: str, service: str) -> str:
    """Check a credential that travels in an HTTP header, before any call.

    A non-ASCII character makes httpx fail while building the client, a line
    break makes every call fail with the header (the credential) quoted in
    the error, and a space inside is always rejected by the vendor after the
    other services were written. All three are config errors that name the
    secret, never its value.
    """
    token = value.strip()
    if token and not is_header_safe(token):
        raise ConfigError(
            f"{service}: {secret} contains a space, a line break or a non-ASCII character, "
            "which no HTTP header can carry",
            hint=f"copy {secret} again, without quotes or spaces",
        )
    return token


class VendorClient:
    """What every vendor client shares: one `ServiceHTTP`, closing, a safe repr.

    The repr shows the class and base URL only: never a credential.
    """

    _http: ServiceHTTP

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._http.base_url!r})"

    @property
    def stats(self) -> CallStats:
        return self._http.stats

    def guard_writes(self, check: Callable[[], None] | None) -> None:
        """`check()` runs before each write this client sends; it raises to stop it."""
        self._http.write_guard = check

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
