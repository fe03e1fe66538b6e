"""The readers of p10/datasets.py (uid_value, int_value, code_value) give what
`Dataset.get` gives, on values that exercise their edges, in every encoding; they leave
the element raw only when they decoded it themselves, and never read a deferred value."""

from __future__ import annotations

import struct
import warnings
from io import BytesIO

import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset

from dcmweb_static.p10.datasets import character_set, code_value, int_value, uid_value
from dcmweb_static.p10.parse import parse_p10

from .conftest import pydicom_corpus

ENCODINGS = {  # name: (implicit VR, little endian)
    "explicit little": (False, True),
    "implicit little": (True, True),
    "explicit big": (False, False),
}
TAGS = {"StudyInstanceUID": (0x0020000D, "UI"), "Rows": (0x00280010, "US"),
        "NumberOfFrames": (0x00280008, "IS"),
        "PhotometricInterpretation": (0x00280004, "CS"), "BitsAllocated": (0x00280100, "US")}


def _element(tag: int, vr: str, value: bytes, implicit: bool, little: bool) -> bytes:
    e = "<" if little else ">"
    head = struct.pack(e + "HH", tag >> 16, tag & 0xFFFF)
    if implicit:
        return head + struct.pack(e + "L", len(value)) + value
    if vr in ("OB", "UN"):
        return head + vr.encode() + b"\0\0" + struct.pack(e + "L", len(value)) + value
    return head + vr.encode() + struct.pack(e + "H", len(value)) + value


def _dataset(keyword: str, value: bytes, encoding: str, vr: str | None = None,
             defer: int | None = None) -> Dataset:
    implicit, little = ENCODINGS[encoding]
    tag, dictionary_vr = TAGS[keyword]
    data = _element(tag, vr or dictionary_vr, value, implicit, little)
    return read_dataset(BytesIO(data), implicit, little, defer_size=defer)


def _outcome(call) -> tuple[object, list[str]]:
    """(the value, or the type of the exception raised; the warnings emitted)"""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            got = call()
        except Exception as exc:  # noqa: BLE001 - compared with the reader's
            got = type(exc)
    return got, [str(w.message) for w in caught]


UIDS = [b"1.2.840.10008.1.2.1\0", b"1.2.3", b"1.2.3 ", b"1.2.3\0\0", b" 1.2.3", b"1.2.3\\4.5",
        b"", b"1.2.a", b"1" * 64, b"1" * 64 + b"\0\0", b"1" * 65 + b"\0", b"1..2"]
US_VALUES = [struct.pack("<H", 512), struct.pack(">H", 512), b"", struct.pack("<HH", 1, 2),
             b"\x01"]
IS_VALUES = [b"1 ", b" 12", b"12", b"000000000012", b" 0000000012 ", b"1.0 ", b"+3", b"-2",
             b"", b"1\\2 ", b"  ", b"a "]
CS_VALUES = [b"MONOCHROME2 ", b"YBR_FULL_422", b"RGB ", b" RGB", b"YBR\\RGB ", b"", b"rgb ",
             b"A" * 18]


def _check(reader, keyword: str, value: bytes, encoding: str, vr: str | None = None,
           default=None):
    theirs = _dataset(keyword, value, encoding, vr)
    expected = _outcome(lambda: theirs.get(keyword, default))
    ds = _dataset(keyword, value, encoding, vr)
    got = _outcome(lambda: reader(ds, keyword) if default is None
                   else reader(ds, keyword, default))
    assert got == expected  # the same value (or exception), the same warnings
    tag = TAGS[keyword][0]
    # decoded here: the element is still raw and no exception came from pydicom
    return type(ds._dict[tag]) is RawDataElement and not isinstance(got[0], type)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("value", UIDS)
def test_uid_value_is_what_pydicom_gives(encoding, value):
    raw = _check(uid_value, "StudyInstanceUID", value, encoding)
    plain = value.rstrip(b"\0 ")
    assert raw == (bool(plain) and len(value) <= 64 and set(plain) <= set(b"0123456789.")
                   and b".." not in plain)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("value", US_VALUES)
