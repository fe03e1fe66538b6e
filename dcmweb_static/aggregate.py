"""Study and series level files, built from the instances on disk: series and study
metadata, and the QIDO-RS index files (see docs/layout.md).

Run once per touched study after a batch (never per instance), under a tree-wide lock so
concurrent runs into one output serialise here; each run aggregates after its own
commits, so the last aggregation of a study sees every instance any run committed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import dedup, jsonio, layout, qido
from .fsutil import (
    ResourceWriter,
    clean_stale_scratch,
    read_resource,
    scratch_area,
    tree_lock,
    write_resource,
)
from .plugins import PluginFailures, get_plugin_manager, run_hook
from .results import SeriesView, StudyView, write_results
from .uids import InvalidUIDError, check_uid

Json = qido.Json
_RELATIVE_URI = re.compile(rb'"BulkDataURI":"(?![A-Za-z][A-Za-z0-9+.-]*:)')


@dataclass
class InstanceEntry:
    """What aggregation keeps of an instance between its passes: its sort key only, so
    memory does not grow with the size of a series; the metadata is read again when the
    series files are written."""

    sop: str
    sort_key: tuple[float, str]


def _uid_dirs(folder: Path) -> list[str]:
    """Sub-folders named by a valid UID (staging and other hidden folders are skipped)."""
    names = []
    try:
        with os.scandir(folder) as entries:  # no stat per entry: the type is in the listing
            for entry in entries:
                try:
                    if entry.is_dir():
                        names.append(check_uid(entry.name, "UID"))
                except InvalidUIDError:
                    continue
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(names)


def rebase_uris(document: bytes, prefix: str) -> bytes:
    """Make relative BulkDataURIs relative to a document `prefix` levels up (RFC 3986)."""
    return _RELATIVE_URI.sub(b'"BulkDataURI":"' + prefix.encode("ascii"), document)


def series_path(root: Path, study: str, series: str) -> Path:
    return root / "studies" / study / "series" / series


def instance_document(root: Path, study: str, series: str, sop: str) -> bytes | None:
    """The instance's DICOM JSON object as written in its metadata file (or rebuilt from
    the deduplicated form); None if it has neither."""
    # string paths: this runs once or twice per instance of every touched study
    data = read_resource(os.path.join(root, layout.instance_url_path(study, series, sop),
                                      "metadata"))
    if data is not None:
        return data.strip()[1:-1]  # the one object of the instance's array
    parsed = dedup.load_document(root, study, series, sop)
    return None if parsed is None else jsonio.dumps(parsed)


def scan_series(root: Path, study: str, series: str) -> tuple[list[InstanceEntry], Json | None]:
    """Every instance of a series, sorted by Instance Number then SOP Instance UID, and
    the QIDO summary of the first one (None when the series has no instance)."""
    found = []
    first: tuple[tuple[float, str], Json] | None = None
    for sop in _uid_dirs(series_path(root, study, series) / "instances"):
        data = instance_document(root, study, series, sop)
        if data is None:  # an instance folder without metadata in either form
            continue
        parsed = jsonio.loads(data)
        entry = InstanceEntry(sop, qido.instance_sort_key(parsed))
        if first is None or entry.sort_key < first[0]:
            first = (entry.sort_key, qido.summary(parsed))
        found.append(entry)
    found.sort(key=lambda entry: entry.sort_key)
    return found, None if first is None else first[1]


def _write_series(root: Path, study: str, series: str, entries: list[InstanceEntry],
                  gzip: bool, base_url: str | None, study_documents: ResourceWriter,
                  separator: bytes) -> bytes:
    """Stream the series metadata array and the QIDO instance list side by side, one
    instance at a time, and the same documents into the study's metadata array, so each
    instance file is read once here. Returns the separator for the study's next item."""
    folder = series_path(root, study, series)
    with ResourceWriter(root, folder / "metadata", gzip) as documents, \
            ResourceWriter(root, folder / "instances" / "index.json", gzip) as index:
        documents.write(b"[")
        index.write(b"[")
        written = False
        for entry in entries:
            data = instance_document(root, study, series, entry.sop)
            if data is None:
                continue
            comma = b"," if written else b""
            documents.write(comma + rebase_uris(data, f"instances/{entry.sop}/"))
            index.write(comma + jsonio.dumps(qido.instance_record(jsonio.loads(data), base_url)))
            study_documents.write(separator + rebase_uris(
                data, f"series/{series}/instances/{entry.sop}/"))
            written, separator = True, b","
        documents.write(b"]")
        index.write(b"]")
    return separator


