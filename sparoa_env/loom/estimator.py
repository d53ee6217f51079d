"""Predict a stitched variant's accuracy and latency from its blocks' features, without running it.

As in the paper, gradient-boosted trees (scikit-learn's ``GradientBoostingRegressor``; LightGBM and
XGBoost are not installed here). Features of a stitched variant ``(v_0 .. v_{K-1})``, per block ``k``:

* the variant's kind (one-hot: dense, unstructured, structured, fp16, int8), pruning level and measured
  weight sparsity;
* the *single-block profile*: held-out accuracy of the model with only block ``k`` replaced by ``v_k``
  (the rest dense), minus the dense accuracy. These ``K * (V - 1) + 1`` measurements are the profiling
  the estimator needs instead of all ``V ** K`` stitched variants;
* for latency, the block's table latency on its processor, whether it changes processor, and whether a
  dtype adapter sits in front of it;

plus the sum of the single-block drops and the number of adapters. Targets: the measured held-out
accuracy (:mod:`sparoa_env.loom.stitch`) and the simulated latency alone (:meth:`LoomTask.solo_latency_ms`).

:func:`evaluate_estimator` trains on ``n_train`` random stitched variants of a task (seeded) and reports the
error on held-out stitched variants; :func:`profiling_time` measures, on this machine, the time to
profile every stitched variant in torch against the estimator's path (single-block profiles, the training
sample, fitting and predicting all).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .catalog import LoomTask

__all__ = ["AccuracyEstimator", "LatencyEstimator", "accuracy_features", "evaluate_estimator", "profiling_time"]

_KINDS = ("dense", "unstructured", "structured", "fp16", "int8")


def _kind_level(name: str) -> tuple[int, float]:
    kind, _, level = name.partition("-")
    return _KINDS.index(kind), float(level) if level else 0.0


def single_block_profile(task: LoomTask) -> np.ndarray:
    """(K, V) accuracy drop with only block k replaced by variant v (read from the measured table: the
    K * (V - 1) + 1 entries a profiler would measure)."""
    if task.accuracy is None:
        raise ValueError(f"task {task.name!r} has no measured accuracy (random weights): latency only")
    K, V = task.n_blocks, task.n_variants
    dense = task.acc(task.uniform(0))
    out = np.zeros((K, V))
    for k in range(K):
        for v in range(V):
            s = [0] * K
            s[k] = v
            out[k, v] = task.acc(s) - dense
    return out


def accuracy_features(task: LoomTask, stitches: np.ndarray, profile: np.ndarray) -> np.ndarray:
    """Feature matrix (N, F) of stitched variants (N, K) of ``task``."""
    K = task.n_blocks
    kinds = np.array([_kind_level(v)[0] for v in task.variants])
    levels = np.array([_kind_level(v)[1] for v in task.variants])
    dt = np.array([{"float32": 0, "float16": 1, "int8": 2}[d] for d in task.dtypes])
    cols = []
    drops = np.zeros(len(stitches))
    for k in range(K):
        v = stitches[:, k]
        cols.append(np.eye(len(_KINDS))[kinds[v]])
        cols.append(levels[v][:, None])
        cols.append(task.sparsity[k, v][:, None])
        d = profile[k, v]
        cols.append(d[:, None])
        drops += d
    prev = np.concatenate([np.zeros((len(stitches), 1), dtype=int), dt[stitches[:, :-1]]], axis=1)
    adapters = (prev != dt[stitches]).sum(axis=1)
    cols += [drops[:, None], adapters[:, None], np.min([profile[k, stitches[:, k]] for k in range(K)], axis=0)[:, None]]
    return np.hstack(cols).astype(np.float64)


def latency_features(task: LoomTask, stitches: np.ndarray, placements: np.ndarray) -> np.ndarray:
    K = task.n_blocks
    dt = np.array([{"float32": 0, "float16": 1, "int8": 2}[d] for d in task.dtypes])
    cols = []
    total = np.zeros(len(stitches))
    prev_lane = np.zeros(len(stitches), dtype=int)
    prev_dt = np.zeros(len(stitches), dtype=int)
    for k in range(K):
        v, p = stitches[:, k], placements[:, k]
        lat = task.lat_ms[k, v, p]
        total += lat
        cols += [lat[:, None], np.eye(task.n_lanes)[p], (p != prev_lane)[:, None], (dt[v] != prev_dt)[:, None]]
        prev_lane, prev_dt = p, dt[v]
    cols += [total[:, None], (prev_lane != 0)[:, None], (prev_dt != 0)[:, None]]
    return np.hstack(cols).astype(np.float64)


def _gbr(seed: int) -> Any:
    from sklearn.ensemble import GradientBoostingRegressor

    return GradientBoostingRegressor(n_estimators=300, max_depth=3, learning_rate=0.05, subsample=0.8,
                                     random_state=seed)


class AccuracyEstimator:
    """GBT on :func:`accuracy_features`; fit on a sample of measured stitched variants."""

    def __init__(self, task: LoomTask, *, seed: int = 0) -> None:
        self.task = task
        self.profile = single_block_profile(task)
        self.model = _gbr(seed)

    def fit(self, stitches: np.ndarray, accuracy: np.ndarray) -> "AccuracyEstimator":
        self.model.fit(accuracy_features(self.task, stitches, self.profile), accuracy)
        return self

    def predict(self, stitches: np.ndarray) -> np.ndarray:
        return self.model.predict(accuracy_features(self.task, np.asarray(stitches), self.profile))


class LatencyEstimator:
    def __init__(self, task: LoomTask, *, seed: int = 0) -> None:
        self.task = task
        self.model = _gbr(seed)

    def fit(self, stitches: np.ndarray, placements: np.ndarray, latency_ms: np.ndarray) -> "LatencyEstimator":
        self.model.fit(latency_features(self.task, stitches, placements), np.log(latency_ms))
        return self

    def predict(self, stitches: np.ndarray, placements: np.ndarray) -> np.ndarray:
        return np.exp(self.model.predict(latency_features(self.task, np.asarray(stitches), np.asarray(placements))))


def all_stitches(task: LoomTask) -> np.ndarray:
    return np.array([task.stitch_of(i) for i in range(task.n_variants ** task.n_blocks)], dtype=int)


@dataclass(frozen=True)
class EstimatorReport:
    task: str
    n_train: int           # accuracy: stitched variants measured to fit it (the uniform ones included)
    n_test: int            # accuracy: held-out stitched variants scored
    acc_mae_pp: float
    acc_p90_pp: float
    acc_rank_spearman: float
    lat_mape_pct: float
    lat_p90_pct: float
    lat_n_train: int = 0   # latency: (stitched variant, pipeline) samples fitted on
    lat_n_test: int = 0    # latency: samples scored


def train_range(task: LoomTask) -> tuple[int, int]:
    """Valid ``n_train``: at least the ``V`` uniform variants (always measured), at most all stitched variants
    but 2, so that at least 2 are held out for the error and the rank correlation."""
    return task.n_variants, task.n_variants ** task.n_blocks - 2


def check_n_train(task: LoomTask, n_train: Any, what: str = "n_train") -> int:
    lo, hi = train_range(task)
    if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)) or not lo <= n_train <= hi:
        raise ValueError(f"{what} must be an integer in [{lo}, {hi}] for task {task.name!r} (the {lo} uniform "
                         f"variants are always measured; at least 2 of its {hi + 2} stitched variants stay held "
                         f"out), got {n_train!r}")
    return int(n_train)


def fit_accuracy_estimator(task: LoomTask, *, n_train: int = 300, seed: int = 0) -> tuple[AccuracyEstimator, np.ndarray]:
    """Estimator trained on ``n_train`` random stitched variants (plus the uniform ones); returns it and the
    training indices. ``n_train`` in :func:`train_range`."""
    n_train = check_n_train(task, n_train)
    rng = np.random.default_rng(seed)
    N = task.n_variants ** task.n_blocks
    uniform = [task.index(task.uniform(v)) for v in range(task.n_variants)]
    rest = np.setdiff1d(np.arange(N), uniform)
    train = np.concatenate([uniform, rng.choice(rest, size=max(n_train - len(uniform), 0), replace=False)])
    S = all_stitches(task)
    est = AccuracyEstimator(task, seed=seed).fit(S[train], task.accuracy[train])
    return est, train


def evaluate_estimator(task: LoomTask, *, n_train: int = 300, n_test: int = 2000, seed: int = 0) -> EstimatorReport:
    """Accuracy: fit on ``n_train`` measured stitched variants, scored on up to ``n_test`` others. Latency: fit
    on ``n_train`` random (stitched variant, pipeline) samples, scored on ``n_test`` more."""
    from scipy.stats import spearmanr

    n_train = check_n_train(task, n_train)
    if isinstance(n_test, bool) or not isinstance(n_test, (int, np.integer)) or n_test < 2:
        raise ValueError(f"n_test must be an integer >= 2, got {n_test!r}")

    from .catalog import pipelines

    rng = np.random.default_rng(seed + 1)
    S = all_stitches(task)
    N = len(S)
    est, train = fit_accuracy_estimator(task, n_train=n_train, seed=seed)
    test = rng.choice(np.setdiff1d(np.arange(N), train), size=min(n_test, N - len(train)), replace=False)
    pred = est.predict(S[test])
    err = np.abs(pred - task.accuracy[test]) * 100
    rho = float(spearmanr(pred, task.accuracy[test]).statistic)
    # latency: random stitched variants under random pipelines
    pls = np.array(pipelines(task.n_blocks, task.n_lanes))
    idx = rng.integers(0, N, size=n_train + n_test)
    pidx = rng.integers(0, len(pls), size=n_train + n_test)
    lat = np.array([task.solo_latency_ms(S[i], pls[j]) for i, j in zip(idx, pidx)])
    lest = LatencyEstimator(task, seed=seed).fit(S[idx[:n_train]], pls[pidx[:n_train]], lat[:n_train])
    lp = lest.predict(S[idx[n_train:]], pls[pidx[n_train:]])
    lerr = np.abs(lp - lat[n_train:]) / lat[n_train:] * 100
    return EstimatorReport(task.name, len(train), len(test), float(err.mean()), float(np.percentile(err, 90)), rho,
                           float(lerr.mean()), float(np.percentile(lerr, 90)), n_train, len(lerr))


def profiling_time(task_name: str, *, n_train: int = 300, sample: int = 200, seed: int = 0) -> dict[str, float]:
    """Seconds, on this machine, to measure accuracy of every stitched variant one by one in torch
    (extrapolated from ``sample`` timed ones) against the estimator's path: the single-block profiles and
    ``n_train`` stitched variants measured one by one, fitting, and predicting all ``V ** K``."""
    import torch

    from . import stitch, tasks
    from .catalog import load_catalog

    task = load_catalog("orin-agx", tasks=[task_name]).task(task_name)
    n_train = check_n_train(task, n_train)
    if n_train + task.n_blocks * (task.n_variants - 1) + 1 > task.n_variants ** task.n_blocks:
        raise ValueError(f"n_train={n_train} plus the {task.n_blocks * (task.n_variants - 1) + 1} single-block "
                         f"profiles exceeds the {task.n_variants ** task.n_blocks} stitched variants of {task_name!r}")
    model = tasks.load_trained(task_name)
    split = tasks.load_split(task_name)
    bank = stitch.BlockBank(model, split["x_train"])
    K, V = bank.n_blocks, len(bank.variants)
    N = V ** K
    rng = np.random.default_rng(seed)

    def measure(indices: Sequence[int]) -> float:
        t0 = time.perf_counter()
        for i in indices:
            tasks.evaluate_accuracy(stitch.StitchedModel(bank, stitch.variant_of(int(i), K, V)),
                                    split["x_test"], split["y_test"])
        return time.perf_counter() - t0

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t_sample = measure(rng.choice(N, size=sample, replace=False))
        exhaustive_s = t_sample / sample * N
        n_profile = K * (V - 1) + 1
        t_profile = measure(rng.choice(N, size=n_profile + n_train, replace=False))
    finally:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    est, _ = fit_accuracy_estimator(task, n_train=n_train, seed=seed)
    est.predict(all_stitches(task))
    t_fit = time.perf_counter() - t0
    estimator_s = t_profile + t_fit
    return {"task": task_name, "stitched_variants": N, "exhaustive_s": exhaustive_s,
            "exhaustive_sampled": sample, "estimator_s": estimator_s, "estimator_measured_variants": n_profile + n_train,
            "fit_predict_s": t_fit, "saved_pct": 100.0 * (1 - estimator_s / exhaustive_s)}
