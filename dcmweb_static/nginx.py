"""`dcmweb nginx-config`: an nginx server block that serves a tree like `dcmweb serve`.

nginx cannot filter QIDO queries: `/studies?StudyInstanceUID=X` is answered from the
study's own index file, every other query with the whole list. Frames are sent with
`type="application/octet-stream"`; each part's own Content-Type names the real media type
and transfer syntax.
"""

from __future__ import annotations

from pathlib import Path

from .multipart import response_content_type
from .transfer_syntax import OCTET_STREAM

CORS = (
    "add_header Access-Control-Allow-Origin * always;\n"
    "add_header Access-Control-Allow-Methods 'GET, HEAD, OPTIONS' always;\n"
    "add_header Access-Control-Allow-Headers '*' always;\n"
    "add_header Access-Control-Expose-Headers "
    "'Content-Encoding, Content-Length, Content-Range, Content-Type' always;\n"
    "if ($request_method = OPTIONS) { return 204; }\n"
)


def _location(match: str, body: str) -> str:
    inner = (CORS + body).strip().replace("\n", "\n        ")
    return f"    location {match} {{\n        {inner}\n    }}\n"


def nginx_server_block(root: Path, listen: str = "127.0.0.1:8080") -> str:
    root = root.resolve()
    multipart = response_content_type(OCTET_STREAM)
    json_types = "types { } default_type application/dicom+json;\n"
    uid = "[0-9.]+"
    locations = [
        _location("= /studies", json_types +
                  "set $qido /studies/index.json;\n"
                  f'if ($arg_StudyInstanceUID ~ "^({uid})$") '
                  "{ set $qido /studies/$arg_StudyInstanceUID/index.json; }\n"
                  "rewrite ^ $qido break;"),
        _location(f"~ ^/studies/(?<st>{uid})/series$", json_types +
                  "rewrite ^ /studies/$st/series/index.json break;"),
        _location(f"~ ^/studies/(?<st>{uid})/series/(?<se>{uid})/instances$", json_types +
                  "rewrite ^ /studies/$st/series/$se/instances/index.json break;"),
        _location(f"~ ^/studies/{uid}(/series/{uid}(/instances/{uid})?)?/metadata$",
                  json_types),
        _location(f"~ ^/studies/{uid}/series/{uid}/instances/{uid}/frames/[0-9]+$",
                  f"types {{ }} default_type '{multipart}';"),
        _location(f"~ ^/studies/{uid}/series/{uid}/instances/{uid}/bulkdata/[0-9A-Fa-f.]+$",
                  f"types {{ }} default_type '{multipart}';"),
        _location("/", "return 404;"),
    ]
    return (
        "# dcmweb static DICOMweb tree: " + str(root) + "\n"
        "server {\n"
        f"    listen {listen};\n"
        f"    root {root};\n"
        "    gzip_static always;   # metadata.gz / index.json.gz for metadata / index.json\n"
        "    gunzip on;            # decompressed for clients that do not accept gzip\n"
        "    sendfile on;\n"
        + "".join(locations) +
        "}\n"
    )
