"""Single-part multipart/related bodies for frames and bulk data (PS3.18 8.7.3).

The boundary is one constant for every tree, so a static server can send a fixed
`Content-Type: multipart/related; type="..."; boundary=...` header. Every payload is
checked not to contain the delimiter, which would make the part unparseable.
"""

from __future__ import annotations

from typing import BinaryIO

from .errors import ConversionError

BOUNDARY = "dcmweb-static-4f1c9a7e2b8d4e6f"
_DELIMITER = b"--" + BOUNDARY.encode("ascii")
COPY_BLOCK = 1 << 20


def content_type(media_type: str, transfer_syntax_uid: str | None) -> str:
    if transfer_syntax_uid:
        return f"{media_type}; transfer-syntax={transfer_syntax_uid}"
    return media_type


def part_header(part_content_type: str) -> bytes:
    return _DELIMITER + b"\r\nContent-Type: " + part_content_type.encode("ascii") + b"\r\n\r\n"


PART_FOOTER = b"\r\n" + _DELIMITER + b"--\r\n"


def response_content_type(media_type: str) -> str:
    """The HTTP Content-Type a server sends for a file written here."""
    return f'multipart/related; type="{media_type}"; boundary={BOUNDARY}'


class BoundaryChecker:
    """Finds the delimiter in a payload written block by block, across block edges."""

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, buffer: bytes | bytearray, n: int) -> None:
        """Check the first `n` bytes of `buffer`, the next block of the payload."""
        keep = len(_DELIMITER) - 1
        if buffer.find(_DELIMITER, 0, n) != -1 or (
            self._tail and _DELIMITER in self._tail + bytes(buffer[: min(n, keep)])
        ):
            raise ConversionError("payload contains the multipart boundary; cannot wrap it")
        self._tail = (self._tail + bytes(buffer[max(0, n - keep) : n]))[-keep:]


def write_segments(
    dst: BinaryIO,
    src: BinaryIO,
    segments: tuple[tuple[int, int], ...] | list[tuple[int, int]],
    buffer: bytearray,
    checker: BoundaryChecker,
) -> int:
    """Copy byte ranges of `src` to `dst` through one reused buffer; returns bytes copied."""
    view = memoryview(buffer)
    total = 0
    for offset, length in segments:
        src.seek(offset)
        remaining = length
        while remaining:
            n = src.readinto(view[: min(remaining, len(buffer))])
            if not n:
                raise ConversionError(f"source ends inside a value at offset {offset}")
            checker.feed(buffer, n)
            dst.write(view[:n])
            remaining -= n
            total += n
    return total


def read_part_body(path) -> bytes:
    """The payload of a single-part file written here."""
    data = open(path, "rb").read()
    start = data.index(b"\r\n\r\n") + 4
    return data[start: len(data) - len(PART_FOOTER)]
