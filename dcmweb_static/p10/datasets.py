"""Helpers for walking pydicom datasets without reading deferred values, and for reading
the few attributes every conversion needs without converting their elements (from a
pydicom Dataset or a `plain.PlainDataset` alike: a plain one raises `NotPlain` where only
pydicom could answer)."""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .plain import PlainDataset, plain_encodings
from .raw_walk import PlainElement

if TYPE_CHECKING:
    from pydicom.dataelem import RawDataElement
    from pydicom.dataset import Dataset
    from pydicom.tag import BaseTag


def element_vr(ds: Dataset, tag: int) -> str:
    """The VR of an element as stored, or from the dictionary (implicit VR files)."""
    from pydicom.datadict import dictionary_VR

    element = ds.get_item(tag, keep_deferred=True)
    vr = getattr(element, "VR", None)
    if vr:
        return vr
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def sequence_items(ds: Dataset, tag: int) -> list[Dataset]:
    """The items of sequence `tag` (converting the raw element if needed)."""
    return list(ds[tag].value or [])


def sequences(ds: Dataset) -> Iterator[tuple[BaseTag, list[Dataset]]]:
    """Each sequence element of `ds` (this level only) with its items."""
    for tag in list(ds.keys()):
        if element_vr(ds, tag) == "SQ":
            yield tag, sequence_items(ds, tag)


# --- the few attributes every conversion reads, from their raw bytes ----------------
#
# `Dataset.get(keyword)` builds a DataElement (value conversion, validation) and puts it
# in place of the raw element, which then also leaves the JSON encoder's raw fast path:
# ~30 us per attribute, a third of a CT header's parse. The readers below decode the
# common, well-formed case straight from the RawDataElement and leave it raw; anything
# else (deferred, multi-valued, padded oddly, another VR) goes through `Dataset.get`, so
# the value is always the one pydicom gives.

#: a valid UID (PS3.5 9.1, the pattern pydicom validates with): else pydicom decides
_UID_BYTES = re.compile(rb"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")
_IS_BYTES = re.compile(rb" *([0-9]{1,12}) *")
_CS_BYTES = re.compile(rb"[A-Z0-9_]+ ?")
_US = {True: struct.Struct("<H"), False: struct.Struct(">H")}


#: (tag, dictionary VR) of the keywords a conversion reads, so a plain file needs no
#: dictionary (a test holds them equal to pydicom's)
KEYWORDS = {
    "MediaStorageSOPClassUID": (0x00020002, "UI"),
    "TransferSyntaxUID": (0x00020010, "UI"),
    "SOPInstanceUID": (0x00080018, "UI"),
    "StudyInstanceUID": (0x0020000D, "UI"),
    "SeriesInstanceUID": (0x0020000E, "UI"),
    "SamplesPerPixel": (0x00280002, "US"),
    "PhotometricInterpretation": (0x00280004, "CS"),
    "NumberOfFrames": (0x00280008, "IS"),
    "Rows": (0x00280010, "US"),
    "Columns": (0x00280011, "US"),
    "BitsAllocated": (0x00280100, "US"),
}


@functools.lru_cache(maxsize=64)
def _keyword(keyword: str) -> tuple[int, str]:
    """(tag, dictionary VR) of a keyword: two dictionary lookups, once per keyword; an
    unknown keyword matches no element (-1), so `Dataset.get` answers for it."""
    known = KEYWORDS.get(keyword)
    if known is not None:
        return known
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    tag = tag_for_keyword(keyword)
    return (-1, "") if tag is None else (tag, dictionary_VR(tag))


def _raw(ds: Dataset | PlainDataset, tag: int, vr: str) -> RawDataElement | PlainElement | None:
    """The element as read, when it holds its whole value and has `vr` (or none: an
    implicit VR file, whose VR is the dictionary's, `vr` for the tags used here). A
    value pydicom has converted is a DataElement, not a raw element (a tuple)."""
    raw = ds._dict.get(tag)  # type: ignore[union-attr]
    if not isinstance(raw, tuple) or raw.value is None or raw.VR not in (vr, None) \
            or raw.length != len(raw.value):
        return None
    return raw


def uid_value(ds: Dataset, keyword: str) -> object:
    """`ds.get(keyword)` of a UI attribute: a valid UID as `str` (trailing NUL/space
    padding removed, as pydicom does), else pydicom's value."""
    tag = _keyword(keyword)[0]
    raw = _raw(ds, tag, "UI")
    if raw is not None and raw.length <= 64:  # longer: pydicom warns, so it decides
        value = raw.value.rstrip(b"\0 ")
        if _UID_BYTES.fullmatch(value):
            return value.decode("ascii")
    return _get(ds, tag, keyword, None)


def int_value(ds: Dataset, keyword: str, default: int | None = None) -> object:
    """`ds.get(keyword, default)` of a single-valued US or IS attribute, as `int` when it
    is plain digits, else pydicom's value."""
    tag, vr = _keyword(keyword)
    raw = _raw(ds, tag, vr)
    if raw is not None:
        if vr == "US" and raw.length == 2:
            return _US[raw.is_little_endian].unpack(raw.value)[0]
        if vr == "IS" and raw.length <= 12 and (digits := _IS_BYTES.fullmatch(raw.value)):
            return int(digits.group(1))
    return _get(ds, tag, keyword, default)


def code_value(ds: Dataset, keyword: str, default: str = "") -> object:
    """`ds.get(keyword, default)` of a single-valued CS attribute, as `str` without its
    padding, else pydicom's value."""
    tag = _keyword(keyword)[0]
    raw = _raw(ds, tag, "CS")
    if raw is not None and raw.length <= 16 and _CS_BYTES.fullmatch(raw.value):
        return raw.value.rstrip(b" ").decode("ascii")
    return _get(ds, tag, keyword, default)


def _get(ds: Dataset | PlainDataset, tag: int, keyword: str, default: object) -> object:
    """`ds.get(keyword, default)`: `default` for an element the data set does not hold
    (what pydicom answers, and all a `PlainDataset` can), else pydicom's value."""
    if tag not in ds._dict:  # type: ignore[union-attr]
        return default
    return ds.get(keyword, default)


_CHARSET_BYTES = re.compile(rb"[A-Z0-9_][A-Z0-9_ ]*")


def character_set(ds: Dataset | PlainDataset) -> str | list[str]:
    """`ds._character_set` (the Python codecs of Specific Character Set) with a single
    raw value decoded here, so the element stays raw; else pydicom's."""
    raw = _raw(ds, 0x00080005, "CS")
    if raw is not None and raw.length <= 16 and _CHARSET_BYTES.fullmatch(raw.value) \
            and (text := raw.value.decode("ascii").rstrip(" ")):
        known = plain_encodings(raw.value)
        if known is not None:
            return known
        from pydicom.charset import convert_encodings

        return convert_encodings(text)
    return ds._character_set  # type: ignore[union-attr]
