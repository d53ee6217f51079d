"""The best achievable latency: exact where it is tractable, a lower bound everywhere.

**What is exact and what is a bound.** The "oracle" is exact only for a *chain* (every op has at most one
predecessor and one successor) served as one request under a *static* state: no background load, one
fixed power mode and no thermal throttling during the episode. There :func:`chain_dp` solves the
placement exactly by dynamic programming over the simulator's own execution model (below), and
replaying its plan in the simulator reproduces its latency (tested). For every other case (branches,
background load, power-mode switches) only :func:`lower_bound` holds: no placement, static or
dynamic, can finish a request faster.

Execution model used by the DP (the one :mod:`sparoa_env.sim.soc` implements): a host thread decides the
ops in order; issuing an op to an asynchronous lane (a GPU stream) costs it ``host_ms`` and the lane sees
the op only then, while a synchronous lane (the CPU worker) gets it at once and pays ``host_ms`` itself,
before the op's device time. A lane pops its ops in FIFO order, waits for inputs made elsewhere, pays the
hand-off ``transfer_ms`` and runs the op for ``nominal_ms``. In a chain only one op runs at a time, so the
op's time is exactly ``nominal_ms`` (no bandwidth sharing); the state after op ``i`` is the pair (its
finish time, the time the host is free to issue op ``i + 1``) per lane, and the DP keeps the Pareto front
of those pairs, which is exact because the finish time of the rest is non-decreasing in both.

Lower bound (:func:`lower_bound`), valid for any placement and any dynamic decision rule, because
background load, throttling and bandwidth sharing only slow ops down and transfers only add time:

* **critical path**: the longest path through the graph with each op at its fastest possible time
  (``min`` over lanes of ``nominal_ms``, plus ``host_ms`` on synchronous lanes);
* **work over processors**: the optimum of a linear relaxation that spreads each op fractionally over the
  lanes: the makespan is at least each lane's busy time, and at least the host thread's issue time for
  the ops on asynchronous lanes (``scipy.optimize.linprog``; without scipy, total fastest work over the
  number of lanes).

For an episode whose power mode may switch (``power_mode="switching"``) the costs are the elementwise
minimum over the profile's modes, since a switch may speed things up.

:func:`enumerate_plans` is a third tool for tiny graphs (at most :data:`MAX_ENUMERATE_OPS` ops): it replays
every static plan in the environment on one seed and returns the best. Under a static state this is the
exact optimum over static plans for any graph shape; under dynamic load it is only the best static plan
for that seed's load trace.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparoa_env.graph import OpGraph

__all__ = ["Bound", "ChainSolution", "lower_bound", "is_chain", "chain_dp", "exact_applicable",
           "enumerate_plans", "MAX_ENUMERATE_OPS", "episode_bound"]

MAX_ENUMERATE_OPS = 12


@dataclass(frozen=True)
class Bound:
    """A lower bound on one request's end-to-end latency (ms) and its two parts."""

    lower_bound_ms: float
    critical_path_ms: float
    work_ms: float


@dataclass(frozen=True)
class ChainSolution:
    latency_ms: float
    lanes: np.ndarray


