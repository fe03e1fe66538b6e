"""Expand the command line's files and folders into the sorted input files."""

from __future__ import annotations

import errno
import io
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import NotRegularFile
from ..store.opening import check_url, is_url

_KINDS = ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"),
          (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
          (stat.S_ISSOCK, "socket"))




def _check_regular(mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "special file")
        raise NotRegularFile(f"not a regular file: {kind}")


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a regular file (or a symlink to one) for reading. A FIFO or a device would
    block or never end: the name is checked first, without opening it, and the opened
    file again (the name may have changed in between); O_NONBLOCK keeps that open from
    waiting for a FIFO's writer."""
    _check_regular(os.stat(path).st_mode)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        status = os.fstat(fd)
        _check_regular(status.st_mode)
        os.set_blocking(fd, True)
        # the buffer size open() would choose, given: it then asks no isatty (an ioctl)
        return os.fdopen(fd, "rb", buffering=status.st_blksize if status.st_blksize > 1
                         else io.DEFAULT_BUFFER_SIZE)
    except BaseException:
        os.close(fd)
        raise


def iter_input_files(inputs: Iterable[Path | str], exclude: Path | None = None,
                     storage_options: Mapping[str, Any] | None = None
                     ) -> Iterator[Path | str]:
    """Files as given, folders walked recursively in sorted order; the output folder is
    never read as input (converting `.` into `./out` must not loop). An object store URL
    (`s3://bucket/prefix/`) stands for every object below it, in sorted key order."""
    excluded = exclude.resolve() if exclude is not None else None
    for item in inputs:
        if isinstance(item, str) and is_url(item):
            yield from iter_object_inputs(item, storage_options)
            continue
        item = Path(item)
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


def iter_object_inputs(url: str, options: Mapping[str, Any] | None = None) -> Iterator[str]:
    """The URLs of the objects at or below `url` (one object, or a prefix), sorted.
    FileNotFoundError when there are none."""
    import fsspec  # optional extra

    fs, root = fsspec.core.url_to_fs(check_url(url), **dict(options or {}))
    found = sorted(fs.find(root, withdirs=False))
    if not found:
        raise FileNotFoundError(errno.ENOENT, "no object at or below this URL", url)
    for key in found:
        yield fs.unstrip_protocol(key)


def output_overlap(inputs: Iterable[Path], output: Path) -> list[str]:
    """Check the output against the inputs: raises ValueError if the output is an input
    or holds one (the walk excludes the output, so nothing would be converted); returns
    a note for each input that holds the output (allowed: the output is not read)."""
    out = output.resolve()
    notes = []
    for item in inputs:
        source = item.resolve()
        if source == out:
            raise ValueError(f"output folder {output} is also an input: nothing to convert")
        if out in source.parents:
            raise ValueError(f"input {item} is inside the output folder {output}")
        if source in out.parents:
            notes.append(f"output folder {output} is inside input {item}: not read as input")
    return notes


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
