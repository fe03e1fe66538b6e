"""What a conversion is asked to do: small, frozen and picklable (it goes to workers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..encode.dicom_json import BulkThresholds
from ..encode.gzip_stream import GZIP_LEVEL
from ..errors import OptionError
from ..p10.parse import MAX_INFLATED_SIZE

#: formats of rendered frames and thumbnails (encode/render.py)
RENDERED_FORMATS = ("jpeg", "png")


@dataclass(frozen=True)
class ConvertOptions:
    """Everything a worker needs; small and picklable."""

    output: Path
    gzip: bool = True
    gzip_level: int = GZIP_LEVEL
    thresholds: BulkThresholds = field(default_factory=BulkThresholds)
    base_url: str | None = None
    #: write the deduplicated form; with `instances` also the per-instance metadata files
    deduplicate: bool = False
    instances: bool = True
    #: named transforms (``--plugin``), applied in this order, and their options
    plugins: tuple[str, ...] = ()
    plugin_options: dict[str, dict[str, str]] = field(default_factory=dict)
    #: a deflated data set inflating to more bytes fails (``--max-inflated-size``)
    max_inflated_size: int = MAX_INFLATED_SIZE
    #: fsspec options for inputs given as object store URLs (``--storage-option``)
    storage_options: dict[str, Any] = field(default_factory=dict)
    #: also write each instance's P10 as a ready multipart file (``--part10``), which a
    #: static server sends for the instance URL (WADO-RS retrieval)
    part10: bool = False
    #: rendered frames (``--rendered``), thumbnails (``--thumbnails``), their format
    rendered: bool = False
    thumbnails: bool = False
    rendered_format: str = "jpeg"

    def __post_init__(self) -> None:
        if self.rendered_format not in RENDERED_FORMATS:  # refused before any worker runs
            raise OptionError(f"rendered format {self.rendered_format!r} is not one of "
                              f"{', '.join(RENDERED_FORMATS)}")
