"""``sparoa loom``: SparseLoom's zoo, estimator, optimizer, preloader and evaluation.

    sparoa loom build                          # train small tasks, measure all stitched variants, price blocks (torch)
    sparoa loom accuracy [--json]              # measured accuracy of every task's zoo variants (shipped tables)
    sparoa loom estimator [--train N] [--timing] [--json]  # estimator error on held-out stitched variants
    sparoa loom optimizer [--env ID] [--json]  # MILP (HiGHS) vs heuristic on the same instances
    sparoa loom preloader [--env ID] [--json]  # hotness vs full / LRU / no preload
    sparoa loom evaluate --env ID [--seed S] [--json]
"""

from __future__ import annotations

import argparse
import json

ENV_PROFILES = {"SparseLoom-Orin-v0": "orin-agx", "SparseLoom-CoreUltra-v0": "intel-core-ultra"}


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="loom_command", metavar="ACTION")
    sub.required = True
    p = sub.add_parser("build", help="train the small tasks, measure every stitched variant, write the cost tables")
    p.add_argument("--out", default=None, metavar="DIR", help="where to write the tables (default: the shipped ones, "
                   "sparoa_env/data/loom/)")
    p.add_argument("--force", action="store_true", help="replace tables already in the output directory")
    p = sub.add_parser("accuracy", help="measured held-out accuracy of each task's zoo variants")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("estimator", help="estimator error on held-out stitched variants")
    p.add_argument("--train", type=int, default=300,
                   help="stitched variants measured to train it, 10 to 9998 (default 300)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timing", action="store_true", help="also time exhaustive vs estimator profiling in torch")
    p.add_argument("--json", action="store_true")
    for name, text in (("optimizer", "MILP vs heuristic on the same instances"),
                       ("preloader", "hotness preloading vs full / LRU / none"),
                       ("evaluate", "SparseLoom vs the baseline archetypes")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--env", default="SparseLoom-Orin-v0", choices=sorted(ENV_PROFILES))
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--requests", type=int, default=None, help="requests per run (default: the workload's)")
        p.add_argument("--json", action="store_true")


def _cfg(args: argparse.Namespace):
    from dataclasses import replace

    from sparoa_env.loom.evaluate import EvalConfig

    cfg = EvalConfig(profile=ENV_PROFILES[args.env])
    if args.requests is not None:
        if args.requests < 1:
            raise ValueError(f"--requests must be >= 1, got {args.requests}")
        cfg = replace(cfg, workload=replace(cfg.workload, n_requests=args.requests))
    return cfg


def run(args: argparse.Namespace) -> int:
    cmd = args.loom_command
    if cmd == "build":
        from pathlib import Path

        from sparoa_env.loom.build import build_all
        from sparoa_env.loom.tasks import DATA_DIR

        out = Path(args.out) if args.out else DATA_DIR
        there = sorted(str(p.relative_to(out)) for p in [*out.glob("*.json"), *out.glob("accuracy/*.json")])
        if there and not args.force:
            raise FileExistsError(f"{out} holds loom tables already ({', '.join(there[:3])}"
                                  f"{' and more' if len(there) > 3 else ''}); pass --force to replace them "
                                  "(or --out another directory)")
        build_all(out)
        return 0
    if cmd == "accuracy":
        from sparoa_env.loom.catalog import load_catalog

        cat = load_catalog("orin-agx")
        out = {n: {v: t.acc(t.uniform(i)) for i, v in enumerate(t.variants)} for n, t in cat.tasks.items()
               if t.accuracy is not None}
        if args.json:
            print(json.dumps({"accuracy": out, "provenance": cat.provenance}, indent=2))
        else:
            variants = next(iter(cat.tasks.values())).variants
            print("task".ljust(12) + "".join(v.rjust(18) for v in variants))
            for n, row in out.items():
                print(n.ljust(12) + "".join(f"{100 * row[v]:17.1f}%" for v in variants))
            for k, v in cat.provenance.items():
                if k.startswith("accuracy:"):
                    print(f"{k}: {v}")
        return 0
    if cmd == "estimator":
        from dataclasses import asdict

        from sparoa_env.loom.catalog import load_catalog
        from sparoa_env.loom.estimator import evaluate_estimator, profiling_time, train_range

        cat = load_catalog("orin-agx")
        small = [t for t in cat.tasks.values() if t.accuracy is not None]
        for t in small:
            lo, hi = train_range(t)
            if not lo <= args.train <= hi:
                raise ValueError(f"--train must be in [{lo}, {hi}] (the {lo} uniform variants are always measured; at "
                                 f"least 2 of the {hi + 2} stitched variants of {t.name!r} stay held out), "
                                 f"got {args.train}")
            if args.timing and args.train + t.n_blocks * (t.n_variants - 1) + 1 > hi + 2:
                raise ValueError(f"--train {args.train} with --timing: plus the {t.n_blocks * (t.n_variants - 1) + 1} "
                                 f"single-block profiles it exceeds the {hi + 2} stitched variants of {t.name!r}")
        rows = [asdict(evaluate_estimator(t, n_train=args.train, seed=args.seed)) for t in small]
        timing = [profiling_time(r["task"], n_train=args.train, seed=args.seed) for r in rows] if args.timing else []
        if args.json:
            print(json.dumps({"estimator": rows, "profiling": timing}, indent=2))
        else:
            for r in rows:
                print(f"{r['task']}: accuracy MAE {r['acc_mae_pp']:.2f} pp (p90 {r['acc_p90_pp']:.2f}, Spearman "
                      f"{r['acc_rank_spearman']:.3f}) on {r['n_test']} held-out stitched variants, trained on "
                      f"{r['n_train']}; latency MAPE {r['lat_mape_pct']:.2f} % (p90 {r['lat_p90_pct']:.2f} %) on "
                      f"{r['lat_n_test']} held-out samples, trained on {r['lat_n_train']}")
            for t in timing:
                print(f"{t['task']}: profiling all {t['stitched_variants']} stitched variants {t['exhaustive_s']:.1f} s "
                      f"(extrapolated from {t['exhaustive_sampled']} timed) vs estimator path {t['estimator_s']:.1f} s "
                      f"({t['estimator_measured_variants']} measured + fit/predict {t['fit_predict_s']:.1f} s): "
                      f"{t['saved_pct']:.1f} % saved")
        return 0
    cfg = _cfg(args)
    if cmd == "optimizer":
        from sparoa_env.loom.evaluate import solver_comparison

        rows = solver_comparison(cfg, seed=args.seed)
        if args.json:
            print(json.dumps({"instances": rows}, indent=2))
        else:
            print("tasks  cand  MILP obj (s)          heuristic obj (s)     gap")
            for r in rows:
                gap = (r["heuristic_objective"] - r["milp_objective"]) / max(abs(r["milp_objective"]), 1e-9) * 100
                print(f"{r['tasks']:5d} {r['candidates']:5d}  {r['milp_objective']:9.4f} ({r['milp_s']:.3f})"
                      f"    {r['heuristic_objective']:9.4f} ({r['heuristic_s']:.4f})   {gap:5.1f} %")
        return 0
    if cmd == "preloader":
        from sparoa_env.loom.evaluate import preloader_comparison

        res = preloader_comparison(cfg, seed=args.seed)
        if args.json:
            print(json.dumps(res, indent=2, default=float))
        else:
            print(f"candidate blocks (full preload): {res.pop('full_candidate_mb'):.1f} MB")
            for k, v in res.items():
                print(f"{k:10s} violations {100 * v['slo_violation_rate']:5.1f} %  peak memory {v['memory_mb']:8.1f} MB"
                      f"  loads {v['loads']}")
        return 0
    if cmd == "evaluate":
        from sparoa_env.loom.evaluate import evaluate

        res = evaluate(cfg, seed=args.seed)
        if args.json:
            print(json.dumps(res, indent=2, default=float))
        else:
            print(f"{args.env} ({res['profile']}, {res['mode']}), seed {args.seed}, {res['n_requests']} requests, "
                  f"tasks {', '.join(res['tasks'])}")
            print(f"{'policy':12s} {'SLO viol.':>10s} {'throughput':>12s} {'goodput':>12s} {'memory':>10s}")
            for n, r in res["policies"].items():
                print(f"{n:12s} {100 * r['slo_violation_rate']:9.1f}% {r['throughput_rps']:8.1f} rps "
                      f"{r['goodput_rps']:8.1f} rps {r['memory_mb']:8.1f} MB")
            g = res.get("goals")
            if g:
                print(f"sparseloom vs worst archetype ({g['worst_archetype']}): violations "
                      f"{-100 * g['violation_reduction_vs_worst']:+.0f} %; throughput x{g['throughput_ratio_vs_best']:.2f} "
                      f"best ({g['best_throughput_archetype']}), goodput x{g['goodput_ratio_vs_best']:.2f} best "
                      f"({g['best_goodput_archetype']}); memory {-100 * g['memory_saving_vs_full_preload']:+.0f} % vs "
                      f"full preload ({g['full_preload_memory_mb']:.1f} MB, {100 * g['full_preload_violation_rate']:.1f} % "
                      "violations)")
        return 0
    raise ValueError(f"unknown loom action {cmd!r}")
