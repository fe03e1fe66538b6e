"""STOW-RS into `dcmweb serve --stow` (a real server process on 127.0.0.1), written with
dicomweb-client and httpx, read back with dicomweb-client; the references are pydicom's
own reading of what was sent (tests/reference.py), never dcmweb's output."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

from dcmweb_static import synthetic as syn
from dcmweb_static.serve.multipart_body import (
    BadMultipart,
    MultipartReader,
    PartData,
    PartEnd,
    PartStart,
    UnsupportedType,
    multipart_boundary,
)

from . import corpus
from .reference import assert_same_dataset, reference_frames
from .servers import free_port, nginx, wait_for_port

DCMWEB = Path(sys.executable).parent / "dcmweb"
TOKEN = "s3cret-token-of-the-tests-0123456789"
MEDIA = {"1.2.840.10008.1.2.4.80": "image/jls", "1.2.840.10008.1.2.4.90": "image/jp2",
         "1.2.840.10008.1.2.5": "image/dicom-rle"}
CONTENT_TYPE = 'multipart/related; type="application/dicom"; boundary=stow-test-boundary'


@contextmanager
def stow_server(root: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """`dcmweb serve ROOT --stow` as its own process; yields its URL and the process."""
    port = free_port()
    process = subprocess.Popen([DCMWEB, "serve", str(root), "--stow", "--port", str(port),
                                *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode(errors="replace")
        # uvicorn stops cleanly, then re-raises the SIGTERM it caught
        assert process.returncode in (0, -15), output
        assert "Traceback" not in output, output


def message(parts: Iterable[bytes], boundary: str = "stow-test-boundary",
            media_type: str = "application/dicom") -> Iterator[bytes]:
    """A multipart/related body, part by part (a generator: httpx sends it chunked)."""
    for data in parts:
        yield f"\r\n--{boundary}\r\nContent-Type: {media_type}\r\n\r\n".encode()
        yield data
    yield f"\r\n--{boundary}--\r\n".encode()


def p10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def renewed(path: Path, sop: str) -> Dataset:
    """A corpus file with its own SOP Instance UID (dcmtk's conversions keep the source's),
    read back as the file that is sent."""
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
    return pydicom.dcmread(io.BytesIO(p10(ds)))


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Dataset]:
    """An uncompressed, a JPEG-LS, an RLE and a deflated instance of one study."""
    files = corpus.build(tmp_path_factory.mktemp("corpus"))
    chosen = {name: renewed(files[name], syn.uid(700, 1, i + 1))
              for i, name in enumerate(("mono16", "jpegls_lossless", "rle", "deflated"))}
    deflated = pydicom.uid.DeflatedExplicitVRLittleEndian
    assert chosen["deflated"].file_meta.TransferSyntaxUID == deflated
    assert len({ds.StudyInstanceUID for ds in chosen.values()}) == 1
    return chosen


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    out = tmp_path_factory.mktemp("stow") / "out"
    out.mkdir()
    with stow_server(out) as (url, _):
        yield url, out


def qido_instances(url: str, study: str) -> list[dict]:
    """The study's instances by QIDO-RS; none while its index is not written yet (404)."""
    response = httpx.get(f"{url}/studies/{study}/instances")
    return response.json() if response.status_code == 200 else []


