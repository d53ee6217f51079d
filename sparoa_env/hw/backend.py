"""HwBackend: the :class:`~sparoa_env.backend.Backend` protocol on real devices, with real tensors.

``gym.make("SparOA-Orin-v0", backend="hw", model="mobilenet_v3_small", device_map={"cpu": "cpu", "gpu":
"cuda:0"})`` runs the model's real ATen operators on the processors the agent picks. On a machine
without CUDA, map the processors to CPU core groups: ``device_map={"cpu": "cpu:0", "gpu": "cpu:1"}``
(``sparoa_env/hw/devices.py``).

Execution model -- the same as the simulator's (``sparoa_env/sim/soc.py``) and the engine's, with
measured times in place of modelled ones:

* The host walks the ops of each request in the graph's topological order, requests in arrival order
  (it waits for a request to arrive); each op is a decision. Host-side dispatch is a queue push, taken as
  free: decisions for one request happen at the same time unless the host has to wait for an arrival.
* When an op is placed on lane ``p`` it is **executed at once, for real**: its group's fx nodes compiled
  for ``p``'s device (:class:`~sparoa_env.hw.program.Program`), on ``p``'s worker thread (pinned to its
  cores, its own torch thread count) or CUDA stream, on the real tensors its producers left on their
  devices, moving them as needed. Measured: ``transfer_ms`` (CPU core groups: the wake-up of the lane's
  thread, which is what a cross-lane edge costs there, shared memory needing no copy; CUDA: the
  pinned-memory copy, synchronised) and the op's time (CPU: ``perf_counter`` on the lane's thread;
  CUDA: the larger of the CUDA-event device time and the launch time). With ``warmup`` (default) an op's
  first run on a lane is discarded; ``repeats`` > 1 takes the median of that many runs.
* The lane's time line is composed from those measurements: an op starts when its lane is free and its
  inputs from other lanes have finished, occupies the lane for ``transfer_ms + op time``; a request ends
  when its last op ends (plus the copy of its outputs back to host memory from a CUDA lane). Ops run
  one at a time on the real machine, so interference between lanes that overlap on this time line
  (shared memory bandwidth, caches) is not in the figures: :class:`~sparoa_env.hw.engine.HybridEngine`
  measures that end to end.
* Reward bookkeeping is exact on this time line: ``area_ms`` over ``[previous decision, this decision]``
  integrates the number of arrived, unfinished requests (a request not fully dispatched is unfinished),
  and the final step integrates to the last completion, so the episode's area is exactly the sum of the
  requests' latencies in the reported ``latency_ms``.
* Energy: the cumulative counters from :class:`~sparoa_env.hw.telemetry.Telemetry` (RAPL, NVML) are read
  around each real execution; ``energy_mj`` of a step is that op's measured energy (0 when no counter is
  readable), and the final ``energy_mj`` per inference is NaN with ``energy_reason`` then.
* ``hw_state``: ``utilisation`` = this episode's busy share of the lane over the last 10 ms of its time
  line combined with the measured background; ``freq_frac`` = current / maximum clock of the lane's cores or
  GPU (1 when the machine does not expose clocks); ``cores_frac`` = 1 - background on a CPU lane, 1 on a
  GPU; ``queue_len`` and ``time_to_free_ms`` from the time line; ``background_frac`` = utilisation of the
  lane's cores / GPU from telemetry (sampled at most every ``telemetry_interval_ms`` of wall time) minus
  this process's own share of those cores (each thread's CPU time on the core it last ran on, from
  ``/proc/self/task``; spread evenly over all cores where that is unreadable), an estimate: see
  :class:`TelemetrySampler` and :func:`lane_telemetry`, which ``sparoa deploy`` uses too.

Options (``gym.make(..., backend="hw", **options)``): see :data:`HW_OPTIONS`.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ..backend import HW_STATE_FIELDS, Decision, RequestStream, StepOutcome, option_bool, option_number
from ..graph import OpGraph
from .devices import LaneSpec, parse_device_map, two_lane_cpu_map

__all__ = ["HwBackend", "HW_OPTIONS"]

#: options the hw backend accepts besides the environment's own kwargs (name -> meaning)
HW_OPTIONS = {
    "device_map": "processor -> device: 'cpu', 'cpu:0-3' (a core group), 'cuda:0' (default: cpu lane on the CPU, "
                  "the others on cuda:0)",
    "warmup": "run each op once on a lane before its first timed run (default True)",
    "repeats": "timed runs per op, median taken (default 1)",
    "telemetry": "read psutil / NVML / jtop / RAPL for the hardware state and energy (default True)",
    "telemetry_interval_ms": "minimum wall time between telemetry samples (default 50)",
    "module": "a torch.nn.Module to run instead of building `model` (with example_inputs)",
    "example_inputs": "the inputs for `module` (a tuple of tensors)",
    "record": "keep the executed-op timeline for render and info (default True)",
}

UTIL_WINDOW_MS = 10.0


class HwBackend:
    """Real execution behind the Backend protocol (module docstring). Not deterministic."""

    nondeterministic = True

    def __init__(self, *, profile: Any, model: str | None = None, batch: int = 1, power_mode: str = "MAXN",
                 background: Any = "none", requests: Any = 1, cost_model: Any = None, **options: Any) -> None:
        unknown = set(options) - set(HW_OPTIONS)
        if unknown:
            raise ValueError(f"hw backend: unknown option(s) {sorted(unknown)}; valid options: "
                             + "; ".join(f"{k} ({v})" for k, v in HW_OPTIONS.items()))
        try:
            import torch  # noqa: F401
        except ImportError:
            raise ValueError("the hw backend needs torch: pip install 'sparoa-env[hw]'") from None
        self.profile = profile
        self.processors = tuple(profile.processor_names)
        device_map = options.get("device_map")
        if device_map is None and all(p.kind == "cpu" for p in profile.processors):
            device_map = two_lane_cpu_map(self.processors)  # a CPU-only profile (host): one core group per lane
        self.lane_specs: dict[str, LaneSpec] = parse_device_map(device_map, self.processors)
        self.lanes = [self.lane_specs[p] for p in self.processors]
        modes = tuple(getattr(profile, "power_modes", ()) or ())
        if power_mode in ("random", "switching"):
            raise ValueError(f"the hw backend cannot change the machine's power mode (power_mode={power_mode!r}); pass "
                             f"the mode the device runs in ({', '.join(modes)})")
        self.power_mode = power_mode
        self.background = background
        if background not in (None, "none"):
            import warnings

            warnings.warn(f"hw backend: background={background!r} adds no load: the hw backend measures under the "
                          "machine's real load (put real load on a lane with `sparoa deploy --inject`); the value only "
                          "reaches the threshold predictor's input", UserWarning, stacklevel=3)
        self.requests = RequestStream.parse(requests)
        self.batch = batch
        own = "hw backend"
        self.warmup = option_bool(options, "warmup", True, own)
        self.repeats = option_number(options, "repeats", 1, own, integer=True, lo=1)
        self.record = option_bool(options, "record", True, own)
        module, inputs = options.get("module"), options.get("example_inputs")
        if module is None:
            if model is None:
                raise ValueError("hw backend: give `model` (a zoo name or 'file.py:function') or `module` and `example_inputs`")
            from ..modelspec import load_module

            module, inputs = load_module(model, batch)
        elif inputs is None:
            raise ValueError("hw backend: `module` needs `example_inputs` (a tuple of input tensors)")
        self.model = model
        from .engine import LanePool
        from .program import Program

        self.program = Program(module, tuple(inputs))
        self.pool = LanePool(self.lanes)
        self._compiled: dict[tuple[str, str], Any] = {}
        self._warm: set[tuple[str, int]] = set()
        self.telemetry = None
        if option_bool(options, "telemetry", True, own):
            from .telemetry import Telemetry

            self.telemetry = Telemetry()
        self.sampler = TelemetrySampler(self.telemetry, option_number(options, "telemetry_interval_ms", 50.0, own, lo=0.0))
        self._graph: OpGraph | None = None
        self._episode: _Episode | None = None

    # ------------------------------------------------------------------ protocol
    def reset(self, *, graph: OpGraph, rng: np.random.Generator, options: dict[str, Any] | None = None) -> Decision:
        options = dict(options or {})
        if "power_mode" in options and options["power_mode"] != self.power_mode:
            raise ValueError("the hw backend cannot change the power mode between episodes; the machine's own mode is reported")
        if graph is not self._graph:
            self._check_graph(graph)
            self._graph = graph
        self._episode = _Episode(graph, self.requests.arrivals_ms(rng), len(self.processors))
        return self._decision()

    def place(self, processor: int) -> StepOutcome:
        ep = self._episode
        if ep is None or ep.pending is None:
            raise RuntimeError("place() called with no pending decision: reset() the episode first")
        lane = int(processor)
        if not 0 <= lane < len(self.processors):
            raise ValueError(f"processor index must be in [0, {len(self.processors)}), got {processor!r}")
        r, i = ep.pending
        t_dispatch = ep.host_ms
        transfer, dur, energy = self._execute(ep, r, i, lane)
        rec = ep.schedule(r, i, lane, transfer, dur, energy)
        self._after_op(ep, r, i, lane)
        area = ep.advance_to_next()
        info = {"request": r, "op": ep.graph.nodes[i].name, "processor": self.processors[lane],
                "dispatch_ms": t_dispatch, "transfer_ms": transfer, "energy_mj": energy}
        if self.record:
            ep.records.append(rec)
        if ep.pending is None:
            return StepOutcome(next=None, area_ms=area, energy_mj=energy, op_info=info, final=self._final(ep))
        return StepOutcome(next=self._decision(), area_ms=area, energy_mj=energy, op_info=info)

    def timeline(self, start: int = 0) -> list[dict[str, Any]]:
        """Executed ops from the ``start``-th on, in the order they really ran (each op runs when placed)."""
        ep = self._episode
        if ep is None:
            return []
        out = []
        for rec in ep.records[start:]:
            d = dict(rec, op=ep.graph.nodes[rec["op"]].name, processor=self.processors[rec["lane"]])
            del d["lane"]
            out.append(d)
        return out

    def close(self) -> None:
        self.pool.close()
        if self.telemetry is not None:
            self.telemetry.close()
        self._episode = None

    def __getstate__(self) -> dict:
        raise TypeError("the hw backend holds live devices and threads and cannot be pickled; pickle a sim-backed "
                        "environment, or record the plan (sparoa_env.plan.Plan) and replay it")

    # ------------------------------------------------------------------ graph <-> program
    def _check_graph(self, graph: OpGraph) -> None:
        names = set(self.program.group_names)
        have = {n.name for n in graph.nodes}
        missing, extra = sorted(have - names), sorted(names - have)
        if missing or extra:
            raise ValueError(f"the OpGraph {graph.model!r} does not match the exported program of the model run on "
                             f"hardware (ops only in the graph: {missing[:6]}; only in the program: {extra[:6]}); "
                             "extract the graph from the same module and batch size (sparoa graph MODEL --batch B)")
        self._members = {n.name: self.program.live_members(n.name) for n in graph.nodes}

    def _segment(self, name: str, device: str) -> Any:
        key = (name, device)
        seg = self._compiled.get(key)
        if seg is None:
            seg = self._compiled[key] = self.program.compile(self._members[name], device, label=f"op_{len(self._compiled)}")
        return seg

    # ------------------------------------------------------------------ real execution
    def _execute(self, ep: "_Episode", r: int, i: int, lane: int) -> tuple[float, float, float]:
        import torch

        name = ep.graph.nodes[i].name
        spec = self.lanes[lane]
        seg = self._segment(name, spec.device)
        vals = ep.values[r]
        if not vals:  # this request's inputs: the example inputs, in host memory (lane 0)
            for k, v in zip(self.program.user_inputs, self.program.flatten_inputs(self.program.example_inputs)):
                vals[k] = (v, 0)
        cross = any(vals[x][1] != lane for x in seg.inputs)
        e0 = self._energy_counter()

        def move_inputs() -> list[Any]:
            return [_to_device(vals[x][0], spec.device) for x in seg.inputs]

        def run() -> tuple[Any, float, float]:
            t_enter = time.perf_counter()
            if spec.is_cuda:
                t0 = time.perf_counter()
                args = move_inputs()
                torch.cuda.synchronize(spec.device)
                xfer = (time.perf_counter() - t0) * 1e3 if cross else 0.0
                samples = []
                for k in range(self.repeats):
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    t1 = time.perf_counter()
                    outs = seg.fn(*args)
                    launch = (time.perf_counter() - t1) * 1e3
                    end.record()
                    end.synchronize()
                    samples.append(max(start.elapsed_time(end), launch))
                return outs, xfer, float(np.median(samples)), t_enter
            args = move_inputs()
            samples = []
            for k in range(self.repeats):
                t1 = time.perf_counter()
                outs = seg.fn(*args)
                samples.append((time.perf_counter() - t1) * 1e3)
            return outs, 0.0, float(np.median(samples)), t_enter

        if self.warmup and (name, lane) not in self._warm:
            self.pool.call(lane, run)
            self._warm.add((name, lane))
        t_put = time.perf_counter()
        outs, xfer, dur, t_enter = self.pool.call(lane, run)
        if cross and not spec.is_cuda:
            # a cross-lane edge between core groups costs the wake-up of this lane's thread (no copy)
            xfer = 0.0 if self.pool.inline(lane) else (t_enter - t_put) * 1e3
        e1 = self._energy_counter()
        for name_out, v in zip(seg.outputs, outs):
            vals[name_out] = (v, lane)
        energy = (e1 - e0) if (e0 is not None and e1 is not None) else 0.0
        return float(xfer), float(dur), float(max(energy, 0.0))

    def _after_op(self, ep: "_Episode", r: int, i: int, lane: int) -> None:
        """At a request's end: the outputs' copy back to host memory (CUDA lanes), then drop its tensors."""
        if ep.ops_left[r] != 0:
            return
        vals = ep.values[r]
        back = 0.0
        import torch

        for a in self.program.output_args:
            if hasattr(a, "name") and a.name in vals:
                v, where = vals[a.name]
                if self.lanes[where].is_cuda:
                    t0 = time.perf_counter()
                    _to_device(v, "cpu")
                    torch.cuda.synchronize(self.lanes[where].device)
                    back = max(back, (time.perf_counter() - t0) * 1e3)
        ep.finish_request(r, back)
        ep.values[r] = {}

    def _energy_counter(self) -> float | None:
        if self.telemetry is None:
            return None
        e = self.telemetry.energy_mj()
        vals = [v for v in e.values() if v is not None]
        return float(sum(vals)) if vals else None

    # ------------------------------------------------------------------ observation
    def _decision(self) -> Decision:
        ep = self._episode
        r, i = ep.pending
        now = ep.host_ms
        tel = self.sampler.sample()
        hw = np.zeros((len(self.processors), len(HW_STATE_FIELDS)))
        for k, spec in enumerate(self.lanes):
            own = ep.busy_share(k, now, UTIL_WINDOW_MS)
            bg, freq = lane_telemetry(spec, tel)
            hw[k, 0] = min(1.0, own + bg * (1.0 - own))
            hw[k, 1] = freq
            hw[k, 2] = 1.0 if spec.is_cuda else 1.0 - bg
            hw[k, 3] = ep.queue_len(k, now)
            hw[k, 4] = max(ep.lane_free[k] - now, 0.0)
            hw[k, 5] = bg
        temp = tel.get("temperature_c") if tel else None
        mode = (tel or {}).get("power_mode") or self.power_mode
        return Decision(request=r, op=i, now_ms=now, request_elapsed_ms=now - ep.arrivals[r],
                        input_bytes_on=ep.input_bytes_on(r, i), hw_state=hw, power_mode=mode,
                        temperature_c=float(temp) if temp is not None else math.nan, active_requests=ep.n_active(now))

    def _final(self, ep: "_Episode") -> dict[str, Any]:
        lat = [d - a for d, a in zip(ep.done, ep.arrivals)]
        plan = {ep.graph.nodes[k].name: self.processors[ep.loc[0][k]] for k in range(len(ep.graph.nodes))}
        counter = self._energy_counter() is not None
        out = {"latency_ms": lat, "energy_mj": (ep.energy_total / len(lat)) if counter else math.nan,
               "energy_total_mj": ep.energy_total if counter else math.nan, "plan": plan,
               "power_mode_end": self._decision_mode(), "makespan_ms": max(ep.done),
               "temperature_c": self._temperature(), "device_map": {p: s.spec for p, s in self.lane_specs.items()}}
        if not counter:
            reasons = self.telemetry.availability() if self.telemetry is not None else {"telemetry": "disabled"}
            out["energy_reason"] = ("no energy counter is readable: " + "; ".join(f"{k}: {v}" for k, v in reasons.items()
                                                                               if k in ("rapl", "nvml", "telemetry")))
        return out

    def _decision_mode(self) -> str:
        tel = self.sampler.latest or {}
        return tel.get("power_mode") or self.power_mode

    def _temperature(self) -> float:
        tel = self.sampler.latest or {}
        t = tel.get("temperature_c")
        return float(t) if t is not None else math.nan


# ------------------------------------------------------------------------------------------------ telemetry -> lane state
OWN_WINDOW_MS = 100.0
"""Shortest wall window over which this process's own CPU share is measured. The kernel counts CPU time in
clock ticks (10 ms on Linux), so over a 1 ms window one tick reads as 10 cores busy; over 100 ms the error of
one tick is 10% of a core."""


class TelemetrySampler:
    """Samples of a :class:`~sparoa_env.hw.telemetry.Telemetry` (anything with its ``sample()``), taken at most
    every ``interval_ms`` of wall time (0: every call), each with this process's own CPU share added:
    ``own_cpu_frac`` (whole process, as a fraction of all cores) and, where ``/proc/self/task`` is readable,
    ``own_cpu_percpu`` (each thread's CPU time, counted on the core it last ran on; exact for pinned lane
    workers). The own share is measured from the newest earlier snapshot at least ``own_window_ms`` old (the
    oldest one while there is none that old) and divided by at least ``own_window_ms``, so back-to-back
    samples do not divide a clock tick by a tiny window (in the first ``own_window_ms`` the share is then an
    underestimate). What :func:`lane_telemetry` subtracts. Used by the hw backend and by ``sparoa deploy``."""

    def __init__(self, telemetry: Any, interval_ms: float = 50.0, own_window_ms: float = OWN_WINDOW_MS,
                 clock: Any = time.perf_counter) -> None:
        if interval_ms < 0 or own_window_ms < 0:
            raise ValueError(f"interval_ms and own_window_ms must be >= 0, got {interval_ms!r}, {own_window_ms!r}")
        self.telemetry = telemetry
        self.interval_ms = float(interval_ms)
        self.own_window_ms = float(own_window_ms)
        self._clock = clock
        self.latest: dict[str, Any] | None = None
        self._wall = -math.inf
        self._snaps: list[tuple[float, float | None, dict[int, tuple[float, int]] | None]] = []

    def sample(self) -> dict[str, Any] | None:
        """The latest sample (a fresh one when ``interval_ms`` has passed), or None without telemetry."""
        if self.telemetry is None:
            return None
        wall = self._clock() * 1e3
        if self.latest is not None and wall - self._wall < self.interval_ms:
            return self.latest
        s = self.telemetry.sample()
        proc = _process_cpu_s()
        threads = _thread_cpu()
        base = self._baseline(wall)
        ncpu = max(len((s.get("cpu") or {}).get("util_percpu") or [1]), 1)
        own = None
        if base is not None:
            b_wall, b_proc, b_threads = base
            dt = max(wall - b_wall, self.own_window_ms, 1e-6) / 1e3
            if proc is not None and b_proc is not None:
                own = (proc - b_proc) / (dt * ncpu)
            if threads is not None and b_threads is not None:
                per = [0.0] * ncpu
                for tid, (sec, core) in threads.items():
                    if 0 <= core < ncpu:
                        per[core] += max(sec - b_threads.get(tid, (0.0, core))[0], 0.0) / dt
                s["own_cpu_percpu"] = [min(x, 1.0) for x in per]
        s["own_cpu_frac"] = min(max(own, 0.0), 1.0) if own is not None else 0.0
        self._snaps.append((wall, proc, threads))
        self.latest, self._wall = s, wall
        return s

    def _baseline(self, wall: float):
        """The newest snapshot at least ``own_window_ms`` before ``wall`` (else the oldest); drops older ones."""
        old = [i for i, (w, _, _) in enumerate(self._snaps) if wall - w >= self.own_window_ms]
        if old:
            del self._snaps[:old[-1]]
        snaps = [x for x in self._snaps if x[0] < wall]
        return snaps[0] if snaps else None


def lane_telemetry(spec: LaneSpec, tel: dict[str, Any] | None) -> tuple[float, float]:
    """(background fraction, clock fraction) of one lane from a :class:`TelemetrySampler` sample: a GPU's
    utilisation and SM clock (NVML, else jtop); a CPU lane's cores' mean utilisation minus this process's own
    share of them (``own_cpu_percpu``, else ``own_cpu_frac`` spread evenly), and their clock / max clock."""
    if not tel:
        return 0.0, 1.0
    if spec.is_cuda:
        idx = int(spec.device.split(":")[1])
        gpus = tel.get("gpus") or []
        if idx < len(gpus):
            g = gpus[idx]
            util = g.get("util") or 0.0
            clk, mx = g.get("sm_clock_mhz"), g.get("max_sm_clock_mhz")
            freq = clk / mx if clk and mx else 1.0
            return float(min(max(util, 0.0), 1.0)), float(min(freq, 1.0))
        j = tel.get("jetson") or {}
        if j.get("gpu_freq_mhz") and j.get("gpu_max_freq_mhz"):
            return float(j.get("gpu_util") or 0.0), float(min(j["gpu_freq_mhz"] / j["gpu_max_freq_mhz"], 1.0))
        return 0.0, 1.0
    cpu = tel.get("cpu") or {}
    util = cpu.get("util_percpu") or []
    cores = spec.cores if spec.cores is not None else tuple(range(len(util)))
    us = [util[c] for c in cores if c < len(util)]
    own_pc = tel.get("own_cpu_percpu")
    mine = [own_pc[c] for c in cores if c < len(own_pc)] if own_pc else []
    own = float(np.mean(mine)) if mine else tel.get("own_cpu_frac", 0.0)
    bg = max(float(np.mean(us)) - own, 0.0) if us else 0.0
    fs, ms = cpu.get("freq_mhz_percpu") or [], cpu.get("max_freq_mhz_percpu") or []
    ratios = [fs[c] / ms[c] for c in cores if c < len(fs) and c < len(ms) and ms[c] and ms[c] == ms[c] and ms[c] > 0]
    return min(bg, 1.0), float(min(np.mean(ratios), 1.0)) if ratios else 1.0


def _process_cpu_s() -> float | None:
    """This process's user + system CPU seconds (psutil), None where unreadable."""
    try:
        import psutil

        cpu = psutil.Process().cpu_times()
        return cpu.user + cpu.system
    except Exception:  # noqa: BLE001
        return None


