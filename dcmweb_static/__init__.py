"""dcmweb-static: DICOM Part 10 files in, a static DICOMweb tree out."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dcmweb-static")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
