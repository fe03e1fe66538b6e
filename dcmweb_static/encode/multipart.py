"""Single-part multipart/related bodies for frames and bulk data (PS3.18 8.7.3).

The boundary is one constant for every tree, so a static server can send a fixed
`Content-Type: multipart/related; type="..."; boundary=...` header. Every payload is
checked not to contain the delimiter, which would make the part unparseable.
"""

from __future__ import annotations

import io
import mmap
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from ..errors import ConversionError
from ..kernel_copy import cannot_copy, copy_range

BOUNDARY = "dcmweb-static-4f1c9a7e2b8d4e6f"
_DELIMITER = b"--" + BOUNDARY.encode("ascii")
COPY_BLOCK = 1 << 20


def content_type(media_type: str, transfer_syntax_uid: str | None) -> str:
    if transfer_syntax_uid:
        return f"{media_type}; transfer-syntax={transfer_syntax_uid}"
    return media_type


#: printable ASCII, no leading or trailing space: no CR/LF or control byte ever gets in
_SAFE_HEADER_VALUE = re.compile(r"[!-~](?:[ -~]*[!-~])?")


def part_header(part_content_type: str) -> bytes:
    """The delimiter and Content-Type header of a part. The value is checked here too
    (defence in depth: its parts are checked where they come from)."""
    if not _SAFE_HEADER_VALUE.fullmatch(part_content_type):
        raise ConversionError(f"part Content-Type {part_content_type!r} is not a safe header "
                              "value")
    return _DELIMITER + b"\r\nContent-Type: " + part_content_type.encode("ascii") + b"\r\n\r\n"


PART_FOOTER = b"\r\n" + _DELIMITER + b"--\r\n"


def response_content_type(media_type: str, transfer_syntax_uid: str | None = None) -> str:
    """The HTTP Content-Type a server sends for a file written here (with the transfer
    syntax parameter of PS3.18 8.7.3.5 when it is known)."""
    syntax = f"; transfer-syntax={transfer_syntax_uid}" if transfer_syntax_uid else ""
    return f'multipart/related; type="{media_type}"{syntax}; boundary={BOUNDARY}'


_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")


def part_media_type(head: bytes) -> tuple[str, str | None] | None:
    """The media type and transfer syntax UID named in the part header at the start of a
    file written here (`head`: its first bytes); None if it names no valid media type.
    Both are checked: they become an HTTP header of the stored object."""
    for line in head.split(b"\r\n", 8)[:8]:
        if not line.lower().startswith(b"content-type:"):
            continue
        fields = line.split(b":", 1)[1].decode("ascii", "replace").split(";")
        media = fields[0].strip().lower()
        if not _MEDIA_TYPE.fullmatch(media):
            return None
        syntax = None
        for parameter in fields[1:]:
            key, _, value = parameter.strip().partition("=")
            if key.lower() == "transfer-syntax" and _UID.fullmatch(value):
                syntax = value
        return media, syntax
    return None


class BoundaryChecker:
    """Finds the delimiter in a payload written block by block, across block edges."""

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, buffer: bytes | bytearray, n: int) -> None:
        """Check the first `n` bytes of `buffer`, the next block of the payload."""
        found, self._tail = contains_delimiter(buffer, n, self._tail)
        if found:
            raise ConversionError("payload contains the multipart boundary; cannot wrap it")


class DelimiterScan:
    """Whether the delimiter occurs in a stream seen block by block (e.g. a deflated data
    set as it is inflated: its payloads are the inflated bytes)."""

    def __init__(self) -> None:
        self.found = False
        self._tail = b""

    def feed(self, block: bytes) -> None:
        if not self.found:
            self.found, self._tail = contains_delimiter(block, len(block), self._tail)


