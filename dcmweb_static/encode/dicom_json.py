"""The DICOM JSON model (PS3.18 F.2) built from a parsed dataset.

pydicom decodes values (character sets, VR lookup, UN re-typing, ambiguous VRs); this
module decides how each value is written, because `Dataset.to_json_dict` does not do
what DICOMweb clients need: it has no per-tag-kind bulk thresholds, cannot refer to
values left unread in the file, writes IS/DS values that lose precision or fail, and
cannot express non-finite floats. Values over a threshold are handed to a `BulkSink`,
which returns the BulkDataURI to write.
"""

from __future__ import annotations

import base64
import math
import re
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from ..errors import ConversionError, TruncatedError
from ..p10 import dictionary
from ..p10.datasets import character_set
from ..p10.parse import UNDEFINED_LENGTH
from ..p10.plain import DEFAULT_ENCODING, PYTHON_ENCODINGS, NotPlain, PlainDataset
from ..p10.raw_walk import PlainElement, walk_item
from . import raw_values as rawvalues
from .jsonio import MAX_SEQUENCE_DEPTH
from .raw_values import json_number

if TYPE_CHECKING:
    from pydicom.dataelem import DataElement, RawDataElement
    from pydicom.dataset import Dataset

_ITEM_HEADER = struct.Struct("<HHL")
AVAILABLE_TRANSFER_SYNTAX_UID = 0x00083002

#: VRs whose values may be sent as BulkDataURI (PS3.18 F.2.6)
BULK_VRS = frozenset(
    "DS FL FD IS LT OB OD OF OL OV OW SL SS ST SV UC UL UN US UT UV".split()
)
BINARY_VRS = frozenset("OB OD OF OL OV OW UN".split())
NUMBER_VRS = frozenset("FL FD SL SS SV UL US UV".split())
# text VRs with a single value, in which a backslash is a character (PS3.5 6.2)
SINGLE_VALUE_TEXT_VRS = frozenset("LT ST UT UR".split())
# leading and trailing spaces are padding, per value (PS3.5 Table 6.2-1)
SPACE_PADDED_VRS = frozenset("AE CS DA DT TM".split())
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")


class BulkSink(Protocol):
    """Receives values that become bulk data; returns the BulkDataURI to write."""

    def add(self, name: str, data: bytes | None, source_range: tuple[int, int] | None) -> str:
        ...


@dataclass(frozen=True)
class BulkThresholds:
    """Values longer than these many bytes become BulkDataURI."""

    private: int = 64
    public: int = 131074

    def exceeded(self, tag: int, length: int) -> bool:
        limit = self.private if (tag >> 16) & 1 else self.public
        return length > limit

    @property
    def defer_size(self) -> int:
        """Values longer than this are bulk data whatever their tag: a reader may leave
        them unread."""
        return max(self.public, self.private)


def _skip(tag: int) -> bool:
    """Group 0002 is not part of the dataset; group lengths and trailing padding carry
    no information a JSON reader can use (PS3.18 F.2: they are not encoded)."""
    group = tag >> 16
    return group == 0x0002 or group == 0 or not tag & 0xFFFF or group == 0xFFFC


def _resolved_vr(vr: str | None, tag: int) -> str:
    """The VR written for an element not converted by pydicom: its own, else the
    dictionary's (UN for none), of an ambiguous one OW where allowed, else the first."""
    if not vr:
        vr = dictionary.public_vr(tag)
        if vr is None:
            return "UN"
    if " or " in vr:
        options = vr.split(" or ")
        return "OW" if "OW" in options else options[0]
    return vr


#: a private creator value taken here: printable ASCII but the backslash (one value), NUL
#: padding, at most LO's 64 characters (pydicom warns of longer), in a character set in
#: which those bytes are ASCII; any other value: pydicom looks it up
_CREATOR_BYTES = re.compile(rb"[\x20-\x5B\x5D-\x7E\x00]{0,64}")
_ASCII_CODECS = frozenset(PYTHON_ENCODINGS.values()) | {DEFAULT_ENCODING}


