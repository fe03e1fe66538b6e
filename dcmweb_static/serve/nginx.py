"""`dcmweb nginx-config`: an nginx server block that serves a tree like `dcmweb serve`.

Made from the URL table (`tree.urls.RESOURCES`): one location per resource, rewritten to
its stored name where that differs from the URL. nginx cannot filter QIDO queries:
`/studies?StudyInstanceUID=X` is answered from the study's own record, every other query
with the whole list. Frames are sent with `type="application/octet-stream"`; each part's
own Content-Type names the real media type and transfer syntax.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..encode.multipart import response_content_type
from ..p10.transfer_syntax import OCTET_STREAM
from ..tree import urls

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


def _nginx_name(pattern: str) -> str:
    """A stored-name pattern with nginx variables: `studies/{study}` → `/studies/$study`."""
    return "/" + re.sub(r"{(\w+)}", r"$\1", pattern)


def _types(kind: str) -> str:
    if kind in ("frame", "bulkdata"):
        return f"types {{ }} default_type '{response_content_type(OCTET_STREAM)}';\n"
    return f"types {{ }} default_type {urls.DICOM_JSON};\n"


def _rendered_location(resource: urls.Resource) -> str:
    """A rendered image is stored as `<name>.jpg` or `<name>.png`: nginx takes the one
    there and sends the content type of its suffix."""
    types = " ".join(f"{media} {suffix};" for suffix, media in urls.RENDERED_TYPES.items())
    base = _nginx_name(resource.folder_name.replace(".{ext}", ""))
    tries = " ".join(f"{base}.{suffix}" for suffix in urls.RENDERED_TYPES)
    body = f"types {{ {types} }} default_type application/octet-stream;\ntry_files {tries} =404;"
    return _location("~ " + resource.url_regex().replace("(?P<", "(?<"), body)


def _resource_location(resource: urls.Resource) -> str:
    if resource.kind == "rendered":
        return _rendered_location(resource)
    body = _types(resource.kind)
    target = _nginx_name(resource.folder_name)
    record = urls.STUDY_RECORD
    if record.url == resource.url:
        uid = urls.PARAMETERS["study"]
        body += (f"set $stored {target};\n"
                 f'if ($arg_{record.query} ~ "^(?<study>{uid})$") '
                 f"{{ set $stored {_nginx_name(record.folder_name)}; }}\n"
                 "rewrite ^ $stored break;")
    elif resource.folder_name != resource.url:
        body += f"rewrite ^ {target} break;"
    # nginx wants (?<name>...), the table writes Python's (?P<name>...)
    return _location("~ " + resource.url_regex().replace("(?P<", "(?<"), body)


def nginx_server_block(root: Path, listen: str = "127.0.0.1:8080") -> str:
    root = root.resolve()
    locations = [_resource_location(resource) for resource in urls.RESOURCES]
    locations.append(_location("/", "return 404;"))
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
