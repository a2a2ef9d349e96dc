"""The folder `syncctl sandbox serve` writes its syncctl.toml and .env into.

`--dir` defaults to the current folder, which may be a real campaign's: its
`.env` holds the real keys and `SYNCCTL_CODE_SECRET`, and losing that secret
means new coupon codes for every past purchase. So:

- a syncctl.toml or .env the sandbox wrote (it starts with `MARKER`) is
  replaced; any other one is refused and nothing is written. With `--force`
  each is first kept as `<name>.bak-<UTC time>` (a hard link, so the file is
  never missing), and a line says so, naming `SYNCCTL_CODE_SECRET` when the
  old .env held it;
- the state dir (`.syncctl-state`) of an earlier sandbox is removed: the new
  services start empty or freshly seeded, and the old journal and cursors
  would make the first run an incremental one that misses the seeded
  purchases. One that a config not written by the sandbox used is moved
  aside instead. Either way a line says so, and a run still using it (its
  lock) stops the serve before anything is written;
- both files are written next to the targets, then renamed over them: a
  failure leaves the old files as they were.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from syncctl.errors import LockBusy, StateError, UsageError
from syncctl.state.location import state_dir_problem
from syncctl.state.lock import state_lock

#: First line of every file the sandbox writes.
MARKER = "# Written by `syncctl sandbox`"
CONFIG_NAME = "syncctl.toml"
ENV_NAME = ".env"
STATE_NAME = ".syncctl-state"


@dataclass(frozen=True)
class Workdir:
    """What `inspect` found in the folder; `install` acts on it."""

    directory: Path
    #: Existing syncctl.toml / .env the sandbox did not write (allowed by --force).
    foreign: tuple[Path, ...] = ()
    #: The existing syncctl.toml is the sandbox's, so its state dir is too.
    sandbox_config: bool = False

    @property
    def config_path(self) -> Path:
        return self.directory / CONFIG_NAME

    @property
    def env_path(self) -> Path:
        return self.directory / ENV_NAME

    @property
    def state_dir(self) -> Path:
        """Absolute: the same state dir whichever folder syncctl runs from."""
        return self.directory.absolute() / STATE_NAME


def inspect(directory: Path, *, force: bool) -> Workdir:
    """Check the folder before any server starts; raise with one line if it cannot be used."""
    problem = state_dir_problem(directory)
    if problem is not None:
        raise StateError(f"--dir {problem}; nothing was written", hint="choose another --dir")
    found = Workdir(directory)
    foreign = [p for p in (found.config_path, found.env_path) if _foreign(p)]
    if foreign and not force:
        names = " and ".join(str(p) for p in foreign)
        one = len(foreign) == 1
        raise UsageError(
            f"{names} {'exists' if one else 'exist'} and {'was' if one else 'were'} not written "
            "by the sandbox; nothing was written",
            hint=f"use another --dir, or --force to keep {'it' if one else 'them'} as "
            "<name>.bak-<time> and write the sandbox's files",
        )
    sandbox_config = found.config_path.exists() and found.config_path not in foreign
    return Workdir(directory, tuple(foreign), sandbox_config)


def install(found: Workdir, files: Mapping[str, tuple[str, int]]) -> list[str]:
    """Reset the state dir, keep foreign files, write `files` (name -> (text, mode)).

    Returns one line per thing the operator should know about.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        found.directory.mkdir(parents=True, exist_ok=True)
        staged = _stage(found.directory, files)
        try:
            notes = _reset_state_dir(found, stamp)
            notes += [_keep(path, stamp) for path in found.foreign]
            for tmp, target in staged:
                os.replace(tmp, target)
        finally:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise StateError(
            f"cannot write into {found.directory}: {exc.strerror or exc}",
            hint="choose another --dir, or fix its permissions",
        ) from None
    return notes


def write_files(directory: Path, files: Mapping[str, tuple[str, int]]) -> None:
    """Write `files` into `directory` all or nothing (each via a renamed temporary file)."""
    directory.mkdir(parents=True, exist_ok=True)
    staged = _stage(directory, files)
    try:
        for tmp, target in staged:
            os.replace(tmp, target)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


# -- helpers -----------------------------------------------------------------------------------


def _foreign(path: Path) -> bool:
    """An existing file that does not start with the sandbox's marker."""
    try:
        if not path.exists():
            return False
        if not path.is_file():
            raise StateError(f"{path} is not a regular file", hint="choose another --dir")
        with path.open(encoding="utf-8", errors="replace") as stream:
            return not stream.readline().startswith(MARKER)
    except OSError as exc:
        raise StateError(
            f"cannot read {path}: {exc.strerror or exc}", hint="choose another --dir"
        ) from None


def _stage(directory: Path, files: Mapping[str, tuple[str, int]]) -> list[tuple[Path, Path]]:
    """Each file's text in a temporary file beside its target, created with its mode."""
    staged: list[tuple[Path, Path]] = []
    try:
        for name, (text, mode) in files.items():
            target = directory / name
            tmp = directory / f".{name}.tmp{os.getpid()}"
            staged.append((tmp, target))
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                stream.write(text)
            os.chmod(tmp, mode)  # the umask may have narrowed it
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    return staged


def _reset_state_dir(found: Workdir, stamp: str) -> list[str]:
    state = found.state_dir
    if not state.is_dir():
        return []
    aside = _free_name(state, f"bak-{stamp}")
    why = "the new services start afresh, so the first run is a full one"
    try:
        with state_lock(state):  # no run may be using it
            state.rename(aside)
    except LockBusy:
        raise LockBusy(
            f"a syncctl run is using {state}; nothing was written",
            hint="let it finish (or stop it), then serve again",
        ) from None
    if found.sandbox_config:
        shutil.rmtree(aside, ignore_errors=True)
        return [f"cleared the previous sandbox's state dir {state}: {why}"]
    return [f"moved the state dir {state} aside to {aside.name}: {why}"]


def _keep(path: Path, stamp: str) -> str:
    """Hard-link `path` to a backup name, so replacing it loses nothing."""
    backup = _free_name(path, f"bak-{stamp}")
    try:
        os.link(path, backup, follow_symlinks=False)
    except OSError:  # a file system without hard links: a copy, mode kept
        shutil.copy2(path, backup, follow_symlinks=False)
    secret = " (it holds your SYNCCTL_CODE_SECRET: keep it)" if _has_code_secret(path) else ""
    return f"kept the previous {path.name} as {backup}{secret}"


def _has_code_secret(path: Path) -> bool:
    if path.name != ENV_NAME:
        return False
    from dotenv.parser import parse_stream

    try:
        with path.open(encoding="utf-8", errors="replace") as stream:
            return any(b.key == "SYNCCTL_CODE_SECRET" and b.value for b in parse_stream(stream))
    except OSError:
        return False


def _free_name(path: Path, suffix: str) -> Path:
    candidate = path.with_name(f"{path.name}.{suffix}")
    n = 1
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = path.with_name(f"{path.name}.{suffix}-{n}")
    return candidate
