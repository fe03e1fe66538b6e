"""`dcmweb convert -d gs://bucket/prefix` and `-d az://container/prefix` against real
emulators on 127.0.0.1 (tests/cloudservers.py: gcp-storage-emulator, Azurite): every
object's key and bytes equal those of the same conversion into fsspec's memory:// (the
object layout is one for all object stores), its headers and content hash are the ones
set, a re-run writes nothing, the Dask path's server-side copies keep the headers, and
the study/series aggregation (`dcmweb index`) runs on the bucket."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dcmweb_static.run.batch import Converter
from dcmweb_static.run.options import ConvertOptions
from dcmweb_static.store.base import Headers
from dcmweb_static.store.objects import ObjectStore, content_hash

from . import cloudservers

for _module in ("gcsfs", "adlfs", "gcp_storage_emulator"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"{_module} is not installed (pip install -e '.[test]')",
                    allow_module_level=True)

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
FILES = [SAMPLES / "ct" / "CT00001.dcm", SAMPLES / "ct" / "CT00002.dcm",
         SAMPLES / "implicit.dcm"]
CACHE_CONTROL = "public, max-age=3600"
NAME = "dwtest"  # bucket / container


class Cloud:
    """One emulator: the URL to convert into, the environment that reaches it, and the
    objects as a website reads them."""

    def __init__(self, kind: str, endpoint: str) -> None:
        self.kind, self.endpoint = kind, endpoint
        if kind == "gcs":
            self.url, self.env = f"gs://{NAME}/dw", cloudservers.gcs_env(endpoint)
            self.options = ("--storage-option", "token=anon")
        else:
            self.url, self.env = f"az://{NAME}/dw", cloudservers.azure_env(endpoint)
            self.options = ()

    def objects(self) -> dict[str, tuple[bytes, dict]]:
        """key below dw/ -> (stored bytes, headers)."""
        read = cloudservers.gcs_objects if self.kind == "gcs" else cloudservers.azure_objects
        return {key[len("dw/"):]: value for key, value in
                read(self.endpoint, NAME, "dw/").items()}

    @property
    def store_options(self) -> dict:
        return {"token": "anon"} if self.kind == "gcs" else {}

    def convert(self, tmp: Path) -> dict:
        report = tmp / f"report-{len(list(tmp.glob('report-*')))}.json"
        done = subprocess.run([sys.executable, "-m", "dcmweb_static.cli", "convert",
                               *map(str, FILES), "-d", self.url, "-j", "2", "-q",
                               "--cache-control", CACHE_CONTROL, *self.options,
                               "--report", str(report)],
                              env={**os.environ, **self.env}, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(report.read_text())


@pytest.fixture(scope="module", params=["gcs", "azure"])
def cloud(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Cloud, dict]]:
    """The emulator with the samples converted into it; the first run's report."""
    if request.param == "gcs":
        server = cloudservers.gcs_server(NAME)
    else:
        try:
            cloudservers.azurite_bin()
        except FileNotFoundError:
            if os.environ.get("CI"):
                pytest.fail("npm is not installed: .ci/run installs it")
            pytest.skip("npm is not installed: cannot fetch azurite")
        server = cloudservers.azurite_server(NAME)
    with server as endpoint:
        target = Cloud(request.param, endpoint)
        yield target, target.convert(tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The same conversion into fsspec's memory:// in this process: key -> bytes."""
    store = ObjectStore(f"memory://ref-{os.getpid()}", cache_control=CACHE_CONTROL)
    options = ConvertOptions(output=tmp_path_factory.mktemp("ref"))
    assert Converter(options, jobs=1, store=store).run(FILES).count("converted") == len(FILES)
    return {key: store.get(key) for key in store.keys_below("")}


def test_objects_equal_the_memory_conversion(cloud, reference) -> None:
    target, report = cloud
    assert report["counts"]["converted"] == len(FILES)
    stored = target.objects()
    assert sorted(stored) == sorted(reference)
    for key, (data, _) in stored.items():
        assert data == reference[key], key


def test_every_object_carries_its_headers_and_hash(cloud) -> None:
    target, _ = cloud
    kinds = set()
    for key, (data, headers) in target.objects().items():
        assert headers["cache-control"] == CACHE_CONTROL, key
        gzipped = data[:2] == b"\x1f\x8b"
        assert headers["content-encoding"] == ("gzip" if gzipped else None), key
        leaf = key.rsplit("/", 1)[-1]
        if leaf in ("studies", "series", "instances", "metadata", "index.json"):
            assert headers["content-type"] == "application/dicom+json", key
            assert gzipped and isinstance(json.loads(gzip.decompress(data)), list | dict)
            kinds.add("json")
        elif "/frames/" in key or "/bulkdata/" in key:
            assert headers["content-type"].startswith('multipart/related; type="'), key
            assert "boundary=" in headers["content-type"], key
            kinds.add("multipart")
        # an object with no type of its own (the info record) is stored as octets
        sent = {content_hash(data, Headers(kind, headers["content-encoding"]), CACHE_CONTROL)
                for kind in {headers["content-type"], None
                             if headers["content-type"] == "application/octet-stream"
                             else headers["content-type"]}}
        assert headers["hash"] in sent, key
    assert kinds == {"json", "multipart"}


def test_a_rerun_writes_nothing(cloud, tmp_path: Path) -> None:
    target, first = cloud
    assert first["objects"]["written"] > 0
    before = {key: headers["etag"] for key, (_, headers) in target.objects().items()}
    again = target.convert(tmp_path)
    assert again["objects"]["written"] == 0 and again["objects"]["removed"] == 0, \
        again["objects"]
    assert {key: headers["etag"] for key, (_, headers) in target.objects().items()} == before


def test_server_side_copies_keep_headers_and_aggregation_runs(cloud) -> None:
    """What the Dask path does: an object staged below `.tmp/` with its headers, then
    copied by the server to its key; and `dcmweb index`'s aggregation over the bucket
    rewrites nothing (it reads the stored gzip back as it was written). Run in a process
    of its own (tests/cloudservers.py `copy-check`): gcsfs, adlfs and the cloud SDKs stay
    out of the pytest process, whose size forked converter workers inherit."""
    target, _ = cloud
    done = subprocess.run([sys.executable, "-m", "tests.cloudservers", "copy-check",
                           target.url, json.dumps(target.store_options), CACHE_CONTROL],
                          cwd=Path(__file__).resolve().parent.parent,
                          env={**os.environ, **target.env}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    checked = json.loads(done.stdout)
    packed = gzip.compress(b"[]", mtime=0)
    data, got = checked["copied"]
    assert bytes.fromhex(data) == packed
    assert (got["content-type"], got["content-encoding"], got["cache-control"]) == (
        "application/dicom+json", "gzip", CACHE_CONTROL)
    assert got["hash"] == content_hash(packed, Headers("application/dicom+json", "gzip"),
                                       CACHE_CONTROL)
    assert checked["staged_left"] == []  # the session removed its prefix
    assert checked["removed"] == 1 and "copied/metadata" not in target.objects()
    assert checked["studies"] >= 1 and checked["aggregated"] == checked["studies"]
    assert checked["written"] == 1  # the staged object only: aggregation rewrote none
