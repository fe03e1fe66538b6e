"""The raw element walk (p10/raw_walk.py) builds what pydicom's reader builds, or declines.

Every comparison runs the real pydicom reader beside the walk on the same bytes: the
elements (each field and its type), the Dataset's state, where the stream is left, the
warnings raised; through `parse_p10` also every field of the result, or the same error
in the same words. The common files must take the walk (a silent decline would only
cost speed, so it is counted)."""

from __future__ import annotations

import io
import logging
import random
import struct
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.filereader import _read_file_meta_info, read_dataset
from pydicom.tag import BaseTag
from pydicom.uid import ImplicitVRLittleEndian

from dcmweb_static import synthetic as syn
from dcmweb_static.p10 import raw_walk
from dcmweb_static.p10.parse import _StopAtPixelData, parse_p10

from . import corpus, implicit_corpus
from .conftest import PYDICOM_DATA, pydicom_corpus

DEFER = 131074


# ---- the two readers ----------------------------------------------------------------

def _element(elem: object) -> tuple:
    """An element as data to compare: a RawDataElement field by field with the types of
    its tag and VR (a VR enum is not the str pydicom reads); others by their equality."""
    if isinstance(elem, RawDataElement):
        return ("raw", tuple(elem), type(elem.tag), type(elem.VR), type(elem.value))
    return (type(elem).__name__, elem)


def _state(ds: pydicom.Dataset) -> tuple:
    """Everything a Dataset holds: its elements in order, and every other attribute."""
    attributes = {k: v for k, v in vars(ds).items() if k != "_dict"}
    return (type(ds), [(type(t), t, _element(e)) for t, e in ds._dict.items()], attributes)


