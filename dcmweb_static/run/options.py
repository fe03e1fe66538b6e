"""What a conversion is asked to do: small, frozen and picklable (it goes to workers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..encode.dicom_json import BulkThresholds
from ..encode.gzip_stream import GZIP_LEVEL
from ..p10.parse import MAX_INFLATED_SIZE


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
