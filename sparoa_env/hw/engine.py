"""HybridEngine: run a model under a placement plan on real CPU / GPU lanes, and serve it with dynamic batching.

``HybridEngine(module, example_inputs, plan, device_map)``:

1. **Partition.** The module is exported and grouped exactly as :func:`sparoa_env.extract.extract_graph`
   does (:class:`~sparoa_env.hw.program.Program`), so the plan's op names are the OpGraph's. Walking the
   groups in topological order, each maximal run of consecutive groups placed on the same processor
   becomes a *segment*. Segments therefore come in a topological order, and every lane sees its
   segments in that same order.
2. **Compile.** Each segment becomes one straight-line Python function that calls the ATen kernels
   in order with its weights bound as globals (no interpreter, no module calls; see ``program.py``).
   Weights are copied once to every device that needs them; nodes that do not depend on the input are
   folded to constants at build time.
3. **Execute** (the execution model the simulator reproduces, ``sparoa_env/sim/soc.py``). The calling
   thread is the *host*: for every request it pushes all segments, in order, onto their lanes' FIFO
   queues without waiting. Each lane has a worker thread (pinned to its cores with its own torch thread
   count for a CPU core group; for a CUDA device, it launches onto the lane's compute stream). Before a
   segment starts, the lane waits only for the segments of *other* lanes whose outputs it reads, so
   independent branches on different lanes overlap, and so do consecutive requests (:meth:`submit`).
   Transfers: GPU->CPU copies go on a separate copy stream into pinned host memory as soon as the
   producing segment is queued, and the consuming CPU lane waits on that copy's event only;
   CPU->GPU copies are staged through pinned memory and issued non-blocking on the GPU lane's upload
   stream, which the compute stream waits for by event; CPU core groups share memory, so nothing is
   copied between them. A plan that uses a single, unpinned CPU lane runs in the caller's thread.
   Hand-offs between lanes are flags set and awaited without the GIL by a small C helper (spin up to
   ``spin_us``, then sleep; ``handoff.py``), because a sleeping thread takes ~20 us to wake here.
   A *blocking* call (``engine(*x)``, :meth:`run`) made while no request is in flight runs the first
   segment's lane in the caller's thread, pinned to that lane's cores with its thread count for the
   duration of the call (:meth:`HybridEngine._call_as_lane`); placement is the same either way.
4. **Faults.** A ``torch.OutOfMemoryError`` in a segment is reported as a :class:`SegmentOOMError`
   naming the segment, its ops and the lane; with ``oom_fallback="cpu"`` the segment is re-run on the
   CPU (lane 0) for that request instead, the request completes, and the event is recorded in
   :attr:`HybridEngine.fallbacks`. Any other error is re-raised to the caller with the segment named.

Serving: :meth:`HybridEngine.serve` replays an arrival schedule (Poisson at ``rate_per_s`` or given
times) against a FIFO queue and batches dynamically: when the engine is free it takes up to
``max_batch`` queued requests, waits for more only while the oldest request has waited less than
``max_wait_ms`` and the latency SLO still leaves room for a bigger batch, and shrinks the batch if the
oldest request would otherwise miss the SLO while it still can make it (estimates from the measured service time of each batch
size). Batches run on engines compiled per batch size (powers of two up to ``max_batch``; a batch is
padded up to the next compiled size). It reports p50/p95/p99 latency, throughput and the batch sizes.
"""

from __future__ import annotations

import _thread
import math
import os
import queue
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ..plan import Plan, PlanError
from .devices import LaneSpec, parse_device_map
from .program import CompiledSegment, Program
from .timing import percentiles

__all__ = ["HybridEngine", "SegmentInfo", "SegmentOOMError", "SegmentError", "ServeReport", "LanePool", "RunReport",
           "DEFAULT_SPIN_US"]

#: how long a lane thread spins on a hand-off flag before it sleeps (``spin_us``; env ``SPAROA_SPIN_US``)
DEFAULT_SPIN_US = 1000.0


class SegmentError(RuntimeError):
    """A segment failed while running a request."""


class SegmentOOMError(SegmentError):
    """A device ran out of memory in a segment (and no fallback was asked for)."""


@dataclass(frozen=True)
class SegmentInfo:
    index: int
    lane: int
    processor: str
    device: str
    ops: tuple[str, ...]          # op (group) names
    inputs: tuple[str, ...]       # fx value names read from outside the segment
    outputs: tuple[str, ...]      # fx value names needed outside
    n_nodes: int

    def describe(self) -> str:
        ops = self.ops if len(self.ops) <= 4 else self.ops[:2] + ("...",) + self.ops[-1:]
        return f"segment {self.index} ({len(self.ops)} op(s): {', '.join(ops)}) on {self.processor!r} ({self.device})"


@dataclass
class RunReport:
    latency_ms: float
    fallbacks: list[dict[str, Any]] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------- lanes
def _latch() -> Any:
    lock = _thread.allocate_lock()
    lock.acquire()
    return lock


def _wait(latch: Any) -> None:
    latch.acquire()
    latch.release()


class _Waits:
    """A static list of flag indices to wait for (tuple for Python latches, int32 array for the C helper)."""

    __slots__ = ("idx", "arr", "addr", "n")

    def __init__(self, idx: Sequence[int]) -> None:
        import ctypes

        self.idx = tuple(idx)
        self.n = len(self.idx)
        self.arr = (ctypes.c_int32 * max(self.n, 1))(*self.idx)
        self.addr = ctypes.addressof(self.arr)


class _NativeSync:
    """Per-request flags in a ctypes int32 array, signalled and awaited by the C helper without the GIL
    (spin up to ``spin_ns``, then sleep on a futex; ``handoff.py``)."""

    native = True

    def __init__(self, lib: Any, spin_ns: int) -> None:
        self.spin_ns = int(spin_ns)
        self.lib = lib
        self._step = lib.sp_step

    @staticmethod
    def flags(n: int, needed: Sequence[int]) -> tuple[Any, int]:
        import ctypes

        arr = (ctypes.c_int32 * max(n, 1))()
        return arr, ctypes.addressof(arr)

    def step(self, sig: "_Request | None", s0: int, s1: int, wait: "_Request | None", w: _Waits, spin: bool = True) -> None:
        self._step(sig.addr if sig is not None else None, s0, s1, wait.addr if wait is not None else None, w.addr, w.n,
                   self.spin_ns if spin else 0)

    @staticmethod
    def is_set(st: "_Request", i: int) -> bool:
        return st.flags[i] == 1


