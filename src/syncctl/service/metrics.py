"""What the runs did, as Prometheus figures: for `watch`'s /metrics and timer runs' textfile.

`Figures` keeps the counts itself and a collector renders them into a
registry of their own (never prometheus_client's global one: two services
in one process, or two tests, must not add up). The same figures serve
both modes:

- `syncctl watch` updates them after every cycle and serves them on
  `GET /metrics`;
- `syncctl reconcile --metrics-file PATH` reads the file the previous run
  wrote, adds its own run and writes it again atomically (a temporary file
  renamed over it, prometheus_client's `write_to_textfile`), so node_exporter's
  textfile collector sees counters that only grow, as from a service. A file
  that is missing or unreadable starts them from zero, which Prometheus takes
  for a counter reset.

Families (all prefixed `syncctl_`): `cycles_total{mode,outcome}`,
`last_success_timestamp_seconds`, `last_cycle_timestamp_seconds`,
`actions_total{kind,outcome}`, `api_calls_total{service,access}`,
`api_throttled_total{service}` (429 answers), `pending_items{kind}` (the
retry queue after the last cycle), `held_refusals{mode}` (refusals held
back by the last cycle of that mode: the nightly audit sees them all),
`cycle_duration_seconds{mode}` (histogram); `watch` adds
`webhook_requests_total{source,result}`, `wakeups_total{source}`,
`cycle_running` and the process collector's `process_*`.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from syncctl.engine.apply import UNRESOLVED, Status
from syncctl.engine.model import ActionKind
from syncctl.errors import StateError
from syncctl.state.journal import Journal
from syncctl.state.location import StateLocation

if TYPE_CHECKING:
    from syncctl.engine.reconcile import RunResult

PREFIX = "syncctl"
MODES = ("incremental", "full")
#: How a cycle (or a timer run) ended.
#: ok: nothing failed; held: only refusals held back (they wait for their
#: inputs to change, or --retry-refused); failed: an action or a read failed;
#: refused: the mistake guard refused the plan (exit 4); interrupted: stopped
#: by SIGTERM/SIGINT; error: the run stopped with an error (Mautic unreadable,
#: state dir trouble); busy: another syncctl run held the lock, nothing ran.
OUTCOMES = ("ok", "held", "failed", "refused", "interrupted", "error", "busy")
#: Outcomes after which the campaign is as far along as syncctl can take it.
SUCCESSES = frozenset({"ok", "held"})
SERVICES = ("stripe", "mautic", "discord", "shopware", "espocrm")
ACCESS = ("read", "write")
#: Seconds: an idle cycle takes a tenth, a nightly audit of 100k contacts a minute,
#: a first run there an hour.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)


def mode_of(result_mode: str) -> str:
    """A RunResult mode as the label: "full (first run)" counts as "full"."""
    return "full" if result_mode.startswith("full") else "incremental"


def outcome_of(result: RunResult) -> str:
    """One word for how a run ended (see OUTCOMES)."""
    if result.interrupted:
        return "interrupted"
    if result.refused:
        return "refused"
    if result.ok:
        return "ok"
    trouble = (
        result.failed
        or result.observe_errors
        or any(r.result == "unresolved" for r in result.recovered)
        or any(o.message == UNRESOLVED for o in result.outcomes)
    )
    # Not ok and no trouble: what kept it from ok is refusals held back.
    return "failed" if trouble else "held"


@dataclass
class _Histogram:
    #: Cumulative counts per bound of DURATION_BUCKETS (Prometheus `le`).
    buckets: list[float] = field(default_factory=lambda: [0.0] * len(DURATION_BUCKETS))
    count: float = 0.0
    total: float = 0.0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(DURATION_BUCKETS):
            if value <= bound:
                self.buckets[i] += 1
        self.count += 1
        self.total += value


class Figures:
    """The counts behind the metrics; thread-safe. Render with `registry()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cycles: Counter[tuple[str, str]] = Counter()
        self.actions: Counter[tuple[str, str]] = Counter()
        self.calls: Counter[tuple[str, str]] = Counter()
        self.throttled: Counter[str] = Counter()
        self.durations: dict[str, _Histogram] = {mode: _Histogram() for mode in MODES}
        self.pending: dict[str, int] = {}
        self.held: dict[str, int] = {}
        self.last_success: float | None = None
        self.last_cycle: float | None = None
        #: watch only: deliveries by (source, result), wake-ups asked by source.
        self.webhooks: Counter[tuple[str, str]] = Counter()
        self.wakeups: Counter[str] = Counter()
        self.running: bool | None = None  # None: not a service (textfile)

    # -- recording ----------------------------------------------------------------------

    def record_run(
        self,
        result: RunResult,
        *,
        pending: Mapping[str, int] | None = None,
        finished: float | None = None,
    ) -> str:
        """Count one finished run or cycle; returns its outcome word."""
        outcome = outcome_of(result)
        mode = mode_of(result.mode or "incremental")
        finished = time.time() if finished is None else finished
        with self._lock:
            self.cycles[(mode, outcome)] += 1
            for o in result.outcomes:
                self.actions[(str(o.action.kind), str(o.status))] += 1
            self._count_calls(result.stats.services.items())
            self.durations[mode].observe(result.duration)
            self.held[mode] = len(result.held)
            if pending is not None:
                self.pending = dict(pending)
            self.last_cycle = finished
            if outcome in SUCCESSES:
                self.last_success = finished
        return outcome

    def record_stopped(
        self,
        mode: str,
        outcome: str,
        *,
        duration: float | None = None,
        calls: Iterable[tuple[str, object]] = (),
        finished: float | None = None,
    ) -> None:
        """A cycle that ended without a result: `error` (raised) or `busy` (lock held)."""
        with self._lock:
            self.cycles[(mode, outcome)] += 1
            self._count_calls(calls)
            if outcome != "busy":
                if duration is not None:
                    self.durations[mode].observe(duration)
                self.last_cycle = time.time() if finished is None else finished

    def _count_calls(self, services: Iterable[tuple[str, object]]) -> None:
        for name, stats in services:
            self.calls[(name, "read")] += int(getattr(stats, "reads", 0))
            self.calls[(name, "write")] += int(getattr(stats, "writes", 0))
            self.throttled[name] += int(getattr(stats, "throttled", 0))

    def record_webhook(self, source: str, result: str) -> None:
        with self._lock:
            self.webhooks[(source, result)] += 1

    def set_wakeups(self, asked: Mapping[str, int]) -> None:
        with self._lock:
            self.wakeups = Counter(asked)

    def cycle_started(self) -> None:
        self.running = True

    def cycle_ended(self) -> None:
        self.running = False

    # -- rendering ----------------------------------------------------------------------

    def registry(self, *, process: bool = False) -> CollectorRegistry:
        """A registry of its own holding these figures (and the process's, for a service)."""
        registry = CollectorRegistry(auto_describe=True)
        registry.register(_Collector(self))
        if process:
            from prometheus_client import ProcessCollector

            ProcessCollector(registry=registry)
        return registry

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            yield from self._families()

    def _families(self) -> Iterator[Metric]:
        cycles = CounterMetricFamily(
            f"{PREFIX}_cycles",
            "Reconcile cycles (watch) or runs (timer) by mode and outcome.",
            labels=["mode", "outcome"],
        )
        for mode in MODES:
            for outcome in OUTCOMES:
                cycles.add_metric([mode, outcome], self.cycles[(mode, outcome)])
        yield cycles
        for name, value, text in (
            ("last_success_timestamp_seconds", self.last_success, "last cycle ending ok or held"),
            ("last_cycle_timestamp_seconds", self.last_cycle, "last cycle ending, any outcome"),
        ):
            gauge = GaugeMetricFamily(f"{PREFIX}_{name}", f"Unix time of the {text}.")
            if value is not None:
                gauge.add_metric([], value)
            yield gauge
        actions = CounterMetricFamily(
            f"{PREFIX}_actions",
            "Planned actions by kind and outcome (done, failed, skipped).",
            labels=["kind", "outcome"],
        )
        kinds = sorted({str(k) for k in ActionKind} | {k for k, _ in self.actions})
        for kind in kinds:
            for status in Status:
                actions.add_metric([kind, str(status)], self.actions[(kind, str(status))])
        yield actions
        calls = CounterMetricFamily(
            f"{PREFIX}_api_calls",
            "Calls to each vendor API, every attempt counted (429s included).",
            labels=["service", "access"],
        )
        throttled = CounterMetricFamily(
            f"{PREFIX}_api_throttled",
            "429 (rate limited) answers from each vendor API.",
            labels=["service"],
        )
        services = sorted(set(SERVICES) | {s for s, _ in self.calls})
        for service in services:
            for access in ACCESS:
                calls.add_metric([service, access], self.calls[(service, access)])
            throttled.add_metric([service], self.throttled[service])
        yield calls
        yield throttled
        pending = GaugeMetricFamily(
            f"{PREFIX}_pending_items",
            "Items in the retry queue after the last cycle (failed, deferred or held).",
            labels=["kind"],
        )
        for kind in sorted({"session", "contact"} | set(self.pending)):
            pending.add_metric([kind], self.pending.get(kind, 0))
        yield pending
        held = GaugeMetricFamily(
            f"{PREFIX}_held_refusals",
            "Requests a service refused as invalid, held back by the last cycle of this "
            "mode until their inputs change (the full audit sees them all).",
            labels=["mode"],
        )
        for mode in MODES:
            if mode in self.held:
                held.add_metric([mode], self.held[mode])
        yield held
        duration = HistogramMetricFamily(
            f"{PREFIX}_cycle_duration_seconds",
            "How long cycles took, by mode (busy ticks not counted).",
            labels=["mode"],
        )
        for mode in MODES:
            h = self.durations[mode]
            buckets = [(_le(b), c) for b, c in zip(DURATION_BUCKETS, h.buckets, strict=True)]
            buckets.append(("+Inf", h.count))
            duration.add_metric([mode], buckets, sum_value=h.total)
        yield duration
        if self.running is None:
            return
        running = GaugeMetricFamily(f"{PREFIX}_cycle_running", "1 while a cycle runs.")
        running.add_metric([], 1 if self.running else 0)
        yield running
        hooks = CounterMetricFamily(
            f"{PREFIX}_webhook_requests",
            "Requests to the webhook paths by source and result (accepted, duplicate, "
            "unsigned, bad_signature, expired, too_large, ...).",
            labels=["source", "result"],
        )
        for (source, result), n in sorted(self.webhooks.items()):
            hooks.add_metric([source, result], n)
        yield hooks
        wakeups = CounterMetricFamily(
            f"{PREFIX}_wakeups",
            "Wake-ups asked for by accepted deliveries (a burst makes one or two cycles).",
            labels=["source"],
        )
        for source, n in sorted(self.wakeups.items()):
            wakeups.add_metric([source], n)
        yield wakeups

    # -- the textfile of timer runs -----------------------------------------------------

    def load_text(self, text: str) -> None:
        """Take the counters and timestamps a previous run wrote (its own families only)."""
        families = {f.name: f for f in text_string_to_metric_families(text)}
        with self._lock:
            for sample in _samples(families, "cycles", "_total"):
                key = (sample.labels.get("mode", ""), sample.labels.get("outcome", ""))
                self.cycles[key] += int(sample.value)
            for sample in _samples(families, "actions", "_total"):
                key = (sample.labels.get("kind", ""), sample.labels.get("outcome", ""))
                self.actions[key] += int(sample.value)
            for sample in _samples(families, "api_calls", "_total"):
                key = (sample.labels.get("service", ""), sample.labels.get("access", ""))
                self.calls[key] += int(sample.value)
            for sample in _samples(families, "api_throttled", "_total"):
                self.throttled[sample.labels.get("service", "")] += int(sample.value)
            for sample in _samples(families, "held_refusals", ""):
                self.held[sample.labels.get("mode", "")] = int(sample.value)
            for sample in _samples(families, "pending_items", ""):
                self.pending[sample.labels.get("kind", "")] = int(sample.value)
            for sample in _samples(families, "last_success_timestamp_seconds", ""):
                self.last_success = sample.value
            for sample in _samples(families, "last_cycle_timestamp_seconds", ""):
                self.last_cycle = sample.value
            self._load_durations(families)

    def _load_durations(self, families: Mapping[str, Metric]) -> None:
        bounds = {_le(b): i for i, b in enumerate(DURATION_BUCKETS)}
        loaded: dict[str, _Histogram] = {}
        for sample in _samples(families, "cycle_duration_seconds", None):
            mode = sample.labels.get("mode", "")
            if mode not in MODES:
                continue
            h = loaded.setdefault(mode, _Histogram())
            if sample.name.endswith("_bucket"):
                le = sample.labels.get("le", "")
                if le in bounds:
                    h.buckets[bounds[le]] = sample.value
                elif le != "+Inf":
                    return  # other buckets (another version): start these afresh
            elif sample.name.endswith("_count"):
                h.count = sample.value
            elif sample.name.endswith("_sum"):
                h.total = sample.value
        self.durations.update(loaded)

    def load_textfile(self, path: Path) -> None:
        """Start from what the previous run wrote to `path` (before recording this one).

        Missing, unreadable, not ours or cut short: the counters restart, which
        Prometheus takes for a counter reset.
        """
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return
        with contextlib.suppress(ValueError):
            self.load_text(text)

    def write_textfile(self, path: Path) -> None:
        """Write the figures to `path` atomically (a temporary file renamed over it)."""
        write_to_textfile(os.fspath(path), self.registry())


def _samples(families: Mapping[str, Metric], name: str, suffix: str | None) -> Iterator[Sample]:
    family = families.get(f"{PREFIX}_{name}")
    if family is None:
        return
    for sample in family.samples:
        if suffix is None or sample.name == f"{PREFIX}_{name}{suffix}":
            yield sample


def _le(bound: float) -> str:
    """Prometheus' text form of a bucket bound (what the parser gives back)."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def pending_counts(state_dir: Path | StateLocation) -> dict[str, int] | None:
    """The retry queue by kind (session, contact), read-only; None if unreadable."""
    try:
        with Journal.open(state_dir, readonly=True) as journal:
            items = journal.pending()
    except StateError:
        return None
    return dict(Counter(item.kind for item in items))


class _Collector(Collector):
    def __init__(self, figures: Figures) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        return self._figures.collect()
