"""`dcmweb listen` as a real process on 127.0.0.1, fed by dcmtk's echoscu and storescu:
every acknowledged instance is in the tree, exact (metadata and frames against pydicom's
reading of the file sent); the index counts them; concurrent associations lose nothing;
a listener killed with SIGKILL mid-stream and started again gives the tree of a clean run;
conflicts and bad data sets get failure statuses and the listener keeps serving."""

from __future__ import annotations

import hashlib
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
import pydicom
import pydicom.uid
import pytest

from dcmweb_static import LocalStore, synthetic
from dcmweb_static.receive.spool import data_set_offset, part10_header
from dcmweb_static.store.local import SCRATCH_DIR, SCRATCH_LOCK
from dcmweb_static.tree import names, urls
from dcmweb_static.tree.reader import TreeReader

from . import corpus
from .conftest import require_tool
from .reference import assert_same_dataset, reference_frames
from .s3server import s3_server
from .servers import free_port, wait_for_port
from .test_ingest import tree_files
from .treeutil import dataset_from_tree, frame_bodies

SERIES_SIZE = 120
#: storescu flags that propose each compressed file's own transfer syntax
PROPOSE = {"jpeg_baseline": "-xy", "jpeg_lossless_sv1": "-xs", "rle": "-xr",
           "jpeg2000": "-xv", "jpegls_lossless": "-xt", "deflated": "-xd",
           "big_endian": "-xb", "implicit": "-xi", "video_mpeg4": "-xn"}


@dataclass
class Listener:
    process: subprocess.Popen
    port: int
    out: Path
    log: Path

    def stop(self) -> str:
        """SIGTERM; the listener finishes, flushes the index and exits 0."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(60) == 0, self.log.read_text()
        return self.log.read_text()


@contextmanager
def listening(out: Path, *args: str, env: dict[str, str] | None = None,
              max_file_size: int | None = None) -> Iterator[Listener]:
    """`dcmweb listen OUT` as a process; `max_file_size`: no file it writes may grow past
    this (RLIMIT_FSIZE: a write beyond fails with EFBIG, as on a full disk)."""
    port = free_port()
    log = out.parent / f"{out.name}.{port}.log"

    def limit() -> None:
        if max_file_size is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_size, max_file_size))

    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "dcmweb_static.cli", "listen", str(out), "--port", str(port),
             "--debounce", "0.2", *args], stdout=subprocess.DEVNULL, stderr=stderr,
            env=None if env is None else {**os.environ, **env},
            preexec_fn=None if max_file_size is None else limit)
    listener = Listener(process, port, out, log)
    try:
        wait_for_port(port)
        yield listener
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def storescu(port: int, files: list[Path], *flags: str, aet: str = "STORESCU"
             ) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("storescu"), "-v", "-aet", aet, *flags, "127.0.0.1",
                           str(port), *map(str, files)], capture_output=True, text=True,
                          timeout=300)


def acknowledged(log: str) -> list[str]:
    """The files storescu's verbose log says were stored with success."""
    done, sending = [], None
    for line in log.splitlines():
        if line.startswith("I: Sending file: "):
            sending = line[len("I: Sending file: "):]
        elif "Received Store Response (Success)" in line and sending:
            done.append(sending)
    return done


def instance_dir(out: Path, ds: pydicom.Dataset) -> Path:
    return out / urls.instance_path(ds.StudyInstanceUID, ds.SeriesInstanceUID,
                                    ds.SOPInstanceUID)


def qido_count(out: Path, study: str) -> int:
    data = TreeReader(LocalStore(out)).resource("study_instances", study=study)
    return 0 if data is None else len(orjson.loads(data))


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> list[Path]:
    return synthetic.ct_series(tmp_path_factory.mktemp("series"), SERIES_SIZE, rows=64,
                               columns=64)


