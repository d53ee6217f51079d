"""Recording traces on the project's executor (:class:`sparoa_env.hw.program.Program`).

What is measured, and why this way (the issue measured it: the sum of per-op times taken *in isolation*
came to 0.69-1.05x of the model's end-to-end time, and an fx-interpreted pass took up to 2x eager):

* **ops inside real passes.** The model is exported once; every op group is compiled into its own
  straight-line segment (:meth:`Program.compile`), and a pass calls the segments one after another,
  reading the clock between calls. Caches, allocator state and the data flowing through are those of a
  real pass; only the clock reads and one Python call per op are added, and both are measured
  (``probe`` rows) so that calibration can take them out.
* **end-to-end passes** of the whole graph compiled as one segment (what the executor runs), interleaved
  with the op-timing passes so that both see the same machine state; their spread (``cv``, p10/p90) is
  the machine's run-to-run noise, stored with the trace.
* **micro-benchmarks**: the dispatch cost of a tiny op, a large matmul (attainable FLOP/s), a large copy
  (memory bandwidth), and transfers over a sweep of sizes: host<->device copies on a GPU; on a CPU-only
  machine, the hand-off of a tensor between two worker threads on different core groups (what a
  cross-lane edge costs the hybrid engine there). With a GPU, kernel-launch overhead too (host time per
  launch and device time per tiny kernel, by CUDA events).

Plans over several lanes are run by :class:`sparoa_env.hw.engine.HybridEngine` (``sparoa fidelity``);
:func:`prepare_model` gives it the already exported Program.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import statistics
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

from ..traces import empty_row
from .devices import LaneSpec, parse_lane
from .timing import percentiles, thread_settings

__all__ = ["PreparedModel", "prepare_model", "record_model", "record_micro", "clock_state",
           "summarize_ms", "first_cores", "TRANSFER_SIZES"]

TRANSFER_SIZES = (4 << 10, 64 << 10, 512 << 10, 2 << 20, 8 << 20)


# ---------------------------------------------------------------------------------------------- state
def _loadavg() -> float:
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return math.nan


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def clock_state(device: str = "cpu") -> dict[str, Any]:
    """Clocks and power mode where this machine lets us read them (NaN / 'unknown' where it does not).

    CPU clock: ``psutil.cpu_freq``; pinned when ``scaling_min_freq == scaling_max_freq`` for every CPU or
    the governor is ``performance``/``userspace`` with equal bounds. Jetson: jtop gives the nvpmodel mode
    and whether ``jetson_clocks`` is on. NVIDIA GPU: the SM clock through NVML.
    """
    out: dict[str, Any] = {"cpu_freq_mhz": math.nan, "gpu_freq_mhz": math.nan, "clocks_pinned": "unknown",
                           "power_mode": ""}
    try:
        import psutil

        f = psutil.cpu_freq(percpu=False)
        if f is not None and f.current:
            out["cpu_freq_mhz"] = float(f.current)
    except Exception:  # noqa: BLE001 - unreadable clocks are recorded as NaN
        pass
    pinned = _cpufreq_pinned()
    if pinned is not None:
        out["clocks_pinned"] = "yes" if pinned else "no"
    try:  # Jetson: nvpmodel mode and jetson_clocks through jtop (jetson-stats); skipped off a Jetson
        if not os.path.exists("/etc/nv_tegra_release"):
            raise OSError("not a Jetson")
        from jtop import jtop  # type: ignore

        with jtop() as jet:
            if jet.ok():
                out["power_mode"] = str(jet.nvpmodel) if jet.nvpmodel is not None else ""
                jc = getattr(jet, "jetson_clocks", None)
                if jc is not None:
                    out["clocks_pinned"] = "yes" if bool(jc.status == "running" or jc.is_alive) else "no"
    except Exception:  # noqa: BLE001 - jtop.JtopException / OSError / ImportError off a Jetson
        pass
    if device.startswith("cuda"):
        try:
            import pynvml  # type: ignore

            pynvml.nvmlInit()
            idx = int(device.split(":")[1]) if ":" in device else 0
            h = pynvml.nvmlDeviceGetHandleByIndex(idx)
            out["gpu_freq_mhz"] = float(pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM))
        except Exception:  # noqa: BLE001 - pynvml.NVMLError_LibraryNotFound etc.
            pass
    return out


def _cpufreq_pinned() -> bool | None:
    base = "/sys/devices/system/cpu"
    try:
        cpus = [d for d in os.listdir(base) if d.startswith("cpu") and d[3:].isdigit()]
    except OSError:
        return None
    seen = False
    for c in cpus:
        d = f"{base}/{c}/cpufreq"
        try:
            lo = open(f"{d}/scaling_min_freq").read().strip()
            hi = open(f"{d}/scaling_max_freq").read().strip()
        except OSError:
            continue
        seen = True
        if lo != hi:
            return False
    return True if seen else None


def first_cores(n: int) -> tuple[int, ...]:
    """The first ``n`` cores this process may use (the lane spec ``cpu:<cores>`` of an n-thread run)."""
    avail = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    if n > len(avail):
        raise ValueError(f"{n} threads asked for, but this process may use only {len(avail)} core(s) "
                         f"({','.join(map(str, avail))})")
    return tuple(avail[:n])


def _fmt_cores(cores: Sequence[int] | None) -> str:
    if not cores:
        return ""
    cores = sorted(cores)
    parts, start, prev = [], cores[0], cores[0]
    for c in cores[1:] + [None]:  # type: ignore[list-item]
        if c is not None and c == prev + 1:
            prev = c
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if c is not None:
            start = prev = c
    return ",".join(parts)


def summarize_ms(samples: Sequence[float]) -> dict[str, float]:
    """median / p10 / p90 / cv / n of timings in ms."""
    xs = [float(x) for x in samples]
    p10, p50, p90 = percentiles(xs, (10.0, 50.0, 90.0))
    mean = statistics.fmean(xs)
    cv = statistics.pstdev(xs) / mean if len(xs) > 1 and mean > 0 else 0.0
    return {"latency_ms": p50, "latency_p10_ms": p10, "latency_p90_ms": p90, "n_samples": len(xs), "cv": cv}


# ---------------------------------------------------------------------------------------------- model
@dataclass
class PreparedModel:
    """A model exported once: its OpGraph (features) and its Program (the executor), same op names."""

    spec: str
    batch: int
    module: Any
    inputs: tuple
    graph: Any
    program: Any


@contextlib.contextmanager
def _reuse_export(ep: Any) -> Iterator[None]:
    """Let extract_graph and Program share one torch.export run (exporting dominates the set-up time)."""
    from .. import extract

    original = extract.export_program
    extract.export_program = lambda module, example_inputs: ep  # type: ignore[assignment]
    try:
        yield
    finally:
        extract.export_program = original  # type: ignore[assignment]


def prepare_model(spec: str, batch: int) -> PreparedModel:
    """Build ``spec`` at ``batch`` (zoo name or ``file.py:function``), export it once, extract its graph
    and build its Program."""
    import warnings

    from ..extract import export_program, extract_graph
    from ..modelspec import load_module, parse_model_spec
    from .program import Program

    module, inputs = load_module(spec, batch)
    ms = parse_model_spec(spec)
    name = ms.text if ms.kind == "zoo" else f"{ms.path.name}:{ms.function}"  # type: ignore[union-attr]
    ep = export_program(module, inputs)
    with _reuse_export(ep), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = extract_graph(module, inputs, name=name, meta={"source": f"extracted from {spec} by sparoa profile"})
        program = Program(module, inputs)
    missing = [n.name for n in graph.nodes if n.name not in program.group_members]
    if missing:  # both come from the same exported program and group_nodes; a mismatch is a bug
        raise RuntimeError(f"{spec}: graph ops {missing[:5]} have no op group in the program")
    return PreparedModel(spec, batch, module, tuple(inputs), graph, program)


class _OpChain:
    """The model as one compiled segment per op group, run in graph order with a clock read between calls."""

    def __init__(self, program: Any, graph: Any, device: str) -> None:
        self.program = program
        self.device = device
        self.names = [n.name for n in graph.nodes]
        self.segs = []
        for name in self.names:
            nodes = program.live_members(name)
            self.segs.append(program.compile(nodes, device, label=f"op_{len(self.segs)}") if nodes else None)
        # drop every value after its last use, as eager execution would
        last: dict[str, int] = {}
        for k, s in enumerate(self.segs):
            if s is not None:
                for x in s.inputs:
                    last[x] = k
        outs = {getattr(a, "name", None) for a in program.output_args}
        self.drop: list[list[str]] = [[] for _ in self.segs]
        for x, k in last.items():
            if x not in outs:
                self.drop[k].append(x)

    def run(self, flat_inputs: Sequence[Any], sync: Callable[[], None] | None = None) -> list[float]:
        """One pass; returns each op's time in ms (0 for an op with nothing left to run)."""
        env = dict(zip(self.program.user_inputs, flat_inputs))
        times = [0.0] * len(self.segs)
        clock = time.perf_counter
        for k, seg in enumerate(self.segs):
            if seg is None:
                continue
            args = [env[x] for x in seg.inputs]
            if sync is not None:
                sync()
            t0 = clock()
            outs = seg.fn(*args)
            if sync is not None:
                sync()
            times[k] = (clock() - t0) * 1e3
            del args
            for x, v in zip(seg.outputs, outs):
                env[x] = v
            for x in self.drop[k]:
                env.pop(x, None)
        return times


