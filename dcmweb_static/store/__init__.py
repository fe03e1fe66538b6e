"""The storage seam: every write into a tree goes through a `Store` (see base.py)."""

from .base import Headers, Layout, Store, Writer
from .local import LocalStore, describe_os_error, write_file
from .memory import MemoryStore
from .staging import StagedInstance, StagingArea

__all__ = ["Headers", "Layout", "LocalStore", "MemoryStore", "StagedInstance", "StagingArea",
           "Store", "Writer", "describe_os_error", "write_file"]
