"""The tree's writes under faults: a run killed during aggregation, a full or read-only
file system (real tmpfs mounts), symbolic links inside the output folder."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from dcmweb_static import synthetic as syn
from dcmweb_static.cli.main import main

CLI = [sys.executable, "-m", "dcmweb_static.cli"]


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root`, hidden ones too (`info` holds the conversion time)."""
    found = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if name != "info":
                found[str(path.relative_to(root))] = path.read_bytes()
    return found


def debris(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.endswith(".tmp") or p.name == ".tmp")


def dcmweb(*args: str | Path, env: dict[str, str] | None = None,
           **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=180, **kwargs)


@pytest.fixture()
def inputs(tmp_path: Path) -> list[Path]:
    return syn.ct_series(tmp_path / "in", 3, rows=16, columns=16, rich=True)


def _fake_plugin(site: Path, code: str) -> dict[str, str]:
    """A plugin installed through its entry point, for a `dcmweb` child process."""
    site.mkdir(parents=True)
    (site / "fault_plugin.py").write_text(textwrap.dedent(code))
    info = site / "fault-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fault\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[dcmweb]\nfault = fault_plugin\n")
    return dict(os.environ, PYTHONPATH=str(site))


# -- defect 6: kill -9 during aggregation ------------------------------------------------

def _open_when_read(fifo: Path, timeout: float = 60.0) -> int:
    """Open `fifo` for writing as soon as a reader has it open (the run is blocked there)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def test_kill_9_during_aggregation_leaves_nothing_a_rerun_keeps(inputs: list[Path],
                                                                 tmp_path: Path) -> None:
    clean, out = tmp_path / "clean", tmp_path / "out"
    assert dcmweb("convert", inputs[0].parent, "-d", clean, "-q", "-j", "1").returncode == 0
    first_two, last = tmp_path / "first", tmp_path / "last"
    first_two.mkdir(), last.mkdir()
    for path in inputs[:2]:
        shutil.copy(path, first_two)
    shutil.copy(inputs[2], last)
    assert dcmweb("convert", first_two, "-d", out, "-q", "-j", "1").returncode == 0
    # one committed instance's metadata becomes a FIFO: the next aggregation of the study,
    # after the run's commits, blocks reading it (each instance is read once, by the scan
    # that precedes the study's writes) and is killed there, its scratch folder left
    (metadata,) = sorted(out.glob("studies/*/series/*/instances/*/metadata.gz"))[:1]
    saved = metadata.read_bytes()
    metadata.unlink()
    os.mkfifo(metadata)
    run = subprocess.Popen([*CLI, "convert", str(last), "-d", str(out), "-q", "-j", "1"],
                           start_new_session=True, stderr=subprocess.PIPE)
    try:
        fd = _open_when_read(metadata)  # the scan has it open:
        time.sleep(0.5)  # held open without data, the reader blocks there
        os.killpg(run.pid, signal.SIGKILL)
        os.close(fd)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=60)
        run.stderr.close()
    assert run.returncode == -signal.SIGKILL
    assert debris(out) == [".tmp"]  # the killed run's scratch folder, its lock free
    metadata.unlink()
    metadata.write_bytes(saved)
    rerun = dcmweb("convert", last, "-d", out, "-q", "-j", "1")
    assert rerun.returncode == 0, rerun.stderr
    assert debris(out) == []
    assert tree(out) == tree(clean)


def test_live_runs_scratch_is_kept_and_dead_ones_removed(inputs: list[Path],
                                                         tmp_path: Path) -> None:
    """Liveness is a lock a live run holds, not a pid that may be reused."""
    from dcmweb_static.store import LocalStore
    from dcmweb_static.store.local import SCRATCH_LOCK

    out = tmp_path / "out"
    with LocalStore(out).session() as area:
        live = Path(area.path)
        (live / "half").write_bytes(b"x")
        dead = out / ".tmp" / f"run-{os.getpid()}-1"  # a live pid, but nobody holds its lock
        dead.mkdir()
        (dead / SCRATCH_LOCK).touch()
        (dead / "half").write_bytes(b"x")
        assert dcmweb("convert", inputs[0], "-d", out, "-q").returncode == 0
        assert (live / "half").exists() and not dead.exists()
    assert not (out / ".tmp").exists()


# -- defect 7: ENOSPC and EROFS on real file systems --------------------------------------

@contextlib.contextmanager
def small_fs(size_kib: int) -> Iterator[Path]:
    mount = Path(tempfile.mkdtemp(prefix="dcmweb-fs-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(mount)],
                   check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


FAULT_AFTER_LAST_COMMIT = """
    import os, subprocess
    from dcmweb_static import hookimpl

    seen = 0

    @hookimpl
    def instance_converted(record):
        global seen
        seen += 1
        if seen < int(os.environ["FAULT_AFTER"]):
            return
        if os.environ["FAULT"] == "full":  # fill the file system to the last block
            with open(os.environ["FAULT_BALLAST"], "wb", buffering=0) as ballast:
                try:
                    while True:
                        ballast.write(bytes(4096))
                except OSError:
                    pass
        else:
            subprocess.run(["mount", "-o", "remount,ro", os.environ["FAULT_MOUNT"]],
                           check=True)
