"""How each object store keeps an object's headers and our content hash, and copies an
object server-side with them: S3 (s3fs), Google Cloud Storage (gcsfs), Azure Blob Storage
(adlfs). `ObjectStore` is the same for all three; only the operations here differ.

- S3: `ContentType`/`ContentEncoding`/`CacheControl` and user metadata
  (`x-amz-meta-dcmweb-sha256`); CopyObject keeps them.
- GCS: the object resource's `contentType`, `contentEncoding`, `cacheControl` and custom
  `metadata` (`x-goog-meta-dcmweb-sha256`); `rewriteTo` keeps them. GCS serves a gzip
  object decompressed to a client that does not accept gzip ("decompressive
  transcoding"): the store reads with aiohttp's decompression off, so it gets the stored
  bytes (aiohttp asks for gzip).
- Azure: the blob's `ContentSettings` and metadata (`x-ms-meta-dcmweb_sha256`: a metadata
  name is a C# identifier, no `-`); Copy Blob keeps properties and metadata. adlfs's
  `pipe_file` sets its own metadata, so uploads go through the blob client it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import Headers

S3 = ("s3", "s3a")
GCS = ("gs", "gcs")
AZURE = ("az",)  # adlfs's abfs:// (Data Lake) URLs name the account too: not tested
#: protocols whose objects carry Content-Type/Content-Encoding/Cache-Control as we set them
HEADER_PROTOCOLS = (*S3, *GCS, *AZURE)
#: user metadata key of the content hash
HASH_KEY = "dcmweb-sha256"
AZURE_HASH_KEY = "dcmweb_sha256"
#: how a pending Azure copy is polled (same-account copies complete at once)
_COPY_POLL_SECONDS = 0.05
_COPY_TIMEOUT_SECONDS = 600.0


def default_options(protocol: str, options: dict[str, Any]) -> dict[str, Any]:
    """The fsspec options a protocol needs for a servable tree (the user's win)."""
    if protocol in GCS:
        session = dict(options.get("session_kwargs") or {})
        session.setdefault("auto_decompress", False)
        return {**options, "session_kwargs": session}
    return options


def _content_type(headers: Headers) -> str:
    return headers.content_type or "application/octet-stream"


def _run(fs: Any, make: Any) -> Any:
    from fsspec.asyn import sync

    return sync(fs.loop, make)


def upload(fs: Any, protocol: str, path: str, data: bytes, headers: Headers,
           cache_control: str | None, digest: str) -> None:
    """Upload `data` to `path` with its headers and `digest` as metadata (one request)."""
    if protocol in S3:
        extra: dict[str, Any] = {"Metadata": {HASH_KEY: digest},
                                 "ContentType": _content_type(headers)}
        if headers.content_encoding:
            extra["ContentEncoding"] = headers.content_encoding
        if cache_control:
            extra["CacheControl"] = cache_control
        fs.pipe_file(path, data, **extra)
    elif protocol in GCS:
        resource: dict[str, Any] = {"contentType": _content_type(headers),
                                    "metadata": {HASH_KEY: digest}}
        if headers.content_encoding:
            resource["contentEncoding"] = headers.content_encoding
        if cache_control:
            resource["cacheControl"] = cache_control
        _run(fs, lambda: _gcs_upload(fs, path, data, resource))
    elif protocol in AZURE:
        from azure.storage.blob import ContentSettings

        container, blob, _ = fs.split_path(path)
        settings = ContentSettings(content_type=_content_type(headers),
                                   content_encoding=headers.content_encoding,
                                   cache_control=cache_control)

        async def put() -> None:
            async with fs.service_client.get_blob_client(container, blob) as client:
                await client.upload_blob(data, overwrite=True, content_settings=settings,
                                         metadata={"is_directory": "false",
                                                   AZURE_HASH_KEY: digest})
        _run(fs, put)
        fs.invalidate_cache(fs._parent(path))
    else:
        fs.pipe_file(path, data)


def read(fs: Any, protocol: str, path: str) -> bytes:
    """The stored bytes of `path` (FileNotFoundError if none), gzip left as it is: the
    Azure SDK decompresses a gzip blob unless told not to (adlfs's `cat_file` cannot)."""
    if protocol not in AZURE:
        return fs.cat_file(path)
    from azure.core.exceptions import ResourceNotFoundError

    container, blob, _ = fs.split_path(path)

    async def get() -> bytes:
        async with fs.service_client.get_blob_client(container, blob) as client:
            try:
                stream = await client.download_blob(decompress=False)
            except ResourceNotFoundError as exc:
                raise FileNotFoundError(path) from exc
            return await stream.readall()
    return _run(fs, get)


def listed(fs: Any, protocol: str, base: str) -> list[str]:
    """The full names of the objects and prefixes one level below `base` (ends in `/`):
    adlfs's `ls` of a prefix that is also a blob's name (`studies/`) lists the blob."""
    if protocol not in AZURE:
        return fs.ls(base, detail=False, refresh=True)
    container, prefix, _ = fs.split_path(base.rstrip("/") + "/")

    async def walk() -> list[str]:
        async with fs.service_client.get_container_client(container) as client:
            return [f"{container}/{item.name}" async for item in
                    client.walk_blobs(name_starts_with=prefix, delimiter="/")]
    return _run(fs, walk)


def stored_hash(fs: Any, protocol: str, path: str) -> str | None:
    """The hash kept with the stored object at `path` (FileNotFoundError if none): asked
    of the server, not of fsspec's listing cache."""
    if protocol in S3:
        return fs.metadata(path).get(HASH_KEY)
    if protocol in GCS:
        fs.invalidate_cache(path)
        return (fs.info(path).get("metadata") or {}).get(HASH_KEY)
    if protocol in AZURE:  # the blob's properties (HEAD): adlfs's `info` takes a key that
        # is also a prefix (`studies`, `studies/<uid>/series`) for a folder without metadata
        return _run(fs, lambda: _azure_hash(fs, path))
    raise ValueError(f"{protocol}:// keeps no metadata")


async def _azure_hash(fs: Any, path: str) -> str | None:
    from azure.core.exceptions import ResourceNotFoundError

    container, blob, _ = fs.split_path(path)
    async with fs.service_client.get_blob_client(container, blob) as client:
        try:
            properties = await client.get_blob_properties()
        except ResourceNotFoundError as exc:
            raise FileNotFoundError(path) from exc
    return (properties.metadata or {}).get(AZURE_HASH_KEY)


def copy_all(fs: Any, protocol: str, pairs: Sequence[tuple[str, str]]) -> None:
    """Server-side copies (source, target), all at once, keeping headers and metadata."""
    import asyncio  # here: asyncio's import is 20 ms of every `dcmweb` start otherwise

    if protocol in S3:  # one request each (s3fs's `copy` asks for the size first)
        async def copy_s3() -> None:
            await asyncio.gather(*(fs._copy_basic(a, b) for a, b in pairs))
        _run(fs, copy_s3)
    elif protocol in GCS:  # rewriteTo, repeated by gcsfs until done
        async def copy_gcs() -> None:
            await asyncio.gather(*(fs._cp_file(a, b) for a, b in pairs))
        _run(fs, copy_gcs)
    elif protocol in AZURE:
        async def copy_azure() -> None:
            await asyncio.gather(*(_copy_blob(fs, a, b) for a, b in pairs))
        _run(fs, copy_azure)
        for _, target in pairs:
            fs.invalidate_cache(fs._parent(target))
    else:
        for source, target in pairs:
            fs.copy(source, target)


#: the multipart upload's boundary: never in the JSON part; the media part is not parsed
_GCS_BOUNDARY = "dcmweb-upload-7d2f0c"


async def _gcs_upload(fs: Any, path: str, data: bytes, resource: dict[str, Any]) -> None:
    """One multipart upload (JSON API) whose object resource carries every header.
    gcsfs's `pipe_file` sends the content type as the media part's Content-Type, a
    `multipart/related` type for frames, which an emulator parses as nested parts; the
    resource's `contentType` is what GCS keeps, so the media part is plain octets."""
    from urllib.parse import quote

    import orjson

    bucket, key, _ = fs.split_path(path)
    head = (f"--{_GCS_BOUNDARY}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
            ).encode() + orjson.dumps({"name": key, **resource}) + (
        f"\r\n--{_GCS_BOUNDARY}\r\nContent-Type: application/octet-stream\r\n\r\n"
    ).encode()
    await fs._call("POST", f"{fs._location}/upload/storage/v1/b/{quote(bucket)}/o",
                   uploadType="multipart", json_out=True,
                   headers={"Content-Type": f'multipart/related; boundary="{_GCS_BOUNDARY}"'},
                   data=head + data + f"\r\n--{_GCS_BOUNDARY}--".encode())
    fs.invalidate_cache(fs._parent(path))


async def _copy_blob(fs: Any, source: str, target: str) -> None:
    """Copy Blob within the account, waited for: a reader must find the target complete."""
    import asyncio

    from azure.core.exceptions import ResourceNotFoundError

    from_container, from_blob, _ = fs.split_path(source)
    to_container, to_blob, _ = fs.split_path(target)
    origin = fs.service_client.get_blob_client(from_container, from_blob)
    async with fs.service_client.get_blob_client(to_container, to_blob) as client:
        try:
            started = await client.start_copy_from_url(origin.url)
        except ResourceNotFoundError as exc:
            raise FileNotFoundError(source) from exc
        status = started.get("copy_status")
        deadline = asyncio.get_running_loop().time() + _COPY_TIMEOUT_SECONDS
        while status == "pending" and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(_COPY_POLL_SECONDS)
            status = (await client.get_blob_properties()).copy.status
        if status != "success":
            raise OSError(f"copy of {source} to {target} ended {status}")
