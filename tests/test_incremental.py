"""Incremental publishing into a folder: a re-run of the same inputs rewrites nothing (every
file keeps its inode and mtime, so a sync to a bucket or a CDN sees no change), and the
summary counts what was written, unchanged and removed."""

from __future__ import annotations

import os
from pathlib import Path

from dcmweb_static.run.batch import Converter
from dcmweb_static.run.options import ConvertOptions

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def _files(root: Path) -> dict[str, tuple[int, int]]:
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            if ".tmp" in path.relative_to(root).parts or name == ".dcmweb.lock":
                continue
            info = path.stat()
            found[str(path.relative_to(root))] = (info.st_ino, info.st_mtime_ns)
    return found


def test_a_rerun_into_a_folder_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    options = ConvertOptions(output=out, deduplicate=True, instances=True)
    first = Converter(options, jobs=2).run([SAMPLES])
    assert first.count("converted") > 5 and first.objects["written"] > 0
    before = _files(out)
    again = Converter(options, jobs=2).run([SAMPLES])
    assert again.count("converted") == first.count("converted")
    assert again.objects == {"written": 0, "unchanged": again.objects["unchanged"],
                             "removed": 0}
    assert again.objects["unchanged"] >= len(before) - 1
    assert _files(out) == before


def test_a_changed_option_rewrites_only_what_changed(tmp_path: Path) -> None:
    """--no-gzip after a gzip run: metadata and QIDO files are written in their plain form
    and the .gz forms removed; frames stay as they were."""
    out = tmp_path / "out"
    Converter(ConvertOptions(output=out), jobs=2).run([SAMPLES / "ct"])
    before = _files(out)
    frames = {k: v for k, v in before.items() if "/frames/" in k}
    plain = Converter(ConvertOptions(output=out, gzip=False), jobs=2).run([SAMPLES / "ct"])
    after = _files(out)
    assert frames and all(after[k] == v for k, v in frames.items())
    assert not [k for k in after if k.endswith(".gz")]
    gz = [k for k in before if k.endswith(".gz")]
    assert plain.objects["removed"] == len(gz)
    rewritten = [k for k in before if k in after and after[k] != before[k]]
    assert rewritten and all(k.endswith("/info") for k in rewritten)  # it names the setting
    assert plain.objects["written"] == len(gz) + len(rewritten)
