"""Markdown tables from benchmark result files, and the targets of issue 6 checked.

    python -m benchmarks.report benchmarks/results/N*.json [--update-doc docs/benchmarks.md]

Every figure printed here is read from a result file written by
`benchmarks.run`; nothing is typed in by hand. `--update-doc` replaces the
text between the `<!-- results:begin -->` and `<!-- results:end -->`
markers of the document.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"
PHASES = ("first", "settle", "steady", "churn", "full")
SERVICES = ("stripe", "mautic", "discord", "shopware", "espocrm")

#: Targets of issue 6.
STEADY_MAX_CALLS = 5
FULL_MAX_SECONDS_100K = 120.0
FIRST_MAX_FLOOR_RATIO = 1.1
FIRST_MAX_429_SHARE = 0.01
RSS_MAX_MB_100K = 200.0
N8N_MIN_RATIO = 4.0

#: The issue's round figure: one execution per change, about 8 API calls each.
N8N_FLAT_PER_CHANGE = 8

#: Idle runs on a churn day: a run every 15 minutes.
RUNS_PER_DAY = 96


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _n(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def _label(result: dict[str, Any]) -> str:
    """N, plus what differs from the standard benchmark (batches, limits, latency)."""
    from benchmarks.floor import Limits

    p = result["parameters"]
    notes = []
    if p.get("churn_batches", 1) > 1:
        notes.append(f"churn in {p['churn_batches']} runs")
    if p.get("latency") != 0.02:
        notes.append(f"{p['latency'] * 1000:g} ms")
    standard = Limits().to_dict()
    limits = p.get("limits", {})
    changed = {k for k, v in limits.items() if standard.get(k) != v}
    if changed & {"discord_invite_limit", "discord_invite_window"}:
        notes.append(
            f"Discord invites {limits['discord_invite_limit']} per "
            f"{limits['discord_invite_window']:g} s"
        )
    for key in sorted(changed - {"discord_invite_limit", "discord_invite_window"}):
        notes.append(f"{key}={limits[key]}")
    return _n(result["n"]) + (f" ({'; '.join(notes)})" if notes else "")


def _standard(result: dict[str, Any]) -> bool:
    """Run with the standard parameters (the targets are judged on these)."""
    return _label(result) == _n(result["n"])


#: Limits that only pace invite creation: a run that relaxed nothing else is
#: still judged on what they cannot change (a --full audit mints nothing).
_INVITE_PACE = frozenset({"discord_invite_limit", "discord_invite_window"})


def _standard_but_invite_pace(result: dict[str, Any]) -> bool:
    """Standard, except (perhaps) Discord's invite bucket."""
    from benchmarks.floor import Limits

    p = result["parameters"]
    standard = Limits().to_dict()
    changed = {k for k, v in p.get("limits", {}).items() if standard.get(k) != v}
    return p.get("latency") == 0.02 and p.get("concurrency", 4) == 4 and changed <= _INVITE_PACE


def _s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.2f}" if seconds < 10 else f"{seconds:.1f}"


def _pct(share: float) -> str:
    return f"{share * 100:.2f} %"


def _phases(results: Sequence[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], str, Any]]:
    """(result, phase name, phase) of every run measured, phases in their order."""
    for r in results:
        for name in PHASES:
            p = r["phases"].get(name)
            if p is not None:
                yield r, name, p


def phase_table(results: Sequence[dict[str, Any]]) -> str:
    rows = []
    for r, name, p in _phases(results):
        label = name if p.get("runs", 1) == 1 else f"{name} ({p['runs']} runs)"
        rows.append(
            (
                _label(r),
                label,
                _s(p["wall_seconds"]),
                _s(p["run_seconds"]),
                _s(p.get("cpu_seconds")),
                _s(p.get("sandbox_cpu_seconds")),
                p["total_calls"],
                p["reads"],
                p["writes"],
                f"{p['calls_per_contact']:.4f}",
                f"{p['throttled']} ({_pct(p['throttled_share'])})",
                f"{p['peak_rss_mb']:.0f}",
                p["planned"],
                _outcomes(p),
            )
        )
    return _table(
        (
            "N",
            "run",
            "wall s",
            "in-run s",
            "CPU s",
            "sandbox CPU s",
            "calls",
            "reads",
            "writes",
            "calls/contact",
            "429s",
            "peak RSS MB",
            "planned",
            "outcomes",
        ),
        rows,
    )


def _outcomes(p: dict[str, Any]) -> str:
    o = p.get("outcomes") or {}
    if not o:
        return "-"
    return ", ".join(f"{k} {v}" for k, v in sorted(o.items()))


