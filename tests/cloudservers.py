"""Google Cloud Storage and Azure Blob Storage emulators on 127.0.0.1 for the tests, each in
a process of its own, and what a static website reads from them: the object's stored bytes
and headers, the listing.

- GCS: `gcp-storage-emulator` (PyPI), in memory, its bucket made at start. gcsfs finds it
  through STORAGE_EMULATOR_HOST (anonymous). Objects are read through the JSON API (the
  object resource: `contentType`, `contentEncoding`, `cacheControl`, `metadata`) and
  `alt=media` (the stored bytes): the emulator's media download sends Content-Type and
  `x-goog-meta-*` but not Content-Encoding or Cache-Control (GCS itself sends them).
- Azure: Azurite (npm package `azurite`, fetched once into the test cache with npm, like
  OHIF's app in tests/ohif.py), the well-known development account; its container made
  with public read access (blobs and listing), so objects are read as a website reads them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote
from xml.etree import ElementTree

import httpx

from .ohif import CACHE
from .servers import free_port, wait_for_port

AZURITE_VERSION = "3.37.0"
AZURE_ACCOUNT = "devstoreaccount1"
#: Azurite's documented development account key (public, not a secret)
AZURE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
             "KBHBeksoGMGw==")


@contextmanager
def _process(command: list[str], port: int, **kwargs) -> Iterator[None]:
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              **kwargs)
    try:
        wait_for_port(port, timeout=60)
        yield
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@contextmanager
def gcs_server(bucket: str) -> Iterator[str]:
    """gcp-storage-emulator with `bucket`; yields its endpoint `http://127.0.0.1:PORT`."""
    port = free_port()
    command = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
               "--port", str(port), "--in-memory", "--default-bucket", bucket, "-q"]
    with _process(command, port):
        yield f"http://127.0.0.1:{port}"


def gcs_env(endpoint: str) -> dict[str, str]:
    """The environment that points gcsfs at the emulator (anonymous: `token=anon`), with
    gcsfs's bucket-type lookup off (it asks GCS's gRPC control API, which the emulator
    does not have, and waits a minute for it)."""
    return {"STORAGE_EMULATOR_HOST": endpoint, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}


def gcs_objects(endpoint: str, bucket: str, prefix: str) -> dict[str, tuple[bytes, dict]]:
    """Every object below `prefix`: key -> (stored bytes, headers as GCS keeps them)."""
    api = f"{endpoint}/storage/v1/b/{bucket}/o"
    found: dict[str, tuple[bytes, dict]] = {}
    token = ""
    while True:
        listed = httpx.get(api, params={"prefix": prefix, **(
            {"pageToken": token} if token else {})}).json()
        for item in listed.get("items", []):
            with httpx.stream("GET", f"{api}/{quote(item['name'], safe='')}",
                              params={"alt": "media"}, headers={"Accept-Encoding": "gzip"}
                              ) as media:
                assert media.status_code == 200, item["name"]
                data = b"".join(media.iter_raw())
            found[item["name"]] = (data, {
                "content-type": item.get("contentType"),
                "content-encoding": item.get("contentEncoding"),
                "cache-control": item.get("cacheControl"),
                "hash": (item.get("metadata") or {}).get("dcmweb-sha256"),
                "etag": item.get("generation")})
        token = listed.get("nextPageToken") or ""
        if not token:
            return found


def azurite_bin() -> Path:
    """`azurite-blob` of `npm install azurite@VERSION`, installed once into the cache."""
    target = CACHE / f"azurite-{AZURITE_VERSION}"
    binary = target / "node_modules" / ".bin" / "azurite-blob"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm")
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix",
                    str(target), f"azurite@{AZURITE_VERSION}"], check=True,
                   capture_output=True, timeout=600)
    return binary


def azure_connection(endpoint: str) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={AZURE_ACCOUNT};"
            f"AccountKey={AZURE_KEY};BlobEndpoint={endpoint}/{AZURE_ACCOUNT};")


def azure_env(endpoint: str) -> dict[str, str]:
    """The environment that points adlfs at Azurite (adlfs reads the connection string)."""
    return {"AZURE_STORAGE_CONNECTION_STRING": azure_connection(endpoint)}


@contextmanager
def azurite_server(container: str) -> Iterator[str]:
    """Azurite's blob service with a public `container`; yields `http://127.0.0.1:PORT`."""
    binary = azurite_bin()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="azurite-") as data:
        command = [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port),
                   "--location", data, "--skipApiVersionCheck", "--disableTelemetry",
                   "--silent"]
        with _process(command, port, cwd=data):  # its debug log and database go there
            endpoint = f"http://127.0.0.1:{port}"
            # the container, made with the SDK in a process of its own (as tests/s3server.py
            # keeps boto3 out of the pytest process that forks converter workers)
            made = subprocess.run([sys.executable, "-c", (
                "import sys\n"
                "from azure.storage.blob import BlobServiceClient\n"
                "BlobServiceClient.from_connection_string(sys.argv[1])"
                ".create_container(sys.argv[2], public_access='container')\n"),
                azure_connection(endpoint), container], capture_output=True, text=True,
                timeout=60)
            assert made.returncode == 0, made.stderr
            yield endpoint


