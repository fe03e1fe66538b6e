"""The plain path (p10/plain.py): a common file converted without pydicom gives exactly
what the general path (pydicom's Dataset) gives, over the whole test corpus; a file it
cannot finish is converted again the general way; a conversion of plain files imports
no pydicom in any process."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from pydicom import config as pydicom_config
from pydicom.charset import python_encoding
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import empty_value_for_VR
from pydicom.uid import UID, AllTransferSyntaxes
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

from dcmweb_static import synthetic as syn
from dcmweb_static.p10 import datasets, parse, plain, raw_walk
from dcmweb_static.plugins.manager import get_plugin_manager
from dcmweb_static.run.instance import InstanceConverter
from dcmweb_static.run.options import ConvertOptions
from dcmweb_static.run.source import Source
from dcmweb_static.store import StagingArea

from . import corpus, implicit_corpus
from .conftest import PYDICOM_DATA, pydicom_corpus

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def _staged(result) -> dict[str, bytes]:
    root = Path(result.staging)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _outcome(converter: InstanceConverter, path: Path, staging: StagingArea) -> tuple:
    result = converter.convert(Source.from_path(path), staging)
    files = _staged(result) if result.staging else {}
    fields = (result.status, result.reason, result.warnings, result.study_uid,
              result.series_uid, result.sop_uid, result.frames, result.sha256,
              result.bytes_in, result.bytes_out, result.staged_files)
    return fields, files


def _converters(**options) -> tuple[InstanceConverter, InstanceConverter]:
    pm = get_plugin_manager()
    plain_one = InstanceConverter(ConvertOptions(output="unused", **options), pm)
    general = InstanceConverter(ConvertOptions(output="unused", **options), pm)
    general.plain = False
    assert plain_one.plain
    return plain_one, general


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, Path]:
    """The generated corpus (every transfer syntax), built once for the module."""
    return corpus.build(tmp_path_factory.mktemp("plain"))


@pytest.fixture(scope="module")
def implicit(tmp_path_factory) -> dict[str, Path]:
    """Implicit VR files with private elements, repeater groups, sequences (tests/
    implicit_corpus.py), built once for the module."""
    return implicit_corpus.build(tmp_path_factory.mktemp("implicit"))


@pytest.fixture(scope="module")
def files(tmp_path_factory, generated: dict[str, Path], implicit: dict[str, Path]) -> list[Path]:
    wide = syn.save(syn.wide_ct_header(syn.uid(900), 256), tmp_path_factory.mktemp("w") / "w.dcm")
    samples = sorted(p for p in SAMPLES.rglob("*.dcm"))
    return pydicom_corpus() + list(generated.values()) + list(implicit.values()) + [wide] \
        + samples


@pytest.mark.parametrize("options", [{}, {"deduplicate": True, "gzip": False},
                                     {"part10": True, "base_url": "https://x.test/dicomweb"}],
                         ids=["default", "dedup-nogzip", "part10-baseurl"])
def test_the_plain_path_publishes_what_the_general_path_publishes(
        files: list[Path], tmp_path: Path, options: dict) -> None:
    plain_one, general = _converters(**options)
    staging = StagingArea.at(tmp_path / "staging")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in files:
            where = path.relative_to(PYDICOM_DATA) if PYDICOM_DATA in path.parents else path
            assert _outcome(plain_one, path, staging) == _outcome(general, path, staging), \
                f"the plain path differs for {where}"
    counts = plain_one.plain_counts
    # most files are plain; some (big endian, deflated, undefined lengths, unusual
    # values...) are started again the general way, and the test covers both
    assert counts["plain"] > 150 and counts["general"] > 5, counts
    assert general.plain_counts["plain"] == 0


def test_implicit_vr_files_take_the_plain_path_unless_they_need_pydicom(
        implicit: dict[str, Path], tmp_path: Path) -> None:
    """Private elements (known and unknown creators, none), repeater groups, US or SS
    beside Pixel Representation, overlay data and defined-length sequences of implicit
    VR files are converted without pydicom, as the general path converts them; US or SS
    beside an empty Pixel Representation, a LUT descriptor, an unknown public tag or a
    creator value out of the plain case still go the general way."""
    staging = StagingArea.at(tmp_path / "staging")
    for name in implicit_corpus.PLAIN + implicit_corpus.GENERAL:
        plain_one, general = _converters(**({"deduplicate": True} if name == "sequences"
                                            else {}))
        outcome = _outcome(plain_one, implicit[name], staging)
        assert outcome == _outcome(general, implicit[name], staging), name
        assert outcome[0][0] == "converted", (name, outcome[0])
        expected = {"plain": 1, "general": 0} if name in implicit_corpus.PLAIN \
            else {"plain": 0, "general": 1}
        assert plain_one.plain_counts == expected, name


def test_a_plain_parse_holds_the_elements_pydicom_reads(files: list[Path]) -> None:
    """Field for field, the plain walk's elements are the raw walk's (pydicom's)."""
    taken = 0
    for path in files:
        with open(path, "rb") as stream, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                general = parse.parse_p10(stream, defer_size=1024)
            except Exception:
                continue
            stream.seek(0)
            found = parse.parse_p10(stream, defer_size=1024, plain=True)
        if not isinstance(found.dataset, plain.PlainDataset):
            continue
        taken += 1
        for name in ("preamble", "file_meta_bytes", "transfer_syntax_uid", "is_implicit_vr",
                     "is_little_endian", "deflated", "dataset_offset", "pixel_data",
                     "file_meta_present"):
            assert getattr(found, name) == getattr(general, name), (path, name)
        for ours, theirs in ((found.dataset, general.dataset),
                             (found.file_meta, general.file_meta)):
            assert list(ours._dict) == list(theirs._dict), path
            for tag, element in ours._dict.items():
                reference = theirs._dict[tag]
                if type(reference).__name__ == "RawDataElement":
                    assert tuple(element) == tuple(reference), (path, tag)
        assert found.dataset._character_set == general.dataset._character_set, path
    assert taken > 100


def test_an_instance_the_plain_path_cannot_finish_is_converted_the_general_way(
        tmp_path: Path) -> None:
    """A value the fast encoder leaves to pydicom (here a UN element) is only found
    while writing: the plain attempt's files are removed and the instance converted
    again from pydicom's Dataset, as the general path converts it."""
    ds = syn.base_dataset(syn.uid(901), syn.uid(901, 1), syn.uid(901, 1, 1))
    ds.add_new(0x00091010, "UN", b"\x01\x02\x03\x04")
    path = syn.save(ds, tmp_path / "un.dcm")
    plain_one, general = _converters()
    staging = StagingArea.at(tmp_path / "staging")
    first = _outcome(plain_one, path, staging)
    assert first == _outcome(general, path, staging)
    assert first[0][0] == "converted"
    assert plain_one.plain_counts == {"plain": 0, "general": 1}
    leftovers = sorted(p.name for p in (tmp_path / "staging").iterdir())
    assert len(leftovers) == 2  # one staged folder per converter: the plain attempt's went


def test_the_plain_path_is_not_taken_when_something_needs_pydicoms_dataset() -> None:
    pm = get_plugin_manager()
    for options in ({"plugins": ("strip-private",)}, {"thumbnails": True}):
        assert not InstanceConverter(ConvertOptions(output="x", **options), pm).plain


def test_the_plain_path_steps_aside_for_pydicom_debugging(tmp_path: Path) -> None:
    path = syn.ct_series(tmp_path, 1, rows=8, columns=8)[0]
    with open(path, "rb") as stream:
        assert isinstance(parse.parse_p10(stream, defer_size=64, plain=True).dataset,
                          plain.PlainDataset)
    pydicom_config.debugging = True
    try:
        with open(path, "rb") as stream:
            found = parse.parse_p10(stream, defer_size=64, plain=True)
    finally:
        pydicom_config.debugging = False
    assert not isinstance(found.dataset, plain.PlainDataset)


def test_the_tables_that_stand_in_for_pydicoms_are_pydicoms() -> None:
    two_letter = {str(vr) for vr in VR if len(str(vr)) == 2}
    assert raw_walk.LONG_LENGTH_VRS | raw_walk.SHORT_LENGTH_VRS == two_letter
    assert raw_walk.LONG_LENGTH_VRS == {str(vr) for vr in EXPLICIT_VR_LENGTH_32}
    for vr in two_letter:
        assert raw_walk.plain_empty_value(vr) == empty_value_for_VR(vr, raw=True), vr
    for name, encoding in plain.PYTHON_ENCODINGS.items():
        assert python_encoding[name] == encoding
    assert plain.DEFAULT_ENCODING == python_encoding[""]
    for keyword, (tag, vr) in datasets.KEYWORDS.items():
        assert (tag_for_keyword(keyword), dictionary_VR(tag)) == (tag, vr)
    syntaxes = [str(uid) for uid in AllTransferSyntaxes] + ["1.2.3.4", "1.2.840.10008.1.2.4.999"]
    for uid in syntaxes:
        known = UID(uid)
        expected = (known.is_implicit_VR, known.is_little_endian) \
            if known.is_transfer_syntax else (False, True)
        assert parse._encoding_of(uid) == expected, uid


def test_a_conversion_of_plain_files_imports_no_pydicom_in_any_process(
        tmp_path: Path, generated: dict[str, Path]) -> None:
    """`-X importtime` reports each module the first time any process imports it (the
    forked workers included): for plain CT slices pydicom is never among them; a big
    endian file brings it in (the check can fail)."""
    syn.ct_series(tmp_path / "ct", 6, rows=32, columns=32, rich=True)  # sequences too
    big_endian = generated["big_endian"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}

    def imported(source: Path, out: str) -> set[str]:
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "dcmweb_static.cli", "convert",
             str(source), "-d", str(tmp_path / out), "-q", "-j", "2"],
            capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}

    modules = imported(tmp_path / "ct", "out")
    assert "dcmweb_static.run.instance" in modules  # the report is read right
    assert not {m for m in modules if m.split(".")[0] == "pydicom"}
    assert "pydicom" in imported(big_endian, "out2")


