"""Built-in transform ``deidentify``: DICOM PS3.15 Annex E Basic Application Level
Confidentiality Profile, applied at every depth of the dataset.

The attribute list and action codes of Table E.1-1 come from the `dicom-anonymizer`
package (Kitware), which tracks the standard's editions as data; the actions are done
here. Options (``--plugin-option deidentify.KEY=VALUE``):

- ``secret``: key for replacing UIDs (U) with ``2.25.<HMAC-SHA256>``: the same UID maps to
  the same new UID in every file and every run given the same secret, so studies and
  series stay grouped. Without one, `prepare` makes a random one for the run, and refuses
  a run into a tree that already holds de-identified instances: their sources would come
  back as a second copy of each study under new UIDs.
- ``uids=keep``: Retain UIDs Option (113110).
- ``date-shift=DAYS``: Retain Longitudinal Temporal Information with Modified Dates
  Option (113107): dates (DA, and the date of DT) are shifted, times are kept.

Pixel data is not changed: burned-in annotations are out of scope (no Clean Pixel Data
Option), as are the options that retain descriptors or private attributes.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import importlib
import secrets
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ...encode.info_record import tree_has_transform
from ...errors import ConversionError, OptionError
from ...p10.datasets import element_vr, sequence_items
from ..hookspecs import hookimpl
from .strip_private import strip_private

if TYPE_CHECKING:  # pydicom is imported where an instance is transformed: a plugin
    # manager (every process has one) does not import it
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset

_EDITIONS = ("dicomfields_2026c", "dicomfields_2024b", "dicomfields_2023")
# How each combined action code of Table E.1-1 is applied (the profile lets us choose the
# stronger or the one that keeps a Type 1/2 attribute valid; never one that keeps data).
_ACTIONS = {
    "D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "D",
    "X_Z_TAGS": "Z", "X_D_TAGS": "D", "X_Z_D_TAGS": "D", "X_Z_U_STAR_TAGS": "U*",
}
_DUMMY = {
    "AE": "ANONYMOUS", "AS": "000Y", "CS": "ANONYMOUS", "DA": "19000101", "DS": "0",
    "DT": "19000101000000", "IS": "0", "LO": "ANONYMOUS", "LT": "ANONYMOUS",
    "PN": "ANONYMOUS", "SH": "ANONYMOUS", "ST": "ANONYMOUS", "TM": "000000",
    "UC": "ANONYMOUS", "UR": "http://anonymous", "UT": "ANONYMOUS", "FL": 0.0, "FD": 0.0,
    "SL": 0, "SS": 0, "UL": 0, "US": 0, "SV": 0, "UV": 0, "AT": 0,
}
PROFILE = ("113100", "Basic Application Confidentiality Profile")
RETAIN_UIDS = ("113110", "Retain UIDs Option")
MODIFIED_DATES = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")


@lru_cache(maxsize=1)
def action_table() -> tuple[dict[int, str], tuple[tuple[int, int, int, int, str], ...]]:
    """(exact tag → action, masked entries) from the newest edition available."""
    for edition in _EDITIONS:
        try:
            module = importlib.import_module(
                f"dicomanonymizer.dicom_anonymization_databases.{edition}")
            break
        except ImportError:
            continue
    else:  # pragma: no cover - a dependency of this package
        raise ConversionError("deidentify needs the dicom-anonymizer package")
    exact: dict[int, str] = {}
    masked = []
    for list_name, action in _ACTIONS.items():
        for entry in getattr(module, list_name):
            if len(entry) == 2:
                exact[entry[0] << 16 | entry[1]] = action
            else:
                group, element, group_mask, element_mask = entry
                masked.append((group, element, group_mask, element_mask, action))
    return exact, tuple(masked)


def action_for(tag: int) -> str | None:
    exact, masked = action_table()
    action = exact.get(tag)
    if action is not None:
        return action
    group, element = tag >> 16, tag & 0xFFFF
    for g, e, gm, em, masked_action in masked:
        if group & gm == g and element & em == e:
            return masked_action
    return None


def _values(element: DataElement) -> list[object]:
    value = element.value
    return [value] if isinstance(value, str) else list(value or [])


class Deidentifier:
    def __init__(self, options: Mapping[str, str]) -> None:
        self.keep_uids = options.get("uids", "replace") == "keep"
        secret = options.get("secret", "")
        if not secret and not self.keep_uids:
            raise ConversionError("deidentify needs a secret (--plugin-option "
                                  "deidentify.secret=...) to replace UIDs consistently")
        self.key = secret.encode("utf-8")
        shift = options.get("date-shift")
        self.date_shift = datetime.timedelta(days=int(shift)) if shift else None

    def uid(self, value: str) -> str:
        digest = hmac.new(self.key, value.encode("ascii", "replace"), hashlib.sha256).digest()
        return "2.25." + str(int.from_bytes(digest[:16], "big"))

    def shifted_date(self, value: str) -> str:
        assert self.date_shift is not None
        try:
            date = datetime.date(int(value[:4]), int(value[4:6]), int(value[6:8]))
        except (ValueError, IndexError):
            return _DUMMY["DA"]
        return (date + self.date_shift).strftime("%Y%m%d") + value[8:]

    def dataset(self, ds: Dataset) -> None:
        for tag in list(ds.keys()):
            if (tag >> 16) == 0x0002:
                continue
            vr = element_vr(ds, tag).split(" or ")[0]
            action = action_for(tag)
            if vr == "SQ":
                self.sequence(ds, tag, action)
            elif action is not None:
                self.apply(ds, tag, vr, action)

    def sequence(self, ds: Dataset, tag: int, action: str | None) -> None:
        from pydicom.dataelem import DataElement
        from pydicom.sequence import Sequence

        if action == "X":
            del ds[tag]
        elif action == "Z":
            ds[tag] = DataElement(tag, "SQ", Sequence())
        else:  # kept, D or U*: the structure stays, every item is de-identified
            for item in sequence_items(ds, tag):
                self.dataset(item)

    def apply(self, ds: Dataset, tag: int, vr: str, action: str) -> None:
        from pydicom.dataelem import DataElement, empty_value_for_VR

        if action == "X":
            del ds[tag]
            return
        if action in ("U", "U*") and vr == "UI":
            if not self.keep_uids:
                ds[tag] = DataElement(tag, "UI", [self.uid(str(v)) for v in _values(ds[tag]) if v])
            return
        if self.date_shift is not None and vr in ("DA", "DT"):
            shifted = [self.shifted_date(str(v)) for v in _values(ds[tag]) if v]
            ds[tag] = DataElement(tag, vr, shifted if shifted else None)
            return
        if action == "D" and vr in _DUMMY:
            ds[tag] = DataElement(tag, vr, _DUMMY[vr])
        elif action == "D" and vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
            ds[tag] = DataElement(tag, vr, b"\0\0")
        else:  # Z, and U* on a non-UID: zero length
            ds[tag] = DataElement(tag, vr, empty_value_for_VR(vr))

    def mark(self, ds: Dataset) -> None:
        from pydicom.dataset import Dataset
        from pydicom.sequence import Sequence

        ds.PatientIdentityRemoved = "YES"
        codes = [PROFILE] + ([RETAIN_UIDS] if self.keep_uids else []) + \
            ([MODIFIED_DATES] if self.date_shift is not None else [])
        ds.DeidentificationMethod = "DICOM PS3.15 E.1-1 Basic Profile (dcmweb deidentify)"
        items = []
        for value, meaning in codes:
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        if self.date_shift is not None:
            ds.LongitudinalTemporalInformationModified = "MODIFIED"


def transform(ds: Dataset, options: Mapping[str, str]) -> None:
    deidentifier = Deidentifier(options)
    strip_private(ds)  # private attributes: X in the Basic Profile
    deidentifier.dataset(ds)
    deidentifier.mark(ds)


OPTIONS = {
    "secret": "key for the new UIDs: the same secret gives the same UIDs in every run "
              "(default: random, this run only)",
    "uids": "replace (default) or keep: Retain UIDs Option",
    "date-shift": "DAYS (may be negative): Retain Longitudinal Temporal Information with "
                  "Modified Dates Option",
}
MAX_DATE_SHIFT = 36525  # a century, either way: past that, dates leave the calendar


def prepare(options: dict[str, str], output: Path) -> list[str]:
    """Check the options, and without a secret make one for this run, unless the tree
    already holds instances de-identified before (they would be duplicated)."""
    uids = options.get("uids", "replace")
    if uids not in ("replace", "keep"):
        raise OptionError(f"uids must be 'replace' or 'keep', not {uids!r}")
    shift = options.get("date-shift")
    if shift is not None:
        try:
            days = int(shift)
        except ValueError:
            raise OptionError(f"date-shift must be a whole number of days, not {shift!r}") \
                from None
        if abs(days) > MAX_DATE_SHIFT:
            raise OptionError(f"date-shift {days} is more than {MAX_DATE_SHIFT} days")
    if "secret" in options and not options["secret"]:
        raise OptionError("secret is empty: give one, or leave the option out")
    if uids == "keep" or options.get("secret"):
        return []
    if tree_has_transform(output, "deidentify"):
        raise OptionError(
            f"{output} already holds instances de-identified by deidentify, and without "
            "the secret used then this run would give every study it converts again a "
            "second copy under new UIDs: give --plugin-option deidentify.secret=... (the "
            "same one as before) or convert into a new folder")
    options["secret"] = secrets.token_hex(32)
    return ["deidentify: no secret given; UIDs are replaced consistently within this run "
            "only, and a later run into this folder is refused without a secret (give "
            "--plugin-option deidentify.secret=... to keep UIDs consistent across runs)"]


@hookimpl
def register_transforms(register):
    register("deidentify", transform, description="PS3.15 E.1-1 Basic Profile",
             options=OPTIONS, prepare=prepare)
