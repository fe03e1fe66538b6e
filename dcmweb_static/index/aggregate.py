"""Study and series level files, built from the instances in a store: series and study
metadata, and the QIDO-RS index files (see docs/layout.md).

Run once per touched study after a batch (never per instance), under the store's lock so
concurrent runs into one output serialise here; each run aggregates after its own
commits, so the last aggregation of a study sees every instance any run committed.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO

import pluggy

from ..encode import jsonio
from ..plugins.api import SeriesView, StudyView
from ..plugins.manager import PluginFailures, run_hook
from ..store import Store
from ..tree import publish
from ..tree.publish import resource_writer
from ..tree.reader import TreeReader
from . import qido_records as qido
from .results import store_results

Json = qido.Json
_RELATIVE_URI = re.compile(rb'"BulkDataURI":"(?![A-Za-z][A-Za-z0-9+.-]*:)')


#: documents and records of the study being aggregated are held in memory up to this
#: size, then in a temporary file (at 8 MiB, the parent's peak RSS grew by 6 MiB from
#: 1,000 to 5,000 files in one series: memory must stay flat with the size of a study)
SPOOL_IN_MEMORY = 1 << 20


@dataclass(slots=True)
class InstanceEntry:
    """What aggregation keeps of an instance between its passes: its sort key and where
    its document and QIDO record are in the study's spool, so memory does not grow with
    the size of a series and each instance's metadata is read and parsed once."""

    sop: str
    sort_key: tuple[float, str]
    #: offset of the document in the spool, its length, then the record's length
    offset: int = 0
    document: int = 0
    record: int = 0


class _Spool:
    """The documents and QIDO records of one study's instances, in the order they were
    read (a SpooledTemporaryFile: memory while small), read back in the order written."""

    def __init__(self) -> None:
        self.file: IO[bytes] = tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY)
        self.end = 0

    def add(self, entry: InstanceEntry, document: bytes, record: bytes) -> None:
        self.file.seek(self.end)
        self.file.write(document)
        self.file.write(record)
        entry.offset, entry.document, entry.record = self.end, len(document), len(record)
        self.end += len(document) + len(record)

    def get(self, entry: InstanceEntry) -> tuple[bytes, bytes]:
        self.file.seek(entry.offset)
        data = self.file.read(entry.document + entry.record)
        return data[:entry.document], data[entry.document:]

    def close(self) -> None:
        self.file.close()


def rebase_uris(document: bytes, prefix: str) -> bytes:
    """Make relative BulkDataURIs relative to a document `prefix` levels up (RFC 3986)."""
    return _RELATIVE_URI.sub(b'"BulkDataURI":"' + prefix.encode("ascii"), document)


