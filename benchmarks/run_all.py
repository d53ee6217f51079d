"""Run every benchmark that prints the README's figures, one after another (``make bench``).

    python benchmarks/run_all.py [--quick] [--only env_speed,engine,deploy,loom,rollout,fidelity,readme_figures]

Each benchmark is its own script (run it alone for its options). Timings are only comparable within one
run on one machine: every benchmark compares ratios measured in the same run. The fidelity benchmark
re-records traces and refits the host profile (~10 minutes); it runs only when named in ``--only``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = {
    "env_speed": ["bench_env_speed.py"],
    "engine": ["bench_engine.py"],
    "deploy": ["bench_deploy.py"],
    "loom": ["bench_loom.py"],
    "rollout": ["bench_rollout_ray.py"],
    "readme_figures": ["readme_figures.py"],
    "fidelity": ["fidelity.py"],
}
QUICK = {"env_speed": ["--steps", "5000"], "engine": ["--quick"], "rollout": ["--steps", "1000"],
         "deploy": ["--rounds", "1"]}
DEFAULT = ("env_speed", "engine", "deploy", "loom", "rollout", "readme_figures")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller budgets (figures noisier)")
    ap.add_argument("--only", default=",".join(DEFAULT), help=f"comma list from {', '.join(BENCHES)}")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; valid: {', '.join(BENCHES)}")
    failed = []
    for name in names:
        cmd = [sys.executable, str(HERE / BENCHES[name][0])] + (QUICK.get(name, []) if args.quick else [])
        print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, cwd=HERE.parent)
        print(f"=== {name}: exit {rc}, {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
