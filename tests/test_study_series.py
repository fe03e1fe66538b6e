"""Study and series level: series/study metadata, QIDO index files, incremental and
idempotent runs, concurrent runs, `dcmweb index`, and the deduplicated form."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urljoin

import orjson
import pydicom
import pytest
from click.testing import CliRunner

from dcmweb_static import synthetic as syn
from dcmweb_static.cli.main import main

from .conftest import PYDICOM_DATA
from .treeutil import read_resource

SERIES = 3
PER_SERIES = 5
MODALITIES = ["CT", "MR", "CT"]


def make_study(folder: Path) -> list[Path]:
    """One study of 3 series x 5 instances, files named so halves split across series."""
    paths = []
    for s in range(1, SERIES + 1):
        for i in range(1, PER_SERIES + 1):
            ds = syn.base_dataset(syn.uid(300), syn.uid(300, s), syn.uid(300, s, i),
                                  instance_number=PER_SERIES + 1 - i, series_number=s,
                                  modality=MODALITIES[s - 1])
            ds.SeriesDescription = f"series {s}"
            syn.add_pixels(ds, rows=8, columns=8, bits=8, seed=i)
            paths.append(syn.save(ds, folder / f"s{s}_i{i}.dcm"))
    return paths


def run(*args: str | Path) -> None:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def resource(root: Path, path: str) -> list[dict]:
    data = read_resource(root / path)
    assert data is not None, f"{path} missing"
    return orjson.loads(data)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".dcmweb.lock"}


def resolved(document: object, base: str) -> object:
    """`document` with every BulkDataURI resolved against the document's URL."""
    if isinstance(document, dict):
        return {k: urljoin(base, v) if k == "BulkDataURI" else resolved(v, base)
                for k, v in document.items()}
    if isinstance(document, list):
        return [resolved(v, base) for v in document]
    return document


def value(element: dict) -> object:
    return element["Value"][0]


@pytest.fixture()
def study(tmp_path: Path) -> list[Path]:
    return make_study(tmp_path / "in")


def check_study(root: Path, expected: int = SERIES * PER_SERIES) -> None:
    """Every index file agrees with the instance metadata it summarises."""
    st = syn.uid(300)
    (study_record,) = resource(root, f"studies/{st}/index.json")
    studies = resource(root, "studies/index.json")
    assert [value(r["0020000D"]) for r in studies] == [st]
    assert studies[0] == study_record
    assert study_record["00201206"]["Value"] == [SERIES]
    assert study_record["00201208"]["Value"] == [expected]
    assert study_record["00080061"]["Value"] == sorted(set(MODALITIES))
    for tag in ("00080020", "00080030", "00080050", "00080090", "00100010", "00100020",
                "00100030", "00100040", "0020000D", "00200010", "00080005"):
        assert tag in study_record, tag
    series_records = resource(root, f"studies/{st}/series/index.json")
    assert [value(r["00200011"]) for r in series_records] == [1, 2, 3]  # sorted
    study_metadata = resource(root, f"studies/{st}/metadata")
    assert len(study_metadata) == expected
    seen = set()
    for record in series_records:
        se = value(record["0020000E"])
        for tag in ("00080060", "0020000E", "00200011", "00080005"):
            assert tag in record, tag
        instances = resource(root, f"studies/{st}/series/{se}/instances/index.json")
        series_metadata = resource(root, f"studies/{st}/series/{se}/metadata")
        assert record["00201209"]["Value"] == [len(instances)] == [len(series_metadata)]
        numbers = [value(r["00200013"]) for r in instances]
        assert numbers == sorted(numbers)
        for qido, full in zip(instances, series_metadata, strict=True):
            sop = value(qido["00080018"])
            assert sop not in seen
            seen.add(sop)
            (own,) = resource(root, f"studies/{st}/series/{se}/instances/{sop}/metadata")
            for tag in ("00080016", "00080018", "00200013", "00280010", "00280011",
                        "00280100"):
                assert qido[tag] == own[tag], tag
            # the series document is the instance document with URIs rebased to resolve
            # against the series metadata URL (RFC 3986)
            base = f"http://h/studies/{st}/series/{se}/metadata"
            uri = full["7FE00010"]["BulkDataURI"]
            assert urljoin(base, uri) == f"http://h/studies/{st}/series/{se}/instances/{sop}/frames"
            own_base = f"http://h/studies/{st}/series/{se}/instances/{sop}/metadata"
            assert resolved(full, base) == resolved(own, own_base)
            assert (root / urljoin(base, uri)[len("http://h/"):] / "1").exists()
    assert len(seen) == expected
    study_uris = {full["7FE00010"]["BulkDataURI"] for full in study_metadata}
    assert all(u.startswith("series/") and u.endswith("/frames") for u in study_uris)
    assert len(study_uris) == expected