class Aggregator:
    """Rewrites the study/series files of studies in `store`. `plugin_manager` gives the
    series/study result hooks; their failures go to `failures` and never stop it."""

    def __init__(self, store: Store, plugin_manager: pluggy.PluginManager, *, gzip: bool = True,
                 base_url: str | None = None, failures: PluginFailures | None = None) -> None:
        self.store = store
        self.reader = TreeReader(store)
        self.pm = plugin_manager
        self.gzip = gzip
        self.base_url = base_url
        self.failures = failures if failures is not None else PluginFailures()

    def scan_series(self, study: str, series: str, spool: _Spool | None = None
                    ) -> tuple[list[InstanceEntry], Json | None]:
        """Every instance of a series, sorted by Instance Number then SOP Instance UID, and
        the QIDO summary of the first one (None when the series has no instance). With a
        `spool`, each instance's document and QIDO record go there for the writing pass."""
        found = []
        first: tuple[tuple[float, str], Json] | None = None
        for sop in self.reader.instances(study, series):
            data = self.reader.instance_document(study, series, sop)
            if data is None:  # an instance folder without metadata in either form
                continue
            parsed = jsonio.loads(data)
            entry = InstanceEntry(sop, qido.instance_sort_key(parsed))
            if first is None or entry.sort_key < first[0]:
                first = (entry.sort_key, qido.summary(parsed))
            if spool is not None:
                spool.add(entry, data, jsonio.dumps(qido.instance_record(parsed,
                                                                         self.base_url)))
            found.append(entry)
        found.sort(key=lambda entry: entry.sort_key)
        return found, None if first is None else first[1]

    def _write_series(self, study: str, series: str, entries: list[InstanceEntry],
                      spool: _Spool, study_documents: publish.ResourceStream,
                      study_index: publish.ResourceStream, separator: bytes) -> bytes:
        """Stream the series metadata array and the QIDO instance list side by side, one
        instance at a time, and the same documents and records into the study's metadata
        array and instance list, from the spool the scan filled (each instance file was
        read once, by the scan). Returns the separator for the study's next item."""
        uids = {"study": study, "series": series}
        with resource_writer(self.store, "series_metadata", self.gzip, **uids) as documents, \
                resource_writer(self.store, "instances", self.gzip, **uids) as index:
            documents.write(b"[")
            index.write(b"[")
            written = False
            for entry in entries:
                data, record = spool.get(entry)
                comma = b"," if written else b""
                documents.write(comma + rebase_uris(data, f"instances/{entry.sop}/"))
                index.write(comma + record)
                study_index.write(separator + record)
                study_documents.write(separator + rebase_uris(
                    data, f"series/{series}/instances/{entry.sop}/"))
                written, separator = True, b","
            documents.write(b"]")
            index.write(b"]")
        return separator

    def update_study(self, study: str) -> Json | None:
        """Rewrite a study's series/study metadata and QIDO files; returns its QIDO record."""
        spool = _Spool()
        try:
            return self._update_study(study, spool)
        finally:
            spool.close()

    def _update_study(self, study: str, spool: _Spool) -> Json | None:
        series_list: list[tuple[Json, str, list[InstanceEntry], Json]] = []
        for series in self.reader.series(study):
            entries, first = self.scan_series(study, series, spool)
            if first is not None:
                series_list.append((qido.series_record(first, len(entries), self.base_url),
                                    series, entries, first))
        if not series_list:
            return None
        series_list.sort(key=lambda item: qido.series_sort_key(item[0]))
        with resource_writer(self.store, "study_metadata", self.gzip,
                             study=study) as study_documents, \
                resource_writer(self.store, "study_instances", self.gzip,
                                study=study) as study_index:
            study_documents.write(b"[")
            study_index.write(b"[")
            separator = b""
            for _, series, entries, _ in series_list:
                separator = self._write_series(study, series, entries, spool,
                                               study_documents, study_index, separator)
            study_documents.write(b"]")
            study_index.write(b"]")
        series_records = [item[0] for item in series_list]
        publish.publish(self.store, "series", jsonio.dumps(series_records), self.gzip,
                        study=study)
        count = sum(len(item[2]) for item in series_list)
        record = qido.study_record(series_list[0][3], series_records, count, self.base_url)
        publish.publish(self.store, "study_record", jsonio.dumps([record]), self.gzip,
                        study=study)
        self._thumbnails(study, [(series, entries) for _, series, entries, _ in series_list])
        self._plugin_results(study, [(series, entries) for _, series, entries, _ in series_list])
        return record

    def _thumbnails(self, study: str, series_list: list[tuple[str, list[InstanceEntry]]]
                    ) -> None:
        """Series and study thumbnails: the thumbnail of a representative instance (the
        middle one by Instance Number; for the study, that of its first series). Nothing
        is kept when that instance has no thumbnail (converted again without
        --thumbnails): an earlier series or study thumbnail is removed."""
        study_thumbnail = None
        for series, entries in series_list:
            middle = entries[(len(entries) - 1) // 2].sop
            found = self.reader.rendered("instance_thumbnail", study=study, series=series,
                                         sop=middle)
            if found is None:
                publish.remove_rendered(self.store, "series_thumbnail", study=study,
                                        series=series)
                continue
            publish.publish_rendered(self.store, "series_thumbnail", found[0], found[1],
                                     study=study, series=series)
            study_thumbnail = study_thumbnail or found
        if study_thumbnail is None:
            publish.remove_rendered(self.store, "study_thumbnail", study=study)
        else:
            publish.publish_rendered(self.store, "study_thumbnail", *study_thumbnail,
                                     study=study)

    def _plugin_results(self, study: str,
                        series_list: list[tuple[str, list[InstanceEntry]]]) -> None:
        """Let plugins add `_vendor_name/` folders to each series and to the study; a plugin
        that raises is recorded in `failures` and the others' folders are still written."""
        hook = self.pm.hook
        if not hook.series_results.get_hookimpls() and not hook.study_results.get_hookimpls():
            return
        views = []
        for series, entries in series_list:
            def read(sop: str, _series: str = series) -> bytes | None:
                return self.reader.instance_document(study, _series, sop)
            views.append(SeriesView(study, series, [e.sop for e in entries], read))
        for view in views:
            for results in run_hook(self.pm, "series_results", {"series": view},
                                    on_error=self.failures.add,
                                    context=f"series {view.series_uid}"):
                store_results(self.store, view.folder, results)
        study_view = StudyView(study, views)
        for results in run_hook(self.pm, "study_results", {"study": study_view},
                                on_error=self.failures.add, context=f"study {study}"):
            store_results(self.store, study_view.folder, results)

    def update_studies_index(self) -> int:
        """Rewrite the lists that span studies: every study (`/studies`) and every series
        (`/series`, grouped by study in the study list's order). Returns the study count."""
        records: list[Json] = []
        series: dict[str, list[Json]] = {}
        for study in self.reader.studies():
            data = self.reader.resource("study_record", study=study)
            if data is not None:
                records.extend(jsonio.loads(data))
                listed = self.reader.resource("series", study=study)
                series[study] = jsonio.loads(listed) if listed is not None else []
        records.sort(key=qido.study_sort_key)
        publish.publish(self.store, "studies", jsonio.dumps(records), self.gzip)
        every_series = [item for record in records
                        for item in series.get(qido.first_value(record, "0020000D"), [])]
        publish.publish(self.store, "all_series", jsonio.dumps(every_series), self.gzip)
        return len(records)

    def update_studies(self, *studies: str) -> None:
        """Update these studies' files under the lock, without the lists spanning studies
        (a batch aggregating studies while it still converts others: `run` writes those
        once at its end)."""
        with self.store.lock():
            for study in studies:
                self.update_study(study)

    def run(self, studies: Iterable[str]) -> int:
        """Update the given studies and the study list; returns how many were updated.
        Under the lock, the debris of dead runs is removed first."""
        updated = 0
        with self.store.lock(), self.store.session():
            self.store.clean_stale()
            for study in sorted(set(studies)):
                if self.update_study(study) is not None:
                    updated += 1
            self.update_studies_index()
        return updated


def aggregate(store: Store, studies: Iterable[str], plugin_manager: pluggy.PluginManager, *,
              gzip: bool = True, base_url: str | None = None,
              failures: PluginFailures | None = None) -> int:
    """Update the given studies of `store` and its study list; returns how many studies
    were updated."""
    return Aggregator(store, plugin_manager, gzip=gzip, base_url=base_url,
                      failures=failures).run(studies)


def all_studies(store: Store) -> list[str]:
    return TreeReader(store).studies()
