"""Content negotiation shared by the GET and POST endpoints of `dcmweb serve`."""

from __future__ import annotations


def accepts(header: str | None, media_type: str) -> bool:
    """Whether an Accept header (RFC 9110 12.5.1) takes `media_type`: no header, `*/*`,
    `image/*` or the type itself, with a quality above 0."""
    if not header or not header.strip():
        return True
    kind = media_type.split("/")[0]
    for item in header.split(","):
        parts = [p.strip() for p in item.split(";")]
        quality = 1.0
        for parameter in parts[1:]:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0 and parts[0].lower() in ("*/*", f"{kind}/*", media_type):
            return True
    return False
