"""Labelled threshold samples from the simulator: features of a (model, hardware state) case and the
latency landscape of the threshold rule over a fixed (rho*, I*) grid.

A *case* is one model spec (zoo name, sparse variant or ``file.py:function``) at one batch size, on one SoC
profile in one power mode, under one background load, with one energy weight. For every case the
generator

1. places the graph's ops with :func:`sparoa_env.thresholds.threshold_rule` for every candidate pair of
   :data:`RHO_GRID` x :data:`I_GRID` (pairs that give the same placement are simulated once),
2. runs each distinct placement in the SimPy SoC (:class:`~sparoa_env.sim.backend.SimBackend`, one
   request per episode) on the case's seeds -- the same seeds for every candidate, so that candidates are
   compared on identical background bursts and starting temperatures,
3. stores the mean latency (ms) and energy (mJ) of every grid cell, the objective
   ``latency + energy_weight * energy``, the best cell (the labelled thresholds), the op feature sequence
   (:func:`op_features`) and the hardware-state vector (:func:`hw_features`).

Files are Parquet, one row per case, keyed by ``case_key`` (a hash of everything that defines the case).
Generation is deterministic given its seed, appends, skips cases whose key is already in the file and
rewrites the file atomically every few cases, so an interrupted run resumes where it stopped.

pandas and pyarrow are needed here (``pip install 'sparoa-env[traces]'``); torch only to extract graphs
that are neither cached in ``predictors/data/graphs`` nor shipped with the package.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from sparoa_env.graph import OpGraph
from sparoa_env.thresholds import RHO_GRID, threshold_rule

__all__ = [
    "RHO_GRID", "I_GRID", "GRID_VERSION", "OP_FEATURE_COLUMNS", "HW_FEATURE_COLUMNS", "DATA_DIR", "GRAPH_CACHE",
    "DEFAULT_DATASET", "DEFAULT_HELDOUT", "DEFAULT_TRAIN_MODELS", "VARIANTS", "Case", "load_case_graph",
    "op_features", "hw_features", "background_shares", "sample_cases", "rule_objective", "search_case",
    "generate", "read_dataset", "DATASET_COLUMNS", "grid_cell",
]

#: Candidate intensity thresholds (FLOP/byte): 0 (only zero-FLOP ops qualify) and 25 log-spaced values
#: from 0.1 to 1000, which covers every op of the zoo at batch 1..8.
I_GRID = np.concatenate([[0.0], 10.0 ** np.linspace(-1.0, 3.0, 25)])
#: bumped whenever the grid, the features or the labelling change (part of every case key)
GRID_VERSION = 1

DATA_DIR = Path(__file__).parent / "data"
GRAPH_CACHE = DATA_DIR / "graphs"
DEFAULT_DATASET = DATA_DIR / "thresholds.parquet"
#: base models whose every variant is kept out of training (evaluation on unseen architectures)
DEFAULT_HELDOUT = ("mobilenet_v2", "resnet50", "vit_small")
DEFAULT_TRAIN_MODELS = ("mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "resnet18", "vit_tiny",
                        "swin_tiny", "bert_tiny", "bert_base")
VARIANTS = ("", "@unstructured-0.5", "@unstructured-0.8", "@unstructured-0.95", "@2:4", "@structured-0.5")

#: per-op features (the static observation columns without the thresholds and the rule's verdict)
OP_FEATURE_COLUMNS = (
    "rho", "weight_sparsity", "input_sparsity", "log_intensity", "log_flops", "log_bytes", "log_aux_flops",
    "cat_conv", "cat_matmul", "cat_attention", "cat_norm", "cat_pool", "cat_elementwise", "cat_other",
    "log_cpu_us", "log_acc_us", "progress",
)
#: the hardware state of a case, profile-agnostic (fractions of the processor's own maxima)
HW_FEATURE_COLUMNS = (
    "cpu_freq_frac", "cpu_cores_frac", "acc_freq_frac", "mem_bw_frac",
    "bg_cpu_share", "bg_acc_share", "bg_bw_frac", "bg_bursts",
    "log2_batch_div4", "energy_weight_x10",
)
_BACKGROUND_KINDS = ("none", "light", "heavy", "dynamic", "random")
_PROFILES = (("orin-agx", 0.75), ("orin-nano", 0.25))
_BATCHES = ((1, 0.5), (2, 0.15), (4, 0.2), (8, 0.15))
_ENERGY_WEIGHTS = ((0.0, 0.75), (0.05, 0.25))


@dataclass(frozen=True)
class Case:
    """One labelled sample's definition. ``background`` is a preset name or a canonical JSON dict."""

    spec: str
    profile: str = "orin-agx"
    power_mode: str = "MAXN"
    background: str = "none"
    batch: int = 1
    energy_weight: float = 0.0
    seeds: tuple[int, ...] = (0, 1)

    @property
    def background_value(self) -> str | dict:
        return json.loads(self.background) if self.background.startswith("{") else self.background

    @property
    def key(self) -> str:
        d = dataclasses.asdict(self)
        d["grid_version"] = GRID_VERSION
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------- graphs

