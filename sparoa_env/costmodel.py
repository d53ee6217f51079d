"""Latency and energy of one operator on one processor in one hardware state (numpy only).

Every parameter comes from a :class:`~sparoa_env.profile.SocProfile`; this module holds formulae, no
numbers. Units: milliseconds, bytes, GFLOP/s, GB/s (1e9 B/s), watts, MHz.

Per-op costs at a power mode's nominal state
---------------------------------------------
:meth:`CostModel.op_costs` returns, for every op ``i`` of a graph and every processor ``p``, four
``(n_ops, n_processors)`` arrays at the mode's clock caps and online cores, with no contention and no
background load:

* ``compute_ms = flops / (G_p * eff * sat * dtype * sparse) + aux_flops / (G_p * aux_eff * dtype)``

  - ``G_p = peak_gflops / cores * S_op(n) * (f_mode / f_max)``: the effective peak with ``n`` online cores,
    where ``S(n) = 1 / ((1 - parallel_fraction) + parallel_fraction / n)`` is Amdahl's speedup and
    ``S_op(n) = 1 + (S(n) - 1) * w / (w + parallel_half_mflop * 1e6)`` the share of it an op with work
    ``w = flops + aux_flops`` gets (small ops run on fewer threads: intra-op grain sizes, fork/join;
    ``parallel_half_mflop = 0``: every op gets ``S(n)``). With ``parallel_min_numel > 0`` (profile-gated,
    absent = 0) an elementwise op (no FLOPs; GEMM and convolution kernels split by work, which
    ``parallel_half_mflop`` covers) whose output has fewer elements runs on one thread (its share
    ``w / (w + parallel_half_mflop * 1e6)`` is 0). With ``serial_slowdown = x`` (profile-gated, absent = 0),
    for ``n > 1`` ``S_op(n)`` is divided by ``1 + x * (1 - share)``: the serial part of an op runs slower on
    a multi-core lane (its idle intra-op workers compete with the thread that runs it).
  - ``eff = op_efficiency[op_type]``: looked up by the exact ATen name, then with trailing overload
    segments stripped (``aten.convolution.default`` -> ``aten.convolution``), then ``default``. A
    convolution whose reduction length ``K = flops / (2 * output elements)`` is one of
    ``cost_rules.depthwise_reduction_sizes`` (a single-channel k x k window: 9, 25, 49) is depthwise and
    first tries ``<name>.depthwise.k<k>``, then ``<name>.depthwise``; a convolution that reads each input
    element once (1x1 kernels, patch embeddings; :func:`conv_variant`) first tries ``<name>.pointwise``.
    The graph stores neither ``groups`` nor the kernel size; these rules derive the class from FLOPs,
    input bytes and output shape. A profile without the suffixed keys prices every convolution alike.
  - ``sat = flops / (flops + half_efficiency_mflop * 1e6)``: small ops do not fill the machine.
  - ``aux_eff = aux_op_efficiency[op_type]`` looked up like ``eff`` (exact name, then without overload
    segments), else ``aux_efficiency``: elementwise work differs by orders of magnitude per op type
    (a ReLU streams, a GELU or softmax evaluates transcendentals, a max-pool scans windows).
  - ``dtype = dtype_speedup[op.dtype]`` for float16 / bfloat16 / int8; 1 for float32 and for any other
    dtype (int64 and bool index/mask ops, ``"none"``; float64 is not modelled and is priced as float32).
  - ``sparse``: the processor's curve for the op's ``sparsity_pattern``, interpolated at the op's
    ``weight_sparsity`` (or rho, per curve), when both GEMM sizes ``N`` (output channels: dim 1 of a
    convolution's output, the last dim otherwise) and ``K`` reach the curve's ``min_channels`` and the
    batch reaches ``min_batch``; 1 otherwise and for ``dense`` ops. FLOPs are counted on dense shapes
    (masked weights, as ``torch.nn.utils.prune`` leaves them), so the curve carries the whole gain.
* ``memory_ms = traffic * (h / (cache_bw_gbps * 1e6) + (1 - h) / (mem_bw_frac * dram_bw_gbps * memory_bw_frac(mode) * 1e6))``
  with ``traffic = bytes_in + bytes_out + weight traffic`` (the whole weight tensor, or for a curve with
  ``weight_storage="compressed"`` that applies, ``weight_bytes * (1 - weight_sparsity) * (1 + index_overhead)``)
  and ``h = min(1, cache_mb * 1e6 / traffic)`` (1 for an op without traffic): two memory levels, the share
  of the op's working set that fits the processor's last-level cache is served at the cache bandwidth,
  the rest streams from DRAM. ``cache_mb = 0`` gives one level (``h = 0``). ``traffic_bytes`` in
  :class:`OpCosts` is the DRAM part, ``(1 - h) * traffic``: what contends for DRAM bandwidth.
* ``fixed_ms = fixed_overhead_us / 1000``: device-side per-op time (kernel start/tail, fork/join); a
  profile with ``op_fixed_overhead_us`` gives FLOP-bearing ops of the types it lists (looked up like
  ``eff``, class suffixes included) their own value; a lane with more than one core in the mode adds
  ``parallel_overhead_us`` (thread-pool fork/join; absent = 0); with ``conv_weight_us_per_kb`` (profile-gated,
  absent = 0) a convolution with FLOPs adds ``weight_bytes / 1e3 * conv_weight_us_per_kb`` us (a per-call
  weight reorder).
* **learned correction** (profile-gated: ``op_residuals``, fitted by ``sparoa calibrate``): the device time
  ``nominal + host`` of an op is multiplied by ``exp(r)``, ``r`` the kernel-weighted mean of
  ``log(measured / formula)`` over the ``neighbours`` traced ops nearest to it (same op key, the table of the
  lane's core count in the mode, or the nearest core count; Euclidean distance in
  :data:`RESIDUAL_FEATURES`, weight ``exp(-(d / bandwidth)^2)``, shrunk to 0 by ``prior_weight``). It is
  applied to ``compute_ms``, ``memory_ms`` and ``fixed_ms`` alike (``host_ms`` kept), so contention still
  scales the corrected time. Kernel choice by shape (an ``addmm`` of 16x64x192 taking 5x one of
  16x64x128), which no per-type rate expresses, is what it carries. Far from every traced op, ``r -> 0``.
* ``host_ms = launch_overhead_us / 1000 * (f_host_max / f_host_mode) ** host_freq_exponent``: time the
  host (Python dispatch) thread spends issuing the op, on ``cost_rules.host_processor``'s clock. For a
  processor with ``async_dispatch`` (GPU stream, NPU queue) the host goes on after issuing; for the CPU
  it waits for the op.

Combining them (:meth:`CostModel.combine`), roofline with partial overlap::

    c = compute_ms / speed;  m = memory_ms / bw_share
    latency_ms = max(c, m) + unhidden_frac * min(c, m) + fixed_ms

``speed`` is compute throughput relative to the mode's nominal (:meth:`speed_factor`: a throttled clock,
cores taken by background load); ``bw_share`` is the share of its own solo bandwidth the op gets while
others use DRAM too. ``unhidden_frac`` (profile) is 0 for an ideal roofline and 1 for no overlap.

Memory contention (what the simulator does)
-------------------------------------------
An op running alone draws ``bandwidth_demand_gbps = traffic / latency`` on average. While several ops
run at once, :meth:`bandwidth_shares` gives each the factor ``min(1, B / sum(demands))`` where ``B`` is
the mode's DRAM bandwidth; the simulator passes it as ``bw_share`` when an op starts, from the ops already
running (the rate is then fixed for the op: no re-rating when the set of running ops changes, see
docs/simulator.md). Compute-bound ops draw little and barely slow anyone; two memory-bound ops on CPU and
GPU slow each other.

Power and energy
----------------
``power_w(p) = online * (static_power_w + dynamic_power_w * util * freq_frac ** power_freq_exponent)``
with ``online = mode cores / cores`` (power-gated cores leak nothing) and ``freq_frac`` the clock over the
processor's highest clock. The SoC draws ``idle_power_w`` (memory, rails) on top. Energy is the time
integral of the sum. Thermal: :meth:`thermal_step` (first-order RC) and :meth:`throttle_freq_frac`.
"""

