"""Multi-task request streams whose SLOs change over time (numpy only; randomness from the caller's RNG).

Each task sends requests as a Poisson stream at ``rates_per_s[task]``. Every task's SLO is piecewise
constant: at exponential intervals (mean ``slo_period_ms``) it draws a new latency SLO, a factor of
``latency_factors`` times the task's *reference latency* (the dense model alone on its fastest single
processor), and, for tasks with measured accuracy, a new accuracy SLO, the dense model's accuracy minus one
of ``accuracy_drops``. A request is judged against the SLO in force when it arrives.
"""

from __future__ import annotations

import math
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
        if isinstance(self.tasks, str) or not isinstance(self.tasks, (tuple, list)):
            raise ValueError(f"workload: field 'tasks' must be a list of task names, got {self.tasks!r}")
        if not self.tasks:
            raise ValueError("workload: tasks must name at least one task")
        seen: set[str] = set()
        for t in self.tasks:
            if not isinstance(t, str):
                raise ValueError(f"workload: field 'tasks' must hold task names (strings), got {t!r}")
            if t in seen:
                raise ValueError(f"workload: duplicate task {t!r} in tasks {list(self.tasks)}")
            seen.add(t)
        for name in ("rate_scale", "utilisation", "slo_period_ms", "load_gbps"):
            v = getattr(self, name)
            if not _is_real(v) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"workload: field {name!r} must be a finite number > 0, got {v!r}")
        if isinstance(self.n_requests, bool) or not isinstance(self.n_requests, int) or self.n_requests < 1:
            raise ValueError(f"workload: field 'n_requests' must be a positive integer, got {self.n_requests!r}")
        _check_numbers("latency_factors", self.latency_factors, "> 0", lambda x: x > 0)
        _check_numbers("accuracy_drops", self.accuracy_drops, "in [0, 1)", lambda x: 0 <= x < 1)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _check_numbers(name: str, values: Any, rule: str, ok: Any) -> None:
    """``values``: a non-empty list / tuple of finite numbers that satisfy ``ok`` (``rule`` in words)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (tuple, list)) or not values:
        raise ValueError(f"workload: field {name!r} must be a non-empty list of finite numbers {rule}, got {values!r}")
    for x in values:
        if not _is_real(x) or not math.isfinite(x) or not ok(x):
            raise ValueError(f"workload: field {name!r} must hold finite numbers {rule}, got {x!r} in {values!r}")


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
    rate = equal_rate_per_s(catalog, w.tasks, w)
    return {t: rate for t in w.tasks}


def equal_rate_per_s(catalog: Any, names: Any, w: Workload) -> float:
    """The rate of :func:`task_rates_per_s` for the tasks ``names`` (repeats allowed: concurrent instances
    of one task, as :func:`sparoa_env.loom.evaluate.solver_comparison` builds) under ``w``'s load."""
    total_ms = sum(reference_latency_ms(catalog.task(t)) for t in names)
    rate = w.rate_scale * w.utilisation * 1000.0 / total_ms
    if not (math.isfinite(rate) and rate > 0 and math.isfinite(1000.0 / (rate * len(names)))):
        raise ValueError(f"workload: rate_scale={w.rate_scale!r} and utilisation={w.utilisation!r} give a request "
                         f"rate of {rate!r} per s per task, which is not a usable finite positive rate")
    return rate


#: SLO changes drawn one by one per task at most (expected number over the stream): beyond it (an SLO period
#: far shorter than the gaps between requests) :func:`draw_requests` draws only what requests can observe
MAX_SLO_CHANGES = 10_000


def draw_requests(catalog: Any, w: Workload, rng: np.random.Generator) -> list[Request]:
    """The request stream of ``w`` (module docstring). Cost: O(requests + SLO changes), with the SLO changes
    drawn one by one only while fewer than :data:`MAX_SLO_CHANGES` are expected per task; beyond that only
    whether at least one change happened between a task's consecutive requests is drawn (probability
    ``1 - exp(-gap / slo_period_ms)``, the same distribution, since the changes form a Poisson process)."""
    rates = task_rates_per_s(catalog, w)
    total = sum(rates.values())
    names = list(w.tasks)
    probs = np.array([rates[t] for t in names]) / total
    # merged Poisson stream: exponential gaps at the total rate, each request's task drawn by its share
    gaps = rng.exponential(1000.0 / total, size=w.n_requests)
    arrivals = np.cumsum(gaps)
    which = rng.choice(len(names), size=w.n_requests, p=probs)
    horizon = float(arrivals[-1]) + 1.0
    one_by_one = horizon / w.slo_period_ms <= MAX_SLO_CHANGES
    lat_of = np.empty(w.n_requests)
    acc_of: list[float | None] = [None] * w.n_requests
    for j, t in enumerate(names):
        task = catalog.task(t)
        ref = reference_latency_ms(task)
        dense_acc = task.acc(task.uniform(0))
        mine = np.flatnonzero(which == j)
        if one_by_one:
            now, times, lats, accs = 0.0, [], [], []
            while now < horizon:
                lats.append(ref * float(rng.choice(w.latency_factors)))
                accs.append(None if dense_acc is None else dense_acc - float(rng.choice(w.accuracy_drops)) - 1e-9)
                times.append(now)
                now += float(rng.exponential(w.slo_period_ms))
            # the SLO in force at an arrival: the last change at or before it
            cur = np.searchsorted(np.asarray(times), arrivals[mine], side="right") - 1
        else:
            change = np.ones(len(mine), dtype=bool)
            if len(mine) > 1:
                change[1:] = rng.random(len(mine) - 1) < -np.expm1(-np.diff(arrivals[mine]) / w.slo_period_ms)
            n = int(change.sum())
            lats = [ref * float(f) for f in rng.choice(w.latency_factors, size=n)]
            accs = ([None] * n if dense_acc is None else
                    [dense_acc - float(d) - 1e-9 for d in rng.choice(w.accuracy_drops, size=n)])
            cur = np.cumsum(change) - 1
        for i, c in zip(mine.tolist(), cur.tolist()):
            lat_of[i] = lats[c]
            acc_of[i] = accs[c]
    return [Request(i, names[j], a, float(lat_of[i]), acc_of[i])
            for i, (a, j) in enumerate(zip(arrivals.tolist(), which.tolist()))]


def slo_at(requests: list[Request], task: str, now_ms: float) -> tuple[float, float | None] | None:
    """The SLO of ``task`` in force at ``now_ms`` as the requests reveal it (latest arrival so far)."""
    last = None
    for r in requests:
        if r.task == task and r.arrival_ms <= now_ms:
            last = r
    return None if last is None else (last.slo_latency_ms, last.slo_accuracy)
