"""Measurement helpers: warm-up, repeats, robust summaries, CUDA events, per-thread CPU settings.

Measured the way CompilerGym measures (STYLE 9): warm-up runs first (lazy initialisation, allocator
growth, cuDNN autotuning and cold caches are not the op's cost), then ``repeats`` timed runs summarised by
the median with p10/p90 beside it. CPU work is timed with :func:`time.perf_counter` around the call on the
calling thread (with the thread count and core affinity it was given); GPU work with CUDA events recorded
on the stream around the call, read after synchronising, so the figure is device time, not launch time.

torch is imported lazily (only the GPU helpers need it), so :func:`summarize` and :func:`percentiles`
serve the trace recorder and the serving loop without it.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

__all__ = ["TimingStats", "summarize", "percentiles", "measure", "time_call", "cuda_timer", "CudaTimer",
           "thread_settings", "clock_snapshot"]


@dataclass(frozen=True)
class TimingStats:
    """Summary of repeated timings, all in milliseconds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    n: int
    samples_ms: tuple[float, ...] = ()

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        d = {"median_ms": self.median_ms, "p10_ms": self.p10_ms, "p90_ms": self.p90_ms, "mean_ms": self.mean_ms,
             "min_ms": self.min_ms, "max_ms": self.max_ms, "n": self.n}
        if samples:
            d["samples_ms"] = list(self.samples_ms)
        return d


def percentiles(samples: Sequence[float], qs: Sequence[float] = (50.0, 95.0, 99.0)) -> list[float]:
    """Percentiles by linear interpolation between order statistics (numpy's default method)."""
    if not samples:
        return [math.nan for _ in qs]
    xs = sorted(float(x) for x in samples)
    out = []
    for q in qs:
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {q!r}")
        pos = (len(xs) - 1) * q / 100.0
        lo = math.floor(pos)
        hi = min(lo + 1, len(xs) - 1)
        out.append(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))
    return out


def summarize(samples_ms: Sequence[float], keep_samples: bool = True) -> TimingStats:
    if not samples_ms:
        raise ValueError("summarize() needs at least one sample")
    p10, p50, p90 = percentiles(samples_ms, (10.0, 50.0, 90.0))
    xs = [float(x) for x in samples_ms]
    return TimingStats(median_ms=p50, p10_ms=p10, p90_ms=p90, mean_ms=statistics.fmean(xs), min_ms=min(xs),
                       max_ms=max(xs), n=len(xs), samples_ms=tuple(xs) if keep_samples else ())


def _is_cuda(device: Any) -> bool:
    if device is None:
        return False
    return str(device).startswith("cuda")


class CudaTimer:
    """Times work issued on a CUDA stream with a pair of events; :meth:`elapsed_ms` synchronises."""

    def __init__(self, stream: Any = None, device: Any = None) -> None:
        import torch

        self._torch = torch
        self.stream = stream if stream is not None else torch.cuda.current_stream(device)
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def __enter__(self) -> "CudaTimer":
        self.start.record(self.stream)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.end.record(self.stream)

    def elapsed_ms(self) -> float:
        self.end.synchronize()
        return float(self.start.elapsed_time(self.end))


@contextmanager
def cuda_timer(stream: Any = None, device: Any = None) -> Iterator[CudaTimer]:
    """``with cuda_timer(stream) as t: work(); ms = t.elapsed_ms()``."""
    t = CudaTimer(stream, device)
    with t:
        yield t


def time_call(fn: Callable[[], Any], device: Any = None, stream: Any = None) -> tuple[Any, float]:
    """Run ``fn()`` once; return (its result, milliseconds). CUDA devices: event time on ``stream``."""
    if _is_cuda(device):
        import torch

        s = stream if stream is not None else torch.cuda.current_stream(device)
        with torch.cuda.stream(s):
            t = CudaTimer(s)
            with t:
                out = fn()
        return out, t.elapsed_ms()
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1e3


def measure(fn: Callable[[], Any], *, device: Any = None, warmup: int = 3, repeats: int = 10,
            min_total_ms: float = 0.0, max_repeats: int = 10_000, stream: Any = None,
            keep_samples: bool = True) -> TimingStats:
    """Warm up ``warmup`` times, then time ``repeats`` runs (more, up to ``max_repeats``, until the timed
    runs add up to ``min_total_ms``) and summarise them. ``device`` "cuda..." uses CUDA events."""
    if warmup < 0 or repeats < 1:
        raise ValueError(f"measure(): warmup must be >= 0 and repeats >= 1, got {warmup}, {repeats}")
    cuda = _is_cuda(device)
    if cuda:
        import torch

        s = stream if stream is not None else torch.cuda.current_stream(device)
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize(device)
    samples: list[float] = []
    total = 0.0
    while len(samples) < repeats or (total < min_total_ms and len(samples) < max_repeats):
        if cuda:
            with torch.cuda.stream(s):
                t = CudaTimer(s)
                with t:
                    fn()
            ms = t.elapsed_ms()
        else:
            t0 = time.perf_counter()
            fn()
            ms = (time.perf_counter() - t0) * 1e3
        samples.append(ms)
        total += ms
    return summarize(samples, keep_samples)


@contextmanager
def thread_settings(num_threads: int | None = None, cores: Sequence[int] | None = None) -> Iterator[None]:
    """Run a block with ``num_threads`` intra-op threads and the calling thread pinned to ``cores``
    (Linux ``sched_setaffinity`` on the thread), restoring both afterwards.

    torch's intra-op thread count is an OpenMP per-thread setting here (``torch.set_num_threads`` in one
    thread leaves the others' counts alone), so this is safe to use on a worker thread.
    """
    import torch

    old_threads = torch.get_num_threads()
    old_cores = None
    if cores is not None:
        if not hasattr(os, "sched_setaffinity"):
            raise RuntimeError("pinning to CPU cores needs os.sched_setaffinity (Linux); map processors to 'cpu' instead")
        old_cores = os.sched_getaffinity(0)
        os.sched_setaffinity(0, set(cores))
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        yield
    finally:
        if num_threads is not None:
            torch.set_num_threads(old_threads)
        if old_cores is not None:
            os.sched_setaffinity(0, old_cores)


def clock_snapshot() -> dict[str, Any]:
    """CPU clocks and the thread's settings at measurement time, to store beside timings (clocks are not
    pinned by this package; record them so that drift can be seen)."""
    snap: dict[str, Any] = {"time_unix": time.time()}
    try:
        import psutil

        f = psutil.cpu_freq(percpu=False)
        snap["cpu_freq_mhz"] = float(f.current) if f else math.nan
    except Exception:  # noqa: BLE001 - a missing reading is recorded as NaN, never an error
        snap["cpu_freq_mhz"] = math.nan
    if hasattr(os, "sched_getaffinity"):
        snap["affinity"] = sorted(os.sched_getaffinity(0))
    try:
        import torch

        snap["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return snap
