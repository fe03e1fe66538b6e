"""The receive seam (`receive.Ingest`): instances handed over one at a time give the tree a
batch gives for the same files; re-sends, conflicts and bad data sets are judged against
what is in the tree; the index follows, debounced; a killed receiver mends it on restart."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import pydicom
import pytest

from dcmweb_static import (
    ConvertOptions,
    Ingest,
    LocalStore,
    MemoryStore,
    Source,
    get_plugin_manager,
    synthetic,
)
from dcmweb_static.tree import names, urls
from dcmweb_static.tree.reader import TreeReader

from .treeutil import convert


def tree_files(root: Path) -> dict[str, bytes]:
    """Every file of a tree, the `info` records without their source path (a received
    instance has a label there, a batch's the file's path)."""
    files = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name == ".dcmweb.lock":
            continue
        data = path.read_bytes()
        if path.name == "info":
            info = orjson.loads(data)
            info["source"].pop("path", None)
            data = orjson.dumps(info)
        files[str(path.relative_to(root))] = data
    return files


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> list[Path]:
    return synthetic.ct_series(tmp_path_factory.mktemp("series"), 12, rows=32, columns=32)


def _listed(store, study: str) -> int:
    """How many instances the study's QIDO instance list holds."""
    data = TreeReader(store).resource("study_instances", study=study)
    return 0 if data is None else len(orjson.loads(data))


def _ingest(out: Path, **kwargs) -> Ingest:
    return Ingest(LocalStore(out), ConvertOptions(output=out), get_plugin_manager(), **kwargs)


@pytest.mark.parametrize("options", [{}, {"deduplicate": True, "instances": False},
                                     {"deduplicate": True, "instances": True, "part10": True,
                                      "gzip": False}], ids=["plain", "dedup-only", "dedup-part10"])
def test_received_instances_give_the_batch_tree(tmp_path: Path, series: list[Path],
                                                options: dict) -> None:
    convert(series, tmp_path / "batch", **options)
    out = tmp_path / "received"
    with Ingest(LocalStore(out), ConvertOptions(output=out, **options),
                get_plugin_manager()) as ingest:
        results = [ingest.receive(Source.from_bytes(p.read_bytes(), f"received {p.name}"))
                   for p in series]
    assert [r.status for r in results] == ["converted"] * len(series), results
    assert tree_files(tmp_path / "received") == tree_files(tmp_path / "batch")


def test_resend_is_a_duplicate_other_content_a_conflict_junk_a_reason(
        tmp_path: Path, series: list[Path]) -> None:
    out = tmp_path / "out"
    with _ingest(out) as ingest:
        first = ingest.receive(Source.from_bytes(series[0].read_bytes(), "first"))
        assert first.status == "converted", first.reason
    before = tree_files(out)
    other = pydicom.dcmread(series[0])
    other.PatientName = "Someone^Else"
    changed = synthetic.save(other, tmp_path / "changed.dcm")
    with _ingest(out) as ingest:  # a new receiver: what is in the tree decides
        again = ingest.receive(Source.from_bytes(series[0].read_bytes(), "again"))
        conflict = ingest.receive(Source.from_bytes(changed.read_bytes(), "changed"))
        junk = ingest.receive(Source.from_bytes(b"\0" * 200 + b"not dicom", "junk"))
        later = ingest.receive(Source.from_bytes(series[1].read_bytes(), "second"))
    assert again.status == "duplicate"
    assert conflict.status == "failed" and first.sop_uid in conflict.reason
    assert "different content" in conflict.reason
    assert junk.status == "failed" and junk.reason and "\n" not in junk.reason
    assert later.status == "converted"
    after = tree_files(out)
    for name, data in before.items():  # the stored instance was kept as it was
        if f"/instances/{first.sop_uid}/" in name:
            assert after[name] == data


