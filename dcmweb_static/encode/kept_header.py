"""The kept header: what the JSON model cannot carry, kept for a byte-exact P10 rebuild.

The source's data set bytes with the big values cut out (frame bytes and bulk data
copied from the source unchanged, which the tree already holds), gzipped: in `info`
(base64) while small, else in `p10-header` beside it (named without `.gz`: it is no
resource to serve, and a `--no-gzip` tree holds no `.gz` file). `info["rebuild"]` lists
each cut and the tree file that holds its bytes. Element order, lengths, padding, VRs,
byte order, spellings and group lengths are then kept as they were, whatever the JSON
model makes of them. Only written for untransformed instances: the bytes hold original
values.

Deflated files: offsets refer to the inflated data set, and the rebuild deflates it
again with the zlib settings found here to reproduce the source's stream; when none
does, the source's deflated stream itself is kept (`p10-deflated`), instead of a header.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, Protocol

from ..p10.frames import Frame
from .gzip_stream import GZIP_LEVEL
from .multipart import COPY_BLOCK, exact_chunks


class Files(Protocol):
    """Where the kept header's files are made (a staged instance folder)."""

    def open(self, name: str) -> BinaryIO: ...

HEADER_NAME = "p10-header"
#: a kept header up to this many gzip bytes goes into info (base64) instead of a file of
#: its own: one file fewer per instance (measured: 0.13 ms inline, 0.2-0.4 ms as a file, of
#: a 4 ms CT slice conversion)
INLINE_LIMIT = 16 << 10
DEFLATED_NAME = "p10-deflated"
#: zlib (level, memLevel) pairs tried to reproduce a source's deflated stream: zlib's
#: default (dcmtk's and pydicom's), then the rest
DEFLATE_SETTINGS = [(6, 8), (9, 8), (1, 8), (2, 8), (3, 8), (4, 8), (5, 8), (7, 8), (8, 8),
                    (6, 9), (9, 9)]

#: stream offset, length, tree file, offset in its payload; a 5th item 2: the payload
#: holds the bytes of 16-bit words swapped (8-bit samples of big endian OW)
Cut = tuple[int, ...] | tuple[int, int, str, int] | tuple[int, int, str, int, int]
SWAPPED = 2


def frame_cuts(frames: Iterable[Frame]) -> list[Cut]:
    """Cuts for frames whose file payload is their source bytes joined, or their words
    swapped; re-packed 1-bit frames are not cut (their bytes stay in the header)."""
    cuts: list[Cut] = []
    for number, frame in enumerate(frames, start=1):
        if frame.bit_length is not None:
            continue
        if frame.swapped_length is not None:
            # only the words that hold two samples of this frame: a word shared with the
            # next frame (odd frame sizes) stays in the header
            (offset, _), = frame.segments
            skip, length = frame.swapped_skip, frame.swapped_length
            first, last = (skip + 1) // 2, (skip + length - 2) // 2  # whole words inside
            if last >= first:
                cuts.append((offset + 2 * first, 2 * (last - first + 1), f"frames/{number}",
                             2 * first - skip, SWAPPED))
            continue
        at = 0
        for offset, length in frame.segments:
            cuts.append((offset, length, f"frames/{number}", at))
            at += length
    return cuts


def bulk_cuts(ranges: Iterable[tuple[str, int, int]]) -> list[Cut]:
    """Cuts for bulk data values copied from a source range: (name, offset, length)."""
    return [(offset, length, f"bulkdata/{name}", 0) for name, offset, length in ranges]


def _disjoint(cuts: list[Cut], start: int, end: int) -> list[Cut]:
    """Sorted cuts inside [start, end), none overlapping; empty ones dropped."""
    kept: list[Cut] = []
    position = start
    for cut in sorted(cuts):
        offset, length = cut[0], cut[1]
        if length and offset >= position and offset + length <= end:
            kept.append(cut)
            position = offset + length
    return kept


