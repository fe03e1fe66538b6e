"""The storage seam's two implementations behave alike (the conversion-level check that a
memory store gets the same bytes as a folder is in test_architecture.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcmweb_static.store import LocalStore, MemoryStore, Store


@pytest.fixture(params=["local", "memory"])
def store(request, tmp_path: Path) -> Store:
    return LocalStore(tmp_path / "tree") if request.param == "local" else MemoryStore()


def test_put_get_children_delete(store: Store) -> None:
    with store.session():
        store.put("studies/1.2/index.json", b"[1]")
        with store.writer("studies/1.2/metadata") as out:
            out.write(b"[")
            out.write(b"]")
        store.put("studies/1.3/index.json", b"[2]")
    assert store.get("studies/1.2/index.json") == b"[1]"
    assert store.get("studies/1.2/metadata") == b"[]"
    assert store.get("studies/9/index.json") is None
    assert store.children("studies") == ["1.2", "1.3"]
    assert store.children("studies/1.2") == ["index.json", "metadata"]
    with store.session():
        store.delete("studies/1.2/index.json")
        store.delete("studies/1.2/nothing")
        assert store.get("studies/1.2/index.json") is None
        store.delete_folder("studies/1.3")
    assert store.children("studies") == ["1.2"]


def test_a_failed_writer_leaves_the_old_bytes(store: Store) -> None:
    with store.session():
        store.put("a/b", b"old")
        with pytest.raises(RuntimeError), store.writer("a/b") as out:
            out.write(b"new, half")
            raise RuntimeError("stop")
    assert store.get("a/b") == b"old"
    if isinstance(store, LocalStore):  # nothing of the failed write is left anywhere
        assert sorted(p.name for p in store.root.rglob("*")) == [".dcmweb.lock", "a", "b"]


def test_commit_replaces_whole_and_keeps_result_folders(store: Store) -> None:
    with store.session() as staging:
        first = staging.new_instance("1.2.3")
        first.put("metadata", b"one")
        with first.open("frames/1") as out:
            out.write(b"f1")
        first.put("frames/2", b"f2")
        first.put("_vendor_x/result.json", b"{}")
        first.put("_vendor_y/result.json", b"old y")
        store.commit_instance(first, "studies/1/series/2/instances/1.2.3")
        second = staging.new_instance("1.2.3")
        second.put("metadata", b"two")
        second.put("frames/1", b"g1")
        second.put("_vendor_y/result.json", b"new y")
        store.commit_instance(second, "studies/1/series/2/instances/1.2.3")
    folder = "studies/1/series/2/instances/1.2.3"
    assert store.get(f"{folder}/metadata") == b"two"
    assert store.get(f"{folder}/frames/1") == b"g1"
    assert store.get(f"{folder}/frames/2") is None  # no stale frame of the earlier one
    assert store.get(f"{folder}/_vendor_x/result.json") == b"{}"
    assert store.get(f"{folder}/_vendor_y/result.json") == b"new y"


def test_lock_is_exclusive(store: Store) -> None:
    with store.lock() as held:
        assert held
        if isinstance(store, LocalStore):  # flock: another open file description
            with LocalStore(store.root).lock(wait=False) as other:
                assert other is False
    with store.lock(wait=False) as again:
        assert again


def test_local_store_refuses_links_below_the_root(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "tree"
    root.mkdir()
    (root / "studies").symlink_to(elsewhere)
    store = LocalStore(root)
    with store.session(), pytest.raises(OSError, match="symbolic link"):
        store.put("studies/1/index.json", b"x")
    assert list(elsewhere.iterdir()) == []


def test_object_layout_commit_uploads_metadata_last_and_drops_stale_keys(tmp_path: Path) -> None:
    """The object layout: staged folder names become URL keys with their headers, the
    metadata is stored after every frame, and the earlier conversion's other keys go
    (its plugin result folders stay)."""
    from dcmweb_static.encode.multipart import BOUNDARY, content_type, part_header
    from dcmweb_static.run.commit import commit_instance

    store = MemoryStore(layout="object")
    folder = "studies/1.2/series/1.3/instances/1.4"
    with store.session() as staging:
        first = staging.new_instance("1.4")
        header = part_header(content_type("image/jls", "1.2.840.10008.1.2.4.80"))
        for n in (1, 2, 3):
            first.put(f"frames/{n}", header + b"frame")
        first.put("metadata.gz", b"gz")
        first.put("info", b"{}")
        first.put("_vendor_x/result.json", b"{}")
        commit_instance(store, first, "1.2", "1.3", "1.4")
        keys = [k for k in store.objects if k.startswith(folder + "/")]
        assert keys[-1] == f"{folder}/metadata" and keys[-2] == f"{folder}/info"
        meta = store.objects[f"{folder}/metadata"].headers
        assert (meta.content_type, meta.content_encoding) == ("application/dicom+json", "gzip")
        assert store.objects[f"{folder}/frames/2"].headers.content_type == (
            'multipart/related; type="image/jls"; transfer-syntax=1.2.840.10008.1.2.4.80; '
            f"boundary={BOUNDARY}")
        second = staging.new_instance("1.4")
        second.put("frames/1", store.objects[f"{folder}/frames/1"].data)
        second.put("metadata.gz", b"gz2")
        written = store.counts.written
        commit_instance(store, second, "1.2", "1.3", "1.4")
    assert sorted(k for k in store.objects if k.startswith(folder)) == [
        f"{folder}/_vendor_x/result.json", f"{folder}/frames/1", f"{folder}/metadata"]
    assert store.counts.written == written + 1  # frame 1 is unchanged
    assert store.counts.removed == 3  # frames 2 and 3, info


def test_local_rerun_keeps_unchanged_files(tmp_path: Path) -> None:
    """Incremental publishing in a folder: an equal file is not replaced (its inode and
    mtime stay), a changed one is, and the counts say so."""
    store = LocalStore(tmp_path / "tree")
    folder = "studies/1/series/2/instances/3"
    with store.session() as staging:
        store.put("studies/index.json", b"[1]")
        first = staging.new_instance("3")
        first.put("metadata", b"one")
        first.put("frames/1", b"f1")
        first.put("frames/2", b"f2")
        store.commit_instance(first, folder)
    kept = (store.root / folder / "frames/1").stat()
    old_meta = (store.root / folder / "metadata").stat()
    listing = (store.root / "studies/index.json").stat()
    store.counts.__init__()
    with store.session() as staging:
        store.put("studies/index.json", b"[1]")
        second = staging.new_instance("3")
        second.put("metadata", b"two")
        second.put("frames/1", b"f1")
        store.commit_instance(second, folder)
    again = (store.root / folder / "frames/1").stat()
    assert (again.st_ino, again.st_mtime_ns) == (kept.st_ino, kept.st_mtime_ns)
    assert (store.root / "studies/index.json").stat().st_mtime_ns == listing.st_mtime_ns
    assert (store.root / folder / "metadata").stat().st_ino != old_meta.st_ino
    assert store.get(f"{folder}/metadata") == b"two"
    assert not (store.root / folder / "frames/2").exists()
    assert store.counts.as_dict() == {"written": 1, "unchanged": 2, "removed": 1}


_HOLD_A_SESSION = """
import sys, time
from dcmweb_static.store import MemoryStore
with MemoryStore().session() as area:
    with open(area.path + "/spooled.dcm", "wb") as out:
        out.write(b"x" * 1000)
    print(area.path, flush=True)
    time.sleep(600)
"""


def test_a_killed_runs_local_staging_is_removed_by_the_next_session(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that is no folder stages in the system's temp folder: a process killed
    with SIGKILL leaves its staging folder there, and the next session (of any process)
    removes it; a live process's is kept, and so is what is no staging folder."""
    import subprocess
    import sys
    import tempfile

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    holders = [subprocess.Popen([sys.executable, "-c", _HOLD_A_SESSION], text=True,
                                stdout=subprocess.PIPE) for _ in range(2)]
    try:
        dead, alive = (Path(h.stdout.readline().strip()) for h in holders)  # type: ignore
        assert (dead / "spooled.dcm").is_file() and alive.is_dir()
        assert dead.parent == alive.parent == tmp_path
        holders[0].kill()
        holders[0].wait()
        other = tmp_path / "dcmweb-staging-not-ours-to-judge"  # no lock: left alone
        other.mkdir()
        assert dead.is_dir()
        with MemoryStore().session() as area:
            assert Path(area.path).parent == tmp_path
            assert not dead.exists()
            assert alive.is_dir() and other.is_dir()
        assert not Path(area.path).exists()
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
