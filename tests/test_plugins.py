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

from dcmweb_static import synthetic as syn
from dcmweb_static.cli.main import main
from dcmweb_static.plugins import hookspecs
from dcmweb_static.plugins import manager as plugins
from dcmweb_static.plugins.api import ResultFile
from dcmweb_static.plugins.hookspecs import hookimpl
from dcmweb_static.run.batch import Converter
from dcmweb_static.run.options import ConvertOptions

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
    from dcmweb_static.cli.main import plugin_manager

    pm = plugin_manager()  # the command line's: CliRunner runs use it, and so do Converters
    added, names = [], []

    def register(obj, name):
        pm.register(obj, name=name)
        added.append(obj)
        names.append(name)
        return obj

    register.pm = pm
    yield register
    for obj in added:
        if pm.is_registered(obj):
            pm.unregister(obj)
    for name in names:
        getattr(pm, "broken", {}).pop(name, None)


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
    summary = Converter(ConvertOptions(output=out), jobs=2,
        plugin_manager=registered.pm).run(_inputs(tmp_path))
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
    Converter(ConvertOptions(output=out), jobs=1, plugin_manager=registered.pm).run(inputs)
    (folder,) = [p for p in out.glob("studies/*/series/*/instances/*") if p.is_dir()]
    (folder / "_acme_probe" / "extra.txt").write_text("from an earlier run")
    registered.pm.unregister(plugin)
    Converter(ConvertOptions(output=out), jobs=1, plugin_manager=registered.pm).run(inputs)
    assert (folder / "_acme_probe" / "extra.txt").exists()  # kept: plugin did not run
    registered(Results(), "acme2")
    Converter(ConvertOptions(output=out), jobs=1, plugin_manager=registered.pm).run(inputs)
    assert not (folder / "_acme_probe" / "extra.txt").exists()  # replaced whole
    assert (folder / "_acme_probe" / "uid.txt").exists()


class Escaper:
    @hookimpl
    def instance_results(self, instance):
        return [ResultFile("../../escape", "x", b"x")]


