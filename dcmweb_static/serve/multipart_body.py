"""Reading a `multipart/related` request body (RFC 2046 5.1, RFC 2387) as it arrives.

STOW-RS (PS3.18 10.5) sends a study as one request of `application/dicom` parts; a study
can be gigabytes, so the body is never held whole. `MultipartReader` is a push parser:
the server feeds it the chunks it receives and gets back events (a part's headers, a
piece of its body, its end), which it writes into a temp file. RFC 2046 rules kept here:
the boundary parameter may be quoted; the CRLF before a delimiter belongs to it (a body
ends without it); the first delimiter may start the body (no preamble) and anything
before it (the preamble) and after the close delimiter (the epilogue) is ignored;
transport padding (spaces, tabs) may follow a delimiter; a part with no header lines
starts with CRLF (and is `text/plain` by default).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message

from ..encode.multipart import delimiter_search

#: RFC 2046 5.1.1: 1 to 70 characters of `bchars`, not ending with a space
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
#: bytes allowed between a delimiter and its CRLF (transport padding: LWSP)
_PADDING = b" \t"
#: the longest line after a delimiter we wait for before calling it junk
_MAX_PADDING = 1024
MAX_HEADER_BYTES = 16 * 1024


class BadMultipart(ValueError):
    """The body is no valid multipart message (400): the message is one line."""


class UnsupportedType(ValueError):
    """The request is not `multipart/related` of the expected type (415)."""


def multipart_boundary(content_type: str | None, part_type: str) -> str:
    """The boundary of a `multipart/related; type="<part_type>"` Content-Type. A missing
    `type` parameter is accepted (each part's own type is checked); another type is not.
    Parameters are parsed by the standard library's MIME code (quoted strings, case)."""
    if not content_type:
        raise UnsupportedType("no Content-Type: expected multipart/related")
    header = Message()
    header["content-type"] = content_type
    if header.get_content_type() != "multipart/related":
        raise UnsupportedType(f"Content-Type {header.get_content_type()!r} is not "
                              "multipart/related")
    declared = header.get_param("type")
    if isinstance(declared, str) and declared.strip().lower() != part_type:
        raise UnsupportedType(f"multipart/related of {declared.strip()!r}: only "
                              f"{part_type} is accepted")
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise BadMultipart("multipart/related without a boundary parameter")
    if not _BOUNDARY.fullmatch(boundary):
        raise BadMultipart("the boundary parameter is not a valid RFC 2046 boundary")
    return boundary


@dataclass(frozen=True)
class PartStart:
    """A part begins: its number (from 1) and header fields, names in lower case (the
    last of a repeated name wins)."""

    number: int
    headers: dict[str, str]

    @property
    def media_type(self) -> str:
        """The part's media type without parameters, lower case (RFC 2046: text/plain
        when the part has no Content-Type)."""
        value = self.headers.get("content-type", "text/plain")
        return value.split(";", 1)[0].strip().lower()


@dataclass(frozen=True)
class PartData:
    data: bytes


@dataclass(frozen=True)
class PartEnd:
    pass


Event = PartStart | PartData | PartEnd


class MultipartReader:
    """Splits a multipart body fed chunk by chunk into events; holds at most one chunk
    plus a delimiter's length (and one header block) at a time."""

    def __init__(self, boundary: str, max_header_bytes: int = MAX_HEADER_BYTES) -> None:
        self._delimiter = b"\r\n--" + boundary.encode("ascii")
        # the CRLF before a delimiter is part of it, also before the first one: a body
        # that starts with the delimiter matches once a CRLF is put in front
        self._buffer = bytearray(b"\r\n")
        self._state = "preamble"
        self._max_header = max_header_bytes
        self.parts = 0

    @property
    def complete(self) -> bool:
        """Whether the close delimiter has been read."""
        return self._state == "epilogue"

    def feed(self, chunk: bytes) -> list[Event]:
        """The events the bytes so far complete; raises BadMultipart."""
        if self._state == "epilogue":
            return []
        self._buffer += chunk
        events: list[Event] = []
        while self._step(events):
            pass
        return events

    def finish(self) -> None:
        """The body has ended: raises BadMultipart unless the close delimiter was read."""
        if self._state == "body":
            raise BadMultipart("the body ends inside a part (no closing boundary)")
        if self._state != "epilogue":
            raise BadMultipart("the body ends before its closing boundary")

    def _step(self, events: list[Event]) -> bool:
        """One step of the state machine; False when it needs more bytes."""
        buffer = self._buffer
        if self._state in ("preamble", "body"):
            at, safe = delimiter_search(buffer, self._delimiter)
            if self._state == "body" and safe:
                events.append(PartData(bytes(buffer[:safe])))
            if at < 0:
                del buffer[:safe]
                return False
            if self._state == "body":
                events.append(PartEnd())
            del buffer[: at + len(self._delimiter)]
            self._state = "after_delimiter"
            return True
        if self._state == "after_delimiter":
            if len(buffer) < 2:
                return False
            if buffer[:2] == b"--":
                self._state = "epilogue"
                buffer.clear()
                return False
            end = buffer.find(b"\r\n")
            if end < 0:  # a CR at the end may be the first half of the CRLF
                waiting = buffer[:-1] if buffer.endswith(b"\r") else buffer
                if len(buffer) > _MAX_PADDING or waiting.strip(_PADDING):
                    raise BadMultipart("bytes other than padding after a boundary delimiter")
                return False
            if buffer[:end].strip(_PADDING):
                raise BadMultipart("bytes other than padding after a boundary delimiter")
            del buffer[: end + 2]
            self._state = "headers"
            return True
        if self._state == "headers":
            if buffer[:2] == b"\r\n":  # no header fields
                block, size = b"", 2
            else:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > self._max_header:
                        raise BadMultipart(f"part headers longer than {self._max_header} "
                                           "bytes")
                    return False
                block, size = bytes(buffer[:end]), end + 4
            if size > self._max_header:
                raise BadMultipart(f"part headers longer than {self._max_header} bytes")
            self.parts += 1
            events.append(PartStart(self.parts, _header_fields(block)))
            del buffer[:size]
            self._state = "body"
            return True
        return False


def _header_fields(block: bytes) -> dict[str, str]:
    """RFC 5322 header fields of one part (folded lines unfolded)."""
    fields: dict[str, str] = {}
    name = None
    for line in block.decode("latin-1").split("\r\n") if block else ():
        if line[:1] in (" ", "\t") and name is not None:
            fields[name] += " " + line.strip()
            continue
        key, colon, value = line.partition(":")
        if not colon or not key or key.strip() != key:
            raise BadMultipart(f"malformed part header line {line[:60]!r}")
        name = key.lower()
        fields[name] = value.strip()
    return fields
