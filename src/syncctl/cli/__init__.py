"""The `syncctl` command line: thin Typer commands over the library.

`base` holds the app, its error handling and the options every command
shares; each module beside it holds a group of commands (importing it
registers them). See `base` for the exit codes and the output rules.
"""

from __future__ import annotations

# Importing each module registers its commands, in this order (the --help order).
from syncctl.cli import run  # noqa: F401

# isort: split
from syncctl.cli import ops  # noqa: F401

# isort: split
from syncctl.cli import setup  # noqa: F401

# isort: split
from syncctl.cli.base import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    from syncctl.malloc import release_big_buffers

    release_big_buffers()
    app()