def _recorded(read):
    """(what `read()` returned or raised, the warnings it raised)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            outcome = ("ok", read())
        except Exception as exc:
            outcome = ("error", type(exc), str(exc))
    return outcome, [(w.category, str(w.message)) for w in caught]


def _parsed_state(opener, defer: int, raw_walk: bool = True) -> tuple:
    def read():
        with opener() as stream:
            parsed = parse_p10(stream, defer_size=defer, raw_walk=raw_walk)
            state = (_state(parsed.dataset), _state(parsed.file_meta), parsed.preamble,
                     parsed.file_meta_bytes, parsed.transfer_syntax_uid, parsed.is_implicit_vr,
                     parsed.is_little_endian, parsed.deflated, parsed.dataset_offset,
                     parsed.pixel_data, parsed.file_meta_present, parsed.stream.tell())
            if parsed.stream is not stream:
                parsed.stream.close()  # a deflated file's inflated copy
            return state
    return _recorded(read)


def assert_parse_same(data: bytes | Path, defer: int = DEFER, where: str = "",
                      buffering: int = -1) -> tuple[int, int]:
    """parse_p10 with the walk equals parse_p10 without it, on bytes (a BytesIO) or a
    file (opened with `buffering`: the walk peeks into a buffered file's buffer).
    Returns (walks, declines)."""
    def opener():
        if isinstance(data, Path):
            return open(data, "rb", buffering=buffering)
        return io.BytesIO(data)

    expected = _parsed_state(opener, defer, raw_walk=False)  # pydicom's reader only
    walked, declined = raw_walk.counts.walked, raw_walk.counts.declined
    got = _parsed_state(opener, defer)
    assert got == expected, f"parse_p10 differs with the walk for {where}"
    return raw_walk.counts.walked - walked, raw_walk.counts.declined - declined


def _pydicom_dataset(stream, implicit: bool, defer: int | None):
    return read_dataset(stream, implicit, True, stop_when=_StopAtPixelData(), defer_size=defer)


def assert_walk_same(body: bytes, implicit: bool = False, defer: int | None = DEFER,
                     offset: int = 0) -> bool:
    """walk_dataset on `body` from `offset` equals pydicom's read_dataset there (elements,
    state, stream position, warnings), or declines with the stream back at `offset`.
    Returns whether it walked."""
    reference = io.BytesIO(body)
    reference.seek(offset)
    expected = _recorded(lambda: (_state(_pydicom_dataset(reference, implicit, defer)),
                                  reference.tell()))
    stream = io.BytesIO(body)
    stream.seek(offset)
    got = _recorded(lambda: raw_walk.walk_dataset(stream, len(body), implicit, True, defer))
    assert got[0][0] == "ok", f"the walk raised: {got}"
    if got[0][1] is None:
        assert stream.tell() == offset
        return False
    assert ((("ok", (_state(got[0][1]), stream.tell()))), got[1]) == expected
    return True


# ---- hand-made element bytes ----------------------------------------------------------

LONG = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


def explicit(tag: int, vr: str, value: bytes, length: int | None = None) -> bytes:
    n = len(value) if length is None else length
    head = struct.pack("<HH2s", tag >> 16, tag & 0xFFFF, vr.encode())
    if vr in LONG:
        return head + struct.pack("<HL", 0, n) + value
    return head + struct.pack("<H", n) + value


def implicit(tag: int, value: bytes, length: int | None = None) -> bytes:
    n = len(value) if length is None else length
    return struct.pack("<HHL", tag >> 16, tag & 0xFFFF, n) + value


PIXELS = explicit(0x7FE00010, "OW", b"\x01\x02" * 8)
BASE = (explicit(0x00080005, "CS", b"ISO_IR 192") + explicit(0x00080016, "UI", b"1.2.3\0")
        + explicit(0x00100010, "PN", "Müller^J".encode() + b" "))


# ---- the corpus ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory) -> list[Path]:
    generated = corpus.build(tmp_path_factory.mktemp("walk"))
    wide = syn.save(syn.wide_ct_header(syn.uid(801), 256), tmp_path_factory.mktemp("w") / "w.dcm")
    samples = sorted((Path(__file__).parent.parent / "samples").rglob("*.dcm"))
    return pydicom_corpus() + list(generated.values()) + samples + [wide]


def test_parse_is_identical_on_the_corpus(corpus_files: list[Path]) -> None:
    """Every file of pydicom's test data, the transfer-syntax corpus and the samples parses
    to the same result (or the same error) with and without the walk, at the conversion's
    defer size and at a small one; most take the walk."""
    assert len(corpus_files) > 150
    walks = declines = 0
    for path in corpus_files:
        where = path.relative_to(PYDICOM_DATA) if PYDICOM_DATA in path.parents else path.name
        for source, defer in ((path, DEFER), (path.read_bytes(), 64)):
            walked, declined = assert_parse_same(source, defer, str(where))
            walks, declines = walks + walked, declines + declined
    assert walks > 3 * declines, (walks, declines)


def test_ct_files_take_the_walk(tmp_path: Path) -> None:
    """The CT series as the benchmark writes it: the file meta and the data set are walked
    (two walks a file), never handed to pydicom; and the result is pydicom's."""
    files = syn.ct_series(tmp_path / "ct", 3, rows=16, columns=16, study_index=500)
    files += syn.ct_series(tmp_path / "rich", 2, rows=16, columns=16, study_index=501, rich=True)
    for path in files:
        assert assert_parse_same(path.read_bytes(), where=path.name) == (2, 0)
        assert assert_parse_same(path, where=path.name) == (2, 0)


def test_walked_elements_are_pydicoms(tmp_path: Path) -> None:
    """Element for element on a rich header: raw values, deferred ones None, the defined
    length sequences left raw bytes as pydicom leaves them, and the original encoding."""
    path = syn.ct_series(tmp_path, 1, rows=16, columns=16, rich=True)[0]
    data = path.read_bytes()
    with open(path, "rb") as fp:
        offset = parse_p10(fp, defer_size=DEFER).dataset_offset
    for defer in (None, 0, 1, 16, 64, 511, 512, 513, DEFER):
        assert assert_walk_same(data, defer=defer, offset=offset)
    stream = io.BytesIO(data)
    stream.seek(offset)
    ds = raw_walk.walk_dataset(stream, len(data), False, True, 64)
    assert isinstance(ds._dict[BaseTag(0x00082218)], RawDataElement)  # a sequence: raw bytes
    assert ds._dict[BaseTag(0x00082218)].VR == "SQ"
    assert ds._dict[BaseTag(0x00091012)].value is None  # 512 bytes: deferred
    assert ds.original_encoding == (False, True)
    assert ds._character_set == ["UTF8"]


