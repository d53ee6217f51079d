"""``sparoa deploy MODEL``: serve a model with the HybridEngine while the placement policy re-plans from live
telemetry when the hardware state changes (SparOA's online phase; agents/deploy.py, docs/deploy.md).

    sparoa deploy mobilenet_v3_small --requests 300 --rate 20 --inject cpu0@4-10          # re-planning
    sparoa deploy mobilenet_v3_small --requests 300 --rate 20 --inject cpu0@4-10 --fixed  # the quiet-state plan
"""

from __future__ import annotations

import argparse

from sparoa_env.jsonutil import dumps


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="zoo name (mobilenet_v3_small, resnet18, ...) or "
                        "path/file.py:function returning (module, example_inputs)")
    parser.add_argument("--policy", default=None, metavar="DIR", help="a policy directory (config.json + policy.pt; "
                        "default: the shipped load-aware host policy, sparoa_env/data/policies/host-deploy)")
    parser.add_argument("--device-map", default=None, metavar="MAP", help="processor -> device, e.g. "
                        "'cpu0=cpu:0;cpu1=cpu:1' (default: one core group per lane on a CPU-only profile)")
    parser.add_argument("--requests", type=int, default=200, metavar="N", help="requests to serve (default 200)")
    parser.add_argument("--rate", type=float, default=20.0, metavar="R",
                        help="Poisson arrival rate, requests/s (default 20; 0: all queued at t=0)")
    parser.add_argument("--inject", default=None, metavar="SPEC", help="real background load: busy-loop the cores "
                        "of a lane from START to END seconds after serving starts, LANE@START-END[,...] (e.g. cpu0@4-10)")
    parser.add_argument("--fixed", action="store_true", help="no re-planning: serve the policy's plan for the quiet "
                        "state throughout (the baseline)")
    parser.add_argument("--hysteresis", type=float, default=0.3, help="re-plan when a lane's background share moved "
                        "by at least this since the last plan (default 0.3)")
    parser.add_argument("--persist", type=int, default=2, help="... for this many samples in a row (default 2)")
    parser.add_argument("--interval-ms", type=float, default=100.0, help="telemetry sampling period (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the arrivals and of the policy rollout")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--out", default=None, metavar="DIR", help="also write DIR/deploy.json and the plans served")
    parser.add_argument("--force", action="store_true", help="overwrite DIR's deploy files")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from agents.deploy import DEFAULT_POLICY, deploy, format_report
    from agents.policy import load_config

    policy = Path(args.policy) if args.policy else DEFAULT_POLICY
    if not policy.is_dir():
        raise FileNotFoundError(f"--policy {policy}: no such directory (a policy directory holds config.json and policy.pt)")
    load_config(policy)  # a clear error for a directory that is not a policy, before the model is built
    if args.rate is not None and (args.rate < 0 or args.rate != args.rate):
        raise ValueError(f"--rate must be >= 0 requests/s (0: all queued at t=0), got {args.rate}")
    out_dir = None
    if args.out:
        out_dir = Path(args.out)
        there = sorted(p.name for p in [out_dir / "deploy.json", *out_dir.glob("plan_*.json")] if p.exists())
        if there and not args.force:
            raise ValueError(f"{out_dir} holds a deploy run already ({', '.join(there)}); pass --force to overwrite it")
    res = deploy(args.model, policy, device_map=args.device_map, requests=args.requests,
                 rate=args.rate if args.rate and args.rate > 0 else None, inject=args.inject, replan=not args.fixed,
                 seed=args.seed, hysteresis=args.hysteresis, persist=args.persist, interval_ms=args.interval_ms,
                 progress=None if args.json else print)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in out_dir.glob("plan_*.json"):  # --force: the earlier run's plans go with its deploy.json
            stale.unlink()
        (out_dir / "deploy.json").write_text(dumps({k: v for k, v in res.items() if k != "plan_json"}, indent=1) + "\n")
        for k, plan in enumerate(res["plan_json"]):
            (out_dir / f"plan_{k}.json").write_text(dumps(plan, indent=1) + "\n")
    if args.json:
        print(dumps({k: v for k, v in res.items() if k not in ("requests_detail", "plan_json")}, indent=1))
    else:
        print(format_report(res))
        if out_dir is not None:
            print(f"wrote {out_dir / 'deploy.json'} (per-request latency and plan, re-plan events) and "
                  f"{len(res['plan_json'])} plan file(s) plan_K.json")
    return 0
