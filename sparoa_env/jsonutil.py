"""Strict JSON for what the package prints and writes: NaN and infinities become ``null`` (Python's
``json`` would write the non-standard ``NaN``, which ``JSON.parse`` and strict parsers reject); numpy
scalars and arrays become plain numbers and lists."""

from __future__ import annotations

import json
import math
from typing import Any


def strict(obj: Any) -> Any:
    """A copy of ``obj`` with every non-finite float replaced by None and numpy values made plain."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    tolist = getattr(obj, "tolist", None)  # numpy scalars and arrays
    if tolist is not None and type(obj).__module__ == "numpy":
        return strict(tolist())
    return obj


def dumps(obj: Any, *, default: Any = str, **kw: Any) -> str:
    """``json.dumps`` of :func:`strict` ``(obj)`` (never writes NaN); other objects through ``default``."""
    return json.dumps(strict(obj), allow_nan=False, default=default, **kw)
