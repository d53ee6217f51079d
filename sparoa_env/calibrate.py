"""Traces -> SocProfile (the fit), and the fidelity check of a profile against real runs.

The fit
-------
The cost model (:mod:`sparoa_env.costmodel`) prices an op on a CPU lane running ``n`` threads as::

    t = max(c, m) + u * min(c, m) + overhead
    c = flops / (R_type * S(n) * sat * speedup) + aux_flops / (R_aux_type * S(n))  sat = flops / (flops + h * 1e6)
    m = traffic * (k / (Bc * 1e6) + (1 - k) / (B * 1e6))   k = min(1, C / traffic)   S(n) = 1 / ((1 - p) + p / n)
    with S(n) replaced per op by 1 + (S(n) - 1) * w / (w + q * 1e6), w = flops + aux_flops, q = parallel_half_mflop

with ``R_type = peak_gflops / cores * op_efficiency[type] * 1e6`` (FLOP/ms on one core), ``R_aux_type`` the
same with ``aux_op_efficiency[type]`` (elementwise op types with at least ``min_type_rows`` rows; the others
share ``aux_efficiency``), ``h = half_efficiency_mflop``, ``B = mem_bw_frac * dram_bw_gbps``, ``C = cache_mb
* 1e6`` and ``Bc = cache_bw_gbps`` (the share of an op's traffic that fits the cache runs at ``Bc``),
``overhead = fixed_overhead_us + launch_overhead_us`` (a CPU lane pays both), ``p = parallel_fraction``
(and ``q``, fitted with it when the traces hold several thread counts),
``u = unhidden_frac`` and ``speedup`` the sparsity curve. :func:`fit_processor` fits all of them at once
(log-parametrised, bounded, ``scipy.optimize.least_squares``) to two kinds of residual:

* every op timed inside real passes (``op`` rows, probe cost removed): ``log(pred / measured)``,
  weighted by the square root of the op's share of its pass (plus a floor so small ops count too);
* every end-to-end pass (``e2e`` rows): ``log(sum of predicted ops / measured pass)``, weighted
  heavily. Per-op times taken inside passes still do not add up to the pass (one Python call per op is
  added, the interpreter's caches differ); the e2e residuals make the fitted overhead and efficiencies
  close that gap, so that the simulator's all-CPU latency (the sum of its ops) matches the executor.

Op types with fewer than ``min_type_rows`` FLOP-bearing rows share the ``default`` efficiency. Launch
(host dispatch) overhead comes from the ``dispatch`` micro-benchmark; the rest of the fitted per-op
overhead is ``fixed_overhead_us``. The transfer model is a straight-line fit to the ``transfer`` rows,
DRAM bandwidth the large-copy ``peak`` row, and the peak FLOP/s the large matmul (raised if a fitted
efficiency would pass 1). Sparsity curves are fitted where the traces hold sparse variants; patterns
never traced keep ``speedup = 1`` and say so in their source. Fields no trace informs (power, thermal)
come from ``--base`` or are marked as assumptions.

Fidelity
--------
:func:`run_fidelity` builds each model, runs it for real under K plans with the project's executor,
asks the simulator for the same model, plan, batch and per-lane core counts, and reports the relative
error of the prediction.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .profile import DTYPES, SPARSE_PATTERNS, SocProfile, profile_from_dict

__all__ = ["FitData", "ProcessorFit", "CalibrationResult", "fit_processor", "calibrate", "with_lane_cores",
           "simulate_latency_ms", "make_plans", "run_fidelity", "measure_fidelity", "score_fidelity",
           "load_measured", "merge_measured", "DEPTHWISE_SIZES", "fit_op_residuals"]

DEPTHWISE_SIZES = (9, 25, 49)
_E2E_WEIGHT = 4.0
_OP_FLOOR = 0.25  # share of an op's weight that does not depend on its time share
_STAT_COLUMNS = {"median": "latency_ms", "p10": "latency_p10_ms"}
_F_SCALE = 0.1    # robust loss: residuals beyond ~10% (noise-hit passes on a busy machine) count less than squared


# ------------------------------------------------------------------------------------------- data
def _type_key(op_type: str, flops: float, out_shape: Sequence[int], depthwise_sizes: Sequence[int],
              bytes_in: float = 0.0, dtype: str = "float32", conv_classes: bool = True) -> str:
    """Efficiency key of an op: the first two segments of its ATen type, plus for a convolution the most
    specific kernel-shape suffix of :func:`sparoa_env.costmodel.conv_variant` (``.depthwise.k3``,
    ``.pointwise``, ...); ``conv_classes=False``: only ``.depthwise`` (the former key set)."""
    from .costmodel import conv_variant

    parts = op_type.split(".")
    key = ".".join(parts[:2]) if len(parts) >= 2 else op_type
    v = conv_variant(op_type, flops, bytes_in, out_shape, dtype, depthwise_sizes) if depthwise_sizes else ()
    if v and conv_classes:
        key += v[0]
    elif v and v[-1] == ".depthwise":
        key += ".depthwise"
    return key


def _key_parent(key: str) -> str | None:
    """``aten.convolution.depthwise.k3`` -> ``aten.convolution.depthwise`` -> ``aten.convolution`` -> None."""
    return key.rsplit(".", 1)[0] if key.count(".") >= 2 else None


def _resolve_rate(rates: Mapping[str, float], key: str, default: float | None = None) -> float:
    """The value the cost model uses for ``key``: the key, else its nearest parent in ``rates``, else the
    ``default`` entry (or ``default``)."""
    k: str | None = key
    while k is not None:
        if k in rates:
            return rates[k]
        k = _key_parent(k)
    return rates["default"] if default is None else default


@dataclass
class FitData:
    """Op rows of one processor (arrays, one entry per op) plus the passes they belong to."""

    flops: np.ndarray
    aux: np.ndarray
    traffic: np.ndarray
    ws: np.ndarray
    pattern: list[str]
    threads: np.ndarray
    measured: np.ndarray          # ms, probe cost removed
    keys: list[str]               # efficiency key per op
    aux_keys: list[str]           # elementwise type key per op (the op type without overload segments)
    config: np.ndarray            # index of the pass (config) each op belongs to
    config_e2e: np.ndarray        # measured end-to-end ms per config (NaN when absent)
    config_label: list[str]
    config_threads: np.ndarray
    numel: np.ndarray | None = None   # output elements per op (the intra-op grain gate); None: not known
    conv_wbytes: np.ndarray | None = None   # weight bytes of convolutions with FLOPs, 0 for other ops

    @classmethod
    def from_frame(cls, df: Any, processor: str = "cpu", depthwise_sizes: Sequence[int] = DEPTHWISE_SIZES,
                   stat: str = "median", conv_classes: bool = False) -> "FitData":
        """``stat``: which summary of the repeats to fit, ``median`` (default) or ``p10`` (closer to the
        machine's uncontended speed when other work shares it; use the same in ``sparoa fidelity``).
        ``conv_classes``: key convolutions by kernel-shape class (pointwise, depthwise per window size;
        :func:`_type_key`); default ``False``: the former keys (depthwise or not)."""
        col = _STAT_COLUMNS[stat]
        ops = df[(df["kind"] == "op") & (df["processor"] == processor)]
        if ops.empty:
            raise ValueError(f"the traces hold no op rows for processor {processor!r}")
        probes = df[df["kind"] == "probe"].groupby(["trace_id", "model", "batch", "threads"])["latency_ms"].median()
        e2e = df[(df["kind"] == "e2e") & (df["processor"] == processor)]
        e2e_ms = e2e.groupby(["trace_id", "model", "batch", "threads"])[col].median()
        cfg_keys = list(dict.fromkeys(zip(ops["trace_id"], ops["model"], ops["batch"], ops["threads"])))
        cfg_index = {k: i for i, k in enumerate(cfg_keys)}
        config = np.array([cfg_index[k] for k in zip(ops["trace_id"], ops["model"], ops["batch"], ops["threads"])])
        probe = np.array([float(probes.get(k, 0.0)) for k in cfg_keys])
        measured = ops[col].to_numpy(float) - probe[config]
        shapes = [tuple(json.loads(s)) if s else () for s in ops["out_shape"]]
        flops = ops["flops"].to_numpy(float)
        dtypes = ops["dtype"].fillna("float32").astype(str).tolist() if "dtype" in ops else ["float32"] * len(ops)
        keys = [_type_key(t, f, s, depthwise_sizes, b, dt, conv_classes)
                for t, f, s, b, dt in zip(ops["op_type"], flops, shapes, ops["bytes_in"].to_numpy(float), dtypes)]
        aux_keys = [_type_key(t, 0.0, (), ()) for t in ops["op_type"]]
        return cls(flops=flops, aux=ops["aux_flops"].to_numpy(float), aux_keys=aux_keys,
                   traffic=(ops["bytes_in"] + ops["bytes_out"] + ops["weight_bytes"]).to_numpy(float),
                   ws=ops["weight_sparsity"].to_numpy(float), pattern=list(ops["sparsity_pattern"]),
                   threads=ops["threads"].to_numpy(float), measured=np.maximum(measured, 1e-6), keys=keys,
                   config=config, config_e2e=np.array([float(e2e_ms.get(k, math.nan)) for k in cfg_keys]),
                   config_label=[f"{m} b{b} t{t}" for (_, m, b, t) in cfg_keys],
                   config_threads=np.array([float(k[3]) for k in cfg_keys]),
                   numel=np.array([float(math.prod(s)) if s else 0.0 for s in shapes]),
                   conv_wbytes=np.where(ops["op_type"].str.contains("conv").to_numpy(bool) & (flops > 0),
                                        ops["weight_bytes"].to_numpy(float), 0.0))


@dataclass
class ProcessorFit:
    """Fitted parameters of one processor (rates in FLOP/ms on one core)."""

    rates: dict[str, float]
    aux_rate: float               # the default elementwise rate (aux_efficiency)
    half_mflop: float
    bw_gbps: float                # DRAM
    overhead_ms: float
    parallel_fraction: float
    unhidden_frac: float
    parallel_half_mflop: float = 0.0   # 0: every op gets the full Amdahl speedup
    curves: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    aux_rates: dict[str, float] = field(default_factory=dict)   # per elementwise op type (aux_op_efficiency)
    cache_bytes: float = 0.0      # 0: one memory level
    cache_bw_gbps: float = 0.0
    aux_rows: dict[str, int] = field(default_factory=dict)
    default_aux_fitted: bool = True   # False: the default is the mean of the per-type rates (see fit_processor)
    op_overheads: dict[str, float] = field(default_factory=dict)   # ms per op by efficiency key (FLOP ops)
    parallel_overhead_ms: float = 0.0   # extra per op when running on more than one thread
    parallel_min_numel: float = 0.0     # ops with fewer output elements run on one thread (0: no gate)
    serial_slowdown: float = 0.0        # such ops on a lane of more threads run this much slower (needs the gate)
    conv_weight_ms_per_byte: float = 0.0   # per-call weight reorder of convolutions (0: none)

    def predict(self, d: FitData) -> np.ndarray:
        return _predict(d, self)


def _speedups(d: FitData, curves: Mapping[str, tuple[Sequence[float], Sequence[float]]]) -> np.ndarray:
    s = np.ones(len(d.flops))
    for pat, (rho, sp) in curves.items():
        mask = np.array([p == pat for p in d.pattern])
        if mask.any():
            s = np.where(mask, np.interp(d.ws, rho, sp), s)
    return s


def _memory_ms(traffic: np.ndarray, bw_gbps: float, cache_bytes: float, cache_bw_gbps: float) -> np.ndarray:
    if cache_bytes <= 0:
        return traffic / (bw_gbps * 1e6)
    hit = np.minimum(np.divide(cache_bytes, traffic, out=np.ones(len(traffic)), where=traffic > 0), 1.0)
    return traffic * (hit / (cache_bw_gbps * 1e6) + (1.0 - hit) / (bw_gbps * 1e6))


def _predict(d: FitData, f: ProcessorFit) -> np.ndarray:
    rate = np.array([_resolve_rate(f.rates, k) for k in d.keys])
    aux_rate = np.array([f.aux_rates.get(k, f.aux_rate) for k in d.aux_keys]) if f.aux_rates else f.aux_rate
    S = 1.0 / ((1.0 - f.parallel_fraction) + f.parallel_fraction / d.threads)
    if f.parallel_half_mflop > 0:
        w = d.flops + d.aux
        S = 1.0 + (S - 1.0) * w / (w + f.parallel_half_mflop * 1e6)
    if (f.parallel_min_numel > 0 and d.numel is not None) or f.serial_slowdown > 0:
        S_n = S if f.parallel_half_mflop <= 0 else 1.0 / ((1.0 - f.parallel_fraction) + f.parallel_fraction / d.threads)
        w = d.flops + d.aux
        g = np.divide(w, w + f.parallel_half_mflop * 1e6, out=np.ones(len(w)), where=(w + f.parallel_half_mflop * 1e6) > 0)
        if f.parallel_min_numel > 0 and d.numel is not None:   # elementwise ops below the intra-op grain
            g = np.where((d.numel < f.parallel_min_numel) & (d.flops <= 0), 0.0, g)
        S = (1.0 + (S_n - 1.0) * g) / (1.0 + f.serial_slowdown * (1.0 - g) * (d.threads > 1))
    half = f.half_mflop * 1e6
    speed = _speedups(d, f.curves)
    main = np.where(d.flops > 0, (d.flops + half) / (rate * S * speed), 0.0)
    c = main + d.aux / (aux_rate * S)
    m = _memory_ms(d.traffic, f.bw_gbps, f.cache_bytes, f.cache_bw_gbps)
    if f.op_overheads:
        ovh = np.array([_resolve_rate(f.op_overheads, k, f.overhead_ms) for k in d.keys])
        ovh = np.where(d.flops > 0, ovh, f.overhead_ms)
    else:
        ovh = f.overhead_ms
    if f.parallel_overhead_ms > 0:
        ovh = ovh + f.parallel_overhead_ms * (d.threads > 1)
    if f.conv_weight_ms_per_byte > 0 and d.conv_wbytes is not None:
        ovh = ovh + f.conv_weight_ms_per_byte * d.conv_wbytes
    return np.maximum(c, m) + f.unhidden_frac * np.minimum(c, m) + ovh


def fit_processor(d: FitData, *, min_type_rows: int = 3, fixed_parallel: float | None = None,
                  init: ProcessorFit | None = None, fit_cache: bool = True,
                  aux_rate_cap: float | None = None, bw_floor_gbps: float | None = None,
                  op_overheads: bool = False, parallel_overhead: bool = False,
                  parallel_min_numel: float = 0.0, serial_slowdown: bool = False,
                  conv_weight: bool = False) -> ProcessorFit:
    """Least-squares fit of the cost-model parameters of one processor to its op and e2e rows.

    ``fit_cache``: fit the two-level memory (cache size and cache bandwidth besides the DRAM bandwidth);
    otherwise one level. ``aux_rate_cap``: upper bound of every elementwise rate (FLOP/ms on one core; the
    calibration passes the matmul peak, so that an elementwise rate the data do not pin down, an op type
    that is memory-bound everywhere, cannot imply a peak above the measured one). ``bw_floor_gbps``: lower
    bound of the DRAM bandwidth (the calibration passes half the large-copy bandwidth: with a cache level in
    the model, a kernel that is slow on large tensors for reasons of its own, a depthwise convolution at
    batch 8, must not drag the DRAM bandwidth of every streaming op down with it). ``op_overheads``: fit a
    per-op overhead for each FLOP-bearing efficiency key (``op_fixed_overhead_us`` in the profile; a small
    convolution pays a oneDNN primitive lookup that a small GEMM does not), weakly tied to the common
    overhead so that a key seen only on large ops keeps it; other ops pay the common overhead.
    ``parallel_overhead``: an extra per-op time on more than one thread (``parallel_overhead_us``; only
    with several thread counts). ``parallel_min_numel``: the intra-op grain (ops with fewer output elements
    get no parallel speedup), held fixed in this fit (:func:`fit_parallel_grain` estimates it). ``serial_slowdown``: fit
    the slowdown of an op's serial share ``1 - w / (w + q)`` on more than one thread (the speedup becomes
    ``(1 + (S(n) - 1) * share) / (1 + serial_slowdown * (1 - share))``; the lane's idle intra-op workers
    compete with the thread that runs the serial part). ``conv_weight``: fit an extra time per weight byte of
    every convolution with FLOPs (``conv_weight_us_per_kb``: a per-call weight reorder)."""
    from scipy.optimize import least_squares

    with_flops = d.flops > 0
    counts: dict[str, int] = {}
    for k, w in zip(d.keys, with_flops):
        if w:
            counts[k] = counts.get(k, 0) + 1
    # a key with fewer than min_type_rows rows hands them to its parent (.depthwise.k5 -> .depthwise ->
    # aten.convolution), a two-segment key to the default
    d_keys = list(d.keys)
    while True:
        cur: dict[str, int] = {}
        for k, w in zip(d_keys, with_flops):
            if w:
                cur[k] = cur.get(k, 0) + 1
        low = {k for k, c in cur.items() if c < min_type_rows and k != "default"}
        if not low:
            break
        d_keys = [(_key_parent(k) or "default") if k in low else k for k in d_keys]
    keys = sorted(k for k in cur if k != "default")
    use_default = any(k == "default" and w for k, w in zip(d_keys, with_flops))
    all_keys = keys + (["default"] if use_default else [])
    # parents of fitted keys that are not fitted themselves (an op class never traced, say a 7x7 depthwise
    # window, falls back to them): the row-weighted geometric mean of their fitted descendants
    derived: dict[str, list[tuple[str, int]]] = {}
    for k in keys:
        p = _key_parent(k)
        while p is not None:
            if p not in keys:
                derived.setdefault(p, []).append((k, cur[k]))
            p = _key_parent(p)

    def _with_derived(vals: dict[str, float]) -> dict[str, float]:
        for p, kids in derived.items():
            if all(k in vals for k, _ in kids):
                wsum = sum(c for _, c in kids)
                vals[p] = float(math.exp(sum(c * math.log(vals[k]) for k, c in kids) / wsum))
        return vals
    patterns = sorted({p for p, w in zip(d.pattern, with_flops) if w and p != "dense"})
    levels: dict[str, list[float]] = {}
    for pat in patterns:
        ws = np.array([x for x, p, w in zip(d.ws, d.pattern, with_flops) if p == pat and w and x > 0])
        levels[pat] = sorted({round(float(x) * 20) / 20 for x in ws if 0.0 < round(float(x) * 20) / 20 < 1.0})
    vary_p = fixed_parallel is None and len(set(d.threads.tolist())) > 1
    # elementwise op types with enough rows get their own rate (aux_op_efficiency); the rest share the default
    elementwise = (~with_flops) & (d.aux > 0)
    aux_counts: dict[str, int] = {}
    for k, e in zip(d.aux_keys, elementwise):
        if e:
            aux_counts[k] = aux_counts.get(k, 0) + 1
    aux_keys = sorted(k for k, c in aux_counts.items() if c >= min_type_rows and k != "default")
    # With a per-type table the default elementwise rate (for rare and never-traced types) is not a free
    # parameter: a rate fitted to a few rows of one rare type (an embedding, a max-pool) would price every
    # unseen elementwise type of a new model. It is the row-weighted geometric mean of the per-type rates.
    aux_w = np.array([aux_counts[k] for k in aux_keys], dtype=float)
    aux_w = aux_w / aux_w.sum() if len(aux_w) else aux_w

    # initial guesses: rates from big ops, bandwidth from memory-bound ones
    fl, t = d.flops, d.measured
    g0 = float(np.median((fl / t)[with_flops])) if with_flops.any() else 1e7
    a0 = float(np.median((d.aux / t)[(~with_flops) & (d.aux > 0)])) if ((~with_flops) & (d.aux > 0)).any() else 1e6
    b0 = float(np.percentile(d.traffic / t / 1e6, 90)) if len(t) else 10.0
    aux_guess = {}
    for k in aux_keys:
        sel = np.array([a == k for a in d.aux_keys]) & elementwise
        aux_guess[k] = float(np.median(d.aux[sel] / t[sel]))
    if init is not None:
        x0 = [math.log(init.rates.get(k, init.rates.get("default", g0))) for k in all_keys]
        x0 += [math.log(max(init.half_mflop, 1e-4)), math.log(init.aux_rate), math.log(init.bw_gbps),
               math.log(max(init.overhead_ms, 1e-6)), _logit(init.parallel_fraction), _logit(init.unhidden_frac)]
    else:
        x0 = [math.log(max(g0, 1.0)) + 0.5] * len(all_keys)
        x0 += [math.log(1.0), math.log(max(a0, 1.0)), math.log(max(b0, 0.1)),
               math.log(max(float(np.percentile(t, 5)), 1e-4) * 0.5), _logit(0.8 if fixed_parallel is None else fixed_parallel),
               _logit(0.3)]
    n_lv = sum(len(v) for v in levels.values())
    x0 += [0.0] * n_lv
    if init is not None:
        x0 += [math.log(init.aux_rates.get(k, init.aux_rate)) for k in aux_keys]
        x0 += [math.log(init.cache_bytes if init.cache_bytes > 0 else 4e6),
               math.log(max(init.cache_bw_gbps / init.bw_gbps, 1.0 + 1e-6) if init.cache_bytes > 0 else 2.0)]
        x0 += [math.log(max(init.parallel_half_mflop, 1e-3))]
    else:
        x0 += [math.log(max(aux_guess[k], 1.0)) for k in aux_keys]
        x0 += [math.log(4e6), math.log(2.0)]
        x0 += [math.log(0.1)]
    ovh_keys = [k for k in all_keys if k != "default"] if op_overheads else []
    x0 += [math.log(max(init.parallel_overhead_ms, 1e-4)) if init is not None else math.log(1e-3)]
    x0 += [x0[len(all_keys) + 3]] * len(ovh_keys)     # start at the common overhead
    x0 += [init.serial_slowdown if init is not None else 0.05]   # fits without it draw the same start
    x0 += [math.log(max(init.conv_weight_ms_per_byte, 1e-12)) if init is not None else math.log(1e-7)]   # last
    x0 = np.array(x0, dtype=float)
    nk = len(all_keys)
    na = len(aux_keys)
    j_aux = nk + 6 + n_lv          # per-type elementwise rates
    j_cache = j_aux + na           # log cache bytes, log(cache bandwidth / DRAM bandwidth)

    lo = np.full(len(x0), -np.inf)
    hi = np.full(len(x0), np.inf)
    lo[:nk], hi[:nk] = math.log(1e3), math.log(1e12)                     # FLOP/ms: 1 MFLOP/s .. 1 PFLOP/s
    lo[nk], hi[nk] = math.log(1e-4), math.log(1e4)                      # half-efficiency MFLOP
    # elementwise rate: an unidentified one (every elementwise op memory-bound) must not run off to
    # infinity, or the peak it implies would crush every efficiency; 10x the fastest guess is ample
    aux_hi = math.log(max(10 * max(g0, a0, *aux_guess.values()), 1e4))
    if aux_rate_cap is not None and aux_rate_cap > 0:
        aux_hi = min(aux_hi, math.log(max(aux_rate_cap, 1e4)))
    lo[nk + 1], hi[nk + 1] = math.log(1e3), aux_hi
    lo[j_aux:j_cache], hi[j_aux:j_cache] = math.log(1e3), aux_hi
    lo[j_cache], hi[j_cache] = math.log(64e3), math.log(1e9)          # cache: 64 kB .. 1 GB
    if bw_floor_gbps is not None and bw_floor_gbps > 0:
        lo[nk + 2] = math.log(bw_floor_gbps)
    lo[j_cache + 1], hi[j_cache + 1] = 0.0, math.log(100.0)           # cache bandwidth 1..100x DRAM's
    j_par = j_cache + 2
    lo[j_par], hi[j_par] = math.log(1e-6), math.log(1e4)                # parallel half-work, MFLOP
    j_pov = j_par + 1
    lo[j_pov], hi[j_pov] = math.log(1e-6), math.log(1.0)                 # parallel overhead, ms
    j_ovh = j_par + 2
    j_ser = j_ovh + len(ovh_keys)
    lo[j_ovh:j_ser], hi[j_ovh:j_ser] = math.log(1e-6), math.log(10.0)     # per-key overheads, ms
    lo[j_ser], hi[j_ser] = 0.0, 1.0                                     # serial slowdown below the grain
    j_cw = j_ser + 1
    lo[j_cw], hi[j_cw] = math.log(1e-12), math.log(1e-4)                # conv weight reorder, ms per byte
    lo[nk + 3], hi[nk + 3] = math.log(1e-6), math.log(10.0)             # overhead ms
    lo[nk + 4], hi[nk + 4] = _logit(0.01), _logit(0.999)                 # parallel fraction
    lo[nk + 5], hi[nk + 5] = _logit(0.001), _logit(0.999)                # unhidden
    lo[nk + 6:j_aux], hi[nk + 6:j_aux] = math.log(0.2), math.log(20.0)   # sparsity speedups
    x0 = np.clip(x0, lo + 1e-9, hi - 1e-9)

    # residual weights: share of the pass, with a floor
    n_cfg = len(d.config_e2e)
    cfg_total = np.bincount(d.config, weights=t, minlength=n_cfg)
    cfg_n = np.bincount(d.config, minlength=n_cfg).astype(float)
    share = t / cfg_total[d.config]
    w_op = np.sqrt((1 - _OP_FLOOR) * share + _OP_FLOOR / cfg_n[d.config])
    has_e2e = np.isfinite(d.config_e2e)

    def unpack(x: np.ndarray) -> ProcessorFit:
        rates = _with_derived({k: float(math.exp(x[i])) for i, k in enumerate(all_keys)})
        if "default" not in rates:
            rates["default"] = float(math.exp(np.mean(x[:nk]))) if nk else g0
        curves: dict[str, tuple[list[float], list[float]]] = {}
        j = nk + 6
        for pat in patterns:
            sp = [float(math.exp(v)) for v in x[j:j + len(levels[pat])]]
            j += len(levels[pat])
            if sp:
                curves[pat] = ([0.0] + levels[pat] + [1.0], [1.0] + sp + [sp[-1]])
        p = fixed_parallel if not vary_p else _sigmoid(x[nk + 4])
        if fixed_parallel is None and not vary_p:
            p = _sigmoid(x0[nk + 4])
        # the bandwidth has no upper bound in the solver (a bound changes trf's scaling, and with it the shipped
        # fits); where the traces do not pin it (every op compute-bound) it can run off: read it capped at
        # 100 TB/s, far above any SoC, instead of overflowing exp()
        bw = float(math.exp(min(float(x[nk + 2]), _LOG_BW_CAP)))
        aux_default = float(math.exp(float(aux_w @ x[j_aux:j_cache]) if na else x[nk + 1]))
        return ProcessorFit(rates=rates, aux_rate=aux_default, half_mflop=float(math.exp(x[nk])),
                            bw_gbps=bw, overhead_ms=float(math.exp(x[nk + 3])),
                            parallel_fraction=float(p), unhidden_frac=float(_sigmoid(x[nk + 5])), curves=curves,
                            aux_rates={k: float(math.exp(x[j_aux + i])) for i, k in enumerate(aux_keys)},
                            cache_bytes=float(math.exp(x[j_cache])) if fit_cache else 0.0,
                            cache_bw_gbps=bw * float(math.exp(x[j_cache + 1])) if fit_cache else bw,
                            parallel_half_mflop=float(math.exp(x[j_par])) if vary_p else 0.0,
                            op_overheads=_with_derived({k: float(math.exp(x[j_ovh + i]))
                                                        for i, k in enumerate(ovh_keys)}),
                            parallel_overhead_ms=float(math.exp(x[j_pov])) if (vary_p and parallel_overhead) else 0.0,
                            parallel_min_numel=float(parallel_min_numel) if vary_p else 0.0,
                            serial_slowdown=float(x[j_ser]) if (vary_p and serial_slowdown) else 0.0,
                            conv_weight_ms_per_byte=float(math.exp(x[j_cw])) if conv_weight else 0.0)

    def residuals(x: np.ndarray) -> np.ndarray:
        f = unpack(x)
        pred = _predict(d, f)
        r_op = w_op * (np.log(pred) - np.log(t))
        sums = np.bincount(d.config, weights=pred, minlength=n_cfg)
        r_e2e = _E2E_WEIGHT * (np.log(sums[has_e2e]) - np.log(d.config_e2e[has_e2e]))
        reg = 1e-3 * (x[:nk] - np.mean(x[:nk])) if nk else np.zeros(0)   # keeps unidentified rates sane
        reg_aux = 1e-3 * (x[j_aux:j_cache] - float(aux_w @ x[j_aux:j_cache])) if na else np.zeros(0)
        reg_ovh = 1e-2 * (x[j_ovh:j_ser] - x[nk + 3])    # keys seen only on large ops keep the common overhead
        return np.concatenate([r_op, r_e2e, reg, reg_aux, reg_ovh])

    active = np.ones(len(x0), bool)
    if not vary_p:
        active[nk + 4] = False
        active[j_par] = False
    if not (vary_p and parallel_overhead):
        active[j_pov] = False
    if not (vary_p and serial_slowdown):
        active[j_ser] = False
    if not conv_weight:
        active[j_cw] = False
    if not fit_cache:
        active[j_cache:j_cache + 2] = False
    if na:
        active[nk + 1] = False     # the default is the mean of the per-type rates (above)

    def res_active(xa: np.ndarray) -> np.ndarray:
        x = x0.copy()
        x[active] = xa
        return residuals(x)

    best = None
    for start in (x0, _perturb(x0, lo, hi)):
        sol = least_squares(res_active, start[active], bounds=(lo[active], hi[active]), method="trf",
                            x_scale="jac", max_nfev=400, loss="soft_l1", f_scale=_F_SCALE)
        if best is None or sol.cost < best.cost:
            best = sol
    x = x0.copy()
    x[active] = best.x
    out = unpack(x)
    out.rows = counts
    out.aux_rows = {k: aux_counts[k] for k in aux_keys}
    out.default_aux_fitted = not na
    return out


def fit_parallel_grain(numel: np.ndarray, t_one: np.ndarray, t_many: np.ndarray,
                       min_gap: float = 0.1) -> tuple[float, dict[str, Any]]:
    """The intra-op grain from the same ops timed on one thread and on several (``t_one``, ``t_many``, ms):
    ops below it do not speed up (ATen's ``parallel_for`` splits an op only above a grain of work, the kernel
    libraries likewise), ops above it do. A change point in ``y = log(t_many / t_one)`` over the output
    element count: the threshold that minimises the summed absolute deviation of ``y`` from the median of its
    side, with at least 3 ops on each side; returned as the geometric mean of the two output sizes around
    it. ``(0.0, report)`` (no gate) when the ops below it do not run at least ``min_gap`` (in log time)
    slower, relative to one thread, than the ops above it, or when there are too few ops."""
    numel = np.asarray(numel, float)
    y = np.log(np.asarray(t_many, float) / np.asarray(t_one, float))
    ok = np.isfinite(y) & (numel > 0)
    numel, y = numel[ok], y[ok]
    rep: dict[str, Any] = {"ops": int(len(y))}
    if len(y) < 6:
        return 0.0, {**rep, "why": "fewer than 6 ops timed at two thread counts"}
    order = np.argsort(numel, kind="stable")
    numel, y = numel[order], y[order]
    best = None
    for i in range(3, len(y) - 2):
        if numel[i] == numel[i - 1]:
            continue
        lo, hi = y[:i], y[i:]
        ml, mh = float(np.median(lo)), float(np.median(hi))
        cost = float(np.abs(lo - ml).sum() + np.abs(hi - mh).sum())
        if best is None or cost < best[0]:
            best = (cost, i, ml, mh)
    if best is None:
        return 0.0, {**rep, "why": "one output size only"}
    _, i, ml, mh = best
    grain = float(math.sqrt(numel[i - 1] * numel[i]))
    rep.update(grain=grain, below=int(i), above=int(len(y) - i), median_log_ratio_below=ml,
               median_log_ratio_above=mh, bracket=(float(numel[i - 1]), float(numel[i])))
    if ml - mh < min_gap:
        return 0.0, {**rep, "why": f"ops below the change point are not slower (gap {ml - mh:.3f} < {min_gap})"}
    return grain, rep


def _paired_thread_rows(df: Any, col: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Elementwise op rows (no FLOPs) timed at the fewest and at the most threads of the same trace, model
    and batch: (output elements, time at the fewest, time at the most), in ms."""
    ops = df[(df["kind"] == "op") & (df["flops"] <= 0)]   # elementwise: GEMMs / convolutions split by work
    ths = sorted(int(t) for t in ops["threads"].unique())
    if len(ths) < 2:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    k = ["trace_id", "model", "batch", "op_name"]
    a = ops[ops["threads"] == ths[0]].groupby(k)[col].median()
    b = ops[ops["threads"] == ths[-1]].groupby(k)[col].median()
    shape = ops[ops["threads"] == ths[0]].groupby(k)["out_shape"].first()
    both = a.index.intersection(b.index)
    numel = np.array([float(math.prod(json.loads(s))) if s else 0.0 for s in shape.loc[both]])
    return numel, a.loc[both].to_numpy(float), b.loc[both].to_numpy(float)


