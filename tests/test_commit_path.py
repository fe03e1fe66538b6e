"""The parent's commit of a staged instance, as cheap as it is (issue 16): the folder an
instance goes into is opened once per series and renamed into by descriptor, and the
files are counted as the worker staged them. These tests fail if either shortcut gives a
different tree, a wrong count, or follows a link swapped in between two commits."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dcmweb_static.errors import TreeLinkError
from dcmweb_static.run.batch import Converter
from dcmweb_static.run.options import ConvertOptions
from dcmweb_static.store import LocalStore, StagedInstance, StagingArea

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SERIES = "studies/1.2/series/1.2.3/instances"


def _staged(staging: StagingArea, label: str, files: dict[str, bytes]) -> StagedInstance:
    staged = staging.new_instance(label)
    for name, data in files.items():
        staged.put(name, data)
    return staged


def _tree_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and ".tmp" not in p.relative_to(root).parts
                  and p.name != ".dcmweb.lock")


def test_the_staged_file_count_follows_every_change_of_the_folder(tmp_path: Path) -> None:
    staging = StagingArea.at(tmp_path / "staging")
    staged = _staged(staging, "1.2.3.4", {"metadata.gz": b"m", "frames/1": b"f",
                                          "frames/2": b"g", "info": b"i",
                                          ".dedup/extracts/a.json.gz": b"a",
                                          ".dedup/record.json.gz": b"r"})
    assert staged.file_count == 6
    staged.remove_file("frames/2")
    staged.remove_folder(".dedup")
    assert staged.file_count == len(list(staged.files())) == 3
    staged.clear()
    assert staged.file_count == 0
    staged.put("metadata.gz", b"m")
    assert staged.file_count == len(list(staged.files())) == 1
    assert StagedInstance(staged.path).file_count is None  # known only to its writer


@pytest.mark.parametrize("options", [
    {}, {"deduplicate": True}, {"part10": True}, {"thumbnails": True, "gzip": False}])
def test_a_fresh_conversion_counts_every_file_it_wrote(options: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = Converter(ConvertOptions(output=out, **options), jobs=2).run([SAMPLES])
    assert summary.count("converted") > 5 and summary.count("failed") == 0
    # unchanged: deduplicated extracts shared by several instances are stored once
    assert summary.objects["written"] == len(_tree_files(out))
    assert summary.objects["removed"] == 0


def test_a_count_the_worker_does_not_know_is_walked(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "out")
    with store.session() as staging:
        staged = _staged(staging, "1.2.3.4", {"metadata.gz": b"m", "frames/1": b"f"})
        store.commit_instance(StagedInstance(staged.path), f"{SERIES}/1.2.3.4")
    assert store.counts.written == 2
    assert _tree_files(tmp_path / "out") == [f"{SERIES}/1.2.3.4/frames/1",
                                             f"{SERIES}/1.2.3.4/metadata.gz"]


def _commit(store: LocalStore, staging: StagingArea, sop: str) -> None:
    store.commit_instance(_staged(staging, sop, {"metadata.gz": sop.encode()}),
                          f"{SERIES}/{sop}")


@pytest.mark.parametrize("swapped", ["studies/1.2", "studies/1.2/series/1.2.3", SERIES])
def test_a_link_swapped_in_between_two_commits_of_a_series_is_refused(
        swapped: str, tmp_path: Path) -> None:
    """The first commit opened the series' folder; its folder (or one above) is then moved
    out of the tree and a link to it left in its place: the next commit of the series
    neither follows the link nor writes into the moved folder."""
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    store = LocalStore(out)
    with store.session() as staging:
        _commit(store, staging, "1.2.3.4")
        shutil.move(str(out / swapped), str(elsewhere))
        (out / swapped).symlink_to(elsewhere, target_is_directory=True)
        before = sorted(str(p) for p in elsewhere.rglob("*"))
        with pytest.raises(TreeLinkError, match="symbolic link"):
            _commit(store, staging, "1.2.3.5")
    assert sorted(str(p) for p in elsewhere.rglob("*")) == before


def test_a_series_folder_moved_away_between_two_commits_is_made_again(tmp_path: Path) -> None:
    """The folder held open was moved within the tree (or out of it): the next instance
    goes to its URL, in a new folder, not into the moved one."""
    out = tmp_path / "out"
    store = LocalStore(out)
    with store.session() as staging:
        _commit(store, staging, "1.2.3.4")
        os.rename(out / SERIES, out / "moved")
        _commit(store, staging, "1.2.3.5")
        shutil.rmtree(out / SERIES)
        _commit(store, staging, "1.2.3.6")
    assert _tree_files(out) == ["moved/1.2.3.4/metadata.gz", f"{SERIES}/1.2.3.6/metadata.gz"]


def test_a_link_or_file_in_place_of_the_instance_is_handled_as_before(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    store = LocalStore(out)
    with store.session() as staging:
        _commit(store, staging, "1.2.3.4")
        (out / SERIES / "1.2.3.5").symlink_to(elsewhere, target_is_directory=True)
        with pytest.raises(TreeLinkError, match="symbolic link"):
            _commit(store, staging, "1.2.3.5")
        _commit(store, staging, "1.2.3.4")  # an instance there: replaced whole
    assert list(elsewhere.iterdir()) == []
    assert store.counts.written == 1 and store.counts.unchanged == 1


def test_the_folders_held_open_are_bounded_and_closed_with_the_session(tmp_path: Path) -> None:
    out = tmp_path / "out"
    store = LocalStore(out)
    opened = len(os.listdir("/proc/self/fd"))
    with store.session() as staging:
        for series in range(20):
            folder = f"studies/1.2/series/1.2.{series}/instances/1.2.{series}.1"
            store.commit_instance(_staged(staging, "1.2.9", {"info": b"i"}), folder)
            assert len(os.listdir("/proc/self/fd")) <= opened + 1 + 8  # + the session lock
    assert len(os.listdir("/proc/self/fd")) == opened
    assert len(_tree_files(out)) == 20
