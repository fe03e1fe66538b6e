"""The deduplicated metadata form (`--deduplicate`): each instance's metadata split into
patient, study, series and image-level extracts plus an instance remainder. Extracts are
stored once, named by the SHA-256 of their JSON; an instance record names its extracts.
Joining the parts gives back the instance metadata byte for byte (same sorted keys,
same serializer), which `dcmweb rebuild` and the aggregation rely on."""

from __future__ import annotations

import hashlib
from typing import Any

from . import jsonio
from .gzip_stream import gzip_bytes

Json = dict[str, Any]
LEVELS = ("patient", "study", "series", "image")

_STUDY = {
    "00080020", "00080030", "00080050", "00080051", "00080090", "00081030", "00081032",
    "00081048", "00081060", "00081080", "0020000D", "00200010",
}
_SERIES = {
    "00080021", "00080031", "00080060", "00080070", "00080080", "00080081", "0008103E",
    "00081010", "00081040", "00081050", "00081070", "00081090", "00081111", "00180015",
    "00181000", "00181020", "00181030", "00185100", "0020000E", "00200011", "00200052",
    "00200060", "00201040", "00400244", "00400245", "00400253", "00400254", "00400275",
}


def level_of(tag: str) -> str | None:
    """Which shared extract an element belongs to; None: the instance remainder."""
    if tag.startswith("0010"):
        return "patient"
    if tag in _STUDY or tag.startswith("0032"):
        return "study"
    if tag in _SERIES:
        return "series"
    if tag.startswith("0028") or tag.startswith("0018"):
        return "image"
    return None


def split(document: Json) -> tuple[dict[str, Json], Json]:
    parts: dict[str, Json] = {level: {} for level in LEVELS}
    remainder: Json = {}
    for tag, element in document.items():
        level = level_of(tag)
        (parts[level] if level else remainder)[tag] = element
    return parts, remainder


def join(parts: dict[str, Json], remainder: Json) -> Json:
    merged: Json = dict(remainder)
    for part in parts.values():
        merged.update(part)
    return dict(sorted(merged.items()))


def instance_parts(document: Json) -> tuple[dict[str, bytes], bytes]:
    """The shared extracts of `document` (digest → gzip bytes) and the instance record
    (gzip bytes) that names them. Both are staged by the worker and stored by the parent
    (extracts only where not stored yet: concurrent writers write the same bytes)."""
    parts, remainder = split(document)
    extracts: dict[str, bytes] = {}
    hashes = {}
    for level, part in parts.items():
        data = jsonio.dumps(part)  # key order as written: joining must give the same bytes
        digest = hashlib.sha256(data).hexdigest()
        extracts[digest] = gzip_bytes(data)
        hashes[level] = digest
    record = jsonio.dumps({"parts": hashes, "remainder": remainder})
    return extracts, gzip_bytes(record)
