"""/healthz, /metrics, and `reconcile --metrics-file` for timer mode."""

from __future__ import annotations

import os
import threading

import httpx
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from syncctl.cli import app
from syncctl.errors import LockBusy
from syncctl.service import loop as loop_mod
from syncctl.service.loop import LoopOptions

FAMILIES = {
    "syncctl_cycles",
    "syncctl_last_success_timestamp_seconds",
    "syncctl_actions",
    "syncctl_api_calls",
    "syncctl_api_throttled",
    "syncctl_pending_items",
    "syncctl_held_refusals",
    "syncctl_cycle_duration_seconds",
}


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(family, **labels) -> float:
    return sum(
        s.value
        for s in family.samples
        if s.name.endswith("_total") or s.name == family.name
        if all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_healthz_is_200_once_a_cycle_finished(watching) -> None:
    service, _ = watching(settled=1)
    answer = httpx.get(f"{service.url}/healthz")
    assert answer.status_code == 200
    assert answer.text.startswith("ok: last cycle ok")


def test_healthz_is_503_when_no_cycle_finished_within_the_bound(watching) -> None:
    def busy(config, **kwargs):  # a timer run that holds the lock for ever
        raise LockBusy("another syncctl run holds /state/lock (pid 4242)")

    options = LoopOptions(interval=0.1, busy_retry=0.05, health_slack=0.2)
    service, _ = watching(options, run=busy, settled=0)
    assert httpx.get(f"{service.url}/healthz").status_code == 200  # starting
    threading.Event().wait(0.7)
    answer = httpx.get(f"{service.url}/healthz")
    assert answer.status_code == 503
    assert "another syncctl run has held the lock" in answer.text and "pid 4242" in answer.text


def test_healthz_is_503_when_a_cycle_runs_too_long(watching, monkeypatch) -> None:
    release = threading.Event()

    def stuck(config, **kwargs):
        release.wait(5)
        raise LockBusy("released")

    monkeypatch.setitem(loop_mod.RUN_ALLOWANCE, "incremental", 0.2)
    monkeypatch.setitem(loop_mod.RUN_ALLOWANCE, "full", 0.2)
    service, _ = watching(LoopOptions(interval=5), run=stuck, settled=0)
    threading.Event().wait(0.4)
    answer = httpx.get(f"{service.url}/healthz")
    release.set()
    assert answer.status_code == 503
    assert "cycle has been running for" in answer.text


def test_healthz_is_503_when_the_loop_is_not_running(watching) -> None:
    service, _ = watching(settled=1)
    service.loop.alive = False  # as after an unexpected end
    service.loop.crashed = "RuntimeError: boom"
    answer = httpx.get(f"{service.url}/healthz")
    assert answer.status_code == 503
    assert "the cycle loop is not running (RuntimeError: boom)" in answer.text


def test_metrics_parse_and_carry_the_named_families(watching) -> None:
    service, cycles = watching()
    answer = httpx.get(f"{service.url}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    found = families(answer.text)
    assert set(found) >= FAMILIES | {"syncctl_webhook_requests", "process_resident_memory_bytes"}
    assert value(found["syncctl_cycles"], outcome="ok") == len(cycles)
    assert value(found["syncctl_actions"], kind="send_email", outcome="done") > 0
    assert value(found["syncctl_api_calls"], service="mautic", access="write") > 0
    assert found["syncctl_last_success_timestamp_seconds"].samples


def test_each_service_counts_in_a_registry_of_its_own(watching) -> None:
    first, _ = watching(settled=1)
    second, _ = watching(settled=1)
    assert first.registry is not second.registry
    assert first.figures is not second.figures


def _run_with_metrics(config, path, *args: str):
    env_file = config.path.parent / ".env"
    return CliRunner().invoke(
        app,
        [
            "--config",
            str(config.path),
            "--env-file",
            str(env_file),
            "reconcile",
            "--metrics-file",
            str(path),
            *args,
        ],
    )


def test_reconcile_metrics_file_is_written_atomically_and_adds_up(
    campaign, tmp_path, monkeypatch
) -> None:
    path = tmp_path / "textfile" / "syncctl.prom"
    path.parent.mkdir()
    renamed: list[tuple[str, str]] = []
    real_rename = os.rename

    def watch_rename(src, dst):
        renamed.append((str(src), str(dst)))
        return real_rename(src, dst)

    # write_to_textfile: a temporary file beside it, renamed over the target.
    monkeypatch.setattr(os, "rename", watch_rename)
    assert _run_with_metrics(campaign, path).exit_code == 0
    assert _run_with_metrics(campaign, path).exit_code == 0
    monkeypatch.undo()
    assert [dst for _, dst in renamed] == [str(path)] * 2
    assert all(src != dst and src.startswith(str(path)) for src, dst in renamed)
    assert sorted(p.name for p in path.parent.iterdir()) == ["syncctl.prom"]
    found = families(path.read_text())
    assert set(found) >= FAMILIES
    assert value(found["syncctl_cycles"], mode="full", outcome="ok") == 1  # the first run
    assert value(found["syncctl_cycles"], mode="incremental", outcome="ok") == 1
    count = [
        s for s in found["syncctl_cycle_duration_seconds"].samples if s.name.endswith("_count")
    ]
    assert sum(s.value for s in count) == 2


def test_a_busy_lock_is_counted_in_the_metrics_file(campaign, tmp_path) -> None:
    from syncctl.state.lock import state_lock

    path = tmp_path / "syncctl.prom"
    with state_lock(campaign.settings.run.state_path):
        assert _run_with_metrics(campaign, path).exit_code == 3
    found = families(path.read_text())
    assert value(found["syncctl_cycles"], mode="incremental", outcome="busy") == 1


def test_metrics_file_with_a_dry_run_is_a_usage_error(campaign, tmp_path) -> None:
    result = _run_with_metrics(campaign, tmp_path / "x.prom", "--dry-run")
    assert result.exit_code == 2
    assert not (tmp_path / "x.prom").exists()
