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
