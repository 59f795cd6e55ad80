"""JSON as the shapes publish it: orjson, and numpy columns written straight
from their buffers. No I/O."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson


def json_bytes(obj: Any) -> bytes:
    # orjson's result keeps the (much larger) buffer it wrote into; an exact
    # copy lets that go, or every pending chunk would hold ~6x its size.
    return bytes(memoryview(orjson.dumps(obj)))


# An integer column's missing entry: no published number is this, and a
# column's text holds numbers only, so it is swapped for null exactly.
NULL_INT = np.iinfo(np.int64).min
_NULL_TEXT = str(NULL_INT).encode()


def array_json(values: np.ndarray) -> bytes:
    """A numpy array as JSON, written by orjson straight from its buffer (no
    Python number per entry: 50,000 racers' columns every cycle): floats
    NaN as null, NULL_INT entries of an integer array as null."""
    text = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)
    if values.dtype == np.int64 and NULL_INT in values:
        text = text.replace(_NULL_TEXT, b"null")
    return text


def with_arrays(head: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """json_bytes(head | arrays), the arrays written by array_json."""
    items = [orjson.dumps(head)[1:-1]] if head else []
    items += [orjson.dumps(name) + b":" + array_json(v) for name, v in arrays.items()]
    return b"{" + b",".join(items) + b"}"