def azure_objects(endpoint: str, container: str, prefix: str
                  ) -> dict[str, tuple[bytes, dict]]:
    """Every blob below `prefix` read anonymously (public container): key -> (stored
    bytes, response headers)."""
    base = f"{endpoint}/{AZURE_ACCOUNT}/{container}"
    found: dict[str, tuple[bytes, dict]] = {}
    marker = ""
    while True:
        listed = ElementTree.fromstring(httpx.get(base, params={
            "restype": "container", "comp": "list", "prefix": prefix,
            **({"marker": marker} if marker else {})}).content)
        for name in (n.text for n in listed.iter("Name")):
            assert name is not None
            with httpx.stream("GET", f"{base}/{quote(name, safe='/')}",
                              headers={"Accept-Encoding": "gzip"}) as got:
                assert got.status_code == 200, name
                data = b"".join(got.iter_raw())
                found[name] = (data, {
                    "content-type": got.headers.get("content-type"),
                    "content-encoding": got.headers.get("content-encoding"),
                    "cache-control": got.headers.get("cache-control"),
                    "hash": got.headers.get("x-ms-meta-dcmweb_sha256"),
                    "etag": got.headers.get("etag")})
        marker = listed.findtext("NextMarker") or ""
        if not marker:
            return found


def copy_check(url: str, options: dict, cache_control: str, read) -> dict:
    """In this process: stage an object below the session's `.tmp/` prefix, copy it
    server-side to `copied/metadata` (what a Dask commit does) and read it back with
    `read` (the website view), delete it, then aggregate every study of the tree."""
    import gzip

    from dcmweb_static.index.aggregate import aggregate, all_studies
    from dcmweb_static.plugins.manager import get_plugin_manager
    from dcmweb_static.store.base import Headers
    from dcmweb_static.store.objects import ObjectStore

    store = ObjectStore(url, options, cache_control)
    with store.session():
        staged = f"{store.run_prefix}/copy-test"
        store.put(staged, gzip.compress(b"[]", mtime=0),
                  Headers("application/dicom+json", "gzip"))
        store._copy([(store.path(staged), store.path("copied/metadata"))])
        data, headers = read()["copied/metadata"]
    left = store.keys_below(".tmp")
    store.delete("copied/metadata")
    studies = all_studies(store)
    aggregated = aggregate(store, studies, get_plugin_manager(), gzip=True)
    return {"copied": [data.hex(), headers], "staged_left": left,
            "removed": store.counts.removed, "studies": len(studies),
            "aggregated": aggregated, "written": store.counts.written}


def _main(command: str, url: str, options: str, cache_control: str) -> None:
    import json
    import os

    assert command == "copy-check"
    name, prefix = url.split("://", 1)[1].split("/", 1)
    if url.startswith("gs://"):
        endpoint = os.environ["STORAGE_EMULATOR_HOST"]

        def read() -> dict:
            return {k[len(prefix) + 1:]: v for k, v in
                    gcs_objects(endpoint, name, prefix + "/").items()}
    else:
        blob = os.environ["AZURE_STORAGE_CONNECTION_STRING"].split("BlobEndpoint=", 1)[1]
        endpoint = blob.split(f"/{AZURE_ACCOUNT}", 1)[0]

        def read() -> dict:
            return {k[len(prefix) + 1:]: v for k, v in
                    azure_objects(endpoint, name, prefix + "/").items()}
    print(json.dumps(copy_check(url, json.loads(options), cache_control, read)))


if __name__ == "__main__":
    _main(*sys.argv[1:5])