#: `JsonEncoder._pixel_rep` where only pydicom can tell what an item inherits
UNDECIDED = -1
_PIXEL_DATA = 0x7FE00010


def _undecided_vr(tag: int, elements: dict, encodings: list[str],
                  inherited: int | None) -> str | None:
    """The VR pydicom gives implicit VR element `tag` of the data set `elements` where
    the dictionary has no single one, when it converts it: a private element's
    (`_private_vr`); "US or SS" as pydicom's `correct_ambiguous_vr_element` decides it
    (`_pixel_representation`), "OB or OW" as OW where pydicom does not decide by other
    elements; None: pydicom decides (an unknown tag, another ambiguity)."""
    if (tag >> 16) & 1:
        return _private_vr(tag, elements, encodings)
    vr = dictionary.public_vr(tag)
    if vr == "US or SS" and tag in dictionary.US_OR_SS_BY_PIXEL_REPRESENTATION:
        representation = _pixel_representation(elements, inherited)
        if representation is None:
            return None
        return "US" if representation == 0 else "SS"
    if vr == "OB or OW" and tag not in dictionary.OB_OR_OW_BY_CONTEXT:
        return "OW"
    return None


def _own_pixel_rep(elements: dict) -> int | None:
    """The data set's own Pixel Representation, one raw US value; UNDECIDED for one
    pydicom must convert (empty, converted already, several values); None for none."""
    raw = elements.get(dictionary.PIXEL_REPRESENTATION)
    if raw is None:
        return None
    if not isinstance(raw, tuple) or raw.VR not in (None, "US") or raw.length != 2 \
            or raw.value is None or len(raw.value) != 2:
        return UNDECIDED
    return int.from_bytes(raw.value, "little")


def _pixel_representation(elements: dict, inherited: int | None) -> int | None:
    """The Pixel Representation pydicom decides a US or SS element of the data set by:
    the data set's own, else the one propagated into it from the data sets around it,
    else 0 when the data set holds no Pixel Data (pydicom fails for one that does);
    None where pydicom must decide."""
    own = _own_pixel_rep(elements)
    if own is not None:
        return None if own == UNDECIDED else own
    if inherited is not None:
        return None if inherited == UNDECIDED else inherited
    return None if _PIXEL_DATA in elements else 0


def _items_pixel_rep(elements: dict, inherited: int | None) -> int | None:
    """What the items of a sequence of the data set `elements` inherit, as pydicom's
    `Dataset._set_pixel_representation` propagates it: the data set's own Pixel
    Representation, else what it inherited itself; only 0 and 1 are propagated here
    (pydicom's reading of other raw values differs by level: UNDECIDED)."""
    own = _own_pixel_rep(elements)
    if own is None:
        return inherited
    return own if own in (0, 1) else UNDECIDED


def _private_vr(tag: int, elements: dict, encodings: list[str]) -> str | None:
    """The VR pydicom gives private element `tag` of an implicit VR data set (`elements`)
    when it converts it (`hooks.raw_element_vr`: a creator is LO, a known element of a
    block the VR its creator's private dictionary gives, anything else UN); None where
    pydicom decides: a creator element not read whole (or converted already), a creator
    value out of the plain case, a VR that is no single VR (ambiguous, or an odd entry)."""
    creator: str | None = ""
    block = tag & 0xFF00
    if block and not 0x0010 <= tag & 0xFFFF < 0x0100:  # in a block: find its creator
        if block < 0x1000:
            return None  # a "creator" at (gggg,0001-000F): pydicom converts what is there
        raw = elements.get(dictionary.creator_tag(tag))
        if raw is not None:
            creator = _creator_text(raw, encodings)
    vr = dictionary.implicit_vr(tag, creator)
    return vr if vr in dictionary.VRS else None


