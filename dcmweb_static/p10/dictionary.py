"""The data dictionary pydicom reads implicit VR files with, without importing pydicom.

An implicit VR element carries no VR: pydicom takes it from its data dictionary
(`datadict.dictionary_VR`, the repeater masks of `RepeatersDictionary` for the public
tags; for a private tag `hooks.raw_element_vr`: LO for a private creator, the private
dictionary's entry under the block's creator, else UN). `import pydicom.datadict` runs
pydicom's `__init__` (208 modules, 0.2–0.35 CPU-s a process), but the two tables are
plain files without imports, `pydicom/_dicom_dict.py` and `pydicom/_private_dict.py`:
they are loaded here by path, under private module names, from the installed pydicom
(its compiled `.pyc` reused), so the answers are always the installed pydicom's and no
copy of the tables can drift from the general path. A process that has imported pydicom
already uses pydicom's own table modules (entries added at run time included).

Anything that fails (no pydicom, another layout, a table of another shape) leaves the
answer to pydicom: `public_vr` imports `pydicom.datadict` as before, `private_vr` says
nothing (None: the caller takes the general path). `tests/test_dictionary.py` holds the
answers equal to pydicom's for every entry of both tables and the repeater groups.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

#: the private names the two table files are loaded under (never `pydicom.*`: pydicom,
#: imported later, loads its own)
PUBLIC_MODULE = "_dcmweb_static_pydicom_dicom_dict"
PRIVATE_MODULE = "_dcmweb_static_pydicom_private_dict"
#: the VRs an element may have (PS3.5 6.2): a table entry of any other text ("OB or OW",
#: "NONE", "OB_OW") is left to pydicom by the callers
VRS = frozenset("AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV "
                "TM UC UI UL UN UR US UT UV".split())

#: pydicom's `filewriter._AMBIGUOUS_US_SS_TAGS` but its `tag._LUT_DESCRIPTOR_TAGS`: the
#: "US or SS" elements it reads as US when the data set's Pixel Representation is 0,
#: else SS (a test holds them equal to pydicom's)
US_OR_SS_BY_PIXEL_REPRESENTATION = frozenset((
    0x00189810, 0x00221452, 0x00280104, 0x00280105, 0x00280106, 0x00280107, 0x00280108,
    0x00280109, 0x00280110, 0x00280111, 0x00280120, 0x00280121, 0x00409211, 0x00409216,
    0x00603004, 0x00603006))
#: the "OB or OW" elements pydicom decides by other elements (Pixel Data, pydicom's
#: `filewriter._AMBIGUOUS_OB_OW_TAGS`, the waveform data); it reads the others (overlay
#: data among them) as OW in an implicit VR data set
OB_OR_OW_BY_CONTEXT = frozenset((0x7FE00010, 0x54000110, 0x54000112, 0x5400100A, 0x54001010))
PIXEL_REPRESENTATION = 0x00280103


@dataclass(frozen=True)
class PublicTable:
    """pydicom's `DicomDictionary`, and its `datadict.masks` in the same order (the
    first repeater mask that matches answers, as `mask_match` iterates them)."""

    entries: dict[int, tuple[Any, ...]]
    masks: tuple[tuple[int, int, str], ...]  # (the mask's bits, its fixed positions, VR)


def _table_module(file_name: str, private_name: str) -> ModuleType:
    """pydicom's table module `pydicom/<file_name>`: pydicom's own when this process has
    imported it, else the file executed by path under `private_name` (its byte-compiled
    form reused: the loader is the ordinary source loader)."""
    loaded = sys.modules.get(f"pydicom.{file_name[:-3]}")
    if loaded is not None:
        return loaded
    known = sys.modules.get(private_name)
    if known is not None:
        return known
    spec = importlib.util.find_spec("pydicom")  # finds the folder, runs no pydicom code
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("pydicom is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / file_name
    table_spec = importlib.util.spec_from_file_location(private_name, path)
    if table_spec is None or table_spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(table_spec)
    table_spec.loader.exec_module(module)
    sys.modules[private_name] = module  # loaded once per process, seen by tests
    return module


@functools.cache
def public_table() -> PublicTable | None:
    """The public table, or None when it cannot be loaded (then pydicom answers)."""
    try:
        module = _table_module("_dicom_dict.py", PUBLIC_MODULE)
        entries, repeaters = module.DicomDictionary, module.RepeatersDictionary
        masks = []
        for mask_x, entry in repeaters.items():  # what pydicom's datadict computes
            masks.append((int(mask_x.replace("x", "0"), 16),
                          int("".join("F0"[c == "x"] for c in mask_x), 16), entry[0]))
        if not isinstance(entries, dict) or not all(isinstance(vr, str) for *_, vr in masks):
            return None
        return PublicTable(entries, tuple(masks))
    except Exception:  # noqa: BLE001 - any failure: pydicom answers instead
        return None


@functools.cache
def private_table() -> dict[str, dict[str, tuple[Any, ...]]] | None:
    """pydicom's `private_dictionaries` (creator → masked tag text → entry), or None."""
    try:
        table = _table_module("_private_dict.py", PRIVATE_MODULE).private_dictionaries
    except Exception:  # noqa: BLE001 - any failure: the general path answers
        return None
    return table if isinstance(table, dict) else None


