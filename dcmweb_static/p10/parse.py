"""Parse a DICOM Part 10 stream into the parts dcmweb publishes.

pydicom parses everything but the top-level Pixel Data, whose layout (offset, length,
fragments) is walked here without reading its value, so a 1 GB image costs a few item
headers of memory; the common data sets and the file meta information (little endian,
defined lengths) are read by `raw_walk` instead, into what pydicom would make. Large
values elsewhere are deferred and copied later from their file offsets. All use of
pydicom's reader internals is kept in this module and `raw_walk`.
"""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from ..errors import ConversionError, InvalidUIDError, NotDicomError, TruncatedError
from .datasets import uid_value
from .plain import DEFAULT_ENCODING, NotPlain, PlainDataset, plain_encodings, pydicom_defaults
from .raw_walk import walk_dataset, walk_file_meta, walk_plain
from .transfer_syntax import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
)
from .uids import check_uid

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

PIXEL_DATA_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
ITEM_TAG = 0xFFFEE000
SEQUENCE_DELIMITER_TAG = 0xFFFEE0DD
UNDEFINED_LENGTH = 0xFFFFFFFF
#: deepest sequence nesting converted (real files stay far below: a few levels, tens in
#: large SR trees); deeper files are refused. pydicom's reader recurses a few Python
#: frames per undefined-length level and gives up at about 190 under the default limit.
MAX_SEQUENCE_DEPTH = 160
#: default bound on a deflated data set's inflated size (``--max-inflated-size``)
MAX_INFLATED_SIZE = 4 << 30
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
    what a lossless rebuild needs. `stream` stays open for copying frames and bulk data.
    A plain file read with `plain=True` has `PlainDataset`s instead (p10/plain.py)."""

    stream: BinaryIO
    preamble: bytes
    file_meta: Dataset | PlainDataset
    file_meta_bytes: bytes
    transfer_syntax_uid: str
    is_implicit_vr: bool
    is_little_endian: bool
    deflated: bool
    dataset: Dataset | PlainDataset
    dataset_offset: int
    pixel_data: PixelDataElement | None
    #: False for a bare data set (no preamble, no group 0002): its syntax was detected
    file_meta_present: bool = True


def _stream_size(stream: BinaryIO) -> int:
    here = stream.tell()
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(here)
    return size


def _encoding_of(ts_uid: str) -> tuple[bool, bool]:
    """(implicit VR, little endian) for a transfer syntax; unknown ones are explicit VR
    little endian, as PS3.5 10 requires of every syntax but the two classic ones (what
    pydicom's `UID(ts_uid).is_implicit_VR` / `is_little_endian` give for each syntax it
    knows: a test holds the two equal)."""
    return ts_uid == IMPLICIT_VR_LITTLE_ENDIAN, ts_uid != EXPLICIT_VR_BIG_ENDIAN


def parse_p10(stream: BinaryIO, *, defer_size: int,
              spool: Callable[[], BinaryIO] = tempfile.TemporaryFile,
              max_inflated_size: int = MAX_INFLATED_SIZE,
              inspect: Callable[[bytes], None] | None = None,
              raw_walk: bool = True, size: int | None = None, plain: bool = False
              ) -> ParsedP10:
    """Parse `stream` (positioned at 0). Values over `defer_size` bytes stay unread.

    A deflated data set is inflated into an unnamed temporary file made by `spool` (the
    run's staging area gives one on the tree's file system), refused past
    `max_inflated_size` bytes; that file becomes `stream` of the result: the caller
    closes it. `inspect` sees each inflated block (the caller's payload checks: the
    source's bytes are not the payloads then). Raises NotDicomError, TruncatedError or
    ConversionError (an InvalidUIDError for a malformed Transfer Syntax UID) with a
    one-line reason. `raw_walk=False` reads everything with pydicom's reader (what the
    walk is compared with and timed against). `size`: the stream's size when the caller
    knows it already (three `lseek`s fewer). `plain=True`: a plain file (p10/plain.py) is
    read without pydicom into `PlainDataset`s; any other file as without it.
    """
    if size is None:
        size = _stream_size(stream)
    if size == 0:
        raise NotDicomError("empty file (0 bytes)")
    if plain:
        parsed = parse_plain(stream, size, defer_size)
        if parsed is not None:
            return parsed
        stream.seek(0)
    from pydicom.dataset import FileMetaDataset
    from pydicom.errors import InvalidDicomError
    from pydicom.filereader import _read_file_meta_info, read_preamble

    try:
        preamble = read_preamble(stream, force=False) or b""
    except InvalidDicomError:
        preamble = None
    if preamble is None:  # no File Meta header: a bare data set, its syntax told as dcmtk does
        from .raw_dataset import detect_transfer_syntax

        stream.seek(0)
        ts_value = detect_transfer_syntax(stream.read(8))
        if ts_value is None:
            raise NotDicomError("not a DICOM Part 10 file (no 'DICM' prefix at byte 128, "
                                "nor a data set from byte 0)")
        preamble, file_meta, file_meta_bytes, dataset_offset = b"", FileMetaDataset(), b"", 0
        file_meta_present = False
    else:
        meta_start = stream.tell() - 4
        try:
            file_meta = walk_file_meta(stream, size) if raw_walk else None
            if file_meta is None:  # declined: pydicom's reader
                file_meta = _read_file_meta_info(stream)
            ts_value = uid_value(file_meta, "TransferSyntaxUID")
        except (EOFError, struct.error):
            raise TruncatedError("truncated: the file ends inside the file meta information") \
                from None
        except Exception as exc:  # pydicom raises many kinds for a broken group 2
            raise ConversionError(f"unreadable file meta information: {_one_line(exc)}") \
                from None
        dataset_offset = stream.tell()
        stream.seek(meta_start)
        file_meta_bytes = stream.read(dataset_offset - meta_start)
        file_meta_present = True

    if not str(ts_value or "").strip("\0 "):
        raise ConversionError("file meta information has no Transfer Syntax UID (0002,0010)")
    # it goes into every frame's part header and the metadata: digits and dots only
    ts_uid = check_uid(ts_value, "Transfer Syntax UID")
    is_implicit, is_little = _encoding_of(ts_uid)

    deflated = ts_uid == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
    source = stream
    if deflated:
        source, size = _inflate(stream, dataset_offset, spool, max_inflated_size, inspect)
        body_start = 0
    else:
        body_start = dataset_offset
    try:
        source.seek(body_start)
        dataset, pixel = _read_body(source, size, is_implicit, is_little, defer_size,
                                    raw_walk)
    except BaseException:
        if source is not stream:
            source.close()
        raise
    is_implicit = dataset.original_encoding[0] if dataset.original_encoding[0] is not None \
        else is_implicit
    return ParsedP10(
        stream=source,
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
        file_meta_present=file_meta_present,
    )


#: the bytes before the file meta information: the preamble and "DICM"
_PREFIX = 132
_META_GROUP_LENGTH = 0x00020000
_LE_LONG = struct.Struct("<L")


def parse_plain(stream: BinaryIO, size: int, defer_size: int) -> ParsedP10 | None:
    """`parse_p10` of a plain file without pydicom (p10/plain.py): what the general
    path gives, with `PlainDataset`s; None when the file is not plain (then the general
    path reads it from the start, and words any error)."""
    if not pydicom_defaults():
        return None
    head = stream.read(_PREFIX)
    if len(head) != _PREFIX or head[128:] != b"DICM":
        return None
    meta = walk_plain(stream, size, False, None, meta=True)
    if meta is None or min(meta.elements, default=None) != _META_GROUP_LENGTH:
        return None
    group_length = meta.elements[_META_GROUP_LENGTH]
    # pydicom logs a group length that is not the group's: its words, its path
    if group_length.VR != "UL" or group_length.length != 4 \
            or _LE_LONG.unpack(group_length.value)[0] != meta.stop - _PREFIX - 12:
        return None
    file_meta = PlainDataset(meta.elements, DEFAULT_ENCODING, False)
    try:
        ts_value = uid_value(file_meta, "TransferSyntaxUID")
        ts_uid = check_uid(ts_value, "Transfer Syntax UID")
    except (NotPlain, InvalidUIDError):
        return None
    implicit, little = _encoding_of(ts_uid)
    if not little or ts_uid == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return None
    dataset_offset = meta.stop
    stream.seek(128)
    file_meta_bytes = stream.read(dataset_offset - 128)
    body = walk_plain(stream, size, implicit, defer_size)
    if body is None:
        return None
    elements, charsets = body.elements, body.charsets
    pixel = None
    if body.stop < size:  # at the top-level Pixel Data
        try:
            pixel = _read_pixel_data_element(stream, size, implicit, little)
        except ConversionError:
            return None
        if stream.tell() < size:
            trailing = walk_plain(stream, size, implicit, defer_size)
            if trailing is None or trailing.stop != size:
                return None
            elements.update(trailing.elements)
            charsets = charsets + trailing.charsets
    encodings: str | list[str] = DEFAULT_ENCODING
    if charsets:  # each value met must be one the table knows: pydicom warns of others
        known = [plain_encodings(value) for value in charsets]
        if None in known:
            return None
        encodings = known[-1]  # the last one met is the element the data set holds
    return ParsedP10(
        stream=stream, preamble=head[:128], file_meta=file_meta,
        file_meta_bytes=file_meta_bytes, transfer_syntax_uid=ts_uid,
        is_implicit_vr=implicit, is_little_endian=True, deflated=False,
        dataset=PlainDataset(elements, encodings, implicit), dataset_offset=dataset_offset,
        pixel_data=pixel, file_meta_present=True)


def _read_body(source: BinaryIO, size: int, is_implicit: bool, is_little: bool,
               defer_size: int, raw_walk: bool) -> tuple[Dataset, PixelDataElement | None]:
    """The data set from the current position: elements before Pixel Data, Pixel Data's
    layout, and the elements after it merged in."""
    dataset, checked = _read_dataset(source, size, is_implicit, is_little, defer_size,
                                     raw_walk)
    is_implicit = dataset.original_encoding[0] if dataset.original_encoding[0] is not None \
        else is_implicit
    pixel = None
    if source.tell() < size:
        pixel = _read_pixel_data_element(source, size, is_implicit, is_little)
        if source.tell() < size:
            trailing, trailing_checked = _read_dataset(source, size, is_implicit, is_little,
                                                       defer_size, raw_walk)
            checked = checked and trailing_checked
            for tag in trailing.keys():
                dataset._dict[tag] = trailing.get_item(tag, keep_deferred=True)
            if source.tell() < size:
                raise ConversionError(
                    f"malformed data set: cannot read past byte {source.tell()}")
    if not checked:
        _check_lengths(dataset, size)
    return dataset, pixel


#: inflated bytes produced per zlib call: the bound on what inflation holds in memory
INFLATE_BLOCK = 1 << 20
#: deflated bytes read per call
READ_BLOCK = 1 << 20


def _inflate(stream: BinaryIO, offset: int, spool: Callable[[], BinaryIO], limit: int,
             inspect: Callable[[bytes], None] | None) -> tuple[BinaryIO, int]:
    """Inflate the data set from `offset` into an unnamed temporary file, a block at a
    time, so a deflate bomb costs neither memory nor more than `limit` bytes of disk.
    Returns (the file, its size)."""
    out = spool()
    try:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        size = 0
        stream.seek(offset)
        while not inflater.eof and (data := inflater.unconsumed_tail or stream.read(READ_BLOCK)):
            block = inflater.decompress(data, INFLATE_BLOCK)
            size += len(block)
            if size > limit:
                raise ConversionError(f"deflated data set inflates to more than {limit} bytes "
                                      "(--max-inflated-size)")
            if inspect is not None:
                inspect(block)
            out.write(block)
        if not inflater.eof:
            raise TruncatedError("truncated: the file ends inside the deflated data set")
        out.flush()
        return out, size
    except zlib.error as exc:
        out.close()
        detail = str(exc).rpartition(": ")[2]
        raise ConversionError(f"deflated data set is corrupt ({detail})") from None
    except BaseException:
        out.close()
        raise


def _check_lengths(dataset: Dataset, size: int) -> None:
    """pydicom reads a value cut short by the end of the file without complaint; a value
    that claims more bytes than the file has means the file is truncated."""
    for raw in dataset._dict.values():
        length = getattr(raw, "length", UNDEFINED_LENGTH)
        if length != UNDEFINED_LENGTH and raw.value_tell + length > size:
            raise TruncatedError(
                f"truncated: the file ends at byte {size} inside element {raw.tag}, whose "
                f"value starts at byte {raw.value_tell} and declares {length} bytes")


def _check_no_partial_header(dataset: Dataset, size: int) -> None:
    """pydicom also stops without complaint at an element header cut short (fewer than
    8 bytes left): bytes after the last element's value mean the file is truncated."""
    last = max(dataset._dict.values(), key=_value_offset, default=None)
    length = getattr(last, "length", UNDEFINED_LENGTH)
    if last is None or length == UNDEFINED_LENGTH or last.value_tell is None:
        return  # an undefined length sequence's end is not known here (see _unreadable)
    end = last.value_tell + length
    if end < size:
        raise TruncatedError(f"truncated: the file ends at byte {size} inside the header "
                             f"of the element after {last.tag}")


