"""Device maps: which real device (or CPU core group) each processor of a plan runs on.

A device map assigns every processor name of a profile (``"cpu"``, ``"gpu"``, ...) a *lane spec*:

===================  =============================================================================
``"cpu"``            the CPU, every core this process may use, torch's default intra-op threads
``"cpu:0-3"``        CPU cores 0..3 (inclusive); the lane's worker thread is pinned to them with
                     ``os.sched_setaffinity`` and runs ``len(cores)`` intra-op threads
``"cpu:0,2,4-5"``    a list of cores and ranges
``"cpu:0-3@2"``      cores 0..3 with 2 intra-op threads (``@N`` overrides the thread count)
``"cuda"``           the current CUDA device (``cuda:0`` unless CUDA_VISIBLE_DEVICES says otherwise)
``"cuda:1"``         CUDA device 1
===================  =============================================================================

Two CPU core groups (``{"cpu": "cpu:0", "gpu": "cpu:1"}``) make a real two-lane machine on a CPU-only
host: each lane has its own worker thread on its own cores, so ops placed on different lanes run
concurrently, and tensors move between lanes for free (one shared memory).

Thread counts: torch's intra-op pool (OpenMP) takes its size per calling thread, so each lane's worker
calls ``torch.set_num_threads`` once for itself; the caller's own setting is left alone (one side effect:
threads created *after* a lane worker start with that worker's count).

On the command line a map is written ``cpu=cpu:0;gpu=cpu:1`` or as JSON.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

__all__ = ["LaneSpec", "DeviceMapError", "parse_lane", "parse_device_map", "default_device_map",
           "two_lane_cpu_map", "cuda_available"]

NO_CUDA_HINT = ("CUDA is not available on this machine; map both processors to CPU core groups, e.g. "
                "device_map={'cpu': 'cpu:0', 'gpu': 'cpu:1'} (syntax: 'cpu', 'cpu:0-3', 'cpu:0,2', 'cpu:0-3@2', "
                "'cuda:0')")


class DeviceMapError(ValueError):
    """A device map names an unknown processor, a malformed spec, or a device this machine lacks."""


@dataclass(frozen=True)
class LaneSpec:
    """Where one processor's ops run. ``cores`` None = no pinning; ``threads`` None = torch's default."""

    processor: str
    spec: str
    device: str                       # "cpu" or "cuda:N"
    cores: tuple[int, ...] | None = None
    threads: int | None = None

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def pinned(self) -> bool:
        return self.cores is not None

    def describe(self) -> str:
        if self.is_cuda:
            return f"{self.processor} -> {self.device}"
        where = "all cores" if self.cores is None else f"cores {_fmt_cores(self.cores)}"
        thr = "default threads" if self.threads is None else f"{self.threads} thread(s)"
        return f"{self.processor} -> cpu ({where}, {thr})"


def _fmt_cores(cores: Sequence[int]) -> str:
    return ",".join(str(c) for c in cores)


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _available_cores() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


_CORES_RE = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def parse_lane(processor: str, spec: str, *, check: bool = True) -> LaneSpec:
    """Parse one lane spec (table in the module docstring). ``check`` verifies the cores / CUDA device exist."""
    if not isinstance(spec, str) or not spec.strip():
        raise DeviceMapError(f"device_map[{processor!r}] must be a string like 'cpu', 'cpu:0-3' or 'cuda:0', got {spec!r}")
    s = spec.strip().lower()
    if s == "cpu":
        return LaneSpec(processor, spec, "cpu")
    if s.startswith("cpu:"):
        body, threads = s[4:], None
        if "@" in body:
            body, t = body.split("@", 1)
            if not t.isdigit() or int(t) < 1:
                raise DeviceMapError(f"device_map[{processor!r}] = {spec!r}: the thread count after '@' must be a positive integer")
            threads = int(t)
        if not _CORES_RE.match(body):
            raise DeviceMapError(f"device_map[{processor!r}] = {spec!r}: expected CPU cores like 'cpu:0', 'cpu:0-3' or "
                                 f"'cpu:0,2,4-5'")
        cores: set[int] = set()
        for part in body.split(","):
            lo, _, hi = part.partition("-")
            a, b = int(lo), int(hi or lo)
            if b < a:
                raise DeviceMapError(f"device_map[{processor!r}] = {spec!r}: range {part!r} is empty")
            cores.update(range(a, b + 1))
        if check:
            avail = _available_cores()
            missing = sorted(cores - avail)
            if missing:
                raise DeviceMapError(f"device_map[{processor!r}] = {spec!r}: core(s) {_fmt_cores(missing)} are not available "
                                     f"to this process (available: {_fmt_cores(sorted(avail))})")
        ordered = tuple(sorted(cores))
        return LaneSpec(processor, spec, "cpu", ordered, threads if threads is not None else len(ordered))
    if s == "cuda" or s.startswith("cuda:"):
        idx = 0
        if s.startswith("cuda:"):
            if not s[5:].isdigit():
                raise DeviceMapError(f"device_map[{processor!r}] = {spec!r}: expected 'cuda' or 'cuda:N'")
            idx = int(s[5:])
        if check:
            if not cuda_available():
                raise DeviceMapError(f"device_map[{processor!r}] = {spec!r}: {NO_CUDA_HINT}")
            import torch

            n = torch.cuda.device_count()
            if idx >= n:
                raise DeviceMapError(f"device_map[{processor!r}] = {spec!r}: this machine has {n} CUDA device(s) (0..{n - 1})")
        return LaneSpec(processor, spec, f"cuda:{idx}")
    raise DeviceMapError(f"device_map[{processor!r}] = {spec!r}: unknown device; use 'cpu', 'cpu:<cores>' "
                         f"(e.g. 'cpu:0-3'), or 'cuda[:N]'")


def default_device_map(processors: Sequence[str]) -> dict[str, str]:
    """Lane 0 on the CPU, every other processor on ``cuda:0`` (the Jetson / discrete-GPU layout)."""
    return {p: ("cpu" if k == 0 else "cuda:0") for k, p in enumerate(processors)}


def two_lane_cpu_map(processors: Sequence[str] = ("cpu", "gpu")) -> dict[str, str]:
    """Split this process's cores into ``len(processors)`` contiguous groups, one per processor."""
    cores = sorted(_available_cores())
    n = len(processors)
    if len(cores) < n:
        raise DeviceMapError(f"{n} processors need at least {n} CPU cores, this process has {len(cores)}")
    size = len(cores) // n
    out = {}
    for k, p in enumerate(processors):
        group = cores[k * size:(k + 1) * size] if k < n - 1 else cores[k * size:]
        out[p] = "cpu:" + _fmt_cores(group)
    return out