def test_file_meta_is_pydicoms(corpus_files: list[Path]) -> None:
    """walk_file_meta equals pydicom's _read_file_meta_info (the elements it converts on
    the way included) on every file with a preamble, or declines."""
    walked = 0
    for path in corpus_files:
        data = path.read_bytes()
        if data[128:132] != b"DICM":
            continue
        expected, got = _file_meta_outcomes(data)
        if got is None:
            continue
        walked += 1
        assert got == expected, path
    assert walked > 100


def _file_meta_outcomes(data: bytes) -> tuple[tuple, tuple | None]:
    """(pydicom's file meta information, the walk's or None when it declined): each as
    (outcome, warnings), the outcome with the state and where the stream was left."""
    reference = io.BytesIO(data)
    reference.seek(132)
    expected = _recorded(lambda: (_state(_read_file_meta_info(reference)), reference.tell()))
    stream = io.BytesIO(data)
    stream.seek(132)
    (kind, walked), caught = _recorded(lambda: raw_walk.walk_file_meta(stream, len(data)))
    assert kind == "ok"
    if walked is None:
        assert stream.tell() == 132
        return expected, None
    return expected, (("ok", (_state(walked), stream.tell())), caught)


def test_group_length_mismatch_is_logged_as_pydicom_logs_it() -> None:
    meta = (explicit(0x00020000, "UL", struct.pack("<L", 99))
            + explicit(0x00020010, "UI", b"1.2.840.10008.1.2.1\0"))
    data = b"\0" * 128 + b"DICM" + meta + BASE
    stream = io.BytesIO(data)
    stream.seek(132)
    logged = _Records()
    logger = logging.getLogger("pydicom")
    logger.addHandler(logged)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        file_meta = raw_walk.walk_file_meta(stream, len(data))
    finally:
        logger.removeHandler(logged)
        logger.setLevel(level)
    assert file_meta is not None and stream.tell() == 132 + len(meta)
    assert any("doesn't match the actual File Meta Information length (99 vs 28 bytes)"
               in message for message in logged.messages)
    assert assert_parse_same(data) == (2, 0)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


# ---- hand-made edge cases ----------------------------------------------------------------

@pytest.mark.parametrize("body", [
    pytest.param(BASE + PIXELS, id="stops-at-pixel-data"),
    pytest.param(BASE, id="ends-at-eof"),
    pytest.param(b"", id="empty"),
    pytest.param(BASE + explicit(0x00100020, "LO", b"abc"), id="odd-length"),
    pytest.param(BASE + b"".join(explicit(0x00180000 + i, vr, b"") for i, vr in enumerate(
        ["PN", "DS", "IS", "US", "OB", "SQ", "UN", "LO", "AT", "FD", "UT", "UI"])),
        id="zero-lengths"),
    pytest.param(BASE + explicit(0x00090010, "LO", b"PRIV") + explicit(0x00091001, "UN",
                 b"\1" * 70) + explicit(0x00091002, "OB", b"\2" * 3), id="private"),
    pytest.param(BASE + explicit(0x00082218, "SQ", implicit(0xFFFEE000, explicit(
        0x00080100, "SH", b"T1")) ), id="defined-length-sequence"),
    pytest.param(explicit(0x00100010, "PN", b"A^B") + explicit(0x00080016, "UI", b"1.2\0"),
                 id="out-of-order"),
    pytest.param(BASE + explicit(0x00100020, "LO", b"1") + explicit(0x00100020, "LO", b"22"),
                 id="duplicate-tag"),
    pytest.param(BASE + explicit(0x00080005, "CS", b"\\ISO 2022 IR 100"), id="charset-again"),
    pytest.param(BASE + explicit(0x7FE00008, "OF", b"\0" * 8), id="float-pixel-data"),
    pytest.param(BASE + explicit(0x7FE10010, "OB", b"\0" * 8), id="private-7FE1"),
    pytest.param(BASE + explicit(0x00280010, "US", b"\0\1") + PIXELS
                 + explicit(0xFFFAFFFA, "SQ", b"") + explicit(0xFFFCFFFC, "OB", b"\0\0"),
                 id="pixel-data-then-trailing"),
])
def test_walk_equals_pydicom(body: bytes) -> None:
    assert assert_walk_same(body)
    assert assert_walk_same(body, defer=2)