class _Bell:
    """A lane's doorbell for the C helper: rung after work is queued; the idle worker sleeps on it
    without the GIL (so that signalling the last segment and going idle are one GIL-free call)."""

    __slots__ = ("flags", "addr", "_signal", "idle")

    def __init__(self, lib: Any) -> None:
        import ctypes

        self.flags = (ctypes.c_int32 * 1)()
        self.addr = ctypes.addressof(self.flags)
        self._signal = lib.sp_signal
        self.idle = _Waits((0,))

    def ring(self) -> None:
        self._signal(self.addr)

    def reset(self) -> None:
        self.flags[0] = 0


class _PySync:
    """The same protocol with blocking Python latches (no C compiler, ``SPAROA_SPIN=0`` or ``spin_us=0``)."""

    native = False
    spin_ns = 0

    @staticmethod
    def flags(n: int, needed: Sequence[int]) -> tuple[Any, int]:
        fl: list[Any] = [None] * n
        for i in needed:
            fl[i] = _latch()
        return fl, 0

    @staticmethod
    def step(sig: "_Request | None", s0: int, s1: int, wait: "_Request | None", w: _Waits, spin: bool = True) -> None:
        if s0 >= 0:
            sig.flags[s0].release()
        if s1 >= 0:
            sig.flags[s1].release()
        for i in w.idx:
            _wait(wait.flags[i])

    @staticmethod
    def is_set(st: "_Request", i: int) -> bool:
        return not st.flags[i].locked()


def _make_sync(spin_us: float) -> tuple[Any, str]:
    """The hand-off implementation and a line for :meth:`HybridEngine.describe`."""
    from . import handoff

    if spin_us <= 0:
        return _PySync(), "hand-offs: blocking latches (spin_us=0)"
    lib = handoff.load()
    if lib is None:
        return _PySync(), f"hand-offs: blocking latches ({handoff.unavailable_reason()})"
    return _NativeSync(lib, int(spin_us * 1000)), f"hand-offs: spin up to {spin_us:g} us, then block (C helper)"


class _Lane:
    """One processor: a worker thread with its thread settings (CPU) or streams (CUDA)."""

    def __init__(self, index: int, spec: LaneSpec, default_threads: int) -> None:
        self.index = index
        self.spec = spec
        self.device = spec.device
        self.is_cuda = spec.is_cuda
        self.threads = spec.threads if spec.threads is not None else default_threads
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.bell: Any = None     # the engine's doorbell (_Bell) when hand-offs use the C helper
        self.exec_lock = threading.Lock()  # one segment at a time per lane: held by its worker or a caller
        self.stream = self.h2d = self.d2h = None
        if self.is_cuda:
            import torch

            dev = torch.device(self.device)
            self.stream = torch.cuda.Stream(dev)
            self.h2d = torch.cuda.Stream(dev)
            self.d2h = torch.cuda.Stream(dev)

    def start(self, loop: Callable[["_Lane"], None]) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=loop, args=(self,), name=f"sparoa-lane-{self.spec.processor}", daemon=True)
            self.thread.start()

    def setup_thread(self) -> None:
        """Called on the worker thread: pin it and set its torch thread count."""
        import torch

        if self.spec.cores is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, set(self.spec.cores))
        if not self.is_cuda:
            torch.set_num_threads(int(self.threads))
        else:
            torch.cuda.set_device(torch.device(self.device))

    def stop(self) -> None:
        if self.thread is not None:
            self.queue.put(None)
            if self.bell is not None:
                self.bell.ring()
            self.thread.join(timeout=10)
            self.thread = None


class LanePool:
    """Worker threads for lanes, used synchronously: ``pool.call(lane, fn)`` runs ``fn`` on the lane's
    thread (with its pinning and thread count) and returns its result. Unpinned CPU lanes run ``fn``
    inline. The hardware backend uses it to time single ops on the right cores."""

    def __init__(self, lanes: Sequence[LaneSpec]) -> None:
        import torch

        self.lanes = [_Lane(k, s, torch.get_num_threads()) for k, s in enumerate(lanes)]

    def _loop(self, lane: _Lane) -> None:
        import torch

        lane.setup_thread()
        with torch.inference_mode():
            while True:
                item = lane.queue.get()
                if item is None:
                    return
                fn, box, done = item
                try:
                    box.append((True, fn()))
                except BaseException as e:  # noqa: BLE001 - handed to the caller
                    box.append((False, e))
                done.release()

    def inline(self, lane: int) -> bool:
        ln = self.lanes[lane]
        return not ln.is_cuda and ln.spec.cores is None

    def call(self, lane: int, fn: Callable[[], Any]) -> Any:
        ln = self.lanes[lane]
        if self.inline(lane):
            import torch

            with torch.inference_mode():
                return fn()
        ln.start(self._loop)
        box: list = []
        done = _latch()
        ln.queue.put((fn, box, done))
        done.acquire()
        ok, val = box[0]
        if not ok:
            raise val
        return val

    def close(self) -> None:
        for ln in self.lanes:
            ln.stop()


# ----------------------------------------------------------------------------------------------- engine
class _Seg:
    """Runtime view of a segment (slots instead of names)."""

    __slots__ = ("info", "index", "lane", "compiled", "in_slots", "out_slots", "waits", "latch", "d2h_slots",
                 "last_on_lane", "cpu_variant", "w", "sig0", "sig1")

    def __init__(self, info: SegmentInfo, compiled: CompiledSegment) -> None:
        self.info = info
        self.index = info.index
        self.lane = info.lane
        self.compiled = compiled
        self.in_slots: tuple[int, ...] = ()
        self.out_slots: tuple[int, ...] = ()
        self.waits: tuple[int, ...] = ()      # segment indices on other lanes this one waits for
        self.latch = False                    # does anyone wait for this segment?
        self.d2h_slots: tuple[int, ...] = ()  # outputs to copy to host memory right away
        self.last_on_lane = False
        self.cpu_variant: CompiledSegment | None = None
        self.w: _Waits | None = None          # flags to wait for before running (the ``waits`` segments)
        self.sig0 = -1                        # flag to set when done (own latch), -1 = none
        self.sig1 = -1                        # flag to set when done (the lane's last segment of a request)


