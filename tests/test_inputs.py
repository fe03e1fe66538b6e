"""Hard inputs: names that are not UTF-8, FIFOs and devices, outputs that overlap inputs,
outputs that cannot be written, results released only once decided, the library walking
folders like the CLI."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner

from dcmweb_static import synthetic as syn
from dcmweb_static.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "implicit.dcm"
DCMWEB = Path(sys.executable).parent / "dcmweb"


def run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def dcmweb(*args: str | Path | bytes, timeout: float = 60) -> subprocess.CompletedProcess:
    """The real command in its own process: real stdio encodings, real file descriptors.
    On a timeout its whole process group is killed, so a hanging run leaves no workers."""
    with subprocess.Popen([DCMWEB, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _studies_indexed(out: Path) -> list[Path]:
    return sorted(out.glob("studies/*/series/*/metadata*"))


# --- 1. names that are not UTF-8 ------------------------------------------------------------

def test_non_utf8_file_names_are_kept_in_report_info_and_summary(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    good = os.fsdecode(os.fsencode(folder) + b"/a\xff.dcm")
    bad = os.fsdecode(os.fsencode(folder) + b"/b\xfe.dcm")
    shutil.copy(SAMPLE, good)
    Path(bad).write_bytes(b"not dicom at all")
    out, report = tmp_path / "o", tmp_path / "r.json"
    done = dcmweb("convert", folder, "-d", out, "--report", report, "-v", "-j", "2")
    assert done.returncode == 1, done.stderr  # the non-DICOM file failed, nothing else
    stderr = done.stderr.decode()
    assert "Traceback" not in stderr
    records = {r["path"]: r for r in json.loads(report.read_text())["files"]}
    shown_good, shown_bad = f"{folder}/a\\xff.dcm", f"{folder}/b\\xfe.dcm"
    assert set(records) == {shown_good, shown_bad}
    assert records[shown_good]["status"] == "converted"
    assert records[shown_bad]["status"] == "failed"
    # the exact name, losslessly, only for such names
    assert base64.b64decode(records[shown_good]["path_base64"]) == os.fsencode(good)
    assert base64.b64decode(records[shown_bad]["path_base64"]) == os.fsencode(bad)
    # verbose lines and the summary table name the files in the escaped form
    assert f"converted: {shown_good}" in stderr
    assert stderr.count(shown_bad) >= 2  # verbose line and the summary's problem list
    # the committed instance has its info record and its study/series index
    (info,) = out.rglob("info")
    source = json.loads(info.read_text())["source"]
    assert source["path"] == shown_good
    assert base64.b64decode(source["path_base64"]) == os.fsencode(good)
    assert _studies_indexed(out)


def test_utf8_names_have_no_extra_field(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    shutil.copy(SAMPLE, folder / "Müller.dcm")
    code, output = run("convert", folder, "-d", tmp_path / "o", "--report", tmp_path / "r.json")
    assert code == 0, output
    (record,) = json.loads((tmp_path / "r.json").read_text())["files"]
    assert record["path"].endswith("Müller.dcm") and "path_base64" not in record


def test_an_exception_in_the_parent_still_indexes_committed_studies(tmp_path: Path) -> None:
    from dcmweb_static.run.batch import Converter
    from dcmweb_static.run.options import ConvertOptions

    paths = syn.ct_series(tmp_path / "in", 3, rows=8, columns=8)
    seen = []

    def on_result(result: object) -> None:
        seen.append(result)
        if len(seen) == 2:
            raise RuntimeError("a bug in a callback")

    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="a bug in a callback"):
        Converter(ConvertOptions(output=out), jobs=1, on_result=on_result).run(paths)
    committed = sorted(out.rglob("info"))
    assert committed and _studies_indexed(out)
    (series_metadata,) = out.glob("studies/*/series/*/metadata*")
    listed = json.loads(pydicom_free_read(series_metadata))
    assert len(listed) == len(committed)
    assert not (out / ".tmp").exists()


def pydicom_free_read(path: Path) -> bytes:
    import gzip

    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


# --- 2. FIFOs and devices ---------------------------------------------------------------------

def test_a_fifo_in_a_folder_is_skipped_not_opened(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    os.mkfifo(folder / "f")
    shutil.copy(SAMPLE, folder / "real.dcm")
    (folder / "z-link.dcm").symlink_to(folder / "real.dcm")
    report = tmp_path / "r.json"
    done = dcmweb("convert", folder, "-d", tmp_path / "o", "--report", report, "-q", timeout=30)
    assert done.returncode == 0, done.stderr
    records = {Path(r["path"]).name: r for r in json.loads(report.read_text())["files"]}
    assert records["f"]["status"] == "skipped"
    assert records["f"]["reason"] == "not a regular file: FIFO"
    assert records["real.dcm"]["status"] == "converted"
    assert records["z-link.dcm"]["status"] == "duplicate"  # a symlink to a file is an input


def test_a_device_given_on_the_command_line_is_skipped(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    done = dcmweb("convert", "/dev/zero", "-d", tmp_path / "o", "--report", report, "-q",
                  timeout=30)
    assert done.returncode == 0, done.stderr
    (record,) = json.loads(report.read_text())["files"]
    assert record["status"] == "skipped"
    assert record["reason"] == "not a regular file: character device"


def test_opening_checks_the_opened_file_not_only_the_name(tmp_path: Path) -> None:
    """The name could become a FIFO between the stat and the open: the open itself must
    not block and must refuse what it opened."""
    from dcmweb_static.run.inputs import NotRegularFile, open_regular

    os.mkfifo(tmp_path / "f")
    with pytest.raises(NotRegularFile, match="not a regular file: FIFO"):
        open_regular(tmp_path / "f")  # a blocking open would hang here, no writer
    with open_regular(SAMPLE) as fp:
        assert fp.read(4) == SAMPLE.read_bytes()[:4]


# --- 14. results released once decided --------------------------------------------------------

def _conflicting_pair(tmp_path: Path) -> tuple[Path, Path]:
    first = syn.ct_series(tmp_path / "in", 1, rows=8, columns=8)[0]
    ds = pydicom.dcmread(first)
    ds.PatientID = "CHANGED"
    ds.save_as(tmp_path / "in" / "later.dcm")
    return first, tmp_path / "in" / "later.dcm"


def test_on_result_sees_final_outcomes_in_input_order(tmp_path: Path) -> None:
    from dcmweb_static.run.batch import Converter, RunSummary
    from dcmweb_static.run.instance import convert_file
    from dcmweb_static.run.options import ConvertOptions

    first, later = _conflicting_pair(tmp_path)
    out = tmp_path / "out"
    options = ConvertOptions(output=out)
    staging = out / ".tmp" / "test"
    early, late = convert_file(first, options, staging), convert_file(later, options, staging)
    seen: list[tuple[str, str]] = []
    converter = Converter(options, on_result=lambda r: seen.append((Path(r.path).name,
                                                                      r.status)))
    summary = RunSummary(output=out)
    converter._finish(1, late, summary)  # the later input finishes first
    assert seen == []  # not decided yet: input 0 may still take its SOP Instance UID
    converter._finish(0, early, summary)
    assert seen == [(first.name, "converted"), ("later.dcm", "failed")]


def test_verbose_prints_the_final_outcome(tmp_path: Path) -> None:
    """End to end: a slow first input and a fast later one with its SOP Instance UID."""
    first = syn.ct_series(tmp_path / "in", 1, rows=2048, columns=2048)[0]
    ds = pydicom.dcmread(first)
    ds.PatientID = "CHANGED"
    ds.Rows = ds.Columns = 8
    ds.PixelData = bytes(128)
    ds.save_as(tmp_path / "in" / "later.dcm")
    code, output = run("convert", tmp_path / "in", "-d", tmp_path / "o", "-v", "-j", "2")
    assert code == 1, output
    assert not re.search(r"converted: \S*later\.dcm", output)
    assert re.search(r"failed: \S*later\.dcm: SOP Instance UID", output)


# --- 14. output and inputs --------------------------------------------------------------------

def test_output_equal_to_an_input_is_a_usage_error(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    shutil.copy(SAMPLE, folder / "a.dcm")
    code, output = run("convert", folder, "-d", folder)
    assert code == 2 and "is also an input" in output


def test_input_inside_the_output_is_a_usage_error(tmp_path: Path) -> None:
    out = tmp_path / "o"
    (out / "in").mkdir(parents=True)
    shutil.copy(SAMPLE, out / "in" / "a.dcm")
    code, output = run("convert", out / "in", "-d", out)
    assert code == 2 and "inside the output folder" in output
    code, output = run("convert", out / "in" / "a.dcm", "-d", out)
    assert code == 2 and "inside the output folder" in output


def test_output_inside_an_input_is_excluded_and_said(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    shutil.copy(SAMPLE, folder / "a.dcm")
    code, output = run("convert", folder, "-d", folder / "out")
    assert code == 0, output
    assert f"{folder / 'out'} is inside input {folder}: not read as input" in output
    code, output = run("convert", folder, "-d", folder / "out", "-q")
    assert code == 0 and output == ""


def test_output_under_a_regular_file_is_a_usage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    code, output = run("convert", SAMPLE, "-d", blocker / "sub")
    assert code == 2, output
    assert f"{blocker} is a file, not a folder" in output


def test_output_that_is_a_dangling_symlink(tmp_path: Path) -> None:
    (tmp_path / "o").symlink_to(tmp_path / "missing")
    code, output = run("convert", SAMPLE, "-d", tmp_path / "o")
    assert code == 2, output
    assert f"is a symbolic link to a missing target ({tmp_path / 'missing'})" in output
    assert "File exists" not in output


@pytest.fixture()
def read_only_mount(tmp_path: Path):
    mount = tmp_path / "ro"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", mount],
                          capture_output=True)
    assert done.returncode == 0, f"cannot mount a read-only tmpfs: {done.stderr!r}"
    try:
        yield mount
    finally:
        subprocess.run(["umount", mount], check=True)


def test_output_on_a_read_only_file_system(read_only_mount: Path) -> None:
    for target in (read_only_mount, read_only_mount / "sub"):  # existing, to be created
        code, output = run("convert", SAMPLE, "-d", target)
        assert code == 1, output
        assert "read-only file system" in output.lower() and "not writable" not in output


# --- 14. the library walks folders like the CLI -----------------------------------------------

def test_converter_run_walks_folders_and_excludes_the_output(tmp_path: Path) -> None:
    from dcmweb_static.run.batch import Converter
    from dcmweb_static.run.options import ConvertOptions

    syn.ct_series(tmp_path / "in" / "a", 2, rows=8, columns=8)
    syn.ct_series(tmp_path / "in" / "b", 1, rows=8, columns=8, series_index=2)
    out = tmp_path / "in" / "out"
    summary = Converter(ConvertOptions(output=out), jobs=2).run([tmp_path / "in"])
    assert summary.counts == {"converted": 3, "duplicate": 0, "skipped": 0, "failed": 0}
    again = Converter(ConvertOptions(output=out), jobs=2).run([str(tmp_path / "in")])
    assert again.count("converted") == 3 and not any("out" in Path(r.path).parts[-3:-1]
                                                      for r in again.results)


def test_readme_library_snippet_works_on_a_folder(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    readme = (ROOT / "README.md").read_text()
    (snippet,) = [block for block in re.findall(r"```python\n(.*?)```", readme, re.S)
                  if "Converter(" in block]
    (folder,) = re.findall(r'\.run\(\[Path\("([^"]+)"\)\]\)', snippet)
    monkeypatch.chdir(tmp_path)
    syn.ct_series(tmp_path / folder / "series", 2, rows=8, columns=8)
    exec(compile(snippet, "README.md", "exec"), {})
    assert "'converted': 2" in capsys.readouterr().out
    assert len(list((tmp_path / "out").rglob("info"))) == 2