class PayloadCopier:
    """Copies byte ranges of the source into part files.

    Checked mode reads through one reused buffer and looks for the delimiter. Kernel
    mode (`os.copy_file_range`, no bytes through Python) is for a source already known to
    hold no delimiter anywhere; it falls back to checked copying where the kernel or the
    file system cannot do it.
    """

    def __init__(self, src: BinaryIO, buffer: bytearray, kernel: bool) -> None:
        self.src = src
        self.buffer = buffer
        self.kernel = kernel and hasattr(os, "copy_file_range") and _has_fileno(src)
        # kernel copies take explicit offsets; the checked path and read_at seek the shared
        # source (which the checksum thread does not use) and reuse one buffer: locked
        self._lock = threading.Lock()

    def copy(self, dst: BinaryIO, segments: Iterable[tuple[int, int]]) -> int:
        if self.kernel:
            try:
                return self._copy_in_kernel(dst, segments)
            except OSError as exc:
                if not cannot_copy(exc):
                    raise
                self.kernel = False
        with self._lock:
            return self._copy_checked(dst, segments)

    def read_at(self, offset: int, size: int) -> bytes:
        """`size` bytes of the source from `offset` (safe beside threaded copies)."""
        with self._lock:
            self.src.seek(offset)
            return self.src.read(size)

    def _copy_in_kernel(self, dst: BinaryIO, segments: Iterable[tuple[int, int]]) -> int:
        dst.flush()
        src_fd, dst_fd = self.src.fileno(), dst.fileno()
        total = 0
        for offset, length in segments:
            if copy_range(src_fd, dst_fd, offset, length) < length:
                raise ConversionError(f"source ends inside a value at offset {offset}")
            total += length
        return total

    def _copy_checked(self, dst: BinaryIO, segments: Iterable[tuple[int, int]]) -> int:
        buffer = self.buffer
        view = memoryview(buffer)
        checker = BoundaryChecker()
        total = 0
        for offset, length in segments:
            self.src.seek(offset)
            remaining = length
            while remaining:
                n = self.src.readinto(view[: min(remaining, len(buffer))])
                if not n:
                    raise ConversionError(f"source ends inside a value at offset {offset}")
                checker.feed(buffer, n)
                dst.write(view[:n])
                remaining -= n
                total += n
        return total


def _has_fileno(stream: BinaryIO) -> bool:
    try:
        stream.fileno()
    except (OSError, AttributeError, io.UnsupportedOperation):
        return False
    return True


def delimiter_search(buffer: bytes | bytearray, delimiter: bytes) -> tuple[int, int]:
    """(where `delimiter` starts in `buffer` or -1, how many leading bytes are certainly
    not part of it): without a match the last `len(delimiter) - 1` bytes may begin one
    that the next block completes, so a reader of a stream keeps them for the next call.
    The STOW-RS body reader (`serve.multipart_body`) splits a request with it, keeping
    the unmatched tail in its own buffer; `contains_delimiter` is the same test for
    blocks that are not kept (a tail carried instead)."""
    at = buffer.find(delimiter)
    if at >= 0:
        return at, at
    return -1, max(0, len(buffer) - len(delimiter) + 1)


def contains_delimiter(data: bytes | bytearray, n: int, tail: bytes) -> tuple[bool, bytes]:
    """(delimiter in tail + data[:n], the new tail): one block of a stream scanned block
    by block, `tail` carrying the end of the previous block across the edge."""
    keep = len(_DELIMITER) - 1
    found = data.find(_DELIMITER, 0, n) != -1 or (
        bool(tail) and _DELIMITER in tail + bytes(data[: min(n, keep)]))
    return found, (tail + bytes(data[max(0, n - keep): n]))[-keep:]


def holds_delimiter(data: bytes | bytearray | mmap.mmap) -> bool:
    """Whether the delimiter occurs anywhere in `data` (a whole file, mapped)."""
    return data.find(_DELIMITER) != -1


def part_body(data: bytes) -> bytes:
    """The payload of a single-part file written here."""
    start = data.index(b"\r\n\r\n") + 4
    return data[start: len(data) - len(PART_FOOTER)]


def exact_chunks(source: BinaryIO, length: int, short: Callable[[], Exception]
                 ) -> Iterator[bytes]:
    """`length` bytes of `source` from where it is, in blocks of at most COPY_BLOCK;
    raises `short()` if it ends first (each caller says what was cut short)."""
    while length > 0:
        chunk = source.read(min(length, COPY_BLOCK))
        if not chunk:
            raise short()
        length -= len(chunk)
        yield chunk


def dicom_message(instances: Iterable[tuple[str, Iterable[bytes]]]) -> Iterator[bytes]:
    """A multipart/related body of `application/dicom` parts (PS3.18 8.7.3), one per
    (transfer syntax, P10 chunks) of `instances`, streamed: each instance's bytes are read
    only when its part is sent. The tree's boundary is used (a single instance is then
    byte for byte the file `convert --part10` writes); a payload holding the delimiter
    raises ConversionError before that block is given out."""
    separator = b""
    for transfer_syntax_uid, chunks in instances:
        yield separator + part_header(content_type("application/dicom", transfer_syntax_uid))
        checker = BoundaryChecker()
        for chunk in chunks:
            checker.feed(chunk, len(chunk))
            yield chunk
        separator = b"\r\n"
    yield PART_FOOTER
