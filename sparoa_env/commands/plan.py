"""``sparoa plan``: write the placement a trained policy makes for a model and hardware state.

    sparoa plan --policy runs/sac --out plan.json [--env SparOA-Orin-v0] [--set power_mode=15W] [--seed 0] [--force]

Runs one episode of the deterministic policy (seed ``--seed``) and writes the first request's placement
(op name -> processor) as a :class:`sparoa_env.plan.Plan` JSON, with the env, seed and the simulated
latency and energy in ``meta``. The placement depends on the hardware state the policy saw: under
dynamic background load another seed may give another plan.
"""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default=None, help="a registered id (default: the policy's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an env kwarg (repeatable); overrides the policy's training kwargs")
    parser.add_argument("--policy", required=True, metavar="DIR", help="a run directory written by `sparoa train`")
    parser.add_argument("--out", required=True, metavar="PLAN.json", help="where to write the plan (refused if it exists)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out")
    parser.add_argument("--seed", type=int, default=0, help="episode seed (the hardware state's draw)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import gymnasium as gym

    import sparoa_env.envs  # noqa: F401
    from agents.config import parse_set
    from agents.evaluate import evaluation_env_kwargs, run_episode, transfer_note
    from agents.policy import load_policy
    from sparoa_env.plan import Plan

    if Path(args.out).exists() and not args.force:
        raise FileExistsError(f"{args.out} exists; pass --force to overwrite it (plans are never replaced silently)")
    pol = load_policy(args.policy)
    env_id = args.env or pol.config["env_id"]
    kwargs = evaluation_env_kwargs(pol.config, parse_set(args.set))
    note = transfer_note(pol.config, env_id, kwargs)
    if note:
        import sys

        print(note, file=sys.stderr)
    from sparoa_env.envs import require_sparoa_id

    env = gym.make(require_sparoa_id(env_id), **kwargs)
    ep = run_episode(env, pol, args.seed)
    u = env.unwrapped
    meta = {"env_id": env_id, "env_kwargs": {k: v for k, v in kwargs.items() if isinstance(v, (str, int, float, dict, list, bool))},
            "seed": args.seed, "policy": str(args.policy), "power_mode": ep.power_mode,
            "latency_ms": ep.latency_ms, "energy_mj": ep.energy_mj, "profile": u.profile.name,
            "source": "sparoa plan (SAC, deterministic)"}
    plan = Plan(ep.plan, batch=u.batch_size, model=u.graph.model, meta=meta)
    plan.validate(u.graph, u.processors)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    plan.save(args.out)
    counts = ", ".join(f"{p}={n}" for p, n in sorted(plan.counts().items()))
    print(f"wrote {args.out}: {len(plan)} ops ({counts}); simulated latency {ep.latency_ms[0]:.3f} ms, "
          f"energy {ep.energy_mj:.2f} mJ per inference (seed {args.seed}, {ep.power_mode})")
    env.close()
    return 0
