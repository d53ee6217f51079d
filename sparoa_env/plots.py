"""The rho-I scatter of a model's operators (SparOA's view of MobileNetV3-small's operators).

x: computational intensity I (FLOP/byte, log scale); y: sparsity rho; one point per operator, coloured by
op type, with the quadrants that a rho threshold and an I threshold cut. Operators without
multiply-accumulates have I = 0, which a log axis cannot show: they sit in a strip at the left, spread
horizontally (deterministically) so that their count stays visible.

matplotlib is imported lazily and drawn through the Agg canvas directly (no pyplot, no global backend
switch), so the plot works headless and leaves other users of matplotlib alone.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sparoa_env.graph import OpGraph

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["rho_intensity_scatter", "short_op_type", "default_intensity_threshold"]

_PRETTY = {
    "_native_batch_norm_legit_no_training": "batch_norm", "_native_batch_norm_legit": "batch_norm",
    "native_batch_norm": "batch_norm", "native_layer_norm": "layer_norm", "native_group_norm": "group_norm",
    "_softmax": "softmax", "_log_softmax": "log_softmax", "max_pool2d_with_indices": "max_pool2d",
    "_adaptive_avg_pool2d": "adaptive_avg_pool2d", "_to_copy": "to_copy",
}
_MAX_COLOURED = 9  # op types with their own colour; the rest are "other"


def short_op_type(op_type: str) -> str:
    """``aten._native_batch_norm_legit_no_training`` -> ``batch_norm``; ``aten.convolution`` -> ``convolution``."""
    name = op_type.removeprefix("aten.")
    return _PRETTY.get(name, name)


def default_intensity_threshold(graph: OpGraph) -> float:
    """Geometric median of the operators' positive intensities (1.0 when none is positive)."""
    pos = [n.intensity for n in graph.nodes if n.intensity > 0]
    return float(math.exp(np.median(np.log(pos)))) if pos else 1.0


def rho_intensity_scatter(graph: OpGraph, path: str | Path | None = None, *, rho_threshold: float = 0.5,
                          intensity_threshold: float | None = None, title: str | None = None,
                          dpi: int = 150) -> "Figure":
    """Draw the scatter; save it to ``path`` (format from the suffix, e.g. ``.png``) when given."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("the rho-I plot needs matplotlib: pip install 'sparoa-env[plot]'") from e
    if not 0.0 <= rho_threshold <= 1.0:
        raise ValueError(f"rho threshold must be in [0, 1], got {rho_threshold}")
    if intensity_threshold is None:
        intensity_threshold = default_intensity_threshold(graph)
    if not intensity_threshold > 0:
        raise ValueError(f"intensity threshold must be > 0 (log axis), got {intensity_threshold}")

    rho = np.array([n.sparsity for n in graph.nodes], dtype=float)
    inten = np.array([n.intensity for n in graph.nodes], dtype=float)
    types = [short_op_type(n.op_type) for n in graph.nodes]
    pos = inten[inten > 0]
    lo = float(min(pos.min(), intensity_threshold)) if pos.size else intensity_threshold
    hi = float(max(pos.max(), intensity_threshold)) if pos.size else intensity_threshold
    decade_lo = math.floor(math.log10(lo)) if lo > 0 else 0
    strip_hi = 10.0 ** (decade_lo - 0.25)          # the I = 0 strip lives left of this line
    strip_lo = 10.0 ** (decade_lo - 1.0)
    jitter = np.random.default_rng(0).uniform(math.log10(strip_lo), math.log10(strip_hi) - 0.1, len(rho))
    x = np.where(inten > 0, inten, 10.0 ** jitter)

    work = np.array([n.flops + n.aux_flops for n in graph.nodes], dtype=float)
    size = 10.0 + 110.0 * np.sqrt(work / work.max()) if work.max() > 0 else np.full(len(rho), 26.0)
    counts = Counter(types)
    coloured = [t for t, _ in counts.most_common(_MAX_COLOURED)]
    if len(counts) == len(coloured) + 1:  # no point in an "other" bucket for a single type
        coloured = [t for t, _ in counts.most_common()]
    palette = [f"C{i}" for i in range(10)]

    fig = Figure(figsize=(8.5, 5.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, t in enumerate(coloured + ["other"]):
        sel = np.array([(tt == t) if t != "other" else (tt not in coloured) for tt in types])
        if not sel.any():
            continue
        colour = palette[i % 10] if t != "other" else "0.55"
        ax.scatter(x[sel], rho[sel], s=size[sel], c=colour, alpha=0.8, edgecolors="white", linewidths=0.4,
                   label=f"{t} ({int(sel.sum())})", zorder=3)
    ax.set_xscale("log")
    ax.set_xlim(strip_lo / 1.5, hi * 3)
    ax.set_ylim(-0.04, 1.04)
    ax.axvline(strip_hi, color="0.6", lw=0.8, ls=":", zorder=1)
    ax.text(math.sqrt(strip_lo * strip_hi), 0.5, "I = 0 (no MACs)", ha="center", va="center", fontsize=7.5,
            color="0.35", rotation=90)
    ax.axhline(rho_threshold, color="0.25", lw=1.0, ls="--", zorder=2)
    ax.axvline(intensity_threshold, color="0.25", lw=1.0, ls="--", zorder=2)

    sparse = rho >= rho_threshold
    compute = inten >= intensity_threshold
    quadrants = [
        (0.02, 0.97, "left", "top", "sparse, memory-bound", sparse & ~compute),
        (0.98, 0.97, "right", "top", "sparse, compute-bound", sparse & compute),
        (0.02, 0.09, "left", "bottom", "dense, memory-bound", ~sparse & ~compute),
        (0.98, 0.09, "right", "bottom", "dense, compute-bound", ~sparse & compute),
    ]
    from matplotlib.transforms import blended_transform_factory

    left_of_data = blended_transform_factory(ax.transData, ax.transAxes)
    for qx, qy, ha, va, label, sel in quadrants:
        ax.text(strip_hi * 1.25 if ha == "left" else qx, qy, f"{label} ({int(sel.sum())})",
                transform=left_of_data if ha == "left" else ax.transAxes, ha=ha, va=va, fontsize=8.5,
                color="0.2", bbox=dict(boxstyle="round,pad=0.25", fc="white", ec="0.8", alpha=0.85), zorder=4)
    ax.set_xlabel("computational intensity I = FLOPs / (bytes in + out + weights)   [FLOP/byte, log]")
    ax.set_ylabel("sparsity rho = 1 - (1 - weight sp.)(1 - input sp.)")
    ax.set_title(title or f"{graph.model}, batch {graph.batch}: {len(graph.nodes)} operators "
                 f"(thresholds rho = {rho_threshold:g}, I = {intensity_threshold:.3g}; size ~ sqrt(work))",
                 fontsize=10)
    ax.grid(True, which="major", alpha=0.25, zorder=0)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False, title="op type",
              title_fontsize=8.5)
    fig.tight_layout()
    if path is not None:
        fig.savefig(str(path), dpi=dpi)
    return fig
