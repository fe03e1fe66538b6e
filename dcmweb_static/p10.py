"""Parse a DICOM Part 10 stream into the parts dcmweb publishes.

pydicom parses everything but the top-level Pixel Data, whose layout (offset, length,
fragments) is walked here without reading its value, so a 1 GB image costs a few item
headers of memory. Large values elsewhere are deferred by pydicom and copied later from
their file offsets. All use of pydicom's reader internals is kept in this module.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
from pydicom.uid import UID

from .errors import ConversionError, NotDicomError, TruncatedError
from .transfer_syntax import DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN

PIXEL_DATA_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
ITEM_TAG = 0xFFFEE000
SEQUENCE_DELIMITER_TAG = 0xFFFEE0DD
UNDEFINED_LENGTH = 0xFFFFFFFF
_EXPLICIT_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                      b"UR", b"UT", b"UV"}


@dataclass
class Fragment:
    """One item of encapsulated Pixel Data: where its header and value lie in the stream."""

    item_offset: int
    value_offset: int
    length: int


@dataclass
class PixelDataElement:
    """Where the top-level Pixel Data element lies in the stream, value unread."""

    tag: int
    vr: str | None
    element_offset: int
    value_offset: int
    length: int | None  # None: undefined length (encapsulated)
    basic_offset_table: list[int] = field(default_factory=list)
    bot_item_offset: int | None = None
    fragments: list[Fragment] = field(default_factory=list)
    end_offset: int = 0

    @property
    def encapsulated(self) -> bool:
        return self.length is None


@dataclass
class ParsedP10:
    """A parsed P10 stream: pydicom's dataset (top-level Pixel Data left out) plus
    what a lossless rebuild needs. `stream` stays open for copying frames and bulk data."""

    stream: BinaryIO
    stream_size: int
    preamble: bytes
    file_meta: Dataset
    file_meta_bytes: bytes
    transfer_syntax_uid: str
    is_implicit_vr: bool
    is_little_endian: bool
    deflated: bool
    dataset: Dataset
    dataset_offset: int
    pixel_data: PixelDataElement | None


def _stream_size(stream: BinaryIO) -> int:
    here = stream.tell()
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(here)
    return size


def _encoding_of(ts_uid: str) -> tuple[bool, bool]:
    """(implicit VR, little endian) for a transfer syntax; unknown ones are explicit VR
    little endian, as PS3.5 10 requires of every syntax but the two classic ones."""
    uid = UID(ts_uid)
    if uid.is_transfer_syntax:
        return uid.is_implicit_VR, uid.is_little_endian
    return False, True


def parse_p10(stream: BinaryIO, *, defer_size: int) -> ParsedP10:
    """Parse `stream` (positioned at 0). Values over `defer_size` bytes stay unread.

    Raises NotDicomError, TruncatedError or ConversionError with a one-line reason.
    """
    size = _stream_size(stream)
    if size == 0:
        raise NotDicomError("empty file (0 bytes)")
    try:
        preamble = read_preamble(stream, force=False) or b""
    except InvalidDicomError:
        raise NotDicomError("not a DICOM Part 10 file (no 'DICM' prefix at byte 128)") from None
    meta_start = stream.tell() - 4
    try:
        file_meta = _read_file_meta_info(stream)
    except Exception as exc:  # pydicom raises many kinds for a broken group 2
        raise ConversionError(f"unreadable file meta information: {exc}") from None
    dataset_offset = stream.tell()
    stream.seek(meta_start)
    file_meta_bytes = stream.read(dataset_offset - meta_start)

    ts_uid = str(file_meta.get("TransferSyntaxUID", "") or "").strip("\0 ")
    if not ts_uid:
        raise ConversionError("file meta information has no Transfer Syntax UID (0002,0010)")
    is_implicit, is_little = _encoding_of(ts_uid)

    deflated = ts_uid == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
    source = stream
    if deflated:
        stream.seek(dataset_offset)
        try:
            inflated = zlib.decompress(stream.read(), -zlib.MAX_WBITS)
        except zlib.error as exc:
            raise ConversionError(f"deflated data set cannot be inflated: {exc}") from None
        source = io.BytesIO(inflated)
        size = len(inflated)
        body_start = 0
    else:
        body_start = dataset_offset
    source.seek(body_start)

    dataset = _read_dataset(source, is_implicit, is_little, defer_size)
    is_implicit = dataset.original_encoding[0] if dataset.original_encoding[0] is not None \
        else is_implicit
    _check_lengths(dataset, size)
    pixel = None
    position = source.tell()
    if position < size:
        pixel = _read_pixel_data_element(source, size, is_implicit, is_little)
        if source.tell() < size:
            trailing = _read_dataset(source, is_implicit, is_little, defer_size)
            for tag in trailing.keys():
                dataset._dict[tag] = trailing.get_item(tag, keep_deferred=True)
            if source.tell() < size:
                raise TruncatedError(f"cannot parse data after offset {source.tell()}")
    return ParsedP10(
        stream=source,
        stream_size=size,
        preamble=preamble,
        file_meta=file_meta,
        file_meta_bytes=file_meta_bytes,
        transfer_syntax_uid=ts_uid,
        is_implicit_vr=is_implicit,
        is_little_endian=is_little,
        deflated=deflated,
        dataset=dataset,
        dataset_offset=dataset_offset,
        pixel_data=pixel,
    )


def _check_lengths(dataset: Dataset, size: int) -> None:
    """pydicom reads a value cut short by the end of the file without complaint; a value
    that claims more bytes than the file has means the file is truncated."""
    for raw in dataset._dict.values():
        length = getattr(raw, "length", UNDEFINED_LENGTH)
        if length != UNDEFINED_LENGTH and raw.value_tell + length > size:
            raise TruncatedError(f"file ends inside element {raw.tag}")


def _stop_at_pixel_data(tag: int, vr: str | None, length: int) -> bool:
    # called for every element read: integer tests, not BaseTag comparisons
    return tag >> 16 == 0x7FE0 and (tag & 0xFFFF) in (0x0010, 0x0008, 0x0009)


def _read_dataset(stream: BinaryIO, implicit: bool, little: bool, defer_size: int) -> Dataset:
    try:
        return read_dataset(
            stream, implicit, little, stop_when=_stop_at_pixel_data, defer_size=defer_size
        )
    except (EOFError, struct.error) as exc:
        raise TruncatedError(f"file ends inside an element ({exc})") from None
    except (ValueError, NotImplementedError, KeyError, TypeError) as exc:
        raise ConversionError(f"unreadable data set: {exc}") from None


def _read_exact(stream: BinaryIO, n: int, what: str) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise TruncatedError(f"file ends inside {what}")
    return data


def _read_pixel_data_element(
    stream: BinaryIO, size: int, implicit: bool, little: bool
) -> PixelDataElement:
    """Walk the Pixel Data element header and, if encapsulated, its item headers."""
    endian = "<" if little else ">"
    element_offset = stream.tell()
    header = _read_exact(stream, 8, "the Pixel Data element header")
    group, elem = struct.unpack(endian + "HH", header[:4])
    tag = group << 16 | elem
    if tag not in PIXEL_DATA_TAGS:
        raise ConversionError(f"unexpected element ({group:04X},{elem:04X}) at {element_offset}")
    vr: str | None = None
    if implicit:
        (length,) = struct.unpack(endian + "L", header[4:])
    else:
        raw_vr = header[4:6]
        vr = raw_vr.decode("ascii", "replace")
        if raw_vr in _EXPLICIT_LONG_VRS:
            (length,) = struct.unpack(endian + "L", _read_exact(stream, 4, "Pixel Data"))
        else:
            (length,) = struct.unpack(endian + "H", header[6:])
    value_offset = stream.tell()
    if length != UNDEFINED_LENGTH:
        if value_offset + length > size:
            raise TruncatedError(
                f"Pixel Data declares {length} bytes but the file ends "
                f"{size - value_offset} bytes after its start"
            )
        stream.seek(value_offset + length)
        return PixelDataElement(tag, vr, element_offset, value_offset, length,
                                end_offset=value_offset + length)

    element = PixelDataElement(tag, vr, element_offset, value_offset, None)
    first = True
    while True:
        item_offset = stream.tell()
        item_header = _read_exact(stream, 8, "encapsulated Pixel Data (no sequence delimiter)")
        # Encapsulated items are always little endian (PS3.5 A.4).
        igroup, ielem, ilength = struct.unpack("<HHL", item_header)
        itag = igroup << 16 | ielem
        if itag == SEQUENCE_DELIMITER_TAG:
            break
        if itag != ITEM_TAG:
            raise ConversionError(
                f"encapsulated Pixel Data has ({igroup:04X},{ielem:04X}) where an item belongs"
            )
        if ilength == UNDEFINED_LENGTH:
            raise ConversionError("encapsulated Pixel Data item has undefined length")
        start = stream.tell()
        if start + ilength > size:
            raise TruncatedError("file ends inside an encapsulated Pixel Data fragment")
        if first:
            element.bot_item_offset = item_offset
            if ilength % 4:
                raise ConversionError("Basic Offset Table length is not a multiple of 4")
            element.basic_offset_table = list(
                struct.unpack(f"<{ilength // 4}L", stream.read(ilength))
            )
            first = False
        else:
            element.fragments.append(Fragment(item_offset, start, ilength))
            stream.seek(start + ilength)
    element.end_offset = stream.tell()
    return element
