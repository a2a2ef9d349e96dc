"""A syncctl command run as a real process, signalled mid-work (SIGINT, SIGTERM)."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Stopped:
    returncode: int
    #: Everything it wrote on stderr.
    text: str
    #: Seconds from the signal to its exit.
    took: float


def signal_after_first_action(
    config_path: Path, env_path: Path, args: list[str], signum: int, *, timeout: float = 60
) -> Stopped:
    """Start `syncctl ARGS`, send `signum` once it logged its first applied action."""
    command = [
        sys.executable, "-m", "syncctl", "--config", str(config_path),
        "--env-file", str(env_path), *args,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    seen: list[str] = []
    selector = selectors.DefaultSelector()
    selector.register(proc.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while not any("outcome=done" in line for line in seen):
        assert time.monotonic() < deadline and proc.poll() is None, seen
        if selector.select(timeout=1):
            seen.append(proc.stderr.readline())
    sent = time.monotonic()
    proc.send_signal(signum)
    _, rest = proc.communicate(timeout=30)
    return Stopped(proc.returncode, "".join(seen) + rest, time.monotonic() - sent)
