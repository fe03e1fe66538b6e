"""`dcmweb convert` end to end: options, report, summary, bad input, re-conversion."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner

from dcmweb_static import synthetic as syn
from dcmweb_static.cli.main import main

from .treeutil import load_metadata


def run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture()
def good(tmp_path: Path) -> Path:
    return syn.ct_series(tmp_path / "in", 2, rows=16, columns=16, rich=True)[0].parent


def _report_by_name(path: Path) -> dict[str, dict]:
    return {Path(r["path"]).name: r for r in json.loads(path.read_text())["files"]}


def _instances(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.rglob("info"))


def test_converts_a_folder_with_report_and_summary(good: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = run("convert", good, "-d", out, "--report", tmp_path / "r.json", "-j", "2")
    assert code == 0, output
    assert "converted" in output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"] == {"converted": 2, "duplicate": 0, "skipped": 0, "failed": 0}
    assert len(_instances(out)) == 2
    for folder in _instances(out):
        assert (folder / "metadata.gz").exists() and (folder / "frames" / "1").exists()
        info = json.loads((folder / "info").read_text())
        assert info["source"]["sha256"] and info["transfer_syntax_uid"]
        assert len(base64_decode(info["preamble"])) == 128
    assert not (out / ".tmp").exists()


def base64_decode(text: str) -> bytes:
    import base64

    return base64.b64decode(text)


def test_bad_inputs_each_get_a_reason_and_the_batch_goes_on(good: Path, tmp_path: Path) -> None:
    bad = tmp_path / "in"
    first = sorted(good.glob("*.dcm"))[0]
    data = first.read_bytes()
    (bad / "empty.dcm").write_bytes(b"")
    (bad / "notes.txt").write_text("not a DICOM file at all\n" * 20)
    (bad / "truncated_header.dcm").write_bytes(data[:400])
    (bad / "truncated_pixels.dcm").write_bytes(data[:-100])
    for name, keyword, value in (("no_sop.dcm", "SOPInstanceUID", None),
                                 ("evil_study.dcm", "StudyInstanceUID", "../../escaped"),
                                 ("evil_series.dcm", "SeriesInstanceUID", "/etc/passwd"),
                                 ("long_uid.dcm", "SOPInstanceUID", "1." * 40 + "1")):
        ds = pydicom.dcmread(first)
        ds.SOPInstanceUID = ds.SOPInstanceUID + ".77"
        if value is None:
            del ds[keyword]
        else:
            setattr(ds, keyword, value)
        ds.save_as(bad / name)
    out = tmp_path / "out"
    code, output = run("convert", bad, "-d", out, "--report", tmp_path / "r.json")
    assert code == 1
    report = _report_by_name(tmp_path / "r.json")
    expected = {
        "empty.dcm": "empty file",
        "notes.txt": "not a DICOM Part 10 file",
        "truncated_header.dcm": "file ends",
        "truncated_pixels.dcm": "Pixel Data declares",
        "no_sop.dcm": "missing SOP Instance UID",
        "evil_study.dcm": "malformed Study Instance UID",
        "evil_series.dcm": "malformed Series Instance UID",
        "long_uid.dcm": "malformed SOP Instance UID",
    }
    for name, reason in expected.items():
        assert report[name]["status"] == "failed", name
        assert reason in report[name]["reason"], (name, report[name]["reason"])
        assert name in output  # listed in the summary
    assert sum(r["status"] == "converted" for r in report.values()) == 2
    assert len(_instances(out)) == 2  # bad files left nothing behind
    assert not (tmp_path / "escaped").exists() and not (out.parent / "escaped").exists()
    assert not any("escaped" in str(p) for p in tmp_path.rglob("*"))


def test_duplicates_in_one_run(good: Path, tmp_path: Path) -> None:
    first = sorted(good.glob("*.dcm"))[0]
    shutil.copy(first, good / "copy.dcm")
    ds = pydicom.dcmread(first)
    ds.PatientID = "OTHER"
    ds.save_as(good / "conflict.dcm")
    code, _ = run("convert", good, "-d", tmp_path / "out", "--report", tmp_path / "r.json", "-q")
    assert code == 1
    files = json.loads((tmp_path / "r.json").read_text())["files"]
    statuses = sorted(r["status"] for r in files)
    assert statuses == ["converted", "converted", "duplicate", "failed"], files
    conflict = next(r for r in files if r["path"].endswith("conflict.dcm"))
    assert "different content" in conflict["reason"]


def test_reconversion_replaces_the_instance_whole(tmp_path: Path) -> None:
    ds = syn.base_dataset(syn.uid(7), syn.uid(7, 1), syn.uid(7, 1, 1))
    syn.add_pixels(ds, rows=8, columns=8, bits=8, frames=3)
    three = syn.save(ds, tmp_path / "a" / "three.dcm")
    out = tmp_path / "out"
    assert run("convert", three, "-d", out, "-q")[0] == 0
    (folder,) = _instances(out)
    assert sorted(p.name for p in (folder / "frames").iterdir()) == ["1", "2", "3"]
    ds = pydicom.dcmread(three)
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData[: 2 * 64]
    del ds[0x00091012]  # the private bulk value goes too
    ds.save_as(tmp_path / "a" / "three.dcm")
    assert run("convert", three, "-d", out, "-q")[0] == 0
    assert sorted(p.name for p in (folder / "frames").iterdir()) == ["1", "2"]
    assert not (folder / "bulkdata").exists()
    assert list(out.glob("**/*.replaced")) == []


def test_killed_run_leftovers_are_cleaned(good: Path, tmp_path: Path) -> None:
    clean, rerun = tmp_path / "clean", tmp_path / "rerun"
    run("convert", good, "-d", clean, "-q")
    stale = rerun / ".tmp" / "run-999999999-1" / "1.2.3.999999999.5"
    stale.mkdir(parents=True)
    (stale / "metadata.gz").write_bytes(b"half")
    run("convert", good, "-d", rerun, "-q")

    def tree(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()
                and p.name != "info"}

    assert tree(clean) == tree(rerun)
    assert not (rerun / ".tmp").exists()


def test_a_crashing_worker_does_not_stop_the_batch(good: Path, tmp_path: Path, monkeypatch) -> None:
    import dcmweb_static.run.batch as batch

    real = batch.convert_source

    def crash_on_marked_files(converter, source, staging):
        if Path(source.name).name == "crash.dcm":
            os._exit(3)
        return real(converter, source, staging)

    monkeypatch.setattr(batch, "convert_source", crash_on_marked_files)  # inherited by fork
    (good / "crash.dcm").write_bytes(b"x")
    code, output = run("convert", good, "-d", tmp_path / "out", "-j", "2",
                       "--report", tmp_path / "r.json")
    assert code == 1
    files = _report_by_name(tmp_path / "r.json")
    assert files["crash.dcm"]["reason"] == "the worker process died while converting it"
    assert sum(r["status"] == "converted" for r in files.values()) == 2, [
        r.get("reason") for r in files.values()]


def test_options_gzip_thresholds_and_base_url(good: Path, tmp_path: Path) -> None:
    out = tmp_path / "plain"
    code, _ = run("convert", good, "-d", out, "--no-gzip", "--publicBulkSize", "10",
                  "--privateBulkSize", "1000", "--base-url", "https://pacs.example/dicomweb/", "-q")
    assert code == 0
    folder = _instances(out)[0]
    assert (folder / "metadata").exists() and not (folder / "metadata.gz").exists()
    (document,) = load_metadata(folder)
    # a public value over 10 bytes is bulk; the 512-byte private OB is now inline
    assert document["00081030"]["vr"] == "LO" and "Value" in document["00081030"]  # LO: never bulk
    assert "InlineBinary" in document["00091012"]
    study = document["0020000D"]["Value"][0]
    assert document["7FE00010"]["BulkDataURI"].startswith(
        f"https://pacs.example/dicomweb/studies/{study}/series/")
    bulk = [v for v in document.values() if "BulkDataURI" in v and v["vr"] != "OW"]
    assert bulk and all(v["BulkDataURI"].startswith("https://pacs.example/") for v in bulk)


def test_gzip_metadata_is_reproducible(good: Path, tmp_path: Path) -> None:
    run("convert", good, "-d", tmp_path / "a", "-q")
    run("convert", good, "-d", tmp_path / "b", "-q")
    for a in (tmp_path / "a").rglob("metadata.gz"):
        b = tmp_path / "b" / a.relative_to(tmp_path / "a")
        assert a.read_bytes() == b.read_bytes()
        assert json.loads(gzip.decompress(a.read_bytes()))


def test_output_folder_that_cannot_be_created(good: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, output = run("convert", good, "-d", blocker / "out")
    assert code == 2 and f"{blocker} is a file, not a folder" in output


def test_quiet_prints_nothing_and_version(good: Path, tmp_path: Path) -> None:
    code, output = run("convert", good, "-d", tmp_path / "out", "-q")
    assert code == 0 and output == ""
    code, output = run("--version")
    assert code == 0 and "dcmweb" in output


def test_first_input_wins_whatever_order_workers_finish(good: Path, tmp_path: Path) -> None:
    from dcmweb_static.run.batch import Converter, RunSummary
    from dcmweb_static.run.instance import convert_file
    from dcmweb_static.run.options import ConvertOptions

    first = sorted(good.glob("*.dcm"))[0]
    ds = pydicom.dcmread(first)
    ds.PatientID = "CHANGED"
    ds.save_as(tmp_path / "later.dcm")
    out = tmp_path / "out"
    options = ConvertOptions(output=out)
    staging = out / ".tmp" / "test"
    early = convert_file(first, options, staging)
    late = convert_file(tmp_path / "later.dcm", options, staging)
    converter, summary = Converter(options), RunSummary(output=out)
    converter._finish(1, late, summary)  # the later input finishes first
    converter._finish(0, early, summary)
    assert (early.status, late.status) == ("converted", "failed")
    (folder,) = _instances(out)
    assert json.loads((folder / "info").read_text())["source"]["sha256"] == early.sha256


@pytest.mark.parametrize("keep_results", [True, False])
def test_losers_are_judged_against_the_final_winner(good: Path, tmp_path: Path,
                                                    keep_results: bool) -> None:
    from dcmweb_static.run.batch import Converter, RunSummary
    from dcmweb_static.run.instance import convert_file
    from dcmweb_static.run.options import ConvertOptions

    first = sorted(good.glob("*.dcm"))[0]
    ds = pydicom.dcmread(first)
    ds.PatientID = "CHANGED"
    ds.save_as(tmp_path / "conflict.dcm")
    shutil.copy(first, tmp_path / "copy.dcm")
    options = ConvertOptions(output=tmp_path / "out")
    staging = tmp_path / "out" / ".tmp" / "test"
    winner, conflict, copy = (convert_file(p, options, staging) for p in
                              (first, tmp_path / "conflict.dcm", tmp_path / "copy.dcm"))
    converter = Converter(options, keep_results=keep_results)
    summary = RunSummary(output=options.output, keep_results=keep_results)
    converter._finish(2, conflict, summary)  # finishes first, committed for now
    converter._finish(3, copy, summary)  # judged against conflict for now: different
    converter._finish(0, winner, summary)  # the first input: wins, the others re-judged
    statuses = {Path(r["path"]).name: r["status"] for r in summary.records()}
    assert statuses == {first.name: "converted", "conflict.dcm": "failed",
                        "copy.dcm": "duplicate"}
    assert summary.counts == {"converted": 1, "duplicate": 1, "skipped": 0, "failed": 1}
    assert summary.exit_code == 1
