"""SparseLoom's queue-aware runtime: the variant and pipeline of each request, chosen at its arrival from
the SoC's current state (numpy only).

The planner (:class:`~sparoa_env.loom.policies.PlanningPolicy`) fixes one (variant, pipeline) per task
from mean rates and M/D/1 mean waits; that model ignores the instantaneous queues, the background load in
force and the head-of-line blocking of a small task behind a large model's blocks. Measured on the
default workload (``docs/loom.md``), this is what made the plan lose to the single-processor zoo.

:func:`predict_ends` is a *what-if* run of the simulator's dispatching rules on the requests in flight:
every lane serves blocks first come first served and without preemption, a block joins its lane when
its predecessor ended plus the hand-off; the running blocks end when the simulator says, and the other
blocks take their table latency re-rated for the background and DRAM contention in force now
(:meth:`LoomSimulator._duration`). Arrivals after now and background changes are not foreseen. With one
request on idle lanes, or several on one lane, and no background it is exact (``tests/test_loom_core.py``).

:class:`QueueAwarePolicy` scores a short list of candidates (stitched variant x pipeline) of the arriving
request by one what-if run each:

    100 * (requests predicted to miss their SLO: the new one, judged with a ``guard`` margin, and the ones
           in flight that it would delay past theirs)
    + predicted latency / SLO  (only when the new request can make its SLO)
    + ``cost_weight`` * the processor time it takes, priced by the plan's utilisation of each processor
    + its weight-loading time / SLO  (storage traffic and memory it would add)
    + 100 * ``future_weight`` * the requests of the other tasks expected to reach its processors while it
      occupies them (the plan's rates; what the what-if run cannot see: e.g. a large model's block on the
      CPU that the small tasks use)

A request that can make its SLO gets the candidate that also leaves most room; one that cannot gets the
one that costs the others least. The short list: the planner's choice and
the ``shortlist`` best candidates by an estimate that adds the lanes' current backlog to the latency alone,
and, for the small tasks, the best on each processor alone (the estimate misses work in flight that has
not queued yet).
Non-resident blocks add their loading time (the storage channel's backlog is not modelled) to the estimate
and the what-if run.
"""

from __future__ import annotations

import heapq
from typing import Any, Sequence

import numpy as np

__all__ = ["predict_ends", "QueueAwarePolicy"]


def _durations(sim: Any, task: Any, stitch: Sequence[int], stages: list[tuple[int, float, float]]) -> list[float]:
    """Each block's time on its lane, re-rated for the background and DRAM contention in force now."""
    return [sim._duration(task, k, int(stitch[k]), lane, work)[0] for k, (lane, _, work) in enumerate(stages[:-1])]


def predict_ends(sim: Any, new: tuple[Any, Sequence[int], Sequence[int], float] | None = None,
                 stage_cache: dict | None = None, now_cache: dict | None = None) -> dict[int, float]:
    """Predicted end (ms) of every request in flight and, with ``new = (task, stitch, placement, ready_ms)``,
    of a new one whose first block is ready at ``ready_ms`` (key ``-1``). ``stage_cache`` keeps each
    request's stages (fixed for its life) across calls; ``now_cache`` its stages with durations rated for
    the state in force now: share it only between calls at the same simulator state."""
    now = sim.now
    P = sim.P
    free = [now] * P
    for p in range(P):
        if sim.lanes[p].count:
            free[p] = max(sim.busy_until[p], now)
    heap: list = []
    ends: dict[int, float] = {}
    plans: dict[int, tuple[list, list]] = {}
    seq = 0
    stages = stage_cache if stage_cache is not None else {}
    cache = now_cache if now_cache is not None else {}
    for rid, rec in sim.in_flight.items():
        K = len(rec.stitch)
        if rec.block >= K:
            ends[rid] = rec.ready_ms
            continue
        hit = cache.get(rid)
        if hit is None:
            task = sim.catalog.task(rec.request.task)
            st = stages.get(rid)
            if st is None:
                st = stages[rid] = task.stages(rec.stitch, rec.placement)
            hit = cache[rid] = (st, _durations(sim, task, rec.stitch, st))
        plans[rid] = hit
        st = hit[0]
        if rec.running:
            k = rec.block + 1
            t = rec.ready_ms + st[k][1] if k < K else rec.ready_ms + st[K][1] + st[K][2]
            if k >= K:
                ends[rid] = t
                continue
        else:
            k, t = rec.block, rec.ready_ms
        heapq.heappush(heap, (t, seq, rid, k))
        seq += 1
    if new is not None:
        task, stitch, placement, ready = new
        st = task.stages(stitch, placement)
        plans[-1] = (st, _durations(sim, task, stitch, st))
        heapq.heappush(heap, (ready + st[0][1], seq, -1, 0))
    while heap:
        t, s, rid, k = heapq.heappop(heap)
        st, dur = plans[rid]
        lane = st[k][0]
        start = t if t > free[lane] else free[lane]
        end = start + dur[k]
        free[lane] = end
        K = len(dur)
        if k + 1 < K:
            heapq.heappush(heap, (end + st[k + 1][1], s, rid, k + 1))
        else:
            ends[rid] = end + st[K][1] + st[K][2]
    return ends


