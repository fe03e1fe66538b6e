"""Expand the command line's files and folders into a sorted list of input files."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path


def iter_input_files(inputs: Iterable[Path], exclude: Path | None = None) -> Iterator[Path]:
    """Files as given, folders walked recursively in sorted order; the output folder is
    never read as input (converting `.` into `./out` must not loop)."""
    excluded = exclude.resolve() if exclude is not None else None
    for item in inputs:
        if item.is_dir():
            for folder, dirs, files in os.walk(item):
                here = Path(folder)
                if excluded is not None and here.resolve() == excluded:
                    dirs[:] = []
                    continue
                dirs.sort()
                for name in sorted(files):
                    yield here / name
        else:
            yield item
