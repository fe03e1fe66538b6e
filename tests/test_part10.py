"""`dcmweb part10`: instances rebuilt from the tree alone, byte for byte the source when
no transform changed them (issue 12)."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

from dcmweb_static.commit import commit_instance
from dcmweb_static.instance import ConvertOptions, convert_file
from dcmweb_static.part10 import write_part10

from . import corpus
from .conftest import pydicom_corpus
from .test_pydicom_corpus import EXPECTED_FAILURES, _with_uids


def _rebuilt_equal(paths: list[Path], tmp_path: Path) -> tuple[int, list[str]]:
    """Convert each file into a tree of its own (SOP UIDs repeat across the corpus),
    move the sources away, rebuild, and compare SHA-256: (files compared, mismatches)."""
    compared, problems = 0, []
    for i, path in enumerate(paths):
        out = tmp_path / f"tree{i}"
        result = convert_file(path, ConvertOptions(output=out), tmp_path / "staging")
        if result.status != "converted":
            continue
        commit_instance(out, Path(result.staging), result.study_uid, result.series_uid,
                        result.sop_uid)
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