class _Request:
    __slots__ = ("vals", "flags", "addr", "error", "cache", "events", "host", "t0", "t_end", "fallbacks")

    def __init__(self, n_slots: int, flags: tuple[Any, int]) -> None:
        self.vals: list[Any] = [None] * n_slots
        self.flags, self.addr = flags         # one flag per segment (latch) and per used lane (done)
        self.error: BaseException | None = None
        self.cache: dict[tuple[int, int], Any] = {}
        self.events: dict[int, Any] = {}
        self.host: dict[int, tuple[Any, Any]] = {}
        self.t0 = 0.0
        self.t_end = 0.0
        self.fallbacks: list[dict[str, Any]] = []


class Pending:
    """A request in flight (:meth:`HybridEngine.submit`); :meth:`result` waits for its outputs."""

    def __init__(self, engine: "HybridEngine", st: _Request | None, outputs: Any = None) -> None:
        self._engine, self._st, self._outputs = engine, st, outputs
        self.latency_ms = math.nan

    def result(self) -> Any:
        if self._st is not None:
            self._outputs = self._engine._collect(self._st)
            self.latency_ms = (time.perf_counter() - self._st.t0) * 1e3
            self.fallbacks = self._st.fallbacks
            self._st = None
        return self._outputs


class HybridEngine:
    """Run ``module`` under ``plan`` on the lanes of ``device_map`` (module docstring).

    ``plan``: a :class:`~sparoa_env.plan.Plan`, an op -> processor mapping, or a plan JSON path; op names
    are those of ``extract_graph(module, example_inputs)``. ``device_map``: processor -> device spec
    (``sparoa_env/hw/devices.py``); default ``{"cpu": "cpu", <others>: "cuda:0"}``. ``processors``:
    the processor names in lane order (default: the device map's keys, else ``("cpu", "gpu")``).
    ``oom_fallback``: ``None`` (raise :class:`SegmentOOMError`) or ``"cpu"``. ``inference_mode``: run
    under ``torch.inference_mode`` (outputs are inference tensors, as with eager under that mode).
    ``spin_us``: how long a lane thread spins on a hand-off before it sleeps (default
    :data:`DEFAULT_SPIN_US`, env ``SPAROA_SPIN_US``; 0 = blocking Python latches). ``caller_runs``: let a
    blocking call run the first segment's lane in the caller's thread (pinned) when the engine is idle.
    """

    def __init__(self, module: Any, example_inputs: Sequence[Any], plan: Any, device_map: Any = None, *,
                 processors: Sequence[str] | None = None, oom_fallback: str | None = None,
                 fast_bindings: bool = True, inference_mode: bool = True, program: Program | None = None,
                 spin_us: float | None = None, caller_runs: bool = True) -> None:
        import torch

        if oom_fallback not in (None, "cpu"):
            raise ValueError(f"oom_fallback must be None or 'cpu', got {oom_fallback!r}")
        if processors is None:
            if isinstance(device_map, Mapping):
                processors = tuple(device_map)
            else:
                processors = ("cpu", "gpu")
        self.processors = tuple(processors)
        self.plan = Plan.coerce(plan)
        self.module = module
        self.oom_fallback = oom_fallback
        self.inference_mode = inference_mode
        self._fast_bindings = fast_bindings
        if spin_us is None:
            spin_us = float(os.environ.get("SPAROA_SPIN_US", DEFAULT_SPIN_US))
        if not spin_us >= 0:
            raise ValueError(f"spin_us must be >= 0, got {spin_us!r}")
        self.spin_us = float(spin_us)
        self.caller_runs = bool(caller_runs)
        self._sync, self._sync_desc = _make_sync(self.spin_us)
        self.program = program if program is not None else Program(module, example_inputs, fast_bindings=fast_bindings)
        self.example_inputs = self.program.example_inputs
        prog = self.program
        self.op_names = prog.group_names
        self.plan.validate(self.op_names, self.processors)
        used = sorted({self.processors.index(self.plan[g]) for g in self.op_names})
        need = {self.processors[k] for k in used} | ({self.processors[0]} if oom_fallback else set())
        self.device_map_raw = device_map
        self.lane_specs = parse_device_map(device_map, self.processors, check=sorted(need))
        self.fallbacks: list[dict[str, Any]] = []
        self._compile_lock = threading.Lock()
        self._dispatch_lock = threading.Lock()
        self._batch_engines: dict[int, HybridEngine] = {}

        # ---- partition: maximal runs of consecutive groups on one lane
        runs: list[tuple[int, list[str]]] = []
        for g in self.op_names:
            lane = self.processors.index(self.plan[g])
            if runs and runs[-1][0] == lane:
                runs[-1][1].append(g)
            else:
                runs.append((lane, [g]))
        # ---- value slots: user inputs, then every value that crosses a segment boundary
        slot_of: dict[str, int] = {name: k for k, name in enumerate(prog.user_inputs)}
        producer: dict[str, int] = {name: -1 for name in prog.user_inputs}
        self.lanes = [_Lane(k, self.lane_specs[p], torch.get_num_threads()) if k in used or (oom_fallback and k == 0)
                      else None for k, p in enumerate(self.processors)]
        segs: list[_Seg] = []
        for idx, (lane, groups) in enumerate(runs):
            nodes = [n for g in groups for n in prog.live_members(g)]
            device = self.lane_specs[self.processors[lane]].device
            compiled = prog.compile(nodes, device, label=f"segment_{idx}")
            info = SegmentInfo(idx, lane, self.processors[lane], device, tuple(groups), compiled.inputs, compiled.outputs,
                               compiled.n_nodes)
            s = _Seg(info, compiled)
            for name in compiled.outputs:
                slot_of[name] = len(slot_of)
                producer[name] = idx
            segs.append(s)
        out_names = [a.name for a in prog.output_args if hasattr(a, "name")]
        self.n_slots = len(slot_of)
        self.slot_of = slot_of
        for s in segs:
            s.in_slots = tuple(slot_of[n] for n in s.compiled.inputs)
            s.out_slots = tuple(slot_of[n] for n in s.compiled.outputs)
            waits = sorted({producer[n] for n in s.compiled.inputs if producer[n] >= 0 and segs[producer[n]].lane != s.lane})
            s.waits = tuple(waits)
            for w in waits:
                segs[w].latch = True
        # host copies: outputs of CUDA segments read by CPU lanes or by the caller (graph outputs)
        home_is_cpu = prog.home_device.type == "cpu"
        for s in segs:
            if not self.lane_specs[self.processors[s.lane]].is_cuda:
                continue
            d2h = []
            for name in s.compiled.outputs:
                readers = [t for t in segs if name in t.compiled.inputs]
                if (any(not self.lane_specs[self.processors[t.lane]].is_cuda for t in readers)
                        or (name in out_names and home_is_cpu)):
                    d2h.append(slot_of[name])
            s.d2h_slots = tuple(d2h)
        n_segs = len(segs)
        done_flag = {lane: n_segs + k for k, lane in enumerate(used)}
        for lane in used:
            mine = [s for s in segs if s.lane == lane]
            mine[-1].last_on_lane = True
        for s in segs:
            s.w = _Waits(s.waits)
            s.sig0 = s.index if s.latch else -1
            s.sig1 = done_flag[s.lane] if s.last_on_lane else -1
        self._n_flags = n_segs + len(used)
        self._needed_flags = tuple([s.index for s in segs if s.latch] + list(done_flag.values()))
        self._done_waits = _Waits(list(done_flag.values()))
        self._lane_segs = {lane: [s for s in segs if s.lane == lane] for lane in used}
        # the caller runs the first segment's lane itself when the engine is idle (see _call_as_lane)
        first = self.lanes[segs[0].lane]
        self._caller_lane = segs[0].lane if caller_runs and not first.is_cuda else None
        self._caller_waits = _Waits([done_flag[k] for k in used if k != segs[0].lane])
        self._live: list[_Request] = []       # submitted requests that may still be running
        # no CUDA lane and inputs on the CPU: values never move, segments read the slots directly
        self._host_only = prog.home_device.type == "cpu" and not any(ln.is_cuda for ln in self.lanes if ln is not None)
        if self._sync.native:
            for ln in self.lanes:
                if ln is not None:
                    ln.bell = _Bell(self._sync.lib)
        self._segs = segs
        self.segments = tuple(s.info for s in segs)
        self.used_lanes = tuple(used)
        self._out_refs: list[tuple[str, Any]] = []
        for a in prog.output_args:
            if hasattr(a, "name"):
                if a.name in slot_of:
                    self._out_refs.append(("slot", slot_of[a.name]))
                else:
                    self._out_refs.append(("const", prog.const_on(a.name, str(prog.home_device))))
            else:
                self._out_refs.append(("const", a))
        only = self.lanes[used[0]] if len(used) == 1 else None
        self._inline = only is not None and not only.is_cuda and only.spec.cores is None and not oom_fallback
        if self._inline:
            self._caller_lane = None
        self._closed = False

    # ------------------------------------------------------------------ public API
    def __call__(self, *inputs: Any) -> Any:
        return self.run(*inputs)[0]

    def run(self, *inputs: Any) -> tuple[Any, RunReport]:
        """Outputs and a report (latency, OOM fallbacks) for one request."""
        if self._caller_lane is not None and not self._closed:
            res = self._call_as_lane(self.program.flatten_inputs(inputs))
            if res is not None:
                return res
        p = self.submit(*inputs)
        out = p.result()
        return out, RunReport(p.latency_ms, list(getattr(p, "fallbacks", [])))

    def submit(self, *inputs: Any) -> Pending:
        """Dispatch one request and return at once; consecutive submissions overlap on the lanes."""
        if self._closed:
            raise RuntimeError("engine is closed")
        flat = self.program.flatten_inputs(inputs)
        if self._inline:
            t0 = time.perf_counter()
            p = Pending(self, None, self._run_inline(flat))
            p.latency_ms = (time.perf_counter() - t0) * 1e3
            p.fallbacks = []
            return p
        st = self._new_request(flat)
        with self._dispatch_lock:
            self._track(st)
            for lane in self.used_lanes:
                self.lanes[lane].start(self._lane_loop)
            for s in self._segs:
                self.lanes[s.lane].queue.put((st, s))
            self._ring(self.used_lanes)
        return Pending(self, st)

    def _ring(self, lanes: Sequence[int]) -> None:
        for k in lanes:
            bell = self.lanes[k].bell
            if bell is not None:
                bell.ring()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for ln in self.lanes:
            if ln is not None:
                ln.stop()
        for e in self._batch_engines.values():
            if e is not self:
                e.close()

    def __enter__(self) -> "HybridEngine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def describe(self) -> str:
        lines = [f"HybridEngine: {len(self.op_names)} ops in {len(self._segs)} segment(s) on "
                 f"{len(self.used_lanes)} lane(s){' (inline)' if self._inline else ''}"]
        for k in self.used_lanes:
            lines.append("  lane " + self.lane_specs[self.processors[k]].describe())
        if not self._inline:
            lines.append("  " + self._sync_desc)
            if self._caller_lane is not None:
                lines.append(f"  a blocking call runs lane {self.processors[self._caller_lane]!r} in the caller's thread "
                             "(pinned to that lane's cores and thread count for the call) when no request is in flight")
        return "\n".join(lines)

    # ------------------------------------------------------------------ execution
    def _run_inline(self, flat: list[Any]) -> Any:
        import torch

        vals = flat + [None] * (self.n_slots - len(flat))
        ctx = torch.inference_mode() if self.inference_mode else torch.no_grad()
        with ctx:
            for s in self._segs:
                outs = s.compiled.fn(*[vals[k] for k in s.in_slots])
                for k, v in zip(s.out_slots, outs):
                    vals[k] = v
        return self.program.unflatten_outputs([vals[r] if kind == "slot" else r for kind, r in self._out_refs])

    def _new_request(self, flat: list[Any]) -> _Request:
        st = _Request(self.n_slots, self._sync.flags(self._n_flags, self._needed_flags))
        st.t0 = time.perf_counter()
        for k, v in enumerate(flat):
            st.vals[k] = v
        return st

    def _prune_live(self) -> list[_Request]:
        """Forget the finished requests in flight (under the dispatch lock); the ones left."""
        live = self._live
        if live:
            is_set = self._sync.is_set
            done = self._done_waits.idx
            live[:] = [r for r in live if not all(is_set(r, i) for i in done)]
        return live

    def _track(self, st: _Request) -> None:
        """Remember a request in flight (under the dispatch lock); forget the finished ones."""
        self._prune_live().append(st)

    def _call_as_lane(self, flat: list[Any]) -> tuple[Any, RunReport] | None:
        """A blocking request with the caller's thread as the executor of the first segment's lane.

        Used when no request is in flight (else the lane's worker may be busy, and its FIFO order
        matters): the caller pins itself to that lane's cores and sets its torch thread count for the
        duration, runs that lane's segments in order (waiting for other lanes' inputs exactly as the
        lane's worker would), then restores both. The other lanes' segments go to their workers as in
        :meth:`submit`. This saves two thread wake-ups per request (the first lane's worker, and the
        caller at the end); with a single used CPU lane, no hand-off is left at all. A lane's
        ``exec_lock`` keeps one segment at a time per lane against concurrent callers.
        Returns None when the engine is busy (the caller then uses :meth:`submit`).
        """
        import torch

        lane = self.lanes[self._caller_lane]
        st = self._new_request(flat)
        with self._dispatch_lock:
            if self._prune_live():
                return None
            others = [k for k in self.used_lanes if k != self._caller_lane]
            for k in others:  # before taking the lane: a thread that fails to start leaves no lock held
                self.lanes[k].start(self._lane_loop)
            if not lane.exec_lock.acquire(blocking=False):  # another thread's blocking call runs this lane
                return None
            self._live.append(st)
            for s in self._segs:
                if s.lane != self._caller_lane:
                    self.lanes[s.lane].queue.put((st, s))
            self._ring(others)  # wake the other lanes' workers now: their wake-up overlaps this lane's first segment
        old_threads = torch.get_num_threads()
        old_aff = None
        sync = self._sync
        mine = self._lane_segs[self._caller_lane]
        signalled = 0      # how many of this lane's segments have had their flags set
        try:
            if lane.spec.cores is not None and hasattr(os, "sched_setaffinity"):
                aff = os.sched_getaffinity(0)
                if aff != set(lane.spec.cores):
                    os.sched_setaffinity(0, lane.spec.cores)
                    old_aff = aff
            if old_threads != lane.threads:
                torch.set_num_threads(int(lane.threads))
            ctx = torch.inference_mode() if self.inference_mode else torch.no_grad()
            oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
            with ctx:
                prev = None
                for s in mine:
                    if prev is not None or s.w.n:
                        sync.step(st if prev is not None else None, prev.sig0 if prev else -1, prev.sig1 if prev else -1,
                                  st, s.w)
                        signalled += prev is not None
                    self._exec(st, s, lane, oom)
                    prev = s
                # signal the lane's last segment and wait for the other lanes to finish the request
                sync.step(st, prev.sig0, prev.sig1, st, self._caller_waits)
                signalled = len(mine)
        except BaseException as e:  # noqa: BLE001 - never leave the other lanes waiting for this one
            if st.error is None:
                st.error = e
            for s in mine[signalled:]:
                try:
                    sync.step(st, s.sig0, s.sig1, None, _Waits(()))
                except RuntimeError:  # a Python latch released twice: it was signalled already
                    pass
            sync.step(None, -1, -1, st, self._caller_waits, spin=False)
        finally:
            lane.exec_lock.release()
            if old_threads != torch.get_num_threads():
                torch.set_num_threads(old_threads)
            if old_aff is not None:
                os.sched_setaffinity(0, old_aff)
        latency = (time.perf_counter() - st.t0) * 1e3
        self._forget(st)
        return self._outputs(st), RunReport(latency, list(st.fallbacks))

    def _forget(self, st: _Request) -> None:
        """Drop a finished request from the in-flight list (it holds the request's values)."""
        with self._dispatch_lock:
            try:
                self._live.remove(st)
            except ValueError:
                pass

    def _lane_loop(self, lane: _Lane) -> None:
        import torch

        lane.setup_thread()
        ctx = torch.inference_mode() if self.inference_mode else torch.no_grad()
        with ctx:
            if lane.is_cuda:
                with torch.cuda.stream(lane.stream):
                    self._serve_lane(lane)
            else:
                self._serve_lane(lane)

    def _serve_lane(self, lane: _Lane) -> None:
        """A lane's worker: run queued segments in order. A finished segment's flags are set in the same
        GIL-free call (``handoff.py``) that waits for the next segment's inputs or, when the queue is
        empty, sleeps on the lane's doorbell: a thread that signalled and then took the GIL back would
        contend for it with the thread it just woke."""
        import torch

        oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
        q = lane.queue
        sync = self._sync
        bell = lane.bell
        prev_st: _Request | None = None
        prev: _Seg | None = None
        no_waits = _Waits(())
        while True:
            try:
                item = q.get_nowait()
            except queue.Empty:
                if bell is not None:
                    bell.reset()
                    try:
                        item = q.get_nowait()  # queued before the reset: its ring may be lost, the item is not
                    except queue.Empty:
                        if prev is not None:
                            sync.step(prev_st, prev.sig0, prev.sig1, bell, bell.idle, spin=False)
                            prev_st = prev = None
                        else:
                            sync.step(None, -1, -1, bell, bell.idle, spin=False)
                        continue
                else:
                    if prev is not None:
                        sync.step(prev_st, prev.sig0, prev.sig1, None, no_waits)
                        prev_st = prev = None
                    item = q.get()
            if item is None:
                if prev is not None:
                    sync.step(prev_st, prev.sig0, prev.sig1, None, no_waits)
                return
            st, s = item
            if prev is not None:
                sync.step(prev_st, prev.sig0, prev.sig1, st, s.w)
            elif s.w.n:
                sync.step(None, -1, -1, st, s.w)
            with lane.exec_lock:
                self._exec(st, s, lane, oom)
            prev_st, prev = st, s

    def _exec(self, st: _Request, s: _Seg, lane: _Lane, oom: type) -> None:
        """Run one segment of a request on ``lane`` (its inputs are ready); errors go to ``st.error``."""
        try:
            if st.error is None:
                try:
                    if self._host_only:
                        vals = st.vals
                        outs = s.compiled.fn(*[vals[k] for k in s.in_slots])
                    else:
                        outs = s.compiled.fn(*[self._fetch(st, k, lane) for k in s.in_slots])
                    if lane.is_cuda:
                        self._after_cuda(st, s, lane, outs)
                except oom as e:
                    outs = self._oom(st, s, lane, e)
                for k, v in zip(s.out_slots, outs):
                    st.vals[k] = v
        except BaseException as e:  # noqa: BLE001 - reported to the caller with the segment named
            if st.error is None:
                err = e if isinstance(e, SegmentError) else SegmentError(f"{s.info.describe()} failed: {type(e).__name__}: {e}")
                if err is not e:
                    err.__cause__ = e
                st.error = err
        if s.last_on_lane:
            st.t_end = max(st.t_end, time.perf_counter())

    def _after_cuda(self, st: _Request, s: _Seg, lane: _Lane, outs: tuple) -> None:
        import torch

        ev = torch.cuda.Event()
        ev.record(lane.stream)
        st.events[s.index] = ev
        if not s.d2h_slots:
            return
        d2h = lane.d2h
        d2h.wait_event(ev)
        pos = {k: i for i, k in enumerate(s.out_slots)}
        with torch.cuda.stream(d2h):
            for k in s.d2h_slots:
                t = outs[pos[k]]
                if not isinstance(t, torch.Tensor) or not t.is_cuda:
                    continue
                host = torch.empty_like(t, device="cpu", pin_memory=True)
                host.copy_(t, non_blocking=True)
                t.record_stream(d2h)
                hev = torch.cuda.Event()
                hev.record(d2h)
                st.host[k] = (host, hev)

    @property
    def _slot_producer(self) -> list[int]:
        sp = getattr(self, "_sp_cache", None)
        if sp is None:
            sp = [-1] * self.n_slots
            for s in self._segs:
                for k in s.out_slots:
                    sp[k] = s.index
            self._sp_cache = sp
        return sp

    def _fetch(self, st: _Request, slot: int, lane: _Lane) -> Any:
        """The value of ``slot`` on ``lane``'s device (moving it if needed; cached per request and lane)."""
        v = st.vals[slot]
        if lane.is_cuda or self._any_cuda_value(v):
            key = (slot, lane.index)
            hit = st.cache.get(key)
            if hit is not None:
                return hit
            moved = self._move(st, slot, v, lane)
            st.cache[key] = moved
            return moved
        return v

    @staticmethod
    def _any_cuda_value(v: Any) -> bool:
        if isinstance(v, (list, tuple)):
            return any(HybridEngine._any_cuda_value(x) for x in v)
        return getattr(v, "is_cuda", False)

    def _move(self, st: _Request, slot: int, v: Any, lane: _Lane | None) -> Any:
        import torch

        if isinstance(v, (list, tuple)):
            return type(v)(self._move(st, slot, x, lane) for x in v)
        if not isinstance(v, torch.Tensor):
            return v
        prod = self._slot_producer[slot]
        target = torch.device("cpu") if lane is None or not lane.is_cuda else torch.device(lane.device)
        if target.type == "cpu":
            if not v.is_cuda:
                return v
            h = st.host.get(slot)
            if h is not None:
                h[1].synchronize()
                return h[0]
            ev = st.events.get(prod)
            if ev is not None:
                ev.synchronize()
            return v.to("cpu")
        if v.is_cuda and v.device == target:
            if prod < 0:  # a CUDA input from the caller, made on its default stream
                lane.stream.wait_stream(torch.cuda.default_stream(target))
                v.record_stream(lane.stream)
            elif self._segs[prod].lane != lane.index and prod in st.events:
                lane.stream.wait_event(st.events[prod])
                v.record_stream(lane.stream)
            return v
        if not v.is_cuda:
            with torch.cuda.stream(lane.h2d):
                src = v if v.is_pinned() else v.pin_memory()
                g = src.to(target, non_blocking=True)
                ev = torch.cuda.Event()
                ev.record(lane.h2d)
            lane.stream.wait_event(ev)
            g.record_stream(lane.stream)
            return g
        ev = st.events.get(prod)  # another CUDA device: peer copy after the producer finished
        if ev is not None:
            ev.synchronize()
        return v.to(target)

    def _oom(self, st: _Request, s: _Seg, lane: _Lane, exc: BaseException) -> tuple:
        import torch

        where = s.info.describe()
        if self.oom_fallback != "cpu" or not (lane.is_cuda or lane.index != 0):
            raise SegmentOOMError(f"out of memory in {where}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
                                  f"pass oom_fallback='cpu' to run such a segment on the CPU lane instead") from exc
        if lane.is_cuda:
            torch.cuda.empty_cache()
        with self._compile_lock:
            if s.cpu_variant is None:
                nodes = [n for g in s.info.ops for n in self.program.live_members(g)]
                s.cpu_variant = self.program.compile(nodes, "cpu", label=f"segment_{s.index}_cpu_fallback")
        args = [self._move(st, k, st.vals[k], None) for k in s.in_slots]
        cpu_lane = self.lanes[0]
        threads = cpu_lane.threads if cpu_lane is not None else torch.get_num_threads()
        old = torch.get_num_threads()
        torch.set_num_threads(int(threads))
        try:
            outs = s.cpu_variant.fn(*args)
        finally:
            torch.set_num_threads(old)
        record = {"segment": s.index, "ops": list(s.info.ops), "processor": s.info.processor, "device": s.info.device,
                  "fallback": "cpu", "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
        st.fallbacks.append(record)
        self.fallbacks.append(record)
        warnings.warn(f"out of memory in {where}; this request's segment ran on the CPU instead", RuntimeWarning, stacklevel=2)
        return outs

    def _collect(self, st: _Request) -> Any:
        self._sync.step(None, -1, -1, st, self._done_waits, spin=False)  # a thread of its own: sleep, never spin
        self._forget(st)
        return self._outputs(st)

    def _outputs(self, st: _Request) -> Any:
        if st.error is not None:
            raise st.error
        flat = []
        for kind, r in self._out_refs:
            if kind == "slot":
                v = st.vals[r]
                if self._any_cuda_value(v):
                    if self.program.home_device.type == "cpu":
                        v = self._move(st, r, v, None)
                    else:  # outputs stay on the caller's CUDA device: order its stream after the producer
                        import torch

                        ev = st.events.get(self._slot_producer[r])
                        if ev is not None:
                            torch.cuda.current_stream(self.program.home_device).wait_event(ev)
                flat.append(v)
            else:
                flat.append(r)
        return self.program.unflatten_outputs(flat)

    # ------------------------------------------------------------------ serving
    def for_batch(self, factor: int) -> "HybridEngine":
        """An engine for requests batched ``factor`` at a time (inputs concatenated along dim 0), built
        once per factor by re-exporting the module; the plan must name the same ops at that size."""
        if factor == 1:
            return self
        eng = self._batch_engines.get(factor)
        if eng is None:
            import torch

            ex = tuple(torch.cat([t] * factor, 0) if isinstance(t, torch.Tensor) else t for t in self.example_inputs)
            try:
                eng = HybridEngine(self.module, ex, self.plan, self.device_map_raw, processors=self.processors,
                                   oom_fallback=self.oom_fallback, fast_bindings=self._fast_bindings,
                                   inference_mode=self.inference_mode, spin_us=self.spin_us, caller_runs=self.caller_runs)
            except PlanError as e:
                raise PlanError(f"at batch x{factor} the exported graph has other op names than the plan's: {e}") from None
            try:
                self._check_batching(eng, factor)
            except Exception:
                eng.close()
                raise
            self._batch_engines[factor] = eng
        return eng

    def _check_batching(self, eng: "HybridEngine", factor: int) -> None:
        """Dynamic batching concatenates requests along dim 0 and splits the outputs along dim 0; that is only
        right when the model treats dim 0 as independent samples. Checked once per factor: ``factor``
        distinct variants of the example inputs (floats perturbed, integer and boolean values permuted) run
        one at a time and as one batch must give the same outputs (rtol 1e-3). A model whose outputs mix
        the samples (a mean over the batch), carry the batch on another dim, or draw random numbers fails."""
        import torch

        g = torch.Generator().manual_seed(factor)

        def variant(t: Any) -> Any:
            if not isinstance(t, torch.Tensor) or t.numel() == 0:
                return t
            if t.is_floating_point():
                return t + 0.1 * torch.randn(t.shape, generator=g, dtype=t.dtype).to(t.device) * (t.abs().mean() + 1e-3)
            flat = t.reshape(-1)
            return flat[torch.randperm(flat.numel(), generator=g).to(t.device)].reshape(t.shape)

        reqs = [tuple(variant(t) for t in self.example_inputs) for _ in range(factor)]
        singles = [self(*r) for r in reqs]
        parts = _unstack(eng(*_stack(reqs)), factor)
        for j, (one, part) in enumerate(zip(singles, parts)):
            a, b = torch.utils._pytree.tree_leaves(one), torch.utils._pytree.tree_leaves(part)
            for k, (x, y) in enumerate(zip(a, b)):
                if not _same_output(x, y):
                    shape = lambda v: list(v.shape) if isinstance(v, torch.Tensor) else repr(v)  # noqa: E731
                    raise ValueError(
                        f"dynamic batching (max_batch >= {factor}) does not fit this model: output {k} of request {j} "
                        f"differs when {factor} requests run as one batch concatenated along dim 0 (alone "
                        f"{shape(x)}, from the batch {shape(y)}); the model must treat dim 0 of its inputs and "
                        "outputs as independent samples (no reduction over the batch, batch on dim 0, no random "
                        "ops). Serve it with max_batch=1")

    def serve(self, requests: Sequence[Sequence[Any]] | int, *, rate_per_s: float | None = None,
              arrivals_ms: Sequence[float] | None = None, max_batch: int = 1, max_wait_ms: float = 5.0,
              slo_ms: float | None = None, batch_sizes: Sequence[int] | None = None, seed: int = 0,
              warmup: int = 3, return_outputs: bool = False) -> "ServeReport":
        """Serve ``requests`` (a list of per-request input tuples shaped like the example inputs, or a
        count: that many copies of the example inputs) arriving open-loop at ``arrivals_ms`` (or Poisson
        at ``rate_per_s``; neither: all at t=0) with dynamic batching (module docstring)."""
        import numpy as np
        import torch

        reqs = [tuple(self.example_inputs)] * requests if isinstance(requests, int) else [tuple(r) for r in requests]
        n = len(reqs)
        if n < 1:
            raise ValueError("serve() needs at least one request")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be a positive integer, got {max_batch!r}")
        if not max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms!r}")
        if slo_ms is not None and not slo_ms > 0:
            raise ValueError(f"slo_ms must be > 0, got {slo_ms!r}")
        if arrivals_ms is not None:
            arr = np.asarray(arrivals_ms, dtype=float)
            if arr.shape != (n,) or np.any(np.diff(arr) < 0) or arr[0] < 0:
                raise ValueError("arrivals_ms must be non-decreasing times >= 0, one per request")
        elif rate_per_s:
            if not rate_per_s > 0:
                raise ValueError(f"rate_per_s must be > 0, got {rate_per_s!r}")
            gaps = np.random.default_rng(seed).exponential(1000.0 / rate_per_s, n - 1)
            arr = np.concatenate([[0.0], np.cumsum(gaps)])
        else:
            arr = np.zeros(n)
        sizes = sorted(set(batch_sizes) if batch_sizes else {b for b in (1, 2, 4, 8, 16, 32, 64, 128) if b < max_batch} | {max_batch})
        if any(b < 1 or b > max_batch for b in sizes) or max_batch not in sizes:
            raise ValueError(f"batch_sizes must lie in [1, max_batch] and include max_batch={max_batch}, got {sizes}")
        engines = {b: self.for_batch(b) for b in sizes}
        est: dict[int, float] = {}
        for b, eng in engines.items():  # warm-up and service-time estimates
            x = _stack([reqs[0]] * b)
            ts = []
            for _ in range(max(warmup, 1)):
                t0 = time.perf_counter()
                eng(*x)
                ts.append((time.perf_counter() - t0) * 1e3)
            est[b] = float(np.median(ts))

        def size_for(k: int) -> int:
            return next(b for b in sizes if b >= k)

        done_ms = np.full(n, np.nan)
        batch_log: list[int] = []
        outputs: list[Any] = [None] * n if return_outputs else []
        errors: list[str] = []
        nxt = 0            # next request not yet arrived / queued
        head = 0           # oldest queued request (FIFO: requests are served in arrival order)
        t_start = time.perf_counter()

        def now_ms() -> float:
            return (time.perf_counter() - t_start) * 1e3

        while head < n:
            t = now_ms()
            while nxt < n and arr[nxt] <= t:
                nxt += 1
            queued = nxt - head
            if queued == 0:
                _sleep_ms(arr[nxt] - t)
                continue
            waited = t - arr[head]
            cap = min(queued, max_batch)
            if queued < max_batch and nxt < n:
                # wait for more while the oldest has time left and a bigger batch would still meet the SLO
                deadline = arr[head] + max_wait_ms
                if slo_ms is not None:
                    deadline = min(deadline, arr[head] + slo_ms - est[size_for(queued + 1)])
                if t < deadline:
                    _sleep_ms(min(arr[nxt], deadline) - t)
                    continue
            k = cap
            if slo_ms is not None and waited + est[size_for(1)] <= slo_ms:
                # the oldest can still make the SLO: the largest batch that lets it (once it is lost
                # anyway, the full batch drains the queue fastest)
                while k > 1 and waited + est[size_for(k)] > slo_ms:
                    k -= 1
            b = size_for(k)
            batch = reqs[head:head + k] + [reqs[head + k - 1]] * (b - k)
            x = _stack(batch)
            t0 = time.perf_counter()
            try:
                out = engines[b](*x)
            except Exception as e:  # noqa: BLE001 - the request fails, the server goes on
                out = None
                errors.append(f"requests {head}..{head + k - 1}: {type(e).__name__}: {e}")
            service = (time.perf_counter() - t0) * 1e3
            est[b] = 0.8 * est[b] + 0.2 * service
            t_done = now_ms()
            done_ms[head:head + k] = t_done
            if return_outputs and out is not None:
                for j, o in enumerate(_unstack(out, b)[:k]):
                    outputs[head + j] = o
            batch_log.append(k)
            head += k
        lat = done_ms - arr
        ok = ~np.isnan(lat)
        span_ms = float(np.nanmax(done_ms) - arr[0]) if ok.any() else math.nan
        p50, p95, p99 = percentiles(lat[ok].tolist(), (50, 95, 99))
        return ServeReport(
            n=n, completed=int(ok.sum()), latency_ms=lat.tolist(), p50_ms=p50, p95_ms=p95, p99_ms=p99,
            mean_ms=float(np.nanmean(lat)) if ok.any() else math.nan,
            throughput_rps=float(ok.sum() / (span_ms / 1e3)) if span_ms and span_ms > 0 else math.nan,
            mean_batch=float(np.mean(batch_log)), batches=batch_log, max_batch=max_batch, max_wait_ms=max_wait_ms,
            slo_ms=slo_ms, slo_violation_frac=float(np.mean(lat[ok] > slo_ms)) if slo_ms and ok.any() else math.nan,
            rate_per_s=rate_per_s, service_ms={int(b): float(v) for b, v in est.items()}, errors=errors,
            fallbacks=len(self.fallbacks) + sum(len(e.fallbacks) for e in self._batch_engines.values()),
            outputs=outputs)