def _ranges(stream: BinaryIO, start: int, length: int) -> Iterator[bytes]:
    stream.seek(start)
    return exact_chunks(stream, length, lambda: OSError(
        f"source ends at offset {stream.tell()} while keeping its header"))


def _reproduces(inflated: BinaryIO, source: BinaryIO, start: int, level: int,
                mem_level: int) -> bool:
    """Whether deflating `inflated` with these settings gives the source's stream from
    `start` to its end, byte for byte (compared as produced: a miss stops early)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, mem_level)
    inflated.seek(0)
    position = start
    while True:
        chunk = inflated.read(COPY_BLOCK)
        out = compressor.compress(chunk) if chunk else compressor.flush()
        if out:
            source.seek(position)
            if source.read(len(out)) != out:
                return False
            position += len(out)
        if not chunk:
            break
    source.seek(position)
    return source.read(1) == b""


def deflate_settings(inflated: BinaryIO, source: BinaryIO, start: int) -> tuple[int, int] | None:
    """The zlib settings that reproduce the source's deflated stream, or None."""
    for level, mem_level in DEFLATE_SETTINGS:
        if _reproduces(inflated, source, start, level, mem_level):
            return level, mem_level
    return None


def write_kept_header(stream: BinaryIO, start: int, end: int, cuts: list[Cut], staging: Files,
                      *, source: BinaryIO | None = None, deflated_from: int = 0
                      ) -> tuple[int, dict[str, Any]]:
    """Write the kept header of the data set in `stream` [start, end) into `staging`;
    returns (bytes written, the `rebuild` record for info). For a deflated file `stream`
    is the inflated data set and `source` the file, whose stream starts at
    `deflated_from`."""
    record: dict[str, Any] = {}
    if source is not None:
        settings = deflate_settings(stream, source, deflated_from)
        if settings is None:
            size = end_of(source)
            with staging.open(DEFLATED_NAME) as out:
                for chunk in _ranges(source, deflated_from, size - deflated_from):
                    out.write(chunk)
            return size - deflated_from, {"deflated": DEFLATED_NAME}
        record["deflate"] = {"level": settings[0], "mem_level": settings[1]}
    kept = _disjoint(cuts, start, end)
    sink = _HeaderSink(staging, HEADER_NAME)
    try:
        position = start
        for offset, length, *_ in [*kept, (end, 0)]:
            for chunk in _ranges(stream, position, offset - position):
                sink.write(chunk)
            position = offset + length
        written = sink.finish(record)
    finally:
        sink.close()
    record.update(start=start, end=end, cuts=[list(cut) for cut in kept])
    return written, record


class _HeaderSink:
    """gzip of the kept header, held in memory while small (then it goes into info and
    no file is made), else written to `path` as it comes."""

    def __init__(self, files: Files, name: str) -> None:
        self.files, self.name = files, name
        self.compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        self.held: list[bytes] = []
        self.size = 0
        self.out: BinaryIO | None = None

    def write(self, chunk: bytes) -> None:
        self._put(self.compressor.compress(chunk))

    def _put(self, block: bytes) -> None:
        if not block:
            return
        self.size += len(block)
        if self.out is None and self.size > INLINE_LIMIT:
            self.out = self.files.open(self.name)
            self.out.writelines(self.held)
            self.held = []
        if self.out is not None:
            self.out.write(block)
        else:
            self.held.append(block)

    def finish(self, record: dict[str, Any]) -> int:
        """Complete the gzip stream; records where it is; returns the bytes of files."""
        self._put(self.compressor.flush())
        if self.out is not None:
            record["header"] = HEADER_NAME
            return self.size
        record["header_base64"] = base64.b64encode(b"".join(self.held)).decode("ascii")
        return 0

    def close(self) -> None:
        if self.out is not None:
            self.out.close()


def end_of(stream: BinaryIO) -> int:
    stream.seek(0, 2)
    return stream.tell()
