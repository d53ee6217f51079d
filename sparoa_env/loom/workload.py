"""Multi-task request streams whose SLOs change over time (numpy only; randomness from the caller's RNG).

Each task sends requests as a Poisson stream at ``rates_per_s[task]``. Every task's SLO is piecewise
constant: at exponential intervals (mean ``slo_period_ms``) it draws a new latency SLO, a factor of
``latency_factors`` times the task's *reference latency* (the dense model alone on its fastest single
processor), and, for tasks with measured accuracy, a new accuracy SLO, the dense model's accuracy minus one
of ``accuracy_drops``. A request is judged against the SLO in force when it arrives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..presets import from_preset_or_dict

__all__ = ["Workload", "Request", "WORKLOADS", "workload", "reference_latency_ms", "draw_requests"]


@dataclass(frozen=True)
class Workload:
    tasks: tuple[str, ...] = ("digits-cnn", "cancer-mlp", "wine-mlp", "resnet50", "bert_base", "vit_small")
    rate_scale: float = 1.0                  # multiplies every rate (load level)
    utilisation: float = 0.6                 # equal rates: dense models would load one processor this much
    n_requests: int = 300
    slo_period_ms: float = 400.0
    latency_factors: tuple[float, ...] = (1.5, 2.0, 3.0, 5.0)
    accuracy_drops: tuple[float, ...] = (0.0, 0.01, 0.02, 0.05)
    load_gbps: float = 1.0                   # weight loading from storage (assumption: eMMC / UFS / NVMe class)
    background: str = "dynamic"

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("workload: tasks must name at least one task")
        for name in ("rate_scale", "utilisation", "slo_period_ms", "load_gbps"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v) or v <= 0:
                raise ValueError(f"workload: field {name!r} must be a finite number > 0, got {v!r}")
        if isinstance(self.n_requests, bool) or not isinstance(self.n_requests, int) or self.n_requests < 1:
            raise ValueError(f"workload: field 'n_requests' must be a positive integer, got {self.n_requests!r}")
        if not self.latency_factors or min(self.latency_factors) <= 0:
            raise ValueError("workload: latency_factors must be positive numbers")
        if not self.accuracy_drops or min(self.accuracy_drops) < 0:
            raise ValueError("workload: accuracy_drops must be numbers >= 0")


WORKLOADS: dict[str, Workload] = {
    "default": Workload(),
    "small": Workload(tasks=("digits-cnn", "cancer-mlp", "resnet50"), n_requests=40),
}


def workload(value: Any) -> Workload:
    return from_preset_or_dict(value, Workload, WORKLOADS, "workload")


@dataclass(frozen=True)
class Request:
    id: int
    task: str
    arrival_ms: float
    slo_latency_ms: float
    slo_accuracy: float | None     # None: the task has no measured accuracy


def reference_latency_ms(task: Any) -> float:
    """The dense model alone on its fastest single processor."""
    dense = task.uniform(0)
    return min(task.solo_latency_ms(dense, (p,) * task.n_blocks) for p in range(task.n_lanes))


def task_rates_per_s(catalog: Any, w: Workload) -> dict[str, float]:
    """Every task at the same rate, chosen so that the dense models on their fastest processors would keep
    one processor busy ``utilisation`` of the time; times ``rate_scale``."""
    total_ms = sum(reference_latency_ms(catalog.task(t)) for t in w.tasks)
    rate = w.rate_scale * w.utilisation * 1000.0 / total_ms
    return {t: rate for t in w.tasks}


def draw_requests(catalog: Any, w: Workload, rng: np.random.Generator) -> list[Request]:
    rates = task_rates_per_s(catalog, w)
    total = sum(rates.values())
    names = list(w.tasks)
    probs = np.array([rates[t] for t in names]) / total
    # merged Poisson stream: exponential gaps at the total rate, each request's task drawn by its share
    gaps = rng.exponential(1000.0 / total, size=w.n_requests)
    arrivals = np.cumsum(gaps)
    which = rng.choice(len(names), size=w.n_requests, p=probs)
    horizon = float(arrivals[-1]) + 1.0
    slo: dict[str, list[tuple[float, float, float | None]]] = {}
    for t in names:
        task = catalog.task(t)
        ref = reference_latency_ms(task)
        dense_acc = task.acc(task.uniform(0))
        now, changes = 0.0, []
        while now < horizon:
            lat = ref * float(rng.choice(w.latency_factors))
            acc = None if dense_acc is None else dense_acc - float(rng.choice(w.accuracy_drops)) - 1e-9
            changes.append((now, lat, acc))
            now += float(rng.exponential(w.slo_period_ms))
        slo[t] = changes
    out = []
    for i, (a, j) in enumerate(zip(arrivals.tolist(), which.tolist())):
        t = names[j]
        cur = [c for c in slo[t] if c[0] <= a][-1]
        out.append(Request(i, t, a, cur[1], cur[2]))
    return out


def slo_at(requests: list[Request], task: str, now_ms: float) -> tuple[float, float | None] | None:
    """The SLO of ``task`` in force at ``now_ms`` as the requests reveal it (latest arrival so far)."""
    last = None
    for r in requests:
        if r.task == task and r.arrival_ms <= now_ms:
            last = r
    return None if last is None else (last.slo_latency_ms, last.slo_accuracy)
