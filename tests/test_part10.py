"""`dcmweb part10`: instances rebuilt from the tree alone, byte for byte the source when
no transform changed them (issue 12)."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import pydicom
import pytest
from click.testing import CliRunner
from pydicom.encaps import generate_fragments

from dcmweb_static import synthetic as syn
from dcmweb_static.cli.main import main
from dcmweb_static.encode.dicom_json import BulkThresholds
from dcmweb_static.encode.kept_header import HEADER_NAME
from dcmweb_static.encode.multipart import PART_FOOTER
from dcmweb_static.errors import InvalidUIDError
from dcmweb_static.run.commit import commit_instance
from dcmweb_static.run.instance import convert_file
from dcmweb_static.run.options import ConvertOptions
from dcmweb_static.store import LocalStore, StagedInstance
from dcmweb_static.tree import urls
from dcmweb_static.tree.part10 import open_instance, write_part10

from . import corpus
from .conftest import PYDICOM_DATA, pydicom_corpus
from .reference import assert_same_dataset, reference_bits, reference_frames, unpack_frame_bits
from .test_encoder_hardening import _be_ow_file as be_ow_file
from .test_pydicom_corpus import EXPECTED_FAILURES, _with_uids
from .test_streaming import FRAME, FRAMES
from .test_streaming import _big_file as big_file
from .treeutil import convert, dataset_from_tree, frame_bodies, load_metadata


def _commit(out: Path, result) -> Path:
    """Commit a staged instance into the folder tree `out`; returns its folder."""
    commit_instance(LocalStore(out), StagedInstance(result.staging), result.study_uid,
                    result.series_uid, result.sop_uid)
    return out / urls.instance_path(result.study_uid, result.series_uid, result.sop_uid)


def _rebuilt_equal(paths: list[Path], tmp_path: Path) -> tuple[int, list[str]]:
    """Convert each file into a tree of its own (SOP UIDs repeat across the corpus),
    move the sources away, rebuild, and compare SHA-256: (files compared, mismatches)."""
    compared, problems = 0, []
    for i, path in enumerate(paths):
        out = tmp_path / f"tree{i}"
        result = convert_file(path, ConvertOptions(output=out), tmp_path / "staging")
        if result.status != "converted":
            continue
        _commit(out, result)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        moved = path.rename(path.with_name(path.name + ".gone"))  # the tree alone
        try:
            (rebuilt,) = write_part10(out, tmp_path / f"p10-{i}")
        finally:
            moved.rename(path)
        compared += 1
        if rebuilt.status != "written":
            problems.append(f"{path.name}: {rebuilt.reason}")
        elif hashlib.sha256(Path(rebuilt.path).read_bytes()).hexdigest() != digest:
            problems.append(f"{path.name}: differs")
    return compared, problems


def test_generated_corpus_rebuilds_byte_for_byte(tmp_path: Path) -> None:
    files = corpus.build(tmp_path / "in")
    compared, problems = _rebuilt_equal(list(files.values()), tmp_path)
    assert compared == len(files)
    assert problems == []


def test_pydicom_corpus_rebuilds_byte_for_byte(tmp_path: Path) -> None:
    paths = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, path in enumerate(pydicom_corpus()):
            if path.name in EXPECTED_FAILURES:
                continue
            folder = tmp_path / f"src{i}"
            folder.mkdir()
            copy = _with_uids(path, folder)
            if copy == path:  # a copy of our own, to move away while rebuilding
                copy = folder / path.name
                copy.write_bytes(path.read_bytes())
            paths.append(copy)
        compared, problems = _rebuilt_equal(paths, tmp_path)
    assert compared > 60
    assert problems == []


# -- the command, selection and failures ------------------------------------------------

def run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def two_series(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """A tree of two series (2 + 1 instances) and the sources by SOP Instance UID."""
    files = syn.ct_series(tmp_path / "in", 2, rows=16, columns=16, rich=True)
    files += syn.ct_series(tmp_path / "in2", 1, rows=16, columns=16, series_index=2)
    out = tmp_path / "out"
    results = convert(files, out)
    assert all(r.status == "converted" for r in results)
    return out, {r.sop_uid: Path(r.path) for r in results}


def test_command_writes_the_selection_byte_for_byte(two_series, tmp_path: Path) -> None:
    out, sources = two_series
    code, output = run("part10", out, "-o", tmp_path / "all")
    assert code == 0, output
    assert "wrote 3 of 3 instances" in output
    for sop, source in sources.items():
        assert (tmp_path / "all" / f"{sop}.dcm").read_bytes() == source.read_bytes()
    ds = pydicom.dcmread(next(iter(sources.values())))
    study, series = ds.StudyInstanceUID, ds.SeriesInstanceUID
    code, output = run("part10", out, "-o", tmp_path / "one", "--study", study,
                       "--series", series)
    assert code == 0, output
    written = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert written == sorted(f"{sop}.dcm" for sop, path in sources.items()
                             if pydicom.dcmread(path).SeriesInstanceUID == series)
    assert len(written) == 2
    code, output = run("part10", out, "-o", tmp_path / "x", "--study", study, "--series",
                       series, "--instance", ds.SOPInstanceUID)
    assert code == 0 and [p.name for p in (tmp_path / "x").iterdir()] == \
        [f"{ds.SOPInstanceUID}.dcm"]


def test_command_refuses_bad_selections(two_series, tmp_path: Path) -> None:
    out, _ = two_series
    code, output = run("part10", out, "--series", "1.2.3")
    assert code == 2 and "--series needs --study" in output
    code, output = run("part10", out, "--study", "../../etc")
    assert code == 2 and "malformed --study" in output
    code, output = run("part10", out, "-o", tmp_path / "d", "--study", "1.2.3")
    assert code == 1 and "no instance" in output
    code, output = run("part10", tmp_path / "nothing")
    assert code == 1 and "not a dcmweb tree" in output


def test_a_changed_frame_is_reported_and_not_written(two_series, tmp_path: Path) -> None:
    out, sources = two_series
    (sop, _), *others = sources.items()
    frame = next(out.glob(f"studies/*/series/*/instances/{sop}/frames/1"))
    data = bytearray(frame.read_bytes())
    data[200] ^= 0xFF  # same length, one byte of a pixel changed
    frame.write_bytes(bytes(data))
    info = next(out.glob(f"studies/*/series/*/instances/{others[0][0]}/info"))
    record = json.loads(info.read_bytes())
    del record["rebuild"]  # as an older version wrote it
    info.write_text(json.dumps(record))
    code, output = run("part10", out, "-o", tmp_path / "d")
    assert code == 1
    assert f"failed: {sop}: rebuilt bytes differ from the source" in output
    assert f"failed: {others[0][0]}: info has no rebuild record" in output
    assert "wrote 1 of 3 instances" in output
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [f"{others[1][0]}.dcm"]


def test_a_shortened_frame_file_is_one_line(two_series, tmp_path: Path) -> None:
    out, sources = two_series
    sop = next(iter(sources))
    frame = next(out.glob(f"studies/*/series/*/instances/{sop}/frames/1"))
    frame.write_bytes(frame.read_bytes()[:300] + PART_FOOTER)
    (result,) = [r for r in write_part10(out, tmp_path / "d") if r.sop_uid == sop]
    assert result.status == "failed"
    assert result.reason.startswith("frames/1 holds ") and "\n" not in result.reason
    assert not list((tmp_path / "d").glob(f"*{sop}*"))  # no temp file left either


def test_streaming_interface_for_the_servers(two_series) -> None:
    out, sources = two_series
    sop, source = next(iter(sources.items()))
    ds = pydicom.dcmread(source)
    part = open_instance(out, ds.StudyInstanceUID, ds.SeriesInstanceUID, sop)
    assert part.transfer_syntax_uid == ds.file_meta.TransferSyntaxUID
    assert part.transforms == ()
    chunks = list(part.chunks())
    assert b"".join(chunks) == source.read_bytes()
    assert max(map(len, chunks)) <= 1 << 20
    with pytest.raises(InvalidUIDError):
        open_instance(out, ds.StudyInstanceUID, ds.SeriesInstanceUID, "../x")


# -- transformed instances: a new P10 of the published dataset ------------------------

DEIDENTIFY = {"plugins": ("deidentify",), "plugin_options": {"deidentify": {"secret": "s1"}}}


def _convert_one(path: Path, out: Path, staging: Path, **options: Any) -> Path | None:
    result = convert_file(path, ConvertOptions(output=out, **options), staging)
    if result.status != "converted":
        return None
    return _commit(out, result)


def _assert_frames_unchanged(rebuilt: pydicom.Dataset, folder: Path, video: bool) -> None:
    bodies = [body for _, body in frame_bodies(folder)]
    if video:  # the whole stream, once (one fragment, padded to even length)
        bot, stream = generate_fragments(rebuilt.PixelData)  # items: the empty BOT, the stream
        assert bot == b""
        assert stream[:len(bodies[0])] == bodies[0] and len(stream) - len(bodies[0]) <= 1
    elif rebuilt.get("BitsAllocated") == 1:
        per = rebuilt.Rows * rebuilt.Columns
        for body, bits in zip(bodies, reference_bits(rebuilt), strict=True):
            assert (unpack_frame_bits(body, per) == bits).all()
    else:
        assert reference_frames(rebuilt) == bodies


def test_transformed_instances_rebuild_as_the_published_dataset(tmp_path: Path) -> None:
    files = corpus.build(tmp_path / "in")
    for name, path in files.items():
        source = pydicom.dcmread(path)
        out = tmp_path / f"tree-{name}"
        folder = _convert_one(path, out, tmp_path / "staging", **DEIDENTIFY)
        assert folder is not None, name
        info = json.loads((folder / "info").read_bytes())
        # the kept header holds original values: never written for a transformed instance
        assert not (folder / HEADER_NAME).exists() and "rebuild" not in info
        (result,) = write_part10(out, tmp_path / f"p10-{name}")
        assert result.status == "written", f"{name}: {result.reason}"
        data = Path(result.path).read_bytes()
        for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "SeriesInstanceUID",
                        "SOPInstanceUID", "InstitutionName", "ReferringPhysicianName"):
            value = str(source.get(keyword) or "")
            assert not value or value.encode() not in data, f"{name}: {keyword} {value}"
        rebuilt = pydicom.dcmread(result.path)
        ts = source.file_meta.TransferSyntaxUID
        assert rebuilt.file_meta.TransferSyntaxUID == ts, name
        assert rebuilt.file_meta.MediaStorageSOPInstanceUID == rebuilt.SOPInstanceUID
        loaded = dataset_from_tree(folder, little_endian=ts.is_little_endian,
                                   encodings=rebuilt._character_set)
        assert_same_dataset(rebuilt, loaded)  # every rebuilt element is the published one
        del loaded[0x00083002]  # dcmweb's Available Transfer Syntax UID, not the source's
        assert_same_dataset(loaded, rebuilt)  # and every published one is rebuilt
        _assert_frames_unchanged(rebuilt, folder, video=name == "video_mpeg4")


def _assert_native_pixels_kept(source: pydicom.Dataset, rebuilt: pydicom.Dataset) -> None:
    """Native Pixel Data (not 1-bit) is stored as in the source, up to the frames' end."""
    ts = source.file_meta.TransferSyntaxUID
    if "PixelData" not in source or ts.is_encapsulated or source.get("BitsAllocated") == 1 \
            or "PixelData" not in rebuilt:
        return
    value = rebuilt.PixelData
    assert len(value) <= len(source.PixelData) + 1, "Pixel Data longer than the source's"
    assert value[:len(value) - 2] == source.PixelData[:len(value) - 2], "Pixel Data differs"


