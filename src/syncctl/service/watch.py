"""`syncctl watch` assembled: the cycle loop, the HTTP endpoints, the figures.

`WatchService` checks everything an operator can get wrong before it starts
(the config and secrets, the state dir, the listen address), so bad input
exits 2 at once rather than failing cycle after cycle. Then two threads: the
cycle loop (`loop.py`) and, with `listen`, the HTTP server (`http.py`); the
caller's thread waits and handles the signals (`run_until_stopped`).

Stopping (SIGTERM, SIGINT, or `request_stop`): the server closes, the cycle
in progress is asked to stop. While it applies, the calls in flight finish
and are recorded, none starts, the lock is released and the journal holds
no in-flight row it did not record. While it only reads (observe), nothing
is lost by not waiting: after `ABANDON_READS_AFTER` seconds the process
leaves the reads behind and exits (the kernel frees the lock). A second
signal quits at once, as kill -9 would: the next run's recovery settles what
was in flight by looking at the services.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

from syncctl import logs
from syncctl.config import Config, parse_listen
from syncctl.engine.apply import Outcome
from syncctl.engine.reconcile import RunResult, reconcile
from syncctl.engine.stop import StopRequest
from syncctl.errors import ConfigError
from syncctl.service.http import (
    MAUTIC_PATH,
    STRIPE_PATH,
    Endpoints,
    Hook,
    HTTPService,
    mautic_check,
    stripe_check,
)
from syncctl.service.loop import (
    AuditClock,
    CycleLoop,
    LoopOptions,
    Runner,
    last_audit,
    parse_audit_at,
)
from syncctl.service.metrics import Figures
from syncctl.service.wakeup import Wakeup
from syncctl.state.location import check_state_dir

#: Seconds a stop waits for a cycle that is only reading before leaving it behind.
ABANDON_READS_AFTER = 3.0


class WatchService:
    """The long-running mode; `start`, then `request_stop` and `finish`."""

    def __init__(
        self,
        config: Config,
        *,
        interval: float | None = None,
        listen: str | None = None,
        options: LoopOptions | None = None,
        run: Runner = reconcile,
        on_outcome: Callable[[Outcome], None] | None = None,
        on_cycle: Callable[[RunResult, str], None] | None = None,
    ) -> None:
        settings = config.settings
        config.secrets.require()
        state_dir = settings.run.state_path
        check_state_dir(state_dir)
        if options is None:
            options = LoopOptions(
                interval=interval if interval is not None else settings.watch.interval,
                audit_at=parse_audit_at(settings.watch.audit_at),
            )
        self.options = options
        self.config = config
        self.figures = Figures()
        self.figures.running = False
        self.registry = self.figures.registry(process=True)
        self.wakeup = Wakeup()
        self.stop = StopRequest()
        audit = AuditClock(options.audit_at, None)
        audit.last_audit = last_audit(config.state, audit.last_slot())
        self.loop = CycleLoop(
            config,
            options,
            wakeup=self.wakeup,
            figures=self.figures,
            audit=audit,
            stop=self.stop,
            run=run,
            on_outcome=on_outcome,
            on_cycle=on_cycle,
        )
        self.listen = settings.watch.listen if listen is None else listen
        self.hooks: dict[str, Hook] = {}
        for path, source, name, check, header in (
            (STRIPE_PATH, "stripe", "STRIPE_WEBHOOK_SECRET", stripe_check, "stripe-signature"),
            (MAUTIC_PATH, "mautic", "MAUTIC_WEBHOOK_SECRET", mautic_check, "webhook-signature"),
        ):
            secret = config.secrets.optional(name)
            if secret:
                self.hooks[path] = Hook(source, check(secret), header)
        self.http: HTTPService | None = None
        if self.listen:
            self.http = self._bind(self.listen)
        self._thread: threading.Thread | None = None

    def _bind(self, listen: str) -> HTTPService:
        try:
            host, port = parse_listen(listen)
        except ValueError as exc:
            raise ConfigError(f"--listen {listen!r} {exc}") from None
        endpoints = Endpoints(
            hooks=self.hooks,
            wake=self.wakeup.set,
            health=self.loop.health,
            registry=self.registry,
            record=self.figures.record_webhook,
            before_metrics=lambda: self.figures.set_wakeups(self.wakeup.asked),
        )
        try:
            return HTTPService(host, port, endpoints)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {listen}: {exc.strerror or exc}",
                hint="choose another address with --listen or [watch] listen (port 0: any free)",
            ) from None

    # -- life -------------------------------------------------------------------------

    def start(self) -> WatchService:
        if self.http is not None:
            self.http.start()
        # A daemon thread: a stop may leave a cycle that only reads behind.
        self._thread = threading.Thread(target=self.loop.run, name="watch-loop", daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str | None:
        return self.http.url if self.http is not None else None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def request_stop(self, reason: str = "stop") -> None:
        """Ask the loop to end after the action in progress (safe in a signal handler)."""
        self.loop.request_stop(reason)

    def finish(self, abandon_after: float = ABANDON_READS_AFTER) -> Literal["clean", "abandoned"]:
        """After `request_stop`: wait for the cycle in progress, close the server.

        "abandoned": the cycle was still only reading `abandon_after` seconds
        after the stop; it is left behind (nothing of it needs recording).
        """
        if self.http is not None:
            self.http.stop()
        stopped_at = time.monotonic()
        outcome: Literal["clean", "abandoned"] = "clean"
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.05)
            if self.stop.reading and time.monotonic() - stopped_at > abandon_after:
                outcome = "abandoned"
                break
        return outcome

    def __enter__(self) -> WatchService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.request_stop("stop")
        self.finish()


@contextmanager
def stop_on_signals(service: WatchService, *, quiet: bool = False) -> Iterator[None]:
    """SIGTERM/SIGINT: stop after the action in progress; a second one quits at once."""

    def handle(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if service.loop.stopping:
            raise KeyboardInterrupt  # the second: the CLI exits 130 at once
        service.request_stop(name)
        if not quiet:
            logs.event(
                logs.LOGGER,
                logging.WARNING,
                f"{name}: stopping after the action in progress (again to quit at once)",
            )

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, previous in before.items():
            signal.signal(signum, previous)


def run_until_stopped(service: WatchService) -> Literal["clean", "abandoned", "crashed"]:
    """Block the calling (main) thread until a stop is asked or the loop dies; finish."""
    while not service.loop.stopping and service.running:
        time.sleep(0.1)
    if not service.loop.stopping:  # the loop died on its own: an unexpected error
        service.finish()
        return "crashed"
    return service.finish()
