"""SoC profiles: what the cost model and the simulator know about one system-on-chip.

A :class:`SocProfile` describes the processors of an SoC (CPU, GPU, NPU), their power modes, the DRAM
they share, how a tensor moves between them, how the chip heats and throttles, and what it draws. It is
plain data: every number the cost model (:mod:`sparoa_env.costmodel`) uses lives here, none in code.

Profiles ship as JSON under ``sparoa_env/data/profiles/<name>.json``; a calibration step can write
new ones (:meth:`SocProfile.to_dict` / :func:`profile_from_dict` round-trip exactly). ``docs/profiles.md``
documents the schema, every field's meaning and unit, and how the shipped values were chosen.

Provenance is explicit at two levels:

* ``provenance`` says where the profile as a whole comes from: ``"spec-derived:<reference ids>"`` for
  numbers taken or derived from data sheets and papers, ``"measured:<trace ids>"`` for calibrated ones.
* every value has a source: each object carries ``sources`` (one entry per field) and each sparsity
  curve a ``source``. A source either cites a reference id in brackets, ``"[ds-agx-orin] table 1"``,
  where ``references`` maps the id to a document or URL, or it starts with ``"assumption:"`` and says
  what was assumed and why. Loading checks that every field has one and every cited id exists.

Loading validates every field (type, range, unknown keys at every level) and raises
:class:`ProfileError` naming the file, the field path (``processors.gpu.launch_overhead_us``) and the
bad value.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

__all__ = [
    "ProfileError", "ProcessorSpec", "SparsityCurve", "PowerMode", "MemorySpec", "TransferSpec",
    "ThermalSpec", "PowerSpec", "CostRules", "SocProfile", "load_profile", "available_profiles",
    "profile_from_dict", "PROFILE_DIR", "PROCESSOR_KINDS", "SPARSE_PATTERNS", "DTYPES",
]

SCHEMA_VERSION = 1
PROFILE_DIR = Path(__file__).parent / "data" / "profiles"
PROCESSOR_KINDS = ("cpu", "gpu", "npu")
#: sparsity patterns a processor may accelerate (OpNode.sparsity_pattern; "dense" never speeds up)
SPARSE_PATTERNS = ("unstructured", "2:4", "structured")
#: dtypes other than float32 that every processor states a throughput factor for (OpNode.dtype)
DTYPES = ("float16", "bfloat16", "int8")
_REF_RE = re.compile(r"\[([A-Za-z0-9_.:-]+)\]")


class ProfileError(ValueError):
    """A profile file or dict is invalid; the message names the file, the field path and the bad value."""


# ---------------------------------------------------------------------------------------------- types
@dataclass(frozen=True)
class SparsityCurve:
    """Compute speedup of one processor's kernels for one sparsity pattern, as a function of sparsity.

    ``speedup`` is interpolated piecewise-linearly over ``rho`` (both the same length, ``rho`` strictly
    increasing from 0 to 1) at the op's ``over`` value (``weight_sparsity``: what weight-sparse kernels
    exploit; or ``sparsity``: rho, weights and activations). It applies only when the op's GEMM sizes
    (output channels and reduction length, see :mod:`sparoa_env.costmodel`) are both at least
    ``min_channels`` and the graph's batch is at least ``min_batch``; otherwise the speedup is 1.
    ``weight_storage`` says whether the kernel reads the dense weight tensor (``"dense"``) or only its
    non-zeros plus ``index_overhead`` (fraction of the non-zero bytes) of metadata (``"compressed"``).
    """

    rho: tuple[float, ...]
    speedup: tuple[float, ...]
    over: str
    min_channels: int
    min_batch: int
    weight_storage: str
    index_overhead: float
    source: str


@dataclass(frozen=True)
class ProcessorSpec:
    """One processor (a lane of the simulator). Units are in the field names.

    ``cores``: CPU cores, GPU streaming multiprocessors, NPU engines: the unit a power mode switches off
    and background load takes. ``peak_gflops``: float32 peak at ``max_freq_mhz`` with all cores (the
    spec sheet figure); ``dtype_speedup``: effective throughput of float16 / bfloat16 / int8 kernels
    relative to float32 on this processor (what eager kernels gain, not the spec ratio).
    ``parallel_fraction``: Amdahl fraction of an op's work that spreads over cores.
    ``parallel_half_mflop``: an op with this much work (FLOPs + elementwise work, in MFLOP) gets half of the
    Amdahl speedup over one core (small ops run on fewer threads than the lane has: intra-op grain sizes,
    fork/join); 0 = every op gets the full Amdahl speedup.
    ``mem_bw_frac``: share of the DRAM bandwidth this processor reaches alone. ``launch_overhead_us``:
    host-thread (CPU) time to issue one op: kernel launch for a GPU/NPU, dispatch for the CPU, at the
    host CPU's highest clock. ``fixed_overhead_us``: device-side time per op besides compute and memory
    (kernel start and tail, thread-pool fork/join). ``async_dispatch``: the host returns after issuing
    (GPU stream, NPU queue) rather than waiting for the op (CPU). ``half_efficiency_mflop``: an op of
    this many MFLOP reaches half of its table efficiency (occupancy / tail effects on small ops).
    ``op_efficiency``: fraction of the effective peak that ops of each ATen type reach, ``default`` for
    the rest; ``aux_efficiency``: the same for elementwise work (``aux_flops``) of op types that
    ``aux_op_efficiency`` does not list (that table may be empty; it is looked up like ``op_efficiency``).
    ``cache_mb`` (MB = 1e6 bytes) and ``cache_bw_gbps``: the last-level cache this processor works from; the
    share ``min(1, cache / traffic)`` of an op's traffic is served at ``cache_bw_gbps``, the rest at the
    DRAM bandwidth (``cache_mb = 0``: one memory level). ``sparsity``: one curve
    per pattern in :data:`SPARSE_PATTERNS`. ``static_power_w`` / ``dynamic_power_w``: leakage with all
    cores online, and the extra draw at full utilisation and the highest clock; dynamic power scales as
    ``freq_frac ** power_freq_exponent`` (voltage falls with the clock under DVFS).
    ``op_fixed_overhead_us`` (optional, measured profiles): ``fixed_overhead_us`` per op class, looked up
    like ``op_efficiency`` (a small convolution pays a kernel-library primitive lookup that a small GEMM
    does not); types it does not list, and every type when it is absent, pay ``fixed_overhead_us``.
    ``parallel_overhead_us`` (optional, measured profiles; 0 when absent): extra time every op pays when
    its lane runs more than one core (intra-op thread-pool fork/join, which a one-thread lane skips).
    ``parallel_min_numel`` (optional, measured profiles; 0 when absent): an elementwise op (no FLOPs) whose
    output has fewer elements than this runs on one thread whatever the lane's cores (intra-op grain size:
    ATen's ``parallel_for`` splits an op only above it; GEMM and convolution kernels split by work, see
    ``parallel_half_mflop``), so it gets no parallel speedup; 0 = no such gate. ``serial_slowdown``
    (optional, measured profiles; 0 when absent): on a lane of more than one core, the serial share of an op
    (``1 - w / (w + parallel_half_mflop * 1e6)``, all of it below the grain) runs ``1 + serial_slowdown``
    times slower than on one core (the lane's idle intra-op workers compete with the thread that runs it).
    ``conv_weight_us_per_kb`` (optional, measured profiles; 0 when absent): every convolution with FLOPs pays
    this much extra fixed time per kB (1e3 bytes) of its weight tensor, on every call (a per-call weight
    reorder into the kernel library's blocked layout).
    ``op_residuals`` (optional, measured profiles; absent = no correction): a learned per-op correction of
    the formula above, nn-Meter style: for each lane core count and op key (ATen type, plus ``@dtype`` when
    not float32), the traced ops as rows ``[features..., log(measured / formula)]`` with the feature names
    of ``features`` (``sparoa_env.costmodel.RESIDUAL_FEATURES``). An op is priced by the formula times
    ``exp(r)``, ``r`` the kernel-weighted mean residual of its ``neighbours`` nearest rows (Euclidean in the
    log features; weight ``exp(-(d / bandwidth)^2)``), shrunk towards 0 by ``prior_weight`` (far from every
    traced op, the formula alone). Fitted by ``sparoa calibrate`` (:func:`sparoa_env.calibrate.fit_op_residuals`).
    """

    name: str
    kind: str
    cores: int
    max_freq_mhz: float
    peak_gflops: float
    dtype_speedup: dict[str, float]
    parallel_fraction: float
    parallel_half_mflop: float
    mem_bw_frac: float
    launch_overhead_us: float
    fixed_overhead_us: float
    async_dispatch: bool
    half_efficiency_mflop: float
    op_efficiency: dict[str, float]
    aux_efficiency: float
    aux_op_efficiency: dict[str, float]
    cache_mb: float
    cache_bw_gbps: float
    sparsity: dict[str, SparsityCurve]
    static_power_w: float
    dynamic_power_w: float
    power_freq_exponent: float
    sources: dict[str, str]
    op_fixed_overhead_us: dict[str, float] = field(default_factory=dict)
    parallel_overhead_us: float = 0.0
    parallel_min_numel: float = 0.0
    serial_slowdown: float = 0.0
    conv_weight_us_per_kb: float = 0.0
    op_residuals: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PowerMode:
    """A DVFS power mode (``nvpmodel`` on Jetson): per-processor online cores and clock caps.

    ``memory_bw_frac`` scales the DRAM bandwidth when the mode caps the memory clock; ``budget_w`` is the
    mode's nominal power budget (informational; 0 when it has none).
    """

    name: str
    cores: dict[str, int]
    max_freq_mhz: dict[str, float]
    memory_bw_frac: float
    budget_w: float
    source: str


@dataclass(frozen=True)
class MemorySpec:
    """DRAM shared by all processors: ``dram_bw_gbps`` peak bandwidth (GB/s = 1e9 B/s), capacity."""

    dram_bw_gbps: float
    capacity_gb: float
    sources: dict[str, str]


@dataclass(frozen=True)
class TransferSpec:
    """A tensor handed from one processor to another.

    ``kind="unified"``: one DRAM (Jetson, Intel SoCs); a handoff costs a synchronisation plus cache
    maintenance or an on-DRAM copy: ``latency_us + bytes / bandwidth_gbps``. ``kind="pcie"``: a discrete
    device; the same formula with PCIe latency and bandwidth.

    ``first_switch_us`` (optional, measured profiles; absent = 0): extra time paid once per request by
    its first hand-off between lanes (an executor's first cross-lane hand-off of a pass wakes the other
    lane's worker and meets cold caches; later ones within the pass find it awake). Fitted by
    ``sparoa calibrate --handoff``.
    """

    kind: str
    latency_us: float
    bandwidth_gbps: float
    sources: dict[str, str]
    first_switch_us: float = 0.0


@dataclass(frozen=True)
class ThermalSpec:
    """First-order thermal model and throttling.

    Die temperature follows ``dT/dt = (ambient_c + resistance_c_per_w * P - T) / time_constant_s``.
    Clocks are capped at ``freq_frac = 1`` below ``throttle_start_c``, falling linearly to
    ``throttle_min_freq_frac`` at ``throttle_full_c``.
    """

    ambient_c: float
    resistance_c_per_w: float
    time_constant_s: float
    throttle_start_c: float
    throttle_full_c: float
    throttle_min_freq_frac: float
    sources: dict[str, str]


@dataclass(frozen=True)
class PowerSpec:
    """SoC-wide power outside the processors: ``idle_w`` (memory, rails, always-on logic)."""

    idle_w: float
    sources: dict[str, str]


@dataclass(frozen=True)
class CostRules:
    """Modelling rules of the cost model that are not tied to one processor.

    ``unhidden_frac``: share of the smaller of an op's compute and memory times that is not overlapped
    with the larger (0: ideal roofline max, 1: their sum). ``depthwise_reduction_sizes``: a convolution
    whose reduction length (FLOPs / (2 x output elements)) is one of these is costed as depthwise
    (``aten.convolution.depthwise`` in ``op_efficiency``). ``host_processor``: the processor the host
    (Python dispatch) thread runs on; ``host_freq_exponent``: host overhead scales as
    ``(max clock / mode clock) ** host_freq_exponent`` of that processor.
    """

    unhidden_frac: float
    depthwise_reduction_sizes: tuple[int, ...]
    host_processor: str
    host_freq_exponent: float
    sources: dict[str, str]


@dataclass(frozen=True)
class SocProfile:
    """A whole SoC. ``processors`` are in lane order: the CPU first, then the GPU, then the NPU."""

    name: str
    description: str
    provenance: str
    references: dict[str, str]
    processors: tuple[ProcessorSpec, ...]
    power_modes: dict[str, PowerMode]
    default_power_mode: str
    memory: MemorySpec
    transfer: TransferSpec
    thermal: ThermalSpec
    power: PowerSpec
    cost_rules: CostRules

    @property
    def processor_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.processors)

    def processor_index(self, name: str) -> int:
        for i, p in enumerate(self.processors):
            if p.name == name:
                return i
        raise ProfileError(f"profile {self.name!r} has no processor {name!r}; processors: "
                           f"{', '.join(self.processor_names)}")

    def mode(self, name: str) -> PowerMode:
        try:
            return self.power_modes[name]
        except KeyError:
            raise ProfileError(f"profile {self.name!r} has no power mode {name!r}; valid modes: "
                               f"{', '.join(self.power_modes)}") from None

    @property
    def is_measured(self) -> bool:
        return self.provenance.startswith("measured:")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "description": self.description,
            "provenance": self.provenance,
            "references": dict(self.references),
            "processors": [_processor_to_dict(p) for p in self.processors],
            "power_modes": {k: {"cores": dict(m.cores), "max_freq_mhz": dict(m.max_freq_mhz),
                                "memory_bw_frac": m.memory_bw_frac, "budget_w": m.budget_w,
                                "source": m.source}
                            for k, m in self.power_modes.items()},
            "default_power_mode": self.default_power_mode,
            "memory": _plain_to_dict(self.memory),
            "transfer": _transfer_to_dict(self.transfer),
            "thermal": _plain_to_dict(self.thermal),
            "power": _plain_to_dict(self.power),
            "cost_rules": _plain_to_dict(self.cost_rules),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")


def _plain_to_dict(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else (dict(v) if isinstance(v, dict) else v)
    return out


def _without_unset(d: dict[str, Any], obj: Any, optional: tuple[str, ...]) -> dict[str, Any]:
    """``d`` without the optional fields that ``obj`` leaves unset (0 or empty): they are absent unless a
    calibration fitted them, and a dropped field takes its source along (a source without its field fails
    to load)."""
    unset = {k for k in optional if not getattr(obj, k)}
    for k in unset:
        del d[k]
    if unset and isinstance(d.get("sources"), dict):
        d["sources"] = {k: v for k, v in d["sources"].items() if k not in unset}
    return d


def _transfer_to_dict(t: TransferSpec) -> dict[str, Any]:
    return _without_unset(_plain_to_dict(t), t, ("first_switch_us",))


def _processor_to_dict(p: ProcessorSpec) -> dict[str, Any]:
    d = _without_unset(_plain_to_dict(p), p, ("op_fixed_overhead_us", "parallel_overhead_us", "parallel_min_numel",
                                               "serial_slowdown", "conv_weight_us_per_kb", "op_residuals"))
    d["sparsity"] = {k: _plain_to_dict(c) for k, c in p.sparsity.items()}
    return d


# ------------------------------------------------------------------------------------------ loading
def available_profiles() -> list[str]:
    """Names of the shipped profiles (``load_profile`` accepts these or a path to a JSON file)."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.json"))


def load_profile(name_or_path: str | Path) -> SocProfile:
    """Load a shipped profile by name (``"orin-agx"``) or any profile JSON file by path."""
    s = str(name_or_path)
    path = Path(s)
    if not (s.endswith(".json") or path.is_file()):
        path = PROFILE_DIR / f"{s}.json"
        if not path.is_file():
            raise ProfileError(f"unknown profile {s!r}; shipped profiles: {', '.join(available_profiles())} "
                               f"(or give the path of a profile JSON file)")
    if not path.is_file():
        raise ProfileError(f"profile file not found: {path}")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ProfileError(f"{path}: not valid JSON ({e})") from None
    return profile_from_dict(d, source=str(path))


def profile_from_dict(d: Mapping[str, Any], source: str = "<dict>") -> SocProfile:
    """Build and validate a profile from its JSON-shaped dict; errors name ``source`` and the field."""
    r = _Reader(d, "", source)
    version = r.integer("schema_version", lo=1)
    if version != SCHEMA_VERSION:
        r.fail("schema_version", version, f"is not supported (this package reads version {SCHEMA_VERSION})")
    name = r.string("name")
    description = r.string("description", allow_empty=True)
    provenance = r.string("provenance")
    references = r.str_map("references")
    if not provenance.startswith(("spec-derived:", "measured:")) or provenance.endswith(":"):
        r.fail("provenance", provenance, "must be 'spec-derived:<sources>' or 'measured:<trace ids>'")

    raw_procs = r.list("processors")
    if not raw_procs:
        r.fail("processors", raw_procs, "must list at least one processor")
    procs: list[ProcessorSpec] = []
    for i, pd in enumerate(raw_procs):
        procs.append(_read_processor(pd, i, source, references))
    names = [p.name for p in procs]
    if len(set(names)) != len(names):
        r.fail("processors", names, "must have unique names")
    order = [PROCESSOR_KINDS.index(p.kind) for p in procs]
    if order != sorted(order):
        r.fail("processors", [p.kind for p in procs], "lane order must be cpu first, then gpu, then npu")

    modes_raw = r.mapping("power_modes")
    if not modes_raw:
        r.fail("power_modes", modes_raw, "must define at least one power mode")
    modes = {k: _read_mode(v, k, source, procs) for k, v in modes_raw.items()}
    default_mode = r.string("default_power_mode")
    if default_mode not in modes:
        r.fail("default_power_mode", default_mode, f"must be one of the power modes ({', '.join(modes)})")

    mr = r.child("memory")
    memory = MemorySpec(dram_bw_gbps=mr.number("dram_bw_gbps", lo=0, lo_open=True),
                        capacity_gb=mr.number("capacity_gb", lo=0, lo_open=True),
                        sources=mr.sources(references))
    tr = r.child("transfer")
    transfer = TransferSpec(kind=tr.choice("kind", ("unified", "pcie")), latency_us=tr.number("latency_us", lo=0),
                            bandwidth_gbps=tr.number("bandwidth_gbps", lo=0, lo_open=True),
                            first_switch_us=(tr.number("first_switch_us", lo=0) if "first_switch_us" in tr.d else 0.0),
                            sources=tr.sources(references))
    th = r.child("thermal")
    thermal = ThermalSpec(ambient_c=th.number("ambient_c", lo=-50, hi=80),
                          resistance_c_per_w=th.number("resistance_c_per_w", lo=0, lo_open=True),
                          time_constant_s=th.number("time_constant_s", lo=0, lo_open=True),
                          throttle_start_c=th.number("throttle_start_c", lo=0),
                          throttle_full_c=th.number("throttle_full_c", lo=0),
                          throttle_min_freq_frac=th.number("throttle_min_freq_frac", lo=0, hi=1, lo_open=True),
                          sources=th.sources(references))
    if thermal.throttle_full_c <= thermal.throttle_start_c:
        th.fail("throttle_full_c", thermal.throttle_full_c, "must be above throttle_start_c")
    pw = r.child("power")
    power = PowerSpec(idle_w=pw.number("idle_w", lo=0), sources=pw.sources(references))
    cr = r.child("cost_rules")
    rules = CostRules(unhidden_frac=cr.number("unhidden_frac", lo=0, hi=1),
                      depthwise_reduction_sizes=tuple(int(x) for x in cr.number_list("depthwise_reduction_sizes",
                                                                                     integer=True, lo=1)),
                      host_processor=cr.choice("host_processor", tuple(p.name for p in procs if p.kind == "cpu")),
                      host_freq_exponent=cr.number("host_freq_exponent", lo=0, hi=2),
                      sources=cr.sources(references))
    r.done()
    return SocProfile(name=name, description=description, provenance=provenance, references=references,
                      processors=tuple(procs), power_modes=modes, default_power_mode=default_mode,
                      memory=memory, transfer=transfer, thermal=thermal, power=power, cost_rules=rules)


def _read_processor(pd: Any, i: int, source: str, references: dict[str, str]) -> ProcessorSpec:
    r = _Reader(pd, f"processors[{i}]", source)
    name = r.string("name")
    r.path = f"processors.{name}"
    kind = r.choice("kind", PROCESSOR_KINDS)
    dtype_speedup = r.num_map("dtype_speedup", lo=0, lo_open=True)
    missing = [t for t in DTYPES if t not in dtype_speedup]
    extra = [t for t in dtype_speedup if t not in DTYPES]
    if missing or extra:
        r.fail("dtype_speedup", dtype_speedup, f"must give exactly the dtypes {list(DTYPES)} "
               f"(float32 is 1 by definition)")
    op_eff = r.num_map("op_efficiency", lo=0, hi=1, lo_open=True)
    if "default" not in op_eff:
        r.fail("op_efficiency", op_eff, "must have a 'default' entry")
    aux_op_eff = r.num_map("aux_op_efficiency", lo=0, hi=1, lo_open=True)
    if "default" in aux_op_eff:
        r.fail("aux_op_efficiency", aux_op_eff, "must not have a 'default' entry (aux_efficiency is the default)")
    curves_raw = r.mapping("sparsity")
    if sorted(curves_raw) != sorted(SPARSE_PATTERNS):
        r.fail("sparsity", sorted(curves_raw), f"must have exactly one curve per pattern {list(SPARSE_PATTERNS)}")
    curves = {k: _read_curve(v, f"{r.path}.sparsity.{k}", source, references) for k, v in curves_raw.items()}
    spec = ProcessorSpec(
        name=name, kind=kind,
        cores=r.integer("cores", lo=1),
        max_freq_mhz=r.number("max_freq_mhz", lo=0, lo_open=True),
        peak_gflops=r.number("peak_gflops", lo=0, lo_open=True),
        dtype_speedup=dtype_speedup,
        parallel_fraction=r.number("parallel_fraction", lo=0, hi=1),
        parallel_half_mflop=r.number("parallel_half_mflop", lo=0),
        mem_bw_frac=r.number("mem_bw_frac", lo=0, hi=1, lo_open=True),
        launch_overhead_us=r.number("launch_overhead_us", lo=0),
        fixed_overhead_us=r.number("fixed_overhead_us", lo=0),
        async_dispatch=r.boolean("async_dispatch"),
        half_efficiency_mflop=r.number("half_efficiency_mflop", lo=0),
        op_efficiency=op_eff,
        aux_efficiency=r.number("aux_efficiency", lo=0, hi=1, lo_open=True),
        aux_op_efficiency=aux_op_eff,
        cache_mb=r.number("cache_mb", lo=0),
        cache_bw_gbps=r.number("cache_bw_gbps", lo=0, lo_open=True),
        sparsity=curves,
        static_power_w=r.number("static_power_w", lo=0),
        dynamic_power_w=r.number("dynamic_power_w", lo=0),
        power_freq_exponent=r.number("power_freq_exponent", lo=0, hi=4),
        op_fixed_overhead_us=(r.num_map("op_fixed_overhead_us", lo=0) if "op_fixed_overhead_us" in r.d else {}),
        parallel_overhead_us=(r.number("parallel_overhead_us", lo=0) if "parallel_overhead_us" in r.d else 0.0),
        parallel_min_numel=(r.number("parallel_min_numel", lo=0) if "parallel_min_numel" in r.d else 0.0),
        serial_slowdown=(r.number("serial_slowdown", lo=0) if "serial_slowdown" in r.d else 0.0),
        conv_weight_us_per_kb=(r.number("conv_weight_us_per_kb", lo=0) if "conv_weight_us_per_kb" in r.d else 0.0),
        op_residuals=(_read_op_residuals(r.child("op_residuals")) if "op_residuals" in r.d else {}),
        sources=r.sources(references, exempt=("sparsity",)),  # each curve carries its own source
    )
    r.done()
    return spec


def _read_op_residuals(r: "_Reader") -> dict[str, Any]:
    """``op_residuals`` of a processor (see :class:`ProcessorSpec`): checked field by field, rows as lists."""
    from .costmodel import RESIDUAL_FEATURES

    features = r.list("features")
    if features != list(RESIDUAL_FEATURES):
        r.fail("features", features, f"must be exactly {list(RESIDUAL_FEATURES)} (the features this version "
                                     "computes; refit the profile with sparoa calibrate)")
    out = {"features": list(features), "neighbours": r.integer("neighbours", lo=1),
           "bandwidth": r.number("bandwidth", lo=0, lo_open=True), "prior_weight": r.number("prior_weight", lo=0)}
    tables = r.mapping("tables")
    if not tables:
        r.fail("tables", tables, "must hold at least one core count")
    width = len(features) + 1
    out["tables"] = {}
    for cores, by_key in tables.items():
        if not (isinstance(cores, str) and cores.isdigit() and int(cores) >= 1):
            r.fail(f"tables.{cores}", cores, "must be keyed by a core count (a positive integer as a string)")
        if not isinstance(by_key, Mapping) or not by_key:
            r.fail(f"tables.{cores}", by_key, "must be a non-empty object of op key -> rows")
        out["tables"][cores] = {}
        for key, rows in by_key.items():
            if not isinstance(rows, list) or not rows:
                r.fail(f"tables.{cores}.{key}", rows, "must be a non-empty list of rows")
            for j, row in enumerate(rows):
                if (not isinstance(row, list) or len(row) != width
                        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                                   for x in row)):
                    r.fail(f"tables.{cores}.{key}[{j}]", row, f"must be a list of {width} finite numbers "
                                                              f"({len(features)} features, then the log residual)")
            out["tables"][cores][key] = [list(map(float, row)) for row in rows]
    r.done()
    return out


