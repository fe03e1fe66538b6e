"""Put a DICOM Part 10 file back together from one instance folder of the tree.

Two ways, both streaming (values copied from the tree's files in blocks, never a whole
instance in memory):

- `splice`: an untransformed instance, byte for byte the source: the kept header
  (kept_header.py) with the frame and bulk data bytes put back where they were cut out.
- `encode_published`: an instance changed by a transform: a new P10 of the published
  dataset (its metadata JSON), in the source's transfer syntax, frames unchanged. The
  kept header is never read here: it holds original values.
"""

from __future__ import annotations

import base64
import gzip
import io
import os
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .. import __version__
from .kept_header import DEFLATED_NAME, HEADER_NAME
from .multipart import BOUNDARY, COPY_BLOCK, PART_FOOTER, exact_chunks

if TYPE_CHECKING:  # pydicom is imported where a transformed instance is encoded anew:
    # splicing a kept header (the common rebuild) needs none of it
    from pydicom.filebase import DicomBytesIO

AVAILABLE_TRANSFER_SYNTAX_UID = 0x00083002
EXTENDED_OFFSET_TABLE = 0x7FE00001
EXTENDED_OFFSET_TABLE_LENGTHS = 0x7FE00002
PIXEL_DATA_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
#: tree files a cut or a BulkDataURI may name: nothing else is ever opened
_RESOURCE = re.compile(r"frames/[1-9][0-9]{0,8}|bulkdata/[0-9A-F]{8}(\.[0-9]{1,9}\.[0-9A-F]{8})*")
_OPENING = b"--" + BOUNDARY.encode("ascii") + b"\r\n"
_BINARY_VRS = frozenset("OB OD OF OL OV OW UN".split())
_LONG_VRS = frozenset("OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())


class RebuildError(Exception):
    """The instance cannot be rebuilt from the tree; the message is one line."""


def check_resource(name: str) -> str:
    """`name` if it is a frame or bulk data file of an instance folder, else refused."""
    if not isinstance(name, str) or not _RESOURCE.fullmatch(name):
        raise RebuildError(f"not a frame or bulk data file of the instance: {name!r}")
    return name


class Payloads:
    """Reads payloads of the instance's single-part files (frames/<n>, bulkdata/<name>);
    the last file opened stays open, as consecutive cuts mostly name the same one."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._name: str | None = None
        self._file: Any = None
        self._start = 0
        self._length = 0

    def _open(self, name: str) -> None:
        if name == self._name:
            return
        self.close()
        path = os.path.join(self.folder, check_resource(name))
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise RebuildError(f"{name}: {exc.strerror or exc}") from None
        self._file = os.fdopen(fd, "rb")
        size = os.fstat(fd).st_size
        head = self._file.read(1024)
        end = head.find(b"\r\n\r\n")
        if not head.startswith(_OPENING) or end < 0:
            raise RebuildError(f"{name} is not a single-part file written by dcmweb")
        self._start = end + 4
        self._length = size - self._start - len(PART_FOOTER)
        self._file.seek(size - len(PART_FOOTER))
        if self._length < 0 or self._file.read() != PART_FOOTER:
            raise RebuildError(f"{name} does not end with the closing delimiter")
        self._name = name

    def length(self, name: str) -> int:
        self._open(name)
        return self._length

    def read(self, name: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The payload bytes [offset, offset + length) of `name`, in blocks."""
        self._open(name)
        if length is None:
            length = self._length - offset
        if offset < 0 or length < 0 or offset + length > self._length:
            raise RebuildError(f"{name} holds {self._length} bytes, not the "
                               f"{offset + length} its record needs")
        file = self._file
        file.seek(self._start + offset)
        while length:
            chunk = file.read(min(length, COPY_BLOCK))
            if not chunk:
                raise RebuildError(f"{name} ends early")
            length -= len(chunk)
            yield chunk

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file, self._name = None, None


def _exactly(source: Any, length: int, what: str) -> Iterator[bytes]:
    return exact_chunks(source, length, lambda: RebuildError(f"{what} is shorter than its record"))


def _deflate(chunks: Iterator[bytes], level: int = 6, mem_level: int = 8) -> Iterator[bytes]:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, mem_level)
    for chunk in chunks:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()


