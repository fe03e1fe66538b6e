"""Converting on a real Dask cluster: a `dask scheduler` and two `dask worker` processes
started here on 127.0.0.1. The tree equals a one-machine run's byte for byte, also when
one worker is killed (SIGKILL) mid-run: Dask reschedules its batches on the other."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from dcmweb_static import synthetic as syn
from dcmweb_static.run.batch import Converter
from dcmweb_static.run.options import ConvertOptions

from . import corpus
from .servers import free_port, wait_for_port

if importlib.util.find_spec("distributed") is None:  # found, not imported (see dask_run.py)
    pytest.skip("dask distributed is not installed (pip install -e '.[test]')",
                allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
DASK = str(Path(sys.executable).parent / "dask")
SAMPLES = Path(__file__).resolve().parent.parent / "samples"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The test corpus, the samples, and 48 CT slices (enough batches to kill a worker in
    the middle of the run)."""
    base = tmp_path_factory.mktemp("dask-inputs")
    files = list(corpus.build(base / "corpus").values()) + sorted(SAMPLES.rglob("*.dcm"))
    ct = pydicom.dcmread(SAMPLES / "ct" / "CT00001.dcm")
    for n in range(48):
        ct.SOPInstanceUID = ct.file_meta.MediaStorageSOPInstanceUID = syn.uid(800, 1, n + 1)
        ct.InstanceNumber = n + 1
        ct.save_as(base / f"slice{n:03}.dcm")
        files.append(base / f"slice{n:03}.dcm")
    return files


@pytest.fixture(scope="module")
def reference(inputs: list[Path], tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[dict[str, bytes], dict[str, tuple[str, str | None]]]:
    """The one-machine tree, and each input's status and reason (the corpus holds files
    that fail on purpose)."""
    out = tmp_path_factory.mktemp("one-machine") / "out"
    summary = Converter(ConvertOptions(output=out), jobs=2).run(inputs)
    assert summary.count("converted") > 60
    return _tree(out), _outcomes(summary)


def _outcomes(summary) -> dict[str, list[str | None]]:
    return {r.path: [r.status, r.reason] for r in summary.results}


def _run_on(address: str, out: Path, inputs: list[Path], kill: int | None = None) -> dict:
    """tests/dask_run.py in its own process; its JSON line."""
    listing = out.parent / "inputs.json"
    listing.write_text(json.dumps([str(p) for p in inputs]))
    done = subprocess.run([sys.executable, "-m", "tests.dask_run", address, str(out),
                           str(listing), *([str(kill)] if kill else [])], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """A scheduler and two single-threaded workers without a nanny (a killed worker stays
    dead, so its work must move to the other)."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = open(tmp_path / "dask.log", "wb")  # noqa: SIM115  (closed below)
    scheduler = subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port",
                                  str(port), "--no-dashboard"], stdout=log, stderr=log)
    workers: list[subprocess.Popen] = []
    try:
        wait_for_port(port, timeout=60)
        workers = [subprocess.Popen([DASK, "worker", address, "--nthreads", "1",
                                     "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
                                     "--local-directory", str(tmp_path / f"w{i}")],
                                    stdout=log, stderr=log) for i in range(2)]
        yield address, workers  # dask_run.py waits for both
    finally:
        for process in [*workers, scheduler]:
            if process.poll() is None:
                process.terminate()
        for process in [*workers, scheduler]:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".tmp" not in p.parts and p.name != ".dcmweb.lock"}


def test_two_workers_write_the_one_machine_tree(cluster, inputs, reference,
                                                tmp_path: Path) -> None:
    address, _ = cluster
    out = tmp_path / "out"
    run = _run_on(address, out, inputs)
    assert run["error"] is None
    assert run["outcomes"] == reference[1]
    assert _tree(out) == reference[0]


def test_a_worker_killed_mid_run_still_gives_the_same_tree(cluster, inputs, reference,
                                                           tmp_path: Path) -> None:
    address, workers = cluster
    out = tmp_path / "out"
    run = _run_on(address, out, inputs, kill=workers[0].pid)
    assert run["killed"], "the worker was never seen holding a batch"
    assert workers[0].wait(10) == -signal.SIGKILL
    assert run["error"] is None
    assert run["outcomes"] == reference[1]
    assert _tree(out) == reference[0]


def test_cli_scheduler_local(tmp_path: Path) -> None:
    """`--scheduler local`: a LocalCluster of -j workers, the same tree as the process pool."""
    for name, extra in (("dask", ["--scheduler", "local"]), ("pool", [])):
        done = subprocess.run([sys.executable, "-m", "dcmweb_static.cli", "convert",
                               str(SAMPLES), "-d", str(tmp_path / name), "-j", "2", "-q",
                               *extra], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert _tree(tmp_path / "dask") == _tree(tmp_path / "pool")


def test_unpack_refuses_names_leaving_the_staged_folder(tmp_path: Path) -> None:
    """What a worker returns becomes files in the parent: only names inside the folder."""
    from dcmweb_static.run.dask_pool import unpack
    from dcmweb_static.store import StagingArea

    area = StagingArea.at(tmp_path / "staging")
    staged = unpack([("metadata", b"[]"), ("frames/1", b"f")], area, "1.2")
    assert sorted(staged.files()) == ["frames/1", "metadata"]
    for name in ("../escape", "/abs", "frames//1", "a/./b"):
        with pytest.raises(ValueError, match="staged name"):
            unpack([("metadata", b"[]"), (name, b"x")], area, "1.2")
    assert not (tmp_path / "escape").exists()
    assert len(list((tmp_path / "staging").iterdir())) == 1  # the refused ones are removed