class _CudaOpChain(_OpChain):
    """The same chain on a CUDA device, timed by CUDA events recorded between the segments."""

    def run(self, flat_inputs: Sequence[Any], sync: Callable[[], None] | None = None) -> list[float]:
        import torch

        env = dict(zip(self.program.user_inputs, flat_inputs))
        events = [torch.cuda.Event(enable_timing=True) for _ in range(len(self.segs) + 1)]
        live = []
        events[0].record()
        for k, seg in enumerate(self.segs):
            if seg is not None:
                outs = seg.fn(*[env[x] for x in seg.inputs])
                for x, v in zip(seg.outputs, outs):
                    env[x] = v
                for x in self.drop[k]:
                    env.pop(x, None)
            events[k + 1].record()
            live.append(seg is not None)
        torch.cuda.synchronize()
        return [events[k].elapsed_time(events[k + 1]) if live[k] else 0.0 for k in range(len(self.segs))]


def _whole(program: Any, device: str) -> Any:
    nodes = [n for g in program.group_names for n in program.live_members(g)]
    outs = [a.name for a in program.output_args if hasattr(a, "name")]
    return program.compile(nodes, device, label="model", outputs=outs)


def _device_inputs(program: Any, inputs: Sequence[Any], device: str) -> list[Any]:
    flat = program.flatten_inputs(inputs)
    if device.startswith("cuda"):
        flat = [x.to(device) if hasattr(x, "to") else x for x in flat]
    return flat


