"""Regenerate this machine's CPU traces, the fitted ``host`` profile and the fidelity figures.

    .venv/bin/python benchmarks/fidelity.py                 # everything (about 6 minutes on 2 idle cores)
    .venv/bin/python benchmarks/fidelity.py --skip-record   # refit + fidelity from the traces on disk
    .venv/bin/python benchmarks/fidelity.py --stat p10      # fit and compare p10 instead of medians

Steps (each is one ``sparoa`` command, printed before it runs):

1. ``sparoa profile MODEL --threads 1,2 --batch 1,8 --out traces/<machine>/MODEL.parquet`` for every zoo
   model (``--models`` to choose), 1 and 2 threads, batch 1 and 8 (on a machine with N cores: 1 and N).
2. ``sparoa calibrate`` on the CALIBRATION half of the zoo -> ``build/host-calib.json`` (held out: the other
   half and the unseen file models), then on every zoo trace -> ``sparoa_env/data/profiles/host.json``.
3. ``sparoa fidelity --profile build/host-calib.json --models <held-out zoo + unseen> --plans 3 --repeats 100
   --budget-s 3`` at batch 1 -> ``benchmarks/results/fidelity-<machine>.json`` and a table on stdout.

Traces and the host profile are overwritten (``--force``): this script is how they are regenerated.
Record on a quiet machine: the traces store the run-to-run noise and the load average, and calibrate
prints them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CALIBRATION = ["mobilenet_v3_small", "mobilenet_v2", "resnet18", "vit_tiny", "bert_tiny", "swin_tiny"]
HELD_OUT = ["mobilenet_v3_large", "efficientnet_b0", "resnet50", "vit_small", "bert_base"]
UNSEEN = [f"tests/models_unseen.py:{f}" for f in
          ("residual_cnn", "branching_cnn", "transformer_encoder", "depthwise_cnn", "squeeze_excite")]


def sparoa(*argv: str) -> int:
    """Run one ``sparoa`` subcommand in this process (the same code as the console script)."""
    print("$ sparoa " + " ".join(shlex.quote(a) for a in argv), flush=True)
    from sparoa_env import cli

    module = cli.COMMANDS[argv[0]][0]
    parser = argparse.ArgumentParser(prog=f"sparoa {argv[0]}")
    importlib.import_module(module).register(parser)
    args = parser.parse_args(list(argv[1:]))
    args.command = argv[0]
    rc = int(importlib.import_module(module).run(args) or 0)
    if rc:
        raise SystemExit(f"sparoa {argv[0]} failed with exit status {rc}")
    return rc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-record", action="store_true", help="use the traces already in traces/<machine>/")
    ap.add_argument("--models", default=",".join(CALIBRATION + HELD_OUT), help="zoo models to trace")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--budget-s", type=float, default=4.0, help="time budget per traced configuration")
    ap.add_argument("--stat", choices=("median", "p10"), default="median")
    ap.add_argument("--max-spread", type=float, default=None, help="passed to sparoa calibrate")
    ap.add_argument("--plans", type=int, default=3)
    ap.add_argument("--fid-repeats", type=int, default=100,
                    help="timed runs per fidelity case (capped by --fid-budget-s; sub-millisecond models need many: "
                         "with 10 runs their median moved by up to 70%% between two runs)")
    ap.add_argument("--fid-budget-s", type=float, default=3.0, help="time budget per fidelity case")
    ap.add_argument("--threads", type=int, default=None, help="threads of the single-lane fidelity plan (default all)")
    ap.add_argument("--held-out", default=None, help="models for fidelity (default: the held-out zoo half + unseen)")
    args = ap.parse_args()
    os.chdir(ROOT)
    from sparoa_env.traces import machine_id

    machine = machine_id()
    tdir = Path("traces") / machine
    ncores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = "1" if ncores == 1 else f"1,{ncores}"
    t0 = time.time()
    if not args.skip_record:
        for m in [x for x in args.models.split(",") if x]:
            sparoa("profile", m, "--threads", threads, "--batch", "1,8", "--repeats", str(args.repeats),
                   "--budget-s", str(args.budget_s), "--out", str(tdir / f"{m}.parquet"), "--force")
    t_rec = time.time() - t0
    calib = [str(tdir / f"{m}.parquet") for m in CALIBRATION if (tdir / f"{m}.parquet").is_file()]
    every = sorted(str(p) for p in tdir.glob("*.parquet"))
    if not calib:
        raise SystemExit(f"no calibration traces under {tdir}; run without --skip-record first")
    extra = ["--stat", args.stat] + (["--max-spread", str(args.max_spread)] if args.max_spread is not None else [])
    Path("build").mkdir(exist_ok=True)
    sparoa("calibrate", *calib, "--out", "build/host-calib.json", "--name", "host-calib", "--force", *extra)
    sparoa("calibrate", *every, "--out", "sparoa_env/data/profiles/host.json", "--name", "host", "--force", *extra)
    held = (args.held_out.split(",") if args.held_out else
            [m for m in HELD_OUT if m in args.models.split(",")] + UNSEEN)
    out = Path("benchmarks/results") / f"fidelity-{machine}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    import contextlib
    import io

    buf = io.StringIO()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with contextlib.redirect_stdout(buf):
        sparoa("fidelity", "--profile", "build/host-calib.json", "--models", ",".join(held), "--plans",
               str(args.plans), "--stat", args.stat, "--repeats", str(args.fid_repeats), "--budget-s",
               str(args.fid_budget_s), "--json",
               *(["--threads", str(args.threads)] if args.threads else []))
    text = buf.getvalue()
    res = json.loads(text[text.index("{"):])
    res["command"] = "python benchmarks/fidelity.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    res["calibrated_on"] = CALIBRATION
    res["loadavg_1m_before_after"] = [load_before, os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")]
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"\nfidelity of build/host-calib.json on held-out models ({len(res['cases'])} cases), stat {args.stat}:")
    for c in res["cases"]:
        print(f"  {c['model']:<40} b{c['batch']} {c['plan']:<10} measured {c['measured_ms']:9.3f} ms  "
              f"predicted {c['predicted_ms']:9.3f} ms  {c['error']:+7.1%}")
    print(f"within +-5%: {res['within_5pct']:.0%}  within +-10%: {res['within_10pct']:.0%}  "
          f"median |error| {res['median_abs_error']:.1%}")
    print(f"wrote {out}; recording {t_rec:.0f}s, total {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
