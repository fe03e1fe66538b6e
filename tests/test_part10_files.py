"""`convert --part10`: each instance's P10 as a ready multipart part (issue 12), what a
static server sends for the instance URL."""

from __future__ import annotations

from pathlib import Path

import pydicom
from click.testing import CliRunner

from dcmweb_static import synthetic as syn
from dcmweb_static.cli.main import main
from dcmweb_static.encode.multipart import BOUNDARY
from dcmweb_static.tree import urls
from dcmweb_static.tree.part10 import open_instance, select

from .treeutil import convert, instance_folder, read_part

ROOT = Path(__file__).resolve().parent.parent
PART10 = urls.resource("instance_dicom").folder_name.rsplit("/", 1)[-1]


def _assert_files_are_the_rebuild(out: Path, sources: dict[str, Path] | None) -> int:
    """Every instance's part10 file is one `application/dicom` part holding exactly what
    `open_instance(...).chunks()` gives (and the source's bytes when `sources` is given)."""
    count = 0
    for st, se, sop in select(out):
        part = open_instance(out, st, se, sop)
        headers, body = read_part(out / urls.stored_name("instance_dicom", study=st, series=se,
                                                         sop=sop))
        assert headers["content-type"] == (f"application/dicom; transfer-syntax="
                                           f"{part.transfer_syntax_uid}")
        assert body == b"".join(part.chunks()), sop
        if sources is not None:
            assert body == sources[sop].read_bytes(), sop
        count += 1
    return count


def test_part10_files_of_the_samples_are_the_sources(tmp_path: Path) -> None:
    paths = sorted((ROOT / "samples").rglob("*.dcm"))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["convert", *map(str, paths), "-d", str(out), "-q",
                                       "-j", "1", "--part10"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    sources = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in paths}
    assert _assert_files_are_the_rebuild(out, sources) == len(paths)


def test_part10_files_of_transformed_instances_are_the_published_dataset(
        tmp_path: Path) -> None:
    paths = sorted((ROOT / "samples").rglob("*.dcm"))
    out = tmp_path / "out"
    results = convert(paths, out, plugins=("strip-private",), part10=True)
    assert all(r.status == "converted" for r in results)
    assert _assert_files_are_the_rebuild(out, None) == len(paths)


def test_without_the_option_no_part10_file_is_written(tmp_path: Path) -> None:
    (result,) = convert([ROOT / "samples" / "implicit.dcm"], tmp_path / "out")
    assert not (instance_folder(tmp_path / "out", result) / PART10).exists()


def test_a_source_holding_the_boundary_is_converted_without_the_file(tmp_path: Path) -> None:
    """The P10 bytes cannot be wrapped in the tree's boundary: the instance is converted
    (its own files do not hold the delimiter), the file is not written, the result says
    why."""
    ds = syn.base_dataset(syn.uid(700), syn.uid(700, 1), syn.uid(700, 1, 1))
    syn.add_pixels(ds, rows=8, columns=8, bits=16)
    ds.ImageComments = f"--{BOUNDARY}"  # short: inline in the metadata
    path = syn.save(ds, tmp_path / "boundary.dcm")
    (result,) = convert([path], tmp_path / "out", part10=True)
    assert result.status == "converted", result.reason
    folder = instance_folder(tmp_path / "out", result)
    assert (folder / "frames" / "1").is_file() and not (folder / PART10).exists()
    assert any(w.startswith(f"no {PART10} file:") and "boundary" in w for w in result.warnings)
