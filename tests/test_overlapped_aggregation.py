"""Aggregation overlapped with conversion (run/batch.py `_aggregate_left_behind`): a study
the input order has moved past is aggregated while the others still convert, and the
tree is the one a full aggregation after the run gives, also when a study gets more files
after it was aggregated early."""

from __future__ import annotations

from pathlib import Path

from dcmweb_static import synthetic as syn
from dcmweb_static.index.aggregate import Aggregator, aggregate, all_studies
from dcmweb_static.plugins.manager import get_plugin_manager
from dcmweb_static.run import batch
from dcmweb_static.run.batch import Converter
from dcmweb_static.run.options import ConvertOptions
from dcmweb_static.store import LocalStore


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".tmp" not in p.parts and p.name != ".lock"}


def _series(folder: Path, study: int, count: int) -> list[Path]:
    return syn.ct_series(folder, count, rows=8, columns=8, study_index=study)


def _check_tree_is_fully_aggregated(out: Path) -> dict[str, bytes]:
    """The tree equals itself after aggregating every study again from scratch."""
    before = _snapshot(out)
    store = LocalStore(out)
    aggregate(store, all_studies(store), get_plugin_manager())
    assert _snapshot(out) == before
    return before


def test_study_left_behind_is_aggregated_during_the_run(tmp_path):
    first = _series(tmp_path / "in" / "a", 700, 12)
    second = _series(tmp_path / "in" / "b", 701, 12)
    out = tmp_path / "out"
    summary = Converter(ConvertOptions(output=out), jobs=2).run([tmp_path / "in"])
    assert summary.counts["converted"] == 24
    assert summary.timings.get("aggregate_overlapped", 0) > 0  # study 700 aggregated early
    tree = _check_tree_is_fully_aggregated(out)
    studies = [name for name in tree if name.count("/") == 2 and name.endswith("metadata.gz")]
    assert len(studies) == 2, studies
    assert len(first) == len(second) == 12


def test_study_touched_again_after_early_aggregation_gets_every_instance(tmp_path,
                                                                          monkeypatch):
    a = _series(tmp_path / "a", 710, 6)
    b = _series(tmp_path / "b", 711, 6)
    # A's files, B's, then A's again: A is left behind, aggregated, then committed to
    order = a[:3] + b + a[3:]
    out = tmp_path / "out"
    calls: list[tuple[str, list[str]]] = []  # the real aggregation, its calls recorded
    early, at_end = Aggregator.update_studies, batch.aggregate
    monkeypatch.setattr(Aggregator, "update_studies", lambda self, *studies: (
        calls.append(("early", list(studies))), early(self, *studies))[1])
    monkeypatch.setattr(batch, "aggregate", lambda store, studies, *args, **kwargs: (
        calls.append(("end", sorted(studies))), at_end(store, studies, *args, **kwargs))[1])
    summary = Converter(ConvertOptions(output=out), jobs=1).run(order)
    assert summary.counts["converted"] == 12
    study = syn.uid(710)
    if ("early", [study]) in calls:  # aggregated before A's last files were committed
        assert calls[-1] == ("end", [study])  # so it is aggregated again at the end
    _check_tree_is_fully_aggregated(out)
    reference = tmp_path / "reference"
    Converter(ConvertOptions(output=reference), jobs=1).run(a)
    ours = {k: v for k, v in _snapshot(out).items() if k.startswith(f"studies/{study}/")}
    theirs = {k: v for k, v in _snapshot(reference).items()
              if k.startswith(f"studies/{study}/")}
    assert ours.keys() == theirs.keys()
    info = [k for k in ours if k.endswith("/info")]  # the source path differs, not the rest
    assert {k: v for k, v in ours.items() if k not in info} == \
        {k: v for k, v in theirs.items() if k not in info}