def public_vr(tag: int) -> str | None:
    """pydicom's `datadict.dictionary_VR(tag)` (entries, then the repeater masks for an
    even group), None where it raises KeyError."""
    table = public_table()
    if table is None:  # pydicom answers, as it did before this module
        from pydicom.datadict import dictionary_VR

        try:
            return dictionary_VR(tag)
        except KeyError:
            return None
    entry = table.entries.get(tag)
    if entry is not None:
        return entry[0]
    if (tag >> 16) & 1:
        return None
    for fixed, positions, vr in table.masks:
        if (tag ^ fixed) & positions == 0:
            return vr
    return None


def private_vr(tag: int, creator: str) -> str | None:
    """pydicom's `datadict.private_dictionary_VR(tag, creator)`: the entry of the first
    key of the element's own, its block-free and its group-and-block-free forms; None
    where it raises KeyError, or when the table cannot be loaded."""
    table = private_table()
    if table is None:
        return None
    entries = table.get(creator)
    if entries is None:
        return None
    group, element = f"{tag >> 16:04X}", f"{tag & 0xFFFF:04X}"
    for key in (group + element, f"{group}xx{element[2:]}", f"{group[:2]}xxxx{element[2:]}"):
        entry = entries.get(key)
        if entry is not None:
            return entry[0]
    return None


def implicit_vr(tag: int, creator: str | None = None) -> str | None:
    """The VR pydicom's `hooks.raw_element_vr` gives the implicit VR element `tag`, or
    None where the caller must leave it to pydicom (an unknown public tag: pydicom warns
    and calls it UN; a private tag whose creator element `creator` is None for: the
    caller could not read it; a private table that cannot be loaded). `creator`: the
    value of the block's private creator element as pydicom converts it, "" when the
    data set has none."""
    vr = public_vr(tag)
    if vr is not None:
        return vr
    group, element = tag >> 16, tag & 0xFFFF
    if not group & 1:
        return "UL" if element == 0 else None  # a group length; else pydicom warns
    if 0x0010 <= element < 0x0100:
        return "LO"  # a private creator
    if not element & 0xFF00:
        return "UN"  # (gggg,0000-000F): no block, no creator
    if creator is None:
        return None
    if not creator:
        return "UN"
    if private_table() is None:
        return None  # no table: not "UN", which a known element is not
    return private_vr(tag, creator) or "UN"


def creator_tag(tag: int) -> int:
    """The private creator element of private element `tag`'s block (pydicom's
    `tag.group << 16 | tag.element >> 8`)."""
    return (tag & 0xFFFF0000) | (tag & 0xFFFF) >> 8
