"""``sparoa scenarios``: the scenario suite (power modes x static/dynamic background x mode switches, and
a chain where the oracle is exact) for a trained policy and every baseline; checks the issue's goals.

    sparoa scenarios --policy runs/suite/policy [--models mobilenet_v3_small] [--episodes 10] \\
                     [--only MAXN/static,15W/dynamic] [--energy-policy DIR] [--out runs/suite] [--json]

Writes ``OUT/suite.json``, ``OUT/suite.txt`` and ``OUT/suite_speedup.png``; an OUT that holds them already is
refused unless ``--force``. See agents/scenarios.py.
"""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", default=None, metavar="DIR", help="a run directory written by `sparoa train`")
    parser.add_argument("--energy-policy", default=None, metavar="DIR",
                        help="a policy trained with energy_weight > 0 (adds the energy scenario)")
    parser.add_argument("--models", default="mobilenet_v3_small", help="comma list of zoo models")
    parser.add_argument("--only", default=None, help="comma list of scenario names (default: all)")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--out", default="runs/suite", help="output directory (default runs/suite)")
    parser.add_argument("--force", action="store_true", help="overwrite the suite files already in --out")
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    import json

    from agents.scenarios import SCENARIOS, check_suite_out, format_suite, run_suite, save_suite

    check_suite_out(args.out, args.force)  # before the (long) run, not after
    only = [s.strip() for s in args.only.split(",")] if args.only else None
    for s in only or ():
        if s not in SCENARIOS:
            raise ValueError(f"unknown scenario {s!r}; valid: {', '.join(SCENARIOS)}")
    suite = run_suite(args.policy, [m.strip() for m in args.models.split(",") if m.strip()], episodes=args.episodes,
                      seed=args.seed, scenarios=only, energy_policy_dir=args.energy_policy, progress=not args.json)
    save_suite(suite, args.out, force=args.force)
    from sparoa_env.jsonutil import dumps

    print(dumps(suite, indent=1) if args.json else format_suite(suite))
    return 0
