"""Real hardware: the hw backend, the hybrid inference engine, telemetry and timing helpers.

Nothing here imports torch at package import; the submodules import it when used:

* :mod:`.devices`   -- device maps (processor -> ``cpu`` / ``cpu:0-3`` core group / ``cuda:N``)
* :mod:`.program`   -- the exported, grouped model compiled into straight-line Python per segment
* :mod:`.engine`    -- :class:`HybridEngine` (plan execution on CPU / GPU lanes, dynamic batching)
* :mod:`.backend`   -- :class:`HwBackend` (the Backend protocol on real devices)
* :mod:`.telemetry` -- :class:`Telemetry` (psutil, NVML, jtop, RAPL; missing sources reported)
* :mod:`.timing`    -- warm-up / repeats / median-p10-p90 / CUDA-event measurement helpers
"""

from __future__ import annotations

from typing import Any

__all__ = ["HybridEngine", "HwBackend", "Telemetry", "parse_device_map", "measure", "summarize"]

_LAZY = {
    "HybridEngine": ("engine", "HybridEngine"),
    "HwBackend": ("backend", "HwBackend"),
    "Telemetry": ("telemetry", "Telemetry"),
    "parse_device_map": ("devices", "parse_device_map"),
    "measure": ("timing", "measure"),
    "summarize": ("timing", "summarize"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(f"{__name__}.{mod}"), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
