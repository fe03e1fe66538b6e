"""Writing URL-table resources into a store: the stored name for the tree's gzip
setting, gzip done here (reproducibly), the headers a static server needs, and the other
form (`metadata` vs `metadata.gz`) removed so no stale copy is served."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..encode.gzip_stream import gzip_compressor
from ..store import Headers, Store
from . import urls

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
