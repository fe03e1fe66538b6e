"""`dcmweb nginx-config`: an nginx server block that serves a tree like `dcmweb serve`.

Made from the URL table (`tree.urls.RESOURCES`): one location per resource, rewritten to
its stored name where that differs from the URL. nginx cannot filter QIDO queries:
`/studies?StudyInstanceUID=X` is answered from the study's own record, every other query
with the whole list. Frames are sent with the real media type in the response's
Content-Type (`type="image/jls"`, ...): the instance folder's empty `.frames-<type>` file
says which. The instance URL sends
the instance's `--part10` file (404 without it). nginx cannot join files: a study or
series (WADO-RS retrieval) and several frames in one request (`frames/1,2,3`, 404 here)
need `dcmweb serve` or a small proxy.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..encode.multipart import response_content_type
from ..p10.transfer_syntax import FRAME_MEDIA_TYPES, OCTET_STREAM
from ..tree import names, urls

#: internal locations that send frames of one media type (never reachable from outside)
TYPED_PREFIX = ".dcmweb-frames"

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
    if kind == "dicom":  # the `--part10` file: one application/dicom part
        return f"types {{ }} default_type '{response_content_type(urls.DICOM)}';\n"
    if kind in ("frame", "bulkdata"):
        return f"types {{ }} default_type '{response_content_type(OCTET_STREAM)}';\n"
    return f"types {{ }} default_type {urls.DICOM_JSON};\n"


def _frames_typed(root: Path) -> tuple[str, list[str]]:
    """Frames of the real media type: the frame location tests for the instance's
    `.frames-<type>` file (`tree.names.frames_type_marker`) and passes the request to an
    internal location of that type, which serves the same file with the type named in the
    Content-Type. Returns (the tests, the typed locations)."""
    tests, locations = "", []
    instance = _nginx_name(urls.instance_path("{study}", "{series}", "{sop}"))
    for media_type in FRAME_MEDIA_TYPES:
        marker = names.frames_type_marker(media_type)
        typed = f"/{TYPED_PREFIX}/{marker[len(names.FRAMES_TYPE_PREFIX):]}"
        tests += (f"if (-f $document_root{instance}/{marker}) "
                  f"{{ rewrite ^ {typed}$uri last; }}\n")
        body = (f"internal;\ntypes {{ }} default_type '{response_content_type(media_type)}';\n"
                f"alias {root}/;")
        locations.append(_location(f"^~ {typed}/", body))
    return tests, locations


def _rendered_location(resource: urls.Resource) -> str:
    """A rendered image is stored as `<name>.jpg` or `<name>.png`: nginx takes the one
    there and sends the content type of its suffix."""
    types = " ".join(f"{media} {suffix};" for suffix, media in urls.RENDERED_TYPES.items())
    base = _nginx_name(resource.folder_name.replace(".{ext}", ""))
    tries = " ".join(f"{base}.{suffix}" for suffix in urls.RENDERED_TYPES)
    body = f"types {{ {types} }} default_type application/octet-stream;\ntry_files {tries} =404;"
    return _location("~ " + resource.url_regex().replace("(?P<", "(?<"), body)


def _resource_location(resource: urls.Resource, typed_frames: str = "") -> str:
    if resource.kind == "rendered":
        return _rendered_location(resource)
    body = _types(resource.kind)
    if resource.kind == "frame":
        body += typed_frames
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
    tests, typed = _frames_typed(root)
    locations = [_resource_location(resource, tests) for resource in urls.RESOURCES]
    locations += typed
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
