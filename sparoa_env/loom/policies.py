"""Serving policies: SparseLoom and the paper's baseline archetypes, on one interface.

A policy is called at every request arrival, ``policy(request, sim) -> (stitch, placement)``. All of them
plan with the same optimizer (:mod:`sparoa_env.loom.optimizer`) over a candidate set; they differ in the
candidates, in whether they re-plan when SLOs change, and in what they keep in memory:

==============  ==========================================  ==========  ===================================
policy          variants                                    re-plans    placement
==============  ==========================================  ==========  ===================================
``sv-ao-np``    one: the zoo's most accurate (large: dense) never       whole model on one processor
``sv-ao-p``     same                                        never       pipelines across processors
``sv-lo-np``    one: the zoo's fastest                      never       one processor
``sv-lo-p``     same                                        never       pipelines
``av-np``       the original zoo (uniform variants)         SLO change  one processor
``av-p``        same                                        SLO change  pipelines
``sparseloom``  stitched variants (estimator's Pareto set)  SLO change  pipelines; hot blocks preloaded;
                                                                        per request, queue-aware
                                                                        (:mod:`sparoa_env.loom.runtime`)
==============  ==========================================  ==========  ===================================

Accuracies the policies plan with: the zoo's uniform variants are profiled (their measured accuracy);
SparseLoom predicts its stitched variants' accuracy with the estimator (:mod:`sparoa_env.loom.estimator`),
less a margin, uses the measured value of the variants it profiled to fit it, and never reads the measured
table of the others (:func:`sparoa_env.loom.evaluate.estimated_accuracies`). Violations are always judged on
measured accuracy and simulated latency.

Before the first request of a task arrives its SLO is unknown: the policy plans with the reference latency
and the dense accuracy minus 2 points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .catalog import Catalog, LoomTask, pipelines
from .optimizer import Problem, solve_heuristic, solve_milp
from .workload import reference_latency_ms

__all__ = ["CandidateSet", "PlanningPolicy", "pareto_stitches", "make_policy", "POLICIES", "GUARD"]

POLICIES = ("sv-ao-np", "sv-ao-p", "sv-lo-np", "sv-lo-p", "av-np", "av-p", "sparseloom")
GUARD = 0.2    # (latency alone + expected queueing) x 1.2 must fit the SLO: room for contention


def single_lane(task: LoomTask) -> list[tuple[int, ...]]:
    return [(p,) * task.n_blocks for p in range(task.n_lanes)]


def pareto_stitches(task: LoomTask, acc: np.ndarray | None, max_n: int = 16, per_lane: bool = False) -> np.ndarray:
    """Stitched variants on the (accuracy up, latency down) front, latency alone on the fastest single
    processor; for latency-only tasks the (latency, memory) front. At most ``max_n``, spread evenly.
    ``per_lane``: the union of the fronts on each processor alone (up to ``max_n`` each), so that a
    runtime that moves the task off a busy processor finds that processor's best variants too."""
    if per_lane:
        fronts = [_front(task, task.all_latencies(pl), acc, max_n) for pl in single_lane(task)]
        return np.unique(np.concatenate(fronts), axis=0)
    lat = np.min([task.all_latencies(pl) for pl in single_lane(task)], axis=0)
    return _front(task, lat, acc, max_n)


def _front(task: LoomTask, lat: np.ndarray, acc: np.ndarray | None, max_n: int) -> np.ndarray:
    second = -acc if acc is not None else task.all_memory()
    order = np.lexsort((second, lat))
    front, best = [], np.inf
    for i in order:
        if second[i] < best - 1e-12:
            front.append(i)
            best = second[i]
    front = np.array(front)
    if len(front) > max_n:
        front = front[np.unique(np.linspace(0, len(front) - 1, max_n).round().astype(int))]
    return np.array([task.stitch_of(i) for i in front], dtype=int)


