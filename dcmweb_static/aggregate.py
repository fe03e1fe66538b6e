"""Study and series level files, built from the instances on disk: series and study
metadata, and the QIDO-RS index files (see docs/layout.md).

Run once per touched study after a batch (never per instance), under a tree-wide lock so
concurrent runs into one output serialise here; each run aggregates after its own
commits, so the last aggregation of a study sees every instance any run committed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

from . import dedup, qido
from .fsutil import read_resource, tree_lock, write_resource
from .plugins import get_plugin_manager
from .results import SeriesView, StudyView, write_results
from .uids import InvalidUIDError, check_uid

Json = qido.Json
_RELATIVE_URI = re.compile(rb'"BulkDataURI":"(?![A-Za-z][A-Za-z0-9+.-]*:)')


@dataclass
class InstanceDocument:
    sop: str
    data: bytes  # the instance's DICOM JSON object, as written in its metadata file
    parsed: Json


def _uid_dirs(folder: Path) -> list[str]:
    """Sub-folders named by a valid UID (staging and other hidden folders are skipped)."""
    if not folder.is_dir():
        return []
    names = []
    for entry in folder.iterdir():
        try:
            if entry.is_dir():
                names.append(check_uid(entry.name, "UID"))
        except InvalidUIDError:
            continue
    return sorted(names)


def rebase_uris(document: bytes, prefix: str) -> bytes:
    """Make relative BulkDataURIs relative to a document `prefix` levels up (RFC 3986)."""
    return _RELATIVE_URI.sub(b'"BulkDataURI":"' + prefix.encode("ascii"), document)


def series_path(root: Path, study: str, series: str) -> Path:
    return root / "studies" / study / "series" / series


def load_instances(root: Path, study: str, series: str) -> list[InstanceDocument]:
    """Every instance of a series, sorted by Instance Number then SOP Instance UID."""
    found = []
    instances = series_path(root, study, series) / "instances"
    for sop in _uid_dirs(instances):
        data = read_resource(instances / sop / "metadata")
        if data is not None:
            data = data.strip()[1:-1]  # the one object of the instance's array
            parsed = orjson.loads(data)
        else:
            parsed = dedup.load_document(root, study, series, sop)
            if parsed is None:
                continue  # an instance folder without metadata in either form
            data = orjson.dumps(parsed)
        found.append(InstanceDocument(sop, data, parsed))
    found.sort(key=lambda d: qido.instance_sort_key(d.parsed))
    return found


def _array(items: Iterable[bytes]) -> bytes:
    return b"[" + b",".join(items) + b"]"


def update_study(root: Path, study: str, gzip: bool, base_url: str | None) -> Json | None:
    """Rewrite a study's series/study metadata and QIDO files; returns its QIDO record."""
    series_list = []
    for series in _uid_dirs(root / "studies" / study / "series"):
        instances = load_instances(root, study, series)
        if not instances:
            continue
        folder = series_path(root, study, series)
        write_resource(folder / "metadata", _array(
            rebase_uris(d.data, f"instances/{d.sop}/") for d in instances), gzip)
        records = [qido.instance_record(d.parsed, base_url) for d in instances]
        write_resource(folder / "instances" / "index.json", orjson.dumps(records), gzip)
        series_list.append((qido.series_record([d.parsed for d in instances], base_url),
                            series, instances))
    if not series_list:
        return None
    series_list.sort(key=lambda item: qido.series_sort_key(item[0]))
    study_folder = root / "studies" / study
    write_resource(study_folder / "metadata", _array(
        rebase_uris(d.data, f"series/{series}/instances/{d.sop}/")
        for _, series, instances in series_list for d in instances), gzip)
    series_records = [record for record, _, _ in series_list]
    write_resource(study_folder / "series" / "index.json", orjson.dumps(series_records), gzip)
    count = sum(len(instances) for _, _, instances in series_list)
    record = qido.study_record(series_list[0][2][0].parsed, series_records, count, base_url)
    write_resource(study_folder / "index.json", orjson.dumps([record]), gzip)
    _plugin_results(root, study, series_list)
    return record


def _plugin_results(root: Path, study: str,
                    series_list: list[tuple[Json, str, list[InstanceDocument]]]) -> None:
    """Let plugins add `_vendor_name/` folders to each series and to the study."""
    hook = get_plugin_manager().hook
    views = [SeriesView(study, series, [d.parsed for d in instances],
                        series_path(root, study, series))
             for _, series, instances in series_list]
    for view in views:
        for results in hook.series_results(series=view):
            write_results(view.folder, list(results or []))
    study_view = StudyView(study, views, root / "studies" / study)
    for results in hook.study_results(study=study_view):
        write_results(study_view.folder, list(results or []))


def update_studies_index(root: Path, gzip: bool) -> int:
    records = []
    for study in _uid_dirs(root / "studies"):
        data = read_resource(root / "studies" / study / "index.json")
        if data is not None:
            records.extend(orjson.loads(data))
    records.sort(key=qido.study_sort_key)
    write_resource(root / "studies" / "index.json", orjson.dumps(records), gzip)
    return len(records)


def aggregate(root: Path, studies: Iterable[str], *, gzip: bool = True,
              base_url: str | None = None) -> int:
    """Update the given studies and the study list; returns how many studies were updated."""
    updated = 0
    with tree_lock(root):
        for study in sorted(set(studies)):
            if update_study(root, study, gzip, base_url) is not None:
                updated += 1
        update_studies_index(root, gzip)
    return updated


def all_studies(root: Path) -> list[str]:
    return _uid_dirs(root / "studies")
