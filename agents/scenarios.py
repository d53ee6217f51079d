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


def _scenario_kwargs(base: dict[str, Any], model: str, extra: dict[str, Any]) -> dict[str, Any]:
    kw = {**base, **{k: v for k, v in extra.items() if not k.startswith("_")}, "model": model}
    if extra.get("_chain"):
        from sparoa_env.modelspec import load_graph

        from .train import linearised

        kw["model"] = linearised(load_graph(model, kw.get("batch_size", 1)))
    return kw


def run_suite(policy_dir: str | Path | None, models: Sequence[str], *, episodes: int = 10, seed: int = 0,
              scenarios: Sequence[str] | None = None, energy_policy_dir: str | Path | None = None,
              env_id: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Evaluate on every (model, scenario); returns ``{"results": {"model | scenario": result}, "goals": ...}``."""
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
            results[key] = evaluate(eid, kw, policies=[pol] if pol else [], baselines="all", episodes=episodes, seed=seed)
        if energy_policy_dir:
            epol = load_policy(energy_policy_dir)
            ekw = {**evaluation_env_kwargs(epol.config, {}), "model": model, "power_mode": "MAXN", "background": "dynamic"}
            key = f"{model} | energy/MAXN/dynamic"
            if progress:
                print(f"  {key} (energy_weight={ekw.get('energy_weight', 0)}) ...", flush=True)
            results[key] = evaluate(epol.config["env_id"], ekw, policies=[epol], baselines="all", episodes=episodes, seed=seed)
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
             f"{'scenario':<{w}}  {'sac':>8}  {'best baseline':>20}  {'speedup':>8}  {'oracle':>8}  {'bound':>8}  goals"]
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
        lines.append(f"{key:<{w}}  {sac if sac is not None else float('nan'):>8.3f}  {b + f' {blat:.3f}':>20}  "
                     f"{(blat / sac if sac else float('nan')):>7.3f}x  "
                     f"{orc if orc is not None else float('nan'):>8.3f}  {r['lower_bound_ms']:>8.3f}  {'; '.join(flags)}")
    lines.append("oracle: exact optimum (chain, static state) where given, else nan; bound: a lower bound, not reachable in general")
    return "\n".join(lines)


def save_suite(suite: dict[str, Any], out: str | Path) -> None:
    from . import plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "suite.json").write_text(json.dumps(suite, indent=1) + "\n")
    (out / "suite.txt").write_text(format_suite(suite) + "\n")
    if any("sac" in r["policies"] for r in suite["results"].values()):
        plots.speedup_bars(suite["results"], out / "suite_speedup.png", title="SAC speedup over each baseline, per scenario")
