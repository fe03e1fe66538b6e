"""Built-in transform ``strip-private``: remove private attributes, at every depth.

Option ``strip-private.keep``: private creator names (comma-separated) whose blocks stay.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ...p10.datasets import sequences
from ..hookspecs import hookimpl

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


def private_blocks_kept(ds: Dataset, keep: set[str]) -> set[tuple[int, int]]:
    """(group, block) pairs whose private creator is in `keep`."""
    blocks = set()
    for tag in ds.keys():
        if tag.is_private and 0x0010 <= tag.element <= 0x00FF:
            creator = str(ds[tag].value or "").strip()
            if creator in keep:
                blocks.add((tag.group, tag.element))
    return blocks


def strip_private(ds: Dataset, keep: set[str] | None = None) -> None:
    keep = keep or set()
    blocks = private_blocks_kept(ds, keep) if keep else set()
    for tag in list(ds.keys()):
        if tag.is_private:
            block = tag.element if tag.element <= 0x00FF else tag.element >> 8
            if (tag.group, block) not in blocks:
                del ds[tag]
    for _, items in sequences(ds):
        for item in items:
            strip_private(item, keep)


def transform(ds: Dataset, options: Mapping[str, str]) -> None:
    keep = {name.strip() for name in options.get("keep", "").split(",") if name.strip()}
    strip_private(ds, keep)


@hookimpl
def register_transforms(register):
    register("strip-private", transform, description="Remove private attributes",
             options={"keep": "private creator names (comma-separated) whose blocks stay"})