def swap_words(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The bytes of each 16-bit word swapped (8-bit samples <-> big endian OW words),
    whatever the chunk sizes; an odd last byte is kept as it is."""
    carry = b""
    for chunk in chunks:
        data = carry + chunk
        even = len(data) - len(data) % 2
        carry = data[even:]
        swapped = bytearray(even)
        swapped[0::2], swapped[1::2] = data[1:even:2], data[0:even:2]
        yield bytes(swapped)
    if carry:
        yield carry


def splice(folder: Path, info: dict[str, Any]) -> Iterator[bytes]:
    """The source file of an untransformed instance, from its kept header and the tree."""
    rebuild = info.get("rebuild")
    if not isinstance(rebuild, dict):
        raise RebuildError("info has no rebuild record (converted by an older version?)")
    yield base64.b64decode(info["preamble"]) + base64.b64decode(info["file_meta"])
    payloads = Payloads(folder)
    try:
        if "deflated" in rebuild:  # the source's deflated stream, kept as it was
            with open(os.path.join(folder, DEFLATED_NAME), "rb") as kept:
                yield from iter(lambda: kept.read(COPY_BLOCK), b"")
            return
        body = _spliced(folder, rebuild, payloads)
        deflate = rebuild.get("deflate")
        if deflate:
            body = _deflate(body, int(deflate["level"]), int(deflate["mem_level"]))
        yield from body
    finally:
        payloads.close()


def _spliced(folder: Path, rebuild: dict[str, Any], payloads: Payloads) -> Iterator[bytes]:
    start, end = int(rebuild["start"]), int(rebuild["end"])
    try:
        if "header_base64" in rebuild:  # a small one is kept in info itself
            header = gzip.GzipFile(fileobj=io.BytesIO(base64.b64decode(rebuild["header_base64"])))
        else:
            header = gzip.open(os.path.join(folder, HEADER_NAME), "rb")
    except (OSError, ValueError) as exc:
        raise RebuildError(f"kept header: {getattr(exc, 'strerror', None) or exc}") from None
    with header:
        position = start
        for offset, length, name, at, *swapped in rebuild["cuts"]:
            if offset < position or offset + length > end:
                raise RebuildError("kept header record lists cuts out of order")
            yield from _exactly(header, offset - position, "the kept header")
            chunks = payloads.read(name, int(at), int(length))
            yield from swap_words(chunks) if swapped else chunks
            position = offset + length
        yield from _exactly(header, end - position, "the kept header")
        if header.read(1):
            raise RebuildError("the kept header is longer than its record")


# -- transformed instances: a new P10 of the published dataset --------------------------

def resource_of(uri: str) -> str:
    """The instance file a BulkDataURI of the instance metadata names ('frames' or
    'bulkdata/<name>'), relative or under a --base-url; checked."""
    path = urlsplit(uri).path
    for marker in ("bulkdata/", "frames"):
        at = path.rfind(marker)
        if at == 0 or (at > 0 and path[at - 1] == "/"):
            name = path[at:]
            return name if name == "frames" else check_resource(name)
    raise RebuildError(f"BulkDataURI {uri!r} names no file of the instance")


def _element_header(tag: int, vr: str, length: int, implicit: bool, little: bool) -> bytes:
    endian = "<" if little else ">"
    if implicit:
        return struct.pack(endian + "HHL", tag >> 16, tag & 0xFFFF, length)
    if vr in _LONG_VRS:
        return struct.pack(endian + "HH2s2xL", tag >> 16, tag & 0xFFFF, vr.encode(), length)
    if length > 0xFFFF:
        raise RebuildError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {vr} value of {length} "
                           "bytes does not fit an explicit VR element")
    return struct.pack(endian + "HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), length)


def _padding(vr: str) -> bytes:
    return b"\0" if vr in _BINARY_VRS or vr == "UI" else b" "


def _item(length: int) -> bytes:
    return struct.pack("<HHL", 0xFFFE, 0xE000, length)


class _Published:
    """Writes one transformed instance; `info` says the transfer syntax and frames."""

    def __init__(self, folder: Path, info: dict[str, Any], document: dict[str, Any]) -> None:
        from pydicom.dataset import Dataset

        self.folder = folder
        self.info = info
        self.deflated = bool(info.get("deflated"))
        # a deflated file's data set is explicit VR little endian before deflation
        self.implicit = False if self.deflated else bool(info["implicit_vr"])
        self.little = True if self.deflated else bool(info["little_endian"])
        self.pixel = info.get("pixel_data") or {}
        self.payloads = Payloads(folder)
        document = {k: v for k, v in document.items()
                    if int(k, 16) != AVAILABLE_TRANSFER_SYNTAX_UID}  # dcmweb's, not the source's
        #: top-level values streamed from their files: tag -> (VR, file)
        self.streamed: dict[int, tuple[str, str]] = {}
        for key in list(document):
            uri = document[key].get("BulkDataURI")
            if uri is not None:
                self.streamed[int(key, 16)] = (document[key]["vr"], resource_of(uri))
                del document[key]
        try:
            self.ds = Dataset.from_json(document, bulk_data_uri_handler=self._nested_bulk)
        except RebuildError:
            raise
        except Exception as exc:
            raise RebuildError(f"metadata does not load as a dataset: {exc}") from None
        self.encodings = self.ds._character_set

    def _nested_bulk(self, tag: str, vr: str, uri: str) -> Any:
        """A bulk value inside a sequence: read whole (as the converter held it)."""
        from pydicom.dataelem import RawDataElement
        from pydicom.tag import Tag
        from pydicom.values import convert_value

        name = resource_of(uri)
        data = b"".join(self.payloads.read(name))
        if vr in _BINARY_VRS:
            return data
        raw = RawDataElement(Tag(tag), vr, len(data), data, 0, self.implicit, self.little)
        return convert_value(vr, raw, self.encodings)

    def file_meta(self) -> bytes:
        from pydicom.dataset import FileMetaDataset
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_file_meta_info
        from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = self.ds.get("SOPClassUID", "")
        meta.MediaStorageSOPInstanceUID = self.ds.get("SOPInstanceUID", "")
        meta.TransferSyntaxUID = self.info["transfer_syntax_uid"]
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = f"DCMWEB_{__version__}"[:16]
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_file_meta_info(fp, meta, enforce_standard=True)
        return bytes(128) + b"DICM" + fp.getvalue()

    def chunks(self) -> Iterator[bytes]:
        head = self.file_meta()
        try:
            body = self._data_set()
            if self.deflated:
                body = _deflate(body)
            yield head
            yield from body
        finally:
            self.payloads.close()

    def _data_set(self) -> Iterator[bytes]:
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_data_element
        from pydicom.tag import Tag

        frames = self._frame_lengths()
        if frames is not None and self.pixel.get("undefined_length"):
            self._extended_offset_table(frames)
        tags = sorted({int(t) for t in self.ds.keys()} | set(self.streamed))
        pending = DicomBytesIO()
        pending.is_little_endian, pending.is_implicit_VR = self.little, self.implicit
        for tag in tags:
            if tag not in self.streamed:
                try:
                    write_data_element(pending, self.ds[tag], self.encodings)
                except Exception as exc:
                    raise RebuildError(f"element {Tag(tag)} cannot be written: {exc}") from None
                if pending.tell() >= COPY_BLOCK:
                    yield pending.getvalue()
                    pending = _like(pending)
                continue
            if pending.tell():
                yield pending.getvalue()
                pending = _like(pending)
            vr, name = self.streamed[tag]
            if name == "frames":
                if frames is None:
                    raise RebuildError("metadata refers to frames the info does not list")
                yield from self._pixel_data(tag, vr, frames)
            else:
                yield from self._bulk(tag, vr, name)
        if pending.tell():
            yield pending.getvalue()

    def _bulk(self, tag: int, vr: str, name: str) -> Iterator[bytes]:
        length = self.payloads.length(name)
        if tag in PIXEL_DATA_TAGS and self.pixel.get("undefined_length"):
            # encapsulated Pixel Data without frames: the value holds its items as stored
            yield _element_header(tag, "OB", 0xFFFFFFFF, self.implicit, self.little)
            yield from self.payloads.read(name)
            return
        yield _element_header(tag, vr, length + length % 2, self.implicit, self.little)
        yield from self.payloads.read(name)
        if length % 2:
            yield _padding(vr)

    def _frame_lengths(self) -> list[int] | None:
        listed = self.pixel.get("frames")
        if not listed:
            return None
        return [self.payloads.length(f"frames/{n}") for n in range(1, len(listed) + 1)]

    def _extended_offset_table(self, lengths: list[int]) -> None:
        """Frames are re-encapsulated one fragment each: an Extended Offset Table of the
        source would point at its own fragments, so it is computed again."""
        if EXTENDED_OFFSET_TABLE not in self.ds and EXTENDED_OFFSET_TABLE not in self.streamed:
            return
        offsets, at = [], 0
        for length in lengths:
            offsets.append(at)
            at += 8 + length + length % 2
        for tag in (EXTENDED_OFFSET_TABLE, EXTENDED_OFFSET_TABLE_LENGTHS):
            self.streamed.pop(tag, None)
        self.ds.ExtendedOffsetTable = struct.pack(f"<{len(offsets)}Q", *offsets)
        self.ds.ExtendedOffsetTableLengths = struct.pack(f"<{len(lengths)}Q", *lengths)

    def _pixel_data(self, tag: int, vr: str, lengths: list[int]) -> Iterator[bytes]:
        count = len(lengths)
        if not self.pixel.get("undefined_length"):
            listed = self.pixel["frames"]
            if isinstance(listed[0], dict) and listed[0].get("bit_length") is not None:
                yield from self._bit_packed(tag, vr, [int(f["bit_length"]) for f in listed])
                return
            total = sum(lengths)
            yield _element_header(tag, vr, total + total % 2, self.implicit, self.little)
            value = self._native_frames(count, total % 2)
            if self.pixel.get("frames_byte_swapped"):
                value = swap_words(value)  # frames hold samples; OW words store them swapped
            yield from value
            return
        yield _element_header(tag, "OB", 0xFFFFFFFF, self.implicit, self.little)
        offsets, at = [], 0
        for length in lengths:
            offsets.append(at)
            at += 8 + length + length % 2
        use_bot = (self.pixel.get("basic_offset_table") and EXTENDED_OFFSET_TABLE not in self.ds
                   and at < 1 << 32)
        if use_bot:
            yield _item(4 * count) + struct.pack(f"<{count}L", *offsets)
        else:
            yield _item(0)
        for n, length in enumerate(lengths, start=1):
            yield _item(length + length % 2)
            yield from self.payloads.read(f"frames/{n}")
            if length % 2:
                yield b"\0"
        yield struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)

    def _native_frames(self, count: int, pad: int) -> Iterator[bytes]:
        for n in range(1, count + 1):
            yield from self.payloads.read(f"frames/{n}")
        if pad:
            yield b"\0"

    def _bit_packed(self, tag: int, vr: str, bits: list[int]) -> Iterator[bytes]:
        """1-bit frames, each re-packed to start at bit 0, packed back into one stream."""
        total = (sum(bits) + 7) // 8
        yield _element_header(tag, vr, total + total % 2, self.implicit, self.little)
        carry, carried = 0, 0
        for n, frame_bits in enumerate(bits, start=1):
            data = b"".join(self.payloads.read(f"frames/{n}"))
            carry |= (int.from_bytes(data, "little") & ((1 << frame_bits) - 1)) << carried
            carried += frame_bits
            whole = carried // 8
            yield (carry & ((1 << 8 * whole) - 1)).to_bytes(whole, "little")
            carry >>= 8 * whole
            carried -= 8 * whole
        if carried:
            yield carry.to_bytes(1, "little")
        if total % 2:
            yield b"\0"


def _like(fp: DicomBytesIO) -> DicomBytesIO:
    from pydicom.filebase import DicomBytesIO

    new = DicomBytesIO()
    new.is_little_endian, new.is_implicit_VR = fp.is_little_endian, fp.is_implicit_VR
    return new


def encode_published(folder: Path, info: dict[str, Any],
                     document: dict[str, Any]) -> Iterator[bytes]:
    """A P10 of the published `document` (the instance metadata object), streamed."""
    return _Published(folder, info, document).chunks()
