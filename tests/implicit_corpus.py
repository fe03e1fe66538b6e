"""Implicit VR little endian files (defined lengths, as dcmtk's `dcmconv +ti` writes them)
holding what real archives' implicit VR files hold and the plain path must answer as
pydicom does: private elements (known creators with known and unknown elements, an
unknown creator, an element without a creator, empty and deferred values), repeater
groups (overlay 60xx, curve 50xx, 0028,04x0), sequences (nested, empty, private, with
private elements of their own in items), the ambiguous VRs pydicom decides by the data
set (US or SS by Pixel Representation 0 and 1, OB or OW overlay data). `PLAIN` names
those the plain path converts without pydicom; the others hold what it leaves to pydicom
(US or SS beside an empty Pixel Representation, a LUT descriptor, an unknown public tag,
a creator value that is not one plain string)."""

from __future__ import annotations

from pathlib import Path

from pydicom import Dataset
from pydicom.sequence import Sequence

from dcmweb_static import synthetic as syn

from .corpus import _dcmtk

#: files the plain path converts without pydicom
PLAIN = ("private_known", "private_unknown", "repeaters", "sequences", "private_deferred",
         "overlay_data", "signed_pixels", "ambiguous_in_items", "no_pixel_rep")
#: files it starts again the general way
GENERAL = ("lut_descriptor", "pixel_rep_empty_in_item", "unknown_public",
           "creator_multivalue", "creator_latin1")


def _base(index: int) -> Dataset:
    ds = syn.base_dataset(syn.uid(700), syn.uid(700, index), syn.uid(700, index, 1),
                          rich=False, instance_number=index)
    syn.add_pixels(ds, rows=8, columns=8, bits=12, seed=index)
    return ds


def _private_known(ds: Dataset) -> None:
    ds.add_new(0x00090010, "LO", "GEMS_IDEN_01")
    ds.add_new(0x00091001, "LO", "full fidelity ")  # known: LO
    ds.add_new(0x00091002, "SH", "suite")  # known: SH
    ds.add_new(0x00091027, "SL", [-5])  # known: SL
    ds.add_new(0x000910E3, "UI", "1.2.3.4")  # known: UI
    ds.add_new(0x00091099, "LO", "not in the dictionary")  # unknown element: UN
    ds.add_new(0x00090011, "LO", "GEMS_IDEN_01")  # a second block of the same creator
    ds.add_new(0x00091117, "LT", "the second block's series description")
    ds.add_new(0x00290010, "LO", "SIEMENS CSA HEADER")
    ds.add_new(0x00291008, "CS", "IMAGE NUM 4")
    ds.add_new(0x00291009, "LO", "20260101")
    ds.add_new(0x00291010, "OB", bytes(range(200)))  # over the private threshold: bulk
    ds.add_new(0x00291018, "CS", "")  # empty
    ds.add_new(0x00291020, "OB", b"\x01\x02")  # short: inline
    ds.add_new(0x00430010, "LO", "")  # an empty creator: its block is UN
    ds.add_new(0x00431001, "US", [7])


def _private_unknown(ds: Dataset) -> None:
    ds.add_new(0x00110010, "LO", "ACME IMAGING 1.0")  # a creator no dictionary knows
    ds.add_new(0x00111001, "LO", "acme value")
    ds.add_new(0x00111002, "OB", bytes(100))
    ds.add_new(0x00131001, "LO", "no creator at all")  # (0013,0010) absent
    ds.add_new(0x00150001, "US", [3])  # no block: (gggg,0001-000F)
    ds.add_new(0x00151003, "LO", "")  # empty, no creator


def _repeaters(ds: Dataset) -> None:
    for group in (0x6000, 0x6002):
        ds.add_new(group << 16 | 0x0010, "US", 8)
        ds.add_new(group << 16 | 0x0011, "US", 8)
        ds.add_new(group << 16 | 0x0022, "LO", "an overlay")
        ds.add_new(group << 16 | 0x0040, "CS", "G")
        ds.add_new(group << 16 | 0x0050, "SS", [1, -1])
        ds.add_new(group << 16 | 0x0100, "US", 1)
        ds.add_new(group << 16 | 0x0102, "US", 0)
        ds.add_new(group << 16 | 0x1500, "LO", "label")
    ds.add_new(0x50000005, "US", 1)  # curve (retired)
    ds.add_new(0x50020022, "LO", "curve description")
    ds.add_new(0x00280410, "US", 4)  # '002804x0' rows for Nth order coefficients
    ds.add_new(0x00280412, "LO", ["a", "b"])
    ds.add_new(0x10001231, "US", [1, 2, 3])  # '1000xxx1' run length triplet