def test_the_index_follows_within_the_debounce(tmp_path: Path, series: list[Path]) -> None:
    out = tmp_path / "out"
    with _ingest(out, debounce_seconds=0.3) as ingest:
        for path in series[:3]:
            assert ingest.receive(Source.from_bytes(path.read_bytes(), path.name)).status == \
                "converted"
        study = synthetic.uid(1)
        assert ingest.pending_studies == [study]
        assert (out / names.pending_name(study)).exists()
        deadline = time.monotonic() + 10
        while ingest.pending_studies and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ingest.pending_studies == []
        assert _listed(LocalStore(out), study) == 3
        assert not (out / names.pending_name(study)).exists()


def test_a_long_stream_is_indexed_before_it_ends(tmp_path: Path, series: list[Path]) -> None:
    """max_delay_seconds: a series that keeps arriving is aggregated meanwhile."""
    out = tmp_path / "out"
    study = synthetic.uid(1)
    with _ingest(out, debounce_seconds=5, max_delay_seconds=0.5) as ingest:
        started = time.monotonic()
        seen = 0
        for path in series:
            ingest.receive(Source.from_bytes(path.read_bytes(), path.name))
            time.sleep(0.15)
            seen = _listed(LocalStore(out), study)
        assert time.monotonic() - started < 5  # the debounce alone never came due
        assert seen >= len(series) // 2


def test_threads_at_once_lose_nothing(tmp_path: Path, series: list[Path]) -> None:
    out = tmp_path / "out"
    results = []
    with _ingest(out) as ingest:
        def send(paths: list[Path]) -> None:
            for path in paths:
                results.append(ingest.receive(Source.from_bytes(path.read_bytes(), path.name)))
        threads = [threading.Thread(target=send, args=(series[i::4],)) for i in range(4)]
        threads += [threading.Thread(target=send, args=(series[:3],))]  # re-sends at once
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    statuses = sorted(r.status for r in results)
    assert statuses.count("converted") == len(series)
    assert statuses.count("duplicate") == 3
    convert(series, tmp_path / "batch")
    assert tree_files(out) == tree_files(tmp_path / "batch")


def test_a_killed_receiver_mends_the_index_on_restart(tmp_path: Path,
                                                     series: list[Path]) -> None:
    """Committed but not aggregated (the process died): the marker makes the next
    receiver aggregate the study when it starts."""
    out = tmp_path / "out"
    ingest = _ingest(out, debounce_seconds=3600)
    for path in series[:4]:
        ingest.receive(Source.from_bytes(path.read_bytes(), path.name))
    study = synthetic.uid(1)
    assert _listed(LocalStore(out), study) == 0
    # what kill -9 leaves: the debounce thread never ran (it is a daemon; not joined)
    ingest._closing = True
    with ingest._wake:
        ingest._wake.notify()
    ingest._thread.join()
    assert (out / names.pending_name(study)).is_file()  # what the next receiver goes by
    with _ingest(out, debounce_seconds=3600) as again:  # due at once, whatever the debounce
        deadline = time.monotonic() + 10
        while again.pending_studies and time.monotonic() < deadline:
            time.sleep(0.05)
        assert again.pending_studies == []
    assert _listed(LocalStore(out), study) == 4
    ingest._session.__exit__(None, None, None)


def test_an_object_layout_store(tmp_path: Path, series: list[Path]) -> None:
    store = MemoryStore(layout="object")
    with Ingest(store, ConvertOptions(output=tmp_path / "unused"), get_plugin_manager(),
                debounce_seconds=0) as ingest:
        results = [ingest.receive(Source.from_bytes(p.read_bytes(), p.name))
                   for p in series[:3]]
        again = ingest.receive(Source.from_bytes(series[0].read_bytes(), "again"))
    assert [r.status for r in results] == ["converted"] * 3 and again.status == "duplicate"
    study = synthetic.uid(1)
    assert _listed(store, study) == 3
    assert store.get(names.pending_name(study)) is None


