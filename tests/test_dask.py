"""Converting on a real Dask cluster: a `dask scheduler` and two `dask worker` processes
started here on 127.0.0.1, writing into a folder and into a real S3-compatible server
(moto, tests/s3server.py). The tree equals a one-machine run's byte for byte (and header
for header in the bucket), also when one worker is killed (SIGKILL) mid-run: Dask
reschedules its batches on the other. The workers write through the store themselves;
the parent only renames or copies what they staged, and a re-run into the bucket writes
nothing."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest

from dcmweb_static import synthetic as syn
from dcmweb_static.errors import OptionError
from dcmweb_static.run.batch import Converter
from dcmweb_static.run.options import ConvertOptions
from dcmweb_static.store import MemoryStore

from . import corpus
from .s3server import s3_server
from .servers import free_port, wait_for_port

# found, not imported (see dask_run.py): the client, moto and s3fs run in other processes
for _module in ("distributed", "s3fs", "moto"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"{_module} is not installed (pip install -e '.[test]')",
                    allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
DASK = str(Path(sys.executable).parent / "dask")
SAMPLES = Path(__file__).resolve().parent.parent / "samples"
BUCKET = "bkt"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}
#: an instance's own files (not the series' `instances/index.json` QIDO file)
INSTANCE_FILE = re.compile(r"/instances/(?!index\.json)")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The test corpus, the samples, and 48 CT slices (enough batches to kill a worker in
    the middle of the run), with duplicates far apart in input order (so in batches of
    both workers): a file with slice 20's SOP Instance UID and other content first, a
    byte copy of slice 5 and a changed slice 10 last."""
    base = tmp_path_factory.mktemp("dask-inputs")
    ct = pydicom.dcmread(SAMPLES / "ct" / "CT00001.dcm")

    def slice_file(name: str, n: int, number: int) -> Path:
        ct.SOPInstanceUID = ct.file_meta.MediaStorageSOPInstanceUID = syn.uid(800, 1, n + 1)
        ct.InstanceNumber = number
        ct.save_as(base / name)
        return base / name

    files = [slice_file("conflict-first.dcm", 20, 99)]
    files += list(corpus.build(base / "corpus").values()) + sorted(SAMPLES.rglob("*.dcm"))
    files += [slice_file(f"slice{n:03}.dcm", n, n + 1) for n in range(48)]
    (base / "copy-of-5.dcm").write_bytes((base / "slice005.dcm").read_bytes())
    files += [base / "copy-of-5.dcm", slice_file("conflict-last.dcm", 10, 98)]
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


