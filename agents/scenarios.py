"""The scenario suite: a trained policy and every baseline under power modes, background loads and switches.

    sparoa scenarios --policy runs/suite/policy [--models mobilenet_v3_small,resnet18] [--episodes 10] \\
                     [--energy-policy DIR] [--out runs/suite] [--json]

Scenarios (env kwargs on top of the policy's own; ``model`` from ``--models``):

=====================  ==========================================================================
name                   kwargs
=====================  ==========================================================================
MAXN/static            power_mode=MAXN, background=none
30W/static             power_mode=30W, background=none
15W/static             power_mode=15W, background=none
MAXN/dynamic           power_mode=MAXN, background=dynamic
30W/dynamic            power_mode=30W, background=dynamic
15W/dynamic            power_mode=15W, background=dynamic
switching/dynamic      power_mode=switching (random switches every ~30 ms), background=dynamic
chain/MAXN/static      the model's ops linearised into a chain, MAXN, no background: the one case
                       where the oracle (agents.oracle.chain_dp) is exact
energy/MAXN/dynamic    with ``--energy-policy``: that policy's energy_weight, MAXN, dynamic
=====================  ==========================================================================

The goals it checks (:func:`check_goals`), from the issue: the policy no worse than the best baseline in
every scenario; under dynamic load at least 1.2x lower mean latency than the best static baseline (every
baseline but ``random``); within 5% of the oracle where it is exact; with energy in the reward, at least
7% less energy per inference than ``heft`` at no more mean latency.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from .evaluate import evaluate, evaluation_env_kwargs

__all__ = ["SCENARIOS", "run_suite", "check_goals", "format_suite"]

SCENARIOS: dict[str, dict[str, Any]] = {
    "MAXN/static": {"power_mode": "MAXN", "background": "none"},
    "30W/static": {"power_mode": "30W", "background": "none"},
    "15W/static": {"power_mode": "15W", "background": "none"},
    "MAXN/dynamic": {"power_mode": "MAXN", "background": "dynamic"},
    "30W/dynamic": {"power_mode": "30W", "background": "dynamic"},
    "15W/dynamic": {"power_mode": "15W", "background": "dynamic"},
    "switching/dynamic": {"power_mode": "switching", "background": "dynamic"},
    "chain/MAXN/static": {"power_mode": "MAXN", "background": "none", "_chain": True},
}
DYNAMIC = ("MAXN/dynamic", "30W/dynamic", "15W/dynamic", "switching/dynamic")
EXPERT = "state_dp"


def _scenario_kwargs(base: dict[str, Any], model: str, extra: dict[str, Any]) -> dict[str, Any]:
    kw = {**base, **{k: v for k, v in extra.items() if not k.startswith("_")}, "model": model}
    if extra.get("_chain"):
        from sparoa_env.modelspec import load_graph

        from .train import linearised

        kw["model"] = linearised(load_graph(model, kw.get("batch_size", 1)))
    return kw


def _expert(eid: str, kw: dict[str, Any]) -> Any:
    import gymnasium as gym

    import sparoa_env.envs  # noqa: F401

    from .oracle import state_expert

    return state_expert(gym.make(eid, **kw), name=EXPERT)


def run_suite(policy_dir: str | Path | None, models: Sequence[str], *, episodes: int = 10, seed: int = 0,
              scenarios: Sequence[str] | None = None, energy_policy_dir: str | Path | None = None,
              env_id: str | None = None, progress: bool = True, expert: bool = True) -> dict[str, Any]:
    """Evaluate on every (model, scenario); returns ``{"results": {"model | scenario": result}, "goals": ...}``.

    With ``expert`` (default) the state-aware DP expert the policy is cloned from
    (:func:`agents.oracle.state_expert`, name ``"state_dp"``) runs too, as a reference: not a baseline and
    not clairvoyant (it reads the observed load), it is what the actor can at best copy."""
    from .policy import load_policy

    pol = load_policy(policy_dir) if policy_dir else None
    cfg = pol.config if pol else None
    eid = env_id or (cfg["env_id"] if cfg else "SparOA-Orin-v0")
    base = evaluation_env_kwargs(cfg, {})
    base.pop("model", None)
    names = list(scenarios) if scenarios else list(SCENARIOS)
    results: dict[str, Any] = {}
    for model in models:
        for name in names:
            kw = _scenario_kwargs(base, model, SCENARIOS[name])
            key = f"{model} | {name}"
            if progress:
                print(f"  {key} ...", flush=True)
            extra = [_expert(eid, kw)] if expert else []
            results[key] = evaluate(eid, kw, policies=([pol] if pol else []) + extra, baselines="all",
                                    episodes=episodes, seed=seed)
        if energy_policy_dir:
            epol = load_policy(energy_policy_dir)
            ekw = {**evaluation_env_kwargs(epol.config, {}), "model": model, "power_mode": "MAXN", "background": "dynamic"}
            key = f"{model} | energy/MAXN/dynamic"
            if progress:
                print(f"  {key} (energy_weight={ekw.get('energy_weight', 0)}) ...", flush=True)
            extra = [_expert(epol.config["env_id"], ekw)] if expert else []
            results[key] = evaluate(epol.config["env_id"], ekw, policies=[epol] + extra, baselines="all",
                                    episodes=episodes, seed=seed)
    return {"env_id": eid, "policy": str(policy_dir) if policy_dir else None, "episodes": episodes, "seed": seed,
            "results": results, "goals": check_goals(results)}


def _best_baseline(r: dict[str, Any], exclude: Sequence[str] = ("random",)) -> tuple[str, float]:
    cands = {b: r["policies"][b]["latency_ms_mean"] for b in r["baselines"] if b not in exclude}
    b = min(cands, key=cands.get)
    return b, cands[b]


def check_goals(results: dict[str, Any], policy: str = "sac") -> dict[str, Any]:
    """Each goal per scenario: the measured number and whether it is met."""
    rows: dict[str, Any] = {}
    for key, r in results.items():
        if policy not in r["policies"]:
            continue
        lat = r["policies"][policy]["latency_ms_mean"]
        b, blat = _best_baseline(r)
        row: dict[str, Any] = {"sac_ms": lat, "best_baseline": b, "best_baseline_ms": blat,
                               "speedup_vs_best": blat / lat, "no_worse_than_best": lat <= blat * (1 + 1e-9)}
        scen = key.split(" | ", 1)[1]
        if scen in DYNAMIC:
            row["dynamic_1.2x"] = blat / lat >= 1.2
        if r["oracle"]["exact"]:
            gap = lat / r["oracle"]["latency_ms_mean"] - 1.0
            row["oracle_gap"] = gap
            row["within_5pct_of_oracle"] = gap <= 0.05
        if scen.startswith("energy/") and "heft" in r["policies"]:
            h = r["policies"]["heft"]
            saving = 1.0 - r["policies"][policy]["energy_mj_mean"] / h["energy_mj_mean"]
            row["energy_saving_vs_heft"] = saving
            row["energy_7pct_at_no_more_latency"] = saving >= 0.07 and lat <= h["latency_ms_mean"]
        rows[key] = row
    return rows


def format_suite(suite: dict[str, Any]) -> str:
    res, goals = suite["results"], suite["goals"]
    w = max(len("scenario"), *(len(k) for k in res))
    lines = [f"scenario suite: {suite['episodes']} episodes per policy, seeds {suite['seed']}.."
             f"{suite['seed'] + suite['episodes'] - 1}; mean latency per request (ms)",
             f"{'scenario':<{w}}  {'sac':>8}  {'best baseline':>20}  {'speedup':>8}  {'expert':>8}  {'(x)':>7}  "
             f"{'oracle':>8}  {'bound':>8}  goals"]
    for key, r in res.items():
        g = goals.get(key, {})
        sac = r["policies"].get("sac", {}).get("latency_ms_mean")
        b, blat = _best_baseline(r)
        orc = r["oracle"]["latency_ms_mean"]
        flags = []
        if g:
            flags.append("no-worse " + ("ok" if g["no_worse_than_best"] else "MISSED"))
            if "dynamic_1.2x" in g:
                flags.append("1.2x " + ("ok" if g["dynamic_1.2x"] else "MISSED"))
            if "within_5pct_of_oracle" in g:
                flags.append(f"oracle gap {g['oracle_gap'] * 100:.1f}% " + ("ok" if g["within_5pct_of_oracle"] else "MISSED"))
            if "energy_saving_vs_heft" in g:
                flags.append(f"energy -{g['energy_saving_vs_heft'] * 100:.1f}% vs heft "
                             + ("ok" if g["energy_7pct_at_no_more_latency"] else "MISSED"))
        ex = r["policies"].get(EXPERT, {}).get("latency_ms_mean", float("nan"))
        lines.append(f"{key:<{w}}  {sac if sac is not None else float('nan'):>8.3f}  {b + f' {blat:.3f}':>20}  "
                     f"{(blat / sac if sac else float('nan')):>7.3f}x  {ex:>8.3f}  {blat / ex:>6.3f}x  "
                     f"{orc if orc is not None else float('nan'):>8.3f}  {r['lower_bound_ms']:>8.3f}  {'; '.join(flags)}")
    for key, r in res.items():
        if key.split(" | ", 1)[1].startswith("energy/") and "heft" in r["policies"]:
            h = r["policies"]["heft"]
            for p in ("sac", EXPERT):
                if p in r["policies"]:
                    q = r["policies"][p]
                    lines.append(f"{key}: {p} {q['latency_ms_mean']:.3f} ms {q['energy_mj_mean']:.2f} mJ vs heft "
                                 f"{h['latency_ms_mean']:.3f} ms {h['energy_mj_mean']:.2f} mJ "
                                 f"({(q['energy_mj_mean'] / h['energy_mj_mean'] - 1) * 100:+.1f}% energy)")
    lines.append("expert: the state-aware DP expert SAC is cloned from (agents.oracle.state_expert; reads the observed "
                 "load, not clairvoyant)")
    lines.append("oracle: exact optimum (chain, static state) where given, else nan; bound: a lower bound, not reachable in general")
    return "\n".join(lines)


SUITE_FILES = ("suite.json", "suite.txt", "suite_speedup.png")


def check_suite_out(out: str | Path, force: bool = False) -> None:
    """Refuse ``out`` when it holds a suite already (any of :data:`SUITE_FILES`) unless ``force``."""
    there = [f for f in SUITE_FILES if (Path(out) / f).exists()]
    if there and not force:
        raise FileExistsError(f"{out} holds a scenario suite already ({', '.join(there)}); pass --force to overwrite "
                              "it or --out another directory (results are never replaced silently)")


def save_suite(suite: dict[str, Any], out: str | Path, force: bool = False) -> None:
    from . import plots

    check_suite_out(out, force)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from sparoa_env.jsonutil import dumps

    (out / "suite.json").write_text(dumps(suite, indent=1) + "\n")
    (out / "suite.txt").write_text(format_suite(suite) + "\n")
    if any("sac" in r["policies"] for r in suite["results"].values()):
        plots.speedup_bars(suite["results"], out / "suite_speedup.png", title="SAC speedup over each baseline, per scenario")


# ------------------------------------------------------------------------------------------------ ceilings
def _rollout_clairvoyant(env: Any, expert: Any, seed: int) -> tuple[float, float]:
    """One-step lookahead over ``expert`` with the realised future: at each decision, both lanes are tried
    by replaying the episode (same seed, so the same background trace and mode switches) with the expert
    after that decision, and the better return is kept. Returns (mean latency, energy)."""
    u = env.unwrapped

    def rollout(prefix: list[int]) -> tuple[float, dict[str, Any]]:
        obs, info = env.reset(seed=seed)
        expert.reset(u, info, seed)
        ret = 0.0
        for lane in prefix:
            expert._k += 1
            obs, r, term, _, inf = env.step(u.score_of(lane))
            ret += r
            if term:
                return ret, inf
        while True:
            obs, r, term, _, inf = env.step(expert.act(obs))
            ret += r
            if term:
                return ret, inf

    prefix: list[int] = []
    info: dict[str, Any] = {}
    for _ in range(len(u.graph) * u.requests.n):
        best_ret, best_lane = -float("inf"), 0
        for lane in range(u.n_lanes):
            ret, inf = rollout(prefix + [lane])
            if ret > best_ret:
                best_ret, best_lane, info = ret, lane, inf
        prefix.append(best_lane)
    return float(sum(info["latency_ms"]) / len(info["latency_ms"])), float(info["energy_mj"])


def ceilings(model: str = "mobilenet_v3_small", episodes: int = 10, seed: int = 1000, rollout: bool = True,
             energy_weights: Sequence[float] = (0.05, 0.2, 0.5, 1.0), env_id: str = "SparOA-Orin-v0",
             progress: bool = True) -> dict[str, Any]:
    """How much better than the best static baseline any placement gets, per dynamic scenario, and how much
    energy a placement can save against ``heft``. Per dynamic scenario, on the suite's seeds:

    * ``state_dp``: :func:`agents.oracle.state_expert` (reads the observed load; what SAC is cloned from);
    * ``best_of_plans``: per seed, the best of every per-state DP plan of the mode (shares on a 0.1 grid)
      and the state expert: a clairvoyant choice among static plans (it knows the seed's load trace);
    * ``rollout`` (optional, ~1 min per scenario): one-step lookahead over the state expert with the
      realised future (:func:`_rollout_clairvoyant`), a clairvoyant per-step policy.

    These are achievable figures (lower estimates of the true clairvoyant optimum, which no tractable
    method gives here); :func:`agents.oracle.lower_bound` stays the only bound. Energy: the static MAXN
    chain's minimum-energy plan (:func:`agents.oracle.chain_weighted` with the time weight = idle power,
    the lowest energy of any plan at any latency) against gpu_only and heft, and the energy-aware state
    expert at each of ``energy_weights`` in MAXN/dynamic against heft."""
    import gymnasium as gym
    import numpy as np

    import sparoa_env.envs  # noqa: F401

    from .baselines import PlanPolicy
    from .evaluate import run_episode
    from .oracle import chain_dp, chain_weighted, state_costs, state_expert
    from .train import linearised

    out: dict[str, Any] = {"model": model, "episodes": episodes, "seed": seed, "dynamic": {}, "energy": {}}
    seeds = list(range(seed, seed + episodes))
    for scen in DYNAMIC:
        kw = {**{k: v for k, v in SCENARIOS[scen].items()}, "model": model}
        r = evaluate(env_id, kw, policies=[_expert(env_id, kw)], baselines="all", episodes=episodes, seed=seed,
                     keep_episodes=True, oracle=False)
        b, blat = _best_baseline(r)
        env = gym.make(env_id, **kw)
        u = env.unwrapped
        lin = linearised(u.graph)
        modes = list(u.mode_names) if kw["power_mode"] == "switching" else [kw["power_mode"]]
        plans = {tuple(chain_dp(lin, u.cost_model, m, state_costs(u.cost_model, lin, m, c, g, 0.25 * max(c, g))).lanes)
                 for m in modes for c in np.round(np.arange(0, 0.91, 0.1), 2) for g in np.round(np.arange(0, 0.91, 0.1), 2)}
        per_seed = []
        for k, s in enumerate(seeds):
            lats = [float(np.mean(run_episode(env, PlanPolicy("p", lambda e, m, pl=pl: np.array(pl)), s).latency_ms))
                    for pl in plans]
            per_seed.append(min(min(lats), float(np.mean(r["_episodes"][EXPERT][k].latency_ms))))
        row = {"best_static_baseline": b, "best_static_ms": blat,
               "state_dp_ms": r["policies"][EXPERT]["latency_ms_mean"], "best_of_plans_ms": float(np.mean(per_seed)),
               "n_plans": len(plans)}
        if rollout:
            ex = state_expert(env)
            row["rollout_ms"] = float(np.mean([_rollout_clairvoyant(env, ex, s)[0] for s in seeds]))
        for k in ("state_dp_ms", "best_of_plans_ms", "rollout_ms"):
            if k in row:
                row[k.replace("_ms", "_speedup")] = blat / row[k]
        out["dynamic"][scen] = row
        if progress:
            print(f"  {scen}: {row}", flush=True)
    # energy: static MAXN chain, and the energy-aware state expert in MAXN/dynamic
    env = gym.make(env_id, model=model, power_mode="MAXN")
    u = env.unwrapped
    lin = linearised(u.graph)
    sc = state_costs(u.cost_model, lin, "MAXN")
    low = chain_weighted(lin, u.cost_model, sc, sc.idle_w)
    bound = chain_weighted(lin, u.cost_model, sc, sc.idle_w, relax=True)
    st = evaluate(env_id, {"model": lin, "power_mode": "MAXN"}, baselines="gpu_only,heft", episodes=1, seed=seed, oracle=False)
    out["energy"]["MAXN/static chain"] = {
        "min_energy_plan": {"latency_ms": low.latency_ms, "energy_mj": low.energy_mj, "cpu_ops": int((low.lanes == 0).sum())},
        "min_energy_bound_mj": bound.energy_mj,
        **{b: {"latency_ms": st["policies"][b]["latency_ms_mean"], "energy_mj": st["policies"][b]["energy_mj_mean"]}
           for b in ("gpu_only", "heft")}}
    for w in energy_weights:
        kw = {"model": model, "power_mode": "MAXN", "background": "dynamic", "energy_weight": float(w)}
        r = evaluate(env_id, kw, policies=[_expert(env_id, kw)], baselines="heft", episodes=episodes, seed=seed, oracle=False)
        e, h = r["policies"][EXPERT], r["policies"]["heft"]
        out["energy"][f"MAXN/dynamic w={w}"] = {
            "state_dp": {"latency_ms": e["latency_ms_mean"], "energy_mj": e["energy_mj_mean"]},
            "heft": {"latency_ms": h["latency_ms_mean"], "energy_mj": h["energy_mj_mean"]},
            "energy_saving_vs_heft": 1 - e["energy_mj_mean"] / h["energy_mj_mean"],
            "no_more_latency": e["latency_ms_mean"] <= h["latency_ms_mean"]}
        if progress:
            print(f"  energy w={w}: {out['energy'][f'MAXN/dynamic w={w}']}", flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m agents.scenarios ceilings [--model M] [--episodes 10] [--no-rollout] [--out FILE]``"""
    import argparse

    p = argparse.ArgumentParser(prog="python -m agents.scenarios", description="ceilings of the scenario goals")
    p.add_argument("what", choices=["ceilings"])
    p.add_argument("--model", default="mobilenet_v3_small")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--no-rollout", action="store_true", help="skip the clairvoyant rollout (about 1 min per scenario)")
    p.add_argument("--out", default=None, help="write the JSON here (refused if it exists)")
    a = p.parse_args(argv)
    if a.out and Path(a.out).exists():
        raise SystemExit(f"{a.out} exists; remove it first")
    res = ceilings(a.model, a.episodes, a.seed, rollout=not a.no_rollout)
    from sparoa_env.jsonutil import dumps

    text = dumps(res, indent=1)
    if a.out:
        Path(a.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
