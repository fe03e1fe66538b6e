"""Commit a staged instance into the tree through its store: the deduplicated parts a
worker staged (extracts stored once, then the record), then the instance folder itself,
replacing any earlier conversion whole.

On a Dask cluster writing into an object store the work is split: the worker puts the
instance into the run's staging prefix of the store (`stage_instance`), the parent
publishes it there by server-side copies (`commit_staged_instance`), so the instance's
bytes never pass through the parent."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..store import StagedInstance, StagedObject, StagedUpload, Store
from ..store.base import NO_HEADERS
from ..tree import names, urls
from ..tree.publish import object_plan
from .result import StagedObjects

if TYPE_CHECKING:
    from ..store.objects import ObjectStore


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


def stage_instance(store: ObjectStore, staged: StagedInstance, prefix: str, study: str,
                   series: str, sop: str) -> StagedObjects:
    """On a Dask worker: put `staged` (a local folder, removed after) below `prefix` of
    the store's staging area, as `commit_instance` would publish it: extracts (stored
    once), the record, then the instance's objects in the plan's order (metadata last).
    The worker also asks what `commit_instance` would ask the store (the instance's keys,
    whether a stale record is there), so that the parent's commit is copies only."""
    uploads: list[StagedUpload] = []
    record = names.record_name(study, series, sop)
    dedup_folder = os.path.join(staged.path, names.STAGED_DEDUP)
    stale_record = False
    try:
        if os.path.isdir(dedup_folder):
            extracts = sorted(os.listdir(os.path.join(dedup_folder, "extracts")))
            uploads += store.stage(prefix, staged, [
                StagedObject(f"{names.STAGED_DEDUP}/extracts/{entry}",
                             names.extract_name(entry[: -len(".json.gz")]), NO_HEADERS)
                for entry in extracts], only_new=True)
            uploads += store.stage(prefix, staged, [
                StagedObject(names.STAGED_RECORD, record, NO_HEADERS)])
            staged.remove_folder(names.STAGED_DEDUP)
        else:
            stale_record = store.exists(record)
        folder = urls.instance_path(study, series, sop)
        stored = store.keys_below(folder)
        uploads += store.stage(prefix, staged, object_plan(staged, folder), folder, stored)
    except BaseException:
        store.discard_staged(uploads)
        raise
    finally:
        staged.remove()
    return StagedObjects(uploads, stored, stale_record)


def commit_staged_instance(store: ObjectStore, staged: StagedObjects, study: str,
                           series: str, sop: str) -> None:
    """In the parent: publish what `stage_instance` staged as instance `sop` (the staged
    objects are used up), and remove a stale deduplicated record."""
    if staged.stale_record:
        store.delete(names.record_name(study, series, sop))
    store.commit_staged(urls.instance_path(study, series, sop), staged.uploads, staged.stored)