def test_index_files_agree_with_instances(study: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    run("convert", *study, "-d", out, "-q")
    check_study(out)


def test_two_batches_merge_to_the_same_tree_and_reruns_change_nothing(
        study: list[Path], tmp_path: Path) -> None:
    whole, split = tmp_path / "whole", tmp_path / "split"
    run("convert", *study, "-d", whole, "-q")
    run("convert", *study[::2], "-d", split, "-q")
    check_study(split, expected=len(study[::2]))
    run("convert", *study[1::2], "-d", split, "-q")
    check_study(split)
    assert tree_bytes(split) == tree_bytes(whole)
    before = tree_bytes(whole)
    run("convert", *study, "-d", whole, "-q")
    assert tree_bytes(whole) == before  # a re-run leaves every byte as it was


def test_the_aggregation_spool_in_a_file_gives_the_same_tree(
        study: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Aggregation reads each instance once, into a spool (memory, then a file) that the
    writing pass reads back by offset: spilled to a file at once, the tree is the same,
    and every series document is its instance's (check_study)."""
    from dcmweb_static.index import aggregate

    run("convert", *study, "-d", tmp_path / "memory", "-q")
    monkeypatch.setattr(aggregate, "SPOOL_IN_MEMORY", 1)
    run("convert", *study, "-d", tmp_path / "file", "-q")
    check_study(tmp_path / "file")
    assert tree_bytes(tmp_path / "file") == tree_bytes(tmp_path / "memory")


def test_index_command_regenerates_everything(study: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    run("convert", *study, "-d", out, "-q")
    before = tree_bytes(out)
    for path in list(out.glob("studies/*/series/*/metadata.gz")) + \
            list(out.glob("studies/**/index.json.gz")) + list(out.glob("studies/*/metadata.gz")):
        path.unlink()
    run("index", out)
    assert tree_bytes(out) == before


def test_no_gzip_writes_plain_index_files(study: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    run("convert", *study, "-d", out, "-q", "--no-gzip")
    assert (out / "studies" / "index.json").exists()
    assert not list(out.rglob("*.gz"))
    check_study(out)


def test_concurrent_runs_into_one_output(study: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    halves = [study[::2], study[1::2]]
    procs = [subprocess.Popen([sys.executable, "-m", "dcmweb_static.cli", "convert",
                               *map(str, half), "-d", str(out), "-q", "-j", "1"])
             for half in halves]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    check_study(out)


def test_base_url_adds_retrieve_urls(study: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    run("convert", *study[:2], "-d", out, "-q", "--base-url", "https://x/dw")
    (record,) = resource(out, "studies/index.json")
    assert record["00081190"] == {"vr": "UR", "Value": [f"https://x/dw/studies/{syn.uid(300)}"]}
    (series,) = resource(out, f"studies/{syn.uid(300)}/series/index.json")
    full = resource(out, f"studies/{syn.uid(300)}/series/{syn.uid(300, 1)}/metadata")
    assert all(f["7FE00010"]["BulkDataURI"].startswith("https://x/dw/studies/") for f in full)


def _metadata_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): read_resource(p.with_name(p.name.removesuffix(".gz")))
            for p in root.rglob("*") if p.is_file()
            and (p.name.startswith("metadata") or p.name.startswith("index.json"))}


def test_deduplicated_form_round_trips_the_whole_corpus(study: list[Path], tmp_path: Path
                                                         ) -> None:
    inputs = [tmp_path / "in", PYDICOM_DATA / "test_files", PYDICOM_DATA / "charset_files"]
    direct, both, only = tmp_path / "direct", tmp_path / "both", tmp_path / "only"
    for out, extra in ((direct, []), (both, ["--deduplicate", "--instances"]),
                       (only, ["--deduplicate"])):
        CliRunner().invoke(main, ["convert", *map(str, inputs), "-d", str(out), "-q", *extra])
    reference = _metadata_files(direct)
    assert len(reference) > 100
    assert _metadata_files(both) == reference
    assert not list(only.glob("studies/*/series/*/instances/*/metadata*"))
    assert {k: v for k, v in _metadata_files(only).items() if "/instances/" not in k or
            k.endswith("index.json.gz")} == {k: v for k, v in reference.items()
                                             if "/instances/" not in k or
                                             k.endswith("index.json.gz")}
    run("rebuild", only)
    assert _metadata_files(only) == reference
    # bookkeeping never leaks into published files
    assert all(b"deduplicated" not in data and b'"parts"' not in data
               for data in reference.values())
    # the extracts are shared: far fewer than instances x levels
    extracts = list((only / "deduplicated" / "extracts").rglob("*.json.gz"))
    records = list((only / "deduplicated" / "instances").rglob("*.json.gz"))
    assert len(records) > 100 and len(extracts) < 4 * len(records)


def test_instance_metadata_read_back_by_pydicom_from_series_level(study, tmp_path) -> None:
    out = tmp_path / "out"
    run("convert", *study, "-d", out, "-q")
    for document in resource(out, f"studies/{syn.uid(300)}/metadata"):
        ds = pydicom.Dataset.from_json(document, bulk_data_uri_handler=lambda *a: b"")
        assert ds.StudyInstanceUID == syn.uid(300)
