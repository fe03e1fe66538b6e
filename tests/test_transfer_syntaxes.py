"""Generated files of every transfer syntax: metadata equals pydicom's parse of the source,
frame bodies equal the stored frame bytes, and metadata agrees with dcmtk's dcm2json."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.encaps import generate_fragments

from . import corpus
from .dcmtk import assert_agrees_with_dcm2json, dcm2json
from .reference import assert_same_dataset, reference_bits, reference_frames, unpack_frame_bits
from .treeutil import (
    convert,
    dataset_from_tree,
    frame_bodies,
    instance_folder,
    load_metadata,
)

NAMES = [
    "mono16", "mono8", "rgb8", "bits1", "float", "ct_rich", "implicit", "big_endian",
    "deflated", "undefined_lengths", "jpeg_baseline", "jpeg_baseline_rgb", "jpeg_extended",
    "jpeg_lossless_sv1", "jpeg_lossless_fragments", "jpeg_lossless_fragments_no_bot",
    "jpeg_lossless_no_bot", "jpegls_lossless", "jpegls_near_lossless",
    "jpegls_fragments_no_bot", "rle", "rle_no_bot", "jpeg2000", "rle_pydicom",
    "jpegls_extended_offset_table", "encapsulated_uncompressed", "video_mpeg4",
]
MEDIA_TYPES = {
    "jpeg_baseline": "image/jpeg", "jpeg_lossless_sv1": "image/jpeg",
    "jpegls_lossless": "image/jls", "rle": "image/dicom-rle", "jpeg2000": "image/jp2",
    "mono16": "application/octet-stream", "video_mpeg4": "video/mp4",
}


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return corpus.build(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def converted(generated: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("tree")
    trees = {}
    for name, path in generated.items():
        (result,) = convert([path], out / name)
        assert result.status == "converted", f"{name}: {result.reason}"
        trees[name] = instance_folder(out / name, result)
    return trees


def test_corpus_covers_every_name(generated: dict[str, Path]) -> None:
    assert sorted(generated) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_metadata_equals_source(name: str, generated, converted) -> None:
    source = pydicom.dcmread(generated[name])
    loaded = dataset_from_tree(converted[name],
                               little_endian=source.file_meta.TransferSyntaxUID.is_little_endian,
                               encodings=source._character_set)
    assert_same_dataset(source, loaded)


@pytest.mark.parametrize("name", NAMES)
def test_frames_equal_stored_bytes(name: str, generated, converted) -> None:
    source = pydicom.dcmread(generated[name])
    ts = source.file_meta.TransferSyntaxUID
    bodies = frame_bodies(converted[name])
    frame_syntax = pydicom.uid.ExplicitVRLittleEndian if ts.is_deflated else ts
    (document,) = load_metadata(converted[name])
    assert document["00083002"]["Value"] == [frame_syntax]
    for headers, _ in bodies:
        assert headers["content-type"].split(";")[1].strip() == f"transfer-syntax={frame_syntax}"
    if name in MEDIA_TYPES:
        assert bodies[0][0]["content-type"].startswith(MEDIA_TYPES[name] + ";")
    if name == "video_mpeg4":  # the whole stream, once
        assert [b for _, b in bodies] == [b"".join(generate_fragments(source.PixelData))]
        return
    if name == "bits1":
        per = source.Rows * source.Columns
        references = reference_bits(source)
        assert len(bodies) == len(references) == 3
        for (_, body), reference in zip(bodies, references):
            assert len(body) == (per + 7) // 8
            assert (unpack_frame_bits(body, per) == reference).all()
        return
    expected = reference_frames(source)
    assert len(bodies) == int(source.get("NumberOfFrames", 1))
    assert [body for _, body in bodies] == expected


def test_several_fragments_per_frame_were_exercised(generated) -> None:
    ds = pydicom.dcmread(generated["jpeg_lossless_fragments_no_bot"])
    fragments = list(generate_fragments(ds.PixelData))
    assert len(fragments) > 1 + int(ds.NumberOfFrames)  # BOT item + several per frame


@pytest.mark.parametrize("name", NAMES)
def test_metadata_agrees_with_dcm2json(name: str, generated, converted, tmp_path: Path) -> None:
    (ours,) = load_metadata(converted[name])
    assert_agrees_with_dcm2json(ours, dcm2json(generated[name], tmp_path), converted[name])
