"""Figures of an evaluation: speedup bars, a Gantt chart of a schedule, the rho-I scatter of a placement.

Every function writes one PNG (matplotlib, Agg backend, imported lazily) and returns its path. The demo
(``sparoa demo``) and the scenario suite (``sparoa scenarios``) call them; the README shows their output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["speedup_bars", "gantt", "rho_i_scatter"]


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover
        raise ImportError("plots need matplotlib: pip install 'sparoa-env[plot]'") from e
    return plt


def speedup_bars(results: Mapping[str, Mapping[str, Any]], path: str | Path, policy: str = "sac",
                 title: str = "") -> Path:
    """Grouped bars: for each scenario (key of ``results``, each an :func:`agents.evaluate.evaluate`
    result), the speedup of ``policy`` over each baseline (baseline mean latency / policy mean latency).
    A dashed line marks 1x; the oracle, where exact, is drawn as a marker."""
    plt = _plt()
    scen = list(results)
    baselines = [b for b in results[scen[0]]["baselines"] if b in results[scen[0]]["policies"]]
    x = np.arange(len(scen))
    width = 0.8 / max(len(baselines), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(scen) + 2), 3.6), dpi=110)
    cmap = plt.get_cmap("tab10")
    for k, b in enumerate(baselines):
        vals = [results[s]["speedup"].get(policy, {}).get(b, np.nan) for s in scen]
        bars = ax.bar(x + (k - (len(baselines) - 1) / 2) * width, vals, width, label=b, color=cmap(k))
        if len(scen) == 1:
            ax.bar_label(bars, fmt="%.2fx", fontsize=7)
    ax.axhline(1.0, color="black", lw=0.8, ls="--")
    ax.set_xticks(x, scen, rotation=20 if len(scen) > 3 else 0, ha="right" if len(scen) > 3 else "center", fontsize=8)
    ax.set_ylabel(f"{policy} speedup (x)")
    ax.set_title(title or f"{policy}: mean-latency speedup over each baseline", fontsize=9, wrap=True)
    ax.legend(fontsize=7, ncol=min(len(baselines), 6), loc="upper left", bbox_to_anchor=(0, -0.18 if len(scen) > 3 else -0.1))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def gantt(timelines: Mapping[str, Sequence[Mapping[str, Any]]], processors: Sequence[str], path: str | Path,
          title: str = "") -> Path:
    """One panel per schedule (e.g. ``{"sac": timeline, "heft": timeline}``), one row per processor, each
    executed op a bar from start to end; the x axis is shared, so panel lengths compare directly."""
    plt = _plt()
    names = list(timelines)
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 1.3 + 1.1 * len(names) * max(len(processors), 2) / 2),
                             dpi=110, sharex=True, squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, name in zip(axes[:, 0], names):
        tl = timelines[name]
        end = max((e["end_ms"] for e in tl), default=0.0)
        for lane, proc in enumerate(processors):
            bars = [(e["start_ms"], max(e["end_ms"] - e["start_ms"], 1e-4)) for e in tl if e["processor"] == proc]
            if bars:
                ax.broken_barh(bars, (lane - 0.4, 0.8), facecolors=colors(lane), edgecolor="black", linewidth=0.15)
        ax.set_yticks(range(len(processors)), list(processors))
        ax.set_title(f"{name}: last op ends at {end:.3f} ms", fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("time (ms)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def rho_i_scatter(graph: Any, placement: Mapping[str, str], processors: Sequence[str], path: str | Path,
                  thresholds: tuple[float, float] | None = None, title: str = "") -> Path:
    """Each op at (I, rho), log-scaled I, coloured by the processor ``placement`` gives it; the threshold
    rule's CPU quadrant (rho >= rho*, I <= I*) is shaded when ``thresholds`` is given."""
    plt = _plt()
    f = graph.features
    rho, inten = np.asarray(f["sparsity"]), np.asarray(f["intensity"])
    x = np.maximum(inten, 1e-3)
    fig, ax = plt.subplots(figsize=(6.0, 4.2), dpi=110)
    cmap = plt.get_cmap("tab10")
    names = [n.name for n in graph.nodes]
    for k, proc in enumerate(processors):
        mask = np.array([placement.get(nm) == proc for nm in names])
        if mask.any():
            ax.scatter(x[mask], rho[mask], s=14, color=cmap(k), alpha=0.75, label=f"{proc} ({int(mask.sum())} ops)",
                       edgecolors="none")
    if thresholds is not None:
        rs, i_s = thresholds
        ax.axhline(rs, color="gray", lw=0.8, ls="--")
        ax.axvline(max(i_s, 1e-3), color="gray", lw=0.8, ls="--")
        ax.fill_between([1e-3, max(i_s, 1e-3)], rs, 1.02, color="gray", alpha=0.1,
                        label=f"rule: CPU if rho>={rs:.2f} and I<={i_s:.2g}")
    ax.set_xscale("log")
    ax.set_xlim(8e-4, max(float(x.max()) * 2, 1.0))
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("arithmetic intensity I (FLOP/byte; 0 drawn at 1e-3)")
    ax.set_ylabel("sparsity rho")
    ax.set_title(title or f"{graph.model}: learned placement in the rho-I plane", fontsize=10)
    ax.legend(fontsize=7, loc="center right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
