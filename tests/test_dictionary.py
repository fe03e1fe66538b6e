"""p10/dictionary.py answers as pydicom's data dictionary does (`dictionary_VR`, its
repeater masks, `private_dictionary_VR`, the VR `hooks.raw_element_vr` gives an
implicit VR element), from pydicom's own table files loaded by path, without pydicom's
package; when they cannot be loaded, pydicom answers (never a wrong VR)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydicom._dicom_dict import DicomDictionary, RepeatersDictionary
from pydicom._private_dict import private_dictionaries
from pydicom.datadict import dictionary_VR, private_dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.hooks import raw_element_vr
from pydicom.tag import Tag

from dcmweb_static.p10 import dictionary


@pytest.fixture
def by_path(monkeypatch: pytest.MonkeyPatch):
    """The tables loaded by path, as in a process without pydicom (this one has it)."""
    for name in ("pydicom._dicom_dict", "pydicom._private_dict", dictionary.PUBLIC_MODULE,
                 dictionary.PRIVATE_MODULE):
        monkeypatch.delitem(sys.modules, name, raising=False)
    dictionary.public_table.cache_clear()
    dictionary.private_table.cache_clear()
    yield
    dictionary.public_table.cache_clear()
    dictionary.private_table.cache_clear()
    for name in (dictionary.PUBLIC_MODULE, dictionary.PRIVATE_MODULE):
        sys.modules.pop(name, None)


def _pydicom_vr(tag: int) -> str | None:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


def _pydicom_private_vr(tag: int, creator: str) -> str | None:
    try:
        return private_dictionary_VR(tag, creator)
    except KeyError:
        return None


def _repeater_examples() -> list[int]:
    """Tags each repeater mask stands for (its x's as 0, 1, 2, E, F), and their near
    misses (a fixed digit changed), odd groups among them."""
    tags = []
    for mask in RepeatersDictionary:
        for digit in "012EF":
            tag = int(mask.replace("x", digit), 16)
            tags.append(tag)
            tags.extend((tag ^ 0x0001, tag ^ 0x00010000, tag ^ 0x01000000))
    return tags


def test_the_public_table_is_pydicoms(by_path) -> None:
    table = dictionary.public_table()
    assert table is not None and table.entries is not DicomDictionary  # a copy, by path
    assert table.entries == DicomDictionary
    tags = list(DicomDictionary) + _repeater_examples()
    tags += [0x00080000, 0x00280000, 0x00090000, 0x00000000, 0x00020000,  # group lengths
             0x00081233, 0x00190010, 0x00191001, 0x7FE10010, 0xFFFFFFFF, 0x60010010,
             0x50FF0005, 0x60FF3000, 0x10000000, 0x1001FFF0, 0x1010FFFF]
    differing = [hex(tag) for tag in tags if dictionary.public_vr(tag) != _pydicom_vr(tag)]
    assert not differing
    assert dictionary.public_vr(0x60023000) == "OB or OW"  # an ambiguous VR, as pydicom's
    assert dictionary.public_vr(0x60020010) == "US"  # a repeater group
    assert dictionary.public_vr(0x60010010) is None  # an odd group is never a repeater


def test_the_private_table_is_pydicoms(by_path) -> None:
    table = dictionary.private_table()
    assert table is not None and table is not private_dictionaries
    checked = 0
    for creator, entries in private_dictionaries.items():
        for key in entries:
            for block in ("10", "11", "FF"):
                text = key.replace("xx", block)
                if "x" in text or len(text) != 8:
                    continue  # a key pydicom's lookup never forms ('001110xx')
                tag = int(text, 16)
                for probe in (tag, tag ^ 0x01, tag | 0x00000F00):
                    assert dictionary.private_vr(probe, creator) == \
                        _pydicom_private_vr(probe, creator), (creator, hex(probe))
                    checked += 1
            assert dictionary.private_vr(0x00991010, creator) == \
                _pydicom_private_vr(0x00991010, creator)
    assert checked > 30_000
    assert dictionary.private_vr(0x00291010, "SIEMENS CSA HEADER") == "OB"
    assert dictionary.private_vr(0x00291010, "NO SUCH CREATOR") is None
    assert dictionary.private_vr(0x00291010, "") is None


@pytest.mark.parametrize("tag, creator", [
    (0x00090010, None), (0x000900FF, None), (0x00090001, None), (0x00090000, None),
    (0x00091001, "GEMS_IDEN_01"), (0x00091099, "GEMS_IDEN_01"), (0x00091001, "UNKNOWN"),
    (0x00291010, "SIEMENS CSA HEADER"), (0x00291110, "SIEMENS CSA HEADER"),
    (0x00711018, "AGFA-AG_HPState"), (0x00131001, ""), (0x00080000, None),
    (0x00280000, None), (0x00100010, None), (0x60040010, None), (0x00280106, None)])
def test_an_implicit_elements_vr_is_the_one_pydicoms_hook_gives(
        by_path, tag: int, creator: str | None) -> None:
    """`implicit_vr(tag, creator)` against `hooks.raw_element_vr` for the element read
    from an implicit VR file, in a data set holding the creator element (or none)."""
    ds = Dataset()
    if creator:
        ds.add_new((tag & 0xFFFF0000) | (tag & 0xFF00) >> 8, "LO", creator)
    raw = RawDataElement(Tag(tag), None, 0, None, 0, True, True)
    data: dict = {}
    raw_element_vr(raw, data, ds=ds)
    assert dictionary.implicit_vr(tag, creator or "") == data["VR"]


def test_the_ambiguous_vr_tables_are_pydicoms() -> None:
    from pydicom.filewriter import _AMBIGUOUS_OB_OW_TAGS, _AMBIGUOUS_US_SS_TAGS
    from pydicom.tag import _LUT_DESCRIPTOR_TAGS

    assert dictionary.US_OR_SS_BY_PIXEL_REPRESENTATION == \
        set(_AMBIGUOUS_US_SS_TAGS) - set(_LUT_DESCRIPTOR_TAGS)
    assert dictionary.OB_OR_OW_BY_CONTEXT == set(_AMBIGUOUS_OB_OW_TAGS) | {0x7FE00010}
    assert all(dictionary.public_vr(tag) == "US or SS"
               for tag in dictionary.US_OR_SS_BY_PIXEL_REPRESENTATION)


def test_an_unknown_public_tag_and_an_unread_creator_are_left_to_pydicom() -> None:
    assert dictionary.implicit_vr(0x00081233, "") is None  # pydicom warns, calls it UN
    assert dictionary.implicit_vr(0x00291010, None) is None  # a creator not read here


_LOAD = """
import sys
from dcmweb_static.p10 import dictionary
print(dictionary.public_vr(0x00100010), dictionary.public_vr(0x60020010),
      dictionary.private_vr(0x00291010, "SIEMENS CSA HEADER"),
      sorted(m for m in sys.modules if m.startswith("pydicom")),
      sorted(m for m in sys.modules if "pydicom" in m and not m.startswith("pydicom")))
"""


def test_the_tables_load_without_pydicoms_package() -> None:
    done = subprocess.run([sys.executable, "-c", _LOAD], capture_output=True, text=True,
                          timeout=60, check=True)  # dcmweb_static imports no pydicom
    assert done.stdout.split("[")[0].split() == ["PN", "US", "OB"]
    assert "[] [" in done.stdout  # no pydicom module
    assert dictionary.PUBLIC_MODULE in done.stdout and dictionary.PRIVATE_MODULE in done.stdout


_BROKEN = """
import importlib.util, sys
real = importlib.util.spec_from_file_location
importlib.util.spec_from_file_location = lambda *a, **k: None  # a layout it cannot load
from dcmweb_static.p10 import dictionary
print(dictionary.public_table(), dictionary.private_vr(0x00291010, "SIEMENS CSA HEADER"),
      "pydicom" in sys.modules, dictionary.implicit_vr(0x00291010, "SIEMENS CSA HEADER"),
      dictionary.public_vr(0x00100010), "pydicom" in sys.modules)
"""


def test_a_table_that_cannot_be_loaded_leaves_the_answer_to_pydicom() -> None:
    """No table: a private VR is left to the general path (None), the public VR is
    pydicom's (imported as before)."""
    done = subprocess.run([sys.executable, "-c", _BROKEN], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.split() == ["None", "None", "False", "None", "PN", "True"]
