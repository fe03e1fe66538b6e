"""The common instance, read and converted without pydicom.

Most files a conversion meets are plain: explicit or implicit VR little endian, defined
lengths, one well-known character set, every value the encoder needs decodable from its
bytes. Importing pydicom costs a process a third of a CPU-second from a cold disk (208
modules: its pixel handlers and example-data downloader come with `pydicom.config`) and
half a second before the first worker starts; for such files nothing of it is needed.

`parse.parse_p10(..., plain=True)` reads such a file into a `PlainDataset` (the raw walk's
`PlainElement`s by int tag). The few questions a conversion asks of a data set are
answered from the elements (`datasets.uid_value`, `int_value`, `code_value`,
`character_set`, `get_item`, `in`); any other question raises `NotPlain`, and the
converter starts the instance again from pydicom's Dataset (`run.instance`), so what is
published is always what the general path publishes (`tests/test_plain_path.py` holds
the two equal over the test corpus).
"""

from __future__ import annotations

import sys
from typing import Any

from .raw_walk import PlainElement


class NotPlain(Exception):
    """The instance needs pydicom: the caller converts it the general way."""


#: pydicom's `charset.python_encoding` for the single-valued Specific Character Sets
#: taken here (a test holds them equal); any other value: NotPlain
PYTHON_ENCODINGS = {
    "ISO_IR 6": "iso8859",
    "ISO_IR 100": "latin_1",
    "ISO_IR 101": "iso8859_2",
    "ISO_IR 109": "iso8859_3",
    "ISO_IR 110": "iso8859_4",
    "ISO_IR 126": "iso_ir_126",
    "ISO_IR 127": "iso_ir_127",
    "ISO_IR 138": "iso_ir_138",
    "ISO_IR 144": "iso_ir_144",
    "ISO_IR 148": "iso_ir_148",
    "ISO_IR 166": "iso_ir_166",
    "ISO_IR 192": "UTF8",
    "GB18030": "GB18030",
    "GBK": "GBK",
}
#: pydicom's `charset.default_encoding`: a data set without Specific Character Set
DEFAULT_ENCODING = "iso8859"


def plain_encodings(value: bytes) -> list[str] | None:
    """The Python codecs of a Specific Character Set value, as pydicom's
    `convert_encodings` gives them, for one well-known value; None for anything else
    (several values, a misspelling pydicom corrects with a warning, padding oddities)."""
    text = value.decode("ascii", "replace").rstrip(" ")
    encoding = PYTHON_ENCODINGS.get(text)
    if encoding is None or value.rstrip(b" ") != text.encode("ascii"):
        return None
    return [encoding]


class PlainDataset:
    """A data set read by the raw walk, without pydicom, answering only what a
    conversion asks of a plain file: `_dict` (int tag → `PlainElement`), `tag in`,
    `get_item(tag, keep_deferred=True)`, `_character_set` and `original_encoding`.
    Any other use raises NotPlain: the caller converts the instance from pydicom's
    Dataset instead (so nothing is ever answered differently)."""

    __slots__ = ("_dict", "_character_set", "original_encoding")

    def __init__(self, elements: dict[int, PlainElement], character_set: str | list[str],
                 implicit: bool) -> None:
        self._dict = elements
        self._character_set = character_set
        self.original_encoding = (implicit, True)

    def __contains__(self, tag: object) -> bool:
        if not isinstance(tag, int):
            raise NotPlain(f"a data set asked for {tag!r}")
        return tag in self._dict

    def get_item(self, tag: int, *, keep_deferred: bool = False) -> PlainElement | None:
        if not keep_deferred:
            raise NotPlain("a deferred value read")
        return self._dict.get(tag)

    def get(self, key: object, default: object = None) -> Any:
        raise NotPlain(f"the value of {key!r} needs pydicom")

    def __getitem__(self, key: object) -> Any:
        raise NotPlain(f"element {key!r} needs pydicom")

    def __getattr__(self, name: str) -> Any:
        raise NotPlain(f"a data set's {name!r} needs pydicom")


def pydicom_defaults() -> bool:
    """Whether pydicom, if this process imported it, still has the settings the plain
    path answers for (no debugging log of each element, empty text values as '')."""
    config = sys.modules.get("pydicom.config")
    if config is None:
        return True
    return not config.debugging and not config.use_none_as_empty_text_VR_value
