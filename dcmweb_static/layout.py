"""Paths of the static DICOMweb tree (see docs/layout.md). Only checked UIDs get here."""

from __future__ import annotations

from pathlib import Path

STAGING_DIR = ".tmp"


def instance_dir(root: Path, study: str, series: str, sop: str) -> Path:
    return root / "studies" / study / "series" / series / "instances" / sop


def instance_url_path(study: str, series: str, sop: str) -> str:
    return f"studies/{study}/series/{series}/instances/{sop}"


def metadata_name(gzip: bool) -> str:
    return "metadata.gz" if gzip else "metadata"
