"""One pass over a source file: its SHA-256, its size, and whether the multipart
delimiter occurs anywhere in it (if not, frames and bulk data can be copied by the kernel
without a check of their own). Big files are scanned on a thread, overlapping the copy."""

from __future__ import annotations

import hashlib
import os
import threading
from typing import BinaryIO

from .inputs import open_regular
from .multipart import COPY_BLOCK, contains_delimiter


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


#: files at least this big are checksummed in a thread while their frames are copied
OVERLAP_SCAN_BYTES = 16 << 20


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