def _coerce_map(device_map: Any) -> dict[str, str]:
    if isinstance(device_map, Mapping):
        return {str(k): v for k, v in device_map.items()}
    if isinstance(device_map, str):
        text = device_map.strip()
        if text.startswith("{"):
            try:
                d = json.loads(text)
            except json.JSONDecodeError as e:
                raise DeviceMapError(f"device_map: not valid JSON ({e})") from None
            if not isinstance(d, dict):
                raise DeviceMapError("device_map JSON must be an object like {\"cpu\": \"cpu:0\", \"gpu\": \"cpu:1\"}")
            return {str(k): v for k, v in d.items()}
        out = {}
        for item in filter(None, (x.strip() for x in text.split(";"))):
            if "=" not in item:
                raise DeviceMapError(f"device_map: expected 'processor=device' items separated by ';' "
                                     f"(e.g. 'cpu=cpu:0;gpu=cpu:1'), got {item!r}")
            k, v = item.split("=", 1)
            out[k.strip()] = v.strip()
        return out
    raise DeviceMapError(f"device_map must be a dict processor -> device or a string 'cpu=cpu:0;gpu=cpu:1', got {device_map!r}")


def parse_device_map(device_map: Any, processors: Sequence[str], *, check: Sequence[str] | None = None) -> dict[str, LaneSpec]:
    """Parse and validate a device map for ``processors`` (lane order).

    ``None`` means :func:`default_device_map`. Every processor needs an entry; entries for unknown
    processors are an error. ``check`` lists the processors whose device must exist on this machine
    (default: all); the others are only parsed, so that an all-CPU plan runs with the default map on a
    machine without CUDA.
    """
    raw = default_device_map(processors) if device_map is None else _coerce_map(device_map)
    unknown = [k for k in raw if k not in processors]
    if unknown:
        raise DeviceMapError(f"device_map names unknown processor(s) {unknown}; the processors are: {', '.join(processors)}")
    missing = [p for p in processors if p not in raw]
    if missing:
        raise DeviceMapError(f"device_map has no device for processor(s) {missing}; give every processor of "
                             f"{list(processors)} a device, e.g. {two_lane_cpu_map_hint(processors)}")
    to_check = set(processors if check is None else check)
    lanes = {p: parse_lane(p, raw[p], check=p in to_check) for p in processors}
    pinned = [(p, set(l.cores)) for p, l in lanes.items() if l.cores is not None and p in to_check]
    for i in range(len(pinned)):
        for j in range(i + 1, len(pinned)):
            shared = pinned[i][1] & pinned[j][1]
            if shared:
                raise DeviceMapError(f"device_map: processors {pinned[i][0]!r} and {pinned[j][0]!r} share core(s) "
                                     f"{_fmt_cores(sorted(shared))}; give each lane its own cores")
    return lanes


def two_lane_cpu_map_hint(processors: Sequence[str]) -> str:
    try:
        return repr(two_lane_cpu_map(processors))
    except DeviceMapError:
        return repr({p: "cpu" for p in processors})
