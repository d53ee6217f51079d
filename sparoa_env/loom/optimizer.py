"""Joint choice of stitched variant and processor pipeline for several concurrent tasks.

Problem (one instance = the tasks' current SLOs and request rates). Task ``t`` picks one candidate ``c``
from its list: a stitched variant with a placement of its blocks on processors (a pipeline such as
``gpu -> cpu -> npu``, :func:`sparoa_env.loom.catalog.pipelines`). Each candidate has

* ``bad[t][c]`` in {0, 1}: 1 when it is predicted to miss the task's SLO (accuracy below the SLO, or
  latency alone times ``1 + guard`` above the latency SLO: the guard leaves room for queueing);
* ``busy[t][c][p]``: ms it occupies processor ``p`` per request.

With ``w_t`` the task's share of the requests and ``r_t`` its rate (requests / ms), the optimizer minimises

    W * sum_t w_t * bad[t][c_t]  +  sum_t w_t * lat[t][c_t] / slo_t  +  z,
    z >= sum_t r_t * busy[t][c_t][p]   for every processor p

i.e. first the predicted share of requests that miss their SLO, then the predicted latency relative to
the SLO (margin against the queueing tail the mean-wait model misses), then the utilisation ``z`` of the
most loaded processor: the lower ``z``, the higher the throughput the choice sustains (``1 / z`` times the
offered load). ``W`` (default 100) makes one task's SLO worth more than any realistic utilisation gain.

* :func:`solve_milp`: the exact mixed-integer program with ``scipy.optimize.milp`` (HiGHS): binaries
  ``x[t][c]``, one per task, and the continuous ``z``.
* :func:`solve_heuristic`: greedy construction (tasks by decreasing rate, each taking the candidate that
  adds least to the objective) followed by best-response passes until no single task's change improves
  the objective. Fast for large instances; no optimality guarantee.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["Problem", "Solution", "solve_milp", "solve_heuristic", "objective", "VIOLATION_WEIGHT"]

VIOLATION_WEIGHT = 100.0
LATENCY_WEIGHT = 1.0


@dataclass(frozen=True)
class Problem:
    rates: np.ndarray                # (T,) requests per ms
    busy: tuple[np.ndarray, ...]     # per task (C_t, P) ms per request on each processor
    lat: tuple[np.ndarray, ...]      # per task (C_t,) latency alone (ms), weight loading included
    acc_bad: tuple[np.ndarray, ...]  # per task (C_t,) True = predicted accuracy below the SLO
    slo_ms: np.ndarray               # (T,) latency SLOs
    guard: float = 0.2

    def __post_init__(self) -> None:
        """Validate and convert (lists become arrays): ``ValueError`` naming the field and the task."""
        def arr(name: str, value: object, ndim: int, dtype: type = float) -> np.ndarray:
            try:
                a = np.asarray(value, dtype=dtype if dtype is float else None)
                if dtype is bool and a.dtype != bool:  # 0 / 1 numbers only, nothing else counts as a flag
                    if a.size and not np.all((a == 0) | (a == 1)):
                        raise ValueError
                    a = a.astype(bool)
            except (TypeError, ValueError):
                what = "True / False (or 0 / 1)" if dtype is bool else "numbers"
                raise ValueError(f"problem: {name} must be a {ndim}-D array of {what}, got {value!r}") from None
            if a.ndim != ndim:
                raise ValueError(f"problem: {name} must be {ndim}-D, got shape {a.shape}")
            if dtype is float and not np.all(np.isfinite(a)):
                raise ValueError(f"problem: {name} must be finite, got {value!r}")
            return a

        for name in ("busy", "lat", "acc_bad"):
            if isinstance(getattr(self, name), (np.ndarray, str)) or not isinstance(getattr(self, name), Sequence):
                raise ValueError(f"problem: {name} must be a list / tuple with one array per task")
        rates = arr("rates", self.rates, 1)
        slo = arr("slo_ms", self.slo_ms, 1)
        if not (len(rates) == len(self.busy) == len(self.lat) == len(self.acc_bad) == len(slo)) or len(rates) == 0:
            raise ValueError("problem: rates, busy, lat, acc_bad and slo_ms need one entry per task (at least one task)")
        if np.any(rates < 0) or rates.sum() <= 0:
            raise ValueError(f"problem: rates (requests per ms) must be >= 0 with a positive sum, got {rates.tolist()}")
        if np.any(slo <= 0):
            raise ValueError(f"problem: slo_ms must be > 0, got {slo.tolist()}")
        if isinstance(self.guard, bool) or not isinstance(self.guard, (int, float)) or not np.isfinite(self.guard) \
                or self.guard < 0:
            raise ValueError(f"problem: guard must be a finite number >= 0, got {self.guard!r}")
        busy, lat, bad = [], [], []
        for t in range(len(rates)):
            b = arr(f"busy[{t}]", self.busy[t], 2)
            v = arr(f"lat[{t}]", self.lat[t], 1)
            a = arr(f"acc_bad[{t}]", self.acc_bad[t], 1, bool)
            if len(b) == 0 or not (len(b) == len(v) == len(a)):
                raise ValueError(f"problem: task {t} needs at least one candidate with busy (C, P), lat and acc_bad "
                                 f"(C,), got shapes {b.shape}, {v.shape}, {a.shape}")
            P = busy[0].shape[1] if busy else b.shape[1]
            if b.shape[1] != P or P == 0:
                raise ValueError(f"problem: busy[{t}] has {b.shape[1]} processor columns, busy[0] {P}: every task "
                                 "needs the same number of processors P >= 1")
            if np.any(b < 0) or np.any(v < 0):
                raise ValueError(f"problem: task {t}: busy and lat must be >= 0 ms")
            busy.append(b)
            lat.append(v)
            bad.append(a)
        object.__setattr__(self, "rates", rates)
        object.__setattr__(self, "slo_ms", slo)
        object.__setattr__(self, "busy", tuple(busy))
        object.__setattr__(self, "lat", tuple(lat))
        object.__setattr__(self, "acc_bad", tuple(bad))

    @property
    def weights(self) -> np.ndarray:
        return self.rates / self.rates.sum()

    @property
    def n_tasks(self) -> int:
        return len(self.rates)

    @property
    def n_lanes(self) -> int:
        return self.busy[0].shape[1]

    def waits(self, choice: Sequence[int]) -> np.ndarray:
        """Mean queueing delay per processor for a choice: M/D/1-style ``sum r S^2 / (2 (1 - rho))``."""
        rho = sum(self.rates[t] * self.busy[t][c] for t, c in enumerate(choice))
        s2 = sum(self.rates[t] * self.busy[t][c] ** 2 for t, c in enumerate(choice))
        return np.where(rho < 1.0, s2 / (2.0 * np.maximum(1.0 - rho, 1e-9)), 1e9)

    def slack(self, t: int, waits: np.ndarray) -> np.ndarray:
        """Per candidate of task t: predicted latency (alone + queueing) over the latency SLO."""
        return (self.lat[t] + (self.busy[t] > 0) @ waits) / self.slo_ms[t]

    def bad(self, t: int, waits: np.ndarray) -> np.ndarray:
        """Per candidate of task t: 1 when predicted to miss the SLO given the processors' waits."""
        q = (self.busy[t] > 0) @ waits
        late = (self.lat[t] + q) * (1.0 + self.guard) > self.slo_ms[t]
        return (late | self.acc_bad[t]).astype(float)