def _cache_path(spec: str) -> Path | None:
    try:
        from sparoa_env.zoo import graph_filename

        return GRAPH_CACHE / (graph_filename(spec) + ".gz")
    except ValueError:  # not a zoo spec
        return None


_GRAPHS: dict[str, OpGraph] = {}


def load_case_graph(spec: str, batch: int = 1, *, extract: bool = True) -> OpGraph:
    """The OpGraph of ``spec`` at ``batch``.

    Zoo specs are read from ``predictors/data/graphs/<name>.json.gz`` (graphs this package extracted for
    its dataset), else from the package's shipped graphs (``sparoa_env.modelspec``), else extracted with
    torch and cached there. A path to an OpGraph JSON and ``file.py:function`` go to
    :func:`sparoa_env.modelspec.load_graph`. Other batch sizes scale the batch-1 graph
    (:meth:`OpGraph.with_batch_scaled`), the same approximation for every case.
    """
    g = _GRAPHS.get(spec)
    if g is None:
        path = _cache_path(spec)
        if path is not None and path.exists():
            g = OpGraph.from_json(gzip.decompress(path.read_bytes()).decode(), source=str(path))
        elif path is not None:
            g = _shipped_or_extract(spec, path, extract)
        elif spec.endswith(".json") and Path(spec).exists():
            g = OpGraph.load(spec)
        else:
            from sparoa_env.modelspec import load_graph

            g = load_graph(spec, 1)
        _GRAPHS[spec] = g
    return g if batch == g.batch else g.with_batch_scaled(batch)


def _shipped_or_extract(spec: str, cache: Path, extract: bool) -> OpGraph:
    from sparoa_env.zoo import GRAPH_DIR, extract_zoo_graph, graph_filename

    shipped = GRAPH_DIR / graph_filename(spec)
    if shipped.exists():
        return OpGraph.load(shipped)
    if not extract:
        raise FileNotFoundError(f"no cached or shipped graph for {spec!r} (looked in {cache} and {shipped})")
    g = extract_zoo_graph(spec)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_bytes(gzip.compress(g.to_json(indent=None).encode(), mtime=0))
    tmp.replace(cache)
    return g


# --------------------------------------------------------------------------------------------- features

def op_features(graph: OpGraph, nominal_ms: np.ndarray) -> np.ndarray:
    """``(n_ops, len(OP_FEATURE_COLUMNS))`` float32: the env's static op features (same scaling), with
    the threshold-dependent columns left out. ``nominal_ms`` is the cost model's ``(n_ops, n_lanes)``
    table for the case's power mode."""
    from sparoa_env.envs.features import STATIC_COLUMNS, static_op_features

    full = static_op_features(graph, nominal_ms, 0.0, 0.0)
    return np.ascontiguousarray(full[:, [STATIC_COLUMNS.index(c) for c in OP_FEATURE_COLUMNS]])


def background_shares(background: Any) -> tuple[float, float, float, float]:
    """Expected (CPU share, accelerator share, DRAM bandwidth fraction, mean active bursts) that a
    background load takes: the static part plus the stationary mean of the random bursts."""
    from sparoa_env.sim.background import background_spec

    b = background_spec(background)
    bursts = b.burst_rate_per_s * b.burst_mean_ms / 1000.0
    share = 0.5 * (b.burst_share_min + b.burst_share_max)
    p_cpu = 1.0 - b.burst_gpu_prob
    p_gpu = 1.0 - b.burst_cpu_prob
    cpu = min(b.static_cpu_share + bursts * share * p_cpu, b.max_share)
    acc = min(b.static_gpu_share + bursts * share * p_gpu, b.max_share)
    bw = min(b.static_bw_frac + bursts * share * b.burst_bw_frac_per_share, 1.0)
    return float(cpu), float(acc), float(bw), float(bursts)


