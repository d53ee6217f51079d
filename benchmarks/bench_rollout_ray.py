"""Rollout steps per second of SparOA-Orin-v0 through Tianshou's vector envs: RayVectorEnv with 1 and 2
workers (and Dummy / Subproc for reference), random actions, no learning.

    python benchmarks/bench_rollout_ray.py [--model mobilenet_v3_small] [--steps 4000] [--kinds ray,dummy,subproc]

With a Ray cluster (``ray start --head`` on one node, ``ray start --address=HEAD:6379`` on the others),
set ``RAY_ADDRESS=HEAD:6379`` (or ``auto``) and the workers spread over its nodes; without one a local Ray
instance starts. Each vector env steps all its workers at once, so steps/s counts env steps summed over
workers. Ray pays a round trip per step and worker, which a 20k-steps/s env feels: Ray pays off when the
workers are on other machines or when env steps are slow, not on one laptop.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rate(kind: str, workers: int, model: str, steps: int) -> float:
    from agents.train import make_env, vector_env

    kw = {"model": model, "background": "dynamic"}
    venv = vector_env(kind, [lambda: make_env("SparOA-Orin-v0", kw, 1.0)] * workers)
    try:
        venv.seed(list(range(workers)))
        venv.reset()
        rng = np.random.default_rng(0)
        acts = rng.uniform(-1, 1, (1024, workers, 1)).astype(np.float32)
        for k in range(50):  # warm-up
            _, _, term, trunc, _ = venv.step(acts[k % 1024])
            done = np.flatnonzero(term | trunc)
            if done.size:
                venv.reset(done)
        n = max(steps // workers, 1)
        t0 = time.perf_counter()
        for k in range(n):
            _, _, term, trunc, _ = venv.step(acts[k % 1024])
            done = np.flatnonzero(term | trunc)
            if done.size:
                venv.reset(done)
        return n * workers / (time.perf_counter() - t0)
    finally:
        venv.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilenet_v3_small")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--kinds", default="ray,dummy,subproc")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    rows = []
    for kind in a.kinds.split(","):
        for w in (1, 2):
            r = rate(kind, w, a.model, a.steps)
            rows.append({"vector": kind, "workers": w, "steps_per_s": round(r, 1)})
            if not a.json:
                print(f"{kind:>8}  workers={w}  {r:9.1f} env steps/s", flush=True)
    if a.json:
        print(json.dumps({"model": a.model, "cpus": os.cpu_count(), "ray_address": os.environ.get("RAY_ADDRESS"),
                          "rows": rows}))
    if "ray" in a.kinds:
        import ray

        ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