def service_table(results: Sequence[dict[str, Any]]) -> str:
    rows = []
    for r, name, p in _phases(results):
        cells = []
        for s in SERVICES:
            c = p["calls"].get(s, {"reads": 0, "writes": 0, "throttled": 0})
            cell = f"{c['reads']} / {c['writes']}"
            if c.get("throttled"):
                cell += f" ({c['throttled']} x 429)"
            cells.append(cell)
        rows.append((_label(r), name, *cells))
    return _table(("N", "run", *(f"{s} r / w" for s in SERVICES)), rows)


def floor_table(results: Sequence[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        f = r.get("floor")
        first = r["phases"].get("first")
        if not f or not first:
            continue
        terms = []
        for service in SERVICES:
            t = f["services"].get(service, {})
            if t:
                best = max(t, key=lambda k: t[k])
                terms.append(f"{service} {_s(t[best])} ({best})")
        rows.append(
            (
                _label(r),
                _s(f["seconds"]),
                f["binding"],
                _s(first["wall_seconds"]),
                f"{first['wall_seconds'] / f['seconds']:.2f}x" if f["seconds"] else "-",
                "; ".join(terms),
            )
        )
    return _table(
        ("N", "floor s", "set by", "first run s", "first run / floor", "per service (s, term)"),
        rows,
    )


def route_table(result: dict[str, Any], phase: str) -> str:
    p = result["phases"].get(phase)
    if p is None:
        return ""
    rows = []
    for service in SERVICES:
        seen = p["server"].get(service, {})
        spans = seen.get("spans", {})
        for route, count in sorted(seen.get("routes", {}).items(), key=lambda kv: -kv[1]):
            span = spans.get(route)
            when = f"{_s(span[0])} - {_s(span[1])}" if span else "-"
            rows.append((service, f"`{route}`", count, when))
        if seen.get("throttled"):
            rows.append((service, "429 answers", seen["throttled"], ""))
    table = _table(("service", "route (server side)", "calls", "first - last answer, s"), rows)
    timeline = p.get("rss_timeline") or []
    if timeline:
        step = max(1, len(timeline) // 12)
        points = timeline[::step]
        peak = max(timeline, key=lambda sample: sample[1])
        if peak not in points:
            points = sorted([*points, peak])
        table += "\n\nRSS samples (s: MB): " + ", ".join(f"{t:g}: {m:.0f}" for t, m in points)
    return table


def churn_table(result: dict[str, Any]) -> str:
    churn = result.get("churn")
    p = result["phases"].get("churn")
    if not churn or p is None:
        return ""
    rows = [
        (
            row["kind"],
            row["changes"],
            row["executions"],
            row["per_change"],
            row["api_calls"],
            row["how"],
        )
        for row in churn["n8n"]["rows"]
    ]
    total = churn["n8n"]["total"]
    rows.append(("**total**", total["changes"], total["executions"], "", total["api_calls"], ""))
    return _table(
        ("change", "count", "n8n executions", "n8n calls each", "n8n calls", "derivation"), rows
    )


#: Planned actions that are a side effect of their own: each costs one call
#: whatever the design (Mautic sends one email per call, Discord mints one
#: invite, Espo creates one lead...). Contact edits are not among them: they
#: go to Mautic in batches.
SIDE_EFFECT_KINDS = frozenset(
    {
        "create_coupon",
        "create_contact",
        "send_email",
        "issue_invite",
        "revoke_invite",
        "create_lead",
    }
)


def side_effects(phase: dict[str, Any]) -> int:
    """How many one-call side effects a run planned: the fewest calls it could make."""
    return sum(
        count
        for kind, count in phase.get("planned_kinds", {}).items()
        if kind.split(":", 1)[0] in SIDE_EFFECT_KINDS
    )


def comparison(result: dict[str, Any]) -> dict[str, Any] | None:
    churn = result.get("churn")
    p = result["phases"].get("churn")
    if not churn or p is None:
        return None
    total = churn["n8n"]["total"]
    changes = total["changes"]
    steady = result["phases"].get("steady", {}).get("total_calls", 0)
    full = result["phases"].get("full", {}).get("total_calls", 0)
    runs = p.get("runs", 1)
    idle = max(0, RUNS_PER_DAY - runs) * steady
    ours = {
        "churn runs only": p["total_calls"],
        f"+ idle runs ({RUNS_PER_DAY} runs/day)": p["total_calls"] + idle,
        "+ idle runs + nightly --full": p["total_calls"] + idle + full,
    }
    return {
        "changes": changes,
        "side_effects": side_effects(p),
        "n8n_flat": N8N_FLAT_PER_CHANGE * changes,
        "n8n": total["api_calls"],
        "n8n_per_change": total["api_calls"] / changes if changes else 0.0,
        "ours": ours,
    }


def comparison_table(results: Sequence[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        c = comparison(r)
        if c is None:
            continue
        churn = r["phases"]["churn"]
        writes = churn["writes"] / c["changes"] if c["changes"] else 0.0
        least = c["side_effects"] / c["changes"] if c["changes"] else 0.0
        for label, calls in c["ours"].items():
            per = calls / c["changes"] if c["changes"] else 0.0
            ratio = c["n8n_per_change"] / per if per else float("inf")
            flat = N8N_FLAT_PER_CHANGE / per if per else float("inf")
            rows.append(
                (
                    _label(r),
                    churn.get("runs", 1),
                    c["changes"],
                    f"{c['n8n']} ({c['n8n_per_change']:.2f})",
                    label,
                    f"{calls} ({per:.2f})",
                    f"{writes:.2f}",
                    f"{c['side_effects']} ({least:.2f})",
                    f"{ratio:.1f}x",
                    f"{flat:.1f}x",
                )
            )
    return _table(
        (
            "N",
            "churn runs",
            "changes",
            "n8n calls, derived (per change)",
            "syncctl counted",
            "syncctl calls (per change)",
            "syncctl writes per change",
            "side effects, one call each at least (per change)",
            "fewer than derived n8n",
            f"fewer than {N8N_FLAT_PER_CHANGE}/change",
        ),
        rows,
    )


TARGETS = (
    "steady state: <= 5 calls, 0 writes, at every N",
    "--full: reads only; at 100k under 2 min",
    "first run: <= 1.1x the floor; <= 1 % 429s",
    "peak RSS < 200 MB at 100k",
    ">= 4x fewer calls per contact change than n8n",
)


def targets(results: Sequence[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(target, N, measured, verdict) for every target of issue 6 and every run.

    Verdicts are given for runs with the standard parameters; the others
    are shown for reference, except that a run which only relaxed Discord's
    invite bucket is judged on the steady state, the --full audit and
    memory, which that bucket cannot change.
    """
    rows: list[tuple[int, int, tuple[str, str, str, str]]] = []

    def add(
        target: int, r: dict[str, Any], measured: str, ok: bool | None, *, pace_free: bool = False
    ) -> None:
        judged = _standard(r) or (pace_free and _standard_but_invite_pace(r))
        if not judged:
            word = "(for reference)"
        elif ok is None:
            word = "n/a"
        else:
            word = "**met**" if ok else "**not met**"
        rows.append((target, r["n"], (TARGETS[target], _label(r), measured, word)))

    for r in results:
        n, ph = r["n"], r["phases"]
        steady = ph.get("steady")
        if steady:
            ok = steady["total_calls"] <= STEADY_MAX_CALLS and steady["writes"] == 0
            add(
                0,
                r,
                f"{steady['total_calls']} calls, {steady['writes']} writes",
                ok,
                pace_free=True,
            )
        full = ph.get("full")
        if full:
            measured = f"{full['writes']} writes, {_s(full['wall_seconds'])} s"
            if full["writes"]:
                kinds = "; ".join(f"{k} ({v})" for k, v in full["planned_kinds"].items())
                measured += f" (planned: {kinds})"
            ok = full["writes"] == 0
            if n >= 100_000:
                ok = ok and full["wall_seconds"] < FULL_MAX_SECONDS_100K
            add(1, r, measured, ok, pace_free=True)
        first, f = ph.get("first"), r.get("floor")
        if first and f and f["seconds"]:
            ratio = first["wall_seconds"] / f["seconds"]
            share = first["throttled_share"]
            ok = ratio <= FIRST_MAX_FLOOR_RATIO and share <= FIRST_MAX_429_SHARE
            measured = (
                f"{ratio:.2f}x: {_s(first['wall_seconds'])} s for a floor of "
                f"{_s(f['seconds'])} s ({f['binding']}); 429s {_pct(share)}"
            )
            add(2, r, measured, ok)
        if ph:
            name, peak = max(((k, p["peak_rss_mb"]) for k, p in ph.items()), key=lambda kv: kv[1])
            ok = peak < RSS_MAX_MB_100K if n >= 100_000 else None
            add(3, r, f"{peak:.0f} MB ({name} run)", ok, pace_free=True)
        c = comparison(r)
        if c is not None:
            calls = c["ours"]["churn runs only"]
            per = calls / c["changes"] if c["changes"] else 0.0
            ratio = c["n8n_per_change"] / per if per else float("inf")
            flat = N8N_FLAT_PER_CHANGE / per if per else float("inf")
            least = c["side_effects"] / c["changes"] if c["changes"] else 0.0
            bound = c["n8n_per_change"] / least if least else float("inf")
            measured = (
                f"{flat:.1f}x fewer than the issue's {N8N_FLAT_PER_CHANGE} per change "
                f"({per:.2f} calls per change); {ratio:.1f}x fewer than the derived n8n "
                f"cost ({c['n8n_per_change']:.2f}), where one call per side effect "
                f"({least:.2f} per change) would be {bound:.1f}x"
            )
            add(4, r, measured, flat >= N8N_MIN_RATIO)
    rows.sort(key=lambda row: (row[0], row[1]))
    return [row for _, _, row in rows]


def parameters(results: Sequence[dict[str, Any]]) -> str:
    seen = []
    for r in results:
        p, m = r["parameters"], r["machine"]
        seen.append(
            f"- N={_label(r)}: `{r.get('command', '')}`; latency {p['latency'] * 1000:.0f} ms, "
            f"concurrency {p['concurrency']}, seed {p['seed']}, churn in "
            f"{p['churn_batches']} run(s); {r['campaign']['sessions']} sessions, "
            f"{r['campaign']['needing_action']} contacts needing action; seeded in "
            f"{r['seed_seconds']} s; {m['cpus']} CPUs, Python {m['python']}, {m['platform']}; "
            f"code {_code(r)}; started {r['started_at']}"
        )
    return "\n".join(seen)


def _code(result: dict[str, Any]) -> str:
    code = result.get("code") or {}
    if not code.get("commit"):
        return "unknown"
    dirty = f" + uncommitted src changes {code['src_diff_sha']}" if code.get("src_dirty") else ""
    return f"{code['commit']}{dirty}"


def render(results: Sequence[dict[str, Any]]) -> str:
    results = sorted(results, key=lambda r: (r["n"], r["parameters"]["churn_batches"]))
    parts = [
        "_Generated by `python -m benchmarks.report` from the result files; do not edit._",
        "",
        "### Runs measured",
        "",
        parameters(results),
        "",
        "### Targets of issue 6",
        "",
        _table(("target", "N", "measured", "verdict"), targets(results)),
        "",
        "### Every run",
        "",
        "`wall s` is the child process from start to exit (interpreter start included); "
        "`in-run s` is the reconcile itself; `CPU s` is the reconciler's CPU time, `sandbox "
        "CPU s` the emulators' (the benchmark process). `429s` is the share of all calls; "
        "`peak RSS` is the reconciler's VmHWM.",
        "",
        phase_table(results),
        "",
        "### Calls per service (reads / writes)",
        "",
        service_table(results),
        "",
        "### First run against its floor",
        "",
        floor_table(results),
        "",
        "### Calls per contact change: syncctl vs one n8n execution per change",
        "",
        comparison_table(results),
        "",
    ]
    for r in results:
        table = churn_table(r)
        if table:
            parts += [f"n8n's cost of the day of churn at N={_label(r)}:", "", table, ""]
    for r in results:
        for phase in ("first", "steady", "churn", "full"):
            table = route_table(r, phase)
            if table:
                parts += [
                    f"<details><summary>N={_label(r)} {phase}: calls by route</summary>",
                    "",
                    table,
                    "",
                    "</details>",
                    "",
                ]
    return "\n".join(parts)


def summary(result: dict[str, Any]) -> str:
    return "\n\n".join(
        (
            _table(("target", "N", "measured", "verdict"), targets([result])),
            phase_table([result]),
            floor_table([result]),
            comparison_table([result]),
        )
    )


def load(paths: Iterable[Path]) -> list[dict[str, Any]]:
    return [json.loads(Path(p).read_text()) for p in paths]


def update_doc(doc: Path, paths: Iterable[Path]) -> None:
    text = doc.read_text() if doc.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{render(load(paths))}\n{END}{tail}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report")
    parser.add_argument("results", type=Path, nargs="+")
    parser.add_argument("--update-doc", type=Path)
    args = parser.parse_args(argv)
    if args.update_doc:
        update_doc(args.update_doc, args.results)
    else:
        sys.stdout.write(render(load(args.results)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
