"""One way to turn a preset name or a dict into a frozen config dataclass, with errors that list the
valid presets and fields (used by background loads and SparseLoom workloads)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeVar

T = TypeVar("T")

__all__ = ["from_preset_or_dict"]


def from_preset_or_dict(value: Any, cls: type[T], presets: Mapping[str, T], what: str) -> T:
    """``value`` is an instance of ``cls``, a key of ``presets`` or a dict of ``cls``'s fields (lists
    become tuples); anything else raises ``ValueError`` naming ``what`` and the valid choices."""
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        try:
            return presets[value]
        except KeyError:
            raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(presets)} "
                             f"or a dict with fields of {cls.__name__}") from None
    if isinstance(value, Mapping):
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = set(value) - valid
        if unknown:
            raise ValueError(f"{what}: unknown field(s) {sorted(unknown)}; valid: {sorted(valid)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})
    raise ValueError(f"{what} must be a preset name ({', '.join(presets)}) or a dict, got {value!r}")
