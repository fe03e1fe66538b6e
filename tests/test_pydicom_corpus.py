"""Every readable file of pydicom's bundled test data, converted and read back: metadata
equals pydicom's own parse element by element, frames equal pydicom's frame bytes."""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import pydicom
import pytest

from dcmweb_static.uids import InvalidUIDError, check_uid

from .conftest import PYDICOM_DATA, pydicom_corpus
from .dcmtk import assert_agrees_with_dcm2json, dcm2json
from .reference import (
    assert_same_dataset,
    reference_bits,
    reference_frames,
    unpack_frame_bits,
)
from .treeutil import (
    convert,
    dataset_from_tree,
    frame_bodies,
    instance_folder,
    load_metadata,
    resolve_bulk,
)

# Files pydicom reads leniently but that are broken, each with the reason dcmweb gives.
EXPECTED_FAILURES = {
    "MR_truncated.dcm": "truncated: Pixel Data declares",
    "rtplan_truncated.dcm": "truncated: the file ends at byte",
    "badVR.dcm": "NumberOfFrames",
}
# Files whose dcm2json output is not comparable, and why.
NO_DCM2JSON_COMPARISON = {
    # a DICOMDIR given UIDs by this test: dcm2json reads it as a directory, not a dataset
    "DICOMDIR-nooffset",
    # pydicom drops the trailing NUL of a UN value inside an implicit-VR UN sequence in
    # the (illegal) group 0001; dcmweb publishes what pydicom parsed (known limitation)
    "nested_priv_SQ.dcm",
    "meta_missing_tsyntax.dcm",  # the same data set as nested_priv_SQ.dcm
}
CORPUS = pydicom_corpus()


def _with_uids(path: Path, tmp_path: Path) -> Path:
    """A copy with the UIDs a DICOMweb path needs, for test files that lack them."""
    ds = pydicom.dcmread(path)
    changed = False
    for keyword, value in (("StudyInstanceUID", "1.2.3.4"), ("SeriesInstanceUID", "1.2.3.4.5"),
                           ("SOPInstanceUID", "1.2.3.4.5.6")):
        try:
            check_uid(ds.get(keyword), keyword)
        except InvalidUIDError:
            setattr(ds, keyword, value)
            changed = True
    if not changed:
        return path
    if not ds.get("SOPClassUID"):
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    copy = tmp_path / ("uids-" + path.name)
    ds.save_as(copy, enforce_file_format=True)
    return copy


def test_corpus_is_not_empty():
    assert len(CORPUS) > 60, "pydicom's bundled test data was not found"


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: str(p.relative_to(PYDICOM_DATA)))
def test_pydicom_file_round_trips(path: Path, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source_path = _with_uids(path, tmp_path)
        (result,) = convert([source_path], tmp_path / "out")
        if path.name in EXPECTED_FAILURES:
            assert result.status == "failed"
            assert EXPECTED_FAILURES[path.name] in result.reason
            assert not [p for p in (tmp_path / "out" / "studies").iterdir() if p.is_dir()]
            return
        if result.status == "skipped":
            assert "DICOMDIR" in result.reason
            return
        assert result.status == "converted", result.reason
        source = pydicom.dcmread(source_path)
        folder = instance_folder(tmp_path / "out", result)
        ts = source.file_meta.TransferSyntaxUID
        loaded = dataset_from_tree(folder, little_endian=ts.is_little_endian,
                                   encodings=source._character_set)
        assert_same_dataset(source, loaded)
        _check_frames(source, folder)
        if path.name in NO_DCM2JSON_COMPARISON:
            return
        try:
            theirs = dcm2json(source_path, tmp_path)
        except (subprocess.CalledProcessError, UnicodeDecodeError):
            return  # dcmtk cannot read it or writes invalid JSON: pydicom is the reference
        (ours,) = load_metadata(folder)
        assert_agrees_with_dcm2json(ours, theirs, folder)


def _check_frames(source: pydicom.Dataset, folder: Path) -> None:
    pixel_tags = [t for t in (0x7FE00008, 0x7FE00009, 0x7FE00010) if t in source]
    if not pixel_tags:
        assert not (folder / "frames").exists()
        return
    if not (folder / "frames").exists():  # no image attributes: the value is one bulk item
        (document,) = load_metadata(folder)
        uri = document[f"{pixel_tags[0]:08X}"]["BulkDataURI"]
        assert resolve_bulk(folder, uri) == source[pixel_tags[0]].value
        return
    bodies = frame_bodies(folder)
    ts = source.file_meta.TransferSyntaxUID
    syntax = pydicom.uid.ExplicitVRLittleEndian if ts.is_deflated else ts
    for headers, _ in bodies:
        assert headers["content-type"].endswith(f"; transfer-syntax={syntax}")
    expected = reference_frames(source)
    if expected is None:
        per = source.Rows * source.Columns * source.SamplesPerPixel
        bits = reference_bits(source)
        assert len(bodies) == len(bits)
        for (_, body), reference in zip(bodies, bits):
            assert (unpack_frame_bits(body, per) == reference).all()
        return
    assert [body for _, body in bodies] == expected