@pytest.mark.parametrize("size", [DEFER - 1, DEFER, DEFER + 1])
def test_deferral_at_the_defer_size(size: int) -> None:
    """A value of exactly defer_size bytes is read, one byte more is deferred (None), as
    pydicom does; Specific Character Set never is."""
    body = BASE + explicit(0x00091010, "OB", b"\5" * size) + explicit(0x00100020, "LO", b"ID")
    assert assert_walk_same(body)
    stream = io.BytesIO(body)
    ds = raw_walk.walk_dataset(stream, len(body), False, True, DEFER)
    assert (ds._dict[BaseTag(0x00091010)].value is None) == (size > DEFER)
    for defer in (9, 10, 11):  # the charset value is 10 bytes
        assert assert_walk_same(body, defer=defer)
        charset = raw_walk.walk_dataset(io.BytesIO(body), len(body), False, True, defer)
        assert charset._dict[BaseTag(0x00080005)].value == b"ISO_IR 192"


def test_implicit_vr() -> None:
    body = b"".join(implicit(t, v) for t, v in [
        (0x00080005, b"ISO_IR 100"), (0x00080016, b"1.2.3\0"), (0x00100010, b"A^B "),
        (0x00100020, b""), (0x00091010, b"PRIV"), (0x00091011, b"\0" * 300),
        (0x00282000, b"x")])  # an odd length
    for defer in (None, 64, 300, 299):
        assert assert_walk_same(body, implicit=True, defer=defer)
        assert assert_walk_same(body + implicit(0x7FE00010, b"\0" * 4), implicit=True,
                                defer=defer)
    ds = raw_walk.walk_dataset(io.BytesIO(body), len(body), True, True, 64)
    assert ds._dict[BaseTag(0x00100010)].VR is None and ds.original_encoding == (True, True)


def _items_walked(data: bytes | None, implicit: bool) -> list[dict] | None:
    data = data or b""  # an empty implicit VR sequence's raw value is None
    items, pos = [], 0
    while pos < len(data):
        _, _, length = struct.unpack_from("<HHL", data, pos)
        elements = raw_walk.walk_item(data, pos + 8, length, implicit)
        if elements is None:
            return None
        items.append(elements)
        pos += 8 + length
    return items


def test_implicit_vr_items_are_walked_as_pydicom_reads_them(tmp_path: Path) -> None:
    """The items of an implicit VR file's defined-length sequences (nested, empty,
    private, with private blocks) walked into the raw elements pydicom's sequence reader
    makes of them, field by field (the offset aside: pydicom counts from the file); the
    same bytes read as explicit VR items are declined."""
    path = implicit_corpus.build(tmp_path)["sequences"]
    ds = pydicom.dcmread(path)
    checked = 0

    def compare(dataset: pydicom.Dataset) -> None:
        nonlocal checked
        for tag in list(dataset._dict):
            raw = dataset._dict[tag]
            if not isinstance(raw, RawDataElement) or raw.VR is not None \
                    or dataset[tag].VR != "SQ":  # pydicom's VR (a private one by its creator)
                continue
            walked = _items_walked(raw.value, True)
            assert walked is not None, tag
            assert _items_walked(raw.value, False) in (None, []), tag
            items = list(dataset[tag].value)
            assert len(walked) == len(items), tag
            for ours, item in zip(walked, items):
                assert list(ours) == list(item._dict), tag
                for number, element in ours.items():
                    theirs = item._dict[number]
                    assert tuple(element)[:4] + tuple(element)[5:] == \
                        tuple(theirs)[:4] + tuple(theirs)[5:], (tag, number)
                    checked += 1
                compare(item)

    compare(ds)
    assert checked >= 11  # the elements of every item, nested ones included