def test_transformed_pydicom_corpus_rebuilds_as_valid_files(tmp_path: Path) -> None:
    """strip-private over every convertible corpus file: each rebuilds to a file pydicom
    reads back to the published dataset."""
    problems, compared = [], 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, path in enumerate(pydicom_corpus()):
            if path.name in EXPECTED_FAILURES:
                continue
            source_path = _with_uids(path, tmp_path)
            out = tmp_path / f"tree{i}"
            folder = _convert_one(source_path, out, tmp_path / "staging",
                                  plugins=("strip-private",))
            if folder is None:
                continue
            compared += 1
            (result,) = write_part10(out, tmp_path / f"p10-{i}")
            if result.status != "written":
                problems.append(f"{path.name}: {result.reason}")
                continue
            rebuilt = pydicom.dcmread(result.path)
            ts = rebuilt.file_meta.TransferSyntaxUID
            loaded = dataset_from_tree(folder, little_endian=ts.is_little_endian,
                                       encodings=rebuilt._character_set)
            del loaded[0x00083002]
            try:
                assert_same_dataset(loaded, rebuilt)
                assert_same_dataset(rebuilt, loaded)
                _assert_native_pixels_kept(pydicom.dcmread(source_path), rebuilt)
            except AssertionError as exc:
                problems.append(f"{path.name}: {exc}")
    assert compared > 60
    assert problems == []


