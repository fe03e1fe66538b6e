"""SIGINT, SIGTERM and SIGHUP stop a run alike: workers ended, staging removed, the report
written and marked interrupted, exit code 128 + the signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dcmweb_static import synthetic as syn

DCMWEB = Path(sys.executable).parent / "dcmweb"
FILES = 600


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("many")
    syn.ct_series(folder, FILES, rows=8, columns=8)
    return folder


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            pass
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.mark.parametrize(("signum", "to_group"), [
    (signal.SIGTERM, False), (signal.SIGHUP, False), (signal.SIGINT, False),
    (signal.SIGINT, True),  # Ctrl-C in a terminal: the whole process group gets it
], ids=["SIGTERM", "SIGHUP", "SIGINT", "SIGINT-group"])
def test_a_signal_mid_run_stops_workers_and_writes_the_report(
        many: Path, tmp_path: Path, signum: int, to_group: bool) -> None:
    out, report = tmp_path / "out", tmp_path / "r.json"
    process = subprocess.Popen([DCMWEB, "convert", many, "-d", out, "-j", "2", "-q",
                                "--report", report], stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        workers: set[int] = set()

        def started() -> bool:
            workers.update(_children(process.pid))
            return len(workers) >= 2 and (out / "studies").is_dir()  # committing

        assert _wait_until(started, 60), "the run did not start"
        assert process.poll() is None, "the run ended before the signal: use more files"
        (os.killpg if to_group else os.kill)(process.pid, signum)
        stopped = time.monotonic()
        _, stderr = process.communicate(timeout=30)
        seconds = time.monotonic() - stopped
        _wait_until(lambda: not any(_alive(pid) for pid in workers), 5)
        left = [pid for pid in workers if _alive(pid)]
    finally:
        try:  # whatever happened, leave no process of this run behind
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    assert not left, f"workers left alive: {left}"
    assert process.returncode == 128 + signum, stderr.decode()
    assert seconds < 10
    name = signal.Signals(signum).name
    assert f"interrupted ({name})" in stderr.decode() and "Traceback" not in stderr.decode()
    assert not (out / ".tmp").exists()  # the run's staging is removed
    data = json.loads(report.read_text())
    assert data["interrupted"] == name
    assert 0 < len(data["files"]) < FILES
    assert sum(data["counts"].values()) == len(data["files"])
    converted = [r for r in data["files"] if r["status"] == "converted"]
    assert converted and all(
        (out / "studies" / r["study_instance_uid"] / "series" / r["series_instance_uid"]
         / "instances" / r["sop_instance_uid"] / "info").is_file() for r in converted)


def test_the_library_raises_interrupted_with_the_summary(many: Path, tmp_path: Path) -> None:
    from dcmweb_static.batch import Converter
    from dcmweb_static.instance import ConvertOptions
    from dcmweb_static.stopping import Interrupted

    def on_result(result: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # handled by the run: a stop request

    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as caught:
        Converter(ConvertOptions(output=tmp_path / "out"), jobs=2,
                  on_result=on_result).run([many])
    assert signal.getsignal(signal.SIGTERM) == previous  # the handler is put back
    summary = caught.value.summary
    assert caught.value.exit_code == 143 and summary.exit_code == 143
    assert summary.interrupted == signal.SIGTERM
    assert 0 < len(summary.results) < FILES
    assert summary.report()["interrupted"] == "SIGTERM"
    assert not (tmp_path / "out" / ".tmp").exists()