def test_result_names_cannot_escape(registered, tmp_path: Path) -> None:
    registered(Escaper(), "escaper")
    summary = Converter(ConvertOptions(output=tmp_path / "out"), jobs=1,
        plugin_manager=registered.pm).run(
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
    registered(PreparedShouter(), "shouter")
    listed = json.loads(CliRunner().invoke(main, ["plugins"]).output)
    assert {"name": "shouter", "version": None, "hooks": ["register_transforms"],
            "transforms": ["shout"],
            "options": {"shout": {"suffix": "appended to the phonetic name"}}} in listed
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


def test_duplicate_transform_name_leaves_the_later_plugin_out(registered) -> None:
    registered(Shouter(), "one")
    registered(Shouter(), "two")
    found = plugins.transforms(registered.pm)
    assert found["shout"].plugin == "one"
    assert "already registered by plugin 'one'" in registered.pm.broken["two"]


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
        from dcmweb_static import hookimpl

        @hookimpl
        def register_commands(cli):
            @cli.command()
            @click.argument("name")
            def hello(name):
                click.echo(f"hello {name}")
    """)
    run = _dcmweb(tmp_path, "hello", "tree")
    assert run.returncode == 0 and run.stdout == "hello tree\n"


# --- a broken plugin is named once and left out; everything else works -------------------

GREETER = """
    import click
    from dcmweb_static import hookimpl

    @hookimpl
    def register_commands(cli):
        @cli.command()
        @click.argument("name")
        def hello(name):
            click.echo(f"hello {name}")
"""
BROKEN = {
    "typo": ("""
        from dcmweb_static import hookimpl

        @hookimpl
        def register_transformz(register):
            pass
    """, "register_transformz"),
    "badarg": ("""
        from dcmweb_static import hookimpl

        @hookimpl
        def instance_results(inst):
            return []
    """, "PluginValidationError: Plugin 'badarg' for hook 'instance_results'; hookimpl"),
    "noimport": ("raise ImportError('boom')\n", "ImportError: boom"),
    "badtransforms": ("""
        from dcmweb_static import hookimpl

        @hookimpl
        def register_transforms(register):
            raise RuntimeError('no transforms today')
    """, "failed in register_transforms: RuntimeError: no transforms today"),
    "badcommands": ("""
        from dcmweb_static import hookimpl

        @hookimpl
        def register_commands(cli):
            raise RuntimeError('no commands today')
    """, "failed in register_commands: RuntimeError: no commands today"),
}


def _one_warning(stderr: str, name: str, reason: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert f"plugin {name!r}" in lines[0] and reason in lines[0], stderr
    assert "Warning" not in stderr and "warn(" not in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_plugin_is_named_once_and_left_out(name: str, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    code, reason = BROKEN[name]
    _fake_distribution(site, name, f"{name}_plugin", code)
    _fake_distribution(site, "greeter", "greeter_plugin", GREETER)
    run = _dcmweb(site, "plugins")
    assert run.returncode == 0, run.stderr
    _one_warning(run.stderr, name, reason)
    listed = {p["name"]: p for p in json.loads(run.stdout)}
    assert reason in listed[name]["broken"] and listed[name]["hooks"] == []
    assert "broken" not in listed["greeter"] and "broken" not in listed["deidentify"]
    run = _dcmweb(site, "hello", "tree")  # the other plugin's command still works
    assert run.returncode == 0 and run.stdout == "hello tree\n"
    _one_warning(run.stderr, name, reason)
    run = _dcmweb(site, "convert", str(ROOT / "samples"), "-d", str(tmp_path / "out"), "-q",
                  "-j", "2", "--plugin", "strip-private")
    assert run.returncode == 0, run.stderr
    _one_warning(run.stderr, name, reason)  # once per run, not once per worker or file
    assert list((tmp_path / "out").glob("studies/*/series/*/instances/*/metadata.gz"))


# --- plugin failures name the plugin and the hook ---------------------------------------

def explode(ds, options):
    raise ValueError("bad pixels")


class Exploder:
    @hookimpl
    def register_transforms(self, register):
        register("explode", explode, description="always fails")


class FailingInstanceResults:
    @hookimpl
    def instance_results(self, instance):
        raise ValueError("model missing")


def test_failing_transform_names_plugin_and_transform(registered, tmp_path: Path) -> None:
    registered(Exploder(), "exploder")
    summary = Converter(ConvertOptions(output=tmp_path / "out", plugins=("explode",)),
                        jobs=1, plugin_manager=registered.pm).run(_inputs(tmp_path, 1))
    (result,) = summary.results
    assert result.status == "failed"
    assert result.reason == ("plugin 'exploder' failed in transform 'explode': "
                             "ValueError: bad pixels")


def test_failing_instance_results_names_plugin_and_hook(registered, tmp_path: Path) -> None:
    registered(FailingInstanceResults(), "example-ai")
    summary = Converter(ConvertOptions(output=tmp_path / "out"), jobs=1,
        plugin_manager=registered.pm).run(_inputs(tmp_path, 1))
    (result,) = summary.results
    assert result.status == "failed"
    assert result.reason == ("plugin 'example-ai' failed in instance_results: "
                             "ValueError: model missing")


class FailingParentHooks:
    @hookimpl
    def series_results(self, series):
        raise ValueError("series boom")

    @hookimpl
    def study_results(self, study):
        raise KeyError("study boom")

    @hookimpl
    def instance_converted(self, record):
        raise RuntimeError("export down")


def test_failing_parent_hooks_are_reported_and_the_run_goes_on(registered, tmp_path) -> None:
    registered(Results(), "acme")  # a working plugin beside the failing one
    registered(FailingParentHooks(), "flaky")
    Results.seen = []
    out = tmp_path / "out"
    _inputs(tmp_path, 3)
    report = tmp_path / "report.json"
    run = CliRunner().invoke(main, ["convert", str(tmp_path / "in"), "-d", str(out),
                                    "--report", str(report)])
    assert run.exit_code == 1, run.output
    assert "Traceback" not in run.output and "unexpected" not in run.output
    assert "plugin 'flaky' failed in series_results" in run.output
    assert "plugin 'flaky' failed in study_results: KeyError: 'study boom'" in run.output
    assert "plugin 'flaky' failed in instance_converted" in run.output
    assert "RuntimeError: export down" in run.output
    assert Results.seen == ["converted"] * 3  # the other plugin saw every file
    assert (out / "studies" / syn.uid(1) / "_acme_count" / "n.txt").read_text() == "3"
    assert (out / "studies" / "index.json.gz").exists()
    data = json.loads(report.read_text())
    assert data["counts"]["converted"] == 3
    failures = {(f["plugin"], f["hook"]): f for f in data["plugin_failures"]}
    assert failures[("flaky", "instance_converted")]["count"] == 3
    assert failures[("flaky", "series_results")]["count"] == 1
    assert "series boom" in failures[("flaky", "series_results")]["reason"]


def test_failing_series_hook_in_index_exits_1(registered, tmp_path: Path) -> None:
    out = tmp_path / "out"
    Converter(ConvertOptions(output=out), jobs=1,
        plugin_manager=registered.pm).run(_inputs(tmp_path, 1))
    registered(FailingParentHooks(), "flaky")
    run = CliRunner().invoke(main, ["index", str(out)])
    assert run.exit_code == 1
    assert "plugin 'flaky' failed in series_results: ValueError: series boom" in run.output


# --- declared options and prepare -------------------------------------------------------

def prepare_shout(options, output):
    if options.get("suffix") == "?":
        raise plugins.OptionError("suffix '?' is not shouting")
    options.setdefault("suffix", "!!")
    return [f"shout: suffix {options['suffix']} for {output.name}"]


class PreparedShouter:
    @hookimpl
    def register_transforms(self, register):
        register("shout", shout, description="upper-case names",
                 options={"suffix": "appended to the phonetic name"}, prepare=prepare_shout)


def _shout_run(tmp_path: Path, *options: str):
    _inputs(tmp_path, 1)
    return CliRunner().invoke(main, ["convert", str(tmp_path / "in"), "-d",
                                     str(tmp_path / "out"), "--plugin", "shout", *options])


def test_options_are_declared_listed_and_checked(registered, tmp_path: Path) -> None:
    registered(PreparedShouter(), "shouter")
    listed = {p["name"]: p for p in json.loads(CliRunner().invoke(main, ["plugins"]).output)}
    assert listed["shouter"]["options"] == {"shout": {"suffix": "appended to the phonetic name"}}
    assert set(listed["deidentify"]["options"]["deidentify"]) == {"secret", "uids", "date-shift"}
    run = _shout_run(tmp_path, "--plugin-option", "shout.sufix=!")
    assert run.exit_code == 2
    assert "'sufix'" in run.output and "valid keys: suffix" in run.output


def test_undeclared_options_are_refused(registered, tmp_path: Path) -> None:
    registered(Shouter(), "shouter")  # declares no options
    run = _shout_run(tmp_path, "--plugin-option", "shout.suffix=!")
    assert run.exit_code == 2 and "takes no options" in run.output


def test_prepare_fills_defaults_sees_output_and_refuses(registered, tmp_path: Path) -> None:
    registered(PreparedShouter(), "shouter")
    run = _shout_run(tmp_path, "--plugin-option", "shout.suffix=?")
    assert run.exit_code == 2 and "suffix '?' is not shouting" in run.output
    assert not (tmp_path / "out").exists()
    run = _shout_run(tmp_path)
    assert run.exit_code == 0, run.output
    assert "shout: suffix !! for out" in run.output
    import gzip
    (metadata,) = (tmp_path / "out").glob("studies/*/series/*/instances/*/metadata.gz")
    document = json.loads(gzip.decompress(metadata.read_bytes()))[0]
    assert document["00100010"]["Value"][0]["Phonetic"].endswith("!!")
