"""Example dcmweb plugin: frame statistics for each instance, in `_example_ai/result.json`."""

from __future__ import annotations

import json
from array import array
from typing import Any

from dcmweb_static import InstanceView, ResultFile, hookimpl

NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
ARRAY_TYPES = {(8, 0): "B", (8, 1): "b", (16, 0): "H", (16, 1): "h", (32, 0): "I", (32, 1): "i"}


def frame_statistics(view: InstanceView, number: int) -> dict[str, Any]:
    data = view.frame(number)
    bits = int(view.dataset.get("BitsAllocated", 0) or 0)
    signed = int(view.dataset.get("PixelRepresentation", 0) or 0)
    code = ARRAY_TYPES.get((bits, signed))
    if view.transfer_syntax_uid not in NATIVE or code is None:
        return {"frame": number, "bytes": len(data)}
    values = array(code, data[: len(data) - len(data) % (bits // 8)])
    if not values:
        return {"frame": number, "bytes": 0}
    return {"frame": number, "bytes": len(data), "min": min(values), "max": max(values),
            "mean": round(sum(values) / len(values), 3)}


@hookimpl
def instance_results(instance: InstanceView):
    result = {
        "model": "example-ai 0.1.0 (image statistics)",
        "sop_instance_uid": instance.sop_uid,
        "frames": [frame_statistics(instance, n) for n in range(1, instance.frame_count + 1)],
    }
    return [ResultFile("_example_ai", "result.json",
                       json.dumps(result, indent=2, sort_keys=True).encode())]