def _read_curve(cd: Any, path: str, source: str, references: dict[str, str]) -> SparsityCurve:
    r = _Reader(cd, path, source)
    rho = r.number_list("rho", lo=0, hi=1)
    speedup = r.number_list("speedup", lo=0, lo_open=True)
    if len(rho) < 2 or rho[0] != 0.0 or rho[-1] != 1.0 or any(b <= a for a, b in zip(rho, rho[1:])):
        r.fail("rho", rho, "must be strictly increasing from 0 to 1 (at least two points)")
    if len(speedup) != len(rho):
        r.fail("speedup", speedup, f"must have one value per rho point ({len(rho)})")
    curve = SparsityCurve(rho=tuple(rho), speedup=tuple(speedup),
                          over=r.choice("over", ("weight_sparsity", "sparsity")),
                          min_channels=r.integer("min_channels", lo=0), min_batch=r.integer("min_batch", lo=1),
                          weight_storage=r.choice("weight_storage", ("dense", "compressed")),
                          index_overhead=r.number("index_overhead", lo=0),
                          source=r.string("source"))
    _check_source(curve.source, r, "source", references)
    r.done()
    return curve


def _read_mode(md: Any, name: str, source: str, procs: list[ProcessorSpec]) -> PowerMode:
    r = _Reader(md, f"power_modes.{name}", source)
    cores = r.mapping("cores")
    freqs = r.mapping("max_freq_mhz")
    by_name = {p.name: p for p in procs}
    for key, table in (("cores", cores), ("max_freq_mhz", freqs)):
        if sorted(table) != sorted(by_name):
            r.fail(key, table, f"must give every processor ({', '.join(by_name)}) and no other")
    out_cores: dict[str, int] = {}
    out_freqs: dict[str, float] = {}
    for pname, p in by_name.items():
        out_cores[pname] = int(_Reader(cores, f"{r.path}.cores", source).integer(pname, lo=1, hi=p.cores))
        out_freqs[pname] = _Reader(freqs, f"{r.path}.max_freq_mhz", source).number(
            pname, lo=0, hi=p.max_freq_mhz, lo_open=True)
    mode = PowerMode(name=name, cores=out_cores, max_freq_mhz=out_freqs,
                     memory_bw_frac=r.number("memory_bw_frac", lo=0, hi=1, lo_open=True),
                     budget_w=r.number("budget_w", lo=0), source=r.string("source"))
    r.done()
    return mode


