"""``sparoa demo``: the main job on built-in defaults (what ``make demo`` runs).

    sparoa demo [--out runs/demo] [--steps N] [--episodes 20] [--seed 0] [--quick] [--force]

An OUT that holds a demo run already is refused unless ``--force`` (``make demo`` first renames an earlier
``runs/demo`` to ``runs/demo.<time>``, so nothing recorded is lost).

1. trains SAC (Tianshou) on ``SparOA-Orin-v0`` with mobilenet_v3_small under dynamic background load
   (``OUT/policy``): behaviour cloning of the oracle plan, then SAC fine-tuning
   (critic warm-up, anchor to the clone), keeping the best actor on held-out seeds; 30000 env steps,
   about 3 min on 2 loaded cores. A longer run is a plain ``sparoa train --steps 60000 ...`` (docs/agents.md);
2. evaluates it against every baseline and the lower bound on the same seeds; prints the table and writes
   ``OUT/eval.json`` and ``OUT/table.txt``;
3. writes the plots: ``OUT/speedup.png`` (speedup bars), ``OUT/gantt.png`` (the learned schedule next to
   HEFT's, one seed), ``OUT/rho_i.png`` (ops in the rho-I plane coloured by the learned placement), and
   the learned plan ``OUT/plan.json``.

``--quick`` is a tiny budget for smoke tests (the numbers mean nothing).
"""

from __future__ import annotations

import argparse

DEMO_ENV = "SparOA-Orin-v0"
DEMO_KWARGS = {"model": "mobilenet_v3_small", "background": "dynamic"}
DEMO_FILES = ("policy", "table.txt", "eval.json", "speedup.png", "gantt.png", "rho_i.png", "plan.json")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    parser.add_argument("--steps", type=int, default=None, help="SAC environment steps (default: the demo budget)")
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes per policy (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a demo env kwarg (e.g. model=resnet18)")
    parser.add_argument("--quick", action="store_true", help="tiny budget (smoke test)")
    parser.add_argument("--force", action="store_true", help="overwrite a demo run already in --out")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    import gymnasium as gym

    import sparoa_env.envs  # noqa: F401
    from agents import plots
    from agents.baselines import make_baseline
    from agents.config import Args, parse_set
    from agents.evaluate import evaluate, format_table, run_episode, to_json
    from agents.policy import decision_time_us, load_policy
    from agents.train import train
    from sparoa_env.plan import Plan

    out = Path(args.out)
    there = [f for f in DEMO_FILES if (out / f).exists() and not ((out / f).is_dir() and not any((out / f).iterdir()))]
    if there and not args.force:
        raise FileExistsError(f"{out} holds a demo run already ({', '.join(there)}); pass --force to overwrite it or "
                              "--out another directory (results are never replaced silently)")
    out.mkdir(parents=True, exist_ok=True)
    kwargs = {**DEMO_KWARGS, **parse_set(args.set)}
    d = Args()
    steps = args.steps if args.steps is not None else (3000 if args.quick else d.total_steps)
    targs = Args(env_id=DEMO_ENV, env_kwargs=kwargs, seed=args.seed, total_steps=steps, out=str(out / "policy"),
                 force=args.force, progress=not args.no_progress,
                 **({"epoch_steps": 1000, "start_steps": 500, "test_episodes": 1, "demo_episodes": 2, "bc_steps": 50,
                     "workers": 2} if args.quick else {}))
    print(f"[1/3] training SAC on {DEMO_ENV} {kwargs} for {steps} env steps -> {targs.out}", flush=True)
    t0 = time.perf_counter()
    cfg = train(targs)
    t_train = time.perf_counter() - t0
    print(f"      trained in {t_train:.1f} s ({cfg['training']})", flush=True)

    print(f"[2/3] evaluating sac and every baseline on {args.episodes} seeds", flush=True)
    pol = load_policy(targs.out)
    result = evaluate(DEMO_ENV, cfg["env_kwargs"], policies=[pol], baselines="all", episodes=args.episodes,
                      seed=1000 + args.seed)
    env = gym.make(DEMO_ENV, **cfg["env_kwargs"])
    obs, _ = env.reset(seed=0)
    result["sac_decision_us_isolated"] = decision_time_us(pol, obs)
    result["training"] = cfg["training"]
    result["demo_wall_s"] = {"train": round(t_train, 1)}
    table = format_table(result) + (f"\nsac: {result['sac_decision_us_isolated']:.1f} us per decision "
                                    f"(isolated micro-benchmark, median of 5)\n"
                                    f"training: {cfg['training']['env_steps']} env steps, {t_train:.0f} s wall"
                                    + _kept_line(cfg["training"]))
    print(table, flush=True)
    (out / "table.txt").write_text(table + "\n")
    (out / "eval.json").write_text(to_json(result) + "\n")

    print(f"[3/3] plots and plan under {out}", flush=True)
    u = env.unwrapped
    plots.speedup_bars({"mobilenet_v3_small, dynamic": result}, out / "speedup.png",
                       title=f"SAC speedup over baselines ({DEMO_ENV}, {kwargs.get('model')}, {kwargs.get('background')})")
    seed = 1000 + args.seed
    ep_sac = run_episode(env, pol, seed)
    tl_sac = u.backend.timeline(0)
    ep_heft = run_episode(env, make_baseline("heft"), seed)
    tl_heft = u.backend.timeline(0)
    plots.gantt({f"sac ({ep_sac.latency_ms[0]:.3f} ms)": tl_sac, f"heft ({ep_heft.latency_ms[0]:.3f} ms)": tl_heft},
                u.processors, out / "gantt.png", title=f"{u.graph.model} on {u.profile.name}, seed {seed}")
    plots.rho_i_scatter(u.graph, ep_sac.plan, u.processors, out / "rho_i.png",
                        thresholds=u.thresholds_for(ep_sac.power_mode))
    plan = Plan(ep_sac.plan, batch=u.batch_size, model=u.graph.model,
                meta={"env_id": DEMO_ENV, "seed": seed, "power_mode": ep_sac.power_mode,
                      "latency_ms": ep_sac.latency_ms, "energy_mj": ep_sac.energy_mj, "source": "sparoa demo (SAC)"})
    plan.save(out / "plan.json")
    env.close()
    print("wrote " + ", ".join(str(out / f) for f in ("table.txt", "eval.json", "speedup.png", "gantt.png",
                                                         "rho_i.png", "plan.json")))
    return 0


def _kept_line(t: dict) -> str:
    """Which actor the demo kept: the cloned start or a fine-tuned one (held-out test seeds, see docs/agents.md)."""
    tests = t.get("tests") or []
    if not tests or t.get("best_at_env_step") is None:
        return ""
    at = t["best_at_env_step"]
    first = tests[0]
    what = ("the behaviour-cloned actor (no SAC checkpoint scored better)" if at == 0 else
            f"the SAC-fine-tuned actor from env step {at}")
    return (f"\nkept: {what}; held-out test latency {t['best_test_latency_ms']:.3f} ms vs "
            f"{first['latency_ms']:.3f} ms for the cloned start ({len(t.get('test_seeds', []))} seeds)")
