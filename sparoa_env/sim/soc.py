"""A SimPy discrete-event model of an edge SoC running one DNN's requests under a placement.

Nothing here imports gymnasium or torch (DESIGN sec 2); randomness comes from the generator passed in.

Execution model (the same one :class:`sparoa_env.hw.engine.HybridEngine` implements):

* A **host thread** (the Python dispatcher) walks the ops of each request in topological order, requests
  in arrival order. For every op it asks where to run it (:attr:`SocSimulator.pending`). On an
  asynchronous processor (``async_dispatch`` in the profile: a GPU stream, an NPU queue) it pays the
  launch cost ``host_ms`` and goes on; dispatch never waits for execution, so GPU launches hide behind
  running kernels as on a CUDA stream, and small ops on an idle GPU stay launch-bound. A synchronous
  processor (the CPU) is a worker thread that pays each op's dispatch cost itself, before the op.
* Each **lane** (CPU worker, GPU stream, NPU) is a SimPy process that runs its queue in FIFO order, as
  a CUDA stream or a single worker thread does. Before an op starts, the lane waits for inputs produced
  on other lanes (a CUDA event / a future), then pays the hand-off cost from the cost model
  (unified memory: synchronisation and cache maintenance; PCIe: a copy). Graph inputs start in host
  memory (lane 0) and outputs finish there.
* An op's duration is fixed **when it starts**, from the state at that moment: power-mode clocks and
  active cores, thermal throttling, cores / GPU time taken by background load, and the DRAM bandwidth
  left over by ops running on the other lanes and by the background (concurrent memory-bound ops slow
  each other). A state change while an op runs does not re-rate it (an approximation: op durations are
  far shorter than the state changes modelled).
* **Accounting** is exact for piecewise-constant state: the integral of unfinished requests (for the
  reward), the SoC energy (idle baseline plus each processor's power while it runs our ops; the
  background's own energy is not ours and is not counted), a first-order thermal model, and an
  exponential moving average of each lane's utilisation (ours plus background).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import simpy

from ..backend import HW_STATE_FIELDS, RequestStream
from ..graph import OpGraph
from .background import BackgroundLoad, BackgroundSpec

__all__ = ["SocSimulator", "PowerModePolicy", "ExecRecord", "ModeTables"]

UTIL_TAU_MS = 10.0          # time constant of the utilisation moving average reported to agents
MIN_BW_SHARE = 0.1          # an op always gets some bandwidth (DRAM arbitration is not starvation)


@dataclass(frozen=True)
class PowerModePolicy:
    """How the power mode behaves in an episode: one fixed mode, or switches every ~``mean_dwell_ms``."""

    initial: str
    modes: tuple[str, ...]
    switching: bool = False
    mean_dwell_ms: float = 30.0


class ModeTables:
    """One power mode's per-op costs as nested lists (scalar reads in the event loop are ~10x cheaper
    from lists than from numpy arrays). Built once per (graph, mode) and shared across episodes."""

    __slots__ = ("costs", "compute", "memory", "fixed", "host", "nominal")

    def __init__(self, costs: Any) -> None:
        self.costs = costs
        self.compute = costs.compute_ms.tolist()
        self.memory = costs.memory_ms.tolist()
        self.fixed = costs.fixed_ms.tolist()
        self.host = costs.host_ms.tolist()
        self.nominal = costs.nominal_ms.tolist()


@dataclass
class ExecRecord:
    request: int
    op: int
    lane: int
    dispatch_ms: float
    start_ms: float = math.nan
    end_ms: float = math.nan
    transfer_ms: float = 0.0
    energy_mj: float = 0.0


class SocSimulator:
    """One episode of requests on one SoC. Drive it with :meth:`run_to_decision` and :meth:`place`."""

    def __init__(self, *, graph: OpGraph, cost_model: Any, costs_for_mode: Callable[[str], Any],
                 power: PowerModePolicy, background: BackgroundSpec, requests: RequestStream,
                 rng: np.random.Generator, thermal: bool = True, initial_temp_c: float | None = None,
                 record: bool = True) -> None:
        self.graph = graph
        self.cm = cost_model
        self.profile = cost_model.profile
        self._costs_for_mode = costs_for_mode
        self.power = power
        self.bg = background
        self.rng = rng
        self.record = record
        self.env = simpy.Environment()
        P = self.n_lanes = len(self.profile.processors)
        N = self.n_ops = len(graph.nodes)
        self.preds = graph.predecessors
        self.succs = graph.successors
        eb = graph.edge_bytes
        self.in_edges = [[(p, eb[(p, i)]) for p in graph.predecessors[i]] for i in range(N)]
        feats = graph.features
        self.mem_bytes = (feats["bytes_in"] + feats["bytes_out"] + feats["weight_bytes"]).tolist()
        self.bytes_in = feats["bytes_in"].tolist()
        self.bytes_out = feats["bytes_out"].tolist()
        self.is_sink = [len(s) == 0 for s in graph.successors]
        self.n_sinks = sum(self.is_sink)
        self.lane_names = self.profile.processor_names
        self.lane_max_freq = [float(p.max_freq_mhz) for p in self.profile.processors]
        self.is_gpu_like = [p.kind != "cpu" for p in self.profile.processors]
        self.lane_extra = background.lane_extra(self.lane_names)  # per-lane background (lane_share), usually 0
        # async lanes (GPU stream, NPU queue): the host thread pays the issue cost and goes on; a
        # synchronous lane (the CPU worker) pays the per-op dispatch itself, before the op's compute
        self.async_lane = [bool(p.async_dispatch) for p in self.profile.processors]
        self.lane_cores = [float(p.cores) for p in self.profile.processors]
        self._speed_cache: dict[tuple, float] = {}

        # --- requests
        self.arrivals = requests.arrivals_ms(rng).tolist()
        self.n_requests = requests.n
        R = self.n_requests
        self.loc = [-1] * (R * N)                 # lane of each (request, op), -1 until dispatched
        self.end = [math.nan] * (R * N)           # finish time, NaN until finished
        self.sinks_left = [self.n_sinks] * R
        self.req_out_ready = [0.0] * R
        self.switched = [False] * R               # has the request had a hand-off between lanes yet
        self.first_switch_ms = self.cm.first_switch_ms
        self.host_freq_exponent = self.cm.profile.cost_rules.host_freq_exponent
        self.req_done_ms = [math.nan] * R
        self.n_done = 0
        self.req_dispatched = [0] * R
        self.records: list[ExecRecord] = []

        # --- hardware state
        th = self.profile.thermal
        self.thermal_on = thermal
        lo, hi = th.ambient_c, th.throttle_start_c
        self.temp_c = float(initial_temp_c if initial_temp_c is not None else rng.uniform(lo, lo + 0.9 * (hi - lo)))
        self.throttle = 1.0
        self._update_throttle()
        self.mode = power.initial
        self._apply_mode(self.mode)
        self.background = BackgroundLoad(background)
        self.busy = [False] * P
        self.util = [0.0] * P                     # utilisation moving average at util_t (lazy: see _touch_util)
        self.util_t = [0.0] * P
        self._background_changed()
        self.util = list(self.bg_lane)  # start in steady state

        # --- lanes: each runs its queue FIFO; ``head`` is the op at the front, waiting for inputs or a
        # hand-off, ``cur`` the op running (request, op, dispatch time, nominal ms, start, transfer ms)
        self.queues = [deque() for _ in range(P)]
        self.head: list[tuple | None] = [None] * P
        self.cur: list[tuple | None] = [None] * P
        self.handing_off = [False] * P
        self.waiters: dict[int, list[int]] = {}     # producer (request * N + op) -> lanes waiting for it
        self.running_demand = [0.0] * P           # GB/s of the op running on each lane
        self.running_end = [math.nan] * P
        self.running_energy_w = [0.0] * P
        self.backlog_ms = [0.0] * P               # nominal ms of queued, not yet started ops
        self._finish_cb = [(lambda ev, lane=lane: self._finish(lane)) for lane in range(P)]
        self._start_cb = [(lambda ev, lane=lane: self._start(lane)) for lane in range(P)]

        # --- accounting (all piecewise constant between events)
        self.t_last = 0.0
        self.n_active = 0
        self.area_acc = 0.0
        self.energy_acc = 0.0
        self.power_w = self._soc_power()

        # --- decisions: the dispatcher asks for ops in order; ``pending`` is the op waiting for a lane
        self.pending: tuple[int, int] | None = None
        self._next_op = (0, 0)
        self.finished = False

        env = self.env
        for r in range(R):  # arrivals first: at equal times they are processed before the dispatcher asks
            self._at(self.arrivals[r], lambda ev, r=r: self._arrive(r))
        self._at(0.0, lambda ev: self._ask_next())
        self.background.start(env, rng, before=self._before_background_change, after=self._background_changed)
        if power.switching and len(power.modes) > 1:
            env.process(self._mode_switcher())

    # ------------------------------------------------------------------ driving
    def run_to_decision(self) -> None:
        """Run until the next op needs a placement (``pending`` set) or every request has completed."""
        step = self.env.step  # event by event: cheaper than run(until=...) for the few events per decision
        while self.pending is None and not self.finished:
            step()
        self.advance()

    def place(self, lane: int) -> None:
        """Dispatch the pending op to ``lane``. The host thread issues it (a kernel launch on an
        asynchronous lane: the next decision comes once the launch is done; a queue push on a
        synchronous lane, whose worker pays the dispatch itself: the next decision comes at once)."""
        if self.pending is None:
            raise RuntimeError("no decision is pending: the episode has ended; call reset()")
        if not (0 <= lane < self.n_lanes):
            raise ValueError(f"lane must be in [0, {self.n_lanes}), got {lane!r}")
        r, i = self.pending
        self.pending = None
        self.loc[r * self.n_ops + i] = lane
        self.req_dispatched[r] += 1
        op = (r, i, self.env.now, self.nominal[i][lane])
        host = self.host[i][lane] * self._host_slowdown() if self.async_lane[lane] else 0.0
        if host > 0:
            self._at(self.env.now + host, lambda ev: self._issued(lane, op))
        else:
            self._issued(lane, op)

    @property
    def now(self) -> float:
        return self.env.now

    # ------------------------------------------------------------------ event handlers
    def _at(self, t: float, callback: Callable) -> None:
        ev = self.env.timeout(max(t - self.env.now, 0.0))
        ev.callbacks.append(callback)

    def _arrive(self, r: int) -> None:
        self.advance()
        self.n_active += 1

    def _ask_next(self) -> None:
        r, i = self._next_op
        if r >= self.n_requests:
            return  # every op of every request has been dispatched
        if self.arrivals[r] > self.env.now:
            self._at(self.arrivals[r], lambda ev: self._ask_next())
            return
        self._next_op = (r, i + 1) if i + 1 < self.n_ops else (r + 1, 0)
        self.pending = (r, i)

    def _issued(self, lane: int, op: tuple) -> None:
        self.backlog_ms[lane] += op[3]
        self.queues[lane].append(op)
        if self.cur[lane] is None and self.head[lane] is None:
            self._try_start(lane)
        self._ask_next()

    def _try_start(self, lane: int) -> None:
        """Take the lane's next op if it is free; wait for inputs made on other lanes, hand them over."""
        if self.cur[lane] is not None or self.handing_off[lane]:
            return
        head = self.head[lane]
        if head is None:
            q = self.queues[lane]
            if not q:
                return
            head = self.head[lane] = q.popleft()
        r, i = head[0], head[1]
        base = r * self.n_ops
        xfer_bytes = None
        for p, nbytes in self.in_edges[i]:
            k = base + p
            src = self.loc[k]
            if src != lane:
                if self.end[k] != self.end[k]:  # NaN: the producer has not finished; wait for it
                    self.waiters.setdefault(k, []).append(lane)
                    return
                if xfer_bytes is None:
                    xfer_bytes = [0.0] * self.n_lanes
                xfer_bytes[src] += nbytes
        if not self.in_edges[i] and lane != 0:  # a graph input lives in host memory
            xfer_bytes = [0.0] * self.n_lanes
            xfer_bytes[0] = self.bytes_in[i]
        xfer = 0.0
        if xfer_bytes is not None:
            for src in range(self.n_lanes):
                if src != lane and xfer_bytes[src] > 0:
                    xfer += self.cm.transfer_ms(xfer_bytes[src], src, lane)
            if self.first_switch_ms and self.in_edges[i] and not self.switched[r]:
                self.switched[r] = True  # the request's first hand-off between lanes (profile's first_switch_us)
                xfer += self.first_switch_ms
        if xfer > 0:
            self.handing_off[lane] = True
            self.head[lane] = head + (xfer,)
            self._at(self.env.now + xfer, self._start_cb[lane])
        else:
            self.head[lane] = head + (0.0,)
            self._start(lane)

    def _start(self, lane: int) -> None:
        """The state now fixes the op's duration."""
        self.handing_off[lane] = False
        r, i, t_dispatch, nominal, xfer = self.head[lane]
        self.head[lane] = None
        self.advance()
        self.backlog_ms[lane] -= nominal
        dur = self._duration(i, lane)
        if not self.async_lane[lane]:
            dur += self.host[i][lane] * self._host_slowdown()
        now = self.env.now
        self.cur[lane] = (r, i, t_dispatch, now, xfer)
        self.running_demand[lane] = self.mem_bytes[i] / (dur * 1e6) if dur > 0 else 0.0
        self.running_end[lane] = now + dur
        self._touch_util(lane)
        self.busy[lane] = True
        self.running_energy_w[lane] = self._lane_dynamic_power(lane)
        self.power_w = self._soc_power()
        self._at(now + dur, self._finish_cb[lane])

    def _finish(self, lane: int) -> None:
        self.advance()
        r, i, t_dispatch, start, xfer = self.cur[lane]
        self.cur[lane] = None
        now = self.env.now
        self._touch_util(lane)
        self.busy[lane] = False
        self.running_demand[lane] = 0.0
        self.running_end[lane] = math.nan
        energy = self.running_energy_w[lane] * (now - start)  # W * ms = mJ: the op's dynamic energy
        self.running_energy_w[lane] = 0.0
        self.power_w = self._soc_power()
        k = r * self.n_ops + i
        self.end[k] = now
        if self.record:
            self.records.append(ExecRecord(r, i, lane, t_dispatch, start, now, xfer, energy))
        if self.is_sink[i]:
            out_ready = now
            if lane != 0:  # outputs go back to host memory
                out_ready += self.cm.transfer_ms(self.bytes_out[i], lane, 0)
            if out_ready > self.req_out_ready[r]:
                self.req_out_ready[r] = out_ready
            self.sinks_left[r] -= 1
            if self.sinks_left[r] == 0:
                if self.req_out_ready[r] > now:
                    self._at(self.req_out_ready[r], lambda ev: self._complete(r))
                else:
                    self._complete(r)
        for waiting_lane in self.waiters.pop(k, ()):
            self._try_start(waiting_lane)
        self._try_start(lane)

    def _complete(self, r: int) -> None:
        self.advance()
        self.n_active -= 1
        self.req_done_ms[r] = self.env.now
        self.n_done += 1
        if self.n_done == self.n_requests:
            self.finished = True
            self.pending = None

    def _mode_switcher(self):
        env, rng = self.env, self.rng
        while True:
            yield env.timeout(rng.exponential(self.power.mean_dwell_ms))
            others = [m for m in self.power.modes if m != self.mode]
            new = others[int(rng.integers(len(others)))]
            self.advance()
            self._apply_mode(new)
            self._background_changed()  # the mode's DRAM bandwidth scales the background's share
            self.power_w = self._soc_power()

    # ------------------------------------------------------------------ state
    def _apply_mode(self, mode: str) -> None:
        self.mode = mode
        m = self.profile.mode(mode)
        names = self.profile.processor_names
        self.total_bw_gbps = self.cm.dram_bw_gbps(mode)
        self.lane_bw_gbps = [self.cm.achievable_bw_gbps(j, mode) for j in range(len(names))]
        self.mode_freq = [float(m.max_freq_mhz.get(n, self.lane_max_freq[j])) for j, n in enumerate(names)]
        self.mode_cores = [float(m.cores.get(n, self.profile.processors[j].cores)) for j, n in enumerate(names)]
        tables = self._costs_for_mode(mode)
        if not isinstance(tables, ModeTables):
            tables = ModeTables(tables)
        self.costs = tables.costs
        self.compute, self.memory, self.fixed = tables.compute, tables.memory, tables.fixed
        self.host, self.nominal = tables.host, tables.nominal
        self.idle_w = float(self.cm.idle_power_w(mode))

    def _before_background_change(self) -> None:
        self.advance()
        for j in range(self.n_lanes):
            self._touch_util(j)

    def _background_changed(self) -> None:
        load = self.background
        self.bg_cpu = load.cpu
        self.bg_bw = load.bw_frac * self.total_bw_gbps
        cap = self.bg.max_share
        self.bg_lane = [min((load.gpu if g else load.cpu) + x, cap) if x else (load.gpu if g else load.cpu)
                        for g, x in zip(self.is_gpu_like, self.lane_extra)]

    def freq_mhz(self, lane: int) -> float:
        return self.mode_freq[lane] * self.throttle

    def _speed(self, lane: int) -> float:
        """Compute throughput relative to the mode's nominal (clocks, cores, background share)."""
        key = (lane, self.mode, self.throttle, self.bg_lane[lane])
        s = self._speed_cache.get(key)
        if s is None:
            s = self._speed_cache[key] = self._speed_uncached(lane)
        return s

    def _speed_uncached(self, lane: int) -> float:
        if self.is_gpu_like[lane]:
            s = self.cm.speed_factor(lane, self.mode, freq_mhz=self.freq_mhz(lane)) if self.throttle < 1.0 else 1.0
            return s * (1.0 - self.bg_lane[lane])  # GPU time-slicing with the other application
        cores = self.mode_cores[lane] * (1.0 - self.bg_lane[lane])
        return self.cm.speed_factor(lane, self.mode, freq_mhz=self.freq_mhz(lane), cores=cores)

    def _host_slowdown(self) -> float:
        # the dispatch thread shares the CPU with the background (time-slicing once cores run out) and runs at
        # the throttled CPU clock: host_ms is priced at the mode's clock, scaled as a power mode's clock is
        # (CostModel.host_speed_factor: clock ratio ** host_freq_exponent)
        s = 1.0 / (1.0 - 0.5 * self.bg_cpu)
        if self.throttle < 1.0:
            s /= self.throttle ** self.host_freq_exponent
        return s

    def _duration(self, i: int, lane: int) -> float:
        other = self.bg_bw
        for j in range(self.n_lanes):
            if j != lane:
                other += self.running_demand[j]
        share = (self.total_bw_gbps - other) / self.lane_bw_gbps[lane]
        share = 1.0 if share >= 1.0 else (MIN_BW_SHARE if share < MIN_BW_SHARE else share)
        return self.cm.combine(self.compute[i][lane], self.memory[i][lane], self.fixed[i][lane],
                               speed=self._speed(lane), bw_share=share)

    def _lane_dynamic_power(self, lane: int) -> float:
        """Power a processor draws running our op, above what it draws idle (already in ``idle_w``)."""
        f = self.freq_mhz(lane) / self.lane_max_freq[lane]
        return self.cm.power_w(lane, self.mode, 1.0, f) - self.cm.power_w(lane, self.mode, 0.0, f)

    def _soc_power(self) -> float:
        return self.idle_w + sum(self.running_energy_w)

    def advance(self) -> None:
        """Bring the accumulators from the last event up to now (state constant in between)."""
        now = self.env.now
        dt = now - self.t_last
        if dt <= 0:
            return
        self.t_last = now
        self.area_acc += self.n_active * dt
        self.energy_acc += self.power_w * dt
        if self.thermal_on:
            self.temp_c = self.cm.thermal_step(self.temp_c, self.power_w, dt / 1000.0)
            self._update_throttle()

    def _util_now(self, j: int) -> float:
        """Exponential moving average (time constant UTIL_TAU_MS) of lane j's busy-ness, ours or the
        background's: exact for piecewise-constant load, brought forward only when the load changes."""
        b = 1.0 if self.busy[j] else self.bg_lane[j]
        return b + (self.util[j] - b) * math.exp(-(self.env.now - self.util_t[j]) / UTIL_TAU_MS)

    def _touch_util(self, j: int) -> None:
        """Call before lane j's load changes."""
        self.util[j] = self._util_now(j)
        self.util_t[j] = self.env.now

    def _update_throttle(self) -> None:
        self.throttle = self.cm.throttle_freq_frac(self.temp_c) if self.thermal_on else 1.0

    # ------------------------------------------------------------------ observation helpers
    def hw_state(self) -> list[float]:
        """Flat, lane-major list of :data:`HW_STATE_FIELDS` per lane (plain floats: built per decision)."""
        now = self.env.now
        out: list[float] = []
        for j in range(self.n_lanes):
            busy = self.busy[j]
            out += (self._util_now(j),
                    self.mode_freq[j] * self.throttle / self.lane_max_freq[j],
                    1.0 if self.is_gpu_like[j] else self.mode_cores[j] * (1.0 - self.bg_lane[j]) / self.lane_cores[j],
                    len(self.queues[j]) + (1 if busy else 0),
                    self.backlog_ms[j] + (self.running_end[j] - now if busy else 0.0),
                    self.bg_lane[j])
        return out

    def input_bytes_on(self, r: int, i: int) -> list[float]:
        out = [0.0] * self.n_lanes
        base = r * self.n_ops
        if not self.in_edges[i]:
            out[0] = self.bytes_in[i]
        for p, nbytes in self.in_edges[i]:
            out[self.loc[base + p]] += nbytes
        return out

    def latencies_ms(self) -> list[float]:
        return [d - a for d, a in zip(self.req_done_ms, self.arrivals)]