@dataclass
class CandidateSet:
    """Candidates of one task: stitched variants x placements, with the numbers the optimizer needs."""

    task: LoomTask
    stitches: np.ndarray          # (S, K)
    acc: np.ndarray | None        # (S,) what the policy believes
    placements: list[tuple[int, ...]]
    load_ms: np.ndarray = None    # (S,) weight-loading time the policy expects (0 when all resident)
    _lat: np.ndarray = field(init=False, repr=False)
    _busy: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        t, S, Pl = self.task, len(self.stitches), len(self.placements)
        idx = np.array([t.index(s) for s in self.stitches])
        self._lat = np.stack([t.all_latencies(pl)[idx] for pl in self.placements], axis=1)  # (S, Pl)
        self._busy = np.array([[t.busy_ms(s, pl) for pl in self.placements] for s in self.stitches])  # (S, Pl, P)
        if self.load_ms is None:
            self.load_ms = np.zeros(S)

    def arrays(self, slo_accuracy: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """busy (C, P), latency alone with loading (C,), accuracy below the SLO (C,); C = stitches x placements."""
        lat = self._lat + self.load_ms[:, None]
        acc_bad = np.zeros(lat.shape, dtype=bool)
        if slo_accuracy is not None and self.acc is not None:
            acc_bad |= (self.acc < slo_accuracy)[:, None]
        return self._busy.reshape(-1, self.task.n_lanes), lat.reshape(-1), acc_bad.reshape(-1)

    def choice(self, c: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        s, p = divmod(c, len(self.placements))
        return tuple(int(v) for v in self.stitches[s]), self.placements[p]


class PlanningPolicy:
    """Plans every task's (variant, placement) with the optimizer; re-plans on SLO changes if ``adaptive``."""

    def __init__(self, catalog: Catalog, rates_per_s: dict[str, float], candidates: dict[str, CandidateSet], *,
                 adaptive: bool, solver: str = "heuristic") -> None:
        if solver not in ("heuristic", "milp"):
            raise ValueError(f"solver must be 'heuristic' or 'milp', got {solver!r}")
        self.catalog = catalog
        self.names = list(candidates)
        self.rates = np.array([rates_per_s[n] / 1000.0 for n in self.names])
        self.candidates = candidates
        self.adaptive = adaptive
        self.solver = solver
        self.slo: dict[str, tuple[float, float | None]] = {}
        for n in self.names:
            t = catalog.task(n)
            dense = t.acc(t.uniform(0))
            self.slo[n] = (reference_latency_ms(t), None if dense is None else dense - 0.02)
        self.plan: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] | None = None
        self.solves = 0
        self.solve_s = 0.0

    def _replan(self) -> None:
        prob = self.problem()
        sol = solve_milp(prob) if self.solver == "milp" else solve_heuristic(prob)
        self.solves += 1
        self.solve_s += sol.seconds
        self.plan = {n: self.candidates[n].choice(c) for n, c in zip(self.names, sol.choice)}

    def problem(self) -> Problem:
        busy, lat, acc_bad = [], [], []
        for n in self.names:
            b, l_, a = self.candidates[n].arrays(self.slo[n][1])
            busy.append(b)
            lat.append(l_)
            acc_bad.append(a)
        return Problem(self.rates, tuple(busy), tuple(lat), tuple(acc_bad),
                       np.array([self.slo[n][0] for n in self.names]), GUARD)

    def __call__(self, request: Any, sim: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
        new = (request.slo_latency_ms, request.slo_accuracy)
        if self.plan is None:
            self.slo[request.task] = new
            self._replan()
        elif self.adaptive and self.slo[request.task] != new:
            self.slo[request.task] = new
            self._replan()
        return self.plan[request.task]


def make_policy(name: str, catalog: Catalog, rates_per_s: dict[str, float], *,
                estimated_acc: dict[str, np.ndarray] | None = None, resident: Callable[[Any], bool] | None = None,
                load_gbps: float = 1.0, solver: str = "heuristic", max_stitches: int = 16,
                runtime: bool = True) -> Any:
    """One of :data:`POLICIES`. ``estimated_acc[task]``: the estimator's accuracy of every stitched variant
    (SparseLoom only); ``resident(block)``: whether a block is preloaded (SparseLoom plans loading time).
    SparseLoom is the planner wrapped in its per-request runtime (:class:`~sparoa_env.loom.runtime.QueueAwarePolicy`);
    ``runtime=False`` gives the planner alone (the first build's SparseLoom, for ablations)."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; valid: {', '.join(POLICIES)}")
    partition = not name.endswith("-np")
    cands = {}
    for n in rates_per_s:
        t = catalog.task(n)
        pls = list(pipelines(t.n_blocks, t.n_lanes)) if partition else single_lane(t)
        uniform = np.array([t.uniform(v) for v in range(t.n_variants)])
        u_acc = None if t.accuracy is None else np.array([t.acc(s) for s in uniform])
        if name.startswith("sv-"):
            if name.startswith("sv-ao"):
                v = 0 if u_acc is None else int(np.argmax(u_acc))  # ties: the first (dense)
            else:
                lat = [min(t.solo_latency_ms(s, pl) for pl in single_lane(t)) for s in uniform]
                v = int(np.argmin(lat))
            stitches, acc = uniform[v:v + 1], None if u_acc is None else u_acc[v:v + 1]
        elif name.startswith("av-"):
            stitches, acc = uniform, u_acc
        else:
            est = None if estimated_acc is None else estimated_acc.get(n)
            if t.accuracy is not None and est is None:
                raise ValueError(f"sparseloom needs estimated accuracies for task {n!r}")
            stitches = pareto_stitches(t, est, max_stitches, per_lane=est is not None)
            acc = None if est is None else np.array([est[t.index(s)] for s in stitches])
        load = None
        if resident is not None:
            load = np.array([sum(t.weight_mb[k, v] for k, v in enumerate(s) if not resident((n, k, int(v))))
                             for s in stitches]) / load_gbps
        cands[n] = CandidateSet(t, stitches, acc, pls, load)
    planner = PlanningPolicy(catalog, rates_per_s, cands, adaptive=not name.startswith("sv-"), solver=solver)
    if name == "sparseloom" and runtime:
        from .runtime import QueueAwarePolicy

        return QueueAwarePolicy(planner)  # loading is priced at the simulator memory's own rate
    return planner


def candidate_blocks(policy: PlanningPolicy) -> dict[tuple[str, int, int], float]:
    """Every block any candidate of the policy may use, with its MB (what full preload keeps)."""
    out = {}
    for n, c in policy.candidates.items():
        for s in c.stitches:
            for k, v in enumerate(s):
                out[(n, k, int(v))] = float(c.task.weight_mb[k, v])
    return out