def test_headers_longer_than_one_read() -> None:
    """Elements of every length across several HEADER_READ blocks, values larger than a
    block read whole, deferred values skipped past a block: all as pydicom reads them."""
    rng = random.Random(16)
    parts = [BASE]
    for i in range(1, 2500):
        parts.append(explicit(0x00111000 + i, rng.choice(["LO", "OB", "UT", "SH"]),
                              bytes(rng.randrange(40))))
    parts.append(explicit(0x00130010, "OB", b"\7" * (raw_walk.HEADER_READ + 5)))
    parts.append(explicit(0x00130011, "OB", b"\7" * (3 * raw_walk.HEADER_READ)))
    parts.append(explicit(0x00130012, "LO", b"after"))
    body = b"".join(parts) + PIXELS
    assert len(body) > 5 * raw_walk.HEADER_READ
    for defer in (None, DEFER, raw_walk.HEADER_READ, 20):
        assert assert_walk_same(body, defer=defer)
    # and from an offset not at 0, the element after the meta information
    assert assert_walk_same(b"\0" * 7 + body, defer=DEFER, offset=7)


@pytest.mark.parametrize("buffering", [1, 13, 100, 4096, 65536, 1 << 20])
def test_buffered_files_of_any_buffer_size(tmp_path: Path, buffering: int) -> None:
    """From a buffered file the walk starts on what its buffer holds (`peek`): a buffer of
    any size, a header longer than it, the file meta information and the data set in the
    same buffer; the same parse as pydicom's, and from bytes."""
    rng = random.Random(buffering)
    header = b"".join(explicit(0x00111000 + i, "LO", bytes(rng.randrange(30)))
                      for i in range(1, 700))
    meta = (explicit(0x00020000, "UL", struct.pack("<L", 28))
            + explicit(0x00020010, "UI", b"1.2.840.10008.1.2.1\0"))
    path = tmp_path / "long.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + meta + BASE + header + PIXELS
                     + explicit(0xFFFAFFFA, "SQ", b"") + explicit(0xFFFCFFFC, "OB", b"\0\0"))
    assert assert_parse_same(path, buffering=buffering) == (3, 0)
    short = syn.ct_series(tmp_path / "ct", 1, rows=4, columns=4, rich=True)[0]
    assert assert_parse_same(short, buffering=buffering) == (2, 0)


@pytest.mark.parametrize("body", [
    pytest.param(BASE + explicit(0x00082218, "SQ", b"", length=0xFFFFFFFF)
                 + implicit(0xFFFEE0DD, b""), id="undefined-length-sequence"),
    pytest.param(BASE + explicit(0x00091010, "UN", b"", length=0xFFFFFFFF)
                 + implicit(0xFFFEE0DD, b""), id="undefined-length-UN"),
    pytest.param(BASE + explicit(0x00091010, "OB", b"\1\2", length=0xFFFFFFFF)
                 + implicit(0xFFFEE0DD, b""), id="undefined-length-OB"),
    pytest.param(BASE + explicit(0x00100010, "PN", b"A^B", length=200), id="past-the-end"),
    pytest.param(BASE + explicit(0x00100010, "XY", b"A^"), id="unknown-vr"),
    pytest.param(BASE + b"\x10\x00\x10\x00\x01\x02\x02\x00A^", id="not-a-vr"),
    pytest.param(BASE + explicit(0x00020010, "UI", b"1.2\0"), id="group-2"),
    pytest.param(BASE + implicit(0xFFFEE00D, b""), id="item-delimiter"),
    pytest.param(BASE + b"\x10\x00\x10\x00PN", id="partial-header"),
    pytest.param(BASE + b"\x10\x00\x10\x00OB\0\0\1", id="partial-long-header"),
    pytest.param(implicit(0x00100010, b"A^B "), id="implicit-in-explicit"),
])
def test_declines_what_it_does_not_handle(body: bytes) -> None:
    """Each leaves the whole data set to pydicom: the walk returns None and the stream is
    back where it was (pydicom then reads it, or words the error, as it did before)."""
    assert not assert_walk_same(body)
    meta = (explicit(0x00020000, "UL", struct.pack("<L", 28))
            + explicit(0x00020010, "UI", b"1.2.840.10008.1.2.1\0"))
    assert assert_parse_same(b"\0" * 128 + b"DICM" + meta + body)[1] >= 1


