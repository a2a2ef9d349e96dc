"""Can this state directory be used? Checked before anything is created in it.

A `state_dir` that is a file, lies under a file, or sits where this user
(or a read-only file system) forbids writing is a config mistake: every
command that needs the state refuses it at once, with one line and exit 2,
and `doctor` fails it with the same words. The check creates nothing, so
doctor and dry runs stay read-only.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from syncctl.errors import StateDirUnusable

FIX = "point [run] state_dir at a directory syncctl may create and write, or fix that path"


def state_dir_problem(path: Path, *, write: bool = True) -> str | None:
    """Why `path` cannot be the state directory, or None.

    An existing `path` must be a directory, writable when `write`; a missing
    one needs its nearest existing ancestor to be a directory syncctl may
    create entries in. Permission bits are asked of the kernel (`os.access`),
    so for root only what stops root counts: a file in the way, a read-only
    file system.
    """
    probe = Path(path)
    while True:
        try:
            mode = probe.stat().st_mode
            break
        except (FileNotFoundError, NotADirectoryError):
            if probe.parent == probe:
                return f"{path} cannot be created: none of its folders exists"
            probe = probe.parent
        except OSError as exc:
            return f"{path} cannot be used: {probe}: {exc.strerror or exc}"
    exists = probe == Path(path)
    if not stat.S_ISDIR(mode):
        if exists:
            return f"{path} is a file, not a directory"
        return f"{path} cannot be created: {probe} is a file, not a directory"
    if exists and not write:
        return None
    if not _may_write(probe):
        why = "is on a read-only file system" if _read_only(probe) else "is not writable"
        return f"{path} {why}" if exists else f"{path} cannot be created: {probe} {why}"
    return None


def check_state_dir(path: Path, *, write: bool = True) -> None:
    """Raise StateDirUnusable (exit 2) with one line when `path` cannot be used."""
    problem = state_dir_problem(path, write=write)
    if problem is not None:
        raise StateDirUnusable(f"state_dir {problem}", hint=FIX)


def _may_write(directory: Path) -> bool:
    """May this process create entries in `directory`? (The kernel's answer.)"""
    return os.access(directory, os.W_OK | os.X_OK)


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False
