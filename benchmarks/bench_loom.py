"""SparseLoom figures in one run: zoo accuracies, estimator error, MILP vs heuristic, preloader, evaluation.

    python benchmarks/bench_loom.py [--env SparseLoom-Orin-v0] [--seed 0] [--timing]

Every number is computed here from the shipped tables (accuracies measured by `sparoa loom build`,
latencies simulated with the cost model and the SimPy SoC); nothing is hard-coded. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", default="SparseLoom-Orin-v0")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timing", action="store_true", help="also time exhaustive vs estimator profiling (torch)")
    args = ap.parse_args()

    from sparoa_env.commands.loom import ENV_PROFILES
    from sparoa_env.loom.catalog import load_catalog
    from sparoa_env.loom.estimator import evaluate_estimator, profiling_time
    from sparoa_env.loom.evaluate import EvalConfig, evaluate, preloader_comparison, solver_comparison

    cfg = EvalConfig(profile=ENV_PROFILES[args.env])
    cat = load_catalog(cfg.profile)
    out: dict = {"env": args.env, "seed": args.seed}
    out["accuracy"] = {n: {v: t.acc(t.uniform(i)) for i, v in enumerate(t.variants)}
                       for n, t in cat.tasks.items() if t.accuracy is not None}
    t0 = time.perf_counter()
    out["estimator"] = [asdict(evaluate_estimator(t, seed=args.seed)) for t in cat.tasks.values() if t.accuracy is not None]
    if args.timing:
        out["profiling"] = [profiling_time(r["task"], seed=args.seed) for r in out["estimator"]]
    out["solvers"] = solver_comparison(cfg, seed=args.seed)
    out["preloader"] = preloader_comparison(cfg, seed=args.seed)
    res = evaluate(cfg, seed=args.seed)
    out["evaluate"], out["goals"] = res["policies"], res["goals"]
    out["seconds"] = time.perf_counter() - t0
    print(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
