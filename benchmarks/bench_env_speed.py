"""Steps per second of SparOA-Orin-v0 (sim backend) next to Gymnasium's CartPole-v1, in one run.

    python benchmarks/bench_env_speed.py [--models mobilenet_v3_small,resnet50,vit_tiny] [--steps 20000] [--json]

Both environments are created with ``gym.make`` (default wrappers) and stepped with a fixed action
sequence; the clock covers reset + step calls only. Target (issue 3): at least 0.4x CartPole's rate.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import gymnasium as gym
import numpy as np

import sparoa_env  # noqa: F401  (registers the ids)


def steps_per_second(env, n_steps: int, actions: np.ndarray, repeats: int = 3) -> float:
    best = 0.0
    for rep in range(repeats):
        env.reset(seed=rep)
        t0 = time.perf_counter()
        for k in range(n_steps):
            _, _, term, trunc, _ = env.step(actions[k % len(actions)])
            if term or trunc:
                env.reset()
        best = max(best, n_steps / (time.perf_counter() - t0))
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mobilenet_v3_small,resnet50,vit_tiny")
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--background", default="dynamic")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    cart = gym.make("CartPole-v1")
    cart_sps = steps_per_second(cart, args.steps, rng.integers(0, 2, 1000))
    rows = []
    for model in args.models.split(","):
        env = gym.make("SparOA-Orin-v0", model=model, background=args.background)
        acts = rng.uniform(-1, 1, (1000, 1)).astype(np.float32)
        sps = steps_per_second(env, args.steps, acts)
        rows.append({"env": f"SparOA-Orin-v0[{model}]", "ops": len(env.unwrapped.graph), "steps_per_s": sps,
                     "ratio_to_cartpole": sps / cart_sps})
    result = {"cartpole_steps_per_s": cart_sps, "sparoa": rows, "python": sys.version.split()[0],
              "machine": platform.machine(), "background": args.background}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"CartPole-v1: {cart_sps:,.0f} steps/s")
        for r in rows:
            print(f"{r['env']:<42} {r['ops']:>4} ops  {r['steps_per_s']:>9,.0f} steps/s  "
                  f"{r['ratio_to_cartpole']:.2f}x CartPole")
    return 0


if __name__ == "__main__":
    sys.exit(main())