from __future__ import annotations

import math
import re
import weakref
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np

from .graph import OpGraph
from .profile import ProcessorSpec, SocProfile

__all__ = ["OpCosts", "CostModel", "conv_variant", "RESIDUAL_FEATURES", "residual_key", "residual_features",
           "graph_residual_inputs", "nearest_core_count", "residual_log"]

_CONV_RE = re.compile(r"conv")
RESIDUAL_FEATURES = ("log1p_flops", "log1p_aux_flops", "log1p_bytes_in", "log1p_bytes_out", "log1p_weight_bytes",
                     "log1p_out_numel", "log1p_reduction")
_SCALAR = (float, int)  # np.float64 is a float subclass: values read from OpCosts arrays take the fast path


@dataclass(frozen=True, eq=False)
class OpCosts:
    """Cost components of every op on every processor, ``(n_ops, n_processors)`` float64 arrays in ms,
    for one graph in one power mode at that mode's clock caps, with no contention and no background.

    ``traffic_bytes`` is the DRAM traffic behind ``memory_ms`` (the part of the op's traffic that does not
    fit the processor's cache). Arrays are read-only.
    """

    compute_ms: np.ndarray
    memory_ms: np.ndarray
    fixed_ms: np.ndarray
    host_ms: np.ndarray
    traffic_bytes: np.ndarray
    unhidden_frac: float
    mode: str
    processors: tuple[str, ...]

    @cached_property
    def nominal_ms(self) -> np.ndarray:
        """Device latency of each op alone: ``combine(compute_ms, memory_ms, fixed_ms)``."""
        c, m = self.compute_ms, self.memory_ms
        out = np.maximum(c, m) + self.unhidden_frac * np.minimum(c, m) + self.fixed_ms
        out.setflags(write=False)
        return out

    @property
    def n_ops(self) -> int:
        return self.compute_ms.shape[0]


