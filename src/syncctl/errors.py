"""The few exception types every failure is mapped to.

Clients raise only these, so the CLI and the reconciler can decide what to do
(stop using a service, retry next run, verify before retrying) without knowing
any vendor's error format. Messages are one line, name the service and say
what to do; they never contain a secret.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path


class SyncctlError(Exception):
    """Base of every error syncctl reports to the operator as one line."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(SyncctlError):
    """The configuration file, the environment or the .env file is unusable."""

    exit_code = 2


class UsageError(SyncctlError):
    """The command line asked for something that cannot be done (bad email, ...)."""

    exit_code = 2


class StateError(SyncctlError):
    """The local state directory or database cannot be used."""


class StateDirUnusable(ConfigError, StateError):
    """`[run] state_dir` names a place syncctl cannot create or write.

    A state error, but caused by the config: it exits 2 like any bad config.
    """

    exit_code = 2


class LockBusy(SyncctlError):
    """Another syncctl run holds the state directory's lock.

    `stuck`: the holder has held it for longer than any run should take,
    which is news even where a busy lock is routine (cron with -q).
    `pid` and `held_since` name the holder as its lock file does (None:
    not known yet); `path` is the lock file, or with a shared PostgreSQL
    store the run lock in it ("the run lock in postgresql://...").
    """

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        stuck: bool = False,
        pid: int | None = None,
        held_since: datetime | None = None,
        path: Path | str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.stuck = stuck
        self.pid = pid
        self.held_since = held_since
        self.path = path


class LockHeldTooLong(SyncctlError):
    """A run met the lock held by one other run for longer than `[run]
    lock_busy_fail_after`: a failure (exit 1), so OnFailure= and cron mail fire."""

    exit_code = 1


class ServiceError(SyncctlError):
    """A vendor API call failed. `service` names the vendor (stripe, mautic, ...)."""

    #: True when running the same call again later may succeed.
    transient = False
    #: True when the service refused the request itself: the same request
    #: will be refused again, so it waits until its inputs change.
    refusal = False

    def __init__(
        self,
        service: str,
        message: str,
        *,
        hint: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(f"{service}: {message}", hint=hint)
        self.service = service
        self.status = status


class AuthRejected(ServiceError):
    """401/403: the credentials are wrong or lack a permission. Stop using the service."""


class NotFound(ServiceError):
    """404: the object (or the endpoint, when a base URL is wrong) does not exist."""


class Conflict(ServiceError):
    """409 or an equivalent: the write collides with existing data.

    Not a refusal of the request itself: the data it collides with lives in
    the service and may change, so it is tried again every run.
    """

    def __init__(
        self,
        service: str,
        message: str,
        *,
        hint: str | None = None,
        status: int | None = None,
        payload: object = None,
    ) -> None:
        super().__init__(service, message, hint=hint, status=status)
        self.payload = payload


class InvalidRequest(ServiceError):
    """400/422: the service refused the request's content. Retrying will not help."""

    refusal = True


class NotSent(InvalidRequest):
    """Mautic answered a send with `success: false` or `failed`.

    An unpublished email, a contact without an address or a failing mail
    transport all look the same, and the last one passes: tried again.
    """

    refusal = False


class RateLimited(ServiceError):
    """429 after the allowed retries. Transient."""

    transient = True

    def __init__(
        self,
        service: str,
        message: str,
        *,
        hint: str | None = None,
        status: int | None = 429,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(service, message, hint=hint, status=status)
        self.retry_after = retry_after


class Unavailable(ServiceError):
    """5xx, connection refused or reset, timeout on a safe call. Transient."""

    transient = True


class OutcomeUnknown(ServiceError):
    """A write may or may not have happened (timeout or reset after sending).

    Never retry blindly: verify against the service first.
    """

    transient = True


class BadResponse(ServiceError):
    """The service answered with something that is not what its API documents."""

    transient = True


class StoreLost(StateError):
    """The shared state store's connection, and with it the run lock, is gone.

    Raised by every journal call after the loss (a network cut, the server
    restarting, `pg_terminate_backend`): the run stops before its next side
    effect, and whichever host leads next settles what it left in flight.
    Never caught as one action's failure.
    """