def _sleep_ms(ms: float) -> None:
    if ms > 0:
        time.sleep(ms / 1e3)


def _stack(batch: Sequence[Sequence[Any]]) -> tuple:
    import torch

    if len(batch) == 1:
        return tuple(batch[0])
    cols = list(zip(*batch))
    return tuple(torch.cat(c, 0) if isinstance(c[0], torch.Tensor) else c[0] for c in cols)


def _same_output(x: Any, y: Any) -> bool:
    """One output leaf of a request alone (``x``) and from a batch (``y``): equal shape and values (floats
    within rtol 1e-3, atol 1e-5 of the output's scale; integers and booleans exactly), or equal constants."""
    import torch

    if not isinstance(x, torch.Tensor):
        return not isinstance(y, torch.Tensor) and x == y
    if not isinstance(y, torch.Tensor) or x.shape != y.shape or x.dtype != y.dtype:
        return False
    if not x.is_floating_point():
        return bool(torch.equal(x, y))
    xf, yf = x.float(), y.float()
    scale = float(xf.abs().max()) if xf.numel() else 0.0
    return bool(torch.allclose(xf, yf, rtol=1e-3, atol=1e-5 * (1.0 + scale)))


def _unstack(out: Any, b: int) -> list[Any]:
    import torch

    def split(v: Any) -> Any:
        if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] % b == 0:
            return list(torch.chunk(v, b, 0))
        return [v] * b

    flat, spec = torch.utils._pytree.tree_flatten(out)
    parts = [split(v) for v in flat]
    return [torch.utils._pytree.tree_unflatten([p[j] for p in parts], spec) for j in range(b)]


@dataclass
class ServeReport:
    """Figures from :meth:`HybridEngine.serve` (times in ms from the first arrival)."""

    n: int
    completed: int
    latency_ms: list[float]
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    throughput_rps: float
    mean_batch: float
    batches: list[int]
    max_batch: int
    max_wait_ms: float
    slo_ms: float | None
    slo_violation_frac: float
    rate_per_s: float | None
    service_ms: dict[int, float]
    errors: list[str]
    fallbacks: int
    outputs: list[Any] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("outputs", "latency_ms")}

    def summary(self) -> str:
        slo = f", SLO {self.slo_ms:g} ms missed by {self.slo_violation_frac:.1%}" if self.slo_ms else ""
        return (f"{self.completed}/{self.n} requests, p50 {self.p50_ms:.2f} ms, p95 {self.p95_ms:.2f} ms, "
                f"p99 {self.p99_ms:.2f} ms, {self.throughput_rps:.1f} req/s, mean batch {self.mean_batch:.2f}{slo}")
