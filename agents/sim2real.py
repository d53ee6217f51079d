"""Sim-to-real: train in the simulator on a calibrated profile, evaluate the same policy on real hardware
(the hw backend, same profile, a device map), fine-tune on hardware, and report the simulator's prediction
against the measured latency before and after.

    sparoa sim2real --out runs/s2r                          # resnet18, SparOA-Host-v0 -> SparOA-Host-hw-v0
    sparoa sim2real --sim-env SparOA-Orin-v0 --hw-env SparOA-Orin-v0 \\
                    --set device_map='{"cpu":"cpu","gpu":"cuda:0"}' --out runs/s2r-cuda   # on a GPU machine

Steps (:func:`sim2real`):

1. **Train** (:func:`agents.train.train`, small budget) on the sim id with ``model=--model``; the run is
   ``OUT/policy``.
2. **Before**: the deterministic policy (:func:`agents.policy.load_policy`) runs ``--episodes`` evaluation
   seeds (1000+) on the sim env (its own simulated latency) and on the hw env (measured latency per
   request). The plan it made on hardware (``info["plan"]``) is replayed in the simulator on the same seed:
   that is the **simulator's prediction for the same plan**. The policy may place ops differently on the two
   backends (its observation carries the measured hardware state): ``plans_differ_ops`` counts them.
3. **Hardware fine-tuning** (``--hw-steps`` real op executions). *Not* Tianshou SAC: on the nondeterministic
   hw env one episode is one request of a few ms with a run-to-run spread of tens of percent (measured:
   residual_cnn 5.5 vs 9.5 ms for the same plan on consecutive episodes), so a few hundred SAC steps would
   fit noise, and the trainer's 8 workers would each export the model and pin their own lane threads. The
   cheaper, documented fine-tune is a **keep-best local search over plans measured on hardware**: start
   from the policy's hardware plan; each candidate moves a random block of 1-4 consecutive ops (graph
   order) to another lane; candidate and incumbent are measured alternately ``--repeats`` times each on hw
   (paired, in ABBA order, so both meet the same load), and the candidate replaces the incumbent when its
   median is more than 3% lower (with a 1% margin, 11 of 24 candidates were kept on resnet18 and the kept
   plan measured no faster than the start on the evaluation seeds: the run-to-run spread here is ~5%). The result is a plan (``OUT/plan_after.json``), not new actor weights.
4. **After**: per evaluation seed, in turn, the policy again (``before``), the fine-tuned plan (``after``)
   and ``all on <lane 0>`` (reference) run on hw, interleaved so that a change in the machine's load hits
   all three alike; each plan is replayed in the sim on the same seed for the prediction. (The figures of
   step 2 are kept in the JSON as ``before_first``.) Written to ``OUT/sim2real.json`` (and the plans as Plan JSON).

The selection in step 3 is biased towards candidates that were lucky in their measurement; step 4 measures
again on the evaluation seeds, which is the figure to trust.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Sim2RealArgs", "sim2real", "format_report", "split_kwargs", "prepare_out", "OUT_FILES"]

#: what a sim2real output directory holds (removed by --force)
OUT_FILES = ("policy", "sim2real.json", "plan_before.json", "plan_after.json")
EVAL_SEED = 1000


@dataclass
class Sim2RealArgs:
    model: str = "resnet18"
    sim_env: str = "SparOA-Host-v0"
    hw_env: str = "SparOA-Host-hw-v0"
    common: dict = field(default_factory=dict)     # --set: both envs (hw-only options go to the hw env only)
    sim_set: dict = field(default_factory=dict)    # --sim-set: the sim env only
    hw_set: dict = field(default_factory=dict)     # --hw-set: the hw env only
    steps: int = 3000                              # sim training env steps
    bc_steps: int = 2000                           # behaviour-cloning steps of the sim training
    workers: int = 4
    hw_steps: int = 12000                          # real op executions for the hardware fine-tune
    repeats: int = 4                               # hw episodes per candidate plan
    episodes: int = 5                              # evaluation seeds 1000 .. 1000+K-1
    seed: int = 0
    out: str = "runs/sim2real"
    force: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "episodes", "repeats", "workers", "bc_steps"):
            if int(getattr(self, name)) < (0 if name == "bc_steps" else 1):
                raise ValueError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)!r}")
        if self.hw_steps < 0:
            raise ValueError(f"hw-steps must be >= 0, got {self.hw_steps!r}")


def split_kwargs(args: Sim2RealArgs) -> tuple[dict[str, Any], dict[str, Any]]:
    """(sim kwargs, hw kwargs). ``--set`` keys that are hw-backend options (device_map, repeats, ...) or
    ``backend`` go to the hw env only; a hw env id that is not a hw registration gets ``backend="hw"``."""
    import sparoa_env.envs  # noqa: F401
    from sparoa_env.envs import SPAROA_HW_IDS
    from sparoa_env.hw.backend import HW_OPTIONS

    hw_only = set(HW_OPTIONS) | {"backend"}
    common = {k: v for k, v in args.common.items() if k not in hw_only}
    sim_kw = {"model": args.model, **common, **args.sim_set}
    hw_kw = {"model": args.model, **args.common, **args.hw_set}
    if args.hw_env not in SPAROA_HW_IDS and "backend" not in hw_kw:
        hw_kw["backend"] = "hw"
    if sim_kw.get("backend", "sim") != "sim":
        raise ValueError(f"the sim env must use the sim backend, got backend={sim_kw['backend']!r}")
    return sim_kw, hw_kw


def prepare_out(out: str | Path, force: bool) -> Path:
    from .train import prepare_run_dir

    return prepare_run_dir(out, force, OUT_FILES)


def _lanes_policy(name: str, lanes: np.ndarray):
    from .baselines import PlanPolicy

    fixed = np.asarray(lanes, dtype=np.int64)
    return PlanPolicy(name, lambda env, mode: fixed)


def _mean(xs: list[float]) -> float:
    return float(np.mean(xs)) if xs else float("nan")


def _episodes(env: Any, policy: Any, seeds: list[int]) -> list[Any]:
    from .evaluate import run_episode

    return [run_episode(env, policy, s) for s in seeds]


def _summary(measured: list[Any], predicted: list[Any] | None) -> dict[str, Any]:
    lat = [x for e in measured for x in e.latency_ms]
    out: dict[str, Any] = {"measured_ms_mean": _mean(lat), "measured_ms_p50": float(np.percentile(lat, 50)),
                           "measured_ms_p95": float(np.percentile(lat, 95)), "measured_ms": [round(x, 4) for x in lat]}
    if predicted is not None:
        pl = [x for e in predicted for x in e.latency_ms]
        out["predicted_ms_mean"] = _mean(pl)
        out["predicted_ms"] = [round(x, 4) for x in pl]
        # per request, then summarised: the simulator's error for the same plan and seed
        err = [(p - m) / m for p, m in zip(pl, lat)]
        out["error_mean"] = _mean(err)
        out["abs_error_median"] = float(np.median(np.abs(err)))
    return out


def _perturb(lanes: np.ndarray, n_lanes: int, rng: np.random.Generator) -> np.ndarray:
    """Move a random block of 1-4 consecutive ops (graph order) to another lane."""
    new = lanes.copy()
    n = len(new)
    width = int(rng.integers(1, min(4, n) + 1))
    start = int(rng.integers(0, n - width + 1))
    shift = int(rng.integers(1, n_lanes)) if n_lanes > 1 else 0
    new[start:start + width] = (new[start:start + width] + shift) % n_lanes
    return new


def hw_finetune(hw: Any, start: np.ndarray, budget_steps: int, repeats: int, seed: int,
                progress: bool = False, margin: float = 0.03) -> dict[str, Any]:
    """Keep-best local search over plans measured on ``hw`` for ``budget_steps`` op executions (module
    docstring, step 3). Returns the best lanes and the search's log."""
    from .evaluate import run_episode

    u = hw.unwrapped
    n_ops, n_lanes = len(u.graph), u.n_lanes
    rng = np.random.default_rng([seed, 0x5125])
    seeds = iter(range(200_000 + seed * 100_000, 10**9))
    used = 0

    def measure(lanes: np.ndarray, k: int) -> list[float]:
        nonlocal used
        pol = _lanes_policy("candidate", lanes)
        vals = []
        for _ in range(k):
            ep = run_episode(hw, pol, next(seeds))
            used += ep.decisions
            vals.append(_mean(ep.latency_ms))
        return vals

    best = np.asarray(start, dtype=np.int64).copy()
    start_vals = measure(best, repeats)
    start_ms = float(np.median(start_vals))
    tried = accepted = 0
    history = [{"candidate": 0, "median_ms": round(start_ms, 4), "accepted": True, "steps_used": used}]
    best_ms = start_ms
    cost = 2 * repeats * n_ops
    while used + cost <= budget_steps:
        cand = _perturb(best, n_lanes, rng)
        tried += 1
        # paired: incumbent and candidate alternate, so both meet the same machine state (load drifts)
        inc_vals, cand_vals = [], []
        for k in range(repeats):  # ABBA order: neither plan always runs first
            if k % 2 == 0:
                inc_vals += measure(best, 1)
                cand_vals += measure(cand, 1)
            else:
                cand_vals += measure(cand, 1)
                inc_vals += measure(best, 1)
        c, b = float(np.median(cand_vals)), float(np.median(inc_vals))
        ok = c < (1.0 - margin) * b
        if ok:
            best = cand
            accepted += 1
        best_ms = c if ok else b
        history.append({"candidate": tried, "median_ms": round(c, 4), "incumbent_ms": round(b, 4), "accepted": ok,
                        "steps_used": used})
        if progress and ok:
            print(f"  hw fine-tune: candidate {tried} {c:.3f} ms < {b:.3f} ms (paired medians), kept "
                  f"({used}/{budget_steps} steps)", flush=True)
    return {"lanes": best, "candidates": tried, "accepted": accepted, "steps_used": used, "start_median_ms": start_ms,
            "best_median_ms": best_ms, "margin": margin, "history": history,
            "ops_changed": int(np.sum(best != np.asarray(start)))}


