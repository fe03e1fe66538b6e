"""Stored names of what is not a DICOMweb resource but lives in the tree: the
deduplicated form, the files of an instance folder, plugin result folders."""

from __future__ import annotations

from .urls import DEDUP_DIR, instance_path, series_path, study_path

#: files of an instance folder (its DICOMweb resources are named by `urls`)
INFO = "info"
#: the deduplicated parts staged inside an instance folder by a worker, stored in the
#: tree by the parent when the instance is committed
STAGED_DEDUP = ".dedup"
STAGED_RECORD = f"{STAGED_DEDUP}/record.json.gz"
#: an empty file in an instance folder whose name says its frames' media type (when it is
#: not application/octet-stream): nginx cannot read a frame's part header, but it can test
#: for a file and send that type in the response's Content-Type (`serve/nginx.py`)
FRAMES_TYPE_PREFIX = ".frames-"


def frames_type_marker(media_type: str) -> str:
    """`.frames-image-jls` for image/jls: a dot name, never served."""
    return FRAMES_TYPE_PREFIX + media_type.replace("/", "-")


def staged_extract(digest: str) -> str:
    return f"{STAGED_DEDUP}/extracts/{digest}.json.gz"


def extract_name(digest: str) -> str:
    """A deduplicated extract (gzip), named by the SHA-256 of its JSON."""
    return f"{DEDUP_DIR}/extracts/{digest[:2]}/{digest}.json.gz"


def record_name(study: str, series: str, sop: str) -> str:
    """An instance's deduplicated record (gzip)."""
    return f"{DEDUP_DIR}/instances/{study}/{series}/{sop}.json.gz"


def records_folder(study: str | None = None, series: str | None = None) -> str:
    parts = [DEDUP_DIR, "instances", *(p for p in (study, series) if p)]
    return "/".join(parts)


def level_folder(study: str, series: str | None = None, sop: str | None = None) -> str:
    """The folder of a study, series or instance (where plugin result folders go)."""
    if sop is not None:
        assert series is not None
        return instance_path(study, series, sop)
    return series_path(study, series) if series is not None else study_path(study)


#: studies whose study/series/QIDO files a receiver (`receive.Ingest`) owes: an empty
#: marker per study, stored before an instance is committed and removed once the study is
#: aggregated, so a receiver killed in between mends the index when it starts again
PENDING_DIR = ".dcmweb-pending"


def pending_name(study: str) -> str:
    return f"{PENDING_DIR}/{study}"
