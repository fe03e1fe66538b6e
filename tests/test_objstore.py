"""`dcmweb convert -d s3://bucket/prefix` against a real S3-compatible HTTP server on
127.0.0.1 (moto's ThreadedMotoServer): the tree is read back straight from the bucket URL,
as a static website would serve it (public-read policy), with dicomweb-client; the
headers are checked per object type; a re-run uploads nothing."""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from dcmweb_static import synthetic as syn
from dcmweb_static.encode.multipart import BOUNDARY

from . import corpus
from .reference import reference_frames
from .s3server import cli_convert, s3_server

# found, not imported: moto, boto3 and s3fs run in the server and CLI processes only
for _module in ("s3fs", "moto", "boto3"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"{_module} is not installed (pip install -e '.[test]')",
                    allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "bkt"
NAMES = ("mono16", "jpegls_lossless", "jpeg2000", "rle", "ct_rich")
S3_XML = "{http://s3.amazonaws.com/doc/2006-03-01/}"
MEDIA = {"1.2.840.10008.1.2.4.80": "image/jls", "1.2.840.10008.1.2.4.90": "image/jp2",
         "1.2.840.10008.1.2.5": "image/dicom-rle"}


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 (tests/s3server.py) with a public-read bucket;
    yields its endpoint."""
    with s3_server(BUCKET) as endpoint:
        yield endpoint


#: the bucket tree's options: a re-run with the same ones must upload nothing
OPTIONS = ("--cache-control", "public, max-age=3600", "--part10", "--thumbnails")


@pytest.fixture(scope="module")
def bucket_tree(s3: str, tmp_path_factory: pytest.TempPathFactory
                ) -> tuple[str, dict[str, Path], dict]:
    base = tmp_path_factory.mktemp("s3tree")
    files = corpus.build(base / "corpus")
    chosen = {}
    for i, name in enumerate(NAMES):
        ds = pydicom.dcmread(files[name])
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = syn.uid(700, 1, i + 1)
        ds.save_as(base / f"{name}.dcm")  # keeps the transfer syntax
        chosen[name] = base / f"{name}.dcm"
    ds = pydicom.dcmread(files["ct_rich"])  # public bulk data too
    ds.add_new(0x00420011, "OB", bytes(range(256)) * 600)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = syn.uid(700, 1, 9)
    chosen["with_bulk"] = syn.save(ds, base / "with_bulk.dcm")
    report = cli_convert(list(chosen.values()), f"s3://{BUCKET}/dw", s3, base, *OPTIONS)
    assert report["counts"]["converted"] == len(chosen)
    return f"{s3}/{BUCKET}/dw", chosen, report


def uids(path: Path) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def test_qido_and_metadata_from_the_bucket_url(bucket_tree) -> None:
    base, files, _ = bucket_tree
    client = DICOMwebClient(base)
    studies = {s["0020000D"]["Value"][0] for s in client.search_for_studies()}
    assert {uids(p)[0] for p in files.values()} <= studies
    st, se, sop = uids(files["ct_rich"])
    assert se in {s["0020000E"]["Value"][0] for s in client.search_for_series(st)}
    assert sop in {i["00080018"]["Value"][0] for i in client.search_for_instances(st, se)}
    instance = client.retrieve_instance_metadata(st, se, sop)
    assert instance["00080018"]["Value"] == [sop]
    assert sop in {i["00080018"]["Value"][0] for i in client.retrieve_series_metadata(st, se)}
    assert len(client.retrieve_study_metadata(st)) >= 1


@pytest.mark.parametrize("name", ["mono16", "jpegls_lossless", "jpeg2000", "rle"])
def test_frames_from_the_bucket_equal_the_source(bucket_tree, name: str) -> None:
    base, files, _ = bucket_tree
    client = DICOMwebClient(base)
    st, se, sop = uids(files[name])
    source = pydicom.dcmread(files[name])
    expected = reference_frames(source)
    ts = str(source.file_meta.TransferSyntaxUID)
    media = MEDIA.get(ts, "image/jpeg") if source.file_meta.TransferSyntaxUID.is_compressed \
        else "application/octet-stream"
    for number in range(1, len(expected) + 1):
        (frame,) = client.retrieve_instance_frames(st, se, sop, frame_numbers=[number],
                                                   media_types=((media, ts),))
        assert frame == expected[number - 1]


def test_bulkdata_uri_resolves_in_the_bucket(bucket_tree) -> None:
    base, files, _ = bucket_tree
    client = DICOMwebClient(base)
    st, se, sop = uids(files["with_bulk"])
    instance = client.retrieve_instance_metadata(st, se, sop)
    url = f"{base}/studies/{st}/series/{se}/instances/{sop}/" + \
        instance["00420011"]["BulkDataURI"].split("?")[0]
    assert client.retrieve_bulkdata(url) == [bytes(range(256)) * 600]


def test_headers_per_object_type(bucket_tree) -> None:
    base, files, _ = bucket_tree
    st, se, sop = uids(files["jpegls_lossless"])
    instance = f"{base}/studies/{st}/series/{se}/instances/{sop}"
    for url in (f"{base}/studies", f"{base}/studies/{st}/series",
                f"{base}/studies/{st}/series/{se}/instances", f"{base}/studies/{st}/metadata",
                f"{base}/studies/{st}/series/{se}/metadata", f"{instance}/metadata"):
        response = httpx.get(url, headers={"Accept-Encoding": "gzip"})
        assert response.status_code == 200, url
        assert response.headers["content-type"] == "application/dicom+json", url
        assert response.headers["content-encoding"] == "gzip", url
        assert response.headers["cache-control"] == "public, max-age=3600", url
        assert isinstance(json.loads(response.content), list)  # httpx undoes the gzip
    frame = httpx.get(f"{instance}/frames/1")
    assert frame.headers["content-type"] == (
        f'multipart/related; type="image/jls"; transfer-syntax=1.2.840.10008.1.2.4.80; '
        f"boundary={BOUNDARY}")
    assert "content-encoding" not in frame.headers
    st, se, sop = uids(files["mono16"])
    native = httpx.get(f"{base}/studies/{st}/series/{se}/instances/{sop}/frames/1")
    assert native.headers["content-type"].startswith(
        'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.')
    st, se, sop = uids(files["with_bulk"])
    bulk_name = "00420011"
    bulk = httpx.get(f"{base}/studies/{st}/series/{se}/instances/{sop}/bulkdata/{bulk_name}")
    assert bulk.status_code == 200
    assert bulk.headers["content-type"] == (
        f'multipart/related; type="application/octet-stream"; boundary={BOUNDARY}')
    # the instance URL holds its P10 (--part10); thumbnails at three levels (--thumbnails)
    st, se, sop = uids(files["jpegls_lossless"])
    retrieved = httpx.get(instance)
    assert retrieved.status_code == 200 and retrieved.headers["content-type"] == (
        f'multipart/related; type="application/dicom"; '
        f"transfer-syntax=1.2.840.10008.1.2.4.80; boundary={BOUNDARY}")
    assert files["jpegls_lossless"].read_bytes() in retrieved.content
    for level in (f"{base}/studies/{st}", f"{base}/studies/{st}/series/{se}", instance):
        thumbnail = httpx.get(f"{level}/thumbnail")
        assert thumbnail.status_code == 200, level
        assert thumbnail.headers["content-type"] == "image/jpeg", level
        assert thumbnail.content[:3] == b"\xff\xd8\xff"
    # no folder-layout name in the bucket: the keys are the URLs (the study record of
    # `studies?StudyInstanceUID=` is the one `index.json`)
    keys = _keys(base.rsplit("/", 2)[0])
    assert f"dw/studies/{st}/series/{se}/instances/{sop}/metadata" in keys
    assert not [k for k in keys if k.endswith(".gz")]
    assert not [k for k in keys if k.endswith("index.json")
                and not re.fullmatch(r"dw/studies/[0-9.]+/index\.json", k)]


def _keys(endpoint: str) -> dict[str, str]:
    """Every key below `dw/` and its ETag (moto answers the listing without signature)."""
    found: dict[str, str] = {}
    token = ""
    while True:
        listed = ElementTree.fromstring(httpx.get(
            f"{endpoint}/{BUCKET}", params={"list-type": "2", "prefix": "dw/",
                                            **({"continuation-token": token} if token else {})}
        ).content)
        for item in listed.iter(f"{S3_XML}Contents"):
            found[item.findtext(f"{S3_XML}Key")] = item.findtext(f"{S3_XML}ETag")
        token = listed.findtext(f"{S3_XML}NextContinuationToken") or ""
        if not token:
            return found


def test_a_rerun_uploads_nothing(bucket_tree, s3: str, tmp_path: Path) -> None:
    base, files, first = bucket_tree
    assert first["objects"]["written"] > 0
    before = _keys(s3)
    again = cli_convert(list(files.values()), f"s3://{BUCKET}/dw", s3, tmp_path, *OPTIONS)
    assert again["objects"] == {"written": 0, "unchanged": again["objects"]["unchanged"],
                                "removed": 0}
    assert again["objects"]["unchanged"] >= len(before) - 2
    assert _keys(s3) == before
    st, se, sop = uids(files["ct_rich"])
    with httpx.stream("GET", f"{base}/studies/{st}/series/{se}/instances/{sop}/metadata"
                      ) as stored:  # the stored bytes: gzip
        packed = b"".join(stored.iter_raw())
    assert json.loads(gzip.decompress(packed))[0]["00080018"]["Value"] == [sop]


def test_a_url_is_never_a_local_folder(tmp_path: Path) -> None:
    """`-d s3:/...` typos and unsupported schemes are usage errors, and nothing named
    `s3:` appears in the working folder."""
    sample = Path(__file__).resolve().parent.parent / "samples" / "implicit.dcm"
    for target, reason in (("s3://bkt/../x", "cannot be a bucket or prefix component"),
                           ("ftp://host/x", "cannot publish into ftp://")):
        done = subprocess.run([sys.executable, "-m", "dcmweb_static.cli", "convert",
                               str(sample), "-d", target, "-q"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and reason in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_inputs_from_the_bucket_convert_like_local_files(s3: str, tmp_path: Path) -> None:
    """`dcmweb convert s3://bkt/in/ -d DIR`: the objects below the prefix are listed and
    read in ranges by the workers; the tree equals the one converted from the files."""
    samples = Path(__file__).resolve().parent.parent / "samples"
    files = sorted(p for p in samples.rglob("*.dcm"))
    for path in files:  # moto takes an unsigned PUT
        done = httpx.put(f"{s3}/{BUCKET}/in/{path.relative_to(samples)}",
                         content=path.read_bytes())
        assert done.status_code == 200
    remote = cli_convert([f"s3://{BUCKET}/in/"], str(tmp_path / "remote"), s3, tmp_path)
    local = cli_convert(files, str(tmp_path / "local"), s3, tmp_path)
    assert remote["counts"] == local["counts"] and remote["counts"]["converted"] == len(files)
    assert {r["path"] for r in remote["files"]} == {
        f"s3://{BUCKET}/in/{p.relative_to(samples)}" for p in files}
    assert {r["sha256"] for r in remote["files"]} == {r["sha256"] for r in local["files"]}
    remote_tree, local_tree = _tree(tmp_path / "remote"), _tree(tmp_path / "local")
    assert remote_tree.keys() == local_tree.keys()
    for name, data in remote_tree.items():  # the info record names its source
        if name.endswith("/info"):
            assert json.loads(data)["source"]["path"].startswith(f"s3://{BUCKET}/in/")
            data = data.replace(b"s3://bkt/in", str(samples).encode())
        assert data == local_tree[name], name


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".tmp" not in p.parts and p.name != ".dcmweb.lock"}
