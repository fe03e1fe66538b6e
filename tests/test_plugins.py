"""Plugins: hooks documented, plugin objects registered in tests, entry points (a broken
plugin warns, a misspelt hook fails), result folders, the installable example plugin."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from dcmweb_static import hookspecs, plugins
from dcmweb_static import synthetic as syn
from dcmweb_static.batch import Converter
from dcmweb_static.cli import main
from dcmweb_static.hookspecs import hookimpl
from dcmweb_static.instance import ConvertOptions
from dcmweb_static.results import ResultFile

ROOT = Path(__file__).resolve().parent.parent
HOOKS = [name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "dcmweb_spec")]


def test_every_hook_is_documented() -> None:
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert len(HOOKS) >= 6
    for hook in HOOKS:
        assert re.search(rf"^### {hook}$", docs, re.M), f"hook {hook} not in docs/plugins.md"
        assert f"{hook}(" in docs


@pytest.fixture()
def registered():
    """Register plugin objects for one test; workers are forked and inherit them."""
    pm = plugins.get_plugin_manager()
    added = []

    def register(obj, name):
        pm.register(obj, name=name)
        added.append(obj)
        return obj

    yield register
    for obj in added:
        if pm.is_registered(obj):
            pm.unregister(obj)


class Results:
    seen: list = []

    @hookimpl
    def instance_results(self, instance):
        first = instance.frame(1)
        return [ResultFile("_acme_probe", "frame1.bin", first),
                ResultFile("_acme_probe", "uid.txt", instance.sop_uid.encode())]

    @hookimpl
    def series_results(self, series):
        numbers = [i["00200013"]["Value"][0] for i in series.instances()]
        return [ResultFile("_acme_count", "n.txt", str(series.instance_count).encode()),
                ResultFile("_acme_count", "numbers.json", json.dumps(numbers).encode())]

    @hookimpl
    def study_results(self, study):
        total = sum(s.instance_count for s in study.series)
        return [ResultFile("_acme_count", "n.txt", str(total).encode())]

    @hookimpl
    def instance_converted(self, record):
        Results.seen.append(record["status"])


def _inputs(tmp_path: Path, count: int = 3) -> list[Path]:
    return syn.ct_series(tmp_path / "in", count, rows=8, columns=8, rich=True)


def test_result_folders_at_every_level(registered, tmp_path: Path) -> None:
    registered(Results(), "acme")
    Results.seen = []
    out = tmp_path / "out"
    summary = Converter(ConvertOptions(output=out), jobs=2).run(_inputs(tmp_path))
    assert summary.count("converted") == 3 and Results.seen == ["converted"] * 3
    instances = sorted(p for p in out.glob("studies/*/series/*/instances/*") if p.is_dir())
    for folder in instances:
        assert (folder / "_acme_probe" / "uid.txt").read_text() == folder.name
        body = (folder / "frames" / "1").read_bytes()
        assert (folder / "_acme_probe" / "frame1.bin").read_bytes() in body
    assert (instances[0].parent.parent / "_acme_count" / "n.txt").read_text() == "3"
    numbers = json.loads((instances[0].parent.parent / "_acme_count" / "numbers.json").read_text())
    assert numbers == [1, 2, 3]
    assert (out / "studies" / syn.uid(1) / "_acme_count" / "n.txt").read_text() == "3"


def test_result_folders_survive_reconversion_without_their_plugin(registered, tmp_path):
    inputs = _inputs(tmp_path, 1)
    out = tmp_path / "out"
    plugin = registered(Results(), "acme")
    Converter(ConvertOptions(output=out), jobs=1).run(inputs)
    (folder,) = [p for p in out.glob("studies/*/series/*/instances/*") if p.is_dir()]
    (folder / "_acme_probe" / "extra.txt").write_text("from an earlier run")
    plugins.get_plugin_manager().unregister(plugin)
    Converter(ConvertOptions(output=out), jobs=1).run(inputs)
    assert (folder / "_acme_probe" / "extra.txt").exists()  # kept: plugin did not run
    registered(Results(), "acme2")
    Converter(ConvertOptions(output=out), jobs=1).run(inputs)
    assert not (folder / "_acme_probe" / "extra.txt").exists()  # replaced whole
    assert (folder / "_acme_probe" / "uid.txt").exists()


class Escaper:
    @hookimpl
    def instance_results(self, instance):
        return [ResultFile("../../escape", "x", b"x")]


def test_result_names_cannot_escape(registered, tmp_path: Path) -> None:
    registered(Escaper(), "escaper")
    summary = Converter(ConvertOptions(output=tmp_path / "out"), jobs=1).run(
        _inputs(tmp_path, 1))
    (result,) = summary.results
    assert result.status == "failed" and "result folder '../../escape'" in result.reason
    assert not list(tmp_path.rglob("escape"))
    with pytest.raises(ValueError):
        ResultFile("_ok", "../x", b"")


def shout(ds, options):
    ds.PatientName = str(ds.PatientName).upper() + options.get("suffix", "")


class Shouter:
    @hookimpl
    def register_transforms(self, register):
        register("shout", shout, description="upper-case names")


def test_registered_transform_is_listed_and_applied(registered, tmp_path: Path) -> None:
    registered(Shouter(), "shouter")
    listed = json.loads(CliRunner().invoke(main, ["plugins"]).output)
    assert {"name": "shouter", "version": None, "hooks": ["register_transforms"],
            "transforms": ["shout"]} in listed
    assert any(p["name"] == "deidentify" and p["transforms"] == ["deidentify"] for p in listed)
    out = tmp_path / "out"
    _inputs(tmp_path, 1)
    result = CliRunner().invoke(main, ["convert", str(tmp_path / "in"), "-d", str(out), "-q",
                                       "--plugin", "shout", "--plugin-option", "shout.suffix=!"])
    assert result.exit_code == 0, result.output
    (metadata,) = out.glob("studies/*/series/*/instances/*/metadata.gz")
    import gzip
    document = json.loads(gzip.decompress(metadata.read_bytes()))[0]
    assert document["00100010"]["Value"][0]["Alphabetic"] == "MÜLLER^JÜRGEN"
    assert document["00100010"]["Value"][0]["Phonetic"].endswith("!")


def test_unknown_plugin_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["convert", str(ROOT / "samples"), "-d", str(tmp_path),
                                       "--plugin", "nope"])
    assert result.exit_code == 2 and "no transform named 'nope'" in result.output


def test_duplicate_transform_names_are_an_error(registered) -> None:
    registered(Shouter(), "one")
    registered(Shouter(), "two")
    with pytest.raises(ValueError, match="registered by both"):
        plugins.transforms()


def _fake_distribution(site: Path, name: str, module: str, code: str) -> None:
    (site / f"{module}.py").write_text(textwrap.dedent(code))
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[dcmweb]\n{name} = {module}\n")


def _dcmweb(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(site))
    return subprocess.run([sys.executable, "-m", "dcmweb_static.cli", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_broken_plugin_only_warns(tmp_path: Path) -> None:
    _fake_distribution(tmp_path, "broken", "broken_plugin", "raise ImportError('boom')\n")
    run = _dcmweb(tmp_path, "--help")
    assert run.returncode == 0 and "convert" in run.stdout
    assert "broken" in run.stderr and "boom" in run.stderr
    run = _dcmweb(tmp_path, "plugins")
    assert run.returncode == 0 and "deidentify" in run.stdout


def test_misspelt_hook_fails_loudly(tmp_path: Path) -> None:
    _fake_distribution(tmp_path, "typo", "typo_plugin", """
        from dcmweb_static.hookspecs import hookimpl

        @hookimpl
        def instance_result(instance):
            return []
    """)
    run = _dcmweb(tmp_path, "plugins")
    assert run.returncode != 0 and "instance_result" in run.stderr


def test_example_plugin_installs_and_is_found_by_entry_point(tmp_path: Path) -> None:
    package = ROOT / "plugins" / "dcmweb-example-ai"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--no-deps", str(package)], check=True, timeout=300)
    try:
        listed = subprocess.run([sys.executable, "-m", "dcmweb_static.cli", "plugins"],
                                capture_output=True, text=True, check=True).stdout
        assert any(p["name"] == "example-ai" and p["hooks"] == ["instance_results"]
                   for p in json.loads(listed))
        out = tmp_path / "out"
        subprocess.run([sys.executable, "-m", "dcmweb_static.cli", "convert",
                        str(ROOT / "samples"), "-d", str(out), "-q"], check=True, timeout=300)
        results = sorted(out.glob("studies/*/series/*/instances/*/_example_ai/result.json"))
        assert len(results) == len(list((ROOT / "samples").rglob("*.dcm")))
        ct = [json.loads(p.read_text()) for p in results]
        native = [r for r in ct if "mean" in r["frames"][0]]
        assert native and all(f["min"] <= f["mean"] <= f["max"] for r in native
                              for f in r["frames"])
    finally:
        subprocess.run([*pip, "uninstall", "-y", "dcmweb-example-ai"], check=True)


def test_plugin_adds_a_command(tmp_path: Path) -> None:
    _fake_distribution(tmp_path, "greeter", "greeter_plugin", """
        import click
        from dcmweb_static.hookspecs import hookimpl

        @hookimpl
        def register_commands(cli):
            @cli.command()
            @click.argument("name")
            def hello(name):
                click.echo(f"hello {name}")
    """)
    run = _dcmweb(tmp_path, "hello", "tree")
    assert run.returncode == 0 and run.stdout == "hello tree\n"