class _ProcState:
    """Per-processor constants of one power mode, as plain floats for the per-op calls."""

    __slots__ = ("freq_mhz", "cores", "s_cores", "p", "online", "static_w", "dynamic_w", "alpha",
                 "max_freq_mhz", "bw_gbps", "rel_speed")

    def __init__(self, spec: ProcessorSpec, cores: int, freq_mhz: float, dram_gbps: float):
        self.p = spec.parallel_fraction
        self.freq_mhz = freq_mhz
        self.cores = cores
        self.s_cores = _amdahl(cores, self.p)
        self.max_freq_mhz = spec.max_freq_mhz
        self.online = cores / spec.cores
        self.static_w = spec.static_power_w
        self.dynamic_w = spec.dynamic_power_w
        self.alpha = spec.power_freq_exponent
        self.bw_gbps = spec.mem_bw_frac * dram_gbps
        # compute throughput in this mode relative to max clock with all cores
        self.rel_speed = (freq_mhz / spec.max_freq_mhz) * self.s_cores / _amdahl(spec.cores, self.p)


def _amdahl(n: float, p: float) -> float:
    return 1.0 / ((1.0 - p) + p / n)


class CostModel:
    """Latency, bandwidth, transfer and power formulae for one :class:`SocProfile` (see module docstring)."""

    def __init__(self, profile: SocProfile):
        self.profile = profile
        self.processors = profile.processors
        self.n_processors = len(profile.processors)
        self._unhidden = profile.cost_rules.unhidden_frac
        t = profile.transfer
        self._xfer_latency_ms = t.latency_us / 1e3
        self.first_switch_ms = t.first_switch_us / 1e3  # paid once per request by its first cross-lane hand-off
        self._xfer_bytes_per_ms = t.bandwidth_gbps * 1e6
        self._host = profile.processor_index(profile.cost_rules.host_processor)
        self._modes: dict[str, tuple[_ProcState, ...]] = {}
        for name, m in profile.power_modes.items():
            dram = profile.memory.dram_bw_gbps * m.memory_bw_frac
            self._modes[name] = tuple(_ProcState(p, m.cores[p.name], m.max_freq_mhz[p.name], dram)
                                      for p in profile.processors)
        self._base_cache: dict[int, tuple[weakref.ref, dict[str, np.ndarray]]] = {}
        self._cost_cache: dict[tuple[int, str], tuple[weakref.ref, OpCosts]] = {}
        self._res_rows: dict[tuple[int, int], dict] = {}   # op_residuals rows per (processor, cores)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_base_cache"], state["_cost_cache"] = {}, {}  # weakrefs do not pickle; caches rebuild
        return state

    # ------------------------------------------------------------------------------ modes and speed
    def _mode(self, mode: str) -> tuple[_ProcState, ...]:
        try:
            return self._modes[mode]
        except KeyError:
            self.profile.mode(mode)  # raises ProfileError listing the valid modes
            raise

    def speed_factor(self, proc: int, mode: str, freq_mhz: float | None = None,
                     cores: float | None = None) -> float:
        """Compute throughput of ``proc`` at ``freq_mhz`` with ``cores`` usable cores (fractional: the
        share background load leaves), relative to the mode's nominal clock and online cores.
        Parallel efficiency follows Amdahl's law with the processor's ``parallel_fraction``."""
        st = self._mode(mode)[proc]
        f = 1.0 if freq_mhz is None else freq_mhz / st.freq_mhz
        if cores is None:
            return f
        if cores <= 0:
            raise ValueError(f"cores must be > 0, got {cores!r} (a processor with no cores left has no speed)")
        return f * (1.0 / ((1.0 - st.p) + st.p / cores)) / st.s_cores

    def host_speed_factor(self, mode: str, freq_mhz: float | None = None) -> float:
        """How fast the host thread runs relative to the mode's nominal (divide ``host_ms`` by it)."""
        if freq_mhz is None:
            return 1.0
        st = self._mode(mode)[self._host]
        return (freq_mhz / st.freq_mhz) ** self.profile.cost_rules.host_freq_exponent

    # ------------------------------------------------------------------------------ latency
    def combine(self, compute_ms, memory_ms, fixed_ms, speed=1.0, bw_share=1.0):
        """Latency of an op: ``max(c, m) + unhidden_frac * min(c, m) + fixed_ms`` with
        ``c = compute_ms / speed`` and ``m = memory_ms / bw_share``. Plain floats stay plain floats
        (the simulator calls this per op); arrays broadcast."""
        if (isinstance(compute_ms, _SCALAR) and isinstance(memory_ms, _SCALAR) and isinstance(fixed_ms, _SCALAR)
                and isinstance(speed, _SCALAR) and isinstance(bw_share, _SCALAR)):
            c = compute_ms / speed
            m = memory_ms / bw_share
            return (c + self._unhidden * m if c >= m else m + self._unhidden * c) + fixed_ms
        c = np.divide(compute_ms, speed)
        m = np.divide(memory_ms, bw_share)
        return np.maximum(c, m) + self._unhidden * np.minimum(c, m) + fixed_ms

    def op_costs(self, graph: OpGraph, mode: str) -> OpCosts:
        """Cost components of every op of ``graph`` on every processor in ``mode`` (cached per graph
        object and mode)."""
        states = self._mode(mode)
        key = (id(graph), mode)
        hit = self._cost_cache.get(key)
        if hit is not None and hit[0]() is graph:
            return hit[1]
        base = self._graph_base(graph)
        m = self.profile.mode(mode)
        rel = np.array([st.rel_speed for st in states])
        if base["par_g"] is not None:   # op-size-dependent parallel speedup: the mode's cores relative to all
            g = base["par_g"]
            s_mode = np.array([st.s_cores for st in states])
            s_all = np.array([_amdahl(p.cores, p.parallel_fraction) for p in self.processors])
            f_rel = np.array([st.freq_mhz / st.max_freq_mhz for st in states])
            rel = f_rel * (1.0 + (s_mode - 1.0) * g) / (1.0 + (s_all - 1.0) * g)
            x = np.array([p.serial_slowdown for p in self.processors])
            if x.any():   # the serial share (1 - g) of an op runs slower on a multi-core lane
                m_mode = np.array([st.cores > 1 for st in states], float)
                m_all = np.array([p.cores > 1 for p in self.processors], float)
                rel = rel * (1.0 + x * m_all * (1.0 - g)) / (1.0 + x * m_mode * (1.0 - g))
        bw = np.array([st.bw_gbps for st in states])
        host_st = states[self._host]
        host_scale = (host_st.max_freq_mhz / host_st.freq_mhz) ** self.profile.cost_rules.host_freq_exponent
        n = len(graph)
        compute = base["compute_ms_max"] / rel
        memory = base["cache_ms"] + base["traffic_bytes"] / (bw * 1e6)
        fixed = np.broadcast_to(base["fixed_ms"], (n, self.n_processors)).copy()
        par_ovh = [p.parallel_overhead_us / 1e3 if st.cores > 1 else 0.0 for p, st in zip(self.processors, states)]
        if any(par_ovh):   # fork/join of a multi-core lane (profile-gated: 0 when the profile lacks it)
            fixed += np.array(par_ovh)[None, :]
        host = np.broadcast_to(base["host_ms_max"] * host_scale, (n, self.n_processors)).copy()
        if any(p.op_residuals for p in self.processors):   # learned per-op correction (profile-gated)
            nominal = np.maximum(compute, memory) + self._unhidden * np.minimum(compute, memory) + fixed
            for j, (p, st) in enumerate(zip(self.processors, states)):
                if not p.op_residuals:
                    continue
                r = self._residuals(graph, base, j, st.cores)
                # (nominal + host) * exp(r) = nominal * k + host; k >= 0.05 keeps a tiny op's time positive
                k = np.divide((nominal[:, j] + host[:, j]) * np.exp(r) - host[:, j], nominal[:, j],
                              out=np.ones(n), where=nominal[:, j] > 0).clip(min=0.05)
                compute[:, j] *= k
                memory[:, j] *= k
                fixed[:, j] *= k
        arrays = [compute, memory, fixed, host, base["traffic_bytes"].copy()]
        for a in arrays:
            a.setflags(write=False)
        costs = OpCosts(*arrays, unhidden_frac=self._unhidden, mode=m.name, processors=self.profile.processor_names)
        if len(self._cost_cache) > 256:
            self._cost_cache = {k: v for k, v in self._cost_cache.items() if v[0]() is not None}
        self._cost_cache[key] = (weakref.ref(graph), costs)
        return costs

    def _residuals(self, graph: OpGraph, base: dict, proc: int, cores: int) -> np.ndarray:
        """Log correction of every op of ``graph`` on ``proc`` at ``cores`` cores (cached in the graph's base)."""
        cache = base.setdefault("residuals", {})
        hit = cache.get((proc, cores))
        if hit is None:
            if "res_keys" not in base:
                base["res_keys"], base["res_x"] = graph_residual_inputs(graph)
            table = self.processors[proc].op_residuals
            rows = self._res_rows.get((proc, cores))
            if rows is None:
                rows = self._res_rows[(proc, cores)] = residual_rows(table, cores)
            hit = cache[(proc, cores)] = residual_log(table, base["res_keys"], base["res_x"], cores, rows)
        return hit

    def _graph_base(self, graph: OpGraph) -> dict[str, np.ndarray]:
        """Mode-independent arrays: compute time at max clocks with all cores, DRAM traffic, overheads."""
        hit = self._base_cache.get(id(graph))
        if hit is not None and hit[0]() is graph:
            return hit[1]
        f = graph.features
        flops, aux = f["flops"], f["aux_flops"]
        ws, rho = f["weight_sparsity"], f["sparsity"]
        nodes = graph.nodes
        n, P = len(nodes), self.n_processors
        out_numel = np.array([math.prod(nd.out_shape) if nd.out_shape else 0 for nd in nodes], dtype=np.float64)
        is_conv = np.array([bool(_CONV_RE.search(nd.op_type)) for nd in nodes])
        channels = np.array([(nd.out_shape[1] if len(nd.out_shape) >= 2 else 0) if c
                             else (nd.out_shape[-1] if nd.out_shape else 0)
                             for nd, c in zip(nodes, is_conv)], dtype=np.float64)
        k_red = np.divide(flops, 2.0 * out_numel, out=np.zeros(n), where=out_numel > 0)
        sizes = np.array(self.profile.cost_rules.depthwise_reduction_sizes, dtype=np.float64)
        depthwise = is_conv & (flops > 0) & np.isclose(k_red[:, None], sizes[None, :]).any(axis=1)
        variants = [conv_variant(nd.op_type, float(fl), nd.bytes_in, nd.out_shape, nd.dtype, sizes) if c else ()
                    for nd, fl, c in zip(nodes, flops, is_conv)]
        gemm_min = np.minimum(channels, k_red)
        patterns = np.array([nd.sparsity_pattern for nd in nodes])
        dtypes = [_norm_dtype(nd.dtype) for nd in nodes]

        compute = np.zeros((n, P))
        traffic = np.zeros((n, P))
        cache_ms = np.zeros((n, P))
        par_g = (np.ones((n, P)) if any(p.parallel_half_mflop > 0 or p.parallel_min_numel > 0 or p.serial_slowdown > 0
                                         for p in self.processors) else None)
        host = np.zeros(P)
        per_op_fixed = any(p.op_fixed_overhead_us or p.conv_weight_us_per_kb > 0 for p in self.processors)
        fixed = np.zeros((n, P)) if per_op_fixed else np.zeros(P)
        for j, spec in enumerate(self.processors):
            cache: dict[tuple[str, bool], float] = {}
            eff = np.array([_efficiency(spec.op_efficiency, nd.op_type, v, cache) for nd, v in zip(nodes, variants)])
            # reduced-precision dtypes get the profile's factor; float32 and every other dtype (int64 / bool
            # index and mask ops, "none" for ops without a tensor output) run at the float32 rate
            dt = np.array([spec.dtype_speedup.get(d, 1.0) for d in dtypes])
            half = spec.half_efficiency_mflop * 1e6
            sat = np.divide(flops, flops + half, out=np.ones(n), where=(flops + half) > 0)
            speedup = np.ones(n)
            wtraffic = f["weight_bytes"].copy()
            for pat, curve in spec.sparsity.items():
                mask = patterns == pat
                if not mask.any():
                    continue
                x = ws if curve.over == "weight_sparsity" else rho
                applies = mask & (gemm_min >= curve.min_channels) & (graph.batch >= curve.min_batch)
                s = np.interp(x, curve.rho, curve.speedup)
                speedup = np.where(applies, s, speedup)
                if curve.weight_storage == "compressed":
                    wtraffic = np.where(applies, f["weight_bytes"] * (1.0 - ws) * (1.0 + curve.index_overhead),
                                        wtraffic)
            gflops = spec.peak_gflops / spec.cores * _amdahl(spec.cores, spec.parallel_fraction)
            if par_g is not None:
                s_all = _amdahl(spec.cores, spec.parallel_fraction)
                half_w = spec.parallel_half_mflop * 1e6
                work = flops + aux
                par_g[:, j] = np.divide(work, work + half_w, out=np.ones(n), where=(work + half_w) > 0)
                if spec.parallel_min_numel > 0:   # below the intra-op grain: one thread, no speedup
                    below = (out_numel < spec.parallel_min_numel) & (flops <= 0)   # elementwise ops only
                    par_g[:, j] = np.where(below, 0.0, par_g[:, j])
                gflops = spec.peak_gflops / spec.cores * (1.0 + (s_all - 1.0) * par_g[:, j])
                if spec.serial_slowdown > 0 and spec.cores > 1:
                    gflops = gflops / (1.0 + spec.serial_slowdown * (1.0 - par_g[:, j]))
            main_rate = gflops * 1e6 * eff * sat * dt * speedup  # FLOP per ms
            if spec.aux_op_efficiency:
                aux_cache: dict[tuple[str, bool], float] = {}
                table = {**spec.aux_op_efficiency, "default": spec.aux_efficiency}
                aux_eff = np.array([_efficiency(table, nd.op_type, (), aux_cache) for nd in nodes])
            else:
                aux_eff = spec.aux_efficiency
            compute[:, j] = (np.divide(flops, main_rate, out=np.zeros(n), where=flops > 0)
                             + aux / (gflops * 1e6 * aux_eff * dt))
            total = f["bytes_in"] + f["bytes_out"] + wtraffic
            cache_bytes = spec.cache_mb * 1e6
            hit = np.divide(cache_bytes, total, out=np.ones(n), where=total > 0).clip(max=1.0)
            cache_ms[:, j] = total * hit / (spec.cache_bw_gbps * 1e6)
            traffic[:, j] = total * (1.0 - hit)
            host[j] = spec.launch_overhead_us / 1e3
            if spec.op_fixed_overhead_us:   # per op class (FLOP-bearing ops), else the common value
                ocache: dict = {}
                fixed[:, j] = np.array([_efficiency(spec.op_fixed_overhead_us, nd.op_type, v, ocache,
                                                    default=spec.fixed_overhead_us) if fl > 0
                                        else spec.fixed_overhead_us
                                        for nd, v, fl in zip(nodes, variants, flops)]) / 1e3
            elif fixed.ndim == 2:
                fixed[:, j] = spec.fixed_overhead_us / 1e3
            else:
                fixed[j] = spec.fixed_overhead_us / 1e3
            if spec.conv_weight_us_per_kb > 0:   # per-call weight reorder of convolutions (profile-gated)
                fixed[:, j] += np.where(is_conv & (flops > 0), f["weight_bytes"] / 1e3 * spec.conv_weight_us_per_kb / 1e3, 0.0)
        base = {"compute_ms_max": compute, "traffic_bytes": traffic, "cache_ms": cache_ms, "host_ms_max": host,
                "fixed_ms": fixed, "depthwise": depthwise, "par_g": par_g}
        if len(self._base_cache) > 256:
            self._base_cache = {k: v for k, v in self._base_cache.items() if v[0]() is not None}
        self._base_cache[id(graph)] = (weakref.ref(graph), base)
        return base

    def serial_latency_ms(self, costs: OpCosts, proc: int) -> float:
        """End-to-end latency of the whole graph on one processor, ops in graph order, nothing else
        running: the host issues op after op; an ``async_dispatch`` processor starts each op when it
        is issued and the previous one is done (launch cost hides behind compute), a synchronous one
        (the CPU) pays host and device time one after the other. A baseline, not the simulator."""
        host = costs.host_ms[:, proc]
        dev = costs.nominal_ms[:, proc]
        if not self.processors[proc].async_dispatch:
            return float(host.sum() + dev.sum())
        issued = np.cumsum(host)
        t = 0.0
        for h, d in zip(issued.tolist(), dev.tolist()):
            t = (h if h > t else t) + d
        return t

    # ------------------------------------------------------------------------------ memory
    def dram_bw_gbps(self, mode: str) -> float:
        """Total DRAM bandwidth in ``mode`` (shared by every processor)."""
        return self.profile.memory.dram_bw_gbps * self.profile.mode(mode).memory_bw_frac

    def achievable_bw_gbps(self, proc: int, mode: str) -> float:
        """DRAM bandwidth ``proc`` reaches alone in ``mode`` (what the DRAM part of ``memory_ms`` assumes)."""
        return self._mode(mode)[proc].bw_gbps

    def bandwidth_demand_gbps(self, costs: OpCosts, op: int, proc: int, speed: float = 1.0) -> float:
        """Average DRAM bandwidth op ``op`` draws on ``proc`` when it runs alone at ``speed``."""
        lat = self.combine(float(costs.compute_ms[op, proc]), float(costs.memory_ms[op, proc]),
                           float(costs.fixed_ms[op, proc]), speed, 1.0)
        return float(costs.traffic_bytes[op, proc]) / (lat * 1e6) if lat > 0 else 0.0

    def bandwidth_shares(self, mode: str, demands_gbps: Sequence[float]) -> list[float]:
        """``bw_share`` for each of several concurrently running ops with these solo demands: all 1 while
        the total fits the DRAM bandwidth, else each gets ``B / sum(demands)`` of its own."""
        total = 0.0
        for d in demands_gbps:
            total += d
        cap = self.dram_bw_gbps(mode)
        share = 1.0 if total <= cap else cap / total
        return [share] * len(demands_gbps)

    # ------------------------------------------------------------------------------ transfer
    def transfer_ms(self, nbytes: float, src: int, dst: int) -> float:
        """Time to hand ``nbytes`` produced on processor ``src`` to ``dst``: 0 on the same processor, else
        ``latency + nbytes / bandwidth`` (unified memory: synchronisation + cache maintenance or an
        on-DRAM copy; PCIe: link latency and bandwidth)."""
        if src == dst:
            return 0.0
        return self._xfer_latency_ms + nbytes / self._xfer_bytes_per_ms

    # ------------------------------------------------------------------------------ power and heat
    def power_w(self, proc: int, mode: str, util: float, freq_frac: float) -> float:
        """Power of ``proc`` at utilisation ``util`` (share of its online cores busy) and clock ``freq_frac``
        (current clock / the processor's highest clock): ``online * (static + dynamic * util *
        freq_frac ** exponent)``."""
        st = self._mode(mode)[proc]
        return st.online * (st.static_w + st.dynamic_w * util * freq_frac ** st.alpha)

    def idle_power_w(self, mode: str) -> float:
        """SoC baseline outside the processors (memory, rails, always-on logic) in ``mode``."""
        self._mode(mode)
        return self.profile.power.idle_w

    def nominal_freq_frac(self, proc: int, mode: str) -> float:
        """The mode's clock cap of ``proc`` over its highest clock (the ``freq_frac`` at nominal)."""
        st = self._mode(mode)[proc]
        return st.freq_mhz / st.max_freq_mhz

    def throttle_freq_frac(self, temp_c: float) -> float:
        """Clock cap (fraction of the mode's clock) at die temperature ``temp_c``."""
        th = self.profile.thermal
        if temp_c <= th.throttle_start_c:
            return 1.0
        if temp_c >= th.throttle_full_c:
            return th.throttle_min_freq_frac
        x = (temp_c - th.throttle_start_c) / (th.throttle_full_c - th.throttle_start_c)
        return 1.0 - x * (1.0 - th.throttle_min_freq_frac)

    def thermal_step(self, temp_c: float, power_w: float, dt_s: float) -> float:
        """Die temperature after ``dt_s`` seconds at constant ``power_w`` (exact first-order RC step)."""
        th = self.profile.thermal
        target = th.ambient_c + th.resistance_c_per_w * power_w
        return target + (temp_c - target) * math.exp(-dt_s / th.time_constant_s)