def test_the_duplicates_are_judged_in_the_one_machine_run(inputs, reference) -> None:
    """What the Dask runs are compared with: the first in input order won each SOP UID."""
    outcomes = reference[1]
    by_name = {Path(path).name: outcome for path, outcome in outcomes.items()}
    assert by_name["conflict-first.dcm"][0] == "converted"
    assert by_name["slice020.dcm"][0] == "failed"
    assert "with different content" in by_name["slice020.dcm"][1]
    assert by_name["copy-of-5.dcm"] == ["duplicate",
                                        f"same file content as {inputs[0].parent}/slice005.dcm"]
    assert by_name["conflict-last.dcm"][0] == "failed"


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 with a public-read bucket; yields its endpoint."""
    with s3_server(BUCKET) as endpoint:
        yield endpoint


def _env(endpoint: str) -> dict[str, str]:
    """The standard AWS configuration for the moto server (parent, workers and CLI)."""
    return {**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}


def _run_on(address: str, out: Path | str, inputs: list[Path], endpoint: str,
            listing: Path, kill: int | None = None, *extra: str) -> dict:
    """tests/dask_run.py in its own process; its JSON line."""
    listing.write_text(json.dumps([str(p) for p in inputs]))
    done = subprocess.run([sys.executable, "-m", "tests.dask_run", address, str(out),
                           str(listing), *(["--kill", str(kill)] if kill else []), *extra],
                          cwd=ROOT,
                          env=_env(endpoint), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _parent_moved_no_bytes(run: dict) -> None:
    """The parent put no instance file through its store and wrote no staged file: the
    workers did; it only committed (renames, server-side copies)."""
    assert [name for name in run["puts"] if INSTANCE_FILE.search(name)] == []
    assert [name for name in run["puts"] if name.startswith("studies/")]  # the spy works
    assert run["staged_writes"] == []
    assert run["commits"] == [status for status, _ in run["outcomes"].values()
                              ].count("converted")


@pytest.fixture()
def cluster(tmp_path: Path, s3: str) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """A scheduler and two single-threaded workers without a nanny (a killed worker stays
    dead, so its work must move to the other); the workers reach the moto server."""
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
                                    stdout=log, stderr=log, env=_env(s3)) for i in range(2)]
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


def test_two_workers_write_the_one_machine_tree(cluster, inputs, reference, s3,
                                                tmp_path: Path) -> None:
    address, _ = cluster
    out = tmp_path / "out"
    run = _run_on(address, out, inputs, s3, tmp_path / "inputs.json")
    assert run["error"] is None
    assert run["outcomes"] == reference[1]
    assert _tree(out) == reference[0]
    _parent_moved_no_bytes(run)
    assert not (out / ".tmp").exists()


def test_a_worker_killed_mid_run_still_gives_the_same_tree(cluster, inputs, reference, s3,
                                                           tmp_path: Path) -> None:
    address, workers = cluster
    out = tmp_path / "out"
    run = _run_on(address, out, inputs, s3, tmp_path / "inputs.json", kill=workers[0].pid)
    assert run["killed"], "the worker was never seen holding a batch"
    assert workers[0].wait(10) == -signal.SIGKILL
    assert run["error"] is None
    assert run["outcomes"] == reference[1]
    assert _tree(out) == reference[0]
    _parent_moved_no_bytes(run)
    assert not (out / ".tmp").exists()  # the killed worker's staged folders went too


S3_XML = "{http://s3.amazonaws.com/doc/2006-03-01/}"
#: what S3 sends back with an object, beside its bytes
STORED_HEADERS = ("content-type", "content-encoding", "cache-control",
                  "x-amz-meta-dcmweb-sha256")


def _bucket(endpoint: str, prefix: str) -> dict[str, tuple]:
    """Every object below `prefix/`: (bytes as stored, the headers S3 sends, ETag), by its
    key relative to the prefix (moto answers unsigned requests: a public-read bucket)."""
    from xml.etree import ElementTree

    found: dict[str, tuple] = {}
    token = ""
    with httpx.Client(base_url=f"{endpoint}/{BUCKET}") as client:
        while True:
            listed = ElementTree.fromstring(client.get("", params={
                "list-type": "2", "prefix": f"{prefix}/",
                **({"continuation-token": token} if token else {})}).content)
            for item in listed.iter(f"{S3_XML}Contents"):
                key = item.findtext(f"{S3_XML}Key") or ""
                with client.stream("GET", f"/{key}") as response:
                    data = b"".join(response.iter_raw())
                    headers = tuple(response.headers.get(h) for h in STORED_HEADERS)
                found[key[len(prefix) + 1:]] = (data, headers, item.findtext(f"{S3_XML}ETag"))
            token = listed.findtext(f"{S3_XML}NextContinuationToken") or ""
            if not token:
                return found


def _without_etags(bucket: dict[str, tuple]) -> dict[str, tuple]:
    return {key: value[:2] for key, value in bucket.items()}


def test_into_the_bucket_with_a_worker_killed_and_a_rerun_writing_nothing(
        cluster, inputs, reference, s3, tmp_path: Path) -> None:
    """Into moto S3: the tree of a one-machine run (process pool, the CLI) object for
    object, bytes and headers, with one worker killed; the parent sent no instance byte;
    nothing is left below `.tmp/`; a re-run writes and removes nothing."""
    files = [p for p in inputs if not re.fullmatch(r"slice0(1[6-9]|[2-4]\d)\.dcm", p.name)
             or p.name == "slice020.dcm"]  # a smaller corpus: moto is slow
    one = subprocess.run([sys.executable, "-m", "dcmweb_static.cli", "convert", *map(str, files),
                          "-d", f"s3://{BUCKET}/one", "-j", "2", "-q",
                          "--cache-control", "max-age=60"],
                         env=_env(s3), capture_output=True, text=True, timeout=300)
    assert one.returncode in (0, 1), one.stderr  # 1: the corpus has files that fail
    address, workers = cluster
    run = _run_on(address, f"s3://{BUCKET}/dask", files, s3, tmp_path / "inputs.json",
                  workers[0].pid, "--cache-control", "max-age=60")
    assert run["killed"] and workers[0].wait(10) == -signal.SIGKILL
    assert run["error"] is None
    assert run["outcomes"] == {str(p): reference[1][str(p)] for p in files}
    _parent_moved_no_bytes(run)
    tree = _bucket(s3, "dask")
    assert _without_etags(tree) == _without_etags(_bucket(s3, "one"))
    assert not [key for key in tree if key.startswith(".tmp")]
    again = _run_on(address, f"s3://{BUCKET}/dask", files, s3, tmp_path / "inputs.json",
                    None, "--cache-control", "max-age=60", "--workers", "1")
    assert again["outcomes"] == run["outcomes"]
    assert again["objects"]["written"] == 0 and again["objects"]["removed"] == 0
    assert again["objects"]["unchanged"] >= len(tree) - 2
    assert _bucket(s3, "dask") == tree  # ETags too: not one object was replaced


def test_a_batch_result_carries_no_file_bytes(tmp_path: Path) -> None:
    """What a worker returns through the scheduler: results naming the staged folder in
    the run's staging area, a few hundred bytes each, whatever the instance's size."""
    from dcmweb_static.run.dask_pool import StoreTarget, convert_batch
    from dcmweb_static.store import LocalStore

    store = LocalStore(tmp_path / "out")
    with store.session() as staging:
        paths = [str(SAMPLES / "ct" / "CT00001.dcm"), str(SAMPLES / "implicit.dcm")]
        results = convert_batch(ConvertOptions(output=tmp_path / "out"),
                                StoreTarget(staging=staging.path), paths)
        assert [r.status for r in results] == ["converted", "converted"]
        for result in results:
            assert result.staging and result.staging.startswith(staging.path + os.sep)
            staged = sum(p.stat().st_size for p in Path(result.staging).rglob("*")
                         if p.is_file())
            assert len(pickle.dumps(result)) < 2_000 < staged


def test_a_worker_without_the_staging_folder_fails_its_files(tmp_path: Path) -> None:
    """A worker on a machine that does not share the output folder: its files fail with
    the reason, and nothing is made where the folder should be."""
    from dcmweb_static.run.dask_pool import StoreTarget, convert_batch

    missing = tmp_path / "out" / ".tmp" / "run-1-2"
    results = convert_batch(ConvertOptions(output=tmp_path / "out"),
                            StoreTarget(staging=str(missing)), [str(SAMPLES / "implicit.dcm")])
    assert results[0].status == "failed" and "not on this Dask worker" in results[0].reason
    assert not (tmp_path / "out").exists()


def test_a_store_workers_cannot_open_is_refused(tmp_path: Path) -> None:
    """A MemoryStore or memory:// lives in this process: a Dask run into it is refused,
    before anything is converted (the CLI: a usage error)."""
    with pytest.raises(OptionError, match="Dask workers cannot write into this store"):
        Converter(ConvertOptions(output=tmp_path), store=MemoryStore(), scheduler="local")
    done = subprocess.run([sys.executable, "-m", "dcmweb_static.cli", "convert",
                           str(SAMPLES / "implicit.dcm"), "-d", "memory://x", "--scheduler",
                           "local", "-q"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "memory://x: Dask workers cannot" in done.stderr, \
        done.stderr


def test_cli_scheduler_local(tmp_path: Path) -> None:
    """`--scheduler local`: a LocalCluster of -j workers, the same tree as the process pool."""
    for name, extra in (("dask", ["--scheduler", "local"]), ("pool", [])):
        done = subprocess.run([sys.executable, "-m", "dcmweb_static.cli", "convert",
                               str(SAMPLES), "-d", str(tmp_path / name), "-j", "2", "-q",
                               *extra], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert _tree(tmp_path / "dask") == _tree(tmp_path / "pool")


def test_staged_in_the_bucket_then_copied_is_what_a_commit_publishes(tmp_path: Path) -> None:
    """The worker's half (`stage_instance`) and the parent's (`commit_staged_instance`),
    deduplicated parts included, publish the objects the one-machine commit does (fsspec's
    memory:// in this process: the same code as for S3 but the copy); the staged keys are
    gone after, also when the instances are staged again over them."""
    from dcmweb_static.plugins.manager import get_plugin_manager
    from dcmweb_static.run.commit import commit_staged_instance, stage_instance
    from dcmweb_static.run.instance import InstanceConverter
    from dcmweb_static.run.source import source_for
    from dcmweb_static.store import StagedInstance
    from dcmweb_static.store.objects import ObjectStore

    options = ConvertOptions(output=tmp_path, deduplicate=True, instances=True)
    files = [SAMPLES / "ct" / "CT00001.dcm", SAMPLES / "ct" / "CT00002.dcm",
             SAMPLES / "implicit.dcm"]
    one = ObjectStore(f"memory://one-{os.getpid()}")
    assert Converter(options, jobs=1, store=one).run(files).count("converted") == 3
    split = ObjectStore(f"memory://split-{os.getpid()}")
    converter = InstanceConverter(options, get_plugin_manager())

    def convert_all() -> None:
        with split.session() as area:
            for n, path in enumerate(files):
                result = converter.convert(source_for(str(path), {}), area)
                assert result.staging and result.study_uid and result.series_uid
                assert result.sop_uid
                staged = stage_instance(split, StagedInstance(result.staging),
                                        f"{split.run_prefix}/{n}", result.study_uid,
                                        result.series_uid, result.sop_uid)
                commit_staged_instance(split, staged, result.study_uid, result.series_uid,
                                       result.sop_uid)

    convert_all()
    published = {key: one.get(key) for key in one.keys_below("")
                 if key.startswith("deduplicated/") or "/instances/" in key}
    assert any(key.startswith("deduplicated/extracts/") for key in published)
    assert {key: split.get(key) for key in split.keys_below("")} == published
    assert split.counts.written == len(published)
    assert split.keys_below(".tmp") == []
    convert_all()  # again: the same objects (the bucket test counts what a re-run writes)
    assert {key: split.get(key) for key in split.keys_below("")} == published


def test_a_killed_runs_staged_objects_go_with_the_next_run(tmp_path: Path) -> None:
    """What a killed run (or a worker after its run ended) left below `.tmp/run-*/` of a
    bucket is removed by the next run's `clean_stale`; nothing else is."""
    from dcmweb_static.store.objects import ObjectStore

    store = ObjectStore(f"memory://stale-{os.getpid()}")
    with store.session():
        store.put(".tmp/run-1-2/1.2.3.4.5/metadata", b"[]")
        store.put("unrelated/object", b"x")
    summary = Converter(ConvertOptions(output=tmp_path), jobs=1, store=store).run(
        [SAMPLES / "implicit.dcm"])
    assert summary.count("converted") == 1
    assert store.keys_below(".tmp") == []
    assert store.get("unrelated/object") == b"x"
