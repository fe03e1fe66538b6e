"""The `dcmweb` command line: parses options, runs the library, reports.

`main` is the Click group (`cli.commands`), imported on first use so that the console
script (`cli.start`) can begin before the command line's imports.
"""

from __future__ import annotations

from typing import Any

__all__ = ["main"]


def __getattr__(name: str) -> Any:
    if name == "main":
        from .commands import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