def test_explicit_in_implicit_and_big_endian_decline() -> None:
    assert not assert_walk_same(BASE, implicit=True)
    stream = io.BytesIO(BASE)
    assert raw_walk.walk_dataset(stream, len(BASE), False, False, DEFER) is None


def test_big_endian_and_implicit_files(tmp_path: Path) -> None:
    """Through parse_p10: implicit VR little endian walks, big endian is pydicom's."""
    ds = syn.base_dataset(syn.uid(802), syn.uid(802, 1), syn.uid(802, 1, 1), rich=True)
    syn.add_pixels(ds, rows=4, columns=4, bits=8)
    implicit_file = syn.save(ds, tmp_path / "implicit.dcm", ImplicitVRLittleEndian)
    assert assert_parse_same(implicit_file.read_bytes()) == (2, 0)
    corpus._dcmtk("dcmconv", "+tb", implicit_file, tmp_path / "big.dcm")
    assert assert_parse_same((tmp_path / "big.dcm").read_bytes()) == (1, 1)  # meta walked


def test_truncated_at_every_byte(tmp_path: Path) -> None:
    """A small CT file cut at every byte of its header and around its Pixel Data: the
    same parse or the same one-line reason with the walk as without."""
    path = syn.ct_series(tmp_path, 1, rows=4, columns=4, rich=True)[0]
    data = path.read_bytes()
    walks = 0
    for end in range(len(data) + 1):
        walks += assert_parse_same(data[:end], where=f"cut at {end}")[0]
    cut = tmp_path / "cut.dcm"
    for end in range(0, len(data) + 1, 7):
        cut.write_bytes(data[:end])
        walks += assert_parse_same(cut, where=f"file cut at {end}")[0]
    assert walks > len(data)  # the meta information of most cuts, the data set of some


def test_mutants(tmp_path: Path) -> None:
    """Seeded bit flips, byte runs and length rewrites of a rich header: every mutant
    parses the same (or fails the same) with the walk as without."""
    path = syn.ct_series(tmp_path, 1, rows=4, columns=4, rich=True)[0]
    source = path.read_bytes()
    rng = random.Random(1616)
    walks = 0
    for _ in range(600):
        data = bytearray(source)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(132, len(data))
            kind = rng.random()
            if kind < 0.5:
                data[at] ^= 1 << rng.randrange(8)
            elif kind < 0.8:
                data[at:at + 4] = struct.pack("<L", rng.choice(
                    [0, 1, 2, 0xFFFFFFFF, 0xFFFF, len(data), rng.randrange(1 << 32)]))
            else:
                data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 9)))
        walks += assert_parse_same(bytes(data), where="a mutant")[0]
    assert walks > 300  # most mutants still walk (the meta information at least)


def test_pydicom_debugging_declines(tmp_path: Path) -> None:
    """With pydicom's debugging on its reader logs every element: the walk steps aside."""
    data = syn.ct_series(tmp_path, 1, rows=4, columns=4)[0].read_bytes()
    pydicom.config.debug(True, default_handler=False)
    try:
        assert assert_parse_same(data) == (0, 2)
    finally:
        pydicom.config.debug(False, default_handler=False)


def test_file_meta_longer_than_one_read() -> None:
    """File meta information past META_READ bytes (a long Private Information value) is
    read on and equals pydicom's."""
    meta = (explicit(0x00020001, "OB", b"\0\1")
            + explicit(0x00020010, "UI", b"1.2.840.10008.1.2.1\0")
            + explicit(0x00020100, "UI", b"1.2.3\0")
            + explicit(0x00020102, "OB", b"\3" * (3 * raw_walk.META_READ + 1) + b"\0"))
    data = b"\0" * 128 + b"DICM" + meta + BASE + PIXELS
    expected, got = _file_meta_outcomes(data)
    assert got == expected
    assert assert_parse_same(data) == (2, 0)
