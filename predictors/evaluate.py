"""Regret of predicted thresholds against searched ones, per model, in the simulator.

For every model and each of its evaluation cases (hardware states), the searched optimum is the best
cell of the grid search (:func:`predictors.dataset.search_case`), and every method's thresholds are run
with :func:`predictors.dataset.rule_objective` on the **same seeds**. Regret of a case
``= (objective(method) - objective(searched)) / objective(searched)``, where the objective is the
latency (ms) plus ``energy_weight`` times the energy (mJ) of the case (only latency when the weight is
0, as in most cases); a model's regret is the mean over its cases, ``regret_mean`` the mean over models.

Methods: ``transformer_lstm`` (the checkpoint under test), ``pooled_mlp`` (the non-sequential
comparator), ``fixed`` (the single threshold pair best on the training data, from the checkpoint's
meta) and ``heuristic`` (:func:`sparoa_env.thresholds.heuristic_thresholds`, the env's default).

Cases of a model that the dataset already holds (same case key: spec, hardware state, seeds, grid
version) reuse its searched landscape; other models (unseen ``file.py:function`` specs included) are
searched now, ``per_model`` cases each, drawn by :func:`predictors.dataset.sample_cases`. By default the
models are the held-out specs of the checkpoint's dataset (every variant of the held-out base models).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .dataset import DEFAULT_DATASET, case_of_row, load_case_graph, rule_objective, sample_cases, search_case

__all__ = ["evaluate", "format_table", "METHODS"]

METHODS = ("transformer_lstm", "pooled_mlp", "fixed", "heuristic")


def _time_predict(pred, graph, profile, mode: str, background: Any, energy_weight: float, repeats: int = 30) -> float:
    """Median wall time (ms) of one full prediction (features + network), after warm-up."""
    for _ in range(3):
        pred.predict(graph, profile, mode, background, energy_weight=energy_weight)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        pred.predict(graph, profile, mode, background, energy_weight=energy_weight)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1e3)


def _load(checkpoint: str | Path | None, arch: str, option: str):
    """The predictor of ``checkpoint`` (default: the shipped one of ``arch``), refusing a missing checkpoint
    or one of another architecture (its results would be labelled ``arch``)."""
    from . import PredictorUnavailable, load_predictor, shipped_checkpoint

    stem = Path(checkpoint).with_suffix("") if checkpoint is not None else shipped_checkpoint(arch)
    missing = [str(p) for p in (stem.with_suffix(".pt"), stem.with_suffix(".json")) if not p.is_file()]
    if missing:
        what = f"{option} {checkpoint}" if checkpoint is not None else f"the shipped {arch} checkpoint"
        raise FileNotFoundError(f"{what}: predictor checkpoint file(s) not found: {', '.join(missing)}")
    try:
        pred = load_predictor(stem)
    except PredictorUnavailable as e:  # torch missing
        raise ValueError(f"{option} {stem}: {e}") from e
    if pred.cfg.arch != arch:
        other = "--mlp-checkpoint" if arch == "transformer_lstm" else "--checkpoint"
        raise ValueError(f"{option} {checkpoint}: a {pred.cfg.arch} checkpoint, but {option} takes a {arch} one "
                         f"(pass a {pred.cfg.arch} checkpoint with {other})")
    return pred


def evaluate(models: Sequence[str] | None = None, *, checkpoint: str | Path | None = None,
             mlp_checkpoint: str | Path | None = None, data: str | Path | None = DEFAULT_DATASET,
             per_model: int = 6, seed: int = 0, fresh: bool = False, threads: int | None = 1,
             log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Per-model regret of every method; see the module docstring. Returns the JSON document.

    ``threads`` sets torch's intra-op threads for this process (1: the networks are too small to gain
    from more, and extra threads only add contention); None leaves it alone."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    from sparoa_env.costmodel import CostModel
    from sparoa_env.profile import load_profile
    from sparoa_env.thresholds import heuristic_thresholds

    from . import load_predictor, shipped_checkpoint

    if isinstance(per_model, bool) or not isinstance(per_model, int) or per_model < 1:
        raise ValueError(f"--per-model must be a positive integer, got {per_model!r}")
    if models is not None:
        models = list(models)
        if not models:
            raise ValueError("--models names no model")
    pred = _load(checkpoint, "transformer_lstm", "--checkpoint")
    mlp = None
    mlp_path = Path(mlp_checkpoint) if mlp_checkpoint is not None else shipped_checkpoint("pooled_mlp")
    if mlp_path.with_suffix(".pt").exists():
        mlp = _load(mlp_path, "pooled_mlp", "--mlp-checkpoint")
    elif log and mlp_checkpoint is not None:
        log(f"no comparator checkpoint at {mlp_path.with_suffix('.pt')} (--mlp-checkpoint): pooled_mlp not evaluated")
    fixed = pred.meta.get("fixed_rule")
    if models is None:
        models = pred.meta.get("dataset", {}).get("heldout_specs", [])
        if not models:
            raise ValueError("the checkpoint names no held-out models; pass --models")
    rows_by_spec: dict[str, list[dict]] = {}
    if data is not None and Path(data).exists() and not fresh:
        from .dataset import read_dataset

        df = read_dataset(data)
        for r in df.to_dict("records"):
            rows_by_spec.setdefault(r["spec"], []).append(r)
    profiles: dict[str, Any] = {}
    cms: dict[str, Any] = {}
    per_model_out = []
    timings: dict[str, list[float]] = {"transformer_lstm": [], "pooled_mlp": []}
    t0 = time.perf_counter()
    for spec in models:
        rows = rows_by_spec.get(spec) or []
        if not rows:
            rows = [search_case(c) for c in sample_cases([spec], per_model, seed)]
        res: dict[str, list[float]] = {m: [] for m in METHODS}
        lat: dict[str, list[float]] = {m: [] for m in METHODS}
        best_lat, best_obj = [], []
        picks: dict[str, list[tuple[float, float]]] = {m: [] for m in METHODS}
        for k, row in enumerate(rows):
            case = case_of_row(row)
            prof = profiles.get(case.profile) or profiles.setdefault(case.profile, load_profile(case.profile))
            cm = cms.get(case.profile) or cms.setdefault(case.profile, CostModel(prof))
            graph = load_case_graph(case.spec, case.batch)
            bg = case.background_value
            th: dict[str, tuple[float, float]] = {
                "transformer_lstm": pred.predict(graph, prof, case.power_mode, bg, energy_weight=case.energy_weight),
                "heuristic": heuristic_thresholds(graph, cm.op_costs(graph, case.power_mode).nominal_ms),
            }
            if mlp is not None:
                th["pooled_mlp"] = mlp.predict(graph, prof, case.power_mode, bg, energy_weight=case.energy_weight)
            if fixed:
                th["fixed"] = (fixed["rho_star"], fixed["i_star"])
            if k == 0:  # one timing per model
                timings["transformer_lstm"].append(_time_predict(pred, graph, prof, case.power_mode, bg, case.energy_weight))
                if mlp is not None:
                    timings["pooled_mlp"].append(_time_predict(mlp, graph, prof, case.power_mode, bg, case.energy_weight))
            best = float(row["best_objective"])
            best_obj.append(best)
            best_lat.append(float(row["best_latency_ms"]))
            for m, (r, i) in th.items():
                obj, lat_ms, _ = rule_objective(graph, case, r, i, profile=prof, cost_model=cm)
                res[m].append(obj / best - 1.0)
                lat[m].append(lat_ms)
                picks[m].append((r, i))
        entry: dict[str, Any] = {"model": spec, "cases": len(rows),
                                 "latency_searched_ms": float(np.mean(best_lat)),
                                 "objective_searched": float(np.mean(best_obj))}
        for m in METHODS:
            if res[m]:
                entry[f"regret_{m}"] = float(np.mean(res[m]))
                entry[f"latency_{m}_ms"] = float(np.mean(lat[m]))
        entry["regret"] = entry["regret_transformer_lstm"]
        entry["latency_predicted_ms"] = entry["latency_transformer_lstm_ms"]
        per_model_out.append(entry)
        if log:
            log(f"{spec}: " + "  ".join(f"{m} {100 * entry[f'regret_{m}']:.2f}%" for m in METHODS if f"regret_{m}" in entry)
                + f"  ({time.perf_counter() - t0:.0f}s)")
    out: dict[str, Any] = {
        "per_model": per_model_out,
        "regret_mean": float(np.mean([e["regret"] for e in per_model_out])),
        "regret_mean_by_method": {m: float(np.mean([e[f"regret_{m}"] for e in per_model_out]))
                                  for m in METHODS if all(f"regret_{m}" in e for e in per_model_out)},
        "predict_ms_median": {m: float(np.median(v)) for m, v in timings.items() if v},
        "checkpoint": str(Path(checkpoint) if checkpoint else shipped_checkpoint()),
        "fixed_rule": fixed,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return out


def format_table(doc: dict[str, Any]) -> str:
    methods = [m for m in METHODS if m in doc["regret_mean_by_method"]]
    head = f"{'model':40s} {'cases':>5s} {'searched ms':>11s} " + " ".join(f"{m:>16s}" for m in methods)
    lines = ["regret vs searched thresholds (objective = latency + energy_weight x energy), mean over cases", head]
    for e in doc["per_model"]:
        lines.append(f"{e['model']:40s} {e['cases']:5d} {e['latency_searched_ms']:11.3f} "
                     + " ".join(f"{100 * e[f'regret_{m}']:15.2f}%" for m in methods))
    lines.append(f"{'mean':40s} {'':5s} {'':11s} " + " ".join(f"{100 * doc['regret_mean_by_method'][m]:15.2f}%" for m in methods))
    if doc.get("predict_ms_median"):
        lines.append("prediction time per model (median, features + network): "
                     + ", ".join(f"{m} {v:.3f} ms" for m, v in doc["predict_ms_median"].items()))
    if doc.get("fixed_rule"):
        f = doc["fixed_rule"]
        lines.append(f"fixed rule: rho* = {f['rho_star']:.2f}, I* = {f['i_star']:.3g} (best single pair on the training cases)")
    return "\n".join(lines)
