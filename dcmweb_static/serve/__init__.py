"""Serving a tree: `dcmweb serve` (Starlette) and `dcmweb nginx-config`, both made from
the URL table in `tree/urls.py`."""
