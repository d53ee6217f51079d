"""Regenerate this machine's CPU traces, the fitted ``host`` profile and the fidelity figures.

    .venv/bin/python benchmarks/fidelity.py --force         # everything (about 20 minutes on 2 idle cores)
    .venv/bin/python benchmarks/fidelity.py --skip-record --force   # refit + fidelity from the traces on disk
    .venv/bin/python benchmarks/fidelity.py --skip-record --skip-fit --measured benchmarks/results/fidelity-measured-<machine>.json --force
                                                            # re-score saved measurements (no timing, no refit)
    .venv/bin/python benchmarks/fidelity.py --stat p10      # fit and compare p10 instead of medians

Steps (each is one ``sparoa`` command, printed before it runs):

1. ``sparoa profile MODEL --threads 1,2 --batch 1,8 --out traces/<machine>/MODEL.parquet`` for every zoo
   model (``--models`` to choose), 1 and 2 threads, batch 1 and 8 (on a machine with N cores: 1 and N), the
   small calibration models of ``benchmarks/calib_models.py`` (``small-<name>.parquet``: the
   sub-millisecond regime the zoo lacks) and the 40 networks of the sampled architecture suite
   ``benchmarks/sampled_models.py`` (``sampled-<name>.parquet``); each model in a fresh process.
2. ``sparoa calibrate`` on the CALIBRATION half of the zoo plus the small and sampled models ->
   ``build/host-calib.json`` (held out: the other half of the zoo and the unseen models of
   ``tests/models_unseen.py``); the small models run under 3 plans (``sparoa fidelity --processes 2 --save
   traces/<machine>/handoff.json``) and the calibration is repeated with ``--handoff`` (lane hand-off latency
   from those executor runs); then every trace -> ``sparoa_env/data/profiles/host.json`` (written next to it
   and moved over it in one step).
3. ``sparoa fidelity --profile build/host-calib.json --models <held-out zoo + unseen> --plans 3 --repeats 100
   --budget-s 3 --processes 2 --save benchmarks/results/fidelity-measured-<machine>.json`` at batch 1 (each
   model in two fresh processes; the two give the machine's repeatability across processes), or with
   ``--measured FILE`` the saved measurements re-scored -> ``benchmarks/results/fidelity-<machine>.json`` and
   a table on stdout.

It is how traces, the host profile and the fidelity figures are regenerated: a run that would replace
recorded ones (traces, ``host.json``, ``handoff.json``, the results files) is refused unless ``--force``.
``build/host-calib.json`` is derived (not shipped): with ``--skip-fit`` it is fitted from the shipped traces
when missing, so the re-scoring command works from a fresh clone.
Record on a quiet machine: the traces store the run-to-run noise and the load average, and calibrate
prints them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CALIBRATION = ["mobilenet_v3_small", "mobilenet_v2", "resnet18", "vit_tiny", "bert_tiny", "swin_tiny"]
HELD_OUT = ["mobilenet_v3_large", "efficientnet_b0", "resnet50", "vit_small", "bert_base"]
UNSEEN = [f"tests/models_unseen.py:{f}" for f in
          ("residual_cnn", "branching_cnn", "transformer_encoder", "depthwise_cnn", "squeeze_excite")]
SMALL = [f"benchmarks/calib_models.py:{f}" for f in ("plain_cnn", "separable_net", "gelu_mlp", "token_attention")]
SAMPLED_FILE = "benchmarks/sampled_models.py"


def _sampled() -> list[str]:
    """The sampled architecture suite (``benchmarks/sampled_models.py``: 40 seeded random CNNs, transformers
    and MLPs, nn-Meter style coverage of the op space; none of the held-out architectures)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_sampled_models", ROOT / SAMPLED_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return list(mod.ALL)


def _small_trace(spec: str) -> str:
    return "small-" + spec.rsplit(":", 1)[1] + ".parquet"


def _sampled_trace(spec: str) -> str:
    return "sampled-" + spec.rsplit(":", 1)[1] + ".parquet"


