"""``sparoa train``: train a SAC placement policy (Tianshou 2.x) on a SparOA environment.

    sparoa train --env SparOA-Orin-v0 --set model=mobilenet_v3_small --set background=dynamic \\
                 --steps 60000 --seed 0 --out runs/sac [--vector dummy|subproc|ray] [--workers 8] [--force]

Writes ``policy.pt`` (actor state_dict), ``config.json`` and TensorBoard logs (``tb/``) under ``--out``;
an existing run directory is refused unless ``--force``. See docs/agents.md.
"""

from __future__ import annotations

import argparse
import json


def register(parser: argparse.ArgumentParser) -> None:
    from agents.config import add_arguments

    add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import sys

    from agents.config import args_from_namespace
    from agents.train import train

    try:
        cfg = train(args_from_namespace(args))
    except FileExistsError as e:
        print(f"sparoa train: error: {e}", file=sys.stderr)
        return 2
    t = cfg["training"]
    print(f"trained {cfg['run_name']}: {t['env_steps']} env steps in {t['wall_s']:.1f} s "
          f"({t['workers']} {t['vector']} workers); policy in {args.out}")
    print(json.dumps({"out": args.out, "training": t}))
    return 0
