"""SparOA's sparsity / intensity threshold rule, kept in one place.

The rule: an operator goes to the **CPU** when its sparsity is high and its arithmetic intensity is low,
``rho >= rho_star and I <= I_star``; every other operator goes to the **GPU** (the accelerator lane).
In the rho-I plane the four quadrants read:

=================  ======================  =============================================
quadrant           example ops             rule
=================  ======================  =============================================
rho high, I low    pruned 1x1 / depthwise  CPU (sparse kernels pay, GPU launch dominates)
rho high, I high   pruned dense conv/GEMM  GPU (enough dense work left for the GPU)
rho low,  I low    elementwise, norms      GPU (keeps tensors where neighbours are)
rho low,  I high   dense conv / GEMM       GPU
=================  ======================  =============================================

Used by the observation (the thresholds and the rule's verdict are features), by the ``threshold`` and
``predicted_threshold`` baselines, and as the label format of the threshold predictor.

When no trained predictor is given, :func:`heuristic_thresholds` supplies thresholds from the cost
model: the (rho*, I*) pair whose rule agrees best with "which processor runs this op faster in
isolation", each op weighted by how much time the choice is worth. It is cheap (a vectorised grid
search over the graph's own rho and I values) and is computed once per graph and power mode.
"""

from __future__ import annotations

import numpy as np

__all__ = ["threshold_rule", "fit_thresholds", "heuristic_thresholds", "RHO_GRID"]

RHO_GRID = np.linspace(0.0, 1.0, 21)


def threshold_rule(rho, intensity, rho_star: float, i_star: float):
    """True where the op goes to the CPU (lane 0); numpy-broadcastable."""
    return (np.asarray(rho) >= rho_star) & (np.asarray(intensity) <= i_star)


def fit_thresholds(rho: np.ndarray, intensity: np.ndarray, cpu_better: np.ndarray,
                   weight: np.ndarray | None = None) -> tuple[float, float]:
    """The (rho*, I*) maximising the weighted agreement of :func:`threshold_rule` with ``cpu_better``.

    Candidates for I* are the ops' own intensities (plus 0); ties go to the smallest rho* and I*... then
    the rule is as conservative as the data allows. Returns floats.
    """
    rho = np.asarray(rho, dtype=np.float64)
    intensity = np.asarray(intensity, dtype=np.float64)
    y = np.asarray(cpu_better, dtype=bool)
    w = np.ones_like(rho) if weight is None else np.asarray(weight, dtype=np.float64)
    i_grid = np.unique(np.concatenate([[0.0], intensity]))
    if len(i_grid) > 64:
        i_grid = np.unique(np.quantile(intensity, np.linspace(0, 1, 64)))
    # cpu[a, b, n] = rule verdict for rho* = RHO_GRID[a], I* = i_grid[b], op n
    cpu = (rho[None, None, :] >= RHO_GRID[:, None, None]) & (intensity[None, None, :] <= i_grid[None, :, None])
    score = ((cpu == y[None, None, :]) * w[None, None, :]).sum(axis=2)
    a, b = np.unravel_index(int(np.argmax(score)), score.shape)
    return float(RHO_GRID[a]), float(i_grid[b])


def heuristic_thresholds(graph, nominal_ms: np.ndarray) -> tuple[float, float]:
    """Thresholds from the cost model's nominal per-op latencies ``(n_ops, n_lanes)`` (lane 0 = CPU).

    Compares the CPU with the best accelerator lane, each op in isolation (host-side launch included
    when the cost model puts it in ``nominal_ms``; transfers ignored).
    """
    f = graph.features
    cpu_t = nominal_ms[:, 0]
    acc_t = nominal_ms[:, 1:].min(axis=1)
    return fit_thresholds(f["sparsity"], f["intensity"], cpu_t < acc_t, np.abs(cpu_t - acc_t))
