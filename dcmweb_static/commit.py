"""Move a staged instance folder into the tree, replacing any earlier conversion whole."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from . import dedup, layout


def commit_instance(root: Path, staging: Path, study: str, series: str, sop: str) -> Path:
    """Rename `staging` to the instance folder. An earlier folder is first renamed aside
    and removed after, so no stale frame or bulk file of it survives and a reader never
    sees a half-written folder."""
    final = layout.instance_dir(root, study, series, sop)
    final.parent.mkdir(parents=True, exist_ok=True)
    record = dedup.record_path(root, study, series, sop)
    record_gz = record.with_name(record.name + ".gz")
    staged_record = staging / dedup.STAGED_RECORD
    if staged_record.exists():
        record_gz.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged_record, record_gz)
    else:  # converted without --deduplicate: an older record would be stale
        record_gz.unlink(missing_ok=True)
    old: Path | None = None
    if final.exists():
        old = staging.with_name(staging.name + ".replaced")
        os.rename(final, old)
    os.rename(staging, final)
    if old is not None:
        _keep_result_folders(old, final)
        shutil.rmtree(old, ignore_errors=True)
    return final


def _keep_result_folders(old: Path, new: Path) -> None:
    """Plugin result folders (`_vendor_name/`) of the replaced conversion survive, unless
    the plugin that made them wrote that folder again in this one."""
    for entry in old.iterdir():
        if entry.name.startswith("_") and entry.is_dir() and not (new / entry.name).exists():
            os.rename(entry, new / entry.name)
