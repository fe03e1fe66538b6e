"""Writing URL-table resources into a store: the stored name for the tree's gzip
setting, gzip done here (reproducibly), the headers a static server needs, and the other
form (`metadata` vs `metadata.gz`) removed so no stale copy is served."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..encode.gzip_stream import gzip_compressor
from ..encode.multipart import part_media_type, response_content_type
from ..p10.transfer_syntax import OCTET_STREAM
from ..store import Headers, StagedInstance, StagedObject, Store
from . import names, urls

GZIP = "gzip"


def headers_for(resource: urls.Resource, packed: bool, content_type: str | None = None
                ) -> Headers:
    media = content_type or (urls.DICOM_JSON if resource.kind in ("qido", "metadata") else None)
    return Headers(media, GZIP if packed else None)


@contextmanager
def resource_writer(store: Store, key: str, gzip: bool, **values: str) -> Iterator[
        ResourceStream]:
    """Write resource `key` piece by piece (never held whole)."""
    resource = urls.resource(key)
    packed = gzip and resource.gzip
    name = resource.stored_name(store.layout, packed, **values)
    with store.writer(name, headers_for(resource, packed)) as out:
        writer = ResourceStream(out, packed)
        yield writer
        writer.finish()
    _drop_other_form(store, resource, packed, values)


def publish(store: Store, key: str, data: bytes, gzip: bool, **values: str) -> None:
    with resource_writer(store, key, gzip, **values) as out:
        out.write(data)


def publish_rendered(store: Store, key: str, data: bytes, suffix: str, **values: str) -> None:
    """Write a rendered image (a thumbnail) with its content type; in the folder layout
    the same image of the other format is removed, so a server never picks a stale one."""
    resource = urls.resource(key)
    media = urls.RENDERED_TYPES[suffix]
    store.put(resource.stored_name(store.layout, False, ext=suffix, **values), data,
              headers_for(resource, False, media))
    if store.layout == "folder":
        for other in urls.RENDERED_TYPES.keys() - {suffix}:
            store.delete(resource.stored_name("folder", False, ext=other, **values))


def remove_rendered(store: Store, key: str, **values: str) -> None:
    """Remove a rendered image in every format (its source no longer has one)."""
    resource = urls.resource(key)
    if store.layout == "object":
        store.delete(resource.stored_name("object", False, **values))
        return
    for suffix in urls.RENDERED_TYPES:
        store.delete(resource.stored_name("folder", False, ext=suffix, **values))


def _drop_other_form(store: Store, resource: urls.Resource, packed: bool,
                     values: dict[str, str]) -> None:
    if store.layout == "folder" and resource.gzip:
        other = resource.stored_name("folder", not packed, **values)
        store.delete(other)


class ResourceStream:
    """A resource being written: pieces in, gzip applied here when the resource is packed."""

    def __init__(self, out, packed: bool) -> None:
        self.out = out
        self.compressor = gzip_compressor() if packed else None

    def write(self, chunk: bytes) -> None:
        self.out.write(self.compressor.compress(chunk) if self.compressor else chunk)

    def finish(self) -> None:
        if self.compressor:
            self.out.write(self.compressor.flush())


#: upload order of an instance's staged files: payloads first, the info record, the
#: metadata last, so a reader that finds the metadata finds everything it points to
_ORDER = {"frame": 0, "bulkdata": 0, "rendered": 0, "dicom": 0, "qido": 1, "metadata": 3}


def object_plan(staged: StagedInstance, folder: str) -> list[StagedObject]:
    """How an object store publishes `staged` (a folder-layout instance) under `folder`:
    each staged name mapped through the URL table to its object key and headers (frames
    and bulk data: multipart/related with the part's own media type and transfer syntax),
    names that are no DICOMweb resource (`info`, `p10-header`, plugin results) kept as
    they are, in upload order (metadata last)."""
    plan: list[tuple[int, StagedObject]] = []
    for name in staged.files():
        found = urls.match_stored(f"{folder}/{name}")
        if found is None:
            rank = 2 if name == names.INFO else 1
            plan.append((rank, StagedObject(name, f"{folder}/{name}", Headers())))
            continue
        resource, values, packed = found
        content_type = None
        if resource.kind in ("frame", "bulkdata", "dicom"):  # one multipart part each
            with open(f"{staged.path}/{name}", "rb") as handle:
                named = part_media_type(handle.read(512))
            media, syntax = named if named else (OCTET_STREAM, None)
            content_type = response_content_type(media, syntax)
        elif resource.kind == "rendered":
            content_type = urls.RENDERED_TYPES[values["ext"]]
        key = resource.stored_name("object", packed, **values)
        plan.append((_ORDER[resource.kind],
                     StagedObject(name, key, headers_for(resource, packed, content_type))))
    return [item for _, item in sorted(plan, key=lambda pair: pair[0])]
