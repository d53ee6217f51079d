"""Prediction time of the threshold predictor: ``predict_thresholds`` (op features + network) for one model,
1 torch thread, median over ``--repeats`` calls after warm-up, on shipped graphs.

    .venv/bin/python benchmarks/bench_predictor.py [--repeats 30] [--models a,b] [--arch transformer_lstm|pooled_mlp]

Prints one line per model (medians, ms):

* ``predict_thresholds``: the entry point as the env calls it (the per-graph part is cached after the
  first call for a graph / profile / power mode);
* ``uncached``: the same fast path with the per-graph cache off (op features, cell features and the
  network on every call), the cost of the first call for a graph;
* ``old path``: op features + the batched module path (``collate`` + ``model`` + ``decode``), which is
  what ``predict`` did before the fast path (for comparison; the same predictions).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODELS = ("mobilenet_v3_small", "resnet18", "efficientnet_b0", "bert_base")


def _median_ms(fn, repeats: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1000.0 * statistics.median(ts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--arch", default="transformer_lstm", choices=("transformer_lstm", "pooled_mlp"))
    ap.add_argument("--profile", default="orin-agx")
    ap.add_argument("--mode", default="MAXN")
    ap.add_argument("--background", default="heavy")
    args = ap.parse_args(argv)

    import torch

    import predictors
    from predictors.dataset import load_case_graph
    from sparoa_env.profile import load_profile

    torch.set_num_threads(1)
    prof = load_profile(args.profile)
    stem = predictors.shipped_checkpoint(args.arch)
    pred = predictors.load_predictor(stem)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.arch}, {args.profile} {args.mode} "
          f"background={args.background}, median of {args.repeats} after warm-up")
    from predictors.model import ThresholdPredictor

    cold = ThresholdPredictor(pred.model, pred.cfg, pred.meta, cache_size=0)
    print(f"{'model':<22}{'ops':>6}{'predict_thresholds':>20}{'uncached':>10}{'old path':>10}  (rho*, I*)")
    cols = []
    for name in [m for m in args.models.split(",") if m]:
        g = load_case_graph(name, 1, extract=False)
        call = lambda: predictors.predict_thresholds(g, prof, args.mode, args.background, checkpoint=stem,  # noqa: E731
                                                     fallback=False)
        total = _median_ms(call, args.repeats)
        unc = _median_ms(lambda: cold.predict(g, prof, args.mode, args.background), args.repeats)

        def old_path():
            ops, hw = pred.features(g, prof, args.mode, args.background)
            return pred.predict_features([ops], [hw])[0]

        old = _median_ms(old_path, args.repeats)
        th = call()
        assert th == old_path() == cold.predict(g, prof, args.mode, args.background), name
        cols.append((total, unc, old))
        print(f"{name:<22}{len(g.nodes):>6}{total:>20.3f}{unc:>10.3f}{old:>10.3f}  ({th[0]:.2f}, {th[1]:.4g})")
    print(f"{'max':<28}" + "".join(f"{max(c[i] for c in cols):>{w}.3f}" for i, w in ((0, 20), (1, 10), (2, 10))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
