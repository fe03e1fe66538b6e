"""Built-in transforms: deidentify (PS3.15 E.1-1 Basic Profile) and strip-private, checked
over every file of the output tree (metadata, bulk data, QIDO, study/series, info)."""

from __future__ import annotations

import datetime
import gzip
import json
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dcmweb_static import synthetic as syn
from dcmweb_static.cli.main import main
from dcmweb_static.plugins.builtin.deidentify import action_table

# values a marker can take per VR, each unique to the tag it is put in
MARKERS = {
    "AE": "M{t}", "CS": "M{t}", "LO": "MARK-{t}", "SH": "MARK-{t}", "LT": "MARK-{t} text",
    "ST": "MARK-{t} text", "UT": "MARK-{t} text", "UC": "MARK-{t}", "PN": "Mark^N{t}",
    "UI": "1.2.999.{d}", "DA": "1977{mmdd}", "DT": "1977{mmdd}070707", "TM": "07{mmdd}",
    "AS": "077Y", "UR": "http://mark/{t}", "DS": "7{n:04d}.25", "IS": "77{n:04d}",
}
KEPT_SEQUENCE = 0x00082218  # Anatomic Region Sequence: not in Table E.1-1, kept


def _marker(tag: int, vr: str, index: int) -> str:
    mmdd = f"{1 + index % 12:02d}{1 + index % 28:02d}"
    return MARKERS[vr].format(t=f"{tag:08X}", d=tag, mmdd=mmdd, n=index)


def marked_dataset(index: int) -> tuple[Dataset, dict[int, str]]:
    """A CT header with every Table E.1-1 attribute of a string VR set to a marker, also
    inside an item of a sequence the profile keeps."""
    ds = syn.base_dataset(syn.uid(400), syn.uid(400, 1), syn.uid(400, 1, index),
                          instance_number=index)
    syn.add_pixels(ds, rows=8, columns=8, bits=8)
    exact, _ = action_table()
    markers: dict[int, str] = {}
    inner = Dataset()
    for n, tag in enumerate(sorted(exact)):
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            continue
        if vr not in MARKERS or tag >> 16 in (0, 2) or tag in (0x0020000D, 0x0020000E, 0x00080018):
            continue
        value = _marker(tag, vr, n)
        ds.add_new(tag, vr, value)
        inner.add_new(tag, vr, value)
        markers[tag] = value
    ds[KEPT_SEQUENCE].value.append(inner)
    return ds, markers


@pytest.fixture()
def marked(tmp_path: Path):
    files, markers = [], {}
    for i in (1, 2, 3):
        ds, m = marked_dataset(i)
        markers.update(m)
        files.append(syn.save(ds, tmp_path / "in" / f"m{i}.dcm"))
    return files, markers


def tree_text(root: Path) -> dict[str, bytes]:
    """Every file of the tree as bytes, gzip files decompressed."""
    out = {}
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            out[str(path.relative_to(root))] = gzip.decompress(data) if path.suffix == ".gz" \
                else data
    return out


def convert(inputs, out: Path, *options: str) -> None:
    result = CliRunner().invoke(main, ["convert", *map(str, inputs), "-d", str(out), "-q",
                                       *options])
    assert result.exit_code == 0, result.output


