"""Plugin result folders (`_vendor_name/`) of series and studies, written into the store;
each folder is replaced whole (stale files of an earlier run removed)."""

from __future__ import annotations

from ..plugins.api import ResultFile, by_folder
from ..store import Store


def store_results(store: Store, level_folder: str, results: list[ResultFile]) -> list[str]:
    """Write `results` under `level_folder`; returns the result folders written."""
    folders = by_folder(results)
    for name, files in folders.items():
        target = f"{level_folder}/{name}"
        keep = {f.name for f in files}
        for stale in store.children(target):
            if stale not in keep:
                store.delete(f"{target}/{stale}")
        for result in files:
            store.put(f"{target}/{result.name}", result.data)
    return sorted(folders)
