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

**Background load and energy** (used by the trainer's expert and the ceilings of :mod:`agents.scenarios`):
:func:`state_costs` gives the op costs under a *static* background state, with which :func:`chain_dp` is
exact for a chain under that load; :func:`chain_weighted` minimises ``time_weight * latency + dynamic
energy`` for a chain (latency plus ``energy_weight`` times energy, or energy alone);
:func:`state_expert` is the placement rule that follows, at each decision, the plan for the state it
observes (not clairvoyant).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparoa_env.graph import OpGraph

__all__ = ["Bound", "ChainSolution", "lower_bound", "is_chain", "chain_dp", "exact_applicable",
           "enumerate_plans", "MAX_ENUMERATE_OPS", "episode_bound", "StateCosts", "state_costs", "chain_weighted",
           "FrontPlan", "StatePlanPolicy", "state_expert"]

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
    if env.cost_model.first_switch_ms:  # the simulator's first-hand-off cost is not a state of the DP
        return False
    if env.power_mode in ("random", "switching"):
        return env.power_mode == "random"  # one fixed mode per episode: exact for the drawn mode
    try:
        bg = background_spec(env.background)
    except ValueError:
        return False
    return not (bg.dynamic or bg.static_cpu_share or bg.static_gpu_share or bg.static_bw_frac or bg.lane_share)


def chain_dp(graph: OpGraph, cost_model: Any, mode: str, costs: "StateCosts | None" = None) -> ChainSolution:
    """Exact minimum latency of one request of a chain in ``mode`` under a static state (module docstring);
    ``costs`` (:func:`state_costs`) for a state with background load, else the mode's nominal costs."""
    if not is_chain(graph):
        raise ValueError(f"chain_dp needs a chain (op i's only input is op i-1); {graph.model!r} is not one")
    if costs is None:
        costs = cost_model.op_costs(graph, mode)
    nom, host = np.asarray(costs.nominal_ms).tolist(), np.asarray(costs.host_ms).tolist()
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


# ------------------------------------------------------------------------------------ energy and state
@dataclass(frozen=True)
class StateCosts:
    """Per-op costs of one power mode under one *static* background state (what the simulator's ops take
    when the state holds): ``nominal_ms`` and ``host_ms`` ``(n_ops, n_lanes)``, each lane's dynamic power
    while it runs our op (``dyn_w``) and the SoC's idle power (``idle_w``)."""

    nominal_ms: np.ndarray
    host_ms: np.ndarray
    dyn_w: tuple[float, ...]
    idle_w: float
    mode: str
    state: tuple[float, float, float]


def state_costs(cost_model: Any, graph: OpGraph, mode: str, cpu_share: float = 0.0, gpu_share: float = 0.0,
                bw_frac: float = 0.0) -> StateCosts:
    """Op costs in ``mode`` while other applications hold ``cpu_share`` of the CPU cores, ``gpu_share`` of
    the accelerators' time and ``bw_frac`` of the DRAM bandwidth (the simulator's rules,
    :mod:`sparoa_env.sim.soc`: an accelerator time-slices, a CPU loses cores (Amdahl), the DRAM share left
    caps each op's memory time, the host thread slows by ``1 / (1 - cpu_share / 2)``). Nominal clocks, no
    throttling; with all shares 0 this is ``cost_model.op_costs``. The op's own bandwidth contention with
    a concurrently running op of ours is not modelled (none in a chain)."""
    from sparoa_env.sim.soc import MIN_BW_SHARE

    c = cost_model.op_costs(graph, mode)
    prof = cost_model.profile
    m = prof.mode(mode)
    total_bw = cost_model.dram_bw_gbps(mode)
    nominal = np.empty_like(np.asarray(c.nominal_ms))
    dyn = []
    for p, proc in enumerate(prof.processors):
        if proc.kind != "cpu":
            speed = 1.0 - gpu_share
        else:
            cores = float(m.cores.get(proc.name, proc.cores)) * (1.0 - cpu_share)
            speed = cost_model.speed_factor(p, mode, cores=cores)
        share = total_bw * (1.0 - bw_frac) / cost_model.achievable_bw_gbps(p, mode)
        share = min(max(share, MIN_BW_SHARE), 1.0)
        nominal[:, p] = cost_model.combine(c.compute_ms[:, p], c.memory_ms[:, p], c.fixed_ms[:, p], speed=speed,
                                           bw_share=share)
        f = cost_model.nominal_freq_frac(p, mode)
        dyn.append(cost_model.power_w(p, mode, 1.0, f) - cost_model.power_w(p, mode, 0.0, f))
    host = np.asarray(c.host_ms) / (1.0 - 0.5 * cpu_share)
    return StateCosts(nominal, host, tuple(dyn), float(cost_model.idle_power_w(mode)), mode,
                      (float(cpu_share), float(gpu_share), float(bw_frac)))


@dataclass(frozen=True)
class FrontPlan:
    """One plan of :func:`chain_weighted`: its latency (ms), energy (mJ) and lanes."""

    latency_ms: float
    energy_mj: float
    lanes: np.ndarray


def chain_weighted(graph: OpGraph, cost_model: Any, costs: StateCosts, time_weight: float,
                   grid: tuple[float, float] | None = (2e-3, 2e-2), relax: bool = False) -> FrontPlan:
    """The plan of one request of a chain under ``costs`` (a static state) minimising
    ``time_weight * latency + dynamic energy`` exactly; since the energy is ``idle_w * latency + dynamic``,
    ``time_weight = idle_w + 1 / energy_weight`` minimises ``latency + energy_weight * energy`` and
    ``time_weight = idle_w`` the energy alone (for the latency alone use :func:`chain_dp`).

    Energy as the simulator counts it: ``idle_w`` over the request's whole time plus each op's lane's dynamic
    power over its run (device time, plus the dispatch on a synchronous lane). The DP of :func:`chain_dp`
    with the dynamic energy so far as a third coordinate of the per-lane state (finish time ``e``, host
    free time ``h``, energy ``d``). The rest of the request is a max-plus system, so delaying ``e`` and
    ``h`` by at most ``t`` delays the end by at most ``t``: state A makes state B useless when
    ``d_A + time_weight * max(0, e_A - e_B, h_A - h_B) <= d_B``, a pruning that keeps the fronts small
    and the result exact. Even so the fronts grow to hundreds of states on a 230-op chain, so by default
    states are merged on a grid of ``grid = (host-free ms, energy mJ)`` cells first (:func:`_prune`): the
    plan is then a real plan, near-optimal; ``grid=None`` is exact (slow on long chains) and
    ``relax=True`` returns an optimistic value (a lower bound on the objective; ``lanes`` all -1).
    """
    if not is_chain(graph):
        raise ValueError(f"chain_weighted needs a chain (op i's only input is op i-1); {graph.model!r} is not one")
    if not time_weight > 0:
        raise ValueError(f"time_weight must be > 0, got {time_weight!r}")
    nom, host = np.asarray(costs.nominal_ms), np.asarray(costs.host_ms)
    procs = cost_model.profile.processors
    P = len(procs)
    is_async = [bool(p.async_dispatch) for p in procs]
    feats = graph.features
    eb = graph.edge_bytes
    n = len(graph)
    dyn = [float(x) for x in costs.dyn_w]
    a = float(time_weight)

    def xfer(nbytes: float, src: int, dst: int) -> float:
        return cost_model.transfer_ms(nbytes, src, dst) if src != dst and nbytes > 0 else 0.0

    fronts: list[list[np.ndarray]] = []  # per op, per lane: rows (end, hfree, energy, back lane, back row)
    cur = []
    for p in range(P):
        q = host[0, p] if is_async[p] else 0.0
        dur = nom[0, p] + (0.0 if is_async[p] else host[0, p])
        cur.append(np.array([[q + xfer(float(feats["bytes_in"][0]), 0, p) + dur, q, dyn[p] * dur, -1, -1]]))
    fronts.append(cur)
    for i in range(1, n):
        nb = eb[(i - 1, i)]
        nxt = []
        for p in range(P):
            dur = nom[i, p] + (0.0 if is_async[p] else host[i, p])
            parts = []
            for s in range(P):
                st = cur[s]
                q = st[:, 1] + host[i, p] if is_async[p] else st[:, 1]
                end = np.maximum(q, st[:, 0]) + xfer(nb, s, p) + dur
                parts.append(np.column_stack([end, q, st[:, 2] + dyn[p] * dur, np.full(len(st), s),
                                              np.arange(len(st))]))
            nxt.append(_prune(np.concatenate(parts), a, grid, relax))
        fronts.append(nxt)
        cur = nxt
    best = (math.inf, 0.0, 0.0, -1, -1)
    bytes_out = float(feats["bytes_out"][n - 1])
    for p in range(P):
        lat = cur[p][:, 0] + xfer(bytes_out, p, 0)
        j = a * lat + cur[p][:, 2]
        k = int(np.argmin(j))
        if j[k] < best[0]:
            best = (float(j[k]), float(lat[k]), float(cur[p][k, 2]), p, k)
    _, lat, dyn_e, p, k = best
    lanes = np.full(n, -1, dtype=np.int64)
    if not relax:
        for i in range(n - 1, -1, -1):
            lanes[i] = p
            row = fronts[i][p][k]
            p, k = int(row[3]), int(row[4])
    return FrontPlan(lat, costs.idle_w * lat + dyn_e, lanes)


def _prune(st: np.ndarray, a: float, grid: tuple[float, float] | None = None, relax: bool = False) -> np.ndarray:
    """Drop the rows (end, hfree, energy, ...) that another row makes useless (:func:`chain_weighted`).

    ``grid = (dh_ms, dd_mj)``: first merge the rows whose host-free time and energy fall in the same grid
    cell; ``relax=False`` keeps the cell's row of earliest end (a real plan, slightly suboptimal),
    ``relax=True`` replaces the cell by its coordinate-wise minimum (an optimistic state: the DP then
    gives a lower bound on the objective, with no plan)."""
    if grid is not None and len(st) > 1:
        key = np.stack([np.floor(st[:, 1] / grid[0]), np.floor(st[:, 2] / grid[1])], axis=1)
        _, inv = np.unique(key, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        if relax:
            k = inv.max() + 1
            out = np.full((k, st.shape[1]), np.inf)
            for c in range(3):
                np.minimum.at(out[:, c], inv, st[:, c])
            out[:, 3:] = -1
            st = out
        else:
            order = np.lexsort((st[:, 0], inv))
            first = np.ones(len(order), dtype=bool)
            first[1:] = inv[order][1:] != inv[order][:-1]
            st = st[order[first]]
    if len(st) <= 1:
        return st
    st = st[np.lexsort((st[:, 1], st[:, 0], st[:, 2]))]  # by energy, then end, then hfree
    e, h, d = st[:, 0], st[:, 1], st[:, 2]
    # cost[A, B] = d_A + a * max(0, e_A - e_B, h_A - h_B); B is useless if some A != B has cost <= d_B
    cost = d[:, None] + a * np.maximum(0.0, np.maximum(e[:, None] - e[None, :], h[:, None] - h[None, :]))
    np.fill_diagonal(cost, np.inf)
    # ties (identical rows) would remove each other: only an earlier row in the sort order may remove a later one
    tie = np.abs(cost - d[None, :]) <= 1e-12
    useless = (cost < d[None, :] - 1e-12) | (tie & np.tri(len(st), k=-1, dtype=bool).T)
    return st[~useless.any(axis=0)]


class StatePlanPolicy:
    """A placement rule that reads the live background load from the observation and follows the plan
    computed for that state: ``plan_fn(mode, (cpu_share, gpu_share)) -> lanes`` (e.g. a :func:`chain_dp`
    or :func:`chain_weighted` plan of the linearised graph under :func:`state_costs`), shares rounded to ``grid``. Not clairvoyant:
    it sees only what the observation shows (the current state, assumed to persist)."""

    def __init__(self, name: str, plan_fn: Any, grid: float = 0.1) -> None:
        self.name = name
        self._plan_fn = plan_fn
        self.grid = float(grid)
        self._cache: dict[tuple[str, float, float], np.ndarray] = {}
        self._k = 0

    def reset(self, env: Any, info: dict[str, Any], seed: int) -> None:
        from sparoa_env.backend import HW_STATE_FIELDS
        from sparoa_env.envs.features import N_STATIC

        self._env = env
        nf = len(HW_STATE_FIELDS)
        base = N_STATIC + env.n_lanes
        kinds = [p.kind for p in env.profile.processors]
        cpu = kinds.index("cpu") if "cpu" in kinds else 0
        gpu = next((k for k, kd in enumerate(kinds) if kd != "cpu"), None)  # None: no accelerator (share 0)
        j = HW_STATE_FIELDS.index("background_frac")
        self._idx = (base + cpu * nf + j, None if gpu is None else base + gpu * nf + j)
        self._mode_idx = -2
        self._modes = list(env.mode_names)
        self._n = len(env.graph)
        self._k = 0

    def lanes_for(self, mode: str, cpu_share: float, gpu_share: float) -> np.ndarray:
        g = self.grid
        key = (mode, round(round(cpu_share / g) * g, 6), round(round(gpu_share / g) * g, 6))
        lanes = self._cache.get(key)
        if lanes is None:
            lanes = self._cache[key] = np.asarray(self._plan_fn(mode, key[1:]), dtype=np.int64)
        return lanes

    def mode_of(self, obs: np.ndarray) -> str:
        m = len(self._modes)
        return self._modes[int(round(float(obs[self._mode_idx]) * max(m - 1, 1)))] if m > 1 else self._modes[0]

    def act(self, obs: np.ndarray) -> np.ndarray:
        gpu_share = 0.0 if self._idx[1] is None else float(obs[self._idx[1]])
        lanes = self.lanes_for(self.mode_of(obs), float(obs[self._idx[0]]), gpu_share)
        a = self._env.score_of(int(lanes[self._k % self._n]))
        self._k += 1
        return a


def state_expert(env: Any, energy_weight: float | None = None, grid: float | None = None,
                 name: str = "state_dp") -> StatePlanPolicy:
    """The state-aware DP expert for ``env``'s graph: at each decision it reads the power mode and the CPU's
    and the accelerator's background share from the observation and follows the plan of the *linearised*
    graph that is best if that state held for the whole request (:func:`state_costs`, DRAM share taken as a
    quarter of the larger share, as one burst takes): :func:`chain_dp` (latency) when ``energy_weight``
    (default: the env's) is 0, else :func:`chain_weighted` for ``latency + energy_weight * energy``.
    Plans are cached per (mode, shares rounded to ``grid``; default 0.1, 0.2 with energy)."""
    from .train import linearised

    u = env.unwrapped
    w = u.energy_weight if energy_weight is None else float(energy_weight)
    lin = linearised(u.graph)
    cm = u.cost_model

    def plan_fn(mode: str, st: tuple[float, float]) -> np.ndarray:
        c, g = st
        sc = state_costs(cm, lin, mode, c, g, 0.25 * max(c, g))
        if w > 0:
            return chain_weighted(lin, cm, sc, sc.idle_w + 1.0 / w, grid=(5e-3, 5e-2)).lanes
        return chain_dp(lin, cm, mode, sc).lanes

    return StatePlanPolicy(name, plan_fn, grid=grid if grid is not None else (0.2 if w > 0 else 0.1))


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