def test_no_marked_value_survives_anywhere(marked, tmp_path: Path) -> None:
    files, markers = marked
    out = tmp_path / "out"
    convert(files, out, "--plugin", "deidentify", "--plugin-option", "deidentify.secret=s1")
    assert len(markers) > 150
    tree = tree_text(out)
    originals = {syn.uid(400), syn.uid(400, 1)} | {syn.uid(400, 1, i) for i in (1, 2, 3)}
    for name, data in tree.items():
        for value in list(markers.values()) + sorted(originals) + ["Müller", "DCMWEB-001"]:
            assert value.encode() not in data, f"{value!r} survived in {name}"
    # still a valid tree: one study, one series, three instances, new UIDs everywhere
    (study,) = json.loads(tree["studies/index.json.gz"])
    assert study["00201208"]["Value"] == [3] and study["00201206"]["Value"] == [1]
    new_study = study["0020000D"]["Value"][0]
    assert new_study.startswith("2.25.") and len(new_study) <= 64
    metadata = json.loads(tree[f"studies/{new_study}/metadata.gz"])
    for document in metadata:
        assert document["00120062"]["Value"] == ["YES"]
        codes = document["00120064"]["Value"]
        assert codes[0]["00080100"]["Value"] == ["113100"]
        assert "00091010" not in document  # private attributes removed
    # references inside sequences map to the same new UIDs as the instances they name
    sops = {d["00080018"]["Value"][0] for d in metadata}
    referenced = {d["00082218"]["Value"][0]["00081140"]["Value"][0]["00081155"]["Value"][0]
                  for d in metadata}
    assert len(referenced) == 3 and not referenced & sops  # '<sop>.1' mapped, not kept
    info = json.loads(tree[next(k for k in tree if k.endswith("/info"))])
    assert info["transforms"] == ["deidentify"] and "file_meta" not in info


def test_same_secret_same_uids_other_secret_other_uids(marked, tmp_path: Path) -> None:
    files, _ = marked
    def study_uids(out: Path) -> list[str]:
        return sorted(p.name for p in (out / "studies").iterdir() if p.is_dir())
    convert(files[:1], tmp_path / "a", "--plugin", "deidentify",
            "--plugin-option", "deidentify.secret=s1")
    convert(files[1:], tmp_path / "a", "--plugin", "deidentify",
            "--plugin-option", "deidentify.secret=s1")
    convert(files, tmp_path / "b", "--plugin", "deidentify",
            "--plugin-option", "deidentify.secret=s2")
    assert len(study_uids(tmp_path / "a")) == 1  # two runs, one study
    assert study_uids(tmp_path / "a") != study_uids(tmp_path / "b")
    series = list((tmp_path / "a").glob("studies/*/series/*/instances/*/metadata.gz"))
    assert len(series) == 3


def test_retain_uids_and_date_shift(marked, tmp_path: Path) -> None:
    files, markers = marked
    out = tmp_path / "out"
    convert(files, out, "--plugin", "deidentify", "--plugin-option", "deidentify.uids=keep",
            "--plugin-option", "deidentify.date-shift=-10")
    (folder,) = [p for p in (out / "studies").iterdir() if p.is_dir()]
    assert folder.name == syn.uid(400)
    document = json.loads(gzip.decompress((folder / "metadata.gz").read_bytes()))[0]
    original = datetime.datetime.strptime(markers[0x00080020], "%Y%m%d")
    shifted = (original - datetime.timedelta(days=10)).strftime("%Y%m%d")
    assert document["00080020"]["Value"] == [shifted]
    codes = [c["00080100"]["Value"][0] for c in document["00120064"]["Value"]]
    assert codes == ["113100", "113110", "113107"]
    assert document["00280303"]["Value"] == ["MODIFIED"]


def test_pixel_data_is_unchanged(marked, tmp_path: Path) -> None:
    files, _ = marked
    out = tmp_path / "out"
    convert(files[:1], out, "--plugin", "deidentify", "--plugin-option", "deidentify.secret=x")
    (frame,) = out.glob("studies/*/series/*/instances/*/frames/1")
    assert pydicom.dcmread(files[0]).PixelData in frame.read_bytes()


