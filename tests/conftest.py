from __future__ import annotations

import os
import shutil
from pathlib import Path

import pydicom
import pytest

PYDICOM_DATA = Path(pydicom.__file__).parent / "data"


def require_tool(name: str) -> str:
    """dcmtk tools are installed by .ci/run; on CI a missing tool fails, elsewhere skips."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} not found: .ci/run installs Debian's dcmtk")
        pytest.skip(f"{name} not installed (apt-get install dcmtk)")
    return path


def pydicom_corpus() -> list[Path]:
    """Every file of pydicom's bundled test data that pydicom itself can read."""
    found = []
    for folder in ("test_files", "charset_files"):
        for path in sorted((PYDICOM_DATA / folder).rglob("*")):
            if not path.is_file():
                continue
            try:
                ds = pydicom.dcmread(path)
                ds.keys()
            except Exception:
                continue
            found.append(path)
    return found
