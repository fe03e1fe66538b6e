"""The `dcmweb` program: what runs before the command line's imports.

`dcmweb convert` from a cold disk spends ~0.3 s importing before any worker reads an
input; `run.prefetch.read_ahead_of_start` has the disk read the first inputs meanwhile.
Everything else is the Click command line (`cli.commands`), imported after it.
"""

from __future__ import annotations

import sys


def main() -> None:
    """The `dcmweb` console script and `python -m dcmweb_static.cli`."""
    arguments = sys.argv[1:]
    if arguments[:1] == ["convert"]:
        from ..run.prefetch import read_ahead_of_start

        read_ahead_of_start(arguments[1:])
    from .commands import main as command

    command()
