"""The parent of a batch keeps nothing per input file in memory: input paths are spooled
to a file and the SOP Instance UIDs seen so far live in SQLite, so a run over a million
files needs the parent memory of a run over a hundred."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from dcmweb_static import synthetic as syn
from dcmweb_static.index.aggregate import aggregate, all_studies
from dcmweb_static.plugins.manager import get_plugin_manager
from dcmweb_static.run.batch import Converter
from dcmweb_static.run.inputs import InputSpool
from dcmweb_static.run.options import ConvertOptions
from dcmweb_static.run.sop_registry import BATCH, Committed, SopRegistry
from dcmweb_static.store import LocalStore


def test_input_spool_gives_back_every_path_in_order(tmp_path: Path) -> None:
    names = ["a.dcm", "b with space.dcm", "ü/ñ.dcm", os.fsdecode(b"bad-\xff.dcm"), "x" * 600]
    spool = InputSpool(tmp_path / name for name in names)
    assert len(spool) == len(names)
    expected = [os.fspath(tmp_path / name) for name in names]
    assert list(spool) == expected
    assert list(spool) == expected  # read again from the start
    spool.close()
    assert len(InputSpool([])) == 0 and list(InputSpool([])) == []


def test_sop_registry_keeps_the_winner_and_losers_in_input_order() -> None:
    registry = SopRegistry()
    assert registry.winner("1.2.3") is None
    registry.add("1.2.3", Committed(5, "e.dcm", "aa", 10, "converted"), winner=True)
    registry.add("1.2.3", Committed(9, "i.dcm", "bb", 11, "failed", "other"), winner=False)
    registry.add("1.2.3", Committed(7, "g.dcm", "aa", 10, "duplicate", "same"), winner=False)
    registry.add("1.2.4", Committed(6, "f.dcm", "cc", 12, "converted"), winner=True)
    assert registry.winner("1.2.3") == Committed(5, "e.dcm", "aa", 10, "converted")
    assert [c.index for c in registry.losers("1.2.3")] == [7, 9]
    new = Committed(1, "b.dcm", "bb", 11, "converted")
    registry.replace("1.2.3", new, [registry.winner("1.2.3"), *registry.losers("1.2.3")])
    assert registry.winner("1.2.3") == new
    assert [c.index for c in registry.losers("1.2.3")] == [5, 7, 9]
    assert registry.winner("1.2.4").path == "f.dcm"
    registry.close()


@pytest.mark.parametrize("filter_bits", [8, 1 << 23])  # 8: nearly every lookup a "maybe"
def test_sop_registry_finds_every_added_uid_whether_written_or_pending(filter_bits: int
                                                                         ) -> None:
    """Rows wait in Python until a batch is full; the Bloom filter answers "never seen"
    without a query. Every UID added must be found at once, the others not."""
    registry = SopRegistry(filter_bits)
    count = BATCH * 3 + 7
    for n in range(count):
        uid = f"1.2.{n}"
        assert registry.winner(uid) is None
        registry.add(uid, Committed(n, f"{n}.dcm", None, n, "converted"), winner=True)
        assert registry.winner(uid) == Committed(n, f"{n}.dcm", None, n, "converted")
        if n % 3 == 0:
            registry.add(uid, Committed(n + count, "x.dcm", None, 1, "failed", "r"),
                         winner=False)
            assert [c.index for c in registry.losers(uid)] == [n + count]
    assert all(registry.winner(f"1.2.{n}").index == n for n in range(count))
    assert all(registry.winner(f"1.3.{n}") is None for n in range(count))
    registry.close()


def _many_series(folder: Path, count: int) -> list[str]:
    """`count` small files, ten per series, one series per study: aggregation, which
    keeps one sort key per instance of the series it is writing, stays small."""
    paths = []
    for n in range(count):
        study, series = syn.uid(700 + n // 10), syn.uid(700 + n // 10, 1)
        ds = syn.base_dataset(study, series, syn.uid(700 + n // 10, 1, n % 10 + 1))
        syn.add_pixels(ds, rows=4, columns=4, bits=8)
        paths.append(os.fspath(syn.save(ds, folder / f"{n:05d}.dcm")))
    return paths


def _parent_peak(tmp_path: Path, name: str, paths: list[str]) -> int:
    converter = Converter(ConvertOptions(output=tmp_path / name), jobs=1, keep_results=False)
    tracemalloc.start()
    try:
        summary = converter.run(InputSpool(paths))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.count("converted") == len(paths) and summary.exit_code == 0
    return peak


def test_parent_memory_does_not_grow_with_the_number_of_files(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    paths = _many_series(inputs, 300)
    _parent_peak(tmp_path, "warm-up", paths[:20])  # first-use caches, not per-file state
    few = _parent_peak(tmp_path, "few", paths[:60])
    many = _parent_peak(tmp_path, "many", paths)
    # per file kept in memory, this would be 240 x (path + SOP UID + checksum + record)
    # = about 240 kB more. What does grow is per study (ten files each here): the sets of
    # the studies touched and settled, 24 more UIDs and a resize or two of each (measured
    # 24-55 kB, the same on the previous landing; 900 files: +130 kB)
    print(f"parent peak: 60 files {few} B, 300 files {many} B")
    assert many - few < 96 * 1024, f"{(many - few) / 240:.0f} bytes more per extra file"


def _one_series(folder: Path, count: int) -> Path:
    """`count` files of one series, each with an 8 kB comment in its metadata (kept inline,
    below the bulk data threshold): aggregation's spool sees ~10 kB per instance."""
    folder.mkdir()
    study, series = syn.uid(900), syn.uid(900, 1)
    for n in range(count):
        ds = syn.base_dataset(study, series, syn.uid(900, 1, n + 1))
        ds.ImageComments = f"{n:05d}" * 1600
        syn.add_pixels(ds, rows=4, columns=4, bits=8)
        syn.save(ds, folder / f"{n:05d}.dcm")
    return folder


def _aggregation_peak(tmp_path: Path, name: str, inputs: Path) -> int:
    output = tmp_path / name
    summary = Converter(ConvertOptions(output=output), jobs=1, keep_results=False).run(
        InputSpool([os.fspath(p) for p in sorted(inputs.iterdir())]))
    assert summary.exit_code == 0
    store = LocalStore(output)
    tracemalloc.start()
    try:
        with store.session():
            assert aggregate(store, all_studies(store), get_plugin_manager()) == 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def test_aggregation_memory_does_not_grow_with_the_size_of_a_series(tmp_path: Path) -> None:
    """Aggregation keeps a sort key per instance of the series it writes; the documents
    and QIDO records it read go to a spool that moves to a file past a small size (at
    8 MiB in memory the parent of a 5,000-file series grew 6 MiB)."""
    few = _aggregation_peak(tmp_path, "few", _one_series(tmp_path / "in-few", 60))
    many = _aggregation_peak(tmp_path, "many", _one_series(tmp_path / "in-many", 300))
    print(f"aggregation peak: 60 instances {few} B, 300 instances {many} B")
    # held in memory, the 240 more documents alone would be ~2.4 MB more
    assert many - few < 1536 * 1024, f"{(many - few) / 240:.0f} bytes more per instance"