def hw_features(profile, mode: str, background: Any = "none", batch: int = 1, energy_weight: float = 0.0) -> np.ndarray:
    """``(len(HW_FEATURE_COLUMNS),)`` float32 describing the hardware state of a case (see the columns).

    The accelerator is lane 1 (the profile's first accelerator), as in the threshold rule."""
    m = profile.mode(mode)
    cpu, acc = profile.processors[0], profile.processors[1]
    bg = background_shares(background)
    return np.array([
        m.max_freq_mhz[cpu.name] / cpu.max_freq_mhz, m.cores[cpu.name] / cpu.cores,
        m.max_freq_mhz[acc.name] / acc.max_freq_mhz, m.memory_bw_frac,
        bg[0], bg[1], bg[2], min(bg[3], 4.0),
        math.log2(batch) / 4.0, 10.0 * energy_weight,
    ], dtype=np.float32)


# ------------------------------------------------------------------------------------------- simulation

def grid_cell(rho_star: float, i_star: float) -> tuple[int, int] | None:
    """Grid indices of a threshold pair, or None when it is off the grid."""
    a = np.flatnonzero(np.isclose(RHO_GRID, rho_star, rtol=0, atol=1e-9))
    b = np.flatnonzero(np.isclose(I_GRID, i_star, rtol=1e-9, atol=1e-12))
    return (int(a[0]), int(b[0])) if len(a) and len(b) else None


class _Runner:
    """Runs rule placements of one graph in one hardware state on fixed seeds (SimBackend directly)."""

    def __init__(self, graph: OpGraph, case: Case, profile=None, cost_model=None) -> None:
        from sparoa_env.costmodel import CostModel
        from sparoa_env.profile import SocProfile, load_profile
        from sparoa_env.sim.backend import SimBackend

        self.graph = graph
        self.case = case
        self.profile = profile if isinstance(profile, SocProfile) else load_profile(case.profile)
        self.cm = cost_model if cost_model is not None else CostModel(self.profile)
        self.backend = SimBackend(profile=self.profile, power_mode=case.power_mode, background=case.background_value,
                                  cost_model=self.cm, record=False)
        f = graph.features
        self.rho, self.intensity = f["sparsity"], f["intensity"]

    def run_mask(self, cpu_mask: np.ndarray) -> tuple[float, float]:
        """Mean (latency ms, energy mJ) over the case's seeds with ops on the CPU where ``cpu_mask``."""
        lat = en = 0.0
        lanes = np.where(cpu_mask, 0, 1).tolist()
        for s in self.case.seeds:
            self.backend.reset(graph=self.graph, rng=np.random.default_rng(s))
            sim = self.backend.sim  # drive the SoC model directly: no per-step Decision to build
            while not sim.finished:
                sim.place(lanes[sim.pending[1]])
                sim.run_to_decision()
            lat += sim.latencies_ms()[0]
            en += sim.energy_acc / sim.n_requests
        n = len(self.case.seeds)
        return lat / n, en / n

    def objective(self, rho_star: float, i_star: float) -> tuple[float, float, float]:
        lat, en = self.run_mask(threshold_rule(self.rho, self.intensity, rho_star, i_star))
        return lat + self.case.energy_weight * en, lat, en

    def landscape(self) -> tuple[np.ndarray, np.ndarray]:
        """(latency, energy) over RHO_GRID x I_GRID; each distinct placement simulated once."""
        cpu = threshold_rule(self.rho[None, None, :], self.intensity[None, None, :],
                             RHO_GRID[:, None, None], I_GRID[None, :, None])
        uniq, inv = np.unique(cpu.reshape(-1, len(self.rho)), axis=0, return_inverse=True)
        res = np.array([self.run_mask(m) for m in uniq])
        shape = (len(RHO_GRID), len(I_GRID))
        return res[inv.ravel(), 0].reshape(shape), res[inv.ravel(), 1].reshape(shape)


def rule_objective(graph: OpGraph, case: Case, rho_star: float, i_star: float, *, profile=None,
                   cost_model=None) -> tuple[float, float, float]:
    """(objective, latency ms, energy mJ) of the threshold rule with ``(rho_star, i_star)`` in the sim,
    mean over ``case.seeds``; objective = latency + energy_weight * energy."""
    return _Runner(graph, case, profile, cost_model).objective(rho_star, i_star)