def _value_offset(elem: object) -> int:
    # a RawDataElement has value_tell; an undefined length sequence read by pydicom is a
    # DataElement, with file_tell
    offset = getattr(elem, "value_tell", None)
    if offset is None:
        offset = getattr(elem, "file_tell", None)
    return offset or 0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


class _StopAtPixelData:
    """pydicom's stop_when for the top level: stops at Pixel Data and remembers the last
    top-level tag, so a failure inside it can be told by element."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: int | None = None

    def __call__(self, tag: int, vr: str | None, length: int) -> bool:
        # called for every element read: integer tests, not BaseTag comparisons
        self.last = tag
        return tag >> 16 == 0x7FE0 and (tag & 0xFFFF) in (0x0010, 0x0008, 0x0009)


def _read_dataset(stream: BinaryIO, size: int, implicit: bool, little: bool,
                  defer_size: int, raw_walk: bool) -> tuple[Dataset, bool]:
    """(the data set, whether its lengths are known to fit the file): the raw walk for
    the common syntaxes (`raw_walk`: what pydicom would build, in a few reads; it
    declines a value past the end), else pydicom's read_dataset; whatever it raises
    becomes one reason in words here."""
    from pydicom.filereader import read_dataset

    walked = walk_dataset(stream, size, implicit, little, defer_size) if raw_walk else None
    if walked is not None:  # it ends at Pixel Data or exactly at the end: no partial header
        return walked, True
    stop = _StopAtPixelData()
    try:
        dataset = read_dataset(stream, implicit, little, stop_when=stop, defer_size=defer_size)
    except Exception as exc:  # pydicom's reader raises many kinds for a broken data set
        raise _unreadable(exc, stream, size, stop.last) from None
    if stream.tell() >= size:
        _check_no_partial_header(dataset, size)
    return dataset, False


def _unreadable(exc: Exception, stream: BinaryIO, size: int, last: int | None
                ) -> ConversionError:
    """The reason for a data set pydicom could not read, from where it stopped."""
    where = "the data set" if last is None else f"element ({last >> 16:04X},{last & 0xFFFF:04X})"
    try:
        at_end = stream.tell() >= size
    except (OSError, ValueError):
        at_end = False
    if at_end or isinstance(exc, (EOFError, struct.error)) or (
            isinstance(exc, OSError) and "No tag to read" in str(exc)):
        return TruncatedError(f"truncated: the file ends at byte {size} inside {where}")
    if isinstance(exc, RecursionError):
        return ConversionError(f"malformed data set: sequences in {where} nested more than "
                               f"{MAX_SEQUENCE_DEPTH} levels deep (too deep to read)")
    return ConversionError(f"malformed data set in {where}: {_one_line(exc)}")


def _read_exact(stream: BinaryIO, n: int, what: str) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise TruncatedError(f"truncated: the file ends inside {what}")
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
    if tag not in PIXEL_DATA_TAGS:  # pydicom stopped at something that is not an element
        raise ConversionError(f"malformed data set: ({group:04X},{elem:04X}) at byte "
                              f"{element_offset} cannot start an element here")
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
                f"truncated: Pixel Data declares {length} bytes but the file ends "
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
            raise TruncatedError(f"truncated: the file ends inside the encapsulated Pixel Data "
                                 f"fragment at byte {item_offset}")
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
