"""The console script's first lines: Ctrl-C while syncctl starts is one line, exit 130.

Importing the CLI takes most of a second. A Ctrl-C in that time used to end
in a traceback; and one that landed inside Python's import machinery was
swallowed ("Exception ignored"), after which the run went on and applied
everything. The handler here remembers the interrupt (`INTERRUPTED`) before
raising it, so a run that starts anyway stops before its first action.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

#: Set by a Ctrl-C (or SIGTERM) that arrived before a command took over the signals.
INTERRUPTED = threading.Event()


def _remember(signum: int, frame: FrameType | None) -> None:
    INTERRUPTED.set()
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _remember)
    try:
        from syncctl.cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("syncctl: interrupted\n")
        raise SystemExit(130) from None
    cli_main()