@pytest.fixture(scope="module")
def clean_tree(series: list[Path], tmp_path_factory) -> Path:
    """The series received by a listener in one association, undisturbed."""
    out = tmp_path_factory.mktemp("clean") / "out"
    with listening(out) as listener:
        sent = storescu(listener.port, series)
        assert sent.returncode == 0, sent.stderr
        assert len(acknowledged(sent.stderr + sent.stdout)) == SERIES_SIZE
        log = listener.stop()
    assert re.search(rf"association released from 'STORESCU' at 127\.0\.0\.1:\d+: "
                     rf"{SERIES_SIZE} stored, 0 duplicates, 0 failed", log), log
    return out


def _distinct(path: Path, out: Path, index: int) -> Path:
    """`path` with UIDs of its own (corpus files share theirs), kept in its syntax."""
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = synthetic.uid(200, 1, index)
    ds.SeriesInstanceUID = synthetic.uid(200, 1)
    ds.StudyInstanceUID = synthetic.uid(200)
    ds.save_as(out, enforce_file_format=True)
    return out


def test_echo(tmp_path: Path) -> None:
    with listening(tmp_path / "out") as listener:
        echo = subprocess.run([require_tool("echoscu"), "127.0.0.1", str(listener.port)],
                              capture_output=True, text=True, timeout=60)
        assert echo.returncode == 0, echo.stderr
        log = listener.stop()
    assert "association released from 'ECHOSCU'" in log