def sim2real(args: Sim2RealArgs) -> dict[str, Any]:
    import gymnasium as gym

    import sparoa_env.envs  # noqa: F401
    from sparoa_env.plan import Plan

    from .config import Args
    from .policy import load_policy
    from .train import train

    from sparoa_env.envs import require_sparoa_id

    from .train import check_run_dir

    check_run_dir(args.out, args.force)
    sim_kw, hw_kw = split_kwargs(args)
    t0 = time.perf_counter()

    # fail on bad ids / kwargs / device maps before any training, and before --force clears anything
    sim = gym.make(require_sparoa_id(args.sim_env, "--sim-env"), **sim_kw)
    hw = gym.make(require_sparoa_id(args.hw_env, "--hw-env"), **hw_kw)
    su, hu = sim.unwrapped, hw.unwrapped
    try:
        if tuple(su.processors) != tuple(hu.processors):
            raise ValueError(f"the sim env's processors {list(su.processors)} differ from the hw env's "
                             f"{list(hu.processors)}: use the same profile for both")
        out = prepare_out(args.out, args.force)
    except Exception:
        sim.close()
        hw.close()
        raise
    t_setup = time.perf_counter() - t0

    # 1. train in the simulator (small budget; docs/agents.md has the full recipe)
    start = min(2000, max(args.steps // 3, 1))
    grad = int(0.25 * max(args.steps - start, 0))
    targs = Args(env_id=args.sim_env, env_kwargs=sim_kw, seed=args.seed, total_steps=args.steps,
                 reward_scale=reward_scale(sim),
                 bc_steps=args.bc_steps, workers=args.workers, start_steps=start, critic_warmup=grad // 2,
                 epoch_steps=max(args.steps // 2, 1), test_episodes=3, out=str(out / "policy"), force=True,
                 progress=args.progress)
    if args.progress:
        print(f"[1/4] training on {args.sim_env} {sim_kw} for {args.steps} env steps -> {targs.out}", flush=True)
    t1 = time.perf_counter()
    cfg = train(targs)
    t_train = time.perf_counter() - t1
    pol = load_policy(targs.out)

    seeds = list(range(EVAL_SEED, EVAL_SEED + args.episodes))
    # 2. before: the policy in the sim, on hw, and the sim's prediction of the hw plan (same seeds)
    if args.progress:
        print(f"[2/4] evaluating the policy on {args.sim_env} and {args.hw_env}, seeds {seeds[0]}..{seeds[-1]}",
              flush=True)
    t2 = time.perf_counter()
    sim_eps = _episodes(sim, pol, seeds)
    hw_eps = _episodes(hw, pol, seeds)
    pred_eps = [_episodes(sim, _lanes_policy("replay", Plan(e.plan).lanes(su.graph, su.processors)), [s])[0]
                for e, s in zip(hw_eps, seeds)]
    hw_plan = Plan(hw_eps[0].plan).lanes(hu.graph, hu.processors)
    sim_plan = Plan(sim_eps[0].plan).lanes(su.graph, su.processors)
    distinct_hw_plans = len({tuple(Plan(e.plan).lanes(hu.graph, hu.processors)) for e in hw_eps})
    t_eval = time.perf_counter() - t2

    # 3. fine-tune on hardware
    if args.progress:
        print(f"[3/4] hardware fine-tune (keep-best plan search), {args.hw_steps} op executions", flush=True)
    t3 = time.perf_counter()
    ft = hw_finetune(hw, hw_plan, args.hw_steps, args.repeats, args.seed, progress=args.progress)
    t_ft = time.perf_counter() - t3

    # 4. after: the fine-tuned plan, measured and predicted on the same seeds; all on lane 0 as a reference
    if args.progress:
        print("[4/4] evaluating the policy, the fine-tuned plan and the reference, interleaved per seed", flush=True)
    t4 = time.perf_counter()
    after = _lanes_policy("finetuned", ft["lanes"])
    ref = _lanes_policy("lane0", np.zeros(len(hu.graph), dtype=np.int64))
    before_hw, after_hw, ref_hw = [], [], []
    for s in seeds:  # interleaved per seed: the three meet the same machine state
        before_hw += _episodes(hw, pol, [s])
        after_hw += _episodes(hw, after, [s])
        ref_hw += _episodes(hw, ref, [s])
    before_pred = [_episodes(sim, _lanes_policy("replay", Plan(e.plan).lanes(su.graph, su.processors)), [s])[0]
                   for e, s in zip(before_hw, seeds)]
    after_sim, ref_sim = _episodes(sim, after, seeds), _episodes(sim, ref, seeds)

    meta = {"model": args.model, "source": "sparoa sim2real"}
    Plan.from_lanes(hu.graph, hu.processors, hw_plan, meta={**meta, "stage": "before (policy on hw)"}).save(
        out / "plan_before.json")
    Plan.from_lanes(hu.graph, hu.processors, ft["lanes"], meta={**meta, "stage": "after hw fine-tune"}).save(
        out / "plan_after.json")
    ft_log = {k: v for k, v in ft.items() if k != "lanes"}
    result = {
        "model": args.model, "sim_env": args.sim_env, "hw_env": args.hw_env,
        "sim_kwargs": sim_kw, "hw_kwargs": {k: v for k, v in hw_kw.items() if k not in ("module", "example_inputs")},
        "device_map": hw_eps[0].info.get("device_map"), "processors": list(hu.processors), "ops": len(hu.graph),
        "seeds": seeds, "policy_dir": targs.out,
        "training": {k: cfg["training"].get(k) for k in ("wall_s", "env_steps", "gradient_steps", "best_at_env_step",
                                                         "bc_match", "best_test_latency_ms")},
        "policy_sim": {"sim_ms_mean": _mean([x for e in sim_eps for x in e.latency_ms])},
        "before_first": {**_summary(hw_eps, pred_eps), "counts": _counts(hw_plan, hu.processors),
                         "plans_differ_ops": int(np.sum(hw_plan != sim_plan)), "distinct_hw_plans": distinct_hw_plans},
        "before": {**_summary(before_hw, before_pred), "counts": _counts(
            Plan(before_hw[0].plan).lanes(hu.graph, hu.processors), hu.processors)},
        "after": {**_summary(after_hw, after_sim), "counts": _counts(ft["lanes"], hu.processors)},
        "reference_lane0": {**_summary(ref_hw, ref_sim), "processor": hu.processors[0]},
        "finetune": {"method": "keep-best local search over plans measured on hw (not SAC; see agents/sim2real.py)",
                     "hw_steps": args.hw_steps, "repeats": args.repeats, **ft_log},
        "wall_s": {"setup": round(t_setup, 2), "train": round(t_train, 2), "evaluate_before": round(t_eval, 2),
                   "evaluate_after": round(time.perf_counter() - t4, 2),
                   "finetune": round(t_ft, 2), "total": round(time.perf_counter() - t0, 2)},
    }
    from sparoa_env.jsonutil import dumps

    (out / "sim2real.json").write_text(dumps(result, indent=1) + "\n")
    sim.close()
    hw.close()
    return result


def reward_scale(env: Any) -> float:
    """The trainer's ``auto`` reward scale (ops over the accelerator lane's serial latency; on a CPU-only
    profile such as ``host`` the last core group, see :func:`agents.baselines.accelerator_lane`)."""
    from .train import auto_reward_scale

    return float(auto_reward_scale(env))


def _counts(lanes: np.ndarray, processors: Any) -> dict[str, int]:
    return {p: int(np.sum(np.asarray(lanes) == k)) for k, p in enumerate(processors)}


def format_report(r: dict[str, Any]) -> str:
    dm = r.get("device_map") or {}
    lines = [f"sim2real: {r['model']} ({r['ops']} ops), trained on {r['sim_env']}, measured on {r['hw_env']} "
             f"(device map {', '.join(f'{k}={v}' for k, v in dm.items())})",
             f"{len(r['seeds'])} evaluation seeds {r['seeds'][0]}..{r['seeds'][-1]}; latency per request, ms; "
             f"error = (predicted - measured) / measured, per request",
             "",
             f"{'plan':<28} {'sim-predicted':>13} {'measured':>9} {'meas. p95':>9} {'mean err':>9} {'|err| med':>9}  placement"]

    def row(label: str, s: dict[str, Any]) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in s.get("counts", {}).items()) or f"all {s.get('processor')}"
        return (f"{label:<28} {s['predicted_ms_mean']:>13.3f} {s['measured_ms_mean']:>9.3f} {s['measured_ms_p95']:>9.3f} "
                f"{s['error_mean'] * 100:>+8.1f}% {s['abs_error_median'] * 100:>8.1f}%  {counts}")

    lines.append(row("before: policy on hw", r["before"]))
    lines.append(row("after: hw fine-tuned plan", r["after"]))
    lines.append(row(f"reference: all on {r['reference_lane0']['processor']}", r["reference_lane0"]))
    b, a, f, b0 = r["before"], r["after"], r["finetune"], r["before_first"]
    change = (a["measured_ms_mean"] - b["measured_ms_mean"]) / b["measured_ms_mean"] * 100
    lines += ["",
              f"policy in the simulator (its own sim plan): {r['policy_sim']['sim_ms_mean']:.3f} ms; on hw it placed "
              f"{b0['plans_differ_ops']} op(s) differently ({b0['distinct_hw_plans']} distinct hw plan(s) over the seeds); "
              f"first hw measurement (before the fine-tune): predicted {b0['predicted_ms_mean']:.3f}, measured "
              f"{b0['measured_ms_mean']:.3f} ms",
              f"hw fine-tune ({f['method']}): {f['candidates']} candidates, {f['accepted']} kept, {f['ops_changed']} ops "
              f"changed, {f['steps_used']}/{f['hw_steps']} op executions; search medians {f['start_median_ms']:.3f} -> "
              f"{f['best_median_ms']:.3f} ms",
              f"measured mean latency before -> after: {b['measured_ms_mean']:.3f} -> {a['measured_ms_mean']:.3f} ms "
              f"({change:+.1f}%)" + (": the fine-tune changed no op, so this is run-to-run noise of the same placement"
                                     if f["ops_changed"] == 0 else ""),
              "wall s: " + ", ".join(f"{k} {v}" for k, v in r["wall_s"].items())]
    return "\n".join(lines)