# -- deduplicated trees and memory ------------------------------------------------------

@pytest.mark.parametrize("instances", [False, True])
def test_deduplicated_trees_rebuild(tmp_path: Path, instances: bool) -> None:
    files = syn.ct_series(tmp_path / "in", 2, rows=16, columns=16, rich=True)
    sources = {pydicom.dcmread(p).SOPInstanceUID: p.read_bytes() for p in files}
    dedup_plain, dedup_deid, deid = (tmp_path / n for n in ("b", "c", "d"))
    convert(files, dedup_plain, deduplicate=True, instances=instances)
    convert(files, dedup_deid, deduplicate=True, instances=instances, **DEIDENTIFY)
    convert(files, deid, **DEIDENTIFY)
    instance_files = list(dedup_deid.glob("studies/*/series/*/instances/*/metadata.gz"))
    assert bool(instance_files) == instances
    rebuilt = {r.sop_uid: Path(r.path).read_bytes()
               for r in write_part10(dedup_plain, tmp_path / "p-b")}
    assert rebuilt == sources
    from_dedup = write_part10(dedup_deid, tmp_path / "p-c")
    direct = {r.sop_uid: Path(r.path).read_bytes() for r in write_part10(deid, tmp_path / "p-d")}
    assert len(from_dedup) == 2 and all(r.status == "written" for r in from_dedup)
    # the deduplicated form gives the same published dataset, so the same bytes
    assert {r.sop_uid: Path(r.path).read_bytes() for r in from_dedup} == direct