def test_a_series_arrives_exact_and_counted(clean_tree: Path, series: list[Path]) -> None:
    study = synthetic.uid(1)
    assert qido_count(clean_tree, study) == SERIES_SIZE
    records = orjson.loads(TreeReader(LocalStore(clean_tree)).resource("series", study=study))
    assert records[0]["00201209"]["Value"] == [SERIES_SIZE]
    assert not list((clean_tree / names.PENDING_DIR).iterdir())
    for path in series[:: SERIES_SIZE // 6]:
        source = pydicom.dcmread(path)
        folder = instance_dir(clean_tree, source)
        assert_same_dataset(source, dataset_from_tree(folder))
        assert [body for _, body in frame_bodies(folder)] == reference_frames(source)


def test_compressed_and_deflated_files_arrive_exact(tmp_path: Path) -> None:
    generated = corpus.build(tmp_path / "corpus")
    files = {name: _distinct(generated[name], tmp_path / f"{name}.dcm", i)
             for i, name in enumerate(PROPOSE, start=1)}
    with listening(tmp_path / "out") as listener:
        for name, path in files.items():
            sent = storescu(listener.port, [path], PROPOSE[name])
            log = sent.stderr + sent.stdout
            assert sent.returncode == 0 and acknowledged(log) == [str(path)], (name, log)
        listener.stop()
    for name, path in files.items():
        source = pydicom.dcmread(path)
        folder = instance_dir(tmp_path / "out", source)
        info = orjson.loads((folder / "info").read_bytes())
        assert info["transfer_syntax_uid"] == source.file_meta.TransferSyntaxUID, name
        ts = source.file_meta.TransferSyntaxUID
        assert_same_dataset(source, dataset_from_tree(folder, little_endian=ts.is_little_endian))
        if name != "video_mpeg4":  # a video is one resource, not frames
            assert [b for _, b in frame_bodies(folder)] == reference_frames(source), name
    assert qido_count(tmp_path / "out", synthetic.uid(200)) == len(files)


def test_four_associations_at_once_lose_nothing(tmp_path: Path, series: list[Path],
                                                clean_tree: Path) -> None:
    out = tmp_path / "out"
    with listening(out) as listener:
        results: list[subprocess.CompletedProcess] = []
        threads = [threading.Thread(target=lambda part=series[i::4]: results.append(
            storescu(listener.port, part))) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        log = listener.stop()
    assert [r.returncode for r in results] == [0] * 4
    assert sum(len(acknowledged(r.stderr + r.stdout)) for r in results) == SERIES_SIZE
    assert len(re.findall(r"association released from 'STORESCU'", log)) == 4
    assert tree_files(out) == tree_files(clean_tree)


def test_sigkill_mid_stream_then_restart(tmp_path: Path, series: list[Path],
                                        clean_tree: Path) -> None:
    """Every instance acknowledged before SIGKILL is in the tree; started again and sent
    everything again, the tree is the clean run's, byte for byte."""
    out = tmp_path / "out"
    with listening(out) as listener:
        sender = subprocess.Popen([require_tool("storescu"), "-v", "127.0.0.1",
                                   str(listener.port), *map(str, series)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert sender.stdout is not None
        lines = []
        for line in sender.stdout:
            lines.append(line)
            if len(acknowledged("".join(lines))) == SERIES_SIZE // 3:
                listener.process.kill()
                break
        lines.extend(sender.stdout)
        sender.wait(60)
        listener.process.wait()
    done = acknowledged("".join(lines))
    assert SERIES_SIZE // 3 <= len(done) < SERIES_SIZE
    for path in done:
        folder = instance_dir(out, pydicom.dcmread(path, stop_before_pixels=True))
        assert (folder / "metadata.gz").is_file() and (folder / "info").is_file()
    with listening(out) as listener:  # again: the rest, and the acknowledged once more
        sent = storescu(listener.port, series)
        assert sent.returncode == 0 and len(acknowledged(sent.stderr + sent.stdout)) == \
            SERIES_SIZE
        log = listener.stop()
    stored, duplicates = map(int, re.search(r"(\d+) stored, (\d+) duplicates, 0 failed",
                                            log).groups())
    # the acknowledged are duplicates now; so are any committed but not acknowledged
    assert duplicates >= len(done) and stored + duplicates == SERIES_SIZE
    assert tree_files(out) == tree_files(clean_tree)


def test_sigterm_finishes_the_association_in_progress(tmp_path: Path,
                                                      series: list[Path]) -> None:
    out = tmp_path / "out"
    with listening(out, "--debounce", "600") as listener:
        sender = subprocess.Popen([require_tool("storescu"), "-v", "127.0.0.1",
                                   str(listener.port), *map(str, series[:40])],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert sender.stdout is not None
        lines = []
        for line in sender.stdout:
            lines.append(line)
            if len(acknowledged("".join(lines))) == 5:
                listener.process.send_signal(signal.SIGTERM)
                break
        lines.extend(sender.stdout)
        assert sender.wait(60) == 0
        assert listener.process.wait(60) == 0
    assert len(acknowledged("".join(lines))) == 40
    # flushed on the way out, though the debounce was ten minutes
    assert qido_count(out, synthetic.uid(1)) == 40
    with pytest.raises(OSError):  # not listening any more
        wait_for_port(listener.port, timeout=0.5)


def test_conflicts_and_bad_data_sets_fail_and_the_listener_keeps_serving(
        tmp_path: Path, series: list[Path]) -> None:
    original = series[0]
    conflict = pydicom.dcmread(original)
    conflict.PatientName = "Other^Patient"
    conflicting = synthetic.save(conflict, tmp_path / "conflict.dcm")
    bad = pydicom.dcmread(series[1])
    bad.SOPInstanceUID = bad.file_meta.MediaStorageSOPInstanceUID = synthetic.uid(300, 1, 1)
    bad.StudyInstanceUID = "1.2.3.abc"  # not a UID: the data set is refused
    broken = synthetic.save(bad, tmp_path / "bad-uid.dcm")
    with listening(tmp_path / "out") as listener:
        sent = storescu(listener.port, [original, conflicting, broken, original, series[2]],
                        "--no-halt", "--debug")
        log = listener.stop()
    dump = sent.stdout + sent.stderr  # --debug: each response's status and Error Comment
    statuses = [s.lower() for s in re.findall(r"DIMSE Status\s*: (0x[0-9A-Fa-f]{4})", dump)]
    # the stored one was kept (Duplicate SOP Instance); a bad data set: Cannot Understand
    assert statuses == ["0x0000", "0x0111", "0xc000", "0x0000", "0x0000"], dump
    assert f"SOP Instance UID {conflict.SOPInstanceUID} is in the tree already" in log
    comments = re.findall(r"\(0000,0902\) LO \[([^\]]*)\]", dump)
    assert comments[0].startswith(f"SOP Instance UID {conflict.SOPInstanceUID} is in the")
    assert comments[1] == "malformed Study Instance UID '1.2.3.abc'"
    assert "2 stored, 1 duplicates, 2 failed" in log
    stored = instance_dir(tmp_path / "out", conflict)
    assert "Other^Patient" not in str(dataset_from_tree(stored).PatientName)


def test_only_allowed_calling_ae_titles(tmp_path: Path) -> None:
    with listening(tmp_path / "out", "--allow-ae", "MODALITY", "--allow-ae", "PACS") as listener:
        def echo(aet: str) -> subprocess.CompletedProcess:
            return subprocess.run([require_tool("echoscu"), "-aet", aet, "127.0.0.1",
                                   str(listener.port)], capture_output=True, text=True,
                                  timeout=60)
        refused = echo("STRANGER")
        assert refused.returncode != 0 and "Rejected" in refused.stdout + refused.stderr
        assert echo("PACS").returncode == 0
        log = listener.stop()
    assert "association rejected from 'STRANGER'" in log
    assert "association released from 'PACS'" in log


def test_usage_errors(tmp_path: Path) -> None:
    """A bad AE title is a usage error; a port in use a one-line error."""
    def listen(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dcmweb_static.cli", "listen",
                               str(tmp_path / "out"), *args], capture_output=True, text=True,
                              timeout=60)

    bad = listen("--ae-title", "A" * 17)
    assert bad.returncode == 2 and "must not exceed 16 characters" in bad.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = listen("--port", str(port))
    assert busy.returncode == 1
    assert busy.stderr == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_two_listeners_into_one_tree_while_a_server_reads_it(
        tmp_path: Path, series: list[Path], clean_tree: Path) -> None:
    """Two listeners write one tree at once (each aggregates under the tree lock) while
    `dcmweb serve` answers from it: every answer is whole (a listed instance's metadata is
    there), and the tree ends as the clean run's."""
    import httpx

    from .servers import dcmweb_serve

    out = tmp_path / "out"
    out.mkdir()
    study = synthetic.uid(1)
    seen: list[int] = []
    stop_reading = threading.Event()
    problems: list[str] = []

    def read(base: str) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while not stop_reading.is_set():
                listed = client.get(f"/studies/{study}/instances")
                if listed.status_code == 404:
                    continue
                records = listed.json()  # a half-written list would not parse
                seen.append(len(records))
                for record in records[-3:]:
                    sop = record["00080018"]["Value"][0]
                    series_uid = record["0020000E"]["Value"][0]
                    got = client.get(f"/studies/{study}/series/{series_uid}/instances/{sop}"
                                     "/metadata")
                    if got.status_code != 200 or len(got.json()) != 1:
                        problems.append(f"{sop}: {got.status_code}")

    with dcmweb_serve(out) as base, listening(out) as one, listening(out) as two:
        reader = threading.Thread(target=read, args=(base,))
        reader.start()
        sends = [threading.Thread(target=storescu, args=(listener.port, part))
                 for listener, part in ((one, series[0::2]), (two, series[1::2]))]
        for thread in sends:
            thread.start()
        for thread in sends:
            thread.join()
        one.stop()
        two.stop()
        stop_reading.set()
        reader.join()
    assert not problems
    assert seen and max(seen) == SERIES_SIZE
    assert tree_files(out) == tree_files(clean_tree)


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 (tests/s3server.py) with bucket `bkt`."""
    with s3_server("bkt") as endpoint:
        yield endpoint


def test_into_an_object_store(tmp_path: Path, series: list[Path], s3_endpoint: str,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(key, value)  # the listener process inherits them
    port = free_port()
    log = tmp_path / "s3.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "dcmweb_static.cli", "listen",
                                    "s3://bkt/dw", "--port", str(port), "--debounce", "0.2"],
                                   stderr=stderr)
    try:
        wait_for_port(port)
        first = storescu(port, series[:6])
        again = storescu(port, series[:2])
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert first.returncode == 0 and again.returncode == 0
    text = log.read_text()
    assert "6 stored, 0 duplicates" in text and "0 stored, 2 duplicates" in text, text
    study = synthetic.uid(1)
    listed = httpx.get(f"{s3_endpoint}/bkt/dw/studies/{study}/instances")
    assert listed.status_code == 200 and len(orjson.loads(listed.content)) == 6
    assert httpx.get(f"{s3_endpoint}/bkt/dw/{names.pending_name(study)}").status_code == 404


#: 512 x 512 x 16-bit frames (512 KiB each): a 315 MB data set
BIG_FRAMES = 600
#: the listener's peak resident memory receiving it: well below the data set's size
#: (held in memory, it cost 2-3 times that)
BIG_RSS_BOUND = 150 << 20


def _big_multiframe(path: Path) -> tuple[Path, list[bytes]]:
    """A native multi-frame file of BIG_FRAMES frames, each marked with its number (so a
    frame out of place shows); returns it and its frames. The Pixel Data element is
    written after the rest by hand, a frame at a time (quicker than pydicom's copy)."""
    ds = synthetic.base_dataset(synthetic.uid(600), synthetic.uid(600, 1),
                                synthetic.uid(600, 1, 1), rich=False)
    synthetic.add_pixels(ds, rows=512, columns=512, bits=12)
    frame = ds.PixelData
    del ds.PixelData
    ds.NumberOfFrames = BIG_FRAMES
    synthetic.save(ds, path, pydicom.uid.ExplicitVRLittleEndian)
    frames = [n.to_bytes(2, "little") + frame[2:] for n in range(BIG_FRAMES)]
    with path.open("ab") as out:  # (7FE0,0010) OW, explicit VR little endian, last
        out.write(b"\xe0\x7f\x10\x00OW\0\0" + (len(frame) * BIG_FRAMES).to_bytes(4, "little"))
        out.writelines(frames)
    return path, frames


def _peak_rss(pid: int) -> int:
    """The peak resident set size of process `pid` so far (VmHWM), in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB$", status, re.MULTILINE).group(1)) << 10


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> tuple[Path, list[bytes]]:
    return _big_multiframe(tmp_path_factory.mktemp("big") / "big.dcm")


def _received_digest(path: Path) -> str:
    """The SHA-256 of the P10 a listener converts for file `path` sent in its own
    transfer syntax: this receiver's header, then the data set as in the file."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    digest = hashlib.sha256(part10_header(ds.SOPClassUID, ds.SOPInstanceUID,
                                          ds.file_meta.TransferSyntaxUID))
    with path.open("rb") as handle:
        handle.seek(data_set_offset(handle.read(144)))
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _spooled_files(out: Path) -> list[Path]:
    """Files in the listener's session other than its lock (received data sets)."""
    return [p for p in (out / SCRATCH_DIR).rglob("*") if p.is_file() and p.name != SCRATCH_LOCK]


def test_the_header_given_a_received_data_set_is_the_earlier_versions(tmp_path: Path) -> None:
    """The File Meta Information put in front of a received data set is byte for byte what
    earlier versions made (its digest is in the `info` records of trees they received):
    a re-send of an instance received before is a duplicate, not a conflict."""
    header = part10_header("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5", "1.2.840.10008.1.2.1")
    assert (len(header), hashlib.sha256(header).hexdigest()) == (
        312, "188928462c3234d62e8db42c63f2f3975eb8c9fd064d3d582d08169c4b20e78f")
    assert data_set_offset(header + b"rest") == len(header)
    with pytest.raises(ValueError):
        data_set_offset(b"\0" * 128 + b"DICM")


def test_a_300_mb_multiframe_is_received_to_disk_not_into_memory(
        tmp_path: Path, big: tuple[Path, list[bytes]]) -> None:
    """The data set goes to a file of the run's staging area as it arrives, and is
    converted from there: the listener's peak RSS stays far below its size; the frames
    are the source's, the P10 converted is this receiver's header and the data set as
    sent; the received file is gone once the instance is acknowledged, and nothing went
    to the system's temp folder."""
    path, frames = big
    assert path.stat().st_size > 300 << 20
    out, temp = tmp_path / "out", tmp_path / "system-temp"
    temp.mkdir()
    with listening(out, env={"TMPDIR": str(temp)}) as listener:
        sent = storescu(listener.port, [path])
        assert acknowledged(sent.stderr + sent.stdout) == [str(path)], sent.stderr
        peak = _peak_rss(listener.process.pid)
        left = _spooled_files(out)
        listener.stop()
    assert peak < BIG_RSS_BOUND, f"peak RSS {peak >> 20} MiB receiving {len(frames)} frames"
    assert not left, left
    assert not list(temp.iterdir())
    folder = instance_dir(out, pydicom.dcmread(path, stop_before_pixels=True))
    stored = frame_bodies(folder)
    assert len(stored) == BIG_FRAMES
    assert all(body == frame for (_, body), frame in zip(stored, frames, strict=True))
    source = orjson.loads((folder / "info").read_bytes())["source"]
    assert source["path"] == "C-STORE from STORESCU"
    assert source["sha256"] == _received_digest(path)


def test_a_data_set_cut_off_mid_way_leaves_no_file(tmp_path: Path,
                                                   big: tuple[Path, list[bytes]]) -> None:
    """A sender killed while its data set arrives: the association is aborted, the part
    received is removed at once, and the listener keeps serving."""
    path, _ = big
    out = tmp_path / "out"
    with listening(out) as listener:
        sender = subprocess.Popen([require_tool("storescu"), "127.0.0.1", str(listener.port),
                                   str(path)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not any(p.stat().st_size > 1 << 20 for p in _spooled_files(out)):
            assert sender.poll() is None and time.monotonic() < deadline
            time.sleep(0.005)
        sender.kill()
        sender.wait()
        while (left := _spooled_files(out)) and time.monotonic() < deadline:
            time.sleep(0.05)
        echo = subprocess.run([require_tool("echoscu"), "127.0.0.1", str(listener.port)],
                              capture_output=True, timeout=60)
        log = listener.stop()
    assert not left, left
    assert echo.returncode == 0
    assert re.search(r"connection from 'STORESCU' at 127\.0\.0\.1:\d+ closed while a data set "
                     r"was arriving: the part received is discarded", log), log
    assert re.search(r"'STORESCU' at [\d.:]+: 0 stored, 0 duplicates, 1 failed", log), log


def test_a_data_set_the_disk_cannot_hold_aborts_its_association_and_leaves_no_file(
        tmp_path: Path, big: tuple[Path, list[bytes]], series: list[Path]) -> None:
    """No file of the listener may pass 64 MiB (RLIMIT_FSIZE, a full disk's EFBIG): the
    big data set's association is aborted (never acknowledged), the part received is
    removed, and the next sender's instance is stored."""
    path, _ = big
    out = tmp_path / "out"
    with listening(out, max_file_size=64 << 20) as listener:
        refused = storescu(listener.port, [path])
        left = _spooled_files(out)
        sent = storescu(listener.port, series[:1])
        log = listener.stop()
    assert refused.returncode != 0 and not acknowledged(refused.stderr + refused.stdout)
    assert not left, left
    assert re.search(r"association aborted from 'STORESCU' at [\d.:]+: a data set cannot be "
                     r"received \(.*File too large.*\): 0 stored, 0 duplicates, 1 failed", log), log
    assert "Traceback" not in log, log
    assert acknowledged(sent.stderr + sent.stdout) == [str(series[0])], sent.stderr
    assert not instance_dir(out, pydicom.dcmread(path, stop_before_pixels=True)).exists()