# ------------------------------------------------------------------------------------------------ bound
def _fastest_costs(cost_model: Any, graph: OpGraph, modes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Elementwise minimum over ``modes`` of (nominal_ms, host_ms)."""
    nom = host = None
    for m in modes:
        c = cost_model.op_costs(graph, m)
        nom = c.nominal_ms if nom is None else np.minimum(nom, c.nominal_ms)
        host = c.host_ms if host is None else np.minimum(host, c.host_ms)
    return np.asarray(nom), np.asarray(host)


def lower_bound(graph: OpGraph, cost_model: Any, modes: str | list[str]) -> Bound:
    """A lower bound on any request's latency when the power mode is one of ``modes`` (a name or a list)."""
    modes = [modes] if isinstance(modes, str) else list(modes)
    nom, host = _fastest_costs(cost_model, graph, modes)
    async_lane = np.array([bool(p.async_dispatch) for p in cost_model.profile.processors])
    busy = np.where(async_lane[None, :], nom, nom + host)  # lane time of op i on lane p
    fastest = busy.min(axis=1)
    finish = np.zeros(len(graph))
    for i, preds in enumerate(graph.predecessors):
        finish[i] = fastest[i] + max((finish[j] for j in preds), default=0.0)
    cp = float(finish.max()) if len(finish) else 0.0
    work = _work_bound(busy, np.where(async_lane[None, :], host, 0.0))
    return Bound(max(cp, work), cp, work)


def _work_bound(busy: np.ndarray, issue: np.ndarray) -> float:
    """min T s.t. a fractional assignment x (rows sum to 1) keeps every lane's busy time and the host's
    issue time at most T."""
    n, P = busy.shape
    if n == 0:
        return 0.0
    try:
        from scipy.optimize import linprog
    except ImportError:  # pragma: no cover - scipy comes with tianshou[eval]
        return float(busy.min(axis=1).sum() / P)
    nv = n * P + 1  # x_ip (row-major), then T
    c = np.zeros(nv)
    c[-1] = 1.0
    rows = []
    for p in range(P):
        r = np.zeros(nv)
        r[p:n * P:P] = busy[:, p]
        r[-1] = -1.0
        rows.append(r)
    if issue.any():
        r = np.zeros(nv)
        r[:n * P] = issue.reshape(-1)
        r[-1] = -1.0
        rows.append(r)
    a_eq = np.zeros((n, nv))
    for i in range(n):
        a_eq[i, i * P:(i + 1) * P] = 1.0
    res = linprog(c, A_ub=np.array(rows), b_ub=np.zeros(len(rows)), A_eq=a_eq, b_eq=np.ones(n),
                  bounds=[(0, None)] * nv, method="highs")
    if not res.success:  # pragma: no cover - the LP is always feasible and bounded
        return float(busy.min(axis=1).sum() / P)
    return float(res.fun) * (1.0 - 1e-9)  # a hair below, so solver round-off never makes it exceed the truth


def episode_bound(env: Any, info: dict[str, Any]) -> Bound:
    """The lower bound for the episode just reset: its initial power mode, or every mode if it may switch."""
    switching = env.power_mode == "switching"
    modes = list(env.mode_names) if switching else [info.get("power_mode") or env.mode_names[0]]
    return lower_bound(env.graph, env.cost_model, modes)


# ------------------------------------------------------------------------------------------------ chains
def is_chain(graph: OpGraph) -> bool:
    """Nodes ``0..n-1`` form one path ``0 -> 1 -> ... -> n-1`` (graph order is topological)."""
    return all(p == ((i - 1,) if i else ()) for i, p in enumerate(graph.predecessors))


def exact_applicable(env: Any) -> bool:
    """True when :func:`chain_dp` is the exact optimum for the env's episodes (chain, static state)."""
    from sparoa_env.sim.background import background_spec

    if env.backend_name != "sim" or env.requests.n != 1 or not is_chain(env.graph):
        return False
    if env.power_mode in ("random", "switching"):
        return env.power_mode == "random"  # one fixed mode per episode: exact for the drawn mode
    try:
        bg = background_spec(env.background)
    except ValueError:
        return False
    return not (bg.dynamic or bg.static_cpu_share or bg.static_gpu_share or bg.static_bw_frac)


def chain_dp(graph: OpGraph, cost_model: Any, mode: str) -> ChainSolution:
    """Exact minimum latency of one request of a chain in ``mode`` under a static state (module docstring)."""
    if not is_chain(graph):
        raise ValueError(f"chain_dp needs a chain (op i's only input is op i-1); {graph.model!r} is not one")
    costs = cost_model.op_costs(graph, mode)
    nom, host = costs.nominal_ms.tolist(), costs.host_ms.tolist()
    procs = cost_model.profile.processors
    P = len(procs)
    is_async = [bool(p.async_dispatch) for p in procs]
    feats = graph.features
    bytes_in, bytes_out = feats["bytes_in"].tolist(), feats["bytes_out"].tolist()
    eb = graph.edge_bytes
    n = len(graph)

    def xfer(nbytes: float, src: int, dst: int) -> float:
        return cost_model.transfer_ms(nbytes, src, dst) if src != dst and nbytes > 0 else 0.0

    # front[p]: list of (end, host_free, back) with back = (prev lane, index in the previous front)
    fronts: list[list[list[tuple[float, float, tuple[int, int]]]]] = []
    cur: list[list[tuple[float, float, tuple[int, int]]]] = []
    for p in range(P):
        q = host[0][p] if is_async[p] else 0.0
        start = q + xfer(bytes_in[0], 0, p)
        dur = nom[0][p] + (0.0 if is_async[p] else host[0][p])
        cur.append([(start + dur, q if is_async[p] else 0.0, (-1, -1))])
    fronts.append(cur)
    for i in range(1, n):
        nb = eb[(i - 1, i)]
        nxt: list[list[tuple[float, float, tuple[int, int]]]] = []
        for p in range(P):
            cands = []
            dur = nom[i][p] + (0.0 if is_async[p] else host[i][p])
            for s in range(P):
                x = xfer(nb, s, p)
                for k, (end, hfree, _) in enumerate(cur[s]):
                    q = hfree + host[i][p] if is_async[p] else hfree
                    start = (q if q > end else end) + x
                    cands.append((start + dur, q, (s, k)))
            nxt.append(_pareto(cands))
        fronts.append(nxt)
        cur = nxt
    best = (math.inf, -1, -1)
    for p in range(P):
        out = cost_model.transfer_ms(bytes_out[n - 1], p, 0) if p != 0 else 0.0
        for k, (end, _, _) in enumerate(cur[p]):
            if end + out < best[0]:
                best = (end + out, p, k)
    lat, p, k = best
    lanes = np.zeros(n, dtype=np.int64)
    for i in range(n - 1, -1, -1):
        lanes[i] = p
        p, k = fronts[i][p][k][2]
    return ChainSolution(float(lat), lanes)


def _pareto(cands: list[tuple[float, float, Any]]) -> list[tuple[float, float, Any]]:
    """Non-dominated (end, host_free) pairs, both minimised."""
    cands.sort(key=lambda c: (c[0], c[1]))
    out = []
    best_h = math.inf
    for c in cands:
        if c[1] < best_h - 1e-15:
            out.append(c)
            best_h = c[1]
    return out


# ------------------------------------------------------------------------------------------------ enumeration
def enumerate_plans(env: Any, seed: int) -> ChainSolution:
    """Best static plan for one seed by replaying all ``P ** n`` plans (``n <= MAX_ENUMERATE_OPS``); the
    latency is the mean over the episode's requests."""
    u = env.unwrapped
    n, P = len(u.graph), u.n_lanes
    if n > MAX_ENUMERATE_OPS:
        raise ValueError(f"enumerate_plans: {n} ops is too many (at most {MAX_ENUMERATE_OPS})")
    scores = [u.score_of(p) for p in range(P)]
    best = (math.inf, None)
    for lanes in itertools.product(range(P), repeat=n):
        u.reset(seed=seed)
        k = 0
        while True:
            _, _, term, _, info = u.step(scores[lanes[k % n]])
            k += 1
            if term:
                break
        lat = float(np.mean(info["latency_ms"]))
        if lat < best[0]:
            best = (lat, lanes)
    return ChainSolution(best[0], np.array(best[1], dtype=np.int64))
