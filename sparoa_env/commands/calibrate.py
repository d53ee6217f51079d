"""``sparoa calibrate``: fit a SoC profile to traces and print the fit's error.

    sparoa calibrate traces/<machine>/*.parquet --out sparoa_env/data/profiles/host.json --name host
    sparoa calibrate a.parquet b.parquet --out mine.json --base orin-agx      # power/thermal from a base
    sparoa calibrate t1.parquet t2.parquet --out x.json --allow-mixed         # traces of several machines
    sparoa calibrate traces/<machine>/*.parquet --out host.json --handoff traces/<machine>/handoff.json
                                     # lane hand-off latency fitted to executor runs of calibration models

The profile's provenance lists the trace ids. Traces from different machines are refused unless
--allow-mixed; malformed traces get an error naming the file, column, row and value. An existing --out is
replaced only with --force.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("traces", nargs="+", help="trace files (.parquet) written by 'sparoa profile'")
    parser.add_argument("--out", required=True, help="profile JSON to write")
    parser.add_argument("--name", default=None, help="profile name (default: the --out file's stem)")
    parser.add_argument("--base", default=None, help="profile whose power and thermal figures to keep")
    parser.add_argument("--cpu-lanes", type=int, default=None,
                        help="CPU lanes (core groups) in the profile (default: 1 with a GPU; on a CPU-only machine 2 "
                             "when the traces used 2 or more cores, e.g. recorded with --threads 1,2, else 1)")
    parser.add_argument("--min-type-rows", type=int, default=3,
                        help="op types with fewer FLOP-bearing rows share the default efficiency (default 3)")
    parser.add_argument("--stat", choices=("median", "p10"), default="median",
                        help="summary of the repeats to fit (default median; p10 is closer to the uncontended speed "
                             "when the machine is shared; use the same in 'sparoa fidelity')")
    parser.add_argument("--max-spread", type=float, default=None,
                        help="leave out passes whose (p90 - p10) / median exceeds this (disturbed by other work)")
    parser.add_argument("--threads", default=None,
                        help="fit only passes run with these thread counts, comma-separated (default: all)")
    parser.add_argument("--allow-mixed", action="store_true", help="accept traces from several machines")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    parser.add_argument("--conv-classes", action="store_true",
                        help="separate convolution efficiencies per kernel-shape class (pointwise, depthwise 3x3/5x5/7x7)")
    parser.add_argument("--parallel-grain", action="store_true",
                        help="fit the intra-op grain (elementwise ops with fewer output elements get no parallel "
                             "speedup) and the slowdown of an op's serial share on several threads (off by default: "
                             "it did not improve the held-out fidelity here, see docs/calibration.md)")
    parser.add_argument("--conv-weight", action="store_true",
                        help="fit an extra per-call time per weight byte of every convolution (conv_weight_us_per_kb; "
                             "off by default: it did not improve the held-out fidelity here, see docs/calibration.md)")
    parser.add_argument("--no-op-overheads", action="store_true",
                        help="one per-op overhead for every op instead of one per FLOP-bearing op type")
    parser.add_argument("--handoff", default=None,
                        help="fit the lane hand-off latency to these executor measurements of calibration models "
                             "(a 'sparoa fidelity --save' file with mixed plans) instead of the micro-benchmark")
    parser.add_argument("--op-residuals", choices=("auto", "on", "off"), default="auto",
                        help="the learned per-op correction (op_residuals: nearest traced ops' log residuals): "
                             "auto (default) keeps it when leave-one-model-out cross-validation says it predicts "
                             "other models' passes better than the formula alone; on: always; off: never")
    parser.add_argument("--json", action="store_true", help="print the fit report as JSON")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..calibrate import calibrate, load_measured
    from ..profile import load_profile
    from ..traces import read_traces

    out = Path(args.out)
    if out.exists() and not args.force:
        raise ValueError(f"{out} exists; pass --force to overwrite it (profiles are never replaced silently)")
    if args.cpu_lanes is not None and args.cpu_lanes < 1:
        raise ValueError("--cpu-lanes must be >= 1")
    df = read_traces(args.traces, allow_mixed=args.allow_mixed)
    base = load_profile(args.base) if args.base else None
    res = calibrate(df, name=args.name or out.stem, base=base, cpu_lanes=args.cpu_lanes,
                    min_type_rows=args.min_type_rows, trace_files=args.traces, stat=args.stat,
                    max_spread=args.max_spread,
                    threads=[int(x) for x in args.threads.split(",")] if args.threads else None,
                    handoff=load_measured(args.handoff) if args.handoff else None,
                    conv_classes=args.conv_classes, op_overheads=not args.no_op_overheads,
                    parallel_grain=args.parallel_grain, conv_weight=args.conv_weight,
                    op_residuals={"auto": "auto", "on": True, "off": False}[args.op_residuals])
    out.parent.mkdir(parents=True, exist_ok=True)
    res.profile.save(out)
    if args.json:
        print(json.dumps({"profile": str(out), "traces": res.trace_ids, "noise": res.noise, "stat": res.stat,
                          "excluded": res.excluded, "handoff": res.handoff,
                          "fit": {k: v for k, v in res.reports.items()}}, indent=1))
        return 0
    print(f"wrote {out}: profile {res.profile.name!r}, {len(res.trace_ids)} trace(s), provenance measured:...")
    if len(res.profile.processors) < 2:
        print(f"note: the profile has one processor ({res.profile.processor_names[0]}), and the SparOA environments "
              "need two: record traces on 2 or more cores (sparoa profile ... --threads 1,2) or pass --cpu-lanes 2")
    if res.excluded:
        print(f"left out as too noisy (--max-spread {args.max_spread}): {', '.join(res.excluded)}")
    print(f"fitted statistic: {res.stat} of the repeats")
    if res.handoff:
        h = res.handoff
        print(f"lane hand-off latency fitted to {h['cases']} mixed-plan runs ({', '.join(h['models'])}): "
              f"{h['latency_us']:.1f} us per hand-off + {h['first_switch_us']:.1f} us at a request's first "
              f"(rms log error {h['rms_log_error']:.3f}; with the micro-benchmark's "
              f"value {h['rms_log_error_micro']:.3f})")
    if res.noise:
        n = res.noise
        print(f"noise in the traces: median e2e cv {n['e2e_cv_median']:.3f} (max {n['e2e_cv_max']:.3f}), "
              f"median p90/p10 {n['p90_over_p10_median']:.3f}, median load average {n['loadavg_1m_median']:.2f}; "
              f"sum of in-pass op times / e2e: median {n['ops_sum_over_e2e_median']:.3f}")
    for proc, rep in res.reports.items():
        f = res.fits[proc]
        print(f"\n{proc}: fitted per-op overhead {f.overhead_ms * 1e3:.2f} us, parallel fraction {f.parallel_fraction:.3f}, "
              f"bandwidth {f.bw_gbps:.1f} GB/s, unhidden {f.unhidden_frac:.2f}, half-efficiency {f.half_mflop:.3g} MFLOP")
        print("  op rates (GFLOP/s on one core): " + ", ".join(f"{k} {v / 1e6:.1f}" for k, v in sorted(f.rates.items())))
        print(f"  fit error on its own traces: op time-weighted median |err| {rep['op_weighted_median_abs_error']:.1%}, "
              f"op median |err| {rep['op_median_abs_error']:.1%}")
        print(f"  end-to-end (all-CPU passes): median |err| {rep['e2e_median_abs_error']:.1%}, max "
              f"{rep['e2e_max_abs_error']:.1%}, within 5% {rep['e2e_within_5pct']:.0%}, within 10% {rep['e2e_within_10pct']:.0%}")
        if rep.get("op_residuals"):
            r = rep["op_residuals"]
            print(f"  learned per-op correction: {r['rows']} rows; leave-one-model-out over {r['passes']} passes of "
                  f"{r['models']} models: within 5% {r['cv_within_5pct']:.0%}, within 10% {r['cv_within_10pct']:.0%}, "
                  f"mean |log error| {r['cv_mean_abs_log_error']:.3f} (formula alone: {r['formula_within_5pct']:.0%}, "
                  f"{r['formula_within_10pct']:.0%}, {r['formula_mean_abs_log_error']:.3f}); neighbours "
                  f"{r['neighbours']}, bandwidth {r['bandwidth']:g}, prior weight {r['prior_weight']:g}: "
                  f"{'kept' if r['kept'] else 'not kept'} ({r['why']})")
        for p in rep["passes"]:
            print(f"    {p['config']:<44} measured {p['measured_ms']:9.3f}  predicted {p['predicted_ms']:9.3f}  "
                  f"({p['error']:+.1%}); sum of in-pass ops {p['ops_sum_ms']:9.3f}")
    return 0
