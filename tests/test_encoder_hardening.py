"""Issue 10, defects 8-10: big-endian 8-bit OW frames, invalid IS/DS text, and sequences
nested deeper than orjson's recursion limit."""

from __future__ import annotations

import base64
import gzip
import json
import warnings
from pathlib import Path

import numpy as np
import orjson
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dcmweb_static import jsonio
from dcmweb_static.jsonmodel import BulkThresholds, JsonEncoder
from dcmweb_static.p10 import parse_p10

from .conftest import PYDICOM_DATA
from .deepfiles import deep_file
from .reference import assert_same_dataset
from .test_fast_encoder import RecordingSink
from .treeutil import (
    convert,
    dataset_from_tree,
    frame_bodies,
    instance_folder,
    load_metadata,
    resolve_bulk,
)

TEST_FILES = PYDICOM_DATA / "test_files"


def _info(folder: Path) -> dict:
    return json.loads((folder / "info").read_bytes())


# --- defect 8: big endian, 8-bit samples stored as OW ------------------------------------

def test_big_endian_odd_ow_frame_equals_little_endian_twin(tmp_path: Path) -> None:
    big = TEST_FILES / "SC_rgb_small_odd_big_endian.dcm"
    little = TEST_FILES / "SC_rgb_small_odd.dcm"
    (rb,) = convert([big], tmp_path / "big")
    (rl,) = convert([little], tmp_path / "little")
    assert rb.status == rl.status == "converted", (rb.reason, rl.reason)
    (_, body_big), = frame_bodies(instance_folder(tmp_path / "big", rb))
    (_, body_little), = frame_bodies(instance_folder(tmp_path / "little", rl))
    assert body_big == body_little
    ds = pydicom.dcmread(big)
    assert int(ds.PlanarConfiguration) == 0  # pixel_array keeps the stored sample order
    assert body_big == ds.pixel_array.tobytes()
    pixel = _info(instance_folder(tmp_path / "big", rb))["pixel_data"]
    assert pixel["frames_byte_swapped"] == 2


def _be_ow_file(path: Path, frames: int, rows: int, columns: int, samples: int = 1) -> Path:
    """Explicit VR big endian, BitsAllocated 8, Pixel Data as OW: each 16-bit word of the
    sample stream stored byte-swapped (PS3.5 7.3), padded to even length."""
    size = frames * rows * columns * samples
    stream = bytes((7 * i + 3) % 256 for i in range(size))
    padded = stream + b"\0" * (size % 2)
    swapped = np.frombuffer(padded, ">u2").astype("<u2").tobytes()
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.77.{frames}.{rows}.{columns}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.7", "1.2.3.4.7"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, samples
    ds.PhotometricInterpretation = "MONOCHROME2" if samples == 1 else "RGB"
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.add_new(0x7FE00010, "OW", swapped)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True, little_endian=False, implicit_vr=False)
    return path


@pytest.mark.parametrize("frames,rows,columns,samples", [
    (3, 3, 3, 1),   # odd frames: the 2nd starts mid-word, the value is padded
    (4, 2, 2, 1),   # even frames
    (1, 3, 5, 1),   # one odd frame
    (5, 1, 1, 3),   # RGB, 3 bytes a frame
    (3, 1025, 1023, 1),  # odd frames longer than a copy block (1 MiB)
])
def test_big_endian_ow_8_bit_frames_give_samples_in_order(tmp_path: Path, frames: int,
                                                          rows: int, columns: int,
                                                          samples: int) -> None:
    path = _be_ow_file(tmp_path / "be.dcm", frames, rows, columns, samples)
    (result,) = convert([path], tmp_path / "out")
    assert result.status == "converted", result.reason
    folder = instance_folder(tmp_path / "out", result)
    bodies = [body for _, body in frame_bodies(folder)]
    ds = pydicom.dcmread(path)
    expected = ds.pixel_array.reshape(frames, -1)
    assert bodies == [row.tobytes() for row in expected]
    info = _info(folder)["pixel_data"]
    assert info["frames_byte_swapped"] == 2
    # the padding byte of an odd-length stream, which no frame holds
    assert base64.b64decode(info["swapped_tail"]) == b"\0" * (len(b"".join(bodies)) % 2)
    # the recorded layout maps each frame back onto the stored (swapped) words
    raw = path.read_bytes()
    for body, entry in zip(bodies, info["frames"]):
        (offset, length), = entry["segments"]
        assert offset % 2 == (info["value_offset"] % 2) and length % 2 == 0
        words = raw[offset:offset + length]
        unswapped = np.frombuffer(words, "<u2").astype(">u2").tobytes()
        assert unswapped[entry["skip"]:entry["skip"] + entry["length"]] == body