def _perturb(x0: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    x = x0.copy()
    rng = np.random.default_rng(0)
    x = x + rng.normal(0, 0.5, size=len(x))
    return np.clip(x, lo + 1e-9, hi - 1e-9)


_LOG_BW_CAP = math.log(1e5)  # GB/s


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ------------------------------------------------------------------------------------------- fit report
def fit_report(d: FitData, f: ProcessorFit) -> dict[str, Any]:
    """Errors of the fit on its own traces: per-op (time-weighted) and per pass."""
    pred = _predict(d, f)
    rel = pred / d.measured - 1.0
    w = d.measured / d.measured.sum()
    order = np.argsort(np.abs(rel))
    cum = np.cumsum(w[order])
    op_wmed = float(np.abs(rel)[order][np.searchsorted(cum, 0.5)]) if len(rel) else math.nan
    n_cfg = len(d.config_e2e)
    sums = np.bincount(d.config, weights=pred, minlength=n_cfg)
    meas_sums = np.bincount(d.config, weights=d.measured, minlength=n_cfg)
    passes = []
    for i in range(n_cfg):
        e2e = d.config_e2e[i]
        passes.append({"config": d.config_label[i], "measured_ms": float(e2e), "predicted_ms": float(sums[i]),
                       "ops_sum_ms": float(meas_sums[i]),
                       "error": float(sums[i] / e2e - 1.0) if e2e == e2e else math.nan})
    errs = np.array([p["error"] for p in passes if p["error"] == p["error"]])
    return {"op_weighted_median_abs_error": op_wmed,
            "op_median_abs_error": float(np.median(np.abs(rel))) if len(rel) else math.nan,
            "e2e_median_abs_error": float(np.median(np.abs(errs))) if len(errs) else math.nan,
            "e2e_max_abs_error": float(np.max(np.abs(errs))) if len(errs) else math.nan,
            "e2e_within_5pct": float(np.mean(np.abs(errs) <= 0.05)) if len(errs) else math.nan,
            "e2e_within_10pct": float(np.mean(np.abs(errs) <= 0.10)) if len(errs) else math.nan,
            "passes": passes}


# ------------------------------------------------------------------------------------------- profile
@dataclass
class CalibrationResult:
    profile: SocProfile
    fits: dict[str, ProcessorFit]
    reports: dict[str, dict[str, Any]]
    noise: dict[str, float]
    trace_ids: list[str]
    excluded: list[str] = field(default_factory=list)
    stat: str = "median"
    handoff: dict[str, Any] | None = None   # fit_handoff_latency's report when calibrated with handoff


def _linfit_transfer(rows: Any) -> tuple[float, float]:
    """(latency_us, bandwidth_gbps) of ``t = a + nbytes / bw`` by non-negative least squares."""
    from scipy.optimize import nnls

    per_size = rows.groupby("nbytes")["latency_ms"].median()
    x = per_size.index.to_numpy(float)
    y = per_size.to_numpy(float)
    wts = 1.0 / np.maximum(y, 0.01)  # relative error (floor 10 us): small and large transfers count alike
    A = np.stack([np.ones_like(x), x], axis=1) * wts[:, None]
    (a, b), _ = nnls(A, y * wts)
    bw = 1.0 / (b * 1e6) if b > 0 else 1000.0
    return a * 1e3, min(bw, 1000.0)


def _median(df: Any, **eq: Any) -> float:
    sel = df
    for k, v in eq.items():
        sel = sel[sel[k] == v]
    return float(sel["latency_ms"].median()) if len(sel) else math.nan


def calibrate(df: Any, *, name: str, base: SocProfile | None = None, cpu_lanes: int | None = None,
              min_type_rows: int = 3, trace_files: Sequence[str] = (), stat: str = "median",
              max_spread: float | None = None, threads: Sequence[int] | None = None,
              conv_classes: bool = False, op_overheads: bool = True, parallel_overhead: bool = True,
              handoff: Mapping[str, Any] | None = None, parallel_grain: bool = False,
              conv_weight: bool = False, op_residuals: bool | str = "auto") -> CalibrationResult:
    """Fit a profile to the traces in ``df`` (from :func:`sparoa_env.traces.read_traces`).

    ``stat``: ``median`` or ``p10`` of the repeats. ``max_spread``: passes whose end-to-end spread
    ``(p90 - p10) / median`` exceeds it were disturbed by other work on the machine; their op and e2e
    rows are left out of the fit (listed in ``excluded``). ``threads``: fit only passes (and
    micro-benchmarks) run with these thread counts. ``conv_classes``: separate efficiencies per convolution
    kernel-shape class (:func:`_type_key`; off by default: on this machine's zoo traces they fit the
    calibration models better and the held-out ones worse, see docs/calibration.md). ``op_overheads``: a per-op
    overhead per FLOP-bearing efficiency key on the CPU lane (``op_fixed_overhead_us``); ``False``: one
    overhead for every op. ``parallel_overhead``: fit ``parallel_overhead_us`` (traces with several thread
    counts). ``handoff``: measurements of the executor running mixed plans of *calibration*
    models (:func:`load_measured` of a ``sparoa fidelity --save`` file); the transfer latency is then
    fitted to them (:func:`fit_handoff_latency`) instead of taken from the hand-off micro-benchmark, which
    leaves out the worker wake-ups a real lane switch costs. ``parallel_grain``: with several thread counts,
    estimate the intra-op grain (``parallel_min_numel``: ops with fewer output elements get no parallel
    speedup; :func:`fit_parallel_grain` on the ops timed at both thread counts) and hold it in the fit.
    ``conv_weight``: fit ``conv_weight_us_per_kb``, extra time per kB of a convolution's weights on every call
    (a per-call weight reorder; small convolutions' measured cost grows with their weight bytes).
    ``op_residuals``: the learned per-op correction of the CPU lanes (:func:`fit_op_residuals`, fitted after
    the formula's parameters and before the hand-off fit): ``"auto"`` (default) keeps it only when its
    leave-one-model-out error over the traced passes is lower than the formula's alone, ``True`` always,
    ``False`` never (the report says which and why)."""
    if stat not in _STAT_COLUMNS:
        raise ValueError(f"stat must be one of {list(_STAT_COLUMNS)}, got {stat!r}")
    if threads:
        keep = df["threads"].isin(list(threads)) | ~df["kind"].isin(("op", "e2e", "probe", "dispatch", "peak"))
        if not (keep & (df["kind"] == "op")).any():
            raise ValueError(f"no op rows with threads in {list(threads)}; the traces have threads "
                             f"{sorted(int(t) for t in df['threads'].unique())}")
        df = df[keep]
    df, excluded = _drop_noisy(df, max_spread)
    trace_ids = sorted(df["trace_id"].unique())
    machine = sorted(df["machine_id"].unique())
    cpu_rows = df[df["processor"] == "cpu"]
    gpu_procs = sorted(p for p in df["processor"].unique() if p.startswith("cuda"))
    if cpu_rows[cpu_rows["kind"] == "op"].empty:
        raise ValueError("the traces hold no CPU op rows: record them with 'sparoa profile MODEL --device cpu'")
    _require_micro(cpu_rows, "cpu", trace_files or trace_ids)
    # machine facts
    ncores = int(max(cpu_rows["threads"].max(), _affinity_size(df)))
    freq = cpu_rows["cpu_freq_mhz"].dropna()
    freq_mhz = float(freq.median()) if len(freq) else math.nan
    torch_versions = sorted(df["torch_version"].unique())
    # CPU fit
    d_cpu = FitData.from_frame(df, "cpu", stat=stat, conv_classes=conv_classes)
    thread_counts = sorted({int(t) for t in d_cpu.threads})
    peak_rows = cpu_rows[(cpu_rows["kind"] == "peak") & (cpu_rows["op_type"] == "aten.mm")]
    mm_per_core = float((peak_rows["flops"] / peak_rows["latency_ms"] / peak_rows["threads"].clip(lower=1)).max()) \
        if len(peak_rows) else math.nan   # FLOP/ms on one core, a lower bound (Amdahl)
    copy_rows = cpu_rows[(cpu_rows["kind"] == "peak") & (cpu_rows["op_type"] == "aten.copy")]
    copy_bw = float(((copy_rows["bytes_in"] + copy_rows["bytes_out"]) / (copy_rows["latency_ms"] * 1e6)).max()) \
        if len(copy_rows) else math.nan
    grain, grain_rep = 0.0, None
    if parallel_grain and len(thread_counts) > 1:
        grain, grain_rep = fit_parallel_grain(*_paired_thread_rows(df[df["processor"] == "cpu"], _STAT_COLUMNS[stat]))
    f_cpu = fit_processor(d_cpu, min_type_rows=min_type_rows,
                          aux_rate_cap=mm_per_core if mm_per_core == mm_per_core else None,
                          bw_floor_gbps=0.5 * copy_bw if copy_bw == copy_bw else None, op_overheads=op_overheads,
                          parallel_overhead=parallel_overhead, parallel_min_numel=grain,
                          serial_slowdown=parallel_grain, conv_weight=conv_weight)
    reports = {"cpu": fit_report(d_cpu, f_cpu)}
    if grain_rep is not None:
        reports["cpu"]["parallel_grain"] = grain_rep
    fits = {"cpu": f_cpu}
    # per-core peak from the matmul rows, corrected by the fitted Amdahl factor
    per_core = 0.0
    for _, r in peak_rows.iterrows():
        S = 1.0 / ((1 - f_cpu.parallel_fraction) + f_cpu.parallel_fraction / r["threads"])
        per_core = max(per_core, r["flops"] / (r["latency_ms"] * 1e6) / S)  # GFLOP/s per core
    max_rate = max(list(f_cpu.rates.values()) + [f_cpu.aux_rate] + list(f_cpu.aux_rates.values())) / 1e6
    per_core = max(per_core, max_rate / 0.98)
    # DRAM bandwidth: the copy micro-benchmark (required, _require_micro). A fitted effective bandwidth above it
    # means the traces do not pin it (every op compute-bound): the lane gets the copy bandwidth, and the cache
    # bandwidth keeps its fitted ratio to it
    dram = copy_bw
    bw_unpinned = f_cpu.bw_gbps > dram
    cache_bw = f_cpu.cache_bw_gbps * (dram / f_cpu.bw_gbps if bw_unpinned else 1.0)
    dispatch_ms = _median(cpu_rows, kind="dispatch")
    launch_us = min([dispatch_ms * 1e3 if dispatch_ms == dispatch_ms else 0.0, f_cpu.overhead_ms * 1e3]
                    + [v * 1e3 for v in f_cpu.op_overheads.values()])
    fixed_us = max(f_cpu.overhead_ms * 1e3 - launch_us, 0.0)
    xfer = df[df["kind"] == "transfer"]
    noise = _noise(df)

    ref = "traces"
    src_fit = f"[{ref}] fitted by sparoa calibrate to op rows timed inside real passes and to end-to-end passes"
    refs = {ref: f"sparoa traces {', '.join(trace_ids)} ({len(trace_files) or len(trace_ids)} file(s)) of machine "
                 f"{', '.join(machine)}: {_models_summary(df)}; torch {', '.join(torch_versions)}"}
    if base is not None:
        refs.update({k: v for k, v in base.references.items()})
    cpu_eff = {k: min(max(v / 1e6 / per_core, 1e-6), 1.0) for k, v in f_cpu.rates.items()}
    curves = _curve_dicts(f_cpu, "cpu", ref)
    freq_src = (f"[{ref}] median cpu_freq_mhz read during recording" if freq_mhz == freq_mhz else
                "assumption: the CPU clock is not readable on this machine (no cpufreq); a nominal 1000 MHz, "
                "only ratios of clocks enter the cost model")
    freq_val = freq_mhz if freq_mhz == freq_mhz else 1000.0
    power_src = ("assumption: not measured (no power sensor read on this host); a nominal server-core figure, "
                 "for relative energy only")
    lanes = cpu_lanes if cpu_lanes is not None else (1 if gpu_procs else (2 if ncores >= 2 else 1))
    if lanes > ncores:
        raise ValueError(f"--cpu-lanes {lanes}: the traces used {ncores} CPU core(s), and each lane is a group of "
                         "at least one core")
    procs = []
    for k in range(lanes):
        pname = "cpu" if lanes == 1 else f"cpu{k}"
        procs.append({
            "name": pname, "kind": "cpu", "cores": ncores, "max_freq_mhz": freq_val,
            "peak_gflops": per_core * ncores,
            "dtype_speedup": {"float16": 1.0, "bfloat16": 1.0, "int8": 1.0},
            "parallel_fraction": f_cpu.parallel_fraction,
            "parallel_half_mflop": f_cpu.parallel_half_mflop,
            "mem_bw_frac": min(max(f_cpu.bw_gbps / dram, 1e-3), 1.0),
            "launch_overhead_us": launch_us, "fixed_overhead_us": fixed_us, "async_dispatch": False,
            **({"op_fixed_overhead_us": {k: max(v * 1e3 - launch_us, 0.0) for k, v in f_cpu.op_overheads.items()}}
               if f_cpu.op_overheads else {}),
            **({"parallel_overhead_us": f_cpu.parallel_overhead_ms * 1e3} if f_cpu.parallel_overhead_ms > 0 else {}),
            **({"parallel_min_numel": f_cpu.parallel_min_numel} if f_cpu.parallel_min_numel > 0 else {}),
            **({"serial_slowdown": f_cpu.serial_slowdown} if f_cpu.serial_slowdown > 0 else {}),
            **({"conv_weight_us_per_kb": f_cpu.conv_weight_ms_per_byte * 1e6} if f_cpu.conv_weight_ms_per_byte > 0 else {}),
            "half_efficiency_mflop": f_cpu.half_mflop, "op_efficiency": cpu_eff,
            "aux_efficiency": min(max(f_cpu.aux_rate / 1e6 / per_core, 1e-6), 1.0),
            "aux_op_efficiency": {k: min(max(v / 1e6 / per_core, 1e-6), 1.0) for k, v in f_cpu.aux_rates.items()},
            "cache_mb": f_cpu.cache_bytes / 1e6, "cache_bw_gbps": cache_bw,
            "sparsity": curves,
            "static_power_w": 2.0, "dynamic_power_w": 8.0 * ncores, "power_freq_exponent": 2.5,
            "sources": {
                "kind": f"[{ref}] a CPU core group" + (f" (lane {k} of {lanes}: each lane is a worker thread pinned to "
                                                       "its own cores)" if lanes > 1 else ""),
                "cores": f"[{ref}] cores this process could use when the traces were recorded",
                "max_freq_mhz": freq_src,
                "peak_gflops": f"[{ref}] 1024^3 sgemm rate per core (Amdahl-corrected) times cores, raised to keep "
                               "every fitted efficiency <= 1",
                "dtype_speedup": "assumption: only float32 was traced; reduced precision priced as float32",
                "parallel_fraction": (src_fit + " (passes at " + ", ".join(map(str, thread_counts)) + " threads)"
                                      if len(thread_counts) > 1 else
                                      f"assumption: traces at {thread_counts[0]} thread(s) only, so the Amdahl fraction "
                                      f"is not identifiable; {f_cpu.parallel_fraction:g} assumed"),
                "parallel_half_mflop": (src_fit + " (passes at " + ", ".join(map(str, thread_counts)) +
                                        " threads: op-size-dependent share of the Amdahl speedup)"
                                        if len(thread_counts) > 1 else
                                        f"assumption: traces at {thread_counts[0]} thread(s) only; every op is "
                                        "given the full Amdahl speedup (0)"),
                "mem_bw_frac": src_fit + ", over the large-copy DRAM bandwidth (bounded below by half of it)"
                               + ("; the traces did not pin it (fitted above the copy bandwidth): set to 1"
                                  if bw_unpinned else ""),
                "launch_overhead_us": f"[{ref}] dispatch micro-benchmark: host time of a tiny op from compiled code",
                "fixed_overhead_us": src_fit + ": the fitted per-op overhead minus the dispatch cost",
                **({"op_fixed_overhead_us": src_fit + ": the fitted per-op overhead of each FLOP-bearing op class "
                                            "minus the dispatch cost (weakly tied to the common one)"}
                   if f_cpu.op_overheads else {}),
                **({"parallel_overhead_us": src_fit + " (passes at " + ", ".join(map(str, thread_counts)) +
                                            " threads: extra time per op on more than one thread)"}
                   if f_cpu.parallel_overhead_ms > 0 else {}),
                **({"parallel_min_numel": f"[{ref}] change point of the one-thread / "
                                          f"{thread_counts[-1]}-thread time ratio of the same elementwise ops over "
                                          f"their output size ({grain_rep['below']} ops below, {grain_rep['above']} above: "
                                          f"sparoa_env.calibrate.fit_parallel_grain)"}
                   if f_cpu.parallel_min_numel > 0 else {}),
                **({"serial_slowdown": src_fit + " (passes at " + ", ".join(map(str, thread_counts)) + " threads: the "
                                       "serial share of an op runs 1 + serial_slowdown times slower on more than one "
                                       "thread)"}
                   if f_cpu.serial_slowdown > 0 else {}),
                **({"conv_weight_us_per_kb": src_fit + ": extra time per kB of a convolution's weight tensor on "
                                             "every call (a per-call weight reorder)"}
                   if f_cpu.conv_weight_ms_per_byte > 0 else {}),
                "async_dispatch": "assumption: by construction of the executor, a CPU lane runs its ops on its own worker thread, which waits for each op",
                "half_efficiency_mflop": src_fit, "op_efficiency": src_fit + " (FLOP/s per op type over peak)",
                "aux_efficiency": (src_fit + " (elementwise op types not in aux_op_efficiency)"
                                   if f_cpu.default_aux_fitted else
                                   f"[{ref}] elementwise op types outside aux_op_efficiency (rare or never traced) "
                                   "run at the row-weighted geometric mean of the fitted per-type rates"),
                "aux_op_efficiency": src_fit + " (elementwise op types with at least "
                                     f"{min_type_rows} traced rows: " + _rows_text(f_cpu.aux_rows) + ")",
                "cache_mb": src_fit + " (two memory levels: the share min(1, cache / traffic) of an op's traffic is "
                            "served at cache_bw_gbps, the rest at the DRAM bandwidth)",
                "cache_bw_gbps": src_fit + " (bandwidth of the traffic that fits cache_mb)",
                "static_power_w": power_src, "dynamic_power_w": power_src, "power_freq_exponent": power_src,
            }})
    if gpu_procs:
        procs.append(_gpu_processor(df, gpu_procs[0], ref, src_fit, fits, reports, min_type_rows, stat))
    names = [p["name"] for p in procs]
    cpu_names = [p["name"] for p in procs if p["kind"] == "cpu"]
    modes = _modes(procs, ncores, ref)
    if xfer.empty:
        lat_us, bw_gbps, kind = 0.0, dram, "unified"
        xsrc = "assumption: no transfer rows; one shared memory"
    else:
        lat_us, bw_gbps = _linfit_transfer(xfer)
        kind = "pcie" if gpu_procs else "unified"
        xsrc = (f"[{ref}] straight-line fit to the transfer sweep ("
                + ("host<->device copies" if gpu_procs else "hand-off between worker threads on two core groups") + ")")
    mem_gb = _memory_gb(df)
    d = {
        "schema_version": 1, "name": name,
        "description": _description(name, machine, lanes, gpu_procs, noise, trace_ids),
        "provenance": "measured:" + ",".join(trace_ids),
        "references": refs,
        "processors": procs,
        "power_modes": modes, "default_power_mode": "MAXN",
        "memory": {"dram_bw_gbps": dram, "capacity_gb": mem_gb,
                   "sources": {"dram_bw_gbps": f"[{ref}] 64 MiB copy on all cores (read + write bytes)",
                               "capacity_gb": f"[{ref}] machine memory recorded with the traces"}},
        "transfer": {"kind": kind, "latency_us": lat_us, "bandwidth_gbps": bw_gbps,
                     "sources": {"kind": xsrc, "latency_us": xsrc, "bandwidth_gbps": xsrc}},
        "thermal": {"ambient_c": 25.0, "resistance_c_per_w": 0.5, "time_constant_s": 60.0, "throttle_start_c": 95.0,
                    "throttle_full_c": 105.0, "throttle_min_freq_frac": 0.5,
                    "sources": {k: "assumption: not measured; the host's cooling is assumed to keep it below throttling "
                                   "(run the simulator with thermal=False for this profile)"
                                for k in ("ambient_c", "resistance_c_per_w", "time_constant_s", "throttle_start_c",
                                          "throttle_full_c", "throttle_min_freq_frac")}},
        "power": {"idle_w": 10.0, "sources": {"idle_w": power_src}},
        "cost_rules": {"unhidden_frac": f_cpu.unhidden_frac, "depthwise_reduction_sizes": list(DEPTHWISE_SIZES),
                       "host_processor": cpu_names[0], "host_freq_exponent": 1.0,
                       "sources": {"unhidden_frac": src_fit,
                                   "depthwise_reduction_sizes": "assumption: single-channel 3x3, 5x5, 7x7 windows",
                                   "host_processor": "assumption: by construction, the Python dispatcher runs on the first CPU lane",
                                   "host_freq_exponent": "assumption: dispatch is CPU-bound Python, time ~ 1 / clock"}},
    }
    if base is not None:
        _merge_base(d, base)
    profile = profile_from_dict(d, source=f"<calibrated {name}>")
    reports["cpu"]["profile_vs_fit_max_deviation"] = _check_reproduces(profile, df, d_cpu, f_cpu)
    if op_residuals not in (True, False, "auto"):
        raise ValueError(f"op_residuals must be True, False or 'auto', got {op_residuals!r}")
    if op_residuals:
        table, rep_r = fit_op_residuals(profile, df, stat=stat)
        gain = rep_r["cv_mean_abs_log_error"] < rep_r["formula_mean_abs_log_error"]
        rep_r["kept"] = bool(op_residuals is True or gain)
        rep_r["why"] = ("asked for" if op_residuals is True and not gain else
                        "leave-one-model-out error below the formula's" if gain else
                        "left out: leave-one-model-out error not below the formula's (the traced models' "
                        "residuals do not carry over to other models here)")
        reports["cpu"]["op_residuals"] = rep_r
    if op_residuals and rep_r["kept"]:
        for p in d["processors"]:
            if p["kind"] == "cpu":
                p["op_residuals"] = table
                p["sources"]["op_residuals"] = (
                    f"[{ref}] log(measured / formula) of {rep_r['rows']} traced ops (in-pass times scaled to their "
                    f"end-to-end pass; {rep_r['passes']} passes of {rep_r['models']} models), neighbours / bandwidth "
                    "/ prior weight chosen by leave-one-model-out cross-validation: mean |log error| of the passes "
                    f"{rep_r['cv_mean_abs_log_error']:.3f} against {rep_r['formula_mean_abs_log_error']:.3f} for the "
                    "formula alone")
        profile = profile_from_dict(d, source=f"<calibrated {name}>")
    handoff_report = None
    if handoff is not None:
        lat_us, rep_h = fit_handoff_latency(profile, handoff)
        d["transfer"]["sources"]["latency_us"] = (
            f"[handoff] fitted to {rep_h['cases']} mixed-plan runs of the executor (models "
            f"{', '.join(rep_h['models'])}) so that the simulator matches them; the hand-off micro-benchmark "
            f"[{ref}] gave {d['transfer']['latency_us']:.1f} us")
        d["transfer"]["latency_us"] = lat_us
        d["transfer"]["first_switch_us"] = rep_h["first_switch_us"]  # 0: dropped from the written profile
        d["transfer"]["sources"]["first_switch_us"] = (
            f"[handoff] fitted with latency_us to the same {rep_h['cases']} mixed-plan runs: paid once per "
            "request, at its first hand-off between lanes")
        d["references"]["handoff"] = (f"sparoa fidelity measurements {handoff.get('_source', '<measured>')} of "
                                      f"machine {handoff.get('machine_id')}, taken {handoff.get('created_utc')}")
        profile = profile_from_dict(d, source=f"<calibrated {name}>")
        handoff_report = rep_h
    return CalibrationResult(profile=profile, fits=fits, reports=reports, noise=noise, trace_ids=trace_ids,
                             excluded=excluded, stat=stat, handoff=handoff_report)


RESIDUAL_GRID = {"neighbours": (4, 8, 16), "bandwidth": (0.25, 0.5, 1.0, 2.0), "prior_weight": (0.05, 0.2, 0.5, 1.0)}


def fit_op_residuals(profile: SocProfile, df: Any, *, stat: str = "median", processor: str = "cpu",
                     grid: Mapping[str, Sequence[float]] = RESIDUAL_GRID, decimals: int = 2
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``op_residuals`` table of a CPU lane (see :class:`sparoa_env.profile.ProcessorSpec`) and a report.

    Every traced op of ``processor`` is priced by ``profile`` (its first lane, with the pass's thread count)
    and given the residual ``log(measured / predicted)``. The measured op times of a pass are first scaled
    so that they add up to the measured end-to-end pass (where one was recorded and is within 0.8-1.25x of
    their sum; a pass further off was disturbed): the table then closes the additivity gap too, and what
    the simulator sums is the executor's pass. Rows with equal key, core count
    and features (rounded to ``decimals``) are merged (median residual). The neighbour count, bandwidth and
    prior weight are chosen from ``grid`` by **leave-one-model-out** cross-validation: every pass is
    predicted from the rows of the other models only, and the choice minimises the mean absolute log error
    of the passes (the report gives it, and the formula's, for comparison)."""
    from .costmodel import RESIDUAL_FEATURES, graph_residual_inputs, nearest_core_count

    col = _STAT_COLUMNS[stat]
    sub = df[df["processor"] == processor]
    probes = df[df["kind"] == "probe"].groupby(["trace_id", "model", "batch", "threads"])["latency_ms"].median()
    e2e = sub[sub["kind"] == "e2e"].groupby(["trace_id", "model", "batch", "threads"])[col].median()
    passes = []   # (model, threads, keys, features, residuals, predicted ms, measured pass ms)
    for key, g, rows, pred in _priced_passes(profile, df, processor):
        t = int(key[3])
        meas = np.maximum(rows[col].to_numpy(float) - float(probes.get(key, 0.0)), 1e-6)
        whole = float(e2e.get(key, math.nan))
        if whole == whole and meas.sum() > 0 and 0.8 <= whole / meas.sum() <= 1.25:
            meas = meas * (whole / meas.sum())
        else:   # no pass recorded, or one too far from its ops to be the same machine state: the ops alone
            whole = float(meas.sum())
        keys, x = graph_residual_inputs(g)
        r = np.clip(np.log(meas / np.maximum(pred, 1e-9)), -3.0, 3.0)
        passes.append((str(key[1]), t, keys, np.round(x, decimals), r, pred, whole))
    if not passes:
        raise ValueError(f"the traces hold no op rows for processor {processor!r}")

    def merged(sel: Sequence[int]) -> dict[int, dict[str, tuple[np.ndarray, np.ndarray]]]:
        acc: dict[tuple, list[float]] = {}
        for i in sel:
            _, t, keys, x, r, _, _ = passes[i]
            for k, xi, ri in zip(keys, map(tuple, x), r):
                acc.setdefault((t, k, xi), []).append(float(ri))
        out: dict[int, dict[str, list]] = {}
        for (t, k, xi), rs in acc.items():
            out.setdefault(t, {}).setdefault(k, []).append((*xi, float(np.median(rs))))
        return {t: {k: (np.array(v)[:, :-1], np.array(v)[:, -1]) for k, v in by.items()} for t, by in out.items()}

    # leave-one-model-out: the nearest max(neighbours) rows of other models, sorted, per op of every pass
    models = sorted({p[0] for p in passes})
    kmax = max(int(k) for k in grid["neighbours"])
    near: list[tuple[np.ndarray, np.ndarray]] = []
    for m in models:
        own = [i for i, p in enumerate(passes) if p[0] == m]
        table = merged([i for i, p in enumerate(passes) if p[0] != m])
        for i in own:
            _, t, keys, x, _, _, _ = passes[i]
            rows_t = table.get(nearest_core_count(table, t), {}) if table else {}
            dist = np.full((len(keys), kmax), np.inf)
            res = np.zeros((len(keys), kmax))
            for k in set(keys):
                if k not in rows_t:
                    continue
                idx = [j for j, kk in enumerate(keys) if kk == k]
                feats, rr = rows_t[k]
                d = np.sqrt(((x[idx][:, None, :] - feats[None, :, :]) ** 2).sum(axis=2))
                order = np.argsort(d, axis=1)[:, :kmax]
                w = order.shape[1]
                dist[idx, :w] = np.take_along_axis(d, order, axis=1)
                res[idx, :w] = rr[order]
            near.append((i, dist, res))

    def cv_errors(k: int, h: float, w0: float) -> np.ndarray:
        errs = []
        for i, dist, res in near:
            d, r = dist[:, :k], res[:, :k]
            w = np.where(np.isfinite(d), np.exp(-(np.where(np.isfinite(d), d, 0.0) / h) ** 2), 0.0)
            corr = (w * r).sum(axis=1) / (w.sum(axis=1) + w0)
            pred, whole = passes[i][5], passes[i][6]
            errs.append(abs(math.log(float((pred * np.exp(corr)).sum()) / whole)))
        return np.array(errs)

    base = np.array([abs(math.log(float(p[5].sum()) / p[6])) for p in passes])
    scores = {(int(k), float(h), float(w0)): float(cv_errors(int(k), float(h), float(w0)).mean())
              for k in grid["neighbours"] for h in grid["bandwidth"] for w0 in grid["prior_weight"]}
    (k, h, w0), best = min(scores.items(), key=lambda kv: (kv[1], kv[0]))
    cv = np.expm1(cv_errors(k, h, w0))
    final = merged(range(len(passes)))
    table = {"features": list(RESIDUAL_FEATURES), "neighbours": k, "bandwidth": h, "prior_weight": w0,
             "tables": {str(t): {key: [[round(float(v), decimals) for v in f] + [round(float(rr), 4)]
                                       for f, rr in zip(*final[t][key])] for key in sorted(final[t])}
                        for t in sorted(final)}}
    report = {"rows": int(sum(len(v[1]) for by in final.values() for v in by.values())),
              "passes": len(passes), "models": len(models), "neighbours": k, "bandwidth": h, "prior_weight": w0,
              "cv_mean_abs_log_error": best, "formula_mean_abs_log_error": float(base.mean()),
              "cv_within_5pct": float(np.mean(cv <= 0.05)), "cv_within_10pct": float(np.mean(cv <= 0.10)),
              "formula_within_5pct": float(np.mean(np.expm1(base) <= 0.05)),
              "formula_within_10pct": float(np.mean(np.expm1(base) <= 0.10))}
    return table, report


def fit_handoff_latency(profile: SocProfile, measured: Mapping[str, Any],
                        first_switch: bool = True) -> tuple[float, dict[str, Any]]:
    """The transfer latency (us) that makes the simulator match measured mixed-plan runs (cases that use
    more than one lane), minimising the mean squared log error over those cases. With ``first_switch``
    (the default) also the extra ``first_switch_us`` a request pays at its first hand-off between lanes
    (measured on the 2-core VM: the first switch of a pass cost ~100-180 us, later ones 0-40 us, which one
    price per hand-off cannot fit); it needs cases with different numbers of switches (``make_plans``
    with k >= 4 gives 1 and 3). The report carries both. The measurements must come from calibration
    models, never from the models a fidelity check holds out."""
    from scipy.optimize import minimize, minimize_scalar

    from .graph import OpGraph

    src = measured.get("_source", "<measured>")
    graphs = measured.get("_graphs") or {k: OpGraph.from_dict(g, source=f"{src}: graphs[{k!r}]")
                                         for k, g in measured["graphs"].items()}
    cases = [c for c in measured["cases"] if len(set(c["lane_of"])) > 1]
    if not cases:
        raise ValueError(f"{src}: no case runs on more than one lane; the hand-off latency needs mixed plans "
                         "(sparoa fidelity --plans 3 on a profile with two lanes)")
    if list(measured["processors"]) != list(profile.processor_names):
        raise ValueError(f"{src}: field 'processors' is {list(measured['processors'])}, but the fitted profile has "
                         f"{list(profile.processor_names)}")
    lat0 = float(profile.transfer.latency_us)
    first0 = float(profile.transfer.first_switch_us)
    layouts: dict[tuple, SocProfile] = {}  # one parsed profile per core layout; only the transfer varies below
    for c in cases:
        key = tuple(sorted(dict(c["lane_cores"]).items()))
        if key not in layouts:
            layouts[key] = with_lane_cores(profile, dict(key))
    sources = dict(profile.transfer.sources, first_switch_us="assumption: being fitted")

    def err(lat_us: float, first_us: float = 0.0) -> float:
        e = []
        for c in cases:
            lp = layouts[tuple(sorted(dict(c["lane_cores"]).items()))]
            tr = dataclasses.replace(lp.transfer, latency_us=float(lat_us), first_switch_us=float(first_us),
                                     sources=sources)
            pred = simulate_latency_ms(dataclasses.replace(lp, transfer=tr), graphs[c["graph"]], c["lane_of"],
                                       "fidelity")
            e.append(math.log(pred / float(c["measured_ms"])))
        return float(np.mean(np.square(e)))

    lat = float(minimize_scalar(err, bounds=(0.0, 5000.0), method="bounded", options={"xatol": 0.5}).x)
    first = 0.0
    if first_switch:
        # start from the one-price fit (all of it on every hand-off) and let the optimiser split it
        sol = minimize(lambda x: err(abs(x[0]), abs(x[1])), x0=[lat, 0.0], method="Nelder-Mead",
                       options={"xatol": 0.2, "fatol": 1e-12, "maxiter": 400, "initial_simplex":
                                [[lat, 0.0], [lat * 0.5 + 1.0, lat * 0.5 + 1.0], [lat * 0.25 + 1.0, lat + 1.0]]})
        if sol.fun < err(lat):
            lat, first = float(abs(sol.x[0])), float(abs(sol.x[1]))
    return lat, {"latency_us": lat, "first_switch_us": first, "cases": len(cases),
                 "models": sorted({c["model"] for c in cases}),
                 "rms_log_error": math.sqrt(err(lat, first)),
                 "rms_log_error_micro": math.sqrt(err(lat0, first0))}


def _rows_text(rows: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(rows.items())) or "none"


def _drop_noisy(df: Any, max_spread: float | None) -> tuple[Any, list[str]]:
    if max_spread is None:
        return df, []
    e2e = df[df["kind"] == "e2e"]
    spread = (e2e["latency_p90_ms"] - e2e["latency_p10_ms"]) / e2e["latency_ms"]
    bad = e2e[spread > max_spread]
    keys = set(zip(bad["trace_id"], bad["model"], bad["batch"], bad["threads"], bad["processor"]))
    if not keys:
        return df, []
    k = list(zip(df["trace_id"], df["model"], df["batch"], df["threads"], df["processor"]))
    drop = np.array([x in keys and kd in ("op", "e2e", "probe") for x, kd in zip(k, df["kind"])])
    kept = df[~drop]
    if kept[kept["kind"] == "op"].empty:
        raise ValueError(f"every pass in the traces is noisier than --max-spread {max_spread} (spread = (p90 - p10) / "
                         f"median of the end-to-end passes; median here {float(spread.median()):.2f}): the machine "
                         "was busy. Re-record on a quiet machine, or raise --max-spread")
    labels = sorted(f"{m} b{b} t{t} ({p})" for _, m, b, t, p in keys)
    return kept, labels

def graphs_from_trace(df: Any, processor: str = "cpu") -> dict[tuple, Any]:
    """An OpGraph (nodes only, a chain of edges) per (trace, model, batch, threads) from the op rows, so
    that traces can be priced by the cost model without torch."""
    from .graph import Edge, OpGraph, OpNode

    ops = df[(df["kind"] == "op") & (df["processor"] == processor)]
    out = {}
    for key, g in ops.groupby(["trace_id", "model", "batch", "threads"], sort=False):
        nodes = []
        for r in g.itertuples(index=False):
            nodes.append(OpNode(name=r.op_name, op_type=r.op_type, flops=r.flops, bytes_in=r.bytes_in,
                                bytes_out=r.bytes_out, weight_bytes=r.weight_bytes, weight_sparsity=r.weight_sparsity,
                                input_sparsity=r.input_sparsity, sparsity=r.sparsity,
                                intensity=OpNode.arithmetic_intensity(r.flops, r.bytes_in, r.bytes_out, r.weight_bytes),
                                out_shape=tuple(json.loads(r.out_shape)) if r.out_shape else (),
                                aux_flops=r.aux_flops, sparsity_pattern=r.sparsity_pattern,
                                dtype=r.dtype or "float32"))
        edges = [Edge(a.name, b.name, a.bytes_out) for a, b in zip(nodes, nodes[1:])]
        out[key] = OpGraph(str(key[1]), int(key[2]), nodes, edges, {"source": "rebuilt from trace op rows"})
    return out


def _priced_passes(profile: SocProfile, df: Any, processor: str = "cpu"):
    """Each traced pass of ``processor`` as ``(key, graph, op rows, predicted ms per op)``, priced by the
    profile's first lane with the pass's thread count as its cores (key: trace, model, batch, threads)."""
    from .costmodel import CostModel

    sub = df[df["processor"] == processor]
    ops = sub[sub["kind"] == "op"]
    lane = profile.processor_names[0]
    cms: dict[int, Any] = {}
    # graphs_from_trace groups the same op rows by the same keys in the same order
    groups = ops.groupby(["trace_id", "model", "batch", "threads"], sort=False)
    for (key, g), (_, rows) in zip(graphs_from_trace(sub, processor).items(), groups):
        n = int(key[3])
        if n not in cms:
            cms[n] = CostModel(with_lane_cores(profile, {lane: n}))
        c = cms[n].op_costs(g, "fidelity")
        yield key, g, rows, np.asarray(c.nominal_ms[:, 0] + c.host_ms[:, 0])


def _check_reproduces(profile: SocProfile, df: Any, d: FitData, f: ProcessorFit) -> float:
    """The written profile, through the cost model, must give the fit's own per-pass sums (a guard against
    a parameter lost in translation); returns the largest relative deviation."""
    pred = _predict(d, f)
    sums = np.bincount(d.config, weights=pred, minlength=len(d.config_e2e))
    worst = 0.0
    for i, (_, _, _, ms) in enumerate(_priced_passes(profile, df, "cpu")):
        worst = max(worst, abs(float(ms.sum()) / sums[i] - 1.0))
    if worst > 0.01:
        raise RuntimeError(f"internal error: the written profile prices the traced passes up to {worst:.1%} away from "
                           "the fit (a fitted value did not fit the profile's ranges); please report it")
    return worst


def _require_micro(rows: Any, proc: str, traces: Sequence[str]) -> None:
    """The peak (sgemm, memory copy) and dispatch micro-benchmarks of ``proc`` must be in the traces: the
    profile's peak rate, DRAM bandwidth and launch overhead come from them (without them a few op rows would
    give made-up figures under sources that name micro-benchmarks never run)."""
    have = {"peak matmul": not rows[(rows["kind"] == "peak") & (rows["op_type"] == "aten.mm")].empty,
            "memory copy": not rows[(rows["kind"] == "peak") & (rows["op_type"] == "aten.copy")].empty,
            "dispatch": not rows[rows["kind"] == "dispatch"].empty}
    missing = [k for k, v in have.items() if not v]
    if missing:
        dev = "cpu" if proc == "cpu" else "cuda"
        raise ValueError(f"the traces ({', '.join(map(str, traces))}) hold no {proc} micro-benchmark rows for "
                         f"{', '.join(missing)}: add one trace recorded without --no-micro "
                         f"('sparoa profile MODEL --device {dev} --out FILE.parquet')")


def _affinity_size(df: Any) -> int:
    best = 1
    for c in df["cores"].unique():
        n = 0
        for part in str(c).replace("|", ",").split(","):
            part = part.split("@")[0]
            if not part or not part.replace("-", "").isdigit():
                continue
            lo, _, hi = part.partition("-")
            n += int(hi or lo) - int(lo) + 1
        best = max(best, n)
    return best


def _memory_gb(df: Any) -> float:
    mids = df["machine_id"].unique()
    for m in mids:
        for part in str(m).split("-"):
            if part.endswith("g") and part[:-1].isdigit():
                return float(part[:-1]) or 1.0
    return 8.0


def _models_summary(df: Any) -> str:
    ops = df[df["kind"] == "e2e"]
    models = sorted(ops["model"].unique())
    batches = sorted(int(b) for b in ops["batch"].unique())
    threads = sorted(int(t) for t in ops["threads"].unique())
    return f"models {', '.join(models)}; batch {batches}; threads {threads}"


def _noise(df: Any) -> dict[str, float]:
    e2e = df[df["kind"] == "e2e"]
    if e2e.empty:
        return {}
    return {"e2e_cv_median": float(e2e["cv"].median()), "e2e_cv_max": float(e2e["cv"].max()),
            "p90_over_p10_median": float((e2e["latency_p90_ms"] / e2e["latency_p10_ms"]).median()),
            "loadavg_1m_median": float(e2e["loadavg_1m"].median()),
            "ops_sum_over_e2e_median": float((e2e["ops_sum_ms"] / e2e["latency_ms"]).median())}


def _curve_dicts(f: ProcessorFit, proc: str, ref: str) -> dict[str, Any]:
    out = {}
    for pat in SPARSE_PATTERNS:
        if pat in f.curves:
            rho, sp = f.curves[pat]
            out[pat] = {"rho": rho, "speedup": sp, "over": "weight_sparsity", "min_channels": 0, "min_batch": 1,
                        "weight_storage": "dense", "index_overhead": 0.0,
                        "source": f"[{ref}] fitted to {pat} variants at weight sparsity {rho[1:-1]} on {proc}"}
        else:
            out[pat] = {"rho": [0.0, 1.0], "speedup": [1.0, 1.0], "over": "weight_sparsity", "min_channels": 0,
                        "min_batch": 1, "weight_storage": "dense", "index_overhead": 0.0,
                        "source": f"assumption: no {pat} variant was traced; the executor runs masked weights with "
                                  "dense kernels, so no gain is assumed"}
    return out


def _modes(procs: list[dict], ncores: int, ref: str) -> dict[str, Any]:
    cpu = [p["name"] for p in procs if p["kind"] == "cpu"]
    others = [p for p in procs if p["kind"] != "cpu"]
    freq = {p["name"]: p["max_freq_mhz"] for p in procs}
    share = max(ncores // len(cpu), 1)
    maxn_cores = {n: share for n in cpu}
    maxn_cores[cpu[-1]] = max(ncores - share * (len(cpu) - 1), 1)
    for p in others:
        maxn_cores[p["name"]] = p["cores"]
    src = (f"[{ref}] the lane layout of the traces: " +
           ("each CPU lane is a worker thread pinned to its own group of the machine's cores (device map "
            "'cpu0=cpu:<first half>;cpu1=cpu:<second half>'); named MAXN so that the environment's default "
            "power_mode applies; clocks are as the OS sets them (recorded, not pinned)" if len(cpu) > 1 else
            "the CPU lane with all cores, the accelerator at its default clocks"))
    modes = {"MAXN": {"cores": maxn_cores, "max_freq_mhz": dict(freq), "memory_bw_frac": 1.0, "budget_w": 0.0,
                      "source": src}}
    if len(cpu) > 1:
        single = {n: 1 for n in cpu}
        single[cpu[0]] = ncores
        for p in others:
            single[p["name"]] = p["cores"]
        modes["single-lane"] = {"cores": single, "max_freq_mhz": dict(freq), "memory_bw_frac": 1.0, "budget_w": 0.0,
                                "source": f"[{ref}] all cores on lane {cpu[0]} (the all-CPU runs of the traces); the "
                                          "other lanes are nominal and should stay unused"}
    return modes


def _gpu_processor(df: Any, proc: str, ref: str, src_fit: str, fits: dict, reports: dict, min_type_rows: int,
                   stat: str) -> dict:
    """A GPU lane fitted from CUDA traces (op rows timed by CUDA events inside passes)."""
    _require_micro(df[df["processor"] == proc], proc, sorted(df["trace_id"].unique()))
    d = FitData.from_frame(df, proc, stat=stat)
    f = fit_processor(d, min_type_rows=min_type_rows, fixed_parallel=0.995)
    fits["gpu"], reports["gpu"] = f, fit_report(d, f)
    rows = df[df["processor"] == proc]
    meta_sms = rows["threads"].max()  # not the SM count: kept only as a floor
    pk = rows[(rows["kind"] == "peak") & (rows["op_type"] == "aten.mm")]
    peak = float((pk["flops"] / (pk["latency_ms"] * 1e6)).max()) if len(pk) else 0.0
    peak = max(peak, max(f.rates.values()) / 1e6 / 0.98, max([f.aux_rate] + list(f.aux_rates.values())) / 1e6 / 0.98)
    cp = rows[(rows["kind"] == "peak") & (rows["op_type"] == "aten.copy")]
    gbw = float(((cp["bytes_in"] + cp["bytes_out"]) / (cp["latency_ms"] * 1e6)).max()) if len(cp) else f.bw_gbps
    launch = _median(rows, kind="dispatch")
    dev_tiny = _median(rows, kind="launch")
    freq = rows["gpu_freq_mhz"].dropna()
    cores = int(max(meta_sms, 1))
    return {
        "name": "gpu", "kind": "gpu", "cores": cores, "max_freq_mhz": float(freq.max()) if len(freq) else 1000.0,
        "peak_gflops": peak, "dtype_speedup": {"float16": 1.0, "bfloat16": 1.0, "int8": 1.0},
        "parallel_fraction": 0.995, "parallel_half_mflop": 0.0, "mem_bw_frac": min(max(f.bw_gbps / max(gbw, f.bw_gbps), 1e-3), 1.0),
        "launch_overhead_us": (launch * 1e3) if launch == launch else 5.0,
        "fixed_overhead_us": max(f.overhead_ms * 1e3, (dev_tiny * 1e3) if dev_tiny == dev_tiny else 0.0),
        "async_dispatch": True, "half_efficiency_mflop": f.half_mflop,
        "op_efficiency": {k: min(max(v / 1e6 / peak, 1e-6), 1.0) for k, v in f.rates.items()},
        "aux_efficiency": min(max(f.aux_rate / 1e6 / peak, 1e-6), 1.0),
        "aux_op_efficiency": {k: min(max(v / 1e6 / peak, 1e-6), 1.0) for k, v in f.aux_rates.items()},
        "cache_mb": f.cache_bytes / 1e6, "cache_bw_gbps": f.cache_bw_gbps,
        "sparsity": _curve_dicts(f, proc, ref),
        "static_power_w": 20.0, "dynamic_power_w": 200.0, "power_freq_exponent": 2.5,
        "sources": {
            "kind": f"[{ref}] CUDA device {proc}", "cores": f"[{ref}] nominal (SM count not recorded in rows)",
            "max_freq_mhz": f"[{ref}] SM clock read through NVML during recording (1000 when unreadable)",
            "peak_gflops": f"[{ref}] 4096^3 sgemm rate, raised to keep every fitted efficiency <= 1",
            "dtype_speedup": "assumption: only float32 was traced",
            "parallel_fraction": "assumption: a GPU spreads an op over all SMs (0.995)",
            "parallel_half_mflop": "assumption: not modelled on a GPU lane (0; small kernels are priced by half_efficiency_mflop)",
            "mem_bw_frac": src_fit + ", over the device's large-copy bandwidth",
            "launch_overhead_us": f"[{ref}] host time per tiny-kernel launch",
            "fixed_overhead_us": src_fit + " (device-side per-op time; at least a tiny kernel's)",
            "async_dispatch": "assumption: by construction, a CUDA stream: the host goes on after the launch",
            "half_efficiency_mflop": src_fit, "op_efficiency": src_fit, "aux_efficiency": src_fit,
            "aux_op_efficiency": src_fit + " (elementwise op types with enough rows)",
            "cache_mb": src_fit + " (two memory levels)", "cache_bw_gbps": src_fit + " (two memory levels)",
            "static_power_w": "assumption: not measured", "dynamic_power_w": "assumption: not measured",
            "power_freq_exponent": "assumption: not measured",
        }}


def _merge_base(d: dict, base: SocProfile) -> None:
    """Fields no trace informs (power, thermal) come from ``base`` when it has them."""
    b = base.to_dict()
    d["thermal"] = b["thermal"]
    d["power"] = b["power"]
    bp = {p["name"]: p for p in b["processors"]}
    bkind = {p["kind"]: p for p in b["processors"]}
    for p in d["processors"]:
        src = bp.get(p["name"]) or bkind.get(p["kind"])
        if src is None:
            continue
        for k in ("static_power_w", "dynamic_power_w", "power_freq_exponent", "dtype_speedup"):
            p[k] = src[k]
            p["sources"][k] = src["sources"][k]


def _description(name: str, machine: list[str], lanes: int, gpus: list[str], noise: Mapping[str, float],
                 trace_ids: list[str]) -> str:
    layout = (f"{lanes} CPU lane(s)" + (f" + GPU {gpus[0]}" if gpus else "")
              + (": two CPU core groups, each a worker thread pinned to its cores (device map "
                 "{'cpu0': 'cpu:<first half>', 'cpu1': 'cpu:<second half>'}, see sparoa_env.hw.devices)"
                 if lanes > 1 and not gpus else ""))
    nz = (f"; run-to-run noise while recording: median e2e cv {noise['e2e_cv_median']:.3f}, "
          f"median load average {noise['loadavg_1m_median']:.1f}" if noise else "")
    return (f"Measured profile '{name}' of machine {', '.join(machine)}: {layout}. Fitted by sparoa calibrate to "
            f"{len(trace_ids)} trace(s){nz}. Power and thermal figures are assumptions.")


# ------------------------------------------------------------------------------------------- simulation
def with_lane_cores(profile: SocProfile, cores: Mapping[str, int], mode: str = "fidelity") -> SocProfile:
    """A copy of ``profile`` with one extra power mode giving each processor ``cores`` cores (others keep
    their default mode's), at the highest clocks: the layout of one real run."""
    d = profile.to_dict()
    dm = d["power_modes"][d["default_power_mode"]]
    c = dict(dm["cores"])
    for k, v in cores.items():
        if k not in c:
            raise ValueError(f"profile {profile.name!r} has no processor {k!r}")
        c[k] = int(v)
    d["power_modes"][mode] = {"cores": c, "max_freq_mhz": {p["name"]: p["max_freq_mhz"] for p in d["processors"]},
                              "memory_bw_frac": 1.0, "budget_w": 0.0,
                              "source": "assumption: the core layout of one measured run (sparoa fidelity)"}
    for p in d["processors"]:
        if c[p["name"]] > p["cores"]:
            p["cores"] = c[p["name"]]
    return profile_from_dict(d, source=f"<{profile.name} + mode {mode}>")


def simulate_latency_ms(profile: SocProfile, graph: Any, lanes: Sequence[int], mode: str) -> float:
    """The simulator's end-to-end latency of one request of ``graph`` with op ``i`` on lane ``lanes[i]``
    (no background, no thermal effects)."""
    from .sim.backend import SimBackend

    be = SimBackend(profile=profile, power_mode=mode, background="none", requests=1, thermal=False, record=False)
    dec = be.reset(graph=graph, rng=np.random.default_rng(0))
    while True:
        out = be.place(int(lanes[dec.op]))
        if out.next is None:
            return float(out.final["latency_ms"][0])
        dec = out.next


def make_plans(graph: Any, processors: Sequence[str], kinds: Sequence[str], k: int) -> list[tuple[str, list[int]]]:
    """K plans: all ops on lane 0; with more lanes, all on the first accelerator (if any), then mixed
    plans that cut the op sequence into 2, 4, 6 ... alternating contiguous blocks."""
    n = len(graph.nodes)
    plans: list[tuple[str, list[int]]] = [("all-" + processors[0], [0] * n)]
    P = len(processors)
    if P > 1:
        acc = [j for j, kd in enumerate(kinds) if kd != "cpu"]
        if acc and len(plans) < k:
            plans.append(("all-" + processors[acc[0]], [acc[0]] * n))
        blocks = 2
        while len(plans) < k:
            size = max(1, math.ceil(n / blocks))
            other = acc[0] if acc else 1
            lanes = [other if (i // size) % 2 == 1 else 0 for i in range(n)]
            plans.append((f"mixed-{blocks}", lanes))
            blocks += 2
            if blocks > 2 * n:
                break
    return plans[:k]


# ------------------------------------------------------------------------------------------- fidelity
MEASURED_FORMAT = "sparoa-fidelity-measured"


def run_fidelity(profile: SocProfile, models: Sequence[str], *, plans: int = 3, batches: Sequence[int] = (1,),
                 threads: int | None = None, repeats: int = 10, warmup: int = 3, device_map: Any = None,
                 budget_s: float = 20.0, stat: str = "median", rounds: int = 8,
                 log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Run each model for real under ``plans`` plans and compare with the simulator (module docstring):
    :func:`measure_fidelity` then :func:`score_fidelity`. The result carries the measurements under
    ``"measured"`` (what ``sparoa fidelity --save`` writes)."""
    measured = measure_fidelity(profile, models, plans=plans, batches=batches, threads=threads, repeats=repeats,
                                warmup=warmup, device_map=device_map, budget_s=budget_s, stat=stat, rounds=rounds,
                                log=log)
    res = score_fidelity(profile, measured, log=log)
    res["measured"] = measured
    return res


def measure_fidelity(profile: SocProfile, models: Sequence[str], *, plans: int = 3, batches: Sequence[int] = (1,),
                     threads: int | None = None, repeats: int = 10, warmup: int = 3, device_map: Any = None,
                     budget_s: float = 20.0, stat: str = "median", rounds: int = 8,
                     log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Measure every (model, batch, plan) case with the project's executor; no prediction.

    The plans of one model run **interleaved**: ``rounds`` rounds each run a share of every plan's timed
    runs (the plan order rotates per round), so that a slow minute of the machine hits every plan of the
    model alike instead of one. Each share runs on a freshly built engine (two untimed runs first) that is
    closed after it: only one plan's engine is alive at a time, as in a deployment. The timed runs of even and odd
    rounds make two independent measurements of each case (``measured_halves_ms``): how far they agree is
    the machine's own repeatability, the ceiling any predictor can reach on it. The Python garbage
    collector is off while timing. ``repeats`` timed runs per case (capped by ``budget_s`` seconds).

    Returns a JSON-able dict (format ``sparoa-fidelity-measured``) holding each case's lane assignment and
    core layout and each model's OpGraph, so that :func:`score_fidelity` can re-score it against any
    profile with the same processor names without torch and without re-measuring."""
    if stat not in _STAT_COLUMNS:
        raise ValueError(f"stat must be one of {list(_STAT_COLUMNS)}, got {stat!r}")
    if rounds < 2:
        raise ValueError(f"rounds must be >= 2 (two independent halves per case), got {rounds}")
    import contextlib
    import datetime
    import gc

    from .hw.devices import cuda_available, parse_device_map, two_lane_cpu_map
    from .hw.engine import HybridEngine
    from .hw.profiler import clock_state, first_cores, prepare_model
    from .hw.timing import thread_settings
    from .plan import Plan
    from .traces import machine_id

    names = list(profile.processor_names)
    kinds = [p.kind for p in profile.processors]
    if device_map is None:
        if len(names) == 1:
            device_map = {names[0]: "cpu"}
        elif all(k == "cpu" for k in kinds) or not cuda_available():
            device_map = two_lane_cpu_map(list(names))
        else:
            device_map = {n: ("cpu" if k == "cpu" else "cuda:0") for n, k in zip(names, kinds)}
    lanes = parse_device_map(device_map, names)
    lane_list = [lanes[n] for n in names]
    all_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    t_single = threads or all_cores
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    clocks0 = clock_state("cpu")
    cases: list[dict[str, Any]] = []
    graphs: dict[str, Any] = {}
    for model in models:
        for batch in batches:
            t0 = time.time()
            pm = prepare_model(model, batch)
            gkey = f"{model}|b{batch}"
            graphs[gkey] = pm.graph.to_dict()
            log(f"{model} b{batch}: exported in {time.time() - t0:.1f}s, {len(pm.graph.nodes)} ops")
            setups = []
            for label, lane_of in make_plans(pm.graph, names, kinds, plans):
                used = sorted(set(lane_of))
                dm = {n: l.spec for n, l in zip(names, lane_list)}
                pin = None
                if len(used) == 1 and lane_list[used[0]].device == "cpu":
                    # one CPU lane: all its ops on t_single threads pinned to the first t_single cores
                    # (an unpinned single CPU lane runs in the calling thread, which is pinned here as the
                    # traces' end-to-end passes were)
                    cores = first_cores(t_single)
                    dm[names[used[0]]] = "cpu"
                    pin = (t_single, cores)
                    lane_cores = {names[used[0]]: t_single}
                    where = f"{names[used[0]]}: cores {','.join(map(str, cores))}, {t_single} thread(s)"
                else:
                    lane_cores = {n: (len(l.cores) if l.cores else all_cores) for n, l in zip(names, lane_list)
                                  if not l.is_cuda}
                    where = "; ".join(lane_list[k].describe() for k in used)
                setups.append((label, list(lane_of), dm, pin, lane_cores, where))
            plans_of = [Plan({n.name: names[lane_of[i]] for i, n in enumerate(pm.graph.nodes)}, batch=pm.batch,
                             model=pm.spec) for _, lane_of, _, _, _, _ in setups]

            def engine(j: int):
                # one engine alive at a time, as in a deployment (a precaution: with every plan's engine alive,
                # squeeze_excite's single-lane plan measured the same 0.26-0.31 ms in three processes)
                return HybridEngine(pm.module, pm.inputs, plans_of[j], dict(setups[j][2]), processors=tuple(names),
                                    program=pm.program)

            def settings(j: int):
                pin = setups[j][3]
                return thread_settings(*pin) if pin is not None else contextlib.nullcontext()

            per = []
            for j in range(len(setups)):
                with engine(j) as eng, settings(j):
                    t = time.perf_counter()
                    for _ in range(max(warmup, 1)):
                        eng(*pm.inputs)
                    per.append((time.perf_counter() - t) / max(warmup, 1))
            n_runs = [max(4, min(repeats, int(budget_s / max(p, 1e-6)))) for p in per]
            n_rounds = [min(rounds, n) for n in n_runs]
            samples: list[tuple[list[float], list[float]]] = [([], []) for _ in setups]
            P = len(setups)
            for r in range(max(n_rounds)):
                for j in [(r + s) % P for s in range(P)]:
                    if r >= n_rounds[j]:
                        continue
                    k = math.ceil(n_runs[j] / n_rounds[j])
                    half = samples[j][r % 2]
                    with engine(j) as eng, settings(j):
                        for _ in range(2):   # warm the new engine's threads and buffers
                            eng(*pm.inputs)
                        gc.collect()
                        gc_was = gc.isenabled()
                        gc.disable()
                        try:
                            for _ in range(k):
                                t = time.perf_counter()
                                eng(*pm.inputs)
                                half.append((time.perf_counter() - t) * 1e3)
                        finally:
                            if gc_was:
                                gc.enable()
            for (label, lane_of, _, _, lane_cores, where), (a, b) in zip(setups, samples):
                xs = np.array(a + b)
                case = {"model": model, "batch": int(batch), "plan": label, "lanes": where,
                        "lane_cores": lane_cores, "lane_of": lane_of, "graph": gkey,
                        "measured_ms": _summary(xs, stat),
                        "measured_halves_ms": [_summary(np.array(a), stat), _summary(np.array(b), stat)],
                        "runs": int(len(xs)),
                        "spread": float((np.percentile(xs, 90) - np.percentile(xs, 10)) / np.median(xs))}
                cases.append(case)
                h = case["measured_halves_ms"]
                log(f"  {label:<12} measured {case['measured_ms']:9.3f} ms  (halves {h[0]:.3f} / {h[1]:.3f}, "
                    f"{len(xs)} runs)")
    return {"format": MEASURED_FORMAT, "version": 1, "machine_id": machine_id(), "processors": names,
            "kinds": kinds, "stat": stat, "threads_single_lane": t_single, "rounds": rounds,
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "loadavg_1m_before_after": [load0, os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan],
            "clocks_before_after": [clocks0, clock_state("cpu")], "cases": cases, "graphs": graphs}


def _summary(xs: np.ndarray, stat: str) -> float:
    return float(np.median(xs)) if stat == "median" else float(np.percentile(xs, 10))


def load_measured(path: str | os.PathLike) -> dict[str, Any]:
    """Read a file written by ``sparoa fidelity --save`` (checked: format, processors, cases, graphs)."""
    from .graph import GraphFormatError, OpGraph

    p = str(path)
    try:
        with open(p) as fh:
            d = json.load(fh)
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not JSON ({e})") from None
    if not isinstance(d, dict) or d.get("format") != MEASURED_FORMAT:
        got = d.get("format") if isinstance(d, dict) else type(d).__name__
        raise ValueError(f"{p}: field 'format' is {got!r}, expected {MEASURED_FORMAT!r} (a file written by "
                         "'sparoa fidelity --save')")
    for k in ("processors", "cases", "graphs", "stat"):
        if k not in d:
            raise ValueError(f"{p}: missing field {k!r}")
    if d["stat"] not in _STAT_COLUMNS:
        raise ValueError(f"{p}: field 'stat' is {d['stat']!r}, expected one of {list(_STAT_COLUMNS)}")
    graphs = {}
    for k, g in d["graphs"].items():
        try:
            graphs[k] = OpGraph.from_dict(g, source=f"{p}: graphs[{k!r}]")
        except GraphFormatError as e:
            raise ValueError(str(e)) from None
    n_proc = len(d["processors"])
    for i, c in enumerate(d["cases"]):
        for k in ("model", "batch", "plan", "lane_cores", "lane_of", "graph", "measured_ms", "measured_halves_ms"):
            if k not in c:
                raise ValueError(f"{p}: cases[{i}] has no field {k!r}")
        if c["graph"] not in graphs:
            raise ValueError(f"{p}: cases[{i}].graph is {c['graph']!r}, not one of the file's graphs")
        if len(c["lane_of"]) != len(graphs[c["graph"]].nodes):
            raise ValueError(f"{p}: cases[{i}].lane_of has {len(c['lane_of'])} entries, graph {c['graph']!r} has "
                             f"{len(graphs[c['graph']].nodes)} ops")
        bad = [x for x in c["lane_of"] if not (isinstance(x, int) and 0 <= x < n_proc)]
        if bad:
            raise ValueError(f"{p}: cases[{i}].lane_of holds {bad[0]!r}, not a processor index 0..{n_proc - 1}")
        if not (isinstance(c["measured_ms"], (int, float)) and c["measured_ms"] > 0):
            raise ValueError(f"{p}: cases[{i}].measured_ms is {c['measured_ms']!r}, expected a positive number")
    d["_graphs"] = graphs
    d["_source"] = p
    return d


def merge_measured(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One measurements dict from several (:func:`measure_fidelity` results or :func:`load_measured` files):
    the same case (model, batch, plan) measured in several processes gets the median of the processes'
    medians as ``measured_ms`` and, as its two halves, the medians of the even- and odd-numbered processes
    (with two processes: each process's own), so that the repeatability printed is **across processes**
    (``repeatability_scope: "processes"``). Parts must come from one machine, with the same processors and
    statistic; a case in one process only keeps its own halves."""
    if not parts:
        raise ValueError("merge_measured: no measurements to merge")
    first = parts[0]
    for i, p in enumerate(parts[1:], 1):
        for k in ("machine_id", "processors", "stat"):
            if p.get(k) != first.get(k):
                raise ValueError(f"measurements {i} ({p.get('_source', '<in memory>')}) have {k} {p.get(k)!r}, "
                                 f"the first {first.get(k)!r}: measurements of different setups do not merge")
    groups: dict[tuple, list[dict]] = {}
    graphs: dict[str, Any] = {}
    for p in parts:
        graphs.update(p["graphs"])
        for c in p["cases"]:
            groups.setdefault((c["model"], c["batch"], c["plan"]), []).append(c)
    cases = []
    for cs in groups.values():
        c = dict(cs[0])
        v = np.array([float(x["measured_ms"]) for x in cs])
        if len(cs) > 1:
            c["measured_ms"] = float(np.median(v))
            c["measured_halves_ms"] = [float(np.median(v[0::2])), float(np.median(v[1::2]))]
            c["measured_processes_ms"] = v.tolist()
            c["runs"] = int(sum(int(x.get("runs", 0)) for x in cs))
            c["spread"] = float(max(float(x.get("spread", 0.0)) for x in cs))
        cases.append(c)
    out = {k: v for k, v in first.items() if not k.startswith("_")}
    out.update(cases=cases, graphs=graphs, processes=max(len(cs) for cs in groups.values()),
               repeatability_scope="processes" if any(len(cs) > 1 for cs in groups.values()) else "rounds",
               loadavg_1m_before_after=[(first.get("loadavg_1m_before_after") or [math.nan, math.nan])[0],
                                        (parts[-1].get("loadavg_1m_before_after") or [math.nan, math.nan])[1]],
               clocks_before_after=[(first.get("clocks_before_after") or [None, None])[0],
                                    (parts[-1].get("clocks_before_after") or [None, None])[1]])
    return out


def score_fidelity(profile: SocProfile, measured: Mapping[str, Any],
                   log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Predictions of ``profile`` for measured cases (from :func:`measure_fidelity` or :func:`load_measured`):
    per case measured, predicted, error and the two half-measurements' disagreement; then the shares
    within +-5% / +-10% and the same shares for the halves (the repeatability ceiling)."""
    from .graph import OpGraph

    src = measured.get("_source", "<measured>")
    names = list(profile.processor_names)
    if list(measured["processors"]) != names:
        raise ValueError(f"{src}: field 'processors' is {list(measured['processors'])}, but profile {profile.name!r} "
                         f"has processors {names}: re-score only against a profile with the same lanes")
    graphs = measured.get("_graphs") or {k: OpGraph.from_dict(g, source=f"{src}: graphs[{k!r}]")
                                         for k, g in measured["graphs"].items()}
    profs: dict[tuple, SocProfile] = {}
    cases = []
    for c in measured["cases"]:
        key = tuple(sorted(c["lane_cores"].items()))
        if key not in profs:
            profs[key] = with_lane_cores(profile, dict(c["lane_cores"]))
        pred = simulate_latency_ms(profs[key], graphs[c["graph"]], c["lane_of"], "fidelity")
        ms = float(c["measured_ms"])
        a, b = (float(x) for x in c["measured_halves_ms"])
        out = {k: v for k, v in c.items() if k not in ("lane_of", "graph")}
        out.update(predicted_ms=pred, error=pred / ms - 1.0, halves_diff=a / b - 1.0)
        cases.append(out)
        log(f"  {c['model'][-40:]:<40} b{c['batch']} {c['plan']:<12} measured {ms:9.3f} ms  predicted {pred:9.3f} ms  "
            f"error {pred / ms - 1.0:+.1%}  (halves {a / b - 1.0:+.1%})")
    errs = np.array([abs(c["error"]) for c in cases])
    reps = np.array([abs(c["halves_diff"]) for c in cases])

    def share(x: np.ndarray, lim: float) -> float:
        return float(np.mean(x <= lim)) if len(x) else math.nan

    return {"profile": profile.name, "stat": measured["stat"], "cases": cases,
            "within_5pct": share(errs, 0.05), "within_10pct": share(errs, 0.10),
            "median_abs_error": float(np.median(errs)) if len(errs) else math.nan,
            "repeatability": {"within_5pct": share(reps, 0.05), "within_10pct": share(reps, 0.10),
                              "median_abs_diff": float(np.median(reps)) if len(reps) else math.nan,
                              "scope": measured.get("repeatability_scope", "rounds"),
                              "what": ("two independent measurements per case (" +
                                       ("the medians of separate processes, even- vs odd-numbered"
                                        if measured.get("repeatability_scope") == "processes" else
                                        "timed runs of even vs odd interleaved rounds of one process") +
                                       "): the share of cases whose two agree within +-5% / +-10% is the "
                                       "ceiling any predictor can reach on this machine")},
            "measured_meta": {k: measured.get(k) for k in ("machine_id", "created_utc", "loadavg_1m_before_after",
                                                           "clocks_before_after", "threads_single_lane", "rounds",
                                                           "processes")},
            "clock_note": _clock_note(profile, measured)}


def _clock_note(profile: SocProfile, measured: Mapping[str, Any]) -> str:
    """Unpinned clocks break predictions (nn-Meter's users found): say when the CPU clock read around the
    measurements is off the profile's, or when it could not be read."""
    freqs = [c.get("cpu_freq_mhz", math.nan) for c in measured.get("clocks_before_after") or [] if isinstance(c, Mapping)]
    freqs = [float(f) for f in freqs if isinstance(f, (int, float)) and f == f]
    cpu = next((p for p in profile.processors if p.kind == "cpu"), None)
    if not freqs or cpu is None:
        return "CPU clock not readable during the measurements; pin clocks where the platform allows it"
    off = max(abs(f / cpu.max_freq_mhz - 1.0) for f in freqs)
    pinned = {c.get("clocks_pinned") for c in measured.get("clocks_before_after") or [] if isinstance(c, Mapping)}
    return (f"CPU clock {min(freqs):.0f}-{max(freqs):.0f} MHz during the measurements, profile {cpu.max_freq_mhz:.0f} MHz "
            f"({off:.1%} off), clocks pinned: {'/'.join(sorted(str(x) for x in pinned))}")