@pytest.mark.parametrize("plugins", [(), ("strip-private",)])
def test_memory_stays_small_rebuilding_a_large_multiframe_file(tmp_path: Path,
                                                              plugins: tuple[str, ...]) -> None:
    source = big_file(tmp_path / "big.dcm")  # 48 MiB of frames and a 3 MiB bulk value
    out = tmp_path / "out"
    assert _convert_one(source, out, tmp_path / "staging", plugins=plugins) is not None
    if not plugins:
        source.rename(tmp_path / "gone.dcm")
    tracemalloc.start()
    try:
        (result,) = write_part10(out, tmp_path / "p10")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.status == "written", result.reason
    # measured 2.1 MiB either way (1 MiB blocks: one written while the next is read);
    # the 3 MiB bulk value alone, read whole, would break this
    assert peak < 3 << 20, f"peak Python allocation {peak / 2**20:.1f} MiB"
    if plugins:
        rebuilt = pydicom.dcmread(result.path)
        assert rebuilt.PixelData == b"".join(bytes([i]) * FRAME for i in range(FRAMES))
        assert rebuilt[0x00420011].value == b"\x01" * (3 << 20)
    else:
        assert Path(result.path).read_bytes() == (tmp_path / "gone.dcm").read_bytes()


# -- files without a File Meta header (issue 12, part 4) --------------------------------

