"""The shape of a JSON value (keys in order, value types), for tests that pin what users receive."""

from __future__ import annotations

import json
from typing import Any


def shape(obj: Any) -> Any:
    """Keys in order and value types, recursively; a list by its first element."""
    if isinstance(obj, dict):
        return {k: shape(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [shape(obj[0])] if obj else []
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "bool"
    if isinstance(obj, (int, float)):
        return "number"
    return type(obj).__name__


def pinned(obj: Any) -> str:
    """The shape as one JSON line: compared as a string, so key order counts."""
    return json.dumps(shape(obj))