def test_strip_private_everywhere_and_allow_list(tmp_path: Path) -> None:
    ds = syn.base_dataset(syn.uid(410), syn.uid(410, 1), syn.uid(410, 1, 1))
    syn.add_pixels(ds, rows=8, columns=8, bits=8)
    block = ds.private_block(0x0011, "KEEP ME", create=True)
    block.add_new(0x01, "LO", "kept value")
    item = Dataset()
    item.add_new(0x00191010, "LO", "NESTED PRIVATE")
    item.add_new(0x00191011, "LO", "nested private value")
    ds.ReferencedStudySequence = Sequence([item])
    source = syn.save(ds, tmp_path / "in" / "p.dcm")
    out = tmp_path / "out"
    convert([source], out, "--plugin", "strip-private")
    for name, data in tree_text(out).items():
        if name.endswith(("metadata", "metadata.gz", ".json", ".json.gz")) or \
                name.endswith(".gz"):
            for document in _documents(data):
                assert not _private_tags(document), name
    assert not list(out.rglob("bulkdata/0009*"))
    keep = tmp_path / "keep"
    convert([source], keep, "--plugin", "strip-private",
            "--plugin-option", "strip-private.keep=KEEP ME")
    (metadata,) = keep.glob("studies/*/series/*/instances/*/metadata.gz")
    document = json.loads(gzip.decompress(metadata.read_bytes()))[0]
    assert _private_tags(document) == {"00110010", "00111001"}
    assert document["00111001"]["Value"] == ["kept value"]


def _documents(data: bytes) -> list[dict]:
    parsed = json.loads(data)
    return parsed if isinstance(parsed, list) else [parsed]


def _private_tags(document: dict) -> set[str]:
    found = set()
    for tag, element in document.items():
        if int(tag[:4], 16) % 2:
            found.add(tag)
        if element.get("vr") == "SQ":
            for item in element.get("Value", []):
                found |= _private_tags(item)
    return found


def _run(inputs, out: Path, *options: str):
    return CliRunner().invoke(main, ["convert", *map(str, inputs), "-d", str(out), *options])


def test_unknown_or_misspelt_option_is_a_usage_error(marked, tmp_path: Path) -> None:
    files, _ = marked
    run = _run(files, tmp_path / "out", "-q", "--plugin", "deidentify",
               "--plugin-option", "deidentify.sercet=abc")
    assert run.exit_code == 2
    assert "'sercet'" in run.output and "valid keys: date-shift, secret, uids" in run.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", ["uids=maybe", "date-shift=soon", "secret="])
def test_bad_option_values_are_usage_errors(marked, tmp_path: Path, option: str) -> None:
    files, _ = marked
    run = _run(files, tmp_path / "out", "-q", "--plugin", "deidentify",
               "--plugin-option", f"deidentify.{option}")
    assert run.exit_code == 2, run.output
    assert "deidentify" in run.output


def test_rerun_without_secret_is_refused(marked, tmp_path: Path) -> None:
    files, _ = marked
    out = tmp_path / "out"
    first = _run(files[:2], out, "-q", "--plugin", "deidentify")
    assert first.exit_code == 0, first.output
    assert first.output == ""  # -q may hide the notice: nothing in the tree to clash with
    studies = sorted((out / "studies").iterdir())
    again = _run(files, out, "-q", "--plugin", "deidentify")  # -q cannot hide this
    assert again.exit_code == 2
    assert "already holds instances de-identified by deidentify" in again.output
    assert "deidentify.secret" in again.output
    assert sorted((out / "studies").iterdir()) == studies  # nothing written
    # a given secret, or the original UIDs kept, cannot make a second copy: allowed
    assert _run(files[2:], out, "-q", "--plugin", "deidentify",
                "--plugin-option", "deidentify.secret=s1").exit_code == 0
    assert _run(files[2:], out, "-q", "--plugin", "deidentify",
                "--plugin-option", "deidentify.uids=keep").exit_code == 0


def test_no_secret_notice_without_quiet(marked, tmp_path: Path) -> None:
    files, _ = marked
    run = _run(files[:1], tmp_path / "out", "--plugin", "deidentify")
    assert run.exit_code == 0
    assert "deidentify: no secret given" in run.output


def test_cli_no_longer_knows_the_secret() -> None:
    import dcmweb_static.cli as cli
    for source in Path(cli.__file__).parent.glob("*.py"):
        assert "deidentify" not in source.read_text().replace("e.g. deidentify", ""), source