def _creator_text(raw: object, encodings: list[str]) -> str | None:
    """A private creator element's value as pydicom converts it (LO: one value, trailing
    NUL and space padding removed), or None where pydicom must convert it."""
    if not isinstance(raw, tuple) or len(encodings) > 1 \
            or encodings and encodings[0] not in _ASCII_CODECS:
        return None
    value = raw.value  # type: ignore[attr-defined]
    if value is None:
        return "" if raw.length == 0 else None  # type: ignore[attr-defined]
    if raw.length != len(value) or not _CREATOR_BYTES.fullmatch(value):  # type: ignore[attr-defined]
        return None
    return value.decode("ascii").rstrip("\0 ")


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return list(value)
    return [value]


class JsonEncoder:
    """Encodes one instance. `stream` is the source for values pydicom left unread."""

    def __init__(self, thresholds: BulkThresholds, bulk: BulkSink, stream: BinaryIO,
                 fast: bool = True) -> None:
        self.thresholds = thresholds
        self._limits = (thresholds.public, thresholds.private)  # by the tag's odd-group bit
        self.bulk = bulk
        self.stream = stream
        #: decode common VRs from raw bytes (rawvalues); False: every value via pydicom
        self.fast = fast
        #: one line per value written differently from the file's text (for the report)
        self.warnings: list[str] = []
        self._depth = 0  # sequences open around the element being encoded
        #: the Pixel Representation the data set being encoded inherits from the data
        #: sets around it, as pydicom propagates it into items (`Dataset._pixel_rep`):
        #: None for none, UNDECIDED where only pydicom can tell
        self._pixel_rep: int | None = None

    def _fast_element(self, tag: int, raw: RawDataElement | PlainElement, path: str, key: str,
                      encodings: list[str], elements: dict) -> dict[str, Any] | None:
        """The element straight from its raw bytes (see rawvalues); None: use pydicom.
        The hot path of a conversion: kept flat, with the common cases first. `elements`:
        the data set's, where an implicit VR private element's creator is looked up."""
        vr = raw.VR
        if not vr:
            vr = rawvalues.dictionary_vr(tag)
            if vr is None:
                vr = _undecided_vr(tag, elements, encodings, self._pixel_rep)
                if vr is None:
                    return None
        value = raw.value or b""
        size = len(value)
        limit = self._limits[(tag >> 16) & 1]
        decoder = rawvalues.JSON_DECODERS.get(vr)
        if decoder is not None and size and (size <= limit or vr not in BULK_VRS):
            # the common case: a short text or number value
            try:
                values = decoder(value, encodings, raw.is_little_endian)
            except rawvalues.Fallback:
                return None
            except rawvalues.InvalidNumber:
                return self._invalid_number(vr, value, path + key)
            if values is None:
                return None
            return {"vr": vr, "Value": values} if values else {"vr": vr}
        if vr == "SQ":
            return self._fast_sequence(raw, path + key, encodings, elements)
        if vr == "UN" and raw.VR:
            return None  # pydicom gives an explicit UN its dictionary VR
        if vr in BINARY_VRS:
            if not size:
                return {"vr": vr}
            if size > limit:
                return {"vr": vr, "BulkDataURI": self.bulk.add(path + key, value, None)}
            return {"vr": vr, "InlineBinary": base64.b64encode(value).decode("ascii")}
        if size > limit and vr in BULK_VRS:
            return {"vr": vr, "BulkDataURI": self.bulk.add(path + key, value, None)}
        if not size:
            return {"vr": vr}
        encoder = _ENCODERS.get(vr)  # PN and AT: decoded here, then as pydicom's values
        if encoder is None:
            return None
        decoded = rawvalues.decode(value, vr, encodings, raw.is_little_endian)
        if decoded is None:
            return None
        values = encoder(decoded, vr)
        if not values or values[0] is None and len(values) == 1:
            return {"vr": vr}
        return {"vr": vr, "Value": values}

    def dataset(self, ds: Dataset | PlainDataset, path: str = "",
                inherited: list[str] | None = None) -> dict[str, Any]:
        """`inherited`: the enclosing dataset's character set, for items without their own.
        A `PlainDataset` raises NotPlain at the first element the fast path cannot take."""
        saved = self._pixel_rep
        # a pydicom item carries the Pixel Representation pydicom propagated into it
        self._pixel_rep = None if isinstance(ds, PlainDataset) \
            else getattr(ds, "_pixel_rep", None)
        try:
            return self._dataset(ds, path, inherited)
        finally:
            self._pixel_rep = saved

    def _dataset(self, ds: Dataset | PlainDataset, path: str,
                 inherited: list[str] | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if inherited is None or 0x00080005 in ds._dict:
            encodings = _encodings(ds)
        else:
            encodings = inherited
        elements = ds._dict
        fast = self.fast
        fast_raw = self._fast_raw
        for tag in sorted(elements, key=int):  # int keys: C-level sorting
            group = tag >> 16  # _skip, inlined: this loop runs for every element
            if group == 0x0002 or group == 0 or not tag & 0xFFFF or group == 0xFFFC:
                continue
            key = f"{tag:08X}"
            raw = elements[tag]
            if fast and isinstance(raw, tuple):  # raw: a tuple; converted: a DataElement
                element = fast_raw(tag, raw, path, key, encodings, elements)
                if element is not None:
                    out[key] = element
                    continue
            out[key] = self.element(ds, tag, path + key, encodings)
        return out

    def _fast_raw(self, tag: int, raw: RawDataElement | PlainElement, path: str, key: str,
                  encodings: list[str], elements: dict) -> dict[str, Any] | None:
        """An element as read (not converted), from its bytes or, read without a value,
        by `_fast_unread`; None: `element` decides (a value cut short among others)."""
        value = raw.value
        if value is None:
            return self._fast_unread(tag, raw, path + key, encodings, elements)
        if raw.length != len(value):
            return None
        return self._fast_element(tag, raw, path, key, encodings, elements)

    def _fast_unread(self, tag: int, raw: RawDataElement | PlainElement, name: str,
                     encodings: list[str], elements: dict) -> dict[str, Any] | None:
        """An element read without a value: empty (pydicom's raw value of an empty number
        or binary element is None) or deferred; as `element` writes them, without
        converting the element; None: `element` decides (an ambiguous VR, a deferred
        value that is no bulk data)."""
        vr = raw.VR or rawvalues.dictionary_vr(tag)
        length = raw.length
        if vr is None:  # implicit VR: private, ambiguous or unknown
            if not length:  # converted: the VR pydicom's conversion gives
                vr = _undecided_vr(tag, elements, encodings, self._pixel_rep)
                return None if vr is None else {"vr": vr}
            vr = _resolved_vr(None, tag)  # deferred: `element` writes it under this VR
        elif vr == "UN" and raw.VR:  # pydicom gives an explicit UN its dictionary VR
            return None
        if length == 0:
            return {"vr": vr}
        if length != UNDEFINED_LENGTH and vr in BULK_VRS and self.thresholds.exceeded(tag, length):
            return {"vr": vr, "BulkDataURI": self.bulk.add(name, None, (raw.value_tell, length))}
        return None

    def _fast_sequence(self, raw: RawDataElement | PlainElement, name: str,
                       encodings: list[str], elements: dict) -> dict[str, Any] | None:
        """A defined-length sequence encoded from its bytes, without pydicom building a
        Dataset per item (a fifth of the encoding time of a typical CT header). Only
        little endian items (explicit or implicit VR, as the sequence is: pydicom reads
        the items of an implicit VR sequence as implicit) whose every element takes the
        fast path; anything else (None) takes pydicom's path, which gives the same output."""
        if not raw.is_little_endian:
            return None
        saved = self._pixel_rep
        self._pixel_rep = _items_pixel_rep(elements, saved)
        self._enter(name)
        try:
            return self._fast_items(raw.value, name, encodings, raw.is_implicit_VR)
        finally:
            self._depth -= 1
            self._pixel_rep = saved

    def _enter(self, name: str) -> None:
        """Open one more sequence level, refusing files nested past the limit (jsonio)."""
        self._depth += 1
        if self._depth > MAX_SEQUENCE_DEPTH:
            raise ConversionError(f"sequence ({name[:4]},{name[4:8]}) holds sequences nested "
                                  f"more than {MAX_SEQUENCE_DEPTH} levels deep")

    def _fast_items(self, data: bytes, name: str, encodings: list[str],
                    implicit: bool) -> dict[str, Any] | None:
        """The items of a defined-length sequence value, each of defined length, walked
        by `raw_walk.walk_item`; None for anything else (an undefined-length item, a
        delimiter, a malformed item): pydicom's path decides."""
        items: list[dict[str, Any]] = []
        pos, size = 0, len(data)
        while pos < size:
            if pos + 8 > size:
                return None
            group, element, length = _ITEM_HEADER.unpack_from(data, pos)
            start = pos + 8
            if group != 0xFFFE or element != 0xE000 or length == UNDEFINED_LENGTH \
                    or start + length > size:
                return None
            elements = walk_item(data, start, length, implicit)
            if elements is None:
                return None
            item = self._fast_item(elements, f"{name}.{len(items)}.", encodings)
            if item is None:
                return None
            items.append(item)
            pos = start + length
        return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}

    def _fast_item(self, elements: dict[int, PlainElement], path: str,
                   encodings: list[str]) -> dict[str, Any] | None:
        if 0x00080005 in elements:
            return None  # an item with its own character set
        out: dict[str, Any] = {}
        for tag in sorted(elements):
            if _skip(tag):
                continue
            key = f"{tag:08X}"
            element = self._fast_raw(tag, elements[tag], path, key, encodings, elements)
            if element is None:
                return None
            out[key] = element
        return out

    def element(self, ds: Dataset | PlainDataset, tag: int, name: str,
                encodings: list[str] | None = None) -> dict[str, Any]:
        if isinstance(ds, PlainDataset):
            raise NotPlain(f"element {tag:08X} needs pydicom's decoding")
        from pydicom.dataelem import RawDataElement

        raw = ds._dict[tag]  # as read: a RawDataElement unless already converted
        raw_bytes: bytes | None = None
        if isinstance(raw, RawDataElement):
            length = raw.length
            if raw.value is None and length not in (0, UNDEFINED_LENGTH):
                # deferred by the reader: too big to be anything but bulk, or to be read now
                vr = _resolved_vr(raw.VR, tag)
                if vr in BULK_VRS and self.thresholds.exceeded(tag, length):
                    return {"vr": vr, "BulkDataURI": self.bulk.add(name, None,
                                                                   (raw.value_tell, length))}
                self.stream.seek(raw.value_tell)
                data = self.stream.read(length)
                if len(data) != length:
                    raise TruncatedError(f"truncated: the file ends inside element {tag}")
                raw = raw._replace(value=data)
                ds._dict[tag] = raw
            elif raw.value is not None and length != UNDEFINED_LENGTH and len(raw.value) != length:
                raise TruncatedError(f"truncated: the file ends inside element {tag}")
            raw_bytes = raw.value
        try:
            elem = ds[tag]
        except Exception as exc:  # pydicom's value conversion: report, don't guess
            raise ConversionError(f"element {tag} cannot be decoded: {exc}") from None
        vr = _resolved_vr(elem.VR, tag)
        if vr == "SQ":
            self._enter(name)
            try:
                items = [self.dataset(item, f"{name}.{i}.", encodings)
                         for i, item in enumerate(elem.value or [])]
            finally:
                self._depth -= 1
            return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
        if vr in BINARY_VRS or vr not in _ENCODERS:
            data = raw_bytes if raw_bytes is not None else _bytes_value(elem)
            if not data:
                return {"vr": vr}
            if self.thresholds.exceeded(tag, len(data)):
                return {"vr": vr, "BulkDataURI": self.bulk.add(name, data, None)}
            return {"vr": vr, "InlineBinary": base64.b64encode(data).decode("ascii")}
        if (raw_bytes is not None and vr in BULK_VRS
                and self.thresholds.exceeded(tag, len(raw_bytes))):
            return {"vr": vr, "BulkDataURI": self.bulk.add(name, raw_bytes, None)}
        try:
            values = _ENCODERS[vr](elem.value, vr)
        except rawvalues.InvalidNumber:
            data = raw_bytes if raw_bytes is not None else _text_bytes(elem)
            return self._invalid_number(vr, data, name)
        if vr in ("FL", "FD") and any(isinstance(v, float) and not math.isfinite(v)
                                      for v in values):
            # JSON numbers cannot hold NaN or infinity; bulk data keeps them exactly
            data = raw_bytes if raw_bytes is not None else _bytes_value(elem)
            return {"vr": vr, "BulkDataURI": self.bulk.add(name, data, None)}
        if not values or all(v is None for v in values) and len(values) == 1:
            return {"vr": vr}
        return {"vr": vr, "Value": values}


    def _invalid_number(self, vr: str, data: bytes, name: str) -> dict[str, Any]:
        """IS/DS text that is no number: its bytes as bulk data under the element's own VR
        (PS3.18 F.2.6 allows BulkDataURI for IS and DS), so every reader loads the document
        and the value stays exact; the report says which element and what it held."""
        text = data.decode("latin_1").strip(" \0")
        self.warnings.append(f"element {name} has an invalid {vr} value {text!r}: "
                             "published as bulk data, bytes unchanged")
        return {"vr": vr, "BulkDataURI": self.bulk.add(name, data, None)}