def test_us_value_is_what_pydicom_gives(encoding, value):
    assert _check(int_value, "Rows", value, encoding) == (len(value) == 2)
    _check(int_value, "BitsAllocated", value, encoding, default=16)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("value", IS_VALUES)
def test_is_value_is_what_pydicom_gives(encoding, value):
    raw = _check(int_value, "NumberOfFrames", value, encoding, default=1)
    assert raw == (value.strip(b" ").isdigit() and len(value) <= 12)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("value", CS_VALUES)
def test_cs_value_is_what_pydicom_gives(encoding, value):
    _check(code_value, "PhotometricInterpretation", value, encoding, default="")


@pytest.mark.parametrize("vr", ["SS", "UN", "OB", "LO"])
def test_another_vr_goes_through_pydicom(vr):
    value = struct.pack("<H", 512) if vr != "LO" else b"12"
    assert not _check(int_value, "Rows", value, "explicit little", vr=vr)
    assert not _check(uid_value, "StudyInstanceUID", b"1.2.3\0", "explicit little", vr=vr)


def test_absent_attribute_gives_the_default():
    ds = Dataset()
    assert uid_value(ds, "StudyInstanceUID") is None
    assert int_value(ds, "NumberOfFrames", 1) == 1
    assert int_value(ds, "Rows") is None
    assert code_value(ds, "PhotometricInterpretation") == ""


def test_deferred_value_is_read_by_pydicom_not_here():
    ds = _dataset("StudyInstanceUID", b"1.2.3\0", "explicit little", defer=2)
    theirs = _dataset("StudyInstanceUID", b"1.2.3\0", "explicit little", defer=2)
    assert ds._dict[0x0020000D].value is None  # deferred: no bytes for a raw decode
    assert _outcome(lambda: uid_value(ds, "StudyInstanceUID")) == \
        _outcome(lambda: theirs.get("StudyInstanceUID"))


def test_corpus_values_are_what_pydicom_gives():
    """Every file of the corpus: the readers agree with Dataset.get on a second parse."""
    checked = 0
    for path in pydicom_corpus():
        try:
            with open(path, "rb") as stream, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mine = parse_p10(stream, defer_size=1 << 30).dataset
                stream.seek(0)
                theirs = parse_p10(stream, defer_size=1 << 30).dataset
                for keyword, (_, vr) in TAGS.items():
                    if vr == "UI":
                        got, expected = uid_value(mine, keyword), theirs.get(keyword)
                    elif vr == "CS":
                        got, expected = code_value(mine, keyword), theirs.get(keyword, "")
                    else:
                        got, expected = int_value(mine, keyword), theirs.get(keyword)
                    assert str(got) == str(expected), (path, keyword)
        except Exception as exc:  # noqa: BLE001 - files the converter refuses anyway
            if isinstance(exc, AssertionError):
                raise
            continue
        checked += 1
    assert checked > 50


CHARSETS = [b"ISO_IR 100", b"ISO_IR 192", b"ISO_IR 6 ", b" ISO_IR 100",
            b"ISO 2022 IR 6\\ISO 2022 IR 87", b"", b"  ", b"NOT_A_CHARSET", b"iso_ir 100",
            b"ISO_IR 100" + b" " * 8]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("value", CHARSETS)
def test_character_set_is_what_pydicom_gives(encoding, value):
    implicit, little = ENCODINGS[encoding]
    data = _element(0x00080005, "CS", value, implicit, little)
    ds = read_dataset(BytesIO(data), implicit, little)
    theirs = read_dataset(BytesIO(data), implicit, little)
    assert _outcome(lambda: character_set(ds)) == _outcome(lambda: theirs._character_set)


def test_character_set_absent_is_the_parent_encoding():
    ds, theirs = Dataset(), Dataset()
    ds._parent_encoding = theirs._parent_encoding = ["iso8859"]
    assert character_set(ds) == theirs._character_set


def test_unknown_keyword_is_left_to_pydicom():
    ds = Dataset()
    assert _outcome(lambda: int_value(ds, "NoSuchKeyword", 3)) == \
        _outcome(lambda: Dataset().get("NoSuchKeyword", 3))
    assert _outcome(lambda: uid_value(ds, "NoSuchKeyword")) == \
        _outcome(lambda: Dataset().get("NoSuchKeyword"))
