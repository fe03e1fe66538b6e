"""`dcmweb rebuild`: the per-instance metadata files written again from the deduplicated
form (byte for byte what a direct conversion writes)."""

from __future__ import annotations

from ..encode import jsonio
from ..store import Store
from ..tree import names, publish
from ..tree.reader import TreeReader


def rebuild_instances(store: Store, gzip: bool = True) -> int:
    """Write every instance's metadata file from its deduplicated record; returns the count."""
    reader = TreeReader(store)
    count = 0
    with store.session():
        for study in reader.uids(names.records_folder()):
            for series in reader.uids(names.records_folder(study)):
                present = set(reader.instances(study, series))
                for name in store.children(names.records_folder(study, series)):
                    if not name.endswith(".json.gz"):
                        continue
                    sop = name[: -len(".json.gz")]
                    if sop not in present:
                        continue  # the record of an instance that is not in the tree
                    document = reader.deduplicated_document(study, series, sop)
                    if document is None:
                        continue
                    publish.publish(store, "instance_metadata", jsonio.dumps([document]), gzip,
                                    study=study, series=series, sop=sop)
                    count += 1
    return count
