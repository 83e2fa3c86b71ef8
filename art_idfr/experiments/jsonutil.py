"""
Strict-JSON conversion shared by the experiment side's writers (evaluation reports; meant for the pipeline's model
metadata too).
"""
from __future__ import annotations

import math
from typing import Any

__all__ = ["json_clean"]


def json_clean(value: Any) -> Any:
    """
    ``value`` made writable with ``json.dump(..., allow_nan=False)``: non-finite floats become ``None``, dict keys
    strings, tuples lists, and NumPy scalars (anything with a callable ``item()``) Python numbers; containers are
    converted recursively, everything else is returned as is.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return json_clean(value.item())
    return value
