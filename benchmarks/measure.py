"""One reconcile run in a child process, with its wall time and peak RSS.

The reconciler runs as the `syncctl` command line (`python -m syncctl ...
reconcile --json`), exactly as cron would run it, against the sandbox the
benchmark process serves.

Peak RSS: not `ru_maxrss`. subprocess starts children with vfork, and Linux
carries the high-water mark of the memory image a process had before
`execve` over into its `ru_maxrss` (both RUSAGE_CHILDREN and the child's own
RUSAGE_SELF): every child would report at least the benchmark process's own
RSS (the sandbox: ~450 MB at 100k contacts). A tiny launcher makes the child
write `VmHWM` from /proc/self/status at exit instead: the peak resident set
of its own image since `execve`, threads included. CPU time still comes
from `os.wait4`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncctl.config import SECRET_NAMES

#: The secrets come from the campaign's .env; nothing leaks in from the caller's shell.
_SCRUB = (*SECRET_NAMES, "SYNCCTL_CONFIG")


#: Runs `python -m syncctl ARGS...`; at exit, writes VmHWM (kB) to $SYNCCTL_BENCH_HWM.
#: With $SYNCCTL_BENCH_PROFILE, runs it under cProfile into that file.
_LAUNCHER = """
import atexit, os, runpy, sys

def _peak():
    with open("/proc/self/status") as status:
        kb = next((l.split()[1] for l in status if l.startswith("VmHWM:")), "")
    with open(os.environ["SYNCCTL_BENCH_HWM"], "w") as out:
        out.write(kb)

atexit.register(_peak)
sys.argv = ["syncctl", *sys.argv[1:]]
profile = os.environ.get("SYNCCTL_BENCH_PROFILE")
if profile:
    import cProfile
    profiler = cProfile.Profile()
    atexit.register(lambda: profiler.dump_stats(profile))
    profiler.enable()
runpy.run_module("syncctl", run_name="__main__", alter_sys=True)
"""


@dataclass
class RunOutput:
    exit_code: int
    wall: float  # seconds, process start to exit
    peak_rss_mb: float
    document: dict[str, Any]
    stderr_tail: str = ""
    cpu_seconds: float = 0.0
    #: (seconds since start, VmRSS MB) samples, about every half second.
    rss_timeline: list[tuple[float, float]] = field(default_factory=list)


def run_reconcile(
    config: Path,
    env_file: Path,
    *,
    full: bool = False,
    timeout: float | None = None,
    profile: Path | None = None,
    pythonpath: Path | None = None,
) -> RunOutput:
    """`syncctl reconcile --json` in a child process; its JSON document and usage.

    `pythonpath`: a directory holding a copy of the `syncctl` package to run
    instead of the installed one.
    """
    cmd = [sys.executable, "-c", _LAUNCHER]
    cmd += ["--config", str(config), "--env-file", str(env_file), "reconcile", "--json"]
    cmd += ["--max-actions", "100000000"]
    if full:
        cmd.append("--full")
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env["NO_COLOR"] = "1"
    hwm_fd, hwm_name = tempfile.mkstemp(prefix="syncctl-bench-hwm-")
    os.close(hwm_fd)
    env["SYNCCTL_BENCH_HWM"] = hwm_name
    if profile is not None:
        env["SYNCCTL_BENCH_PROFILE"] = str(profile)
    if pythonpath is not None:  # a frozen copy of the code: every phase runs the same
        env["PYTHONPATH"] = str(pythonpath)
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
    ):
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=config.parent)
        deadline = None if timeout is None else started + timeout
        timeline: list[tuple[float, float]] = []
        next_sample = started
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            now = time.monotonic()
            if now >= next_sample:
                rss = _vm_rss_mb(proc.pid)
                if rss:
                    timeline.append((round(now - started, 2), rss))
                next_sample = now + 0.5
            if deadline is not None and time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        raw = out.read()
        stderr = err.read().decode("utf-8", "replace")
    try:
        document = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError:
        document = {}
    hwm = Path(hwm_name)
    try:
        peak_kb = float(hwm.read_text() or "nan")
    except ValueError:
        peak_kb = float("nan")
    finally:
        hwm.unlink(missing_ok=True)
    return RunOutput(
        exit_code=proc.returncode,
        wall=wall,
        peak_rss_mb=peak_kb / 1024.0,
        document=document,
        stderr_tail=stderr[-2000:],
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        rss_timeline=timeline,
    )


def _vm_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024.0, 1)
    except (OSError, ValueError):
        return None
    return None