def _best_cell(obj: np.ndarray) -> tuple[int, int]:
    """The optimal cell; among ties (equal placements), the one nearest the centre of the tied set in
    grid-index space, so that the label sits inside its optimal region rather than on its edge."""
    best = np.argwhere(obj <= obj.min() * (1 + 1e-9))
    centre = best.mean(axis=0)
    k = int(np.argmin(((best - centre) ** 2).sum(axis=1)))
    return int(best[k, 0]), int(best[k, 1])


def search_case(case: Case, graph: OpGraph | None = None, *, split: str = "", profile=None,
                cost_model=None) -> dict[str, Any]:
    """Search the grid for one case and return its dataset row (see module docstring)."""
    from sparoa_env.costmodel import CostModel
    from sparoa_env.profile import load_profile
    from sparoa_env.thresholds import heuristic_thresholds

    t0 = time.perf_counter()
    graph = graph if graph is not None else load_case_graph(case.spec, case.batch)
    profile = profile if profile is not None else load_profile(case.profile)
    cm = cost_model if cost_model is not None else CostModel(profile)
    nominal = cm.op_costs(graph, case.power_mode).nominal_ms
    runner = _Runner(graph, case, profile, cm)
    lat, en = runner.landscape()
    obj = lat + case.energy_weight * en
    a, b = _best_cell(obj)
    h_rho, h_i = heuristic_thresholds(graph, nominal)
    h_obj = runner.objective(h_rho, h_i)[0]
    feats = op_features(graph, nominal)
    base, _, variant = case.spec.partition("@")
    return {
        "case_key": case.key, "spec": case.spec, "base_model": base, "variant": variant or "dense", "split": split,
        "profile": case.profile, "power_mode": case.power_mode, "background": case.background,
        "batch": case.batch, "energy_weight": case.energy_weight, "seeds": list(case.seeds),
        "grid_version": GRID_VERSION, "n_ops": len(graph),
        "op_features": feats.ravel().tolist(), "hw_features": hw_features(
            profile, case.power_mode, case.background_value, case.batch, case.energy_weight).tolist(),
        "latency_grid": lat.astype(np.float32).ravel().tolist(),
        "energy_grid": en.astype(np.float32).ravel().tolist(),
        "rho_star": float(RHO_GRID[a]), "i_star": float(I_GRID[b]),
        "best_objective": float(obj[a, b]), "best_latency_ms": float(lat[a, b]),
        "heuristic_rho_star": h_rho, "heuristic_i_star": h_i, "heuristic_objective": float(h_obj),
        "search_s": time.perf_counter() - t0,
    }


# ---------------------------------------------------------------------------------------------- sampling

def _pick(rng: np.random.Generator, table: Sequence[tuple[Any, float]]) -> Any:
    vals, p = zip(*table)
    return vals[int(rng.choice(len(vals), p=np.asarray(p) / sum(p)))]


def sample_cases(specs: Iterable[str], per_model: int, seed: int = 0, n_seeds: int = 2) -> list[Case]:
    """``per_model`` hardware states for each spec. Case ``i`` of a spec depends only on (seed, spec,
    i), so a larger ``per_model`` or another spec list keeps the cases already drawn."""
    from sparoa_env.profile import load_profile

    modes = {p: tuple(load_profile(p).power_modes) for p, _ in _PROFILES}
    cases = []
    for spec in specs:
        spec_id = int.from_bytes(hashlib.sha1(spec.encode()).digest()[:4], "little")
        for i in range(per_model):
            rng = np.random.default_rng([seed, spec_id, i])
            profile = _pick(rng, _PROFILES)
            mode = modes[profile][int(rng.integers(len(modes[profile])))]
            kind = _BACKGROUND_KINDS[int(rng.integers(len(_BACKGROUND_KINDS)))]
            if kind == "random":
                bg = {"static_cpu_share": round(float(rng.uniform(0, 0.7)), 3),
                      "static_gpu_share": round(float(rng.uniform(0, 0.8)), 3),
                      "static_bw_frac": round(float(rng.uniform(0, 0.4)), 3)}
                background = json.dumps(bg, sort_keys=True)
            else:
                background = kind
            batch = int(_pick(rng, _BATCHES))
            ew = float(_pick(rng, _ENERGY_WEIGHTS))
            seeds = tuple(int(s) for s in rng.integers(0, 2**31 - 1, n_seeds))
            cases.append(Case(spec=spec, profile=profile, power_mode=mode, background=background, batch=batch,
                              energy_weight=ew, seeds=seeds))
    return cases


# -------------------------------------------------------------------------------------------- Parquet I/O

