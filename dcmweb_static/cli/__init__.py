"""The `dcmweb` command line: parses options, runs the library, reports."""

from .main import main

__all__ = ["main"]
