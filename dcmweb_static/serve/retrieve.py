"""WADO-RS retrieval of DICOM objects in `dcmweb serve` (PS3.18 10.4, 8.7.3): a study, a
series or an instance as `multipart/related; type="application/dicom"`, one part per
instance, each rebuilt from the tree (`tree.part10.open_instance`) and streamed, so a
whole study is never in memory.

Nothing is transcoded: each part is the instance in its stored transfer syntax (named in
the part's Content-Type). An Accept that names another syntax is answered 406.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from starlette.responses import Response, StreamingResponse

from ..encode.multipart import BOUNDARY, dicom_message
from ..encode.p10_writer import RebuildError
from ..errors import ConversionError, InvalidUIDError
from ..tree import urls
from ..tree.part10 import open_instance, select

#: the response's Content-Type, the same as nginx sends for a `--part10` file
CONTENT_TYPE = f'multipart/related; type="{urls.DICOM}"; boundary={BOUNDARY}'
ANY = "*"
_PARAMETER = re.compile(r';\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)')


class NotAcceptable(Exception):
    """No media range of the Accept header can be given unchanged."""


def _media_ranges(accept: str) -> Iterator[tuple[str, dict[str, str]]]:
    """(media range, parameters) of each element of an Accept header; commas inside quoted
    parameter values do not split."""
    for element in re.findall(r'(?:[^,"]|"(?:[^"\\]|\\.)*")+', accept):
        media, _, rest = element.partition(";")
        parameters = {key.lower(): value.strip('"')
                      for key, value in _PARAMETER.findall(";" + rest)}
        yield media.strip().lower(), parameters


def accepted_syntaxes(accept: str | None) -> set[str]:
    """The transfer syntaxes the client takes in `multipart/related; type="application/dicom"`
    parts: `{"*"}` for any (no Accept, `*/*`, `multipart/*`, no `transfer-syntax` or
    `transfer-syntax=*`). Raises NotAcceptable when no range asks for DICOM parts."""
    if not accept or not accept.strip():
        return {ANY}
    wanted: set[str] = set()
    for media, parameters in _media_ranges(accept):
        if parameters.get("q", "1").strip() in ("0", "0.0", "0.00", "0.000"):
            continue
        if media in ("*/*", "multipart/*"):
            wanted.add(ANY)
        elif media == "multipart/related" and parameters.get("type", urls.DICOM).lower() \
                == urls.DICOM:
            wanted.add(parameters.get("transfer-syntax", ANY).strip() or ANY)
    if not wanted:
        raise NotAcceptable("only multipart/related; type=\"application/dicom\" is available")
    return wanted


def _checked(root: Path, instances: list[tuple[str, str, str]], wanted: set[str]
             ) -> tuple[list[tuple[str, str, str]], list[str]]:
    """The instances that can be sent (one `open_instance` at a time; only their UIDs are
    kept) and a reason for each that cannot be rebuilt. Raises NotAcceptable when one is
    in a syntax the client did not ask for."""
    ready, broken = [], []
    for st, se, sop in instances:
        try:
            part = open_instance(root, st, se, sop)
        except (RebuildError, InvalidUIDError) as exc:
            broken.append(f"{sop}: {exc}")
            continue
        if ANY not in wanted and part.transfer_syntax_uid not in wanted:
            raise NotAcceptable(f"instance {sop} is stored in {part.transfer_syntax_uid} and "
                                "is not transcoded")
        ready.append((st, se, sop))
    return ready, broken


def _parts(root: Path, instances: list[tuple[str, str, str]]) -> Iterator[tuple[str, Iterator[
        bytes]]]:
    for st, se, sop in instances:
        part = open_instance(root, st, se, sop)
        yield part.transfer_syntax_uid, part.chunks()


def _stream(root: Path, instances: list[tuple[str, str, str]]) -> Iterator[bytes]:
    """The message; an instance that fails while it is sent (a file changed under the
    server, a payload holding the delimiter) ends the response without its closing
    delimiter, so the client sees an incomplete message, never a wrong one."""
    try:
        yield from dicom_message(_parts(root, instances))
    except (RebuildError, InvalidUIDError, ConversionError, OSError):
        return


def retrieve(root: Path, accept: str | None, study: str, series: str | None = None,
             sop: str | None = None) -> Response:
    """The response to `GET /studies/{study}[/series/{series}[/instances/{sop}]]`."""
    try:
        wanted = accepted_syntaxes(accept)
    except NotAcceptable as exc:
        return Response(str(exc), status_code=406)
    if sop is None and not (root / (urls.series_path(study, series) if series
                                    else urls.study_path(study))).is_dir():
        return Response("not found", status_code=404)
    try:
        ready, broken = _checked(root, list(select(root, study, series, sop)), wanted)
    except NotAcceptable as exc:
        return Response(str(exc), status_code=406)
    if not ready:
        if sop is not None and broken and (root / urls.instance_path(study, series or "",
                                                                      sop)).is_dir():
            return Response(f"cannot rebuild {broken[0]}", status_code=500)
        return Response("not found", status_code=404)
    headers = {}
    if broken:  # the others are still sent; the header says how many are missing
        headers["Warning"] = f'299 dcmweb "{len(broken)} instance(s) could not be rebuilt"'
    return StreamingResponse(_stream(root, ready), media_type=CONTENT_TYPE, headers=headers)