def _require_pandas():
    try:
        import pandas as pd
        import pyarrow  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("the predictor dataset needs pandas and pyarrow: pip install 'sparoa-env[traces]'") from e
    return pd


#: columns every dataset row has and that training / evaluation read (checked by :func:`read_dataset`)
DATASET_COLUMNS = ("case_key", "spec", "base_model", "split", "profile", "power_mode", "background", "batch",
                   "energy_weight", "seeds", "op_features", "hw_features", "latency_grid", "energy_grid",
                   "best_objective", "best_latency_ms")


def read_dataset(path: str | Path = DEFAULT_DATASET):
    """The dataset as a pandas DataFrame (one row per case)."""
    pd = _require_pandas()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"predictor dataset not found: {path} (make it with `sparoa predictor generate`)")
    if not path.is_file():
        raise ValueError(f"predictor dataset {path} is not a file")
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow's messages name '<Buffer>', not the file
        raise ValueError(f"predictor dataset {path} is not a readable Parquet file ({type(e).__name__}: {e})") from e
    missing = [c for c in DATASET_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"predictor dataset {path} lacks column(s) {', '.join(missing)} "
                         "(not a file made by `sparoa predictor generate`)")
    return df


def _write(rows: list[dict], path: Path) -> None:
    pd = _require_pandas()
    df = pd.DataFrame(rows)
    for c in ("op_features", "hw_features", "latency_grid", "energy_grid"):
        df[c] = [np.asarray(v, dtype=np.float32) for v in df[c]]
    tmp = path.with_name(path.name + ".tmp")
    df.to_parquet(tmp, index=False, compression="zstd")
    tmp.replace(path)


def generate(out: str | Path = DEFAULT_DATASET, *, models: Sequence[str] | None = None, heldout: Sequence[str] = DEFAULT_HELDOUT,
             per_model: int = 8, heldout_per_model: int = 6, seed: int = 0, n_seeds: int = 2, force: bool = False,
             flush_every: int = 10, log: Callable[[str], None] | None = print, max_cases: int | None = None) -> int:
    """Append labelled cases to ``out``; returns the number of new rows.

    ``models`` are specs (default: the train and held-out base models with every variant in
    :data:`VARIANTS`); a spec whose base model is in ``heldout`` gets ``heldout_per_model`` cases and
    ``split = "heldout"``, the others ``per_model`` cases and ``split = "train"``. Existing rows are kept
    and their cases skipped; ``force`` starts the file afresh.
    """
    out = Path(out)
    if models is None:
        models = [m + v for m in (*DEFAULT_TRAIN_MODELS, *heldout) for v in VARIANTS]
    rows: list[dict] = []
    if out.exists() and not force:
        rows = read_dataset(out).to_dict("records")
    done = {r["case_key"] for r in rows}
    held = set(heldout)
    todo = []
    for spec in models:
        is_held = spec.partition("@")[0] in held
        for c in sample_cases([spec], heldout_per_model if is_held else per_model, seed, n_seeds):
            if c.key not in done:
                todo.append((c, "heldout" if is_held else "train"))
    if max_cases is not None:
        todo = todo[:max_cases]
    out.parent.mkdir(parents=True, exist_ok=True)
    new = 0
    t0 = time.perf_counter()
    for k, (case, split) in enumerate(todo):
        rows.append(search_case(case, split=split))
        new += 1
        if log:
            r = rows[-1]
            log(f"[{k + 1}/{len(todo)}] {case.spec} {case.profile}/{case.power_mode} bg={case.background} "
                f"b={case.batch} w={case.energy_weight}: best rho*={r['rho_star']:.2f} I*={r['i_star']:.3g} "
                f"obj={r['best_objective']:.3f} heuristic +{100 * (r['heuristic_objective'] / r['best_objective'] - 1):.1f}% "
                f"({r['search_s']:.1f}s)")
        if new % flush_every == 0:
            _write(rows, out)
    if new or force or not out.exists():
        if rows:
            _write(rows, out)
    if log:
        log(f"{new} new case(s) in {time.perf_counter() - t0:.0f}s; {len(rows)} in {out}")
    return new


def case_of_row(row: Mapping[str, Any]) -> Case:
    return Case(spec=row["spec"], profile=row["profile"], power_mode=row["power_mode"], background=row["background"],
                batch=int(row["batch"]), energy_weight=float(row["energy_weight"]),
                seeds=tuple(int(s) for s in row["seeds"]))