def update_study(root: Path, study: str, gzip: bool, base_url: str | None,
                 failures: PluginFailures | None = None) -> Json | None:
    """Rewrite a study's series/study metadata and QIDO files; returns its QIDO record."""
    series_list: list[tuple[Json, str, list[InstanceEntry], Json]] = []
    for series in _uid_dirs(root / "studies" / study / "series"):
        entries, first = scan_series(root, study, series)
        if first is not None:
            series_list.append((qido.series_record(first, len(entries), base_url),
                                series, entries, first))
    if not series_list:
        return None
    series_list.sort(key=lambda item: qido.series_sort_key(item[0]))
    study_folder = root / "studies" / study
    with ResourceWriter(root, study_folder / "metadata", gzip) as study_documents:
        study_documents.write(b"[")
        separator = b""
        for _, series, entries, _ in series_list:
            separator = _write_series(root, study, series, entries, gzip, base_url,
                                      study_documents, separator)
        study_documents.write(b"]")
    series_records = [item[0] for item in series_list]
    write_resource(root, study_folder / "series" / "index.json", jsonio.dumps(series_records),
                   gzip)
    count = sum(len(item[2]) for item in series_list)
    record = qido.study_record(series_list[0][3], series_records, count, base_url)
    write_resource(root, study_folder / "index.json", jsonio.dumps([record]), gzip)
    _plugin_results(root, study, [(series, entries) for _, series, entries, _ in series_list],
                    failures if failures is not None else PluginFailures())
    return record


def _plugin_results(root: Path, study: str,
                    series_list: list[tuple[str, list[InstanceEntry]]],
                    failures: PluginFailures) -> None:
    """Let plugins add `_vendor_name/` folders to each series and to the study; a plugin
    that raises is recorded in `failures` and the others' folders are still written."""
    pm = get_plugin_manager()
    hook = pm.hook
    if not hook.series_results.get_hookimpls() and not hook.study_results.get_hookimpls():
        return
    views = [SeriesView(study, series, [e.sop for e in entries], root)
             for series, entries in series_list]
    for view in views:
        for results in run_hook(pm, "series_results", {"series": view},
                                on_error=failures.add, context=f"series {view.series_uid}"):
            write_results(root, view.folder, results)
    study_view = StudyView(study, views, root / "studies" / study)
    for results in run_hook(pm, "study_results", {"study": study_view},
                            on_error=failures.add, context=f"study {study}"):
        write_results(root, study_view.folder, results)


def update_studies_index(root: Path, gzip: bool) -> int:
    records = []
    for study in _uid_dirs(root / "studies"):
        data = read_resource(root / "studies" / study / "index.json")
        if data is not None:
            records.extend(jsonio.loads(data))
    records.sort(key=qido.study_sort_key)
    write_resource(root, root / "studies" / "index.json", jsonio.dumps(records), gzip)
    return len(records)


def aggregate(root: Path, studies: Iterable[str], *, gzip: bool = True,
              base_url: str | None = None, failures: PluginFailures | None = None) -> int:
    """Update the given studies and the study list; returns how many studies were updated.
    Under the lock, scratch folders of dead runs are removed first. Plugin failures
    (series/study results) go to `failures`: they never stop aggregation."""
    updated = 0
    with tree_lock(root), scratch_area(root):
        clean_stale_scratch(root)
        for study in sorted(set(studies)):
            if update_study(root, study, gzip, base_url, failures) is not None:
                updated += 1
        update_studies_index(root, gzip)
    return updated


def all_studies(root: Path) -> list[str]:
    return _uid_dirs(root / "studies")
