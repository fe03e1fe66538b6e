"""Decode raw element values straight from their bytes, the way pydicom would.

`Dataset.__getitem__` builds a DataElement (with value-type objects, validation and
MultiValue) for every element; for the JSON model only the plain values are needed, so the
common VRs are decoded here from the raw bytes with the same trimming rules pydicom's
converters apply. Anything unusual (escape sequences, undecodable bytes, ambiguous or
unknown VRs, odd lengths) returns None and the caller takes pydicom's path, so the output
is identical either way (tested on the whole corpus).
"""

from __future__ import annotations

import math
import re
import struct
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from ..p10 import dictionary

NUMBER_CODES = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d",
                "SV": "q", "UV": "Q"}
_SIZES = {vr: struct.calcsize("<" + code) for vr, code in NUMBER_CODES.items()}  # standard sizes
_LATIN1 = "latin_1"  # pydicom's default_encoding 'iso8859' is ISO 8859-1
_INTEGER = re.compile(r"[+-]?[0-9]+")
_INT64_MIN, _UINT64_MAX = -(1 << 63), (1 << 64) - 1
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class Fallback(Exception):
    """This value needs pydicom's full conversion."""


class InvalidNumber(ValueError):
    """IS/DS text outside its VR's grammar (PS3.5 Table 6.2-1), which no JSON number
    holds and which readers reject as a string (pydicom's from_json)."""


@lru_cache(maxsize=4096)
def dictionary_vr(tag: int) -> str | None:
    """The dictionary VR of a public tag (p10/dictionary.py: pydicom's table, without
    importing pydicom), or None where pydicom must decide: a private tag (its VR depends
    on the private creator: `private_vr`), an unknown tag, an ambiguous VR."""
    if (tag >> 16) & 1:
        return None
    vr = dictionary.public_vr(tag)
    return vr if vr in dictionary.VRS else None


def _text(value: bytes, encodings: list[str]) -> str:
    if b"\x1b" in value:
        raise Fallback  # ISO 2022 code extensions
    try:
        return value.decode(encodings[0] if encodings else _LATIN1)
    except (UnicodeDecodeError, LookupError):
        raise Fallback from None


def decode(value: bytes, vr: str, encodings: list[str], little_endian: bool) -> list | None:
    """PN and AT values as pydicom's converters give them (the VRs JSON_DECODERS leaves
    to jsonmodel's encoders), or None."""
    try:
        if vr == "AT":
            if len(value) % 4:
                return None
            endian = "<" if little_endian else ">"
            halves = struct.unpack(f"{endian}{len(value) // 2}H", value)
            return [halves[i] << 16 | halves[i + 1] for i in range(0, len(halves), 2)]
        if vr == "PN":
            return _text(value.rstrip(b"\x00 "), encodings).split("\\")
    except Fallback:
        return None
    return None


# --- JSON values straight from bytes -------------------------------------------------
# Each function gives the "Value" list of the DICOM JSON model (already trimmed, empty
# values as None in multi-values, [] for an empty single value), equal to what
# jsonmodel's encoders make of pydicom's converted values; None means: use pydicom.


def _finish(texts: list[str]) -> list[str | None]:
    if len(texts) == 1:
        return texts if texts[0] else []
    return [t or None for t in texts]


def _padded(value: bytes, encodings: list[str], little: bool) -> list | None:
    return _finish([t.strip() for t in value.decode(_LATIN1).rstrip(" \x00").split("\\")])


def _ae(value: bytes, encodings: list[str], little: bool) -> list | None:
    return _finish([t.strip() for t in value.decode(_LATIN1).split("\\")])


def _ascii_rstripped(value: bytes, encodings: list[str], little: bool) -> list | None:
    return _finish([t.rstrip(" ") for t in value.decode(_LATIN1).rstrip(" \x00").split("\\")])


def _texts(value: bytes, encodings: list[str], little: bool) -> list | None:
    return _finish([t.rstrip("\x00 ") for t in _text(value, encodings).split("\\")])


def _single_text(value: bytes, encodings: list[str], little: bool) -> list | None:
    text = _text(value, encodings).rstrip("\x00 ")
    return [text] if text else []


def _numbers(value: bytes, vr: str, little: bool) -> list | None:
    size = _SIZES[vr]
    if len(value) % size:
        return None
    values = list(struct.unpack(f"{'<' if little else '>'}{len(value) // size}{NUMBER_CODES[vr]}",
                                value))
    if vr in ("FL", "FD") and not all(map(_isfinite, values)):
        return None  # NaN/infinity: the caller makes it bulk data
    return values


def _isfinite(number: float) -> bool:
    return number - number == 0.0


def json_number(text: str, vr: str) -> int | float | str | None:
    """IS/DS as a JSON number when the number keeps the exact value, else (a valid DS
    a double cannot hold exactly) the string; InvalidNumber for text of neither grammar."""
    text = text.strip()
    if not text:
        return None
    if _INTEGER.fullmatch(text):
        number = int(text)
        if _INT64_MIN <= number <= _UINT64_MAX:  # what JSON writers (orjson) hold
            return number
        if vr == "IS":
            raise InvalidNumber(text)
    if vr == "DS" and _DECIMAL.fullmatch(text):
        number = float(text)
        try:  # the text as the double's shortest form: equal without two Decimals
            if math.isfinite(number) and (repr(number) == text
                                          or Decimal(repr(number)) == Decimal(text)):
                return number
        except InvalidOperation:
            pass
        return text
    raise InvalidNumber(text)


def _decimals(value: bytes, vr: str) -> list | None:
    values = [json_number(t, vr) for t in value.decode(_LATIN1).rstrip(" \x00").split("\\")]
    return [] if len(values) == 1 and values[0] is None else values


JSON_DECODERS = {
    "CS": _padded, "DA": _padded, "DT": _padded, "TM": _padded, "AE": _ae,
    "AS": _ascii_rstripped, "UI": _ascii_rstripped, "LO": _texts, "SH": _texts, "UC": _texts,
    "LT": _single_text, "ST": _single_text, "UT": _single_text,
}


def _number_decoder(vr: str):
    return lambda value, encodings, little: _numbers(value, vr, little)


def _decimal_decoder(vr: str):
    return lambda value, encodings, little: _decimals(value, vr)


JSON_DECODERS.update({vr: _number_decoder(vr) for vr in NUMBER_CODES})
JSON_DECODERS.update({vr: _decimal_decoder(vr) for vr in ("IS", "DS")})