def test_closed_refuses(tmp_path: Path, series: list[Path]) -> None:
    ingest = _ingest(tmp_path / "out")
    ingest.close()
    ingest.close()  # twice is fine
    result = ingest.receive(Source.from_bytes(series[0].read_bytes(), "late"))
    assert result.status == "failed" and "shutting down" in result.reason


def test_statuses_for_a_receiver(tmp_path: Path, series: list[Path]) -> None:
    """store_instance: the DIMSE status the C-STORE listener and STOW-RS answer with."""
    from dcmweb_static.receive import ingest as module

    out = tmp_path / "out"
    other = pydicom.dcmread(series[0])
    other.PatientName = "Someone^Else"
    changed = synthetic.save(other, tmp_path / "changed.dcm").read_bytes()
    data = series[0].read_bytes()
    with _ingest(out) as ingest:
        assert ingest.store_instance(Source.from_bytes(data, "a")).status == module.SUCCESS
        again = ingest.store_instance(Source.from_bytes(data, "a"),
                                      sop_instance_uid=other.SOPInstanceUID)
        assert again.ok and again.result.status == "duplicate"
        assert ingest.store_instance(Source.from_bytes(changed, "b")).status == \
            module.DUPLICATE_SOP_INSTANCE
        assert ingest.store_instance(Source.from_bytes(b"junk", "c")).status == \
            module.CANNOT_UNDERSTAND
        named = ingest.store_instance(Source.from_bytes(series[1].read_bytes(), "d"),
                                      sop_instance_uid="1.2.3")
        assert named.status == module.DATA_SET_MISMATCH and "1.2.3" in named.result.reason
    assert not (out / urls.instance_path(synthetic.uid(1), synthetic.uid(1, 1),
                                         synthetic.uid(1, 1, 2))).exists()


def test_plugins_see_each_outcome(tmp_path: Path, series: list[Path]) -> None:
    """`instance_converted` is called for every received instance, as in a batch; a
    plugin that raises is recorded in plugin_failures and stops nothing."""
    from dcmweb_static import hookimpl

    seen: list[str] = []

    class Watcher:
        @hookimpl
        def instance_converted(self, record):
            seen.append(record["status"])

    class Flaky:
        @hookimpl
        def instance_converted(self, record):
            raise RuntimeError("down")

    pm = get_plugin_manager()
    pm.register(Watcher(), name="watcher")
    pm.register(Flaky(), name="flaky")
    out = tmp_path / "out"
    with Ingest(LocalStore(out), ConvertOptions(output=out), pm) as ingest:
        data = series[0].read_bytes()
        results = [ingest.receive(Source.from_bytes(d, "x")) for d in (data, data, b"junk")]
    assert [r.status for r in results] == ["converted", "duplicate", "failed"]
    assert seen == ["converted", "duplicate", "failed"]
    (failure,) = ingest.plugin_failures.records()
    assert failure["plugin"] == "flaky" and failure["count"] == 3


def test_transformed_resend_and_conflict(tmp_path: Path, series: list[Path]) -> None:
    """Through deidentify no source checksum is kept: a re-send is judged by what would be
    published (metadata and frames), so other pixels under one SOP UID are a conflict."""
    from dcmweb_static.plugins.manager import prepare_transforms

    out = tmp_path / "out"
    pm = get_plugin_manager()
    prepared, _ = prepare_transforms(pm, ("deidentify",), ("deidentify.secret=s1",), out)
    options = ConvertOptions(output=out, plugins=("deidentify",), plugin_options=prepared)
    other = pydicom.dcmread(series[0])
    other.PixelData = bytes(len(other.PixelData))
    changed = synthetic.save(other, tmp_path / "changed.dcm").read_bytes()
    data = series[0].read_bytes()
    with Ingest(LocalStore(out), options, pm) as ingest:
        first, again, conflict = (ingest.receive(Source.from_bytes(d, "x"))
                                  for d in (data, data, changed))
        assert first.status == "converted" and first.sop_uid != other.SOPInstanceUID
        assert again.status == "duplicate", again.reason
        assert conflict.status == "failed" and "different content" in conflict.reason
