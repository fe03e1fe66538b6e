"""What plugins see of an instance, series or study, and the result files they return.

Result files go to underscore folders beside the DICOMweb resources. Names are checked
here, so no plugin can write outside the folder it belongs to.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..encode import jsonio
from ..errors import ResultNameError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

FOLDER_NAME = re.compile(r"_[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")




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


def by_folder(results: list[ResultFile]) -> dict[str, list[ResultFile]]:
    """Results grouped by their result folder (each folder is written whole)."""
    folders: dict[str, list[ResultFile]] = {}
    for result in results:
        folders.setdefault(result.folder, []).append(result)
    return folders


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
    """A series as its study/series files are rebuilt. `read_instance(sop)` is the tree
    reader's: the view reads the tree through it, wherever the tree is stored."""

    study_uid: str
    series_uid: str
    sop_uids: list[str]  # sorted by Instance Number
    read_instance: Callable[[str], bytes | None] = field(repr=False)

    @property
    def folder(self) -> str:
        """The series' name in the tree (`studies/<st>/series/<se>`)."""
        return f"studies/{self.study_uid}/series/{self.series_uid}"

    @property
    def instance_count(self) -> int:
        return len(self.sop_uids)

    def instances(self) -> Iterator[dict[str, Any]]:
        """The instance metadata objects, sorted, read one at a time (a series can hold
        thousands: they are not all kept in memory)."""
        for sop in self.sop_uids:
            data = self.read_instance(sop)
            if data is not None:
                yield jsonio.loads(data)


@dataclass
class StudyView:
    study_uid: str
    series: list[SeriesView]

    @property
    def folder(self) -> str:
        """The study's name in the tree (`studies/<st>`)."""
        return f"studies/{self.study_uid}"
