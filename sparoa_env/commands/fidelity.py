"""``sparoa fidelity``: run models for real under K plans and compare with the simulator's prediction.

    sparoa fidelity --profile host --models resnet50,tests/models_unseen.py:residual_cnn --plans 3
    sparoa fidelity --profile host --models bert_base --batch 1,8 --json
    sparoa fidelity --profile host --models resnet50 --save runs/fid.json      # keep the measurements
    sparoa fidelity --profile my-refit.json --measured runs/fid.json             # re-score, no re-measuring

Plan 1 puts every op on lane 0 (run as one compiled segment with --threads threads, default all cores);
with more processors, plans 2..K are mixed: the op sequence cut into 2, 4, ... alternating blocks over
the lanes of the device map (default on a CPU-only machine: one core group per lane). The plans of a model
run interleaved (--rounds rounds, each running a share of every plan's timed runs); even and odd rounds
give two independent measurements per case, and the share of cases whose two agree within +-5% / +-10%
is printed as the machine's repeatability (the ceiling for any predictor). Each case prints the measured
median, the simulator's prediction for the same model, plan, batch and core layout, and the relative
error; then the share of cases within +-5% and +-10%.

--processes N measures each model in N fresh Python processes of its own (models in turn, N rounds): on
this VM a model's 2-thread time drifted with what had run before it in a long process and moved by up to
+-8% between processes, which one process's interleaved halves cannot see. The case's measured value is
the median of the processes' medians, and its two halves are the even- and odd-numbered processes, so the
printed repeatability is then across processes. Default 1: every model in this process.

--save FILE writes the measurements (cases, lane assignments, core layouts, the models' OpGraphs);
--measured FILE re-scores such a file against --profile without running anything (no torch needed).

--json prints {"cases": [{model, plan, measured_ms, measured_halves_ms, predicted_ms, error, halves_diff,
batch, lanes, lane_cores, runs, spread}], "within_5pct", "within_10pct", "median_abs_error",
"repeatability": {"within_5pct", "within_10pct", "median_abs_diff"}, "profile", "stat", "measured_meta",
"clock_note"}.
"""

from __future__ import annotations

import argparse
import json
import sys

from .profile import _int_list


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", required=True, help="profile name or JSON path")
    parser.add_argument("--models", default=None, help="comma-separated zoo names or path/file.py:function specs")
    parser.add_argument("--measured", default=None,
                        help="re-score the measurements in this file (written by --save) instead of running models")
    parser.add_argument("--save", default=None, help="write the measurements to this JSON file (for --measured)")
    parser.add_argument("--force", action="store_true", help="overwrite --save if it exists")
    parser.add_argument("--plans", type=int, default=3, help="plans per model (default 3)")
    parser.add_argument("--batch", type=_int_list, default=[1], help="batch sizes, comma-separated (default 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of the single-lane plan (default: every core this process may use)")
    parser.add_argument("--device-map", default=None,
                        help="processor -> device, e.g. 'cpu0=cpu:0;cpu1=cpu:1' (default: one core group per lane)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per case (default 10)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=8,
                        help="interleaved rounds per model (>= 2; even/odd rounds = two measurements; default 8)")
    parser.add_argument("--budget-s", type=float, default=20.0, help="time budget per case (default 20 s)")
    parser.add_argument("--stat", choices=("median", "p10"), default="median",
                        help="summary of the timed runs (default median; match the profile's calibration)")
    parser.add_argument("--processes", type=int, default=1,
                        help="measure each model in this many fresh processes of its own (>= 2: the repeatability "
                             "is across processes; default 1: all in this process)")
    parser.add_argument("--json", action="store_true", help="print JSON (keys in the module docstring)")