def sparoa_fresh(*argv: str) -> None:
    """Run one ``sparoa`` subcommand in a fresh Python process. Measurements are taken one model per
    process: in one long process, a model's 2-thread time drifted with what ran before it (mobilenet_v3_large
    14.5 ms after five other models against 11.3-11.5 ms in a fresh process; efficientnet_b0 up to 21 ms)."""
    import subprocess

    print("$ sparoa " + " ".join(shlex.quote(a) for a in argv), flush=True)
    rc = subprocess.call([sys.executable, "-m", "sparoa_env.cli", *argv], cwd=ROOT)
    if rc:
        raise SystemExit(f"sparoa {argv[0]} failed with exit status {rc}")


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
    ap.add_argument("--record-only", action="store_true", help="record the traces, then stop")
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
    ap.add_argument("--processes", type=int, default=2,
                    help="fresh processes per measured model (sparoa fidelity --processes; default 2: the printed "
                         "repeatability is across processes)")
    ap.add_argument("--threads", type=int, default=None, help="threads of the single-lane fidelity plan (default all)")
    ap.add_argument("--held-out", default=None, help="models for fidelity (default: the held-out zoo half + unseen)")
    ap.add_argument("--no-small", action="store_true", help="leave the small calibration models out")
    ap.add_argument("--no-sampled", action="store_true", help="leave the sampled architecture suite out")
    ap.add_argument("--measured", default=None,
                    help="re-score these saved fidelity measurements instead of measuring (sparoa fidelity --measured)")
    ap.add_argument("--skip-fit", action="store_true",
                    help="keep host.json (and build/host-calib.json, which is fitted only when missing) as they are")
    ap.add_argument("--force", action="store_true",
                    help="replace the recorded traces, host.json, handoff.json and the results files this run rewrites")
    args = ap.parse_args()
    os.chdir(ROOT)
    from sparoa_env.traces import machine_id

    machine = machine_id()
    tdir = Path("traces") / machine
    ncores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = "1" if ncores == 1 else f"1,{ncores}"
    t0 = time.time()
    small = [] if args.no_small else SMALL
    sampled = [] if args.no_sampled else _sampled()
    handoff = tdir / "handoff.json"
    out = Path("benchmarks/results") / f"fidelity-{machine}.json"
    saved = Path("benchmarks/results") / f"fidelity-measured-{machine}.json"
    # recorded results this run would replace: refused unless --force (nothing recorded is replaced unasked)
    replace = []
    if not args.skip_record:
        replace += sorted(str(p) for p in tdir.glob("*.parquet"))
    if not args.record_only:
        if not args.skip_fit:
            replace.append("sparoa_env/data/profiles/host.json")
            if small and (not args.skip_record or not handoff.is_file()) and handoff.is_file():
                replace.append(str(handoff))
        if not args.measured and saved.is_file():
            replace.append(str(saved))
        if out.is_file():
            replace.append(str(out))
    if replace and not args.force:
        shown = ", ".join(replace[:4]) + (f" and {len(replace) - 4} more" if len(replace) > 4 else "")
        raise SystemExit(f"this run would replace recorded results: {shown}; pass --force to replace them "
                         "(or --skip-record / --skip-fit / --measured FILE to keep them)")
    if not args.skip_record:   # one fresh process per model (see sparoa_fresh)
        for m in [x for x in args.models.split(",") if x]:
            sparoa_fresh("profile", m, "--threads", threads, "--batch", "1,8", "--repeats", str(args.repeats),
                         "--budget-s", str(args.budget_s), "--out", str(tdir / f"{m}.parquet"), "--force")
        for m in small:   # sub-millisecond passes: more repeats for a stable median, no micro-benchmarks
            sparoa_fresh("profile", m, "--threads", threads, "--batch", "1,8", "--repeats", str(max(args.repeats, 30)),
                         "--budget-s", str(args.budget_s), "--no-micro", "--out", str(tdir / _small_trace(m)), "--force")
        for m in sampled:
            sparoa_fresh("profile", m, "--threads", threads, "--batch", "1,8", "--repeats", str(max(args.repeats, 20)),
                         "--budget-s", "2", "--no-micro", "--out", str(tdir / _sampled_trace(m)), "--force")
    t_rec = time.time() - t0
    if args.record_only:
        print(f"recorded in {t_rec:.0f}s")
        return 0
    calib = [str(tdir / f"{m}.parquet") for m in CALIBRATION if (tdir / f"{m}.parquet").is_file()]
    calib += [str(tdir / _small_trace(m)) for m in small if (tdir / _small_trace(m)).is_file()]
    calib += [str(tdir / _sampled_trace(m)) for m in sampled if (tdir / _sampled_trace(m)).is_file()]
    every = sorted(str(p) for p in tdir.glob("*.parquet")
                   if not (args.no_small and p.name.startswith("small-"))
                   and not (args.no_sampled and p.name.startswith("sampled-")))
    if not calib:
        raise SystemExit(f"no calibration traces under {tdir}; run without --skip-record first")
    extra = ["--stat", args.stat] + (["--max-spread", str(args.max_spread)] if args.max_spread is not None else [])
    Path("build").mkdir(exist_ok=True)
    if args.skip_fit and not Path("build/host-calib.json").is_file():
        # build/ is not shipped: derive the calibration-half profile from the shipped traces (deterministic)
        sparoa("calibrate", *calib, "--out", "build/host-calib.json", "--name", "host-calib", *extra,
               *(["--handoff", str(handoff)] if handoff.is_file() else []))
    if not args.skip_fit:
        sparoa("calibrate", *calib, "--out", "build/host-calib.json", "--name", "host-calib", "--force", *extra)
        if small and (not args.skip_record or not handoff.is_file()):
            # executor runs of the small calibration models under mixed plans: the lane hand-off latency
            sparoa("fidelity", "--profile", "build/host-calib.json", "--models", ",".join(small), "--plans", "3",
                   "--repeats", "200", "--budget-s", "2", "--processes", str(args.processes), "--save", str(handoff),
                   "--force")
        if handoff.is_file():
            extra += ["--handoff", str(handoff)]
            sparoa("calibrate", *calib, "--out", "build/host-calib.json", "--name", "host-calib", "--force", *extra)
        # written next to host.json, then moved over it in one step (other jobs may be loading it)
        tmp = "sparoa_env/data/profiles/.host.json.new"
        sparoa("calibrate", *every, "--out", tmp, "--name", "host", "--force", *extra)
        os.replace(tmp, "sparoa_env/data/profiles/host.json")
    held = (args.held_out.split(",") if args.held_out else
            [m for m in HELD_OUT if m in args.models.split(",")] + UNSEEN)
    out.parent.mkdir(parents=True, exist_ok=True)
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        if args.measured:
            sparoa("fidelity", "--profile", "build/host-calib.json", "--measured", args.measured, "--json")
        else:
            sparoa("fidelity", "--profile", "build/host-calib.json", "--models", ",".join(held), "--plans",
                   str(args.plans), "--stat", args.stat, "--repeats", str(args.fid_repeats), "--budget-s",
                   str(args.fid_budget_s), "--processes", str(args.processes), "--json", "--save", str(saved), "--force",
                   *(["--threads", str(args.threads)] if args.threads else []))
    text = buf.getvalue()
    res = json.loads(text[text.index("{"):])
    res["command"] = "python benchmarks/fidelity.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    res["calibrated_on"] = CALIBRATION + small
    res["measurements"] = args.measured or str(saved)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"\nfidelity of build/host-calib.json on held-out models ({len(res['cases'])} cases), stat {res['stat']}, "
          f"measurements {res['measurements']} (taken {res['measured_meta'].get('created_utc')}, load average "
          f"before/after {res['measured_meta'].get('loadavg_1m_before_after')}):")
    for c in res["cases"]:
        print(f"  {c['model']:<40} b{c['batch']} {c['plan']:<10} measured {c['measured_ms']:9.3f} ms  "
              f"predicted {c['predicted_ms']:9.3f} ms  {c['error']:+7.1%}   (halves {c['halves_diff']:+6.1%})")
    groups = {"all": res["cases"], "held-out zoo": [c for c in res["cases"] if ".py:" not in c["model"]],
              "unseen small": [c for c in res["cases"] if ".py:" in c["model"]]}
    for name, cs in groups.items():
        if not cs:
            continue
        e = [abs(c["error"]) for c in cs]
        h = [abs(c["halves_diff"]) for c in cs]
        share = (lambda xs, lim: sum(x <= lim for x in xs) / len(xs))
        print(f"{name:<13} ({len(cs):2d} cases): within +-5%: {share(e, 0.05):4.0%}  within +-10%: {share(e, 0.10):4.0%}  "
              f"median |error| {statistics.median(e):.1%}   | repeatability ceiling: halves within +-5%: "
              f"{share(h, 0.05):4.0%}, +-10%: {share(h, 0.10):4.0%} ({res['repeatability'].get('scope', 'rounds')})")
    print(f"wrote {out}; recording {t_rec:.0f}s, total {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
