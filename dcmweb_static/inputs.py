"""Expand the command line's files and folders into the sorted input files."""

from __future__ import annotations

import os
import tempfile
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


class InputSpool:
    """Input paths in a temporary file, not a list: the parent's memory stays the same
    for a million inputs as for ten. Knows its length (for the progress bar and the
    task size) and is read back in order, one path at a time."""

    def __init__(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        self._file = tempfile.TemporaryFile()
        self._count = 0
        for path in paths:
            encoded = os.fsencode(path)
            self._file.write(len(encoded).to_bytes(4, "little") + encoded)
            self._count += 1

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        """The paths in order; a new iteration starts again from the first."""
        spool = self._file
        position = 0
        for _ in range(self._count):
            spool.seek(position)
            size = int.from_bytes(spool.read(4), "little")
            path = os.fsdecode(spool.read(size))
            position += 4 + size
            yield path

    def close(self) -> None:
        self._file.close()
