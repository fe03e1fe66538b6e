"""Move a staged instance folder into the tree, replacing any earlier conversion whole."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from .. import layout
from ..encode import dedup
from ..fsutil import refuse_link, tree_dirs


def commit_instance(root: Path, staging: Path, study: str, series: str, sop: str) -> Path:
    """Rename `staging` to the instance folder. An earlier folder is first renamed aside
    and removed after, so no stale frame or bulk file of it survives and a reader never
    sees a half-written folder.

    Runs in the parent once per file, beside the workers: plain string paths keep it to
    a few system calls; one lstat per folder below `root` makes sure no symbolic link in
    the tree leads the instance out of it."""
    final = os.path.join(root, layout.instance_url_path(study, series, sop))
    record_gz = os.fspath(dedup.record_path(root, study, series, sop)) + ".gz"
    staged_record = os.path.join(staging, dedup.STAGED_RECORD)
    if os.path.exists(staged_record):
        tree_dirs(root, os.path.dirname(record_gz))  # no link below root is followed
        os.replace(staged_record, record_gz)
    elif os.path.lexists(record_gz):  # converted without --deduplicate: it would be stale
        tree_dirs(root, os.path.dirname(record_gz))
        os.unlink(record_gz)
    tree_dirs(root, os.path.dirname(final))
    refuse_link(final)
    try:
        os.rename(staging, final)  # the common case: a new instance in a known series
        return Path(final)
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
