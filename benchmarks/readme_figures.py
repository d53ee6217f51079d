"""Draw the README's schedule figures from the simulator (deterministic: same seed, same pictures).

    python benchmarks/readme_figures.py [--out docs]

Writes ``render.png`` (``render_mode="rgb_array"``) and ``render.txt`` (``render_mode="ansi"``) of one
SparOA-Orin-v0 episode of mobilenet_v3_small under dynamic background load, placed by the threshold rule
by the exact chain-DP plan of its linearised graph (``agents.oracle.chain_dp``, the plan the SAC actor
is cloned from), so that both lanes are used.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

import sparoa_env  # noqa: F401


def episode(render_mode: str):
    env = gym.make("SparOA-Orin-v0", model="mobilenet_v3_small", background="dynamic", render_mode=render_mode)
    from agents.oracle import chain_dp
    from agents.train import linearised

    u = env.unwrapped
    obs, info = env.reset(seed=0)
    lanes = chain_dp(linearised(u.graph), u.cost_model, info["power_mode"]).lanes
    done, k = False, 0
    while not done:
        obs, _, done, _, info = env.step(u.score_of(int(lanes[k])))
        k += 1
    return env.render(), info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text, info = episode("ansi")
    (out / "render.txt").write_text(text)
    img, _ = episode("rgb_array")
    import matplotlib.pyplot as plt

    plt.imsave(out / "render.png", np.ascontiguousarray(img))
    print(text)
    print(f"latency {info['latency_ms'][0]:.3f} ms, energy {info['energy_mj']:.1f} mJ per inference; "
          f"wrote {out / 'render.png'} and {out / 'render.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
