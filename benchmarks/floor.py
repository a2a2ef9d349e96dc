"""The vendor limits the benchmark runs under, and the floor they set on a run.

The floor is a lower bound on the wall time of a run that makes a given set
of calls, whatever the reconciler's design: each service can be worked on at
the same time as the others, so the run takes at least as long as its
slowest service, and a service takes at least the longest of

- latency: its calls x L / c, with c calls in flight at once (`[run]
  concurrency`, per service);
- paging: each keyset-paged list is a chain (a page's cursor comes from the
  one before), so a list of p pages takes p x L;
- its rate limits: a token bucket of r/s with a burst of b passes n calls in
  (n - b) / r seconds; a fixed window of k calls per w seconds passes n
  calls in (ceil(n / k) - 1) x w (Discord: each channel's invite bucket, the
  other route buckets, the global limit; Mautic: the hourly limiter).

Calls are counted on the server side (the emulators), 429 answers excluded,
so the floor is that of the calls the run needed, not of its retries.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from syncctl.sandbox.stack import BASIC_CHANNEL_ID, VIP_CHANNEL_ID


@dataclass(frozen=True)
class Limits:
    """Vendor rate limits applied by the emulators (docs/benchmarks.md: why these)."""

    #: Stripe: 25 requests/s (test mode's global limit and live mode's
    #: per-endpoint default); token bucket, burst of one second's worth.
    stripe_per_second: float | None = 25.0
    #: Discord: create-invite bucket per channel (not documented; observed 5 per 5 s).
    discord_invite_limit: int = 5
    discord_invite_window: float = 5.0
    #: Discord: the other invite routes' buckets, per major parameter.
    discord_route_limit: int = 50
    discord_route_window: float = 1.0
    #: Discord: global limit per bot (documented: 50 requests/s).
    discord_global_per_second: int = 50
    #: Mautic: api_rate_limiter_limit per hour; 0 = off (Mautic's default).
    mautic_per_hour: int = 0
    # Shopware and EspoCRM document no request rate limit: none is applied.

    def emulator_options(self) -> dict[str, dict[str, Any]]:
        return {
            "stripe": {"rate_limit_per_second": self.stripe_per_second},
            "discord": {
                "invite_bucket_limit": self.discord_invite_limit,
                "invite_bucket_window": self.discord_invite_window,
                "route_bucket_limit": self.discord_route_limit,
                "route_bucket_window": self.discord_route_window,
                "global_limit_per_second": self.discord_global_per_second,
            },
            "mautic": {"rate_limit_per_hour": self.mautic_per_hour},
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Keyset- or cursor-paged list routes: each is a chain of dependent pages.
PAGED = {
    "stripe": ("GET /v1/checkout/sessions", "GET /v1/events"),
    "mautic": ("GET /api/contacts", "GET /api/stats/email_stats"),
    "shopware": ("POST /api/search/promotion-individual-code",),
    "espocrm": ("GET /api/v1/Lead",),
    "discord": (),
}


def _windows(n: int, limit: int, window: float) -> float:
    return (math.ceil(n / limit) - 1) * window if n > limit else 0.0


def floor(
    traffic: dict[str, Any], *, latency: float, concurrency: int, limits: Limits
) -> dict[str, Any]:
    """The floor of a run from its server-side route counts (see the module docstring)."""
    per_service: dict[str, dict[str, float]] = {}
    for service, seen in traffic.items():
        routes: dict[str, int] = seen["routes"]
        calls = sum(routes.values())
        terms = {
            "latency": calls * latency / max(1, concurrency),
            "paging": max((routes.get(r, 0) for r in PAGED.get(service, ())), default=0) * latency,
        }
        if service == "stripe" and limits.stripe_per_second:
            burst = max(1.0, limits.stripe_per_second)
            terms["rate"] = max(0.0, calls - burst) / limits.stripe_per_second
        if service == "mautic" and limits.mautic_per_hour:
            terms["rate"] = _windows(calls, limits.mautic_per_hour, 3600.0)
        if service == "discord":
            for channel, label in ((BASIC_CHANNEL_ID, "basic"), (VIP_CHANNEL_ID, "vip")):
                creates = routes.get(f"POST /api/v10/channels/{channel}/invites", 0)
                terms[f"invites {label}"] = _windows(
                    creates, limits.discord_invite_limit, limits.discord_invite_window
                ) + (latency if creates else 0.0)
            revokes = routes.get("DELETE /api/v10/invites/{id}", 0)
            terms["revokes"] = _windows(
                revokes, limits.discord_route_limit, limits.discord_route_window
            )
            terms["global"] = _windows(calls, limits.discord_global_per_second, 1.0)
        per_service[service] = terms
    best_service, best_term, best = "", "", 0.0
    for service, terms in per_service.items():
        for term, seconds in terms.items():
            if seconds > best:
                best_service, best_term, best = service, term, seconds
    return {
        "seconds": best,
        "binding": f"{best_service} {best_term}".strip(),
        "services": {
            s: {k: round(v, 3) for k, v in terms.items()} for s, terms in per_service.items()
        },
    }
