"""``sparoa sim2real``: train in the simulator on a calibrated profile, evaluate the same policy on the hw
backend (same profile, a device map), fine-tune on hardware, report sim-predicted vs measured latency.

    sparoa sim2real [--model resnet18] [--sim-env SparOA-Host-v0] [--hw-env SparOA-Host-hw-v0] \\
                    [--set KEY=VALUE ...] [--sim-set ...] [--hw-set ...] [--steps 3000] [--hw-steps 2000] \\
                    [--episodes 5] [--seed 0] --out DIR [--force] [--json]

``--set`` goes to both envs except hw-backend options (``device_map``, ``repeats``, ``warmup``, ...), which go
to the hw env only; a ``--hw-env`` id that is not a hw registration gets ``backend=hw``. On a GPU machine:
``--sim-env SparOA-Orin-v0 --hw-env SparOA-Orin-v0 --set device_map='{"cpu":"cpu","gpu":"cuda:0"}'``.
The hardware fine-tune is a keep-best search over plans measured on hardware, not SAC (agents/sim2real.py
says why). Writes ``OUT/policy`` (the sim run), ``OUT/sim2real.json``, ``OUT/plan_before.json`` and
``OUT/plan_after.json``; a non-empty ``OUT`` is refused unless ``--force``. See docs/agents.md.
"""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    from agents.sim2real import Sim2RealArgs

    d = Sim2RealArgs()
    parser.add_argument("--model", default=d.model, help=f"zoo name or file.py:function (default {d.model})")
    parser.add_argument("--sim-env", default=d.sim_env, help=f"simulated env id to train on (default {d.sim_env})")
    parser.add_argument("--hw-env", default=d.hw_env, help=f"env id measured on hardware (default {d.hw_env}); "
                        "any id, backend=hw is added when it is not a hw registration")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an env kwarg for both envs (hw-backend options such as device_map: hw env only)")
    parser.add_argument("--sim-set", action="append", default=[], metavar="KEY=VALUE", help="sim env only")
    parser.add_argument("--hw-set", action="append", default=[], metavar="KEY=VALUE", help="hw env only")
    parser.add_argument("--steps", type=int, default=d.steps, help=f"sim training env steps (default {d.steps})")
    parser.add_argument("--bc-steps", type=int, default=d.bc_steps,
                        help=f"behaviour-cloning steps of the sim training (default {d.bc_steps})")
    parser.add_argument("--workers", type=int, default=d.workers, help=f"sim training envs (default {d.workers})")
    parser.add_argument("--hw-steps", type=int, default=d.hw_steps,
                        help=f"real op executions for the hardware fine-tune (default {d.hw_steps}; 0: none)")
    parser.add_argument("--repeats", type=int, default=d.repeats,
                        help=f"hw episodes per candidate plan in the fine-tune (default {d.repeats})")
    parser.add_argument("--episodes", type=int, default=d.episodes,
                        help=f"evaluation seeds 1000..1000+K-1 (default {d.episodes})")
    parser.add_argument("--seed", type=int, default=d.seed, help="training seed")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (refused if not empty, unless --force)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output directory")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from agents.config import parse_set
    from agents.sim2real import Sim2RealArgs, format_report, sim2real

    a = Sim2RealArgs(model=args.model, sim_env=args.sim_env, hw_env=args.hw_env, common=parse_set(args.set),
                     sim_set=parse_set(args.sim_set), hw_set=parse_set(args.hw_set), steps=args.steps,
                     bc_steps=args.bc_steps, workers=args.workers, hw_steps=args.hw_steps, repeats=args.repeats,
                     episodes=args.episodes, seed=args.seed, out=args.out, force=args.force,
                     progress=not (args.no_progress or args.json))
    try:
        result = sim2real(a)
    except FileExistsError as e:
        print(f"sparoa sim2real: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        from sparoa_env.jsonutil import dumps

        print(dumps(result, indent=1))
    else:
        print(format_report(result))
        print(f"JSON: {a.out}/sim2real.json")
    return 0