def _measure_in_processes(args: argparse.Namespace, models: list[str], log) -> dict:
    """Each model measured by ``sparoa fidelity --save`` in ``args.processes`` fresh processes, merged."""
    import subprocess
    import tempfile
    from pathlib import Path

    from ..calibrate import load_measured, merge_measured

    parts = []
    with tempfile.TemporaryDirectory(prefix="sparoa-fidelity-") as tmp:
        for r in range(args.processes):
            for i, m in enumerate(models):
                out = Path(tmp) / f"{r}-{i}.json"
                cmd = [sys.executable, "-m", "sparoa_env.cli", "fidelity", "--profile", args.profile, "--models", m,
                       "--plans", str(args.plans), "--batch", ",".join(map(str, args.batch)),
                       "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--rounds", str(args.rounds),
                       "--budget-s", str(args.budget_s), "--stat", args.stat, "--save", str(out), "--json"]
                cmd += (["--threads", str(args.threads)] if args.threads else []) + \
                       (["--device-map", args.device_map] if args.device_map else [])
                log(f"process {r + 1}/{args.processes}: {m}")
                done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                if done.returncode:
                    raise RuntimeError(f"measuring {m} in a fresh process failed (exit {done.returncode}):\n"
                                       + done.stderr[-3000:])
                parts.append(load_measured(out))
    return merge_measured(parts)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..calibrate import load_measured, measure_fidelity, score_fidelity
    from ..profile import load_profile

    if args.plans < 1:
        raise ValueError("--plans must be >= 1")
    if args.measured and args.models:
        raise ValueError("--measured re-scores saved cases; --models would measure new ones: give one of them")
    if args.save and args.measured:
        raise ValueError("--save writes new measurements; with --measured nothing is measured")
    if args.save and Path(args.save).exists() and not args.force:
        raise ValueError(f"{args.save} exists; pass --force to overwrite it (measurements are never replaced silently)")
    profile = load_profile(args.profile)
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else (lambda s: print(s, flush=True))
    if args.measured:
        measured = load_measured(args.measured)
    else:
        models = [m.strip() for m in (args.models or "").split(",") if m.strip()]
        if not models:
            raise ValueError("--models: give at least one model (or --measured FILE)")
        if args.processes < 1:
            raise ValueError(f"--processes must be >= 1, got {args.processes}")
        if args.processes > 1:
            measured = _measure_in_processes(args, models, log)
        else:
            measured = measure_fidelity(profile, models, plans=args.plans, batches=args.batch, threads=args.threads,
                                        repeats=args.repeats, warmup=args.warmup, device_map=args.device_map,
                                        budget_s=args.budget_s, stat=args.stat, rounds=args.rounds, log=log)
        if args.save:
            Path(args.save).parent.mkdir(parents=True, exist_ok=True)
            Path(args.save).write_text(json.dumps(measured, indent=1) + "\n")
            log(f"wrote {args.save} ({len(measured['cases'])} measured case(s))")
    res = score_fidelity(profile, measured)
    if args.json:
        from sparoa_env.jsonutil import dumps

        print(dumps(res, indent=1))
        return 0
    print(f"\nprofile {profile.name} ({profile.provenance.split(':')[0]}), {len(res['cases'])} case(s)"
          + (f", measurements from {args.measured}" if args.measured else ""))
    print(f"{'model':<42} {'b':>2} {'plan':<12} {'measured ms':>12} {'predicted ms':>13} {'error':>8} {'halves':>8}")
    for c in res["cases"]:
        print(f"{c['model'][-42:]:<42} {c['batch']:>2} {c['plan']:<12} {c['measured_ms']:12.3f} "
              f"{c['predicted_ms']:13.3f} {c['error']:+8.1%} {c['halves_diff']:+8.1%}")
    rep = res["repeatability"]
    print(f"within +-5%: {res['within_5pct']:.0%}   within +-10%: {res['within_10pct']:.0%}   "
          f"median |error|: {res['median_abs_error']:.1%}")
    scope = ("two separate processes" if rep.get("scope") == "processes" else "two interleaved halves of one process")
    print(f"repeatability ({scope} per case agree): within +-5%: {rep['within_5pct']:.0%}   "
          f"within +-10%: {rep['within_10pct']:.0%}   median |difference|: {rep['median_abs_diff']:.1%}")
    print(res["clock_note"])
    return 0
