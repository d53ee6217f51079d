"""``sparoa evaluate``: run a trained policy and the baselines on the same seeds; print a table or JSON.

    sparoa evaluate --env SparOA-Orin-v0 --set background=dynamic [--policy runs/sac] \\
                    [--baselines all|heft,greedy] [--episodes 20] [--seed 0] [--json]

With ``--policy``, the env id and kwargs default to the ones the policy was trained on and ``--set``
overrides them. ``--json`` prints ``{"policies": {name: {"latency_ms_mean", "latency_ms_p95",
"energy_mj_mean", ...}}, "lower_bound_ms", ...}``; SAC appears as ``"sac"``. The lower bound is a bound;
an exact optimum (``oracle``) is listed only where one applies (a chain under a static state).
"""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default=None, help="a registered id (default: the policy's, else SparOA-Orin-v0)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an env kwarg (repeatable); VALUE is JSON when it parses, else a string")
    parser.add_argument("--policy", default=None, metavar="DIR", help="a run directory written by `sparoa train`")
    parser.add_argument("--baselines", default="all", help="'all', 'none' or a comma list of: cpu_only, gpu_only, "
                        "greedy, heft, threshold, random")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per policy (seeds seed..seed+N-1)")
    parser.add_argument("--seed", type=int, default=0, help="first evaluation seed")
    parser.add_argument("--no-oracle", action="store_true", help="skip the exact oracle even where it applies")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")


def run(args: argparse.Namespace) -> int:
    from agents.config import parse_set
    import sys

    from agents.evaluate import evaluate, evaluation_env_kwargs, format_table, to_json, transfer_note

    policies = []
    cfg = None
    if args.policy:
        from agents.policy import load_policy

        pol = load_policy(args.policy)
        cfg = pol.config
        policies.append(pol)
    env_id = args.env or (cfg["env_id"] if cfg else "SparOA-Orin-v0")
    kwargs = evaluation_env_kwargs(cfg, parse_set(args.set))
    note = transfer_note(cfg, env_id, kwargs)
    if note:
        print(note, file=sys.stderr)
    result = evaluate(env_id, kwargs, policies=policies, baselines=args.baselines, episodes=args.episodes,
                      seed=args.seed, oracle=not args.no_oracle)
    print(to_json(result) if args.json else format_table(result))
    return 0
