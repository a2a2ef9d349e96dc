"""`syncctl watch`, the long-running mode: the same reconcile, run in seconds.

The layout shows the split:

- `loop`: when to run a cycle (interval, wake-ups, the daily audit, backoff,
  a busy lock) and the health that follows from it; every cycle is
  `syncctl.engine.reconcile.reconcile`, the engine `syncctl reconcile` runs;
- `wakeup`: the coalescing flag between the webhooks and the loop;
- `http`: the signed webhook paths (wake-ups only: bodies are never data),
  /healthz and /metrics, on the standard library's threading server;
- `metrics`: the figures, for /metrics and for `reconcile --metrics-file`;
- `watch`: the pieces assembled, start-up checks, signals.

Imports go one way: this package uses the engine, the state and the
clients; nothing below it imports it.
"""

from syncctl.service.watch import WatchService

__all__ = ["WatchService"]