def _signature(program: Any, name: str, op_type: str) -> tuple[str, str]:
    """('aten.addmm(f32[1,512],f32[512,1000])', JSON of the activation input shapes)."""
    node = program.nodes_by_name[name]
    short = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "int64": "i64", "bool": "b8", "int32": "i32"}
    parts, act = [], []
    for a in node.all_input_nodes:
        v = a.meta.get("val")
        if v is None or not hasattr(v, "shape"):
            continue
        dt = str(v.dtype).removeprefix("torch.")
        shape = [int(s) for s in v.shape]
        parts.append(f"{short.get(dt, dt)}{shape}".replace(" ", ""))
        if a.name not in program.const_nodes:
            act.append(shape)
    return f"{op_type}({','.join(parts)})", json.dumps(act)


def record_model(pm: PreparedModel, *, threads: int, device: str = "cpu", repeats: int = 10, warmup: int = 3,
                 budget_s: float = 20.0, base: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Op rows and one e2e row for one (model, batch, threads) on ``device``.

    ``repeats`` op-timing passes and ``repeats`` end-to-end passes, interleaved, after ``warmup`` of each;
    fewer (at least 3) when the passes would run past ``budget_s``. ``base`` holds the columns common to
    the whole trace (trace_id, machine_id, torch_version ...).
    """
    import torch

    cuda = device.startswith("cuda")
    cores = None if cuda else first_cores(threads)
    prog, graph = pm.program, pm.graph
    chain = (_CudaOpChain if cuda else _OpChain)(prog, graph, device)
    whole = _whole(prog, device)
    flat = _device_inputs(prog, pm.inputs, device)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    clocks = clock_state(device)
    load = _loadavg()
    stamp = _utc_now()
    op_samples: list[list[float]] = []
    e2e: list[float] = []
    with thread_settings(threads, cores), torch.no_grad():
        t_start = time.perf_counter()
        done = 0
        for _ in range(max(warmup, 1)):  # warm-up, cut short on big models (a third of the budget)
            whole.fn(*flat)
            chain.run(flat)
            done += 1
            if time.perf_counter() - t_start > budget_s / 3:
                break
        sync()
        per_round = max((time.perf_counter() - t_start) / done, 1e-6)
        n = max(3, min(repeats, int(budget_s / per_round)))
        for _ in range(n):
            sync()
            t0 = time.perf_counter()
            whole.fn(*flat)
            sync()
            e2e.append((time.perf_counter() - t0) * 1e3)
            op_samples.append(chain.run(flat))
    common = dict(base, processor=device if cuda else "cpu", threads=threads, cores=_fmt_cores(cores),
                  model=pm.spec, batch=pm.batch, loadavg_1m=load, timestamp=stamp, **clocks)
    rows: list[dict[str, Any]] = []
    for k, node in enumerate(graph.nodes):
        samples = [s[k] for s in op_samples]
        sig, in_shapes = _signature(prog, node.name, node.op_type)
        row = empty_row()
        row.update(common)
        row.update(kind="op", op_name=node.name, op_type=node.op_type, op_signature=sig, in_shapes=in_shapes,
                   out_shape=json.dumps(list(node.out_shape)), dtype=node.dtype, n_members=len(node.members),
                   flops=node.flops, aux_flops=node.aux_flops, bytes_in=node.bytes_in, bytes_out=node.bytes_out,
                   weight_bytes=node.weight_bytes, weight_sparsity=node.weight_sparsity,
                   input_sparsity=node.input_sparsity, sparsity=node.sparsity, sparsity_pattern=node.sparsity_pattern,
                   n_ops=1, **summarize_ms(samples))
        rows.append(row)
    row = empty_row()
    row.update(common)
    sums = [sum(s) for s in op_samples]
    row.update(kind="e2e", n_ops=len(graph.nodes), flops=float(sum(n.flops for n in graph.nodes)),
               ops_sum_ms=float(statistics.median(sums)), **summarize_ms(e2e))
    rows.append(row)
    # the probe: an empty segment between two clock reads, as in the op chain
    rows.append(_probe_row(common, threads, cores))
    return rows


def _probe_row(common: Mapping[str, Any], threads: int, cores: Sequence[int] | None) -> dict[str, Any]:
    src = "def probe(a0):\n    return (a0,)\n"
    g: dict[str, Any] = {}
    exec(compile(src, "<sparoa probe>", "exec"), g)  # noqa: S102 - fixed source
    fn = g["probe"]
    clock = time.perf_counter
    samples = []
    with thread_settings(threads, cores):
        for _ in range(7):
            acc = 0.0
            for _ in range(200):
                args = [None]
                t0 = clock()
                fn(*args)
                acc += clock() - t0
            samples.append(acc / 200 * 1e3)
    row = empty_row()
    row.update(common)
    row.update(kind="probe", model=common.get("model", ""), batch=common.get("batch", 0), **summarize_ms(samples))
    return row


# ---------------------------------------------------------------------------------------------- micro
def record_micro(*, device: str, threads_list: Sequence[int], base: Mapping[str, Any],
                 transfer_sizes: Sequence[int] = TRANSFER_SIZES, repeats: int = 9) -> list[dict[str, Any]]:
    """Dispatch, peak-matmul and copy-bandwidth rows per thread count; transfer rows (and launch rows on a
    GPU) once."""
    import torch

    rows: list[dict[str, Any]] = []
    cuda = device.startswith("cuda")
    for threads in threads_list:
        cores = first_cores(threads)
        common = dict(base, processor="cpu", threads=threads, cores=_fmt_cores(cores), model="", batch=0,
                      loadavg_1m=_loadavg(), timestamp=_utc_now(), **clock_state("cpu"))
        with thread_settings(threads, cores), torch.no_grad():
            rows.append(_dispatch_row(common, "cpu", repeats))
            rows.append(_peak_mm_row(common, "cpu", repeats))
            rows.append(_copy_bw_row(common, "cpu", repeats))
    if cuda:
        common = dict(base, processor=device, threads=max(threads_list), cores="", model="", batch=0,
                      loadavg_1m=_loadavg(), timestamp=_utc_now(), **clock_state(device))
        with torch.no_grad():
            rows.append(_dispatch_row(common, device, repeats))
            rows += _launch_rows(common, device, repeats)
            rows.append(_peak_mm_row(common, device, repeats))
            rows.append(_copy_bw_row(common, device, repeats))
            rows += _pcie_rows(common, device, transfer_sizes, repeats)
    else:
        rows += _handoff_rows(base, transfer_sizes, repeats)
    return rows


def _micro(common: Mapping[str, Any], kind: str, op_type: str, samples: Sequence[float], **extra: Any) -> dict[str, Any]:
    row = empty_row()
    row.update(common)
    row.update(kind=kind, op_type=op_type, **summarize_ms(samples), **extra)
    return row


def _dispatch_row(common: Mapping[str, Any], device: str, repeats: int) -> dict[str, Any]:
    """Host time of one tiny op issued from compiled code (``torch.add`` on one element)."""
    import torch

    x = torch.ones(1, device=device)
    add = torch.add
    n = 500
    for _ in range(50):
        add(x, x)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            add(x, x)
        samples.append((time.perf_counter() - t0) * 1e3 / n)
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    return _micro(common, "dispatch", "aten.add", samples, flops=0.0, aux_flops=1.0, bytes_in=8.0, bytes_out=4.0)


def _launch_rows(common: Mapping[str, Any], device: str, repeats: int) -> list[dict[str, Any]]:
    """Device-side time per tiny kernel (CUDA events around a burst, queued ahead so launches hide)."""
    import torch

    x = torch.ones(1, device=device)
    n = 200
    samples = []
    for _ in range(repeats):
        torch.cuda.synchronize(device)
        torch.cuda._sleep(2_000_000)  # queue the burst behind a busy kernel: device time only, not launch gaps
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(n):
            torch.add(x, x)
        b.record()
        b.synchronize()
        samples.append(a.elapsed_time(b) / n)
    return [_micro(common, "launch", "aten.add", samples, flops=0.0, aux_flops=1.0)]


def _peak_mm_row(common: Mapping[str, Any], device: str, repeats: int) -> dict[str, Any]:
    import torch

    n = 1024 if not device.startswith("cuda") else 4096
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.startswith("cuda") else (lambda: None)
    for _ in range(2):
        torch.mm(a, b)
    sync()
    samples = []
    for _ in range(max(3, repeats // 2)):
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync()
        samples.append((time.perf_counter() - t0) * 1e3)
    return _micro(common, "peak", "aten.mm", samples, flops=2.0 * n ** 3, bytes_in=8.0 * n * n, bytes_out=4.0 * n * n,
                  op_signature=f"aten.mm(f32[{n},{n}],f32[{n},{n}])")


def _copy_bw_row(common: Mapping[str, Any], device: str, repeats: int) -> dict[str, Any]:
    import torch

    nbytes = 64 << 20
    src = torch.ones(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    sync = (lambda: torch.cuda.synchronize(device)) if device.startswith("cuda") else (lambda: None)
    dst.copy_(src)
    sync()
    samples = []
    for _ in range(max(3, repeats // 2)):
        t0 = time.perf_counter()
        dst.copy_(src)
        sync()
        samples.append((time.perf_counter() - t0) * 1e3)
    return _micro(common, "peak", "aten.copy", samples, flops=0.0, bytes_in=float(nbytes), bytes_out=float(nbytes),
                  nbytes=float(nbytes))


def _pcie_rows(common: Mapping[str, Any], device: str, sizes: Sequence[int], repeats: int) -> list[dict[str, Any]]:
    import torch

    rows = []
    for nbytes in sizes:
        host = torch.ones(nbytes // 4)
        dev = torch.ones(nbytes // 4, device=device)
        for src, dst, fn in (("cpu", device, lambda: host.to(device)), (device, "cpu", lambda: dev.to("cpu"))):
            fn()
            torch.cuda.synchronize(device)
            samples = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                torch.cuda.synchronize(device)
                samples.append((time.perf_counter() - t0) * 1e3)
            rows.append(_micro(common, "transfer", "copy", samples, nbytes=float(nbytes), src=src, dst=dst))
    return rows


def _handoff_rows(base: Mapping[str, Any], sizes: Sequence[int], repeats: int) -> list[dict[str, Any]]:
    """CPU-only machine: a tensor produced on one core group's worker and consumed on another's, minus the
    same two steps on one worker. Needs at least two cores."""
    import torch

    avail = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    if len(avail) < 2:
        return []
    half = len(avail) // 2
    lane_a = parse_lane("a", "cpu:" + _fmt_cores(avail[:half]) + "@1")
    lane_b = parse_lane("b", "cpu:" + _fmt_cores(avail[half:]) + "@1")
    common = dict(base, processor="cpu", threads=1, cores=f"{_fmt_cores(lane_a.cores)}|{_fmt_cores(lane_b.cores)}", model="", batch=0,
                  loadavg_1m=_loadavg(), timestamp=_utc_now(), **clock_state("cpu"))
    rows = []
    with _Workers([lane_a, lane_b]) as workers:
        for nbytes in sizes:
            x = torch.ones(nbytes // 4)

            def produce(x=x):
                return x.add(1.0)

            def consume(y):
                return y.mul(2.0)

            def once(cross: bool) -> float:
                t0 = time.perf_counter()
                f1 = workers.submit(0, produce)
                f2 = workers.submit(1 if cross else 0, lambda: consume(f1.result()))
                f2.result()
                return (time.perf_counter() - t0) * 1e3

            for _ in range(3):
                once(True), once(False)
            diffs = []
            for _ in range(repeats * 2):
                diffs.append(once(True) - once(False))
            diffs = [max(d, 0.0) for d in diffs]
            rows.append(_micro(common, "transfer", "handoff", diffs, nbytes=float(nbytes),
                               src=lane_a.spec, dst=lane_b.spec))
    return rows


# ---------------------------------------------------------------------------------------------- lanes
class _Workers:
    """One FIFO worker thread per lane, each with the lane's thread count and core pinning."""

    def __init__(self, lanes: Sequence[LaneSpec]) -> None:
        self.lanes = list(lanes)
        self.queues: list[queue.Queue] = [queue.Queue() for _ in self.lanes]
        self.threads = [threading.Thread(target=self._loop, args=(k,), daemon=True, name=f"sparoa-lane-{l.processor}")
                        for k, l in enumerate(self.lanes)]
        self._ready = threading.Barrier(len(self.lanes) + 1)
        self._errors: list[BaseException] = []
        for t in self.threads:
            t.start()
        self._ready.wait()
        if self._errors:
            self.close()
            raise self._errors[0]

    def _loop(self, k: int) -> None:
        import torch

        lane = self.lanes[k]
        try:
            ctx = thread_settings(lane.threads, lane.cores) if not lane.is_cuda else contextlib.nullcontext()
            ctx.__enter__()
            torch.set_grad_enabled(False)
        except BaseException as e:  # noqa: BLE001 - reported to the constructor
            self._errors.append(e)
            self._ready.wait()
            return
        self._ready.wait()
        q = self.queues[k]
        while True:
            item = q.get()
            if item is None:
                return
            fn, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as e:  # noqa: BLE001 - the caller sees it through the future
                fut.set_exception(e)

    def submit(self, k: int, fn: Callable[[], Any]) -> Future:
        fut: Future = Future()
        self.queues[k].put((fn, fut))
        return fut

    def close(self) -> None:
        for q in self.queues:
            q.put(None)
        for t in self.threads:
            t.join(timeout=5)

    def __enter__(self) -> "_Workers":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
