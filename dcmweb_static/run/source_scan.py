"""One pass over a source file: its SHA-256, its size, and whether the multipart
delimiter occurs anywhere in it (if not, frames and bulk data can be copied by the kernel
without a check of their own). Big files are scanned on a thread, overlapping the copy;
middle-sized ones through a read-only mapping of the file (no copy of every byte into a
buffer: on the benchmark machine a CT slice's `read` cost more system time than its
frame's kernel copy)."""

from __future__ import annotations

import hashlib
import mmap
import os
import threading
from typing import BinaryIO

from ..encode.multipart import COPY_BLOCK, contains_delimiter, holds_delimiter
from .inputs import open_regular

#: files at least this big are scanned through a mapping (below it, one read of a few
#: KiB costs less than setting up and tearing down a mapping)
MAP_SCAN_BYTES = 64 << 10
#: files at least this big are checksummed in a thread while their frames are copied
OVERLAP_SCAN_BYTES = 16 << 20


def scan_source(stream: BinaryIO, buffer: bytearray) -> tuple[str, int, bool]:
    """One pass over the source: its SHA-256, its size, and whether the multipart
    delimiter occurs anywhere in it (if not, payloads need no check of their own)."""
    digest = hashlib.sha256()
    view = memoryview(buffer)
    stream.seek(0)
    size = 0
    found, tail = False, b""
    while n := stream.readinto(buffer):
        digest.update(view[:n])
        if not found:
            found, tail = contains_delimiter(buffer, n, tail)
        size += n
    return digest.hexdigest(), size, found


def scan_mapped(stream: BinaryIO, size: int) -> tuple[str, int, bool] | None:
    """`scan_source` for a regular file of `size` bytes, through a read-only shared
    mapping of it: the bytes are hashed and searched where the page cache holds them.
    None when the file cannot be mapped (a file system without mmap): scan it by reads.

    A file cut shorter while it is mapped ends the process with SIGBUS, where a read
    would only come back short: a batch worker's death fails that one file ("the worker
    process died while converting it"); a receiver's spooled file is its own."""
    try:
        mapped = mmap.mmap(stream.fileno(), size, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # io.UnsupportedOperation (no fileno) is both
        return None
    with mapped:
        return hashlib.sha256(mapped).hexdigest(), size, holds_delimiter(mapped)


class ScanThread(threading.Thread):
    """_scan_source on its own file handle and buffer; hashlib and readinto release the
    GIL, so this runs on the second core while the main thread copies frames."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(daemon=True)
        self.path = path
        self._outcome: tuple[str, int, bool] | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            with open_regular(self.path) as stream:
                self._outcome = scan_source(stream, bytearray(COPY_BLOCK))
        except BaseException as exc:  # re-raised in the converting thread
            self._error = exc

    def outcome(self) -> tuple[str, int, bool]:
        self.join()
        if self._error is not None:
            raise self._error
        assert self._outcome is not None
        return self._outcome
