"""A raw element walk over the header bytes of a P10 file, for the common case.

pydicom's `read_dataset` reads an element with a few calls each (read, tell — an
`lseek` on a buffered file —, seek, a stop callback, a generator step) and cost most of
a small instance's parse. Most files are explicit or implicit VR little endian with
defined lengths only, so this walk takes the header from what a buffered file already
holds (or one read, a few for a large header) and builds, element for element, what
pydicom builds for them: for the top-level data set what `read_dataset(...,
defer_size=...)` makes (the same `RawDataElement`s, VR None for implicit VR, value None
when deferred, in a `Dataset` with the same original encoding), for the file meta
information what `_read_file_meta_info` makes. Anything it does not handle simply it
declines (returns None, the stream back where it was) and the caller reads it with
pydicom from the start, so error reasons and edge-case behaviour stay pydicom's.
`tests/test_raw_walk.py` holds the two equal on the test corpus, hand-made edge cases,
truncations and mutants. The same walk gives, without pydicom, int tags and
`PlainElement`s (`walk_plain`, `walk_item`: the plain path of p10/plain.py and the
encoder's defined-length sequence items).
"""

from __future__ import annotations

import functools
import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, NamedTuple, TypeVar

if TYPE_CHECKING:
    from pydicom.dataset import Dataset, FileMetaDataset

