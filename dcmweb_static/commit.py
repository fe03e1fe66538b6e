"""Move a staged instance folder into the tree, replacing any earlier conversion whole."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from . import dedup, layout


def commit_instance(root: Path, staging: Path, study: str, series: str, sop: str) -> Path:
    """Rename `staging` to the instance folder. An earlier folder is first renamed aside
    and removed after, so no stale frame or bulk file of it survives and a reader never
    sees a half-written folder.

    Runs in the parent once per file, beside the workers: plain string paths and asking
    for forgiveness (rename first, create folders only when that fails) keep it to a
    few system calls."""
    final = os.path.join(root, layout.instance_url_path(study, series, sop))
    record_gz = os.fspath(dedup.record_path(root, study, series, sop)) + ".gz"
    staged_record = os.path.join(staging, dedup.STAGED_RECORD)
    if os.path.exists(staged_record):
        os.makedirs(os.path.dirname(record_gz), exist_ok=True)
        os.replace(staged_record, record_gz)
    else:  # converted without --deduplicate: an older record would be stale
        try:
            os.unlink(record_gz)
        except FileNotFoundError:
            pass
    try:
        os.rename(staging, final)  # the common case: a new instance in a known series
        return Path(final)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(final), exist_ok=True)
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
    old: str | None = None
    if os.path.exists(final):
        old = os.fspath(staging) + ".replaced"
        os.rename(final, old)
    os.rename(staging, final)
    if old is not None:
        _keep_result_folders(Path(old), Path(final))
        shutil.rmtree(old, ignore_errors=True)
    return Path(final)


def _keep_result_folders(old: Path, new: Path) -> None:
    """Plugin result folders (`_vendor_name/`) of the replaced conversion survive, unless
    the plugin that made them wrote that folder again in this one."""
    for entry in old.iterdir():
        if entry.name.startswith("_") and entry.is_dir() and not (new / entry.name).exists():
            os.rename(entry, new / entry.name)