def _without_meta(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Raw data sets (no preamble, no group 0002): dcmconv -F of a 3-frame image in each
    byte order and VR encoding, and pydicom's two test files; with the expected syntax."""
    source = syn.save(corpus._image(1, bits=12, frames=3), tmp_path / "with-meta.dcm")
    files = {}
    for option, ts in (("+ti", pydicom.uid.ImplicitVRLittleEndian),
                       ("+te", pydicom.uid.ExplicitVRLittleEndian),
                       ("+tb", pydicom.uid.ExplicitVRBigEndian)):
        out = tmp_path / f"raw{option[1:]}.dcm"
        corpus._dcmtk("dcmconv", "-F", option, source, out)
        files[out.name] = (out, ts)
    for name, ts in (("ExplVR_LitEndNoMeta.dcm", pydicom.uid.ExplicitVRLittleEndian),
                     ("ExplVR_BigEndNoMeta.dcm", pydicom.uid.ExplicitVRBigEndian)):
        copy = tmp_path / name
        copy.write_bytes((PYDICOM_DATA / "test_files" / name).read_bytes())
        files[name] = (copy, ts)
    return files


def test_files_without_file_meta_convert_and_rebuild_byte_for_byte(tmp_path: Path) -> None:
    for name, (path, ts) in _without_meta(tmp_path).items():
        assert not path.read_bytes()[128:132] == b"DICM"
        out = tmp_path / f"tree-{name}"
        result = convert_file(path, ConvertOptions(output=out), tmp_path / "staging")
        assert result.status == "converted", f"{name}: {result.reason}"
        folder = _commit(out, result)
        info = json.loads((folder / "info").read_bytes())
        assert info["file_meta_present"] is False and info["file_meta"] == ""
        assert info["transfer_syntax_uid"] == ts, name
        (document,) = load_metadata(folder)
        assert document["00083002"]["Value"] == [ts]
        source = pydicom.dcmread(path, force=True)
        assert_same_dataset(source, dataset_from_tree(
            folder, little_endian=ts.is_little_endian, encodings=source._character_set))
        if "PixelData" in source:
            assert [b for _, b in frame_bodies(folder)] == [
                source.PixelData[i * 64 * 48 * 2:(i + 1) * 64 * 48 * 2] for i in range(3)]
        (rebuilt,) = write_part10(out, tmp_path / f"p10-{name}")
        assert rebuilt.status == "written", f"{name}: {rebuilt.reason}"
        assert Path(rebuilt.path).read_bytes() == path.read_bytes(), name


def test_a_file_that_is_no_data_set_is_still_refused(tmp_path: Path) -> None:
    for name, data in (("notes.txt", b"hello, this is not DICOM at all\n"),
                       ("zeros.bin", bytes(300)), ("random.bin", bytes(range(256)) * 2)):
        path = tmp_path / name
        path.write_bytes(data)
        result = convert_file(path, ConvertOptions(output=tmp_path / "out"), tmp_path / "st")
        assert result.status == "failed" and "not a DICOM Part 10 file" in result.reason, name


def test_absolute_bulk_data_uris_resolve_in_the_tree(tmp_path: Path) -> None:
    """--base-url writes absolute BulkDataURIs; a transformed rebuild reads the same files."""
    source = big_file(tmp_path / "big.dcm")  # frames and a 3 MiB public bulk value
    small = {"public": 1024}
    plain = _convert_one(source, tmp_path / "a", tmp_path / "st", plugins=("strip-private",),
                         thresholds=BulkThresholds(**small))
    absolute = _convert_one(source, tmp_path / "b", tmp_path / "st", plugins=("strip-private",),
                            thresholds=BulkThresholds(**small),
                            base_url="https://pacs.example/dicomweb/")
    assert plain and absolute
    (document,) = load_metadata(absolute)
    assert document["00420011"]["BulkDataURI"].startswith("https://pacs.example/dicomweb/")
    (a,) = write_part10(tmp_path / "a", tmp_path / "pa")
    (b,) = write_part10(tmp_path / "b", tmp_path / "pb")
    assert a.status == b.status == "written", (a.reason, b.reason)
    assert Path(a.path).read_bytes() == Path(b.path).read_bytes()


def test_a_large_kept_header_is_a_file_of_its_own(tmp_path: Path) -> None:
    """Values held in the header (here 64 KiB of noise inside a sequence item) make it
    too big for info: it is written as p10-header, and rebuilt from there."""
    ds = syn.base_dataset(syn.uid(60), syn.uid(60, 1), syn.uid(60, 1, 1))
    syn.add_pixels(ds, rows=16, columns=16, bits=16)
    item = pydicom.Dataset()
    item.add_new(0x00420011, "OB", random.Random(1).randbytes(64 << 10))
    ds.add_new(0x00400275, "SQ", [item])  # Request Attributes Sequence
    source = syn.save(ds, tmp_path / "noise.dcm")
    folder = _convert_one(source, tmp_path / "out", tmp_path / "st")
    assert folder is not None
    record = json.loads((folder / "info").read_bytes())["rebuild"]
    assert record["header"] == HEADER_NAME and "header_base64" not in record
    assert (folder / HEADER_NAME).stat().st_size > 64 << 10
    (result,) = write_part10(tmp_path / "out", tmp_path / "p10")
    assert Path(result.path).read_bytes() == source.read_bytes()
    (folder / HEADER_NAME).unlink()
    (result,) = write_part10(tmp_path / "out", tmp_path / "p10-again")
    assert result.status == "failed"
    assert result.reason == "kept header: No such file or directory"


def test_a_small_kept_header_is_kept_in_info(two_series) -> None:
    out, _ = two_series
    for info in out.glob("studies/*/series/*/instances/*/info"):
        record = json.loads(info.read_bytes())["rebuild"]
        assert len(base64.b64decode(record["header_base64"])) < 4096
        assert not (info.parent / HEADER_NAME).exists()


@pytest.mark.parametrize("frames,rows,columns,samples", [
    (3, 3, 3, 1),   # odd frames: words shared by two frames, the value padded
    (4, 2, 2, 1),
    (5, 1, 1, 3),   # RGB, 3 bytes a frame
    (3, 1025, 1023, 1),  # odd frames longer than a copy block (1 MiB)
])
def test_big_endian_ow_8_bit_frames_rebuild(tmp_path: Path, frames: int, rows: int,
                                            columns: int, samples: int) -> None:
    """Frames hold the samples swapped out of their OW words: the rebuild swaps them back
    (untransformed: byte for byte, with the words cut from the kept header; transformed:
    the same stored Pixel Data)."""
    path = be_ow_file(tmp_path / "be.dcm", frames, rows, columns, samples)
    folder = _convert_one(path, tmp_path / "out", tmp_path / "st")
    assert folder is not None
    (result,) = write_part10(tmp_path / "out", tmp_path / "p10")
    assert result.status == "written", result.reason
    assert Path(result.path).read_bytes() == path.read_bytes()
    record = json.loads((folder / "info").read_bytes())["rebuild"]
    cut = sum(length for _, length, *_ in record["cuts"])
    assert cut >= frames * rows * columns * samples - 2 * frames  # all but shared words
    transformed = _convert_one(path, tmp_path / "t", tmp_path / "st", plugins=("strip-private",))
    assert transformed is not None
    (result,) = write_part10(tmp_path / "t", tmp_path / "p10-t")
    assert result.status == "written", result.reason
    assert pydicom.dcmread(result.path).PixelData == pydicom.dcmread(path).PixelData