_AUDITED = """
import runpy, sys
def opened(event, args):
    if event == "open" and "pydicom" in str(args[0]):
        sys.stderr.write(f"pydicom file read: {args[0]}\\n")
sys.addaudithook(opened)  # forked workers keep it
sys.argv = ["dcmweb", "convert", *sys.argv[1:], "-q", "-j", "2"]
runpy.run_module("dcmweb_static.cli", run_name="__main__", alter_sys=True)
"""


def test_a_conversion_of_implicit_vr_files_imports_no_pydicom_in_any_process(
        tmp_path: Path, implicit: dict[str, Path]) -> None:
    """Implicit VR files with private elements, repeaters and sequences: no process
    imports a pydicom module (`-X importtime`), and the only pydicom files any reads are
    its two dictionary tables, byte-compiled (an audit hook on every file opened); a file
    that needs pydicom brings it in (the checks can fail)."""
    import importlib.util

    batch = tmp_path / "batch"
    batch.mkdir()
    for name in implicit_corpus.PLAIN:
        (batch / implicit[name].name).write_bytes(implicit[name].read_bytes())
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}

    def run(source: Path, out: str) -> tuple[set[str], set[str]]:
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", _AUDITED, str(source), "-d",
             str(tmp_path / out)], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        lines = done.stderr.splitlines()
        modules = {line.rsplit("|", 1)[-1].strip() for line in lines
                   if line.startswith("import time:")}
        read = {line.split(": ", 1)[1] for line in lines
                if line.startswith("pydicom file read: ")}
        return modules, read

    modules, read = run(batch, "out")
    assert "dcmweb_static.p10.dictionary" in modules  # the report is read right
    assert not {m for m in modules if m.split(".")[0] == "pydicom"}
    spec = importlib.util.find_spec("pydicom")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations)))
    tables = {folder / "_dicom_dict.py", folder / "_private_dict.py"}
    compiled = {Path(importlib.util.cache_from_source(str(path))) for path in tables}
    # (every distribution's entry points are read for the plugins: metadata, not pydicom)
    assert {Path(path) for path in read if Path(path).is_relative_to(folder)} == \
        {c if c.exists() else t for c, t in zip(sorted(compiled), sorted(tables))}
    modules, read = run(implicit["lut_descriptor"], "out2")
    assert "pydicom" in modules and any("__init__" in path for path in read)


