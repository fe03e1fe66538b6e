"""Ask the kernel to start reading a task's input files before the worker gets to them.

A worker alternates between waiting for a file's bytes and converting them. From a cold
disk that wait is most of a small file's time (a 512 KiB CT slice here: ~2 ms of I/O for
~3.5 ms of CPU), and one reader at a time keeps the disk's queue shallow (315 MB/s for
one `cat`, 550 MB/s for eight). `posix_fadvise(WILLNEED)` queues the reads of the whole
task at once and returns: the disk works while the CPU converts, and the kernel reads
into the page cache that the worker's own reads then find.

Files are opened as the conversion opens them (`open_regular`: regular files only, the
name checked before it is opened, so a FIFO's writer never sees a reader); anything that
fails is left to the conversion, which reports it. Without `posix_fadvise` (not Linux)
this does nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from .inputs import open_regular

#: read ahead at most this much of one file: all of a usual instance, the start of a big
#: one (whose own sequential reads the kernel then reads ahead of)
FILE_BYTES = 8 << 20
#: and at most this much per call, so that a task of big files does not fill the memory
TASK_BYTES = 64 << 20

_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", None)


def prefetch(paths: Iterable[str | os.PathLike[str]], task_bytes: int = TASK_BYTES) -> int:
    """Start reading the files at `paths` (local paths; URLs are skipped) into the page
    cache, in order, up to `task_bytes` in all; returns the bytes asked for."""
    if _WILLNEED is None:
        return 0
    asked = 0
    for path in paths:
        if asked >= task_bytes:
            break
        if isinstance(path, str) and "://" in path:
            continue  # an object store input: nothing local to read ahead
        try:
            with open_regular(path) as stream:
                size = os.fstat(stream.fileno()).st_size
                if size:  # (a length of 0 would mean "to the end")
                    length = min(size, FILE_BYTES, task_bytes - asked)
                    os.posix_fadvise(stream.fileno(), 0, length, _WILLNEED)
                    asked += length
        except (OSError, ValueError):  # not a regular file (NotRegularFile), gone, bad name
            continue
    return asked