"""


def _one_line_error(stderr: str, *words: str) -> None:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, stderr
    assert all(word in errors[0] for word in words), errors[0]


@pytest.mark.parametrize("fault", ["full", "ro"])
def test_enospc_and_erofs_during_aggregation(fault: str, inputs: list[Path],
                                             tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    assert dcmweb("convert", inputs[0].parent, "-d", clean, "-q", "-j", "1").returncode == 0
    env = _fake_plugin(tmp_path / "site", FAULT_AFTER_LAST_COMMIT)
    report = tmp_path / "report.json"
    with small_fs(2048) as mount:
        out = mount / "out"
        env.update(FAULT=fault, FAULT_AFTER="3", FAULT_MOUNT=str(mount),
                   FAULT_BALLAST=str(mount / "ballast"))
        run = dcmweb("convert", inputs[0].parent, "-d", out, "-j", "1", "--report", report,
                     env=env)
        assert run.returncode == 1, run.stderr
        reason = "No space left on device" if fault == "full" else "Read-only file system"
        _one_line_error(run.stderr, reason)
        assert "converted" in run.stderr  # the summary is printed too
        written = json.loads(report.read_text())
        assert reason in written["error"]
        assert [f["status"] for f in written["files"]] == ["converted"] * 3  # committed
        if fault == "full":
            (mount / "ballast").unlink()
        else:
            subprocess.run(["mount", "-o", "remount,rw", str(mount)], check=True)
        again = dcmweb("convert", inputs[0].parent, "-d", out, "-q", "-j", "1")
        assert again.returncode == 0, again.stderr
        assert debris(out) == []
        assert tree(out) == tree(clean)


def test_index_on_a_read_only_tree(inputs: list[Path], tmp_path: Path) -> None:
    with small_fs(2048) as mount:
        out = mount / "out"
        assert dcmweb("convert", inputs[0].parent, "-d", out, "-q", "-j", "1").returncode == 0
        before = tree(out)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        run = dcmweb("index", out)
        assert run.returncode == 1
        _one_line_error(run.stderr, "Read-only file system")
        subprocess.run(["mount", "-o", "remount,rw", str(mount)], check=True)
        assert dcmweb("index", out).returncode == 0
        assert tree(out) == before


# -- defect 11: symbolic links inside the output folder ----------------------------------

def _convert(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["convert", *map(str, args)], catch_exceptions=False)
    return result.exit_code, result.output


def _snapshot(folder: Path) -> dict[str, bytes | str]:
    """Names, contents and link targets: anything written there shows."""
    found: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        found[key] = (os.readlink(path) if path.is_symlink() else
                      path.read_bytes() if path.is_file() else "dir")
    return found


def _link_in_place(out: Path, relative: str, elsewhere: Path) -> None:
    """Move `out/relative` to `elsewhere` and leave a link to it in its place."""
    target = out / relative
    if target.exists():
        shutil.move(str(target), str(elsewhere))
    else:
        elsewhere.mkdir(parents=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(elsewhere, target_is_directory=True)


LINKED = ["studies", "studies/{st}", "studies/{st}/series/{se}/instances",
          "studies/{st}/series/{se}/instances/{sop}", "deduplicated",
          "deduplicated/extracts", ".tmp"]


@pytest.mark.parametrize("relative", LINKED)
def test_links_inside_the_tree_are_never_followed(relative: str, inputs: list[Path],
                                                  tmp_path: Path) -> None:
    import pydicom

    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    assert _convert(inputs[0].parent, "-d", out, "-q", "--deduplicate")[0] == 0
    ds = pydicom.dcmread(inputs[0], stop_before_pixels=True)
    relative = relative.format(st=ds.StudyInstanceUID, se=ds.SeriesInstanceUID,
                               sop=ds.SOPInstanceUID)
    _link_in_place(out, relative, elsewhere)
    before = _snapshot(elsewhere)
    report = tmp_path / "report.json"
    code, output = _convert(inputs[0].parent, "-d", out, "--deduplicate", "--report", report)
    assert code == 1, output
    assert "symbolic link" in output, output
    assert _snapshot(elsewhere) == before  # nothing written, moved or removed there


def test_a_dangling_lock_link_is_not_followed(inputs: list[Path], tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir(), elsewhere.mkdir()
    (out / ".dcmweb.lock").symlink_to(elsewhere / "lock")
    code, output = _convert(inputs[0].parent, "-d", out)
    assert code == 1 and "symbolic link" in output, output
    assert list(elsewhere.iterdir()) == []


def test_a_plugin_result_folder_link_is_not_followed(inputs: list[Path], tmp_path: Path) -> None:
    from dcmweb_static import ResultFile, hookimpl
    from dcmweb_static.cli.main import plugin_manager

    class Counter:
        @hookimpl
        def series_results(self, series):
            return [ResultFile("_acme", "n.txt", str(series.instance_count).encode())]

    pm = plugin_manager()
    counter = Counter()
    pm.register(counter, name="acme-counter")
    try:
        out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
        assert _convert(inputs[0].parent, "-d", out, "-q")[0] == 0
        (folder,) = out.glob("studies/*/series/*/_acme")
        _link_in_place(out, str(folder.relative_to(out)), elsewhere)
        (elsewhere / "keep.txt").write_text("not the plugin's")
        before = _snapshot(elsewhere)
        code, output = _convert(inputs[0].parent, "-d", out)
        assert code == 1 and "symbolic link" in output, output
        assert _snapshot(elsewhere) == before
    finally:
        pm.unregister(counter)


def test_the_output_root_itself_may_be_a_link(inputs: list[Path], tmp_path: Path) -> None:
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.symlink_to(real, target_is_directory=True)
    assert _convert(inputs[0].parent, "-d", link, "-q")[0] == 0
    assert len(list(real.glob("studies/*/series/*/instances/*/metadata.gz"))) == 3


# -- what is served: never a temp or dot file ---------------------------------------------

@pytest.mark.parametrize("kind", ["dcmweb-serve", "nginx"])
def test_temp_and_dot_files_are_never_served(kind: str, inputs: list[Path],
                                             tmp_path: Path) -> None:
    import httpx
    import pydicom

    from .servers import dcmweb_serve, nginx

    out = tmp_path / "out"
    assert _convert(inputs[0], "-d", out, "-q")[0] == 0
    ds = pydicom.dcmread(inputs[0], stop_before_pixels=True)
    study = f"studies/{ds.StudyInstanceUID}"
    instance = f"{study}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    planted = [".tmp/run-1-1/1-0-metadata.gz", f"{study}/.metadata.gz.1.tmp",
               f"{instance}/bulkdata/.0a.1.tmp", f"{instance}/frames/.1.tmp", ".dcmweb.lock"]
    for relative in planted:
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        (out / relative).write_bytes(b"DEBRIS")
    server = dcmweb_serve(out) if kind == "dcmweb-serve" else nginx(out, tmp_path / "nginx")
    with server as url:
        for relative in planted:
            for path in (relative, relative.removesuffix(".gz")):
                response = httpx.get(f"{url}/{path}", headers={"Accept-Encoding": "gzip"})
                assert response.status_code in (400, 404), path
                assert b"DEBRIS" not in response.content
        assert httpx.get(f"{url}/{instance}/metadata").status_code == 200
