"""QIDO-RS records for the static index files (PS3.18 10.6.3, Tables 10.6.3-3 to -5).

Records are built from instance metadata (DICOM JSON objects) so the index files hold
exactly the values of the instance metadata they summarise.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Json = dict[str, Any]

SPECIFIC_CHARACTER_SET = "00080005"
TIMEZONE_OFFSET = "00080201"

#: study attributes PS3.18 Table 10.6.3-3 requires, and Study Description (asked by viewers)
STUDY_ATTRIBUTES = (
    SPECIFIC_CHARACTER_SET, "00080020", "00080030", "00080050", "00080090", TIMEZONE_OFFSET,
    "00081030", "00100010", "00100020", "00100030", "00100040", "0020000D", "00200010",
)
#: series attributes, Table 10.6.3-4 (plus the Study Instance UID the series belongs to)
SERIES_ATTRIBUTES = (
    SPECIFIC_CHARACTER_SET, "00080021", "00080031", "00080060", TIMEZONE_OFFSET, "0008103E",
    "0020000D", "0020000E", "00200011", "00400244", "00400245", "00400275",
)
#: instance attributes, Table 10.6.3-5 (plus the study and series UIDs)
INSTANCE_ATTRIBUTES = (
    SPECIFIC_CHARACTER_SET, "00080016", "00080018", TIMEZONE_OFFSET, "0020000D", "0020000E",
    "00200013", "00280008", "00280010", "00280011", "00280100",
)
SUMMARY_ATTRIBUTES = tuple(sorted(set(STUDY_ATTRIBUTES) | set(SERIES_ATTRIBUTES)))
INSTANCE_AVAILABILITY = "00080056"
MODALITIES_IN_STUDY = "00080061"
RETRIEVE_URL = "00081190"
STUDY_RELATED_SERIES = "00201206"
STUDY_RELATED_INSTANCES = "00201208"
SERIES_RELATED_INSTANCES = "00201209"


def _pick(instance: Json, tags: Iterable[str]) -> Json:
    return {tag: instance[tag] for tag in tags if tag in instance}


def first_value(instance: Json, tag: str) -> Any:
    values = instance.get(tag, {}).get("Value") or [None]
    return values[0]


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")


def instance_sort_key(instance: Json) -> tuple[float, str]:
    return _number(first_value(instance, "00200013")), str(first_value(instance, "00080018"))


def series_sort_key(record: Json) -> tuple[float, str]:
    return _number(first_value(record, "00200011")), str(first_value(record, "0020000E"))


def study_sort_key(record: Json) -> tuple[str, str, str]:
    return (str(first_value(record, "00080020") or ""), str(first_value(record, "00080030") or ""),
            str(first_value(record, "0020000D")))


def _with(record: Json, extra: Json) -> Json:
    record.update(extra)
    return dict(sorted(record.items()))


def _retrieve_url(base_url: str | None, path: str) -> Json:
    if not base_url:
        return {}
    return {RETRIEVE_URL: {"vr": "UR", "Value": [f"{base_url.rstrip('/')}/{path}"]}}


def instance_record(instance: Json, base_url: str | None) -> Json:
    study, series, sop = (first_value(instance, t) for t in ("0020000D", "0020000E", "00080018"))
    return _with(_pick(instance, INSTANCE_ATTRIBUTES), {
        INSTANCE_AVAILABILITY: {"vr": "CS", "Value": ["ONLINE"]},
        **_retrieve_url(base_url, f"studies/{study}/series/{series}/instances/{sop}"),
    })


def series_record(first: Json, count: int, base_url: str | None) -> Json:
    """The series record, from its first instance (in sort order) and instance count."""
    study, series = first_value(first, "0020000D"), first_value(first, "0020000E")
    return _with(_pick(first, SERIES_ATTRIBUTES), {
        INSTANCE_AVAILABILITY: {"vr": "CS", "Value": ["ONLINE"]},
        SERIES_RELATED_INSTANCES: {"vr": "IS", "Value": [count]},
        **_retrieve_url(base_url, f"studies/{study}/series/{series}"),
    })


def summary(instance: Json) -> Json:
    """The attributes of an instance that study and series records are made from."""
    return _pick(instance, SUMMARY_ATTRIBUTES)


def study_record(first_instance: Json, series_records: list[Json], instance_count: int,
                 base_url: str | None) -> Json:
    study = first_value(first_instance, "0020000D")
    modalities = sorted({m for r in series_records for m in r.get("00080060", {}).get("Value", [])
                         if m})
    extra: Json = {
        INSTANCE_AVAILABILITY: {"vr": "CS", "Value": ["ONLINE"]},
        STUDY_RELATED_SERIES: {"vr": "IS", "Value": [len(series_records)]},
        STUDY_RELATED_INSTANCES: {"vr": "IS", "Value": [instance_count]},
        **_retrieve_url(base_url, f"studies/{study}"),
    }
    extra[MODALITIES_IN_STUDY] = {"vr": "CS", "Value": modalities} if modalities else {"vr": "CS"}
    return _with(_pick(first_instance, STUDY_ATTRIBUTES), extra)
