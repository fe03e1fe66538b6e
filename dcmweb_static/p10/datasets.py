"""Helpers for walking pydicom datasets without reading deferred values."""

from __future__ import annotations

from collections.abc import Iterator

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag


def element_vr(ds: Dataset, tag: int) -> str:
    """The VR of an element as stored, or from the dictionary (implicit VR files)."""
    element = ds.get_item(tag, keep_deferred=True)
    vr = getattr(element, "VR", None)
    if vr:
        return vr
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def sequence_items(ds: Dataset, tag: int) -> list[Dataset]:
    """The items of sequence `tag` (converting the raw element if needed)."""
    return list(ds[tag].value or [])


def sequences(ds: Dataset) -> Iterator[tuple[BaseTag, list[Dataset]]]:
    """Each sequence element of `ds` (this level only) with its items."""
    for tag in list(ds.keys()):
        if element_vr(ds, tag) == "SQ":
            yield tag, sequence_items(ds, tag)