def residual_key(op_type: str, dtype: str) -> str:
    """Key of an op in an ``op_residuals`` table: the first two segments of its ATen type, plus ``@dtype``
    for a reduced-precision output (float32, int and bool ops share the plain key)."""
    parts = op_type.split(".")
    key = ".".join(parts[:2]) if len(parts) >= 2 else op_type
    dt = _norm_dtype(dtype or "float32")
    return f"{key}@{dt}" if dt in ("float16", "bfloat16", "int8") else key


def graph_residual_inputs(graph: OpGraph) -> tuple[list[str], np.ndarray]:
    """The ``op_residuals`` key (:func:`residual_key`) and features (:func:`residual_features`) of every op."""
    nodes, f = graph.nodes, graph.features
    numel = np.array([math.prod(nd.out_shape) if nd.out_shape else 0 for nd in nodes], dtype=np.float64)
    return ([residual_key(nd.op_type, nd.dtype) for nd in nodes],
            residual_features(f["flops"], f["aux_flops"], f["bytes_in"], f["bytes_out"], f["weight_bytes"], numel))


def nearest_core_count(counts, cores: int) -> int:
    """Of the core counts ``counts``, the one nearest to ``cores`` in log ratio (the lower one on a tie)."""
    return min(counts, key=lambda c: (abs(math.log(int(c) / max(cores, 1))), int(c)))