#: bytes read at once for a data set: a typical header (1–10 KB) is one to three reads
HEADER_READ = 4096
#: bytes read at once for the file meta information (typically 150–250 bytes)
META_READ = 512
#: the VRs of PS3.5 6.2 (pydicom's `valuerep.VR` two-letter members) whose explicit VR
#: length has 4 bytes (PS3.5 7.1.2; pydicom's `EXPLICIT_VR_LENGTH_32`); a test holds both
#: equal to pydicom's, so the walk needs no pydicom import
LONG_LENGTH_VRS = frozenset("OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
SHORT_LENGTH_VRS = frozenset(
    "AE AS AT CS DA DS DT FD FL IS LO LT PN SH SL SS ST TM UI UL US".split())
#: the encoded 2-letter VRs → (the VR as pydicom reports it, 4-byte length)
_VRS: dict[bytes, tuple[str, bool]] = {
    vr.encode(): (vr, vr in LONG_LENGTH_VRS) for vr in sorted(LONG_LENGTH_VRS | SHORT_LENGTH_VRS)
}
#: VRs whose empty raw value pydicom gives as b"" (`empty_value_for_VR(vr, raw=True)`
#: under its default configuration: SQ, PN and the other text VRs but DS and IS); None
#: for the others
_EMPTY_AS_BYTES = frozenset("SQ PN AE AS CS DA DT LO LT SH ST TM UC UI UR UT".split())


class PlainElement(NamedTuple):
    """An element as the walk read it: the fields of pydicom's `RawDataElement`, in its
    order, without pydicom (a data set read for the common path stays free of it)."""

    tag: int
    VR: str | None
    length: int
    value: bytes | None
    value_tell: int
    is_implicit_VR: bool
    is_little_endian: bool
    is_raw: bool = True
    is_buffered: bool = False


def plain_empty_value(vr: str | None) -> bytes | None:
    """`empty_value_for_VR(vr, raw=True)` of pydicom's default configuration."""
    return b"" if vr in _EMPTY_AS_BYTES else None
_EXPLICIT = struct.Struct("<HH2sH").unpack_from
_IMPLICIT = struct.Struct("<HHL").unpack_from
_LENGTH_32 = struct.Struct("<L").unpack_from
_UNDEFINED = 0xFFFFFFFF
_CHARSET = 0x00080005
#: groups pydicom reads as ordinary elements here but which have no place in a data set
#: (file meta, command) or which delimit items: left to pydicom
_DECLINED_GROUPS = frozenset((0x0000, 0x0002, 0xFFFE))
_PIXEL_DATA_ELEMENTS = frozenset((0x0010, 0x0008, 0x0009))
#: the groups the walk looks at twice: Pixel Data's (it may stop there), and those declined
_SPECIAL_GROUPS = _DECLINED_GROUPS | {0x7FE0}
_NEVER = 1 << 32  # the defer size that defers nothing (a length has 32 bits)
_new_raw = tuple.__new__  # RawDataElement is a NamedTuple: built without its __new__'s call
#: the RawDataElement fields the walk fills in; another pydicom's (a field more) is not walked
_FIELDS = ("tag", "VR", "length", "value", "value_tell", "is_implicit_VR", "is_little_endian",
           "is_raw", "is_buffered")


@dataclass
class WalkCounts:
    """How often the walk was taken and declined in this process (the tests check the
    common files take it; a silent decline would only cost speed)."""

    walked: int = 0
    declined: int = 0


counts = WalkCounts()


class _Declined(Exception):
    """The walk leaves this data set to pydicom."""


@dataclass(frozen=True)
class PlainWalk:
    """A data set walked without pydicom: its elements by (int) tag, where it stopped,
    and the values of Specific Character Set met (the caller decides whether it knows
    them)."""

    elements: dict[int, PlainElement]
    stop: int
    charsets: list[bytes]


def walk_plain(stream: BinaryIO, size: int, implicit: bool, defer_size: int | None,
               meta: bool = False) -> PlainWalk | None:
    """The walk of `walk_dataset` (or of the file meta information: `meta`) into
    `PlainElement`s, without pydicom: the elements pydicom would read, the stream left
    where the walk stopped; None, the stream back where it was, when declined."""
    chunk = META_READ if meta else HEADER_READ

    def read(start: int) -> tuple[PlainWalk, int]:
        elements, stop, charsets = _walk(stream, start, size, implicit, defer_size,
                                         meta=meta, chunk=chunk, plain=True)
        return PlainWalk(elements, stop, charsets), stop

    return _attempt(stream, read)


def walk_item(data: bytes, start: int, length: int,
              implicit: bool = False) -> dict[int, PlainElement] | None:
    """The elements of one defined-length little endian item whose value is
    `data[start:start + length]` (values read whole), explicit VR or, in an implicit VR
    sequence, implicit VR (pydicom reads such items as implicit whatever they hold), or
    None when the walk declines it (an undefined length inside, an item of the other
    encoding, a delimiter, a value past its end): the caller reads the sequence another
    way."""
    if length == 0:
        return {}
    if not implicit and data[start + 4:start + 6] not in _VRS:
        return None  # an implicit VR item inside an explicit VR file
    stream = io.BytesIO(data)
    stream.seek(start)  # the walk reads on from where the stream is
    try:
        elements, stop, _ = _walk(stream, start, start + length, implicit, None, plain=True,
                                  item=True)
    except (_Declined, struct.error):
        return None
    return elements if stop == start + length else None


def walk_dataset(stream: BinaryIO, size: int, implicit: bool, little: bool,
                 defer_size: int | None) -> Dataset | None:
    """The top-level data set from the stream's position up to the top-level Pixel Data
    (the stream left at its element header, as `parse._StopAtPixelData` leaves it) or the
    end of the file (`size`), as pydicom's `read_dataset` builds it; None when declined:
    big endian, or any element not handled simply (see `_walk`)."""
    if not little or not _usable():
        counts.declined += 1
        return None

    def read(start: int) -> tuple[Dataset, int]:
        elements, stop, charsets = _walk(stream, start, size, implicit, defer_size)
        return _dataset(elements, charsets, implicit), stop

    return _attempt(stream, read)


def walk_file_meta(stream: BinaryIO, size: int) -> FileMetaDataset | None:
    """The file meta information from the stream's position (after 'DICM'), as pydicom's
    `filereader._read_file_meta_info` builds it (the stream left after it); None when
    declined, the stream back where it was: then that function reads it."""
    if not _usable():
        counts.declined += 1
        return None
    return _attempt(stream, lambda start: _file_meta(stream, start, size))


_Read = TypeVar("_Read")


def _attempt(stream: BinaryIO, read: Callable[[int], tuple[_Read, int]]) -> _Read | None:
    """`read(start)` from the stream's position, the stream left where it says the read
    stopped; None, the stream back at the start, when it declines or fails."""
    start = stream.tell()
    try:
        result, stop = read(start)
    except Exception:  # _Declined, or anything odd: pydicom reads it (and words the reason)
        stream.seek(start)
        counts.declined += 1
        return None
    stream.seek(stop)
    counts.walked += 1
    return result


@functools.cache
def _fields_match() -> bool:
    from pydicom.dataelem import RawDataElement

    return RawDataElement._fields == _FIELDS == PlainElement._fields


def _usable() -> bool:
    """Not with pydicom's debugging on (its reader logs each element) nor with a pydicom
    whose raw elements have other fields."""
    from pydicom import config

    return _fields_match() and not config.debugging


def _file_meta(stream: BinaryIO, start: int, size: int) -> tuple[FileMetaDataset, int]:
    """What `_read_file_meta_info` does after its `read_dataset`, step for step: the
    elements it converts on the way (the first, the group length) are converted here
    too, so the result is the same object state."""
    from pydicom.charset import default_encoding
    from pydicom.config import logger

    elements, stop, _ = _walk(stream, start, size, False, None, meta=True, chunk=META_READ)
    file_meta = _new_file_meta()(elements)
    file_meta.set_original_encoding(False, True, default_encoding)
    if not elements:
        return file_meta, stop
    try:  # pydicom's check of the first element (its issue 503)
        file_meta[min(elements)]  # Dataset.elements() is in tag order
    except NotImplementedError:
        raise _Declined("pydicom rereads this file meta information as implicit VR") from None
    if "FileMetaInformationGroupLength" in file_meta:
        actual_len = stop - (start + 12)
        elem_len = file_meta.FileMetaInformationGroupLength
        if elem_len != actual_len:
            logger.info(
                "_read_file_meta_info: (0002,0000) 'File Meta Information "
                "Group Length' value doesn't match the actual File Meta "
                f"Information length ({elem_len} vs {actual_len} bytes)"
            )
    return file_meta, stop


def _maker(cls: type[Dataset]) -> Callable[[dict], Dataset]:
    """A fast `cls(elements)` for elements already checked: `Dataset.__init__` sets a
    dozen attributes through its keyword-aware `__setattr__` (~12 µs, a tenth of a
    header's parse); this copies the state a fresh `cls()` has (dicts copied, so no two
    share one) and puts the elements in. Any state not of plain types: the constructor."""
    state = vars(cls())
    if not all(_plain(value) or isinstance(value, dict) and all(map(_plain, value.values()))
               for value in state.values()):
        return cls
    copied = [key for key, value in state.items() if isinstance(value, dict)]

    def make(elements: dict) -> Dataset:
        made = object.__new__(cls)
        made.__dict__.update(state)
        for key in copied:
            made.__dict__[key] = state[key].copy()
        made.__dict__["_dict"] = elements
        return made

    return make


def _plain(value: object) -> bool:
    return value is None or isinstance(value, (bool, int, str))


@functools.cache
def _new_dataset() -> Callable[[dict], Dataset]:
    from pydicom.dataset import Dataset

    return _maker(Dataset)


@functools.cache
def _new_file_meta() -> Callable[[dict], Dataset]:
    from pydicom.dataset import FileMetaDataset

    return _maker(FileMetaDataset)  # its group-2-only check: the walk keeps to group 2


def _dataset(elements: dict, charsets: list[bytes], implicit: bool) -> Dataset:
    """The Dataset `read_dataset` makes of the elements, with its original encoding.
    Specific Character Set is decoded as pydicom decodes it: by the element generator as
    it reads each (for the sequences it would read), then once more for the data set;
    here only once the walk is done, so a declined walk has warned of nothing."""
    from pydicom.charset import convert_encodings, default_encoding
    from pydicom.dataelem import convert_raw_data_element
    from pydicom.values import convert_string

    for value in charsets:
        convert_encodings(convert_string(value, True))
    dataset = _new_dataset()(elements)
    encoding: str | list[str] = default_encoding
    if _CHARSET in elements:
        encoding = convert_encodings(convert_raw_data_element(elements[_CHARSET]).value)
    dataset.set_original_encoding(implicit, True, encoding)
    return dataset


def _walk(stream: BinaryIO, start: int, size: int, implicit: bool, defer_size: int | None,
          meta: bool = False, chunk: int = HEADER_READ, plain: bool = False,
          item: bool = False) -> tuple[dict, int, list[bytes]]:
    """(the elements by tag, the offset the data set stops at, the values of Specific
    Character Set met on the way). Raises _Declined. `meta`: the group 0002 elements, up
    to the first element of another group. `chunk`: bytes read at once. `plain`: int
    tags and `PlainElement`s (no pydicom), else pydicom's `BaseTag`s and
    `RawDataElement`s. `item`: the elements of an item, Pixel Data among them."""
    if plain:
        make_tag, element_type, empty = int, PlainElement, _plain_empty
    else:
        from pydicom.dataelem import RawDataElement, empty_value_for_VR
        from pydicom.tag import BaseTag

        make_tag, element_type, empty = BaseTag, RawDataElement, empty_value_for_VR
    left = size - start
    if 0 < left < 8:
        raise _Declined("a partial element header")
    buf, at = _first_read(stream, start, left, chunk)
    if left and _looks_implicit(buf) != implicit:
        raise _Declined("the first element's VR contradicts the transfer syntax")
    base = start  # the file offset of buf[0]
    pos = 0  # the element header's index in buf
    elements: dict = {}
    charsets: list[bytes] = []  # each Specific Character Set value, in file order
    limit = _NEVER if defer_size is None else defer_size
    # meta: group 2 only gets there; an item: Pixel Data is an element like any other
    special = frozenset() if meta else _DECLINED_GROUPS if item else _SPECIAL_GROUPS
    end = len(buf)
    while True:
        if pos + 12 > end:  # 12: the longest header; near the end of buf, read on
            here = base + pos
            if here == size:
                return elements, size, charsets
            if here + 8 > size:
                raise _Declined("a partial element header")
            buf, at = _read(stream, here, min(size - here, chunk), at)
            base, pos, end = here, 0, len(buf)
        if implicit:
            group, elem, length = _IMPLICIT(buf, pos)
            vr = None
            header = 8
        else:
            group, elem, encoded_vr, length = _EXPLICIT(buf, pos)
            if meta and group != 2:
                return elements, base + _meta_end(buf, pos, group << 16 | elem, encoded_vr), \
                    charsets
            known = _VRS.get(encoded_vr)
            if known is None:
                raise _Declined("not a known VR")
            vr, long_length = known
            header = 8
            if long_length:
                if pos + 12 > end:
                    raise _Declined("the file ends inside an element header")
                (length,) = _LENGTH_32(buf, pos + 8)
                header = 12
        if group in special:  # one set test for the common element
            if group == 0x7FE0:
                if elem in _PIXEL_DATA_ELEMENTS:
                    return elements, base + pos, charsets
            else:
                raise _Declined("a file meta, command or delimiter element")
        if length == _UNDEFINED:
            raise _Declined("an undefined length")
        value_tell = base + pos + header
        if value_tell + length > size:
            raise _Declined("a value running past the end of the file")
        number = group << 16 | elem
        if length > limit and number != _CHARSET:
            value = None
            pos += header + length  # may leave buf: read on at the next header
        elif length == 0:
            value = empty(vr, raw=True)
            pos += header
            if number == _CHARSET:
                charsets.append(b"")
        else:
            first = pos + header
            if first + length > end:  # a value past buf: read from its start
                buf, at = _read(stream, value_tell, min(size - value_tell, max(length, chunk)),
                                at)
                base, first, end = value_tell, 0, len(buf)
            value = buf[first:first + length]
            pos = first + length
            if number == _CHARSET:
                charsets.append(value)
        tag = make_tag(number)
        elements[tag] = _new_raw(element_type,
                                 (tag, vr, length, value, value_tell, implicit, True, True,
                                  False))


def _plain_empty(vr: str | None, raw: bool = True) -> bytes | None:
    return plain_empty_value(vr)


def _meta_end(buf: bytes, pos: int, tag: int, encoded_vr: bytes) -> int:
    """`pos`, where the file meta information ends at the element there, as pydicom's
    stop at the first element of another group ends it; raises _Declined where pydicom
    stops elsewhere (an item delimiter is consumed) or fails (no 4-byte length)."""
    if tag == 0xFFFEE00D:
        raise _Declined("an item delimiter after the file meta information")
    known = _VRS.get(encoded_vr)
    if known is not None and known[1] and pos + 12 > len(buf):
        raise _Declined("the file ends inside the element after the file meta information")
    return pos


def _first_read(stream: BinaryIO, start: int, left: int, count: int) -> tuple[bytes, int]:
    """(the bytes from `start`, the stream's position: `count`, or the `left` there are,
    or what a buffered file holds already; the stream's position after). A
    buffered file (`peek`) gives what it holds without a system call and stays where it
    is: a header within it costs no read, and the seek to where the walk stops none."""
    peek = getattr(stream, "peek", None)
    if peek is not None:
        held = peek(count)[:left]
        if len(held) >= min(left, 12):  # one element header at least; the walk reads on
            return held, start
    return _read(stream, start, min(left, count), start)


def _read(stream: BinaryIO, offset: int, count: int, at: int) -> tuple[bytes, int]:
    """(`count` bytes at `offset`, the position after), the stream being at `at`: no
    seek when reading on, and never a `tell()`, which is an `lseek` per call on a
    buffered file."""
    if at != offset:
        stream.seek(offset)
    data = stream.read(count)
    if len(data) != count:
        raise _Declined("the file is shorter than its size")
    return data, offset + count


def _looks_implicit(head: bytes) -> bool:
    """pydicom's test of the first element (`filereader._is_implicit_vr`): bytes 4–5 that
    are not two capital letters are no VR."""
    return not (0x40 < head[4] < 0x5B and 0x40 < head[5] < 0x5B)
