"""dcmweb-static: DICOM Part 10 files in, a static DICOMweb tree out."""

# The one place the version is written (pyproject.toml reads it): looking it up with
# importlib.metadata would add ~35 ms to every run's start-up.
__version__ = "0.1.0"

__all__ = ["__version__"]
