"""Commit a staged instance into the tree through its store: the deduplicated parts a
worker staged (extracts stored once, then the record), then the instance folder itself,
replacing any earlier conversion whole."""

from __future__ import annotations

import os

from ..store import StagedInstance, Store
from ..tree import names, urls
from ..tree.publish import object_plan


def commit_instance(store: Store, staged: StagedInstance, study: str, series: str,
                    sop: str) -> None:
    """Publish `staged` as instance `sop`. An earlier deduplicated record of it is removed
    when this conversion has none (it would be stale)."""
    record = names.record_name(study, series, sop)
    dedup_folder = os.path.join(staged.path, names.STAGED_DEDUP)
    if os.path.isdir(dedup_folder):
        extracts = os.path.join(dedup_folder, "extracts")
        for entry in sorted(os.listdir(extracts)):
            name = names.extract_name(entry[: -len(".json.gz")])
            store.put_new(name, staged.read(f"{names.STAGED_DEDUP}/extracts/{entry}"))
        store.put(record, staged.read(names.STAGED_RECORD))
        staged.remove_folder(names.STAGED_DEDUP)
    elif store.exists(record):
        store.delete(record)
    folder = urls.instance_path(study, series, sop)
    plan = object_plan(staged, folder) if store.layout == "object" else None
    store.commit_instance(staged, folder, plan)
