"""The storage seam: every write into a tree goes through a `Store` (see base.py)."""

from .base import Headers, Layout, StagedObject, StagedUpload, Store, WriteCounts, Writer
from .local import LocalStore, describe_os_error, write_file
from .memory import MemoryStore
from .opening import is_url, open_store
from .staging import StagedInstance, StagingArea

__all__ = ["Headers", "Layout", "LocalStore", "MemoryStore", "StagedInstance", "StagedObject",
           "StagedUpload", "StagingArea", "Store", "WriteCounts", "Writer", "describe_os_error",
           "is_url", "open_store", "write_file"]
