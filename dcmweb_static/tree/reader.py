"""Reading a tree back through its store: resources by their URL-table name (gzip or
plain), the UIDs present at each level, an instance's DICOM JSON object."""

from __future__ import annotations

import gzip
from typing import Any

from ..encode import dedup, jsonio
from ..p10.uids import InvalidUIDError, check_uid
from ..store import Store
from . import names, urls

Json = dict[str, Any]


class TreeReader:
    """Reads the tree in `store`. Handed to plugin views and the aggregation, so neither
    needs to know where or how the tree is stored."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def resource(self, key: str, **values: str) -> bytes | None:
        """Resource `key` of the URL table, decompressed; None if it is not stored."""
        table = urls.resource(key)
        layout = self.store.layout
        packed = self.store.get(table.stored_name(layout, True, **values)) if table.gzip else None
        if packed is not None:
            return gzip.decompress(packed)
        if layout == "object" and table.gzip:
            return None  # one key in an object store: the packed read was the only one
        return self.store.get(table.stored_name(layout, False, **values))

    def rendered(self, key: str, **values: str) -> tuple[bytes, str] | None:
        """A rendered resource (`urls.RENDERED_TYPES`) and its suffix; None if not stored.
        An object store keeps the content type in the object's headers: read as JPEG
        unless the bytes are PNG's."""
        table = urls.resource(key)
        if self.store.layout == "object":
            data = self.store.get(table.stored_name("object", False, **values))
            if data is None:
                return None
            return data, "png" if data.startswith(b"\x89PNG") else "jpg"
        for suffix in urls.RENDERED_TYPES:
            data = self.store.get(table.stored_name("folder", False, ext=suffix, **values))
            if data is not None:
                return data, suffix
        return None

    def uids(self, folder: str) -> list[str]:
        """Names below `folder` that are valid UIDs (staging and hidden names skipped)."""
        found = []
        for name in self.store.children(folder):
            try:
                found.append(check_uid(name, "UID"))
            except InvalidUIDError:
                continue
        return found

    def studies(self) -> list[str]:
        return self.uids("studies")

    def series(self, study: str) -> list[str]:
        return self.uids(urls.study_path(study) + "/series")

    def instances(self, study: str, series: str) -> list[str]:
        return self.uids(urls.series_path(study, series) + "/instances")

    def instance_document(self, study: str, series: str, sop: str) -> bytes | None:
        """The instance's DICOM JSON object as written in its metadata file (or rebuilt
        from the deduplicated form); None if it has neither."""
        data = self.resource("instance_metadata", study=study, series=series, sop=sop)
        if data is not None:
            return data.strip()[1:-1]  # the one object of the instance's array
        parsed = self.deduplicated_document(study, series, sop)
        return None if parsed is None else jsonio.dumps(parsed)

    def deduplicated_document(self, study: str, series: str, sop: str) -> Json | None:
        """The full instance metadata object from the deduplicated form, or None."""
        data = self.store.get(names.record_name(study, series, sop))
        if data is None:
            return None
        record = jsonio.loads(gzip.decompress(data))
        parts = {}
        for level, digest in record["parts"].items():
            extract = self.store.get(names.extract_name(digest))
            if extract is None:
                raise FileNotFoundError(f"deduplicated extract {digest} is missing")
            parts[level] = jsonio.loads(gzip.decompress(extract))
        return dedup.join(parts, record["remainder"])
