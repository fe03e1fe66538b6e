"""The deduplicated metadata form (`--deduplicate`): each instance's metadata split into
patient, study, series and image-level extracts plus an instance remainder. Extracts are
stored once, named by the SHA-256 of their JSON; an instance record names its extracts.
Joining the parts gives back the instance metadata byte for byte (same sorted keys,
same serializer), which `dcmweb rebuild` and the aggregation rely on."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from . import jsonio
from .fsutil import (
    atomic_write,
    gzip_bytes,
    read_resource,
    scratch_area,
    tree_dirs,
    write_resource,
)

Json = dict[str, Any]
DEDUP_DIR = "deduplicated"
#: the instance record as staged inside an instance folder; moved to record_path() when
#: the instance is committed, so it appears together with the instance
STAGED_RECORD = ".deduplicated.json.gz"
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


def extract_path(root: Path, digest: str) -> Path:
    return root / DEDUP_DIR / "extracts" / digest[:2] / f"{digest}.json"


def record_path(root: Path, study: str, series: str, sop: str) -> Path:
    return root / DEDUP_DIR / "instances" / study / series / f"{sop}.json"


def store_extract(root: Path, extract: Json) -> str:
    """Write `extract` once under its content hash; concurrent writers write the same bytes."""
    data = jsonio.dumps(extract)  # key order as written: joining must give the same bytes
    digest = hashlib.sha256(data).hexdigest()
    path = extract_path(root, digest)
    packed = path.with_name(path.name + ".gz")
    tree_dirs(root, path.parent)  # a link on the way is refused, even if nothing is written
    if not packed.exists():
        atomic_write(root, packed, gzip_bytes(data))
    return digest


def instance_record(root: Path, document: Json) -> bytes:
    """Store the shared extracts of `document`; return the instance record's JSON."""
    parts, remainder = split(document)
    hashes = {level: store_extract(root, part) for level, part in parts.items()}
    return jsonio.dumps({"parts": hashes, "remainder": remainder})


def load_document(root: Path, study: str, series: str, sop: str) -> Json | None:
    """The full instance metadata object from the deduplicated form, or None."""
    data = read_resource(record_path(root, study, series, sop))
    if data is None:
        return None
    record = jsonio.loads(data)
    parts = {}
    for level, digest in record["parts"].items():
        extract = read_resource(extract_path(root, digest))
        if extract is None:
            raise FileNotFoundError(f"deduplicated extract {digest} is missing")
        parts[level] = jsonio.loads(extract)
    return join(parts, record["remainder"])


def rebuild_instances(root: Path, gzip: bool = True) -> int:
    """Write every instance's metadata file from its deduplicated record; returns the count."""
    with scratch_area(root):
        return _rebuild_instances(root, gzip)


def _rebuild_instances(root: Path, gzip: bool) -> int:
    count = 0
    records = root / DEDUP_DIR / "instances"
    for packed in sorted(records.glob("*/*/*.json.gz")):
        series, study = packed.parent.name, packed.parent.parent.name
        sop = packed.name[: -len(".json.gz")]
        document = load_document(root, study, series, sop)
        folder = root / "studies" / study / "series" / series / "instances" / sop
        if document is None or not folder.is_dir():
            continue
        write_resource(root, folder / "metadata", jsonio.dumps([document]), gzip)
        count += 1
    return count