class QueueAwarePolicy:
    """SparseLoom's per-request choice (module docstring) over a planner's candidates."""

    def __init__(self, planner: Any, *, guard: float = 0.1, cost_weight: float = 0.5, shortlist: int = 8,
                 future_weight: float = 0.25) -> None:
        self.planner = planner
        self.future_weight = float(future_weight)
        self.guard = float(guard)
        self.cost_weight = float(cost_weight)
        self.shortlist = int(shortlist)
        self._stage_cache: dict[int, tuple] = {}
        self.candidates = planner.candidates

    def _arrivals_per_lane(self, exclude: str) -> np.ndarray:
        """Requests per ms of the other tasks that the plan sends through each processor."""
        pl = self.planner
        lam = np.zeros(pl.candidates[exclude].task.n_lanes)
        for t, n in enumerate(pl.names):
            if n != exclude:
                lam += pl.rates[t] * (pl.candidates[n].task.busy_ms(*pl.plan[n]) > 0)
        return lam

    def _prices(self) -> np.ndarray:
        """Per processor ``1 / (1 - utilisation)`` of the planner's current plan (utilisation capped at 0.9)."""
        pl = self.planner
        load = sum(pl.rates[t] * pl.candidates[n].task.busy_ms(*pl.plan[n]) for t, n in enumerate(pl.names))
        return 1.0 / (1.0 - np.minimum(load, 0.9))

    def __call__(self, request: Any, sim: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
        planned = self.planner(request, sim)          # keeps the plan current with the SLOs
        if len(self._stage_cache) > 2 * len(sim.in_flight) + 64:
            self._stage_cache = {k: v for k, v in self._stage_cache.items() if k in sim.in_flight}
        name = request.task
        cand = self.planner.candidates[name]
        task = cand.task
        now = sim.now
        slo = request.slo_latency_ms
        S, Pl = len(cand.stitches), len(cand.placements)
        # loading time of each stitch's non-resident blocks (the storage channel's backlog is not counted)
        mem = sim.memory
        load = np.zeros(S)
        for i, s in enumerate(cand.stitches):
            mb = mem.missing_mb([(name, k, int(v)) for k, v in enumerate(s)], task.weight_mb)
            load[i] = mb / mem.load_gbps
        # accuracy below the SLO (the planner's belief: estimated for stitched variants)
        acc_bad = np.zeros(S, dtype=bool)
        if request.slo_accuracy is not None and cand.acc is not None:
            acc_bad = cand.acc < request.slo_accuracy
            if acc_bad.all():
                acc_bad = cand.acc < cand.acc.max()
        # estimate: latency alone re-rated for the lane's background + the lanes' backlog now
        slow = np.array([1.0 / max(sim._speed(p), 1e-3) for p in range(sim.P)])
        backlog = np.array([max(sim.busy_until[p] - now, 0.0) * (sim.lanes[p].count > 0) + sim.queued_ms[p] * slow[p]
                            for p in range(sim.P)])
        busy = cand._busy  # (S, Pl, P)
        used = busy > 0
        est = (cand._lat + (busy * (slow - 1.0)).sum(axis=2) + (used * backlog).sum(axis=2)
               + load[:, None])
        prices = self._prices()
        cost = (busy * prices).sum(axis=2)
        cost = cost / max(cost.min(), 1e-9)
        # requests of other tasks expected to arrive at a processor while this one occupies it
        future = (busy * slow * self._arrivals_per_lane(name)).sum(axis=2)
        late = est * (1.0 + self.guard) > slo
        pre = 100.0 * (late | acc_bad[:, None]) + est / slo + self.cost_weight * cost
        order = np.argsort(pre, axis=None, kind="stable")[:self.shortlist]
        short = {int(i) for i in order}
        for p in range(sim.P if task.accuracy is not None else 0):
            # small tasks: each processor's best alone, the way off a lane the estimate thinks is free (large
            # models alone on a slow processor take 10-100x longer: never worth a look)
            pi = cand.placements.index((p,) * task.n_blocks) if (p,) * task.n_blocks in cand.placements else None
            if pi is not None:
                short.add(int(np.argmin(pre[:, pi])) * Pl + pi)
        same = [i for i, s in enumerate(cand.stitches) if tuple(int(v) for v in s) == planned[0]]
        if same:
            short.add(same[0] * Pl + cand.placements.index(planned[1]))
        best, best_score = None, np.inf
        rated_now: dict = {}  # the requests in flight, rated once for this state and shared by the candidates
        for c in sorted(short):
            si, pi = divmod(c, Pl)
            stitch = tuple(int(v) for v in cand.stitches[si])
            pl = cand.placements[pi]
            ends = predict_ends(sim, (task, stitch, pl, now + load[si]), self._stage_cache, rated_now)
            lat = ends.pop(-1) - now
            others = sum(1 for rid, e in ends.items()
                         if e - sim.in_flight[rid].request.arrival_ms > sim.in_flight[rid].request.slo_latency_ms)
            late_new = lat * (1.0 + self.guard) > slo
            score = (100.0 * (others + late_new + acc_bad[si] + self.future_weight * future[si, pi])
                     + self.cost_weight * cost[si, pi] + load[si] / slo)
            if not late_new:
                score += lat / slo
            if score < best_score:
                best, best_score = (stitch, pl), score
        return best
