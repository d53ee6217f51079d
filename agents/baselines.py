"""Scripted placement policies that act through the environment, on the same seeds and dynamics as SAC.

Every policy has the same two-call interface as the trained one (:class:`agents.policy.SACPolicyRunner`):
``reset(env, info, seed)`` at the start of an episode (``env`` is the unwrapped
:class:`~sparoa_env.envs.SparOAEnv`, ``info`` the reset info, whose ``power_mode`` is the episode's
initial mode) and ``act(obs) -> action`` for every decision. The environment asks ops in topological
order, requests in arrival order (its docstring), so the ``k``-th decision of an episode is op
``k % n_ops``; plan-based baselines replay a per-op lane array with that counter.

=============  =====================================================================================
name           placement
=============  =====================================================================================
cpu_only       every op on lane 0 (the CPU)
gpu_only       every op on the first ``gpu`` lane (else the first accelerator)
greedy         each op on the lane where it is fastest alone (:func:`isolated_ms`), transfers ignored
heft           HEFT list scheduling (Topcuoglu et al., 2002): upward ranks from mean costs, then each
               op, highest rank first, on the lane giving the earliest finish time (insertion-based),
               with hand-off costs from the cost model; the resulting lanes are replayed
threshold      SparOA's static rule (:mod:`sparoa_env.thresholds`): CPU when ``rho >= rho*`` and
               ``I <= I*``, the accelerator otherwise; ``(rho*, I*)`` are the environment's thresholds
               for the initial power mode (the cost-model fit by default)
random         each decision uniformly at random over the lanes (its own generator, seeded per episode)
=============  =====================================================================================

Costs come from ``env.cost_model.op_costs(env.graph, mode)`` at the episode's initial power mode
(nominal clocks, no background): the static baselines never look at the live hardware state.

How long one op takes alone (:func:`isolated_ms`): on a synchronous lane (the CPU worker) the op pays
its dispatch and its device time one after the other, ``host_ms + nominal_ms``; on an asynchronous lane
(a GPU stream) the host issues it and the device runs it, and in a stream of ops the two overlap, so the
per-op cost is ``max(host_ms, nominal_ms)`` (a launch-bound GPU runs at one op per launch).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Protocol

import numpy as np

from sparoa_env.graph import OpGraph
from sparoa_env.thresholds import threshold_rule

__all__ = ["Policy", "PlanPolicy", "RandomPolicy", "BASELINES", "make_baseline", "baseline_names",
           "isolated_ms", "greedy_lanes", "heft_lanes", "threshold_lanes", "accelerator_lane"]


class Policy(Protocol):
    """What :func:`agents.evaluate.evaluate` runs: a name, a per-episode reset and a per-decision action."""

    name: str

    def reset(self, env: Any, info: dict[str, Any], seed: int) -> None: ...

    def act(self, obs: np.ndarray) -> np.ndarray: ...


# ----------------------------------------------------------------------------------------------- costs
def isolated_ms(costs: Any, async_lanes: list[bool]) -> np.ndarray:
    """``(n_ops, n_lanes)`` time of each op on each lane in a stream of ops, nothing else running (see the
    module docstring): ``host + nominal`` on synchronous lanes, ``max(host, nominal)`` on asynchronous ones."""
    nom, host = np.asarray(costs.nominal_ms), np.asarray(costs.host_ms)
    a = np.asarray(async_lanes, dtype=bool)[None, :]
    return np.where(a, np.maximum(host, nom), host + nom)


def async_lanes_of(profile: Any) -> list[bool]:
    return [bool(p.async_dispatch) for p in profile.processors]


def accelerator_lane(profile: Any) -> int:
    """The lane ``gpu_only`` uses: the first processor of kind ``gpu``, else the first non-CPU one, else
    (a CPU-only profile such as ``host``, whose lanes are core groups) the last lane."""
    kinds = [p.kind for p in profile.processors]
    if "gpu" in kinds:
        return kinds.index("gpu")
    return next((k for k, kind in enumerate(kinds) if kind != "cpu"), len(kinds) - 1)


def greedy_lanes(graph: OpGraph, costs: Any, profile: Any) -> np.ndarray:
    """Each op on its fastest lane alone; ties to the lower lane."""
    return np.argmin(isolated_ms(costs, async_lanes_of(profile)), axis=1).astype(np.int64)


def threshold_lanes(graph: OpGraph, rho_star: float, i_star: float, acc_lane: int) -> np.ndarray:
    f = graph.features
    cpu = threshold_rule(f["sparsity"], f["intensity"], rho_star, i_star)
    return np.where(cpu, 0, acc_lane).astype(np.int64)


def heft_lanes(graph: OpGraph, costs: Any, cost_model: Any) -> np.ndarray:
    """HEFT with insertion: per-op costs :func:`isolated_ms`, edge costs ``cost_model.transfer_ms`` (0 on the
    same lane, 0 for an empty tensor, as in the simulator). Graph inputs start on lane 0 and outputs end
    there, so entry and exit hand-offs count. Returns the lane of each op (graph order)."""
    profile = cost_model.profile
    w = isolated_ms(costs, async_lanes_of(profile))
    n, P = w.shape
    preds, succs = graph.predecessors, graph.successors
    eb = graph.edge_bytes
    feats = graph.features
    xfer_cache: dict[tuple[float, int, int], float] = {}

    def xfer(nbytes: float, src: int, dst: int) -> float:
        if src == dst or nbytes <= 0:
            return 0.0
        key = (nbytes, src, dst)
        v = xfer_cache.get(key)
        if v is None:
            v = xfer_cache[key] = cost_model.transfer_ms(nbytes, src, dst)
        return v

    def mean_xfer(nbytes: float) -> float:
        # mean over ordered lane pairs, the same lane included (it costs 0), as in HEFT's c-bar
        return sum(xfer(nbytes, a, b) for a in range(P) for b in range(P)) / (P * P)

    wbar = w.mean(axis=1)
    rank = np.zeros(n)
    for i in range(n - 1, -1, -1):
        tail = max((mean_xfer(eb[(i, j)]) + rank[j] for j in succs[i]), default=0.0)
        if not succs[i]:
            tail = sum(xfer(float(feats["bytes_out"][i]), p, 0) for p in range(P)) / P
        rank[i] = wbar[i] + tail
    # topological order is respected by decreasing rank (a predecessor's rank exceeds its successor's when
    # costs are positive); ties are broken by graph order, which is topological
    order = sorted(range(n), key=lambda i: (-rank[i], i))
    order = _topological_by_priority(order, preds)
    lane = np.full(n, -1, dtype=np.int64)
    finish = np.zeros(n)
    busy: list[list[tuple[float, float]]] = [[] for _ in range(P)]  # sorted (start, end) intervals
    for i in order:
        best = (math.inf, 0, 0.0)
        for p in range(P):
            if preds[i]:
                ready = max(finish[j] + xfer(eb[(j, i)], int(lane[j]), p) for j in preds[i])
            else:
                ready = xfer(float(feats["bytes_in"][i]), 0, p)
            start = _earliest_slot(busy[p], ready, float(w[i, p]))
            eft = start + float(w[i, p])
            if not succs[i]:
                eft_exit = eft + xfer(float(feats["bytes_out"][i]), p, 0)
            else:
                eft_exit = eft
            if eft_exit < best[0] - 1e-12:
                best = (eft_exit, p, start)
        _, p, start = best
        lane[i] = p
        finish[i] = start + float(w[i, p])
        _insert(busy[p], (start, finish[i]))
    return lane


def _topological_by_priority(order: list[int], preds) -> list[int]:
    """``order`` made topological: repeatedly take the first op in ``order`` whose predecessors are placed
    (HEFT's rank order already is, unless zero-cost ops tie)."""
    placed: set[int] = set()
    pending = list(order)
    out: list[int] = []
    while pending:
        for k, i in enumerate(pending):
            if all(j in placed for j in preds[i]):
                out.append(i)
                placed.add(i)
                del pending[k]
                break
    return out


def _earliest_slot(intervals: list[tuple[float, float]], ready: float, dur: float) -> float:
    """Earliest start >= ready of a gap of length ``dur`` among sorted busy intervals (insertion policy)."""
    t = ready
    for s, e in intervals:
        if t + dur <= s + 1e-12:
            return t
        t = max(t, e)
    return t


def _insert(intervals: list[tuple[float, float]], iv: tuple[float, float]) -> None:
    k = 0
    while k < len(intervals) and intervals[k][0] <= iv[0]:
        k += 1
    intervals.insert(k, iv)


# ----------------------------------------------------------------------------------------------- policies
class PlanPolicy:
    """Replays a per-op lane array computed at reset by ``plan_fn(env, mode) -> lanes``."""

    def __init__(self, name: str, plan_fn: Callable[[Any, str], np.ndarray]) -> None:
        self.name = name
        self._plan_fn = plan_fn
        self._cache: dict[tuple[int, str], np.ndarray] = {}
        self._actions: list[np.ndarray] = []
        self._k = 0
        self.lanes: np.ndarray | None = None

    def reset(self, env: Any, info: dict[str, Any], seed: int) -> None:
        mode = info.get("power_mode") or env.mode_names[0]
        key = (id(env), mode)
        lanes = self._cache.get(key)
        if lanes is None:
            lanes = self._cache[key] = np.asarray(self._plan_fn(env, mode), dtype=np.int64)
        self.lanes = lanes
        self._actions = [env.score_of(int(lane)) for lane in lanes]
        self._k = 0

    def act(self, obs: np.ndarray) -> np.ndarray:
        a = self._actions[self._k % len(self._actions)]
        self._k += 1
        return a


class RandomPolicy:
    name = "random"

    def __init__(self) -> None:
        self._rng = np.random.default_rng(0)
        self._scores: list[np.ndarray] = []

    def reset(self, env: Any, info: dict[str, Any], seed: int) -> None:
        self._rng = np.random.default_rng([seed, 0x5A5A])  # its own stream, independent of the env's
        self._scores = [env.score_of(k) for k in range(env.n_lanes)]

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self._scores[int(self._rng.integers(len(self._scores)))]


def _costs(env: Any, mode: str) -> Any:
    return env.cost_model.op_costs(env.graph, mode)


def _predicted_thresholds(env: Any, mode: str) -> tuple[float, float]:
    """(rho*, I*) from the shipped Transformer-LSTM threshold predictor for this graph, mode, background
    load and energy weight (the heuristic thresholds, with a warning, when torch or the checkpoint is missing)."""
    from predictors import predict_thresholds

    return predict_thresholds(env.graph, env.profile, mode, env.background, energy_weight=env.energy_weight)


BASELINES: dict[str, Callable[[], Policy]] = {
    "cpu_only": lambda: PlanPolicy("cpu_only", lambda env, mode: np.zeros(len(env.graph), dtype=np.int64)),
    "gpu_only": lambda: PlanPolicy("gpu_only", lambda env, mode: np.full(len(env.graph), accelerator_lane(env.profile))),
    "greedy": lambda: PlanPolicy("greedy", lambda env, mode: greedy_lanes(env.graph, _costs(env, mode), env.profile)),
    "heft": lambda: PlanPolicy("heft", lambda env, mode: heft_lanes(env.graph, _costs(env, mode), env.cost_model)),
    "threshold": lambda: PlanPolicy("threshold", lambda env, mode: threshold_lanes(
        env.graph, *env.thresholds_for(mode), accelerator_lane(env.profile))),
    "predicted_threshold": lambda: PlanPolicy("predicted_threshold", lambda env, mode: threshold_lanes(
        env.graph, *_predicted_thresholds(env, mode), accelerator_lane(env.profile))),
    "random": RandomPolicy,
}


def baseline_names() -> list[str]:
    return list(BASELINES)


def make_baseline(name: str) -> Policy:
    try:
        return BASELINES[name]()
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; valid: {', '.join(BASELINES)} (or 'all')") from None


def parse_baselines(spec: str | None) -> list[str]:
    """``"all"`` -> every baseline; ``"heft,greedy"`` -> those; ``""``/``"none"`` -> none."""
    if spec is None or spec == "all":
        return baseline_names()
    if spec in ("", "none"):
        return []
    names = [s.strip() for s in spec.split(",") if s.strip()]
    for n in names:
        if n not in BASELINES:
            raise ValueError(f"unknown baseline {n!r}; valid: {', '.join(BASELINES)} (or 'all')")
    return names
