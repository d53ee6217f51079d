"""``sparoa run MODEL --plan PLAN.json``: run a model under a placement plan on this machine and print the
measured figures (HybridEngine): single-request latency against eager PyTorch, and, with ``--requests``,
a serving run with dynamic batching (p50/p95/p99 latency, throughput)."""

from __future__ import annotations

import argparse
from typing import Any

from sparoa_env.jsonutil import dumps


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="zoo name (mobilenet_v3_small, resnet18@unstructured-0.7) or "
                        "path/file.py:function returning (module, example_inputs)")
    parser.add_argument("--plan", required=True, metavar="PLAN",
                        help="plan JSON (op -> processor), or 'all:PROCESSOR' to put every op on one processor")
    parser.add_argument("--device-map", default=None, metavar="MAP",
                        help="processor -> device, 'cpu=cpu;gpu=cuda:0' (default) or two core groups "
                             "'cpu=cpu:0;gpu=cpu:1', or JSON; device syntax: cpu, cpu:0-3, cpu:0,2, cpu:0-3@2, cuda:N")
    parser.add_argument("--processors", default=None,
                        help="processor names in lane order (default: cpu,gpu, or the processors of the profile "
                             "the plan was made for, e.g. cpu0,cpu1 for a SparOA-Host-v0 plan)")
    parser.add_argument("--batch", type=int, default=None, help="batch size of one request (default: the plan's)")
    parser.add_argument("--repeats", type=int, default=20, help="timed single-request runs (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first (default 5)")
    parser.add_argument("--no-eager", action="store_true", help="skip the eager PyTorch reference")
    parser.add_argument("--requests", type=int, default=0, metavar="N", help="also serve N requests (dynamic batching)")
    parser.add_argument("--rate", type=float, default=None, metavar="R", help="Poisson arrival rate, requests/s "
                        "(default: all requests queued at t=0)")
    parser.add_argument("--max-batch", type=int, default=1, metavar="B", help="largest dynamic batch (default 1)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="longest wait for a batch to fill (default 5)")
    parser.add_argument("--slo-ms", type=float, default=None, help="latency SLO the batcher keeps the oldest request in")
    parser.add_argument("--oom-fallback", action="store_true", help="run a segment that runs out of GPU memory on the CPU")
    parser.add_argument("--seed", type=int, default=0, help="seed of the arrival process (default 0)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..modelspec import load_module
    from ..plan import Plan
    from ..hw.devices import parse_device_map
    from ..hw.engine import HybridEngine
    from ..hw.timing import measure

    for name, v in (("--repeats", args.repeats), ("--requests", args.requests + 1), ("--max-batch", args.max_batch),
                    ("--batch", 1 if args.batch is None else args.batch)):
        if v < 1:
            raise ValueError(f"{name} must be positive")
    if args.rate is not None and not args.rate > 0:
        raise ValueError(f"--rate must be > 0 requests/s (leave it out to queue every request at t=0), got {args.rate}")
    plan_arg: Any = args.plan
    plan = None if plan_arg.startswith("all:") else Plan.load(plan_arg)
    device_map = args.device_map
    if args.processors is not None:
        processors = tuple(p.strip() for p in args.processors.split(",") if p.strip())
        if len(processors) < 1:
            raise ValueError("--processors needs at least one name")
    else:
        processors, device_map = _processors_for(plan, device_map)
    if plan_arg.startswith("all:"):
        proc = plan_arg[4:]
        if proc not in processors:
            raise ValueError(f"--plan {plan_arg}: unknown processor {proc!r}; processors: {', '.join(processors)}")
    batch = args.batch or (plan.batch if plan is not None else 1)
    module, inputs = load_module(args.model, batch)
    if plan is None:
        from ..hw.program import Program

        program = Program(module, inputs)
        plan = Plan({g: proc for g in program.group_names}, batch=batch, model=args.model)
    else:
        program = None
    if device_map is not None:
        parse_device_map(device_map, processors, check=[])  # syntax errors before the export
    engine = HybridEngine(module, inputs, plan, device_map, processors=processors,
                          oom_fallback="cpu" if args.oom_fallback else None, program=program)
    try:
        stats = measure(lambda: engine(*inputs), warmup=args.warmup, repeats=args.repeats)
        out: dict[str, Any] = {
            "model": args.model, "batch": batch, "ops": len(engine.op_names), "segments": len(engine.segments),
            "lanes": {engine.processors[k]: engine.lane_specs[engine.processors[k]].describe() for k in engine.used_lanes},
            "plan_counts": plan.counts(), "engine_ms": stats.to_dict(),
        }
        if not args.no_eager:
            with torch.inference_mode():
                eager = measure(lambda: module(*inputs), warmup=args.warmup, repeats=args.repeats)
            out["eager_cpu_ms"] = eager.to_dict()
            out["engine_over_eager"] = stats.median_ms / eager.median_ms
        if args.requests > 0:
            rep = engine.serve(args.requests, rate_per_s=args.rate, max_batch=args.max_batch,
                               max_wait_ms=args.max_wait_ms, slo_ms=args.slo_ms, seed=args.seed)
            out["serve"] = rep.to_dict()
        out["oom_fallbacks"] = engine.fallbacks
    finally:
        engine.close()
    if args.json:
        print(dumps(out, indent=1))
        return 0
    print(f"{args.model} (batch {batch}): {out['ops']} ops in {out['segments']} segment(s); plan {out['plan_counts']}")
    for lane in out["lanes"].values():
        print(f"  lane {lane}")
    e = out["engine_ms"]
    print(f"engine   median {e['median_ms']:.3f} ms  (p10 {e['p10_ms']:.3f}, p90 {e['p90_ms']:.3f}, n={e['n']})")
    if "eager_cpu_ms" in out:
        g = out["eager_cpu_ms"]
        print(f"eager    median {g['median_ms']:.3f} ms  (p10 {g['p10_ms']:.3f}, p90 {g['p90_ms']:.3f}; module(*inputs) on the CPU)")
        print(f"engine / eager = {out['engine_over_eager']:.3f}")
    if "serve" in out:
        s = out["serve"]
        rate = f"{s['rate_per_s']:g} req/s Poisson" if s["rate_per_s"] else "all queued at t=0"
        print(f"serving {s['n']} requests ({rate}), max batch {s['max_batch']}, max wait {s['max_wait_ms']:g} ms"
              + (f", SLO {s['slo_ms']:g} ms" if s["slo_ms"] else ""))
        print(f"  latency p50 {s['p50_ms']:.2f} ms, p95 {s['p95_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms; "
              f"throughput {s['throughput_rps']:.1f} req/s; mean batch {s['mean_batch']:.2f}"
              + (f"; SLO missed by {s['slo_violation_frac']:.1%}" if s["slo_ms"] else ""))
        if s["errors"]:
            print(f"  {len(s['errors'])} failed batch(es): {s['errors'][0]}")
    if out["oom_fallbacks"]:
        print(f"{len(out['oom_fallbacks'])} segment run(s) fell back to the CPU after running out of GPU memory")
    return 0



def _processors_for(plan: Any, device_map: Any) -> tuple[tuple[str, ...], Any]:
    """(processors in lane order, device map) when --processors is not given: cpu,gpu for plans on those
    names; else the processors of the profile the plan was made for (its meta names the profile or the env
    id), with one CPU core group per lane when that profile is CPU-only and no --device-map is given."""
    default = ("cpu", "gpu")
    used = set(plan.placement.values()) if plan is not None else set()
    if used <= set(default):
        return default, device_map
    from ..envs import SPAROA_HW_IDS, SPAROA_IDS
    from ..hw.devices import two_lane_cpu_map
    from ..profile import load_profile

    meta = plan.meta or {}
    name = meta.get("profile") or {**SPAROA_IDS, **SPAROA_HW_IDS}.get(meta.get("env_id", ""), {}).get("profile")
    if not isinstance(name, str):
        raise ValueError(f"the plan places ops on {', '.join(sorted(used))}, and its meta names no profile: pass "
                         "--processors A,B (lane order) and --device-map")
    prof = load_profile(name)
    procs = tuple(prof.processor_names)
    if device_map is None and all(p.kind == "cpu" for p in prof.processors):
        device_map = two_lane_cpu_map(procs)
    return procs, device_map
