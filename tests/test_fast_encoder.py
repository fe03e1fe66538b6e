"""The raw-bytes fast path of the JSON encoder gives byte-identical metadata to decoding
every value through pydicom, for the whole test corpus."""

from __future__ import annotations

import warnings
from pathlib import Path

import orjson
import pytest

from dcmweb_static import synthetic as syn
from dcmweb_static.encode.dicom_json import BulkThresholds, JsonEncoder
from dcmweb_static.p10.parse import parse_p10

from . import corpus, implicit_corpus
from .conftest import PYDICOM_DATA, pydicom_corpus


class RecordingSink:
    def __init__(self) -> None:
        self.added: list[tuple[str, bytes | None, tuple[int, int] | None]] = []

    def add(self, name, data, source_range):
        self.added.append((name, data, source_range))
        return f"bulkdata/{name}"


def _encode(path: Path, fast: bool) -> tuple[bytes, list]:
    sink = RecordingSink()
    with open(path, "rb") as stream, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = parse_p10(stream, defer_size=131074)
        document = JsonEncoder(BulkThresholds(private=16, public=1024), sink, stream,
                               fast=fast).dataset(parsed.dataset)
    return orjson.dumps(document), sink.added


def _readable(paths: list[Path]) -> list[Path]:
    ok = []
    for path in paths:
        try:
            _encode(path, fast=False)
        except Exception:
            continue
        ok.append(path)
    return ok


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    generated = corpus.build(tmp_path_factory.mktemp("fast"))
    implicit = implicit_corpus.build(tmp_path_factory.mktemp("implicit"))
    wide = syn.save(syn.wide_ct_header(syn.uid(800), 256), tmp_path_factory.mktemp("w") / "w.dcm")
    return _readable(pydicom_corpus() + list(generated.values()) + list(implicit.values())
                     + [wide])


def test_fast_path_is_byte_identical(files: list[Path]) -> None:
    assert len(files) > 150
    for path in files:
        slow, slow_bulk = _encode(path, fast=False)
        fast, fast_bulk = _encode(path, fast=True)
        where = path.relative_to(PYDICOM_DATA) if PYDICOM_DATA in path.parents else path.name
        assert fast == slow, f"fast path differs for {where}"
        assert fast_bulk == slow_bulk, f"bulk data differs for {where}"


def test_defined_length_sequences_are_encoded_without_pydicom_datasets(tmp_path: Path) -> None:
    """The fast path reads sequence items from their bytes: the sequence element is left
    as pydicom read it (raw), and the output equals pydicom's way."""
    from pydicom.dataelem import RawDataElement

    path = syn.save(syn.wide_ct_header(syn.uid(801), 256), tmp_path / "w.dcm")
    with open(path, "rb") as stream:
        parsed = parse_p10(stream, defer_size=131074)
        sequences = [tag for tag, raw in parsed.dataset._dict.items()
                     if isinstance(raw, RawDataElement) and raw.VR == "SQ"]
        assert len(sequences) >= 2  # one nests another sequence
        document = JsonEncoder(BulkThresholds(private=16, public=1024), RecordingSink(),
                               stream).dataset(parsed.dataset)
        assert all(type(parsed.dataset._dict[tag]) is RawDataElement for tag in sequences)
    assert orjson.dumps(document) == _encode(path, fast=False)[0]
    nested = document["00082218"]["Value"][0]["00081140"]["Value"][0]
    assert nested and all("vr" in element for element in nested.values())


def test_implicit_vr_private_elements_and_sequences_are_encoded_from_their_bytes(
        files: list[Path]) -> None:
    """In implicit VR files the fast path gives private elements (by their creator's
    private dictionary), repeater-group elements and defined-length sequences the VR
    pydicom gives them and writes their values from the bytes: every element of those
    files stays as read (none converted by pydicom), and the document is pydicom's."""
    from pydicom.dataelem import RawDataElement

    names = {f"implicit_{name}.dcm" for name in implicit_corpus.PLAIN}
    implicit = [path for path in files if path.name in names]
    assert len(implicit) == len(names)
    for path in implicit:
        with open(path, "rb") as stream:
            parsed = parse_p10(stream, defer_size=131074)
            assert parsed.is_implicit_vr
            document = JsonEncoder(BulkThresholds(private=16, public=1024), RecordingSink(),
                                   stream).dataset(parsed.dataset)
            converted = [tag for tag, raw in parsed.dataset._dict.items()
                         if type(raw) is not RawDataElement]
        assert not converted, (path.name, converted)
        assert orjson.dumps(document) == _encode(path, fast=False)[0], path.name
    known = _encode(implicit[0], fast=True)[0]
    assert b'"00091002":{"vr":"SH"' in known and b'"00291010":{"vr":"OB"' in known
    assert b'"00091099":{"vr":"UN"' in known  # an element its creator's dictionary lacks
    by_name = {path.name: path for path in implicit}
    signed = _encode(by_name["implicit_signed_pixels.dcm"], fast=True)[0]
    assert b'"00280106":{"vr":"SS","Value":[-1024]}' in signed  # Pixel Representation 1
    overlay = _encode(by_name["implicit_overlay_data.dcm"], fast=True)[0]
    assert b'"00280106":{"vr":"US","Value":[0]}' in overlay
    assert b'"60003000":{"vr":"OW","InlineBinary"' in overlay
    items = orjson.loads(_encode(by_name["implicit_ambiguous_in_items.dcm"], fast=True)[0])
    mapping, own = items["00409096"]["Value"]  # Pixel Representation 1 above, 0 in `own`
    assert mapping["00409211"] == {"vr": "SS", "Value": [-100]}
    assert mapping["00082112"]["Value"][0]["00280106"] == {"vr": "SS", "Value": [-5]}
    assert own["00280106"] == {"vr": "US", "Value": [40000]}
