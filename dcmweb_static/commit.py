"""Move a staged instance folder into the tree, replacing any earlier conversion whole."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from . import layout


def commit_instance(root: Path, staging: Path, study: str, series: str, sop: str) -> Path:
    """Rename `staging` to the instance folder. An earlier folder is first renamed aside
    and removed after, so no stale frame or bulk file of it survives and a reader never
    sees a half-written folder."""
    final = layout.instance_dir(root, study, series, sop)
    final.parent.mkdir(parents=True, exist_ok=True)
    old: Path | None = None
    if final.exists():
        old = staging.with_name(staging.name + ".replaced")
        os.rename(final, old)
    os.rename(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final