def _text_bytes(elem: DataElement) -> bytes:
    """The stored text of a string value pydicom holds already converted (no raw bytes)."""
    texts = ["" if v is None else getattr(v, "original_string", None) or str(v)
             for v in _as_list(elem.value)]
    return "\\".join(texts).encode("latin_1")


def _encodings(ds: Dataset | PlainDataset) -> list[str]:
    encodings = character_set(ds)
    return [encodings] if isinstance(encodings, str) else list(encodings or [])


def _bytes_value(elem: DataElement) -> bytes:
    value = elem.value
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise ConversionError(f"element {elem.tag} has no raw bytes to publish")


def _strings(value: Any, vr: str) -> list[str | None]:
    if vr in SINGLE_VALUE_TEXT_VRS:
        text = "" if value is None else str(value)
        return [text] if text else []
    strip = str.strip if vr in SPACE_PADDED_VRS else _rstrip_spaces
    texts = ["" if v is None else strip(str(v)) for v in _as_list(value)]
    if len(texts) == 1:
        return texts if texts[0] else []
    return [t or None for t in texts]


def _rstrip_spaces(text: str) -> str:
    return text.rstrip(" ")


def _person_names(value: Any, vr: str) -> list[dict[str, str] | None]:
    out: list[dict[str, str] | None] = []
    for name in _as_list(value):
        if name is None:
            out.append(None)
            continue
        components = getattr(name, "components", None)
        if components is None:
            components = tuple(str(name).split("="))
        # trailing empty components are padding (PS3.5 6.2.1): "Doe^John^^^" is "Doe^John"
        stripped = (c.rstrip("^ ") for c in components)
        groups = {g: c for g, c in zip(_PN_GROUPS, stripped) if c}
        out.append(groups or None)
    return out


def _numbers(value: Any, vr: str) -> list[int | float]:
    if isinstance(value, (bytes, bytearray)):  # pydicom leaves odd-length values as bytes
        raise ConversionError(f"{vr} value of {len(value)} bytes is not a whole number of values")
    return [float(v) if vr in ("FL", "FD") else int(v) for v in _as_list(value)]


def _decimal_strings(value: Any, vr: str) -> list[int | float | str | None]:
    items = _as_list(value)
    out = [
        json_number(getattr(v, "original_string", None) or str(v), vr) if v is not None else None
        for v in items
    ]
    return out


def _tags(value: Any, vr: str) -> list[str]:
    return [f"{int(v):08X}" for v in _as_list(value)]


_ENCODERS = {
    **{vr: _strings for vr in "AE AS CS DA DT LO LT SH ST TM UC UI UR UT".split()},
    "PN": _person_names,
    "AT": _tags,
    "IS": _decimal_strings,
    "DS": _decimal_strings,
    **{vr: _numbers for vr in NUMBER_VRS},
}
