"""What plugins see of an instance, series or study, and the result files they return.

Result files go to underscore folders beside the DICOMweb resources. Names are checked
here, so no plugin can write outside the folder it belongs to.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from . import jsonio
from .errors import ConversionError
from .fsutil import atomic_write, tree_dirs

FOLDER_NAME = re.compile(r"_[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class ResultNameError(ConversionError, ValueError):
    """A plugin asked for a folder or file name that could leave its folder."""


@dataclass(frozen=True)
class ResultFile:
    """One file for ``<level folder>/<folder>/<name>``: folder like ``_vendor_name``."""

    folder: str
    name: str
    data: bytes

    def __post_init__(self) -> None:
        if not FOLDER_NAME.fullmatch(self.folder):
            raise ResultNameError(
                f"result folder {self.folder!r} must be '_' then letters, digits, '_' or '-'")
        if not FILE_NAME.fullmatch(self.name) or ".." in self.name:
            raise ResultNameError(f"result file name {self.name!r} is not allowed")
        if not isinstance(self.data, bytes):
            raise ResultNameError(f"result {self.folder}/{self.name} data must be bytes")


def write_results(root: Path, level_folder: Path, results: list[ResultFile]) -> list[str]:
    """Write results under `level_folder` (inside the tree `root`), each folder replaced
    whole; returns folder names."""
    folders: dict[str, list[ResultFile]] = {}
    for result in results:
        folders.setdefault(result.folder, []).append(result)
    for name, files in folders.items():
        target = level_folder / name
        tree_dirs(root, target)  # a link there is refused before anything is removed
        for stale in target.glob("*"):
            if stale.is_file() and stale.name not in {f.name for f in files}:
                stale.unlink()
        for result in files:
            atomic_write(root, target / result.name, result.data)
    return sorted(folders)


@dataclass
class InstanceView:
    study_uid: str
    series_uid: str
    sop_uid: str
    transfer_syntax_uid: str
    dataset: Dataset
    metadata: dict[str, Any]
    frame_count: int
    folder: Path  # the staged instance folder; read-only for plugins
    _frame_reader: Any = field(default=None, repr=False)

    def frame(self, number: int) -> bytes:
        """Frame `number` (1-based) as stored: the bytes of ``frames/<number>``'s part."""
        if not 1 <= number <= self.frame_count:
            raise IndexError(f"frame {number} of {self.frame_count}")
        return self._frame_reader(number)


@dataclass
class SeriesView:
    study_uid: str
    series_uid: str
    sop_uids: list[str]  # sorted by Instance Number
    root: Path

    @property
    def folder(self) -> Path:
        return self.root / "studies" / self.study_uid / "series" / self.series_uid

    @property
    def instance_count(self) -> int:
        return len(self.sop_uids)

    def instances(self) -> Iterator[dict[str, Any]]:
        """The instance metadata objects, sorted, read one at a time (a series can hold
        thousands: they are not all kept in memory)."""
        from .aggregate import instance_document

        for sop in self.sop_uids:
            data = instance_document(self.root, self.study_uid, self.series_uid, sop)
            if data is not None:
                yield jsonio.loads(data)


@dataclass
class StudyView:
    study_uid: str
    series: list[SeriesView]
    folder: Path
