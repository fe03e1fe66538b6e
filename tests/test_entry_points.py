"""The plugin search reads entry points as importlib.metadata does, without importing it."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from dcmweb_static.plugins import entry_points as ep

GROUP = "dcmweb"


def _dist(site: Path, folder: str, entry_points: str | None, metadata: str = "METADATA",
          version: str = "1.0") -> None:
    info = site / folder
    info.mkdir(parents=True)
    (info / metadata).write_text(f"Metadata-Version: 2.1\nName: x\nVersion: {version}\n\n"
                                 "Version: not this one\n")
    if entry_points is not None:
        (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


def _ours() -> list[tuple]:
    return [(e.name, e.value, e.group, e.version) for e in ep.entry_points(GROUP)]


def _importlibs() -> list[tuple]:
    return [(e.name, e.value, e.group, e.dist.version if e.dist else None)
            for e in importlib.metadata.entry_points(group=GROUP)]


@pytest.fixture
def sites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    monkeypatch.setattr(sys, "path", [str(first), str(tmp_path / "missing"), str(second)])
    return first, second


def test_the_entry_points_are_importlib_metadatas(sites: tuple[Path, Path]) -> None:
    first, second = sites
    _dist(first, "alpha-1.0.dist-info", """
        # a comment
        stray = before any section

        [console_scripts]
        alpha = alpha.cli:main
          [dcmweb]
          one = alpha_plugin
        two=alpha_plugin:hooks.Impl [extra]
        [other]
        three = not_ours
    """, version="1.0")
    _dist(first, "Beta_Pkg-2.0.dist-info", "[dcmweb]\nbeta = beta_plugin\none = again\n",
          version="2.0")
    _dist(second, "beta.pkg-3.0.dist-info", "[dcmweb]\nshadowed = by_first\n")
    _dist(first, "gamma.egg-info", "[dcmweb]\ngamma = gamma_plugin\n", metadata="PKG-INFO",
          version="0.5")
    _dist(first, "delta-1.0.dist-info", None)
    (first / "epsilon-1.0.dist-info").write_text("a file, not a folder")
    _dist(second, "epsilon-2.0.dist-info", "[dcmweb]\nepsilon = hidden_by_the_file\n")
    _dist(second, "zeta-4.1.dist-info", "[dcmweb]\nzeta = zeta_plugin\n", version="4.1")
    (first / "legacy.egg-info").write_text("Metadata-Version: 1.0\nName: legacy\nVersion: 1\n")
    _dist(second, "legacy-2.0.dist-info", "[dcmweb]\nlegacy = hidden_by_the_egg_info_file\n")
    (first / "notes.txt").write_text("not a distribution")
    ours = _ours()
    assert ours == _importlibs()
    assert sorted(name for name, *_ in ours) == ["beta", "gamma", "one", "one", "two", "zeta"]
    assert dict((name, version) for name, _, _, version in ours)["gamma"] == "0.5"


def test_what_it_does_not_read_itself_importlib_metadata_answers(
        sites: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, _ = sites
    _dist(first, "alpha-1.0.dist-info", "[dcmweb]\nalpha = alpha_plugin\n")
    archive = tmp_path / "plugins.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("zipped-1.0.dist-info/METADATA", "Name: zipped\nVersion: 1.0\n")
        zipped.writestr("zipped-1.0.dist-info/entry_points.txt", "[dcmweb]\nzipped = z\n")
    monkeypatch.setattr(sys, "path", [*sys.path, str(archive)])
    assert [e.name for e in ep.entry_points(GROUP)] == ["alpha", "zipped"] == \
        [e.name for e in importlib.metadata.entry_points(group=GROUP)]
    _dist(first, "Upper-1.0.DIST-INFO", "[dcmweb]\nupper = upper_plugin\n")
    assert sorted(e.name for e in ep.entry_points(GROUP)) == ["alpha", "upper", "zipped"]
    assert [e.name for e in ep.entry_points(GROUP)] == \
        [e.name for e in importlib.metadata.entry_points(group=GROUP)]


def test_a_line_importlib_metadata_cannot_read_is_an_error_here_too(
        sites: tuple[Path, Path]) -> None:
    _dist(sites[0], "alpha-1.0.dist-info", "[other]\nno equals sign\n")
    with pytest.raises(TypeError):
        list(importlib.metadata.entry_points(group=GROUP))
    with pytest.raises(ValueError, match="no equals sign"):
        ep.entry_points(GROUP)


def test_an_entry_point_loads_what_its_value_names(sites: tuple[Path, Path]) -> None:
    first, _ = sites
    (first / "named_plugin.py").write_text("class Hooks:\n    class Impl:\n        pass\n")
    _dist(first, "named-1.0.dist-info",
          "[dcmweb]\nnamed = named_plugin:Hooks.Impl [extra]\nwhole = named_plugin\n")
    try:
        loaded = {e.name: e.load() for e in ep.entry_points(GROUP)}
        assert loaded == {e.name: e.load() for e in importlib.metadata.entry_points(group=GROUP)}
        assert loaded["named"].__qualname__ == "Hooks.Impl"
    finally:
        sys.modules.pop("named_plugin", None)


def test_no_command_imports_importlib_metadata() -> None:
    """The reason for this module: the CLI's start-up without importlib.metadata."""
    run = subprocess.run([sys.executable, "-X", "importtime", "-c",
                          "import sys; from dcmweb_static.cli.main import main; "
                          "from dcmweb_static.plugins.manager import get_plugin_manager; "
                          "get_plugin_manager(); sys.argv = ['dcmweb', '--version']; main()"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "version" in run.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines()}
    assert "dcmweb_static.plugins.entry_points" in imported
    assert "importlib.metadata" not in imported