def test_big_endian_16_bit_and_ob_frames_are_unchanged(tmp_path: Path) -> None:
    """Only 8-bit samples in OW words are swapped: 16-bit big endian frames stay as stored."""
    path = TEST_FILES / "MR_small_bigendian.dcm"
    (result,) = convert([path], tmp_path / "out")
    folder = instance_folder(tmp_path / "out", result)
    (_, body), = frame_bodies(folder)
    assert body == pydicom.dcmread(path).PixelData
    assert "frames_byte_swapped" not in _info(folder)["pixel_data"]


# --- defect 9: invalid IS/DS text ---------------------------------------------------------

def _invalid_number_file(path: Path, implicit: bool = False) -> Path:
    """Placeholders of the right length, patched to invalid text after writing."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.99.1"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.9", "1.2.3.4.9"
    ds.PatientWeight = "12.3456789"          # -> 33.33#333 (single DS)
    ds.PixelSpacing = ["1.25", "2.5", "7.75"]  # -> one bad value of three
    ds.SeriesNumber = "1234"                   # -> 12a4 (single IS)
    ds.InstanceNumber = "5"                    # valid, stays a number
    item = Dataset()
    item.SliceThickness = "98.765432"          # -> 9.8.7e+1 (DS in a sequence item)
    item.ReferencedFrameNumber = ["11", "22"]  # -> 11\2x (IS multi-valued, nested)
    ds.ReferencedImageSequence = Sequence([item])
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True, implicit_vr=implicit)
    data = path.read_bytes()
    for old, new in ((b"12.3456789", b"33.33#333 "), (b"1.25\\2.5\\7.75", b"1.25\\2,5\\7.75"),
                     (b"1234", b"12a4"), (b"98.765432", b"9.8.7e+1 "), (b"11\\22", b"11\\2x")):
        assert data.count(old) == 1
        data = data.replace(old, new)
    path.write_bytes(data)
    return path


INVALID = {  # JSON path of the element -> its stored bytes
    "00101030": b"33.33#333 ",
    "00280030": b"1.25\\2,5\\7.75 ",
    "00200011": b"12a4",
    "00081140.0.00180050": b"9.8.7e+1  ",
    "00081140.0.00081160": b"11\\2x ",
}


def _element(document: dict, path: str) -> dict:
    *parents, last = path.split(".")
    node = document
    for i in range(0, len(parents), 2):
        node = node[parents[i]]["Value"][int(parents[i + 1])]
    return node[last]


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_invalid_is_ds_load_in_from_json_and_keep_their_bytes(tmp_path: Path,
                                                              implicit: bool) -> None:
    path = _invalid_number_file(tmp_path / "bad.dcm", implicit)
    (result,) = convert([path], tmp_path / "out")
    assert result.status == "converted", result.reason
    folder = instance_folder(tmp_path / "out", result)
    (document,) = load_metadata(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no bulk data URI handler"
        Dataset.from_json(document)  # must not raise
    for name, stored in INVALID.items():
        element = _element(document, name)
        assert element["vr"] in ("IS", "DS") and set(element) == {"vr", "BulkDataURI"}
        assert resolve_bulk(folder, element["BulkDataURI"]) == stored
        text = stored.decode().strip()
        assert any(name in w and repr(text) in w for w in result.warnings), result.warnings
    assert document["00200013"] == {"vr": "IS", "Value": [5]}


def test_invalid_is_ds_same_on_fast_and_pydicom_paths(tmp_path: Path) -> None:
    path = _invalid_number_file(tmp_path / "bad.dcm")
    outputs = []
    for fast in (True, False):
        with open(path, "rb") as stream, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            encoder = JsonEncoder(BulkThresholds(), RecordingSink(), stream, fast=fast)
            document = encoder.dataset(parse_p10(stream, defer_size=1 << 20).dataset)
        outputs.append((orjson.dumps(document), sorted(encoder.warnings)))
    assert outputs[0] == outputs[1]
    assert len(outputs[0][1]) == len(INVALID)


# --- defect 10: deeply nested sequences ---------------------------------------------------

@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
def test_150_deep_sequence_round_trips(tmp_path: Path, undefined: bool) -> None:
    path = deep_file(tmp_path / "deep.dcm", 150, undefined)
    for dedup in (False, True):
        out = tmp_path / f"out{dedup}"
        (result,) = convert([path], out, deduplicate=dedup)
        assert result.status == "converted", result.reason
        folder = instance_folder(out, result)
        source = pydicom.dcmread(path)
        assert_same_dataset(source, dataset_from_tree(folder))
        # the series and study documents hold the same instance, parsed by orjson
        series = folder.parent.parent
        for level in (series, series.parent.parent):
            (doc,) = orjson.loads(gzip.decompress((level / "metadata.gz").read_bytes()))
            assert doc == load_metadata(folder)[0]


@pytest.mark.parametrize("depth,undefined", [(jsonio.MAX_SEQUENCE_DEPTH, False),
                                             (jsonio.MAX_SEQUENCE_DEPTH, True)])
def test_deepest_allowed_sequence_converts(tmp_path: Path, depth: int, undefined: bool) -> None:
    (result,) = convert([deep_file(tmp_path / "deep.dcm", depth, undefined)], tmp_path / "o")
    assert result.status == "converted", result.reason


@pytest.mark.parametrize("depth,undefined", [(jsonio.MAX_SEQUENCE_DEPTH + 1, False),
                                             (400, True), (3000, False), (3000, True)])
def test_too_deep_sequence_is_refused_with_a_reason(tmp_path: Path, depth: int,
                                                    undefined: bool) -> None:
    (result,) = convert([deep_file(tmp_path / "deep.dcm", depth, undefined)], tmp_path / "o")
    assert result.status == "failed"
    assert f"nested more than {jsonio.MAX_SEQUENCE_DEPTH} levels deep" in result.reason
    assert "unexpected" not in result.reason and "Recursion" not in result.reason


def _nested(depth: int) -> dict:
    node: dict = {"00080100": {"vr": "SH", "Value": ["leaf é \u2028 \"q\""]}}
    for level in range(depth):
        node = {"00080100": {"vr": "SH", "Value": [str(level)]},
                "00081160": {"vr": "IS", "Value": [level, 1.5, None, 1e16, -0.0]},
                "0040A043": {"vr": "SQ", "Value": [node]}}
    return node


def test_jsonio_dumps_is_orjson_byte_for_byte_at_any_depth() -> None:
    shallow = [_nested(50)]
    assert jsonio.dumps(shallow) == orjson.dumps(shallow)
    deep = [_nested(300)]
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps(deep)
    data = jsonio.dumps(deep)
    assert jsonio.loads(data) == deep
    # every part orjson can write alone is written by orjson: splicing changes no byte
    inner = deep[0]
    for _ in range(290):
        inner = inner["0040A043"]["Value"][0]
    assert orjson.dumps(inner) in data
    with pytest.raises(TypeError):
        jsonio.dumps([{1, 2}])  # other errors still raise


def test_integer_text_beyond_64_bits(tmp_path: Path) -> None:
    """orjson writes no integer beyond 64 bits: such IS text is invalid (bulk data), such
    DS text is a decimal (a number when a double holds it exactly)."""
    ds = pydicom.dcmread(_invalid_number_file(tmp_path / "bad.dcm"))
    ds.AcquisitionNumber, ds.PatientWeight = "1", "2"
    path = tmp_path / "big.dcm"
    ds.save_as(path, enforce_file_format=True)
    raw = path.read_bytes()
    for old, new in ((b"\x20\x00\x12\x00IS\x02\x001 ",
                      b"\x20\x00\x12\x00IS\x18\x00123456789012345678901234"),
                     (b"\x10\x00\x30\x10DS\x02\x002 ",
                      b"\x10\x00\x30\x10DS\x16\x00-100000000000000000000")):
        assert raw.count(old) == 1
        raw = raw.replace(old, new)
    path.write_bytes(raw)
    (result,) = convert([path], tmp_path / "out")
    assert result.status == "converted", result.reason
    (document,) = load_metadata(instance_folder(tmp_path / "out", result))
    assert set(document["00200012"]) == {"vr", "BulkDataURI"}
    assert document["00101030"] == {"vr": "DS", "Value": [-1e20]}  # exact as a double
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Dataset.from_json(document)