_PARENT_RUN = """
import sys
from pathlib import Path
from dcmweb_static import Converter, ConvertOptions, LocalStore
from dcmweb_static.plugins.manager import get_plugin_manager
out = Path(sys.argv[2])
summary = Converter(ConvertOptions(output=out), jobs=2, store=LocalStore(out),
                    plugin_manager=get_plugin_manager()).run([sys.argv[1]])
assert summary.counts["converted"] > 0, summary
print("pydicom" in sys.modules)
"""


def test_the_parent_imports_pydicom_before_forking_only_when_the_workers_will_need_it(
        tmp_path: Path, generated: dict[str, Path], implicit: dict[str, Path]) -> None:
    """Forked workers share what the parent imported: for a batch whose first file needs
    pydicom (a LUT descriptor's US or SS, a UN element: pydicom's decoding)
    the parent imports it once, before the workers start; for plain files, implicit VR
    ones too (the dictionary is read without pydicom), nobody does."""
    syn.ct_series(tmp_path / "ct", 3, rows=16, columns=16)
    implicit_ct, ambiguous = generated["implicit"], implicit["lut_descriptor"]

    def parent_imported(source: Path, out: str) -> bool:
        done = subprocess.run([sys.executable, "-c", _PARENT_RUN, str(source),
                               str(tmp_path / out)], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip() == "True"

    ds = syn.base_dataset(syn.uid(902), syn.uid(902, 1), syn.uid(902, 1, 1))
    ds.add_new(0x00091010, "UN", b"\x01\x02\x03\x04")  # parsed plain, encoded by pydicom
    with_un = syn.save(ds, tmp_path / "un.dcm")
    assert not parent_imported(tmp_path / "ct", "plain")
    assert not parent_imported(implicit_ct, "implicit")
    assert parent_imported(ambiguous, "ambiguous")
    assert parent_imported(with_un, "un")


def test_the_parents_trial_reads_no_large_first_file(tmp_path: Path,
                                                     implicit: dict[str, Path]) -> None:
    """The parent judges the first input by encoding it: only a small one (TRIAL_BYTES,
    TRIAL_ELEMENTS), so a hostile first file cannot take the parent's memory."""
    from dcmweb_static.run import instance

    options, pm = ConvertOptions(output="unused"), get_plugin_manager()
    ambiguous = implicit["lut_descriptor"]  # an implicit VR file that needs pydicom
    assert instance.workers_need_pydicom(options, pm, str(ambiguous))
    assert not instance.workers_need_pydicom(options, pm, str(implicit["private_known"]))
    big = tmp_path / "big.dcm"
    big.write_bytes(ambiguous.read_bytes() + bytes(instance.TRIAL_BYTES))  # trailing bytes
    assert not instance.workers_need_pydicom(options, pm, str(big))
    many = syn.base_dataset(syn.uid(903), syn.uid(903, 1), syn.uid(903, 1, 1))
    for n in range(instance.TRIAL_ELEMENTS):
        many.add_new(0x00111000 + n, "LO", "")  # a plain file, too many elements to judge
    many.add_new(0x00131010, "UN", b"\x01\x02")  # would need pydicom
    wide = syn.save(many, tmp_path / "many.dcm")
    assert wide.stat().st_size < instance.TRIAL_BYTES
    assert not instance.workers_need_pydicom(options, pm, str(wide))
    assert instance.workers_need_pydicom(options, pm, "/nonexistent/first.dcm") is False