def wait_until(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_store_instances_then_metadata_and_frames_equal(server, sent) -> None:
    url, _ = server
    client = DICOMwebClient(url)
    response = client.store_instances(list(sent.values()))
    stored = {item.ReferencedSOPInstanceUID for item in response.ReferencedSOPSequence}
    assert stored == {ds.SOPInstanceUID for ds in sent.values()}
    assert "FailedSOPSequence" not in response
    study = next(iter(sent.values())).StudyInstanceUID
    assert response.RetrieveURL == f"{url}/studies/{study}"
    for item in response.ReferencedSOPSequence:
        assert item.RetrieveURL.startswith(f"{url}/studies/{study}/series/")
    for name, ds in sent.items():
        st, se, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
        metadata = client.retrieve_instance_metadata(st, se, sop)
        instance = f"{url}/studies/{st}/series/{se}/instances/{sop}/"

        def bulk(tag: str, vr: str, uri: str, instance: str = instance) -> bytes:
            if uri.endswith("frames"):  # Pixel Data: compared frame by frame below
                return b""
            (value,) = client.retrieve_bulkdata(instance + uri.split("?")[0])
            return value

        loaded = Dataset.from_json(metadata, bulk_data_uri_handler=bulk)
        assert_same_dataset(ds, loaded, f"{name}:")
        ts = str(ds.file_meta.TransferSyntaxUID)
        media = MEDIA[ts] if ds.file_meta.TransferSyntaxUID.is_compressed \
            else "application/octet-stream"
        for number, expected in enumerate(reference_frames(ds), 1):
            (frame,) = client.retrieve_instance_frames(
                st, se, sop, frame_numbers=[number],
                media_types=((media, ts),) if media in MEDIA.values() else (media,))
            assert frame == expected, f"{name} frame {number}"
    # QIDO follows within the debounce
    wait_until(lambda: len(qido_instances(url, study)) == len(sent))
    assert {i["00080018"]["Value"][0] for i in client.search_for_instances(study)} == stored


def test_a_resend_is_a_success_and_other_content_a_conflict(server, sent) -> None:
    url, _ = server
    client = DICOMwebClient(url)
    ds = sent["mono16"]
    client.store_instances([ds])  # may be first here or a re-send: either way stored
    again = client.store_instances([ds])
    assert [i.ReferencedSOPInstanceUID for i in again.ReferencedSOPSequence] == \
        [ds.SOPInstanceUID]
    changed = pydicom.dcmread(io.BytesIO(p10(ds)))
    changed.PatientName = "Other^Content"
    response = httpx.post(f"{url}/studies", content=message([p10(changed)]),
                          headers={"Content-Type": CONTENT_TYPE})
    assert response.status_code == 409
    (failed,) = response.json()["00081198"]["Value"]
    assert failed["00081155"]["Value"] == [ds.SOPInstanceUID]
    assert failed["00081197"]["Value"] == [0x0111]
    assert "different content" in failed["00091001"]["Value"][0]
    metadata = client.retrieve_instance_metadata(ds.StudyInstanceUID, ds.SeriesInstanceUID,
                                                 ds.SOPInstanceUID)
    assert metadata["00100010"]["Value"][0]["Alphabetic"] != "Other^Content"


def test_a_garbage_part_fails_alone_and_the_server_keeps_serving(server, sent) -> None:
    url, _ = server
    good = renewed_copy(sent["mono16"], syn.uid(700, 2, 1))
    response = httpx.post(f"{url}/studies", content=message([b"garbage" * 100, p10(good)]),
                          headers={"Content-Type": CONTENT_TYPE,
                                   "Accept": "application/dicom+json"})
    assert response.status_code == 202, response.text
    assert response.headers["content-type"] == "application/dicom+json"
    body = response.json()
    (failed,) = body["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xC000]
    assert "not a DICOM" in failed["00091001"]["Value"][0]
    (stored,) = body["00081199"]["Value"]
    assert stored["00081155"]["Value"] == [good.SOPInstanceUID]
    client = DICOMwebClient(url)
    assert client.retrieve_instance_metadata(good.StudyInstanceUID, good.SeriesInstanceUID,
                                             good.SOPInstanceUID)["00080018"]["Value"] == \
        [good.SOPInstanceUID]


def renewed_copy(ds: Dataset, sop: str, study: str | None = None) -> Dataset:
    copy = pydicom.dcmread(io.BytesIO(p10(ds)))
    copy.SOPInstanceUID = copy.file_meta.MediaStorageSOPInstanceUID = sop
    if study:
        copy.StudyInstanceUID = study
    return copy


def test_post_to_another_study_is_refused(server, sent) -> None:
    url, out = server
    ds = renewed_copy(sent["mono16"], syn.uid(700, 3, 1))
    other = syn.uid(799)
    response = httpx.post(f"{url}/studies/{other}", content=message([p10(ds)]),
                          headers={"Content-Type": CONTENT_TYPE})
    assert response.status_code == 409
    (failed,) = response.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xA900]
    assert failed["00081155"]["Value"] == [ds.SOPInstanceUID]
    assert not any(out.glob(f"studies/*/series/*/instances/{ds.SOPInstanceUID}"))
    # to its own study it is stored
    response = httpx.post(f"{url}/studies/{ds.StudyInstanceUID}", content=message([p10(ds)]),
                          headers={"Content-Type": CONTENT_TYPE})
    assert response.status_code == 200
    assert response.json()["00081190"]["Value"] == [f"{url}/studies/{ds.StudyInstanceUID}"]


def test_uploads_at_once_lose_nothing(server) -> None:
    url, _ = server
    study = syn.uid(720)

    def upload(client_number: int) -> list[str]:
        datasets = [renewed_copy(base, syn.uid(720, client_number, i), study) for i, base in
                    enumerate(small_series(client_number), 1)]
        response = DICOMwebClient(url).store_instances(datasets)
        return [item.ReferencedSOPInstanceUID for item in response.ReferencedSOPSequence]

    results: dict[int, list[str]] = {}
    threads = [threading.Thread(target=lambda n=n: results.__setitem__(n, upload(n)))
               for n in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = {syn.uid(720, n, i) for n in range(1, 5) for i in range(1, 6)}
    assert {sop for stored in results.values() for sop in stored} == expected
    wait_until(lambda: len(qido_instances(url, study)) == len(expected))
    assert {i["00080018"]["Value"][0] for i in qido_instances(url, study)} == expected


def small_series(series: int) -> list[Dataset]:
    """Five 16 x 16 slices of series `series` of study 720."""
    datasets = []
    for i in range(1, 6):
        ds = syn.base_dataset(syn.uid(720), syn.uid(720, series), syn.uid(720, series, i),
                              instance_number=i, series_number=series, rich=False)
        syn.add_pixels(ds, rows=16, columns=16, bits=12, seed=i)
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        datasets.append(ds)
    return datasets


@pytest.mark.parametrize("content_type, status", [
    ("application/dicom", 415),
    ('multipart/related; type="application/dicom+json"; boundary=b', 415),
    ('multipart/related; type="application/dicom"', 400),
    ("multipart/related; boundary=\"a boundary that is far too long for RFC 2046 because it "
     "goes past seventy characters\"", 400),
])
def test_not_a_stow_message_is_400_or_415(server, content_type: str, status: int) -> None:
    url, _ = server
    response = httpx.post(f"{url}/studies", content=b"--b\r\n\r\nx\r\n--b--",
                          headers={"Content-Type": content_type})
    assert response.status_code == status
    assert httpx.post(f"{url}/studies/1.2.3/series", content=b"").status_code == 405
    assert httpx.post(f"{url}/studies", content=message([b"x"]),
                      headers={"Content-Type": CONTENT_TYPE,
                               "Accept": "application/dicom+xml"}).status_code == 406
    truncated = b"".join(message([b"x" * 100]))[:-30]
    response = httpx.post(f"{url}/studies", content=truncated,
                          headers={"Content-Type": CONTENT_TYPE})
    assert response.status_code == 400 and "ends inside a part" in response.text


def test_bearer_token(tmp_path: Path, sent) -> None:
    out = tmp_path / "out"
    out.mkdir()
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o644)
    refused = subprocess.run([DCMWEB, "serve", str(out), "--stow", "--token-file", str(token)],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "readable or writable by others" in refused.stderr
    token.chmod(0o600)
    ds = sent["jpegls_lossless"]
    with stow_server(out, "--token-file", str(token)) as (url, _):
        for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"},
                        {"Authorization": f"Basic {TOKEN}"}):
            response = httpx.post(f"{url}/studies", content=message([p10(ds)]),
                                  headers={"Content-Type": CONTENT_TYPE, **headers})
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Bearer")
        assert not (out / "studies").exists()
        client = DICOMwebClient(url, headers={"Authorization": f"Bearer {TOKEN}"})
        response = client.store_instances([ds])
        assert [i.ReferencedSOPInstanceUID for i in response.ReferencedSOPSequence] == \
            [ds.SOPInstanceUID]
        # reads stay open
        assert DICOMwebClient(url).retrieve_instance_metadata(
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)


def test_without_stow_a_post_is_405(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    port = free_port()
    process = subprocess.Popen([DCMWEB, "serve", str(out), "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        response = httpx.post(f"http://127.0.0.1:{port}/studies", content=message([b"x"]),
                              headers={"Content-Type": CONTENT_TYPE})
        assert response.status_code == 405
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_nginx_on_the_same_folder_takes_no_post(server, sent, tmp_path: Path) -> None:
    url, out = server
    ds = sent["rle"]
    DICOMwebClient(url).store_instances([ds])
    wait_until(lambda: (out / "studies" / "index.json.gz").is_file())
    before = sorted(p.relative_to(out) for p in out.rglob("*") if ".tmp" not in p.parts)
    with nginx(out, tmp_path / "nginx") as static:
        other = renewed_copy(ds, syn.uid(700, 5, 1))
        for target in ("/studies", f"/studies/{ds.StudyInstanceUID}"):
            response = httpx.post(static + target, content=message([p10(other)]),
                                  headers={"Content-Type": CONTENT_TYPE})
            assert response.status_code in (404, 405), target  # never a 2xx
        # and it serves what STOW-RS stored
        assert DICOMwebClient(static).retrieve_instance_metadata(
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert sorted(p.relative_to(out) for p in out.rglob("*") if ".tmp" not in p.parts) == before


def test_a_client_gone_mid_request_leaves_the_tree_whole(tmp_path: Path, sent) -> None:
    out = tmp_path / "out"
    out.mkdir()
    whole, cut = (renewed_copy(sent["mono16"], syn.uid(700, 6, i)) for i in (1, 2))
    body = b"".join(message([p10(whole), p10(cut)]))
    sent_part = body[: len(body) - len(p10(cut)) // 2]  # the second part cut in half
    with stow_server(out) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(f"POST /studies HTTP/1.1\r\nHost: x\r\nContent-Type: {CONTENT_TYPE}"
                         f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + sent_part)
            time.sleep(0.5)
        client = DICOMwebClient(url)
        wait_until(lambda: any(out.glob(f"studies/*/series/*/instances/{whole.SOPInstanceUID}")))
        assert client.retrieve_instance_metadata(whole.StudyInstanceUID, whole.SeriesInstanceUID,
                                                 whole.SOPInstanceUID)
        assert not any(out.glob(f"studies/*/series/*/instances/{cut.SOPInstanceUID}"))
        # and the server takes the next request
        assert client.store_instances([cut]).ReferencedSOPSequence[0].ReferencedSOPInstanceUID \
            == cut.SOPInstanceUID
    assert not (out / ".tmp").exists()  # the staging area goes with the server


def test_part_limit(tmp_path: Path, sent) -> None:
    out = tmp_path / "out"
    out.mkdir()
    one, two = (renewed_copy(sent["mono16"], syn.uid(700, 4, i)) for i in (1, 2))
    with stow_server(out, "--max-parts", "1", "--max-part-size", "1M", "--part10",
                     "--no-gzip") as (url, _):
        response = httpx.post(f"{url}/studies", content=message([p10(one), p10(two)]),
                              headers={"Content-Type": CONTENT_TYPE})
        assert response.status_code == 202
        # converted with the conversion options given to serve
        (folder,) = out.glob(f"studies/*/series/*/instances/{one.SOPInstanceUID}")
        assert (folder / "part10").is_file() and (folder / "metadata").is_file()
        (failed,) = response.json()["00081198"]["Value"]
        assert failed["00081197"]["Value"] == [0xA700]
        big = renewed_copy(sent["mono16"], syn.uid(700, 4, 3))
        big.add_new(0x00091010, "OB", bytes(2 << 20))
        response = httpx.post(f"{url}/studies", content=message([p10(big)]),
                              headers={"Content-Type": CONTENT_TYPE})
        assert response.status_code == 409
        assert response.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xA700]


# -- a large upload: streamed, and never half-visible to readers ---------------------------

def large_series(count: int, study: int = 710, rows: int = 512
                 ) -> Iterator[tuple[Dataset, bytes]]:
    """`count` CT slices of rows x rows 16-bit pixels, each made as it is sent."""
    pixels = os.urandom(rows * rows * 2)
    for i in range(1, count + 1):
        ds = syn.base_dataset(syn.uid(study), syn.uid(study, 1), syn.uid(study, 1, i),
                              instance_number=i)
        ds.Rows = ds.Columns = rows
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = pixels
        ds["PixelData"].VR = "OW"
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        yield ds, p10(ds)


def rss_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(field)


def test_a_large_upload_streams_and_readers_never_see_half_an_instance(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    count = 200  # 200 x 512 KiB: a 100 MiB body
    with stow_server(out) as (url, process):
        # warm up (imports, first conversion) before the baseline
        _, data = next(large_series(1, study=711))
        assert httpx.post(f"{url}/studies", content=message([data]),
                          headers={"Content-Type": CONTENT_TYPE}).status_code == 200
        baseline = rss_kib(process.pid, "VmRSS")
        sops = [syn.uid(710, 1, i) for i in range(1, count + 1)]
        study, series = syn.uid(710), syn.uid(710, 1)
        seen: set[str] = set()
        problems: list[str] = []
        done = threading.Event()
        sweeps = [0]  # the reader's passes over the instances so far

        def read_while_writing() -> None:
            with httpx.Client(base_url=url) as client:
                while not done.is_set():
                    sweeps[0] += 1
                    for sop in sops:
                        instance = f"/studies/{study}/series/{series}/instances/{sop}"
                        if client.get(instance + "/metadata").status_code != 200:
                            continue
                        frame = client.get(instance + "/frames/1")
                        if frame.status_code != 200 or len(frame.content) < 512 * 512 * 2:
                            problems.append(f"{sop}: metadata without its frame")
                        seen.add(sop)
                    listed = client.get(f"/studies/{study}/series/{series}/metadata")
                    if listed.status_code == 200:
                        for item in listed.json():
                            sop = item["00080018"]["Value"][0]
                            if client.get(f"/studies/{study}/series/{series}/instances/{sop}"
                                          "/frames/1").status_code != 200:
                                problems.append(f"{sop}: in the series metadata, no frame")

        def paced(parts: Iterator[bytes]) -> Iterator[bytes]:
            """Every 40 parts the upload waits for a whole pass of the reader, so it
            reads while instances arrive however the threads are scheduled."""
            for number, part in enumerate(parts, 1):
                yield part
                if number % 40 == 0:
                    started, deadline = sweeps[0], time.monotonic() + 30
                    while sweeps[0] < started + 2 and time.monotonic() < deadline:
                        time.sleep(0.01)

        reader = threading.Thread(target=read_while_writing)
        reader.start()
        try:
            response = httpx.post(f"{url}/studies", timeout=300,
                                  content=(chunk for chunk in message(
                                      paced(data for _, data in large_series(count)))),
                                  headers={"Content-Type": CONTENT_TYPE})
            seen_while_posting = len(seen)
        finally:
            done.set()
            reader.join()
        assert response.status_code == 200, response.text
        assert len(response.json()["00081199"]["Value"]) == count
        grown = rss_kib(process.pid, "VmHWM") - baseline
        assert grown < 40 * 1024, f"server RSS grew by {grown} KiB for a 100 MiB body"
        assert not problems, problems[:5]
        assert seen_while_posting > 10  # the reader did run while instances arrived


# -- the body reader on its own: RFC 2046 framing ------------------------------------------

def events(body: bytes, boundary: str, step: int) -> list[tuple[dict[str, str], bytes]]:
    reader = MultipartReader(boundary)
    parts: list[tuple[dict[str, str], bytes]] = []
    for start in range(0, len(body), step):
        for event in reader.feed(body[start:start + step]):
            if isinstance(event, PartStart):
                parts.append((event.headers, b""))
            elif isinstance(event, PartData):
                parts[-1] = (parts[-1][0], parts[-1][1] + event.data)
            else:
                assert isinstance(event, PartEnd)
    reader.finish()
    return parts


@pytest.mark.parametrize("step", [1, 3, 7, 64, 10_000])
def test_reader_preamble_padding_epilogue_and_chunk_edges(step: int) -> None:
    body = (b"a preamble\r\n--xyz \t\r\nContent-Type: application/dicom\r\n\r\nfirst\r\n--xy"
            b"\r\n--xyz\r\n\r\nsecond with no headers\r\n--xyz--  \r\nthe epilogue --xyz\r\n")
    parts = events(body, "xyz", step)
    assert parts == [({"content-type": "application/dicom"}, b"first\r\n--xy"),
                     ({}, b"second with no headers")]
    # the body may start with the delimiter itself (no CRLF before it)
    assert events(b"--xyz\r\n\r\nonly\r\n--xyz--", "xyz", step) == [({}, b"only")]


def test_reader_refuses_broken_framing() -> None:
    with pytest.raises(BadMultipart, match="padding"):
        events(b"--xyz junk\r\n\r\nx\r\n--xyz--", "xyz", 100)
    with pytest.raises(BadMultipart, match="closing boundary"):
        events(b"no delimiter at all", "xyz", 100)
    with pytest.raises(BadMultipart, match="inside a part"):
        events(b"--xyz\r\n\r\ncut short", "xyz", 100)
    with pytest.raises(BadMultipart, match="headers longer"):
        events(b"--xyz\r\nX: " + b"a" * 20_000, "xyz", 1000)
    with pytest.raises(BadMultipart, match="malformed part header"):
        events(b"--xyz\r\nno colon here\r\n\r\nx\r\n--xyz--", "xyz", 100)


def test_boundary_parameter() -> None:
    quoted = 'multipart/related; type="application/dicom"; boundary="a:b c=d?"'
    assert multipart_boundary(quoted, "application/dicom") == "a:b c=d?"
    assert multipart_boundary("Multipart/Related; BOUNDARY=abc", "application/dicom") == "abc"
    with pytest.raises(BadMultipart):
        multipart_boundary('multipart/related; boundary="ends in space "', "application/dicom")
    with pytest.raises(UnsupportedType):
        multipart_boundary("multipart/mixed; boundary=abc", "application/dicom")