def _sequences(ds: Dataset) -> None:
    inner = Dataset()
    inner.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    inner.ReferencedSOPInstanceUID = syn.uid(700, 9, 9)
    code = Dataset()
    code.CodeValue = "T-D1100"
    code.CodingSchemeDesignator = "SRT"
    code.CodeMeaning = "Head"
    code.ReferencedImageSequence = Sequence([inner, Dataset()])
    code.add_new(0x00190010, "LO", "GEMS_ACQU_01")  # a private block inside an item
    code.add_new(0x00191002, "SL", [12])
    code.add_new(0x00191003, "DS", "1.5")
    code.add_new(0x001910FF, "LO", "unknown in the item")
    ds.AnatomicRegionSequence = Sequence([code])
    ds.ReferencedStudySequence = Sequence([])  # empty
    ds.add_new(0x00710010, "LO", "AGFA-AG_HPState")
    item = Dataset()
    item.add_new(0x00100020, "LO", "in a private sequence")
    ds.add_new(0x00711018, "SQ", Sequence([item]))  # a private sequence


def _private_deferred(ds: Dataset) -> None:
    ds.add_new(0x00290010, "LO", "SIEMENS CSA HEADER")
    ds.add_new(0x00291010, "OB", bytes(140_000))  # over the defer size: read later


def _overlay_data(ds: Dataset) -> None:
    ds.add_new(0x60000010, "US", 8)
    ds.add_new(0x60003000, "OW", bytes(8))  # "OB or OW": OW in an implicit VR file
    ds.add_new(0x60023000, "OW", bytes(range(256)))  # bulk data
    ds.add_new(0x00280106, "US", 0)  # "US or SS", Pixel Representation 0: US
    ds.add_new(0x00280107, "US", 4095)
    ds.add_new(0x00280120, "US", 0xFFFF)  # pixel padding value


def _signed_pixels(ds: Dataset) -> None:
    ds.PixelRepresentation = 1  # "US or SS": SS
    ds.add_new(0x00280106, "SS", -1024)
    ds.add_new(0x00280107, "SS", 3071)
    ds.add_new(0x00280108, "SS", b"")  # empty
    ds.add_new(0x00280120, "SS", -2000)


def _ambiguous_in_items(ds: Dataset) -> None:
    """US or SS in items: by the Pixel Representation pydicom propagates from the data
    set above (1: SS), two levels down, or by an item's own (0: US)."""
    ds.PixelRepresentation = 1
    mapping = Dataset()
    mapping.add_new(0x00409211, "SS", -100)  # Real World Value Last Value Mapped
    mapping.add_new(0x00409216, "SS", -200)  # ... First Value Mapped
    deeper = Dataset()
    deeper.add_new(0x00280106, "SS", -5)
    mapping.add_new(0x00082112, "SQ", Sequence([deeper]))
    own = Dataset()
    own.PixelRepresentation = 0
    own.add_new(0x00280106, "US", 40000)
    ds.add_new(0x00409096, "SQ", Sequence([mapping, own]))  # Real World Value Mapping


def _no_pixel_rep(ds: Dataset) -> None:
    """No Pixel Representation anywhere: pydicom reads US or SS as US (the data set it
    converts holds no Pixel Data: the top level's is read apart)."""
    del ds.PixelRepresentation
    ds.add_new(0x00280106, "US", 7)
    item = Dataset()
    item.add_new(0x00409211, "US", 9)
    ds.add_new(0x00409096, "SQ", Sequence([item]))


def _pixel_rep_empty_in_item(ds: Dataset) -> None:
    item = Dataset()
    item.add_new(0x00280103, "US", None)  # empty: pydicom decides
    item.add_new(0x00280106, "US", 5)
    ds.add_new(0x00082112, "SQ", Sequence([item]))  # Source Image Sequence


def _lut_descriptor(ds: Dataset) -> None:
    ds.add_new(0x00281101, "US", [256, 0, 8])  # "US or SS", a LUT descriptor


def _unknown_public(ds: Dataset) -> None:
    ds.add_new(0x00081233, "LO", "no such public element")


def _creator_multivalue(ds: Dataset) -> None:
    ds.add_new(0x00190010, "LO", ["GEMS_ACQU_01", "second"])
    ds.add_new(0x00191002, "SL", [12])


def _creator_latin1(ds: Dataset) -> None:
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.add_new(0x00190010, "LO", "Ärzte Software")
    ds.add_new(0x00191002, "SL", [12])


_BUILDERS = {
    "private_known": _private_known, "private_unknown": _private_unknown,
    "repeaters": _repeaters, "sequences": _sequences, "private_deferred": _private_deferred,
    "overlay_data": _overlay_data, "signed_pixels": _signed_pixels,
    "ambiguous_in_items": _ambiguous_in_items, "no_pixel_rep": _no_pixel_rep,
    "pixel_rep_empty_in_item": _pixel_rep_empty_in_item, "lut_descriptor": _lut_descriptor,
    "unknown_public": _unknown_public,
    "creator_multivalue": _creator_multivalue, "creator_latin1": _creator_latin1,
}


def build(folder: Path) -> dict[str, Path]:
    """The files, written explicit VR by pydicom and made implicit VR (defined lengths)
    by dcmtk's `dcmconv +ti`; name → path."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for index, (name, add) in enumerate(_BUILDERS.items(), start=1):
        ds = _base(index)
        add(ds)
        explicit = syn.save(ds, folder / f"{name}_explicit.dcm")
        files[name] = folder / f"implicit_{name}.dcm"
        _dcmtk("dcmconv", "+ti", explicit, files[name])
        explicit.unlink()
    return files
