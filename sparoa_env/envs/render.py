"""Gantt charts of an episode's executed ops: text (``ansi``) and an RGB image (``rgb_array``)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["gantt_ansi", "gantt_rgb"]

_GLYPHS = "#=%*+o@x"


def gantt_ansi(timeline: Sequence[dict[str, Any]], processors: Sequence[str], width: int = 72, title: str = "") -> str:
    """One row per processor; each executed op is drawn with its request's glyph over its start..end."""
    if not timeline:
        return f"{title}\n(no op has run yet)\n"
    t_end = max(e["end_ms"] for e in timeline)
    scale = width / t_end if t_end > 0 else 1.0
    label_w = max(len(p) for p in processors)
    lines = [f"{title}  (0 .. {t_end:.3f} ms, {t_end / width * 1000:.1f} us per column)" if title else ""]
    for proc in processors:
        row = [" "] * width
        busy = 0.0
        for e in timeline:
            if e["processor"] != proc:
                continue
            busy += e["end_ms"] - e["start_ms"]
            a = min(int(e["start_ms"] * scale), width - 1)
            b = max(min(int(np.ceil(e["end_ms"] * scale)), width), a + 1)
            for c in range(a, b):
                row[c] = _GLYPHS[e["request"] % len(_GLYPHS)]
        util = busy / t_end * 100 if t_end > 0 else 0.0
        lines.append(f"{proc:>{label_w}} |{''.join(row)}| {util:5.1f}% busy")
    n_ops = {p: sum(1 for e in timeline if e["processor"] == p) for p in processors}
    lines.append(" " * label_w + "  ops: " + ", ".join(f"{p}={n}" for p, n in n_ops.items()))
    return "\n".join(lines).lstrip("\n") + "\n"


def gantt_rgb(timeline: Sequence[dict[str, Any]], processors: Sequence[str], title: str = "",
              size_px: tuple[int, int] = (960, 300)) -> np.ndarray:
    """An (H, W, 3) uint8 image of the same chart (matplotlib, imported here, Agg backend)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the install
        from gymnasium.error import DependencyNotInstalled

        raise DependencyNotInstalled("rgb_array rendering needs matplotlib: pip install 'sparoa-env[plot]'") from e
    dpi = 100
    fig, ax = plt.subplots(figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi)
    cmap = plt.get_cmap("tab10")
    for lane, proc in enumerate(processors):
        bars = [(e["start_ms"], max(e["end_ms"] - e["start_ms"], 1e-6)) for e in timeline if e["processor"] == proc]
        colors = [cmap(e["request"] % 10) for e in timeline if e["processor"] == proc]
        if bars:
            ax.broken_barh(bars, (lane - 0.4, 0.8), facecolors=colors, edgecolor="black", linewidth=0.2)
    ax.set_yticks(range(len(processors)), list(processors))
    ax.set_xlabel("time (ms)")
    ax.set_title(title or "schedule")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return img
