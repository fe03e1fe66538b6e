"""dcmweb-static: DICOM Part 10 files in, a static DICOMweb tree out.

The public API, importable from here: ``Converter`` and ``ConvertOptions`` (convert a
batch), ``Source`` (a file, bytes or a stream to convert), ``Ingest`` (receive instances one at
a time: the C-STORE listener, STOW-RS), the stores (``LocalStore``,
``MemoryStore``), ``get_plugin_manager`` and, for plugin authors, ``hookimpl`` and the
types plugins see. They are imported on first use, so ``import dcmweb_static`` stays
cheap (worker start-up, ``dcmweb --version``).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# The one place the version is written (pyproject.toml reads it): looking it up with
# importlib.metadata would add ~35 ms to every run's start-up.
__version__ = "0.1.0"

_PUBLIC = {
    "Converter": "dcmweb_static.run.batch",
    "ConvertOptions": "dcmweb_static.run.options",
    "InstanceResult": "dcmweb_static.run.result",
    "RunSummary": "dcmweb_static.run.report",
    "Source": "dcmweb_static.run.source",
    "Ingest": "dcmweb_static.receive.ingest",
    "BulkThresholds": "dcmweb_static.encode.dicom_json",
    "LocalStore": "dcmweb_static.store",
    "MemoryStore": "dcmweb_static.store",
    "Store": "dcmweb_static.store",
    "get_plugin_manager": "dcmweb_static.plugins.manager",
    "hookimpl": "dcmweb_static.plugins.hookspecs",
    "OptionError": "dcmweb_static.errors",
    "PluginManager": "dcmweb_static.plugins.manager",
    "ResultFile": "dcmweb_static.plugins.api",
    "InstanceView": "dcmweb_static.plugins.api",
    "SeriesView": "dcmweb_static.plugins.api",
    "StudyView": "dcmweb_static.plugins.api",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'dcmweb_static' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
