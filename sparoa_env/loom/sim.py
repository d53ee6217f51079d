"""A SimPy model of one SoC serving several DNN tasks at once, block by block (no gymnasium, no torch).

It uses the same pieces as SparOA's simulator (:mod:`sparoa_env.sim.soc`) at block granularity: the
shipped SoC profile through :class:`~sparoa_env.costmodel.CostModel` (block latencies, hand-off cost,
DRAM bandwidth), and the background load model of :mod:`sparoa_env.sim.background`.

* Each processor is a FIFO lane (a SimPy ``Resource`` of capacity 1): blocks of different tasks queue
  on it in arrival order, so tasks contend for processors.
* A request, once its variant and placement are chosen, runs its blocks in order: it waits for the
  block's weights if they are not resident (a single storage channel loads them at ``load_gbps``),
  hands its activation over when the previous block ran on another processor
  (:meth:`CostModel.transfer_ms`), queues on the lane, then runs the dtype adapter (if any) and the block.
* A block's duration is fixed when it starts: its table latency re-rated with the cost model's roofline
  (:meth:`CostModel.combine` on the block's summed compute / memory / fixed components) for the compute
  speed the background leaves and the DRAM bandwidth left by the blocks running on the other lanes and
  by the background, as :meth:`SocSimulator._duration` does per op.
* Weight memory is a :class:`~sparoa_env.loom.preloader.MemoryPolicy` (full / none / LRU / hotness).

Driving: :meth:`LoomSimulator.run_to_decision` runs until a request arrives (``pending``) or all are done;
:meth:`decide` gives its variant and placement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import simpy

from ..sim.background import BackgroundLoad, BackgroundSpec
from .workload import Request

__all__ = ["LoomSimulator", "RequestRecord", "MIN_BW_SHARE"]

MIN_BW_SHARE = 0.1


@dataclass
class RequestRecord:
    request: Request
    stitch: tuple[int, ...]
    placement: tuple[int, ...]
    accuracy: float | None
    start_ms: float
    end_ms: float = math.nan
    load_ms: float = 0.0
    # progress, for queue-aware policies (:mod:`sparoa_env.loom.runtime`): the block it is at (``K``: the
    # output hand-back), whether that block runs, and when it ends (running) or joins / joined its lane's queue
    block: int = 0
    running: bool = False
    ready_ms: float = 0.0

    @property
    def latency_ms(self) -> float:
        return self.end_ms - self.request.arrival_ms

    @property
    def violated(self) -> bool:
        r = self.request
        if self.latency_ms > r.slo_latency_ms:
            return True
        return r.slo_accuracy is not None and self.accuracy is not None and self.accuracy < r.slo_accuracy


@dataclass
class _Running:
    demand_gbps: float = 0.0


class LoomSimulator:
    def __init__(self, *, catalog: Any, requests: Sequence[Request], rng: np.random.Generator,
                 background: BackgroundSpec, memory: Any, load_gbps: float = 1.0) -> None:
        self.catalog = catalog
        self.cm = catalog.cm
        self.mode = catalog.mode
        self.requests = list(requests)
        self.rng = rng
        if background.lane_share:
            raise ValueError(f"background: field 'lane_share' ({dict(background.lane_share)}) is not modelled by the "
                             "SparseLoom simulator (its background loads every CPU lane alike); use cpu/gpu shares")
        self.bg = background
        self.memory = memory
        self.load_gbps = float(load_gbps)
        self.env = simpy.Environment()
        prof = catalog.profile
        self.P = len(prof.processors)
        self.is_gpu_like = [p.kind != "cpu" for p in prof.processors]
        self.mode_cores = [prof.mode(self.mode).cores[p.name] for p in prof.processors]
        self.total_bw = self.cm.dram_bw_gbps(self.mode)
        self.lane_bw = [self.cm.achievable_bw_gbps(p, self.mode) for p in range(self.P)]
        self.lanes = [simpy.Resource(self.env, capacity=1) for _ in range(self.P)]
        self.io = simpy.Resource(self.env, capacity=1)
        self.running = [0.0] * self.P
        self.busy_until = [0.0] * self.P
        self.queued_ms = [0.0] * self.P
        self.background = BackgroundLoad(self.bg)
        self.bg_cpu = self.bg_gpu = self.bg_bw = 0.0
        self.records: list[RequestRecord] = []
        self.in_flight: dict[int, RequestRecord] = {}  # request id -> record, decided and not completed
        self.completed: list[RequestRecord] = []
        self.pending: Request | None = None
        self._decision: simpy.Event | None = None
        self.n_done = 0
        self.finished = False
        self.env.process(self._arrivals())
        if self.background.active:
            self._background_changed()
            self.background.start(self.env, self.rng, after=self._background_changed,
                                  keep_going=lambda: self.n_done < len(self.requests))

    # ------------------------------------------------------------------ driving
    def run_to_decision(self) -> None:
        while self.pending is None and not self.finished:
            if not self.env._queue:  # nothing left to happen
                self.finished = True
                break
            self.env.step()
        if self.n_done == len(self.requests):
            self.finished = True

    def run_to_end(self) -> None:
        """After the last decision: run until every request has completed."""
        while self.n_done < len(self.requests) and self.env._queue:
            self.env.step()
        self.finished = True

    def decide(self, stitch: Sequence[int], placement: Sequence[int]) -> None:
        if self._decision is None or self.pending is None:
            raise RuntimeError("no request is waiting for a decision")
        req = self.pending
        task = self.catalog.task(req.task)
        stitch, placement = tuple(stitch), tuple(placement)
        task.check(stitch, placement)  # one in-range integer per block, else ValueError
        stitch = tuple(int(v) for v in stitch)
        placement = tuple(int(p) for p in placement)
        rec = RequestRecord(req, stitch, placement, task.acc(stitch), start_ms=self.env.now, ready_ms=self.env.now)
        self.records.append(rec)
        self.in_flight[req.id] = rec
        self.env.process(self._serve(rec, task))
        ev, self._decision, self.pending = self._decision, None, None
        ev.succeed()

    def run_all(self, policy: Any) -> list[RequestRecord]:
        """Run the whole stream, asking ``policy(request, sim) -> (stitch, placement)`` at each arrival."""
        self.run_to_decision()
        while not self.finished:
            stitch, placement = policy(self.pending, self)
            self.decide(stitch, placement)
            self.run_to_decision()
        return self.records

    @property
    def now(self) -> float:
        return self.env.now

    # ------------------------------------------------------------------ processes
    def _arrivals(self):
        env = self.env
        for req in self.requests:
            if req.arrival_ms > env.now:
                yield env.timeout(req.arrival_ms - env.now)
            self.pending = req
            self._decision = env.event()
            yield self._decision

    def _serve(self, rec: RequestRecord, task: Any):
        env = self.env
        stages = task.stages(rec.stitch, rec.placement)
        loads = []
        for k, v in enumerate(rec.stitch):
            ms = self.memory.acquire((task.name, k, v), task.weight_mb[k, v], env.now)
            loads.append(env.process(self._load(ms)) if ms > 0 else None)
            rec.load_ms += ms
        for k, (lane, xfer, work) in enumerate(stages[:-1]):
            rec.block = k
            if loads[k] is not None:
                rec.ready_ms = env.now + xfer + (rec.load_ms if k == 0 else 0.0)
                yield loads[k]
            if xfer > 0:
                rec.ready_ms = env.now + xfer
                yield env.timeout(xfer)
            rec.ready_ms = env.now
            v = rec.stitch[k]
            self.queued_ms[lane] += work
            with self.lanes[lane].request() as slot:
                yield slot
                self.queued_ms[lane] -= work
                dur, demand = self._duration(task, k, v, lane, work)
                self.running[lane] = demand
                self.busy_until[lane] = env.now + dur
                rec.running, rec.ready_ms = True, env.now + dur
                yield env.timeout(dur)
                rec.running = False
                self.running[lane] = 0.0
        _, xfer, tail = stages[-1]
        rec.block, rec.ready_ms = len(rec.stitch), env.now + xfer + tail
        yield env.timeout(xfer + tail)
        for k, v in enumerate(rec.stitch):
            self.memory.release((task.name, k, v), task.weight_mb[k, v], env.now)
        rec.end_ms = env.now
        del self.in_flight[rec.request.id]
        self.completed.append(rec)
        self.n_done += 1

    def _load(self, ms: float):
        with self.io.request() as slot:
            yield slot
            yield self.env.timeout(ms)

    def _duration(self, task: Any, k: int, v: int, lane: int, work_ms: float) -> tuple[float, float]:
        c, m, f = task.compute_ms[k, v, lane], task.memory_ms[k, v, lane], task.fixed_ms[k, v, lane]
        nominal = self.cm.combine(float(c), float(m), float(f))
        other = self.bg_bw + sum(self.running[j] for j in range(self.P) if j != lane)
        share = (self.total_bw - other) / self.lane_bw[lane]
        share = 1.0 if share >= 1.0 else max(share, MIN_BW_SHARE)
        slowed = self.cm.combine(float(c), float(m), float(f), speed=self._speed(lane), bw_share=share)
        factor = slowed / nominal if nominal > 0 else 1.0
        dur = work_ms * factor
        demand = float(task.traffic_mb[k, v, lane]) / dur if dur > 0 else 0.0  # MB/ms = GB/s
        return dur, demand

    def _speed(self, lane: int) -> float:
        if self.is_gpu_like[lane]:
            return 1.0 - self.bg_gpu
        if self.bg_cpu <= 0:
            return 1.0
        return self.cm.speed_factor(lane, self.mode, cores=self.mode_cores[lane] * (1.0 - self.bg_cpu))

    def _background_changed(self) -> None:
        load = self.background
        self.bg_cpu, self.bg_gpu, self.bg_bw = load.cpu, load.gpu, load.bw_frac * self.total_bw

    # ------------------------------------------------------------------ state for agents and policies
    def lane_state(self) -> np.ndarray:
        """Per lane: queued blocks, ms of queued work, ms until the running block ends, background share."""
        now = self.env.now
        out = np.zeros((self.P, 4))
        for p in range(self.P):
            out[p] = (len(self.lanes[p].queue) + self.lanes[p].count, self.queued_ms[p],
                      max(self.busy_until[p] - now, 0.0), self.bg_gpu if self.is_gpu_like[p] else self.bg_cpu)
        return out
