"""Deployment benchmark: re-planning from live telemetry against the fixed (quiet-state) plan, under real,
injected background load (prints figures; no assertions).

    .venv/bin/python benchmarks/bench_deploy.py            # ~1.5 min; run it on an otherwise idle machine
    .venv/bin/python benchmarks/bench_deploy.py --model resnet18 --rate 8 --rounds 1 --out /tmp/deploy.json

Both modes serve the same request stream (Poisson arrivals, same seed) under the same injection schedule: a
process busy-looping on the cores of the lane the quiet-state plan uses (``--lane``, default: that lane),
from ``--on`` to ``--off`` seconds after serving starts. ``fixed`` serves the policy's plan for the quiet
state throughout; ``replan`` starts from the plan for the live state and re-plans when the monitor sees a
lane's background share move (``agents.deploy.Deployment``). Runs alternate fixed, replan, fixed, replan, ...
(``--rounds`` pairs) so that drifting load from other processes hits both alike; the figures pool the
requests of all rounds per mode. "injected" = requests that arrived inside the injection window.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.deploy import DEFAULT_POLICY, Replanner, deploy, latency_stats, plan_label, quiet_state  # noqa: E402
from agents.policy import load_policy  # noqa: E402


def _row(st: dict) -> str:
    if not st["n"]:
        return f"{'-':>7} {'-':>7} {'-':>7}"
    return f"{st['mean_ms']:7.2f} {st['p50_ms']:7.2f} {st['p95_ms']:7.2f}"


def _uptime() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mobilenet_v3_small")
    p.add_argument("--policy", default=str(DEFAULT_POLICY))
    p.add_argument("--rate", type=float, default=20.0, help="requests/s (Poisson)")
    p.add_argument("--seconds", type=float, default=16.0, help="length of the request stream")
    p.add_argument("--on", type=float, default=4.0, help="injection starts (s)")
    p.add_argument("--off", type=float, default=11.0, help="injection ends (s)")
    p.add_argument("--lane", default=None, help="lane to load (default: the quiet plan's main lane)")
    p.add_argument("--rounds", type=int, default=2, help="fixed/replan pairs (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    p.add_argument("--force", action="store_true")
    a = p.parse_args(argv)
    if a.out and Path(a.out).exists() and not a.force:
        raise SystemExit(f"{a.out} exists; pass --force to overwrite it")

    pol = load_policy(a.policy)
    rp = Replanner(pol, a.model)
    quiet_plan, _ = rp.plan(quiet_state(len(rp.processors)))
    counts = quiet_plan.counts()
    lane = a.lane or max(counts, key=counts.get)
    rp.close()
    n = int(round(a.rate * a.seconds))
    inject = f"{lane}@{a.on:g}-{a.off:g}"
    print(f"deploy benchmark: {a.model}, {n} requests at {a.rate:g} req/s Poisson (seed {a.seed}), inject {inject} "
          f"(quiet plan: {plan_label(quiet_plan, rp.processors)}), {a.rounds} round(s) of fixed + replan")
    print(f"start {time.strftime('%H:%M:%S', time.gmtime())} UTC, load average {_uptime()}")
    runs: dict[str, list[dict]] = {"fixed": [], "replan": []}
    t0 = time.perf_counter()
    for r in range(a.rounds):
        for mode in ("fixed", "replan"):
            res = deploy(a.model, a.policy, requests=n, rate=a.rate, inject=inject, replan=mode == "replan", seed=a.seed)
            runs[mode].append(res)
            print(f"  round {r} {mode:<6}: mean {res['latency']['mean_ms']:.2f} ms, injected mean "
                  f"{res['latency_injected']['mean_ms']:.2f} ms; served {res['served_by_plan']}; "
                  f"re-plans {res['replans']}, swaps {res['swaps']}", flush=True)
    wall = time.perf_counter() - t0
    print(f"end {time.strftime('%H:%M:%S', time.gmtime())} UTC, load average {_uptime()}, wall {wall:.0f} s")

    print(f"\n{'mode':<7} | {'all requests: mean':>18} {'p50':>7} {'p95':>7} | {'injected: mean':>14} {'p50':>7} {'p95':>7} | "
          f"{'outside: mean':>13} {'p50':>7} {'p95':>7}   (ms)")
    summary = {}
    for mode, rs in runs.items():
        det = [x for res in rs for x in res["requests_detail"]]
        win = [(w0, w1) for w0, w1 in rs[0]["windows_ms"]]
        inside = [x["latency_ms"] for x in det if any(w0 <= x["arrival_ms"] < w1 for w0, w1 in win)]
        outside = [x["latency_ms"] for x in det if not any(w0 <= x["arrival_ms"] < w1 for w0, w1 in win)]
        allx = [x["latency_ms"] for x in det]
        st_all, st_in, st_out = latency_stats(allx), latency_stats(inside), latency_stats(outside)
        print(f"{mode:<7} | {_row(st_all):>34} | {_row(st_in):>30} | {_row(st_out):>29}")
        ev = [e for res in rs for e in res["events"]]
        st = [(t, bg) for res in rs for t, bg in res["states"]]
        bg_in = np.mean([bg for t, bg in st if any(w0 <= t < w1 for w0, w1 in win)], axis=0).round(2).tolist()
        bg_out = np.mean([bg for t, bg in st if not any(w0 <= t < w1 for w0, w1 in win)], axis=0).round(2).tolist()
        summary[mode] = {
            "requests": len(allx),
            "all": st_all, "injected": st_in if inside else None, "outside": st_out if outside else None,
            "replans": len(ev), "swaps": sum(e["swapped"] for e in ev),
            "rollout_ms": [round(e["rollout_ms"], 2) for e in ev],
            "swap_build_ms": [round(e["build_ms"], 1) for e in ev if e["swapped"]],
            "initial_plans": [res["plans"][res["initial_plan"]["plan"]] for res in rs],
            "served_by_plan": [res["served_by_plan"] for res in rs],
            "observed_background_in_window": bg_in, "observed_background_outside": bg_out,
        }
    s = summary["replan"]
    if s["replans"]:
        print(f"\nreplan: {s['replans']} re-plan(s) over {a.rounds} run(s), {s['swaps']} engine swap(s); policy rollout "
              f"mean {np.mean(s['rollout_ms']):.1f} ms (max {max(s['rollout_ms']):.1f}); engine build + warm-up at a swap "
              f"{s['swap_build_ms']} ms (in the monitor thread, off the serving path; 0 = engine cached)")
    for mode in ("fixed", "replan"):
        sm = summary[mode]
        print(f"{mode}: initial plans {sm['initial_plans']}; served {sm['served_by_plan']}; mean lane background "
              f"seen by the monitor {rp.processors}: {sm['observed_background_in_window']} in the window, "
              f"{sm['observed_background_outside']} outside")
    if a.out:
        Path(a.out).write_text(json.dumps({"args": vars(a), "inject": inject, "summary": summary,
                                           "runs": {m: [{k: v for k, v in res.items() if k != "plan_json"} for res in rs]
                                                    for m, rs in runs.items()}}, indent=1) + "\n")
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