@dataclass(frozen=True)
class Solution:
    choice: tuple[int, ...]
    objective: float
    violations: float      # predicted share of requests missing their SLO
    utilisation: float     # z
    seconds: float
    optimal: bool
    method: str


def objective(p: Problem, choice: Sequence[int], weight: float = VIOLATION_WEIGHT) -> tuple[float, float, float]:
    w = p.weights
    waits = p.waits(choice)
    viol = float(sum(w[t] * p.bad(t, waits)[c] for t, c in enumerate(choice)))
    slack = float(sum(w[t] * min(p.slack(t, waits)[c], 10.0) for t, c in enumerate(choice)))
    load = sum(p.rates[t] * p.busy[t][c] for t, c in enumerate(choice))
    z = float(np.max(load))
    return weight * viol + LATENCY_WEIGHT * slack + z, viol, z


def solve_milp(p: Problem, *, weight: float = VIOLATION_WEIGHT, time_limit_s: float = 60.0) -> Solution:
    """Exact solution with HiGHS (``scipy.optimize.milp``)."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import lil_matrix

    t0 = time.perf_counter()
    start = solve_heuristic(p, weight=weight)
    waits = p.waits(start.choice)
    bads = [p.bad(t, waits) for t in range(p.n_tasks)]
    sizes = [len(b) for b in bads]
    offs = np.concatenate([[0], np.cumsum(sizes)])
    n = int(offs[-1]) + 1  # x's then z
    w = p.weights
    c = np.zeros(n)
    for t in range(p.n_tasks):
        c[offs[t]:offs[t + 1]] = weight * w[t] * bads[t] + LATENCY_WEIGHT * w[t] * np.minimum(p.slack(t, waits), 10.0)
    c[-1] = 1.0
    T, P = p.n_tasks, p.n_lanes
    A = lil_matrix((T + P, n))
    for t in range(T):
        A[t, offs[t]:offs[t + 1]] = 1.0
        for q in range(P):
            A[T + q, offs[t]:offs[t + 1]] = p.rates[t] * p.busy[t][:, q]
    for q in range(P):
        A[T + q, n - 1] = -1.0
    lo = np.concatenate([np.ones(T), np.full(P, -np.inf)])
    hi = np.concatenate([np.ones(T), np.zeros(P)])
    integrality = np.ones(n)
    integrality[-1] = 0
    ub = np.ones(n)
    ub[-1] = np.inf
    res = milp(c, constraints=LinearConstraint(A.tocsr(), lo, hi), integrality=integrality,
               bounds=Bounds(np.zeros(n), ub), options={"time_limit": time_limit_s, "disp": False})
    if res.x is None:
        raise RuntimeError(f"MILP found no solution: {res.message}")
    choice = tuple(int(np.argmax(res.x[offs[t]:offs[t + 1]])) for t in range(T))
    obj, viol, z = objective(p, choice, weight)
    if start.objective < obj:  # the waits moved with the choice: keep the better of the two
        choice, obj, viol, z = start.choice, start.objective, start.violations, start.utilisation
    return Solution(choice, obj, viol, z, time.perf_counter() - t0, bool(res.status == 0), "milp")


def solve_heuristic(p: Problem, *, weight: float = VIOLATION_WEIGHT, max_passes: int = 20) -> Solution:
    """Greedy construction + best-response local search (module docstring)."""
    t0 = time.perf_counter()
    T, P = p.n_tasks, p.n_lanes
    w = p.weights
    loads = [p.rates[t] * p.busy[t] for t in range(T)]
    # greedy: tasks by decreasing rate, waits of the tasks placed so far
    load = np.zeros(P)
    choice: list[int] = []
    order = [int(t) for t in np.argsort(-p.rates, kind="stable")]
    placed: dict[int, int] = {}
    for t in order:
        ts = list(placed)
        rho = load
        s2 = sum((p.rates[u] * p.busy[u][placed[u]] ** 2 for u in ts), np.zeros(P))
        waits = np.where(rho < 1.0, s2 / (2.0 * np.maximum(1.0 - rho, 1e-9)), 1e9)
        cost = (weight * w[t] * p.bad(t, waits) + LATENCY_WEIGHT * w[t] * np.minimum(p.slack(t, waits), 10.0)
                + np.max(load[None, :] + loads[t], axis=1))
        placed[t] = int(np.argmin(cost))
        load = load + loads[t][placed[t]]
    choice = [placed[t] for t in range(T)]
    best = objective(p, choice, weight)[0]
    for _ in range(max_passes):
        improved = False
        for t in range(T):
            base = load - loads[t][choice[t]]
            waits = p.waits(choice)
            cost = (weight * w[t] * p.bad(t, waits) + LATENCY_WEIGHT * w[t] * np.minimum(p.slack(t, waits), 10.0)
                    + np.max(base[None, :] + loads[t], axis=1))
            for c in np.argsort(cost, kind="stable")[:8]:  # verify the best few exactly (waits move with c)
                trial = list(choice)
                trial[t] = int(c)
                obj = objective(p, trial, weight)[0]
                if obj < best - 1e-12:
                    choice, best, load, improved = trial, obj, base + loads[t][int(c)], True
                    break
        if not improved:
            break
    obj, viol, z = objective(p, choice, weight)
    return Solution(tuple(choice), obj, viol, z, time.perf_counter() - t0, False, "heuristic")