def residual_features(flops, aux_flops, bytes_in, bytes_out, weight_bytes, out_numel) -> np.ndarray:
    """``(n, len(RESIDUAL_FEATURES))`` features of ops (arrays of equal length): ``log1p`` of FLOPs,
    elementwise work, activation bytes in and out, weight bytes, output elements, and the reduction length
    ``K = flops / (2 * output elements)`` (the kernel shape: 9 for a 3x3 depthwise window, C_in * k^2 for a
    dense convolution)."""
    flops = np.asarray(flops, dtype=np.float64)
    numel = np.asarray(out_numel, dtype=np.float64)
    k = np.divide(flops, 2.0 * numel, out=np.zeros(len(flops)), where=numel > 0)
    cols = [flops, aux_flops, bytes_in, bytes_out, weight_bytes, numel, k]
    return np.log1p(np.maximum(np.stack([np.asarray(c, dtype=np.float64) for c in cols], axis=1), 0.0))


def residual_rows(table: dict, cores: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The rows of an ``op_residuals`` table for the core count nearest to ``cores`` (in log ratio; the
    lower one on a tie), as ``{key: (features, residuals)}`` arrays."""
    best = nearest_core_count([int(c) for c in table["tables"]], cores)
    return {k: (np.asarray(v, dtype=np.float64)[:, :-1], np.asarray(v, dtype=np.float64)[:, -1])
            for k, v in table["tables"][str(best)].items()}


def residual_log(table: dict, keys: Sequence[str], x: np.ndarray, cores: int,
                 rows: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> np.ndarray:
    """Log correction ``r`` per op from an ``op_residuals`` table (see the module docstring): 0 for an op
    whose key the table lacks. ``rows``: :func:`residual_rows` of ``table`` for ``cores``, if at hand."""
    out = np.zeros(len(keys))
    if not table or not len(keys):
        return out
    if rows is None:
        rows = residual_rows(table, int(cores))
    k, h, w0 = int(table["neighbours"]), float(table["bandwidth"]), float(table["prior_weight"])
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    for key, idx in groups.items():
        hit = rows.get(key)
        if hit is None:
            continue
        feats, res = hit
        d = np.sqrt(((x[idx][:, None, :] - feats[None, :, :]) ** 2).sum(axis=2))   # (queries, rows)
        kk = min(k, feats.shape[0])
        near = np.argpartition(d, kk - 1, axis=1)[:, :kk] if kk < feats.shape[0] else np.argsort(d, axis=1)
        dn = np.take_along_axis(d, near, axis=1)
        w = np.exp(-(dn / h) ** 2)
        out[idx] = (w * res[near]).sum(axis=1) / (w.sum(axis=1) + w0)
    return out


def _norm_dtype(d: str) -> str:
    d = d.removeprefix("torch.")
    return {"float": "float32", "half": "float16", "fp32": "float32", "fp16": "float16",
            "bf16": "bfloat16", "qint8": "int8", "quint8": "int8"}.get(d, d)


_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1, "float64": 8}


def conv_variant(op_type: str, flops: float, bytes_in: float, out_shape: Sequence[int], dtype: str,
                 depthwise_sizes: Sequence[float]) -> tuple[str, ...]:
    """Kernel-shape class of a convolution, derived from the op's FLOPs, input bytes and output shape
    (the graph stores neither kernel size nor groups), as efficiency-key suffixes, most specific first:

    * depthwise (reduction length ``K = flops / (2 * output elements)`` is a single-channel k x k window,
      ``cost_rules.depthwise_reduction_sizes``): ``(".depthwise.k<k>", ".depthwise")``;
    * pointwise, every input element read once (1x1 kernels, and patch embeddings whose stride equals
      the kernel): the input reuse ``r = K * output elements / (out channels * input elements)``
      (``= k*k / (groups * stride^2)``) is at most 1.5: ``(".pointwise",)``;
    * otherwise (overlapping k x k windows): ``()``.

    Lookup tries ``<type><suffix>`` for each suffix, then ``<type>``: a profile without the suffixed keys
    prices every convolution as before. Other op types: ``()``."""
    if not _CONV_RE.search(op_type) or flops <= 0 or not out_shape:
        return ()
    numel = float(math.prod(out_shape))
    if numel <= 0:
        return ()
    k = flops / (2.0 * numel)
    for s in depthwise_sizes:
        if abs(k - s) <= 1e-8 + 1e-5 * abs(s):   # np.isclose's tolerance, as for the depthwise flag
            return (f".depthwise.k{int(round(math.sqrt(s)))}", ".depthwise")
    cout = out_shape[1] if len(out_shape) >= 2 else 0
    in_numel = bytes_in / _ITEMSIZE.get(_norm_dtype(dtype), 4)
    if cout <= 0 or in_numel <= 0:
        return ()
    return (".pointwise",) if k * numel / (cout * in_numel) <= 1.5 else ()


def _efficiency(table: dict[str, float], op_type: str, variants: tuple[str, ...], cache: dict,
                default: float | None = None) -> float:
    key = (op_type, variants)
    v = cache.get(key)
    if v is not None:
        return v
    names = [op_type]
    t = op_type
    while t.count(".") >= 2:
        t = t.rsplit(".", 1)[0]
        names.append(t)
    if variants:
        names = [nm + suffix for suffix in variants for nm in names] + names
    for nm in names:
        if nm in table:
            v = table[nm]
            break
    else:
        v = table["default"] if default is None else default
    cache[key] = v
    return v
