"""Shortcuts in the worker's per-instance path give what the longer way gives, and are
taken: DS numbers kept as doubles without Decimal arithmetic when the text is the
double's shortest form, and the info record's undefined-length paths read from the
stored elements without a pydicom lookup per element."""

from __future__ import annotations

import math
import random
import warnings
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from dcmweb_static.encode import raw_values
from dcmweb_static.encode.info_record import undefined_length_paths
from dcmweb_static.encode.raw_values import InvalidNumber, json_number
from dcmweb_static.p10.parse import parse_p10

from . import corpus
from .conftest import pydicom_corpus


def _reference_number(text: str, vr: str) -> int | float | str | None:
    """json_number as it was written first: every DS compared through two Decimals."""
    text = text.strip()
    if not text:
        return None
    if raw_values._INTEGER.fullmatch(text):
        number = int(text)
        if raw_values._INT64_MIN <= number <= raw_values._UINT64_MAX:
            return number
        if vr == "IS":
            raise InvalidNumber(text)
    if vr == "DS" and raw_values._DECIMAL.fullmatch(text):
        number = float(text)
        try:
            if math.isfinite(number) and Decimal(repr(number)) == Decimal(text):
                return number
        except InvalidOperation:
            pass
        return text
    raise InvalidNumber(text)


def _texts() -> list[str]:
    rng = random.Random(16)
    texts = ["0.5", "-0.5", "1e-05", "1e+16", "1.5e+300", "-125.0", "-125.000", "0.1",
             "0.30000000000000004", "0.3000000000000000444", "1.0E5", "1e5", ".5", "5.",
             "+0.5", "-0.0", "0.0", "1e400", "-1e400", "1e-400", "123456789012345678901",
             " 2.5 ", "1.7976931348623157e+308", "2.2250738585072014e-308"]
    for _ in range(2000):
        number = rng.uniform(-1e4, 1e4) * 10 ** rng.randint(-12, 12)
        texts += [repr(number), f"{number:.6f}", f"{number:.3e}", f"{number:.16g}"]
    return texts


def test_ds_numbers_are_those_of_the_decimal_rule() -> None:
    for text in _texts():
        try:
            expected = _reference_number(text, "DS")
        except InvalidNumber:
            with pytest.raises(InvalidNumber):
                json_number(text, "DS")
            continue
        got = json_number(text, "DS")
        assert type(got) is type(expected) and repr(got) == repr(expected), text


def test_a_shortest_form_ds_needs_no_decimal(monkeypatch) -> None:
    def no_decimal(*args):
        raise AssertionError("Decimal built for a shortest-form DS")

    monkeypatch.setattr(raw_values, "Decimal", no_decimal)
    assert json_number("0.488281", "DS") == 0.488281
    assert json_number("-1e-05", "DS") == -1e-05


def _reference_paths(ds: Dataset, path: str = "") -> list[str]:
    """undefined_length_paths through Dataset.get_item, as it was written first."""
    found: list[str] = []
    for tag in ds.keys():
        elem = ds.get_item(tag, keep_deferred=True)
        if getattr(elem, "VR", None) != "SQ" or not hasattr(elem, "is_undefined_length"):
            continue
        name = f"{path}{elem.tag:08X}"
        if elem.is_undefined_length:
            found.append(name)
        for i, item in enumerate(elem.value or []):
            if getattr(item, "is_undefined_length_sequence_item", False):
                found.append(f"{name}.{i}")
            found.extend(_reference_paths(item, f"{name}.{i}."))
    return found


def test_undefined_length_paths_are_those_of_get_item(tmp_path: Path, monkeypatch) -> None:
    files = list(corpus.build(tmp_path).values()) + pydicom_corpus()
    parsed = []
    for path in files:
        with open(path, "rb") as stream, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                parsed.append(parse_p10(stream, defer_size=1024).dataset)
            except Exception:  # noqa: BLE001 - the corpus holds unreadable files on purpose
                continue
    expected = [_reference_paths(ds) for ds in parsed]
    assert sum(map(bool, expected)) >= 3  # files with undefined lengths were among them

    def no_lookup(*args, **kwargs):
        raise AssertionError("a pydicom lookup per element")

    monkeypatch.setattr(Dataset, "get_item", no_lookup)
    assert [undefined_length_paths(ds) for ds in parsed] == expected