def _check_source(text: str, r: "_Reader", key: str, references: dict[str, str]) -> None:
    if text.lower().startswith("assumption:"):
        return
    refs = _REF_RE.findall(text)
    if not refs:
        r.fail(key, text, "must cite a reference id in brackets ('[ds-agx-orin] ...') or start with 'assumption:'")
    unknown = [x for x in refs if x not in references]
    if unknown:
        r.fail(key, text, f"cites unknown reference id(s) {unknown}; known: {sorted(references)}")


class _Reader:
    """Reads typed fields from one JSON object, tracking which keys were used so that unknown keys fail."""

    def __init__(self, d: Any, path: str, source: str):
        self.source, self.path = source, path
        if not isinstance(d, Mapping):
            raise ProfileError(f"{source}: {path or '<top level>'}: expected a JSON object, got {d!r}")
        self.d = d
        self.used: set[str] = set()

    def _where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, value: Any, problem: str) -> None:
        raise ProfileError(f"{self.source}: {self._where(key)} {problem}, got {value!r}")

    def get(self, key: str) -> Any:
        if key not in self.d:
            raise ProfileError(f"{self.source}: missing field {self._where(key)}")
        self.used.add(key)
        return self.d[key]

    def done(self) -> None:
        self.done_except()

    def done_except(self, *pending: str) -> None:
        unknown = sorted(set(self.d) - self.used - set(pending))
        if unknown:
            where = self.path or "<top level>"
            raise ProfileError(f"{self.source}: {where}: unknown field(s) {unknown} "
                               f"(valid: {sorted(self.used | set(pending))})")

    def number(self, key: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> float:
        return self._check_number(key, self.get(key), lo, hi, lo_open)

    def _check_number(self, key: str, v: Any, lo, hi, lo_open: bool, integer: bool = False) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            self.fail(key, v, "must be a finite number")
        if integer and v != int(v):
            self.fail(key, v, "must be an integer")
        if lo is not None and (v < lo or (lo_open and v == lo)):
            self.fail(key, v, f"must be {'>' if lo_open else '>='} {lo}")
        if hi is not None and v > hi:
            self.fail(key, v, f"must be <= {hi}")
        return int(v) if integer else float(v)

    def integer(self, key: str, lo: int | None = None, hi: int | None = None) -> int:
        v = self.get(key)
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(key, v, "must be an integer")
        return int(self._check_number(key, v, lo, hi, False, integer=True))

    def boolean(self, key: str) -> bool:
        v = self.get(key)
        if not isinstance(v, bool):
            self.fail(key, v, "must be true or false")
        return v

    def string(self, key: str, allow_empty: bool = False) -> str:
        v = self.get(key)
        if not isinstance(v, str) or (not allow_empty and not v.strip()):
            self.fail(key, v, "must be a non-empty string" if not allow_empty else "must be a string")
        return v

    def choice(self, key: str, options: tuple[str, ...]) -> str:
        v = self.get(key)
        if v not in options:
            self.fail(key, v, f"must be one of {list(options)}")
        return v

    def list(self, key: str) -> list:
        v = self.get(key)
        if not isinstance(v, list):
            self.fail(key, v, "must be a list")
        return v

    def number_list(self, key: str, lo=None, hi=None, lo_open=False, integer=False) -> list[float]:
        v = self.list(key)
        return [self._check_number(f"{key}[{j}]", x, lo, hi, lo_open, integer=integer) for j, x in enumerate(v)]

    def mapping(self, key: str) -> dict[str, Any]:
        v = self.get(key)
        if not isinstance(v, Mapping):
            self.fail(key, v, "must be an object")
        return dict(v)

    def child(self, key: str) -> "_Reader":
        return _Reader(self.mapping(key), self._where(key), self.source)

    def num_map(self, key: str, lo=None, hi=None, lo_open=False) -> dict[str, float]:
        m = self.mapping(key)
        sub = _Reader(m, self._where(key), self.source)
        return {k: sub.number(k, lo=lo, hi=hi, lo_open=lo_open) for k in m}

    def str_map(self, key: str) -> dict[str, str]:
        m = self.mapping(key)
        sub = _Reader(m, self._where(key), self.source)
        return {k: sub.string(k) for k in m}

    def sources(self, references: dict[str, str], exempt: tuple[str, ...] = ()) -> dict[str, str]:
        """The object's ``sources``: exactly one per field read so far (except ``name`` and ``exempt``), each
        citing a reference or stating an assumption. Call it after every other field has been read."""
        unknown = sorted(set(self.d) - self.used - {"sources"})
        if unknown:  # report a typo as what it is before complaining about its source
            self.done_except("sources")
        src = self.str_map("sources")
        sub = _Reader(src, self._where("sources"), self.source)
        expected = set(self.used) - {"sources", "name"} - set(exempt)
        missing = sorted(expected - set(src))
        if missing:
            raise ProfileError(f"{self.source}: {self._where('sources')}: no source for field(s) {missing}")
        extra = sorted(set(src) - expected)
        if extra:
            raise ProfileError(f"{self.source}: {self._where('sources')}: source(s) for unknown field(s) {extra}")
        for k, text in src.items():
            _check_source(text, sub, k, references)
        return src