def _thread_cpu() -> dict[int, tuple[float, int]] | None:
    """This process's threads: id -> (CPU seconds used, the core it last ran on), from ``/proc`` (None elsewhere)."""
    import os

    try:
        tids = os.listdir("/proc/self/task")
        tck = float(os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, AttributeError):
        return None
    out = {}
    for t in tids:
        try:
            with open(f"/proc/self/task/{t}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()  # fields from 3 (state) on: utime 14, stime 15, processor 39
            out[int(t)] = ((int(rest[11]) + int(rest[12])) / tck, int(rest[36]))
        except (OSError, IndexError, ValueError):
            continue  # the thread ended meanwhile
    return out


def _to_device(v: Any, device: str) -> Any:
    import torch

    if isinstance(v, torch.Tensor):
        if str(v.device) == device or (device == "cpu" and v.device.type == "cpu"):
            return v
        if v.device.type == "cpu" and device.startswith("cuda"):
            return v.pin_memory().to(device, non_blocking=True)
        return v.to(device)
    if isinstance(v, (list, tuple)):
        return type(v)(_to_device(x, device) for x in v)
    return v


class _Episode:
    """The time line of one episode: host dispatch in request / topological order, FIFO lanes."""

    def __init__(self, graph: OpGraph, arrivals: np.ndarray, n_lanes: int) -> None:
        self.graph = graph
        self.arrivals = [float(a) for a in arrivals]
        n, N = len(self.arrivals), len(graph.nodes)
        self.n_lanes = n_lanes
        self.lane_free = [0.0] * n_lanes
        self.lane_busy: list[list[tuple[float, float]]] = [[] for _ in range(n_lanes)]
        self.end = [[math.nan] * N for _ in range(n)]
        self.loc = [[-1] * N for _ in range(n)]
        self.ops_left = [N] * n
        self.out_ready = [0.0] * n
        self.done = [math.inf] * n
        self.values: list[dict[str, Any]] = [{} for _ in range(n)]
        self.records: list[dict[str, Any]] = []
        self.energy_total = 0.0
        self.host_ms = self.arrivals[0]
        self.t_area = 0.0            # time up to which the area has been integrated
        self.pending: tuple[int, int] | None = (0, 0)
        self.next_op = (0, 0)
        self.sinks = [not graph.successors[k] for k in range(N)]

    def schedule(self, r: int, i: int, lane: int, transfer: float, dur: float, energy: float) -> dict[str, Any]:
        ready = self.host_ms
        for p in self.graph.predecessors[i]:
            if self.loc[r][p] != lane:
                ready = max(ready, self.end[r][p])
        start = max(ready, self.lane_free[lane])
        end = start + transfer + dur
        self.lane_free[lane] = end
        self.lane_busy[lane].append((start, end))
        self.end[r][i] = end
        self.loc[r][i] = lane
        self.ops_left[r] -= 1
        if self.sinks[i]:
            self.out_ready[r] = max(self.out_ready[r], end)
        self.energy_total += energy
        return {"request": r, "op": i, "lane": lane, "dispatch_ms": self.host_ms, "start_ms": start,
                "end_ms": end, "transfer_ms": transfer, "energy_mj": energy}

    def finish_request(self, r: int, back_ms: float) -> None:
        self.done[r] = self.out_ready[r] + back_ms

    def advance_to_next(self) -> float:
        """Move the host to the next decision (or the end) and return the area over the interval."""
        r, i = self.pending
        N, n = len(self.graph.nodes), len(self.arrivals)
        if i + 1 < N:
            self.pending = (r, i + 1)
        elif r + 1 < n:
            self.pending = (r + 1, 0)
            self.host_ms = max(self.host_ms, self.arrivals[r + 1])
        else:
            self.pending = None
        t1 = self.host_ms if self.pending is not None else max(self.done)
        area = self._area(self.t_area, t1)
        self.t_area = t1
        return area

    def _area(self, t0: float, t1: float) -> float:
        if t1 <= t0:
            return 0.0
        total = 0.0
        for a, d in zip(self.arrivals, self.done):
            lo, hi = max(a, t0), min(d, t1)
            if hi > lo:
                total += hi - lo
        return total

    def n_active(self, now: float) -> int:
        return sum(1 for a, d in zip(self.arrivals, self.done) if a <= now < d)

    def busy_share(self, lane: int, now: float, window: float) -> float:
        lo = now - window
        busy = 0.0
        for s, e in reversed(self.lane_busy[lane]):
            if e <= lo and s <= lo:
                if e < lo - 1e6:
                    break
                continue
            busy += max(0.0, min(e, now) - max(s, lo))
        return min(busy / window, 1.0)

    def queue_len(self, lane: int, now: float) -> int:
        return sum(1 for s, e in self.lane_busy[lane][-64:] if e > now)

    def input_bytes_on(self, r: int, i: int) -> np.ndarray:
        out = np.zeros(self.n_lanes)
        preds = self.graph.predecessors[i]
        if not preds:
            out[0] = self.graph.nodes[i].bytes_in
        eb = self.graph.edge_bytes
        for p in preds:
            out[self.loc[r][p]] += eb[(p, i)]
        return out
