"""Evaluate placement policies on the same seeds: latency, energy, speedups, the gap to the lower bound.

    sparoa evaluate --env SparOA-Orin-v0 --set background=dynamic --policy runs/demo/policy --episodes 20
    sparoa evaluate --policy runs/demo/policy --baselines heft,gpu_only --json

Every policy (the trained SAC actor, deterministic, and the scripted baselines of
:mod:`agents.baselines`) runs episodes with seeds ``seed, seed + 1, ..., seed + episodes - 1`` of one
environment, so all of them meet the same hardware dynamics as far as their own actions allow (the
background load and power-mode switches are drawn from the seeded generator as the episode unfolds).

Reported per policy: mean and 95th-percentile request latency (over every request of every episode),
mean energy per inference, the speedup of each policy over each baseline (ratio of mean latencies) and
the gap to the lower bound. **The bound is a bound**: :func:`agents.oracle.lower_bound` for the episode's
initial power mode (every mode when it switches); it is the exact optimum only where the table says
``oracle (exact)``: a chain served as one request under a static state, solved by
:func:`agents.oracle.chain_dp` and replayed in the environment.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from .baselines import PlanPolicy, Policy, make_baseline, parse_baselines
from .oracle import chain_dp, episode_bound, exact_applicable

__all__ = ["EpisodeResult", "run_episode", "evaluate", "format_table", "evaluation_env_kwargs"]


@dataclass
class EpisodeResult:
    seed: int
    latency_ms: list[float]
    energy_mj: float
    plan: dict[str, str]
    power_mode: str
    decisions: int
    decision_s: float
    info: dict[str, Any] = field(default_factory=dict, repr=False)


def run_episode(env: gym.Env, policy: Policy, seed: int) -> EpisodeResult:
    """One episode of ``policy`` on ``env`` with ``seed`` (``policy.act`` timed separately)."""
    u = env.unwrapped
    obs, info = env.reset(seed=seed)
    policy.reset(u, info, seed)
    mode = info.get("power_mode", "")
    n, spent = 0, 0.0
    clock = time.perf_counter
    while True:
        t0 = clock()
        action = policy.act(obs)
        spent += clock() - t0
        obs, _, term, trunc, info = env.step(action)
        n += 1
        if term or trunc:
            break
    return EpisodeResult(seed, list(info["latency_ms"]), float(info["energy_mj"]), dict(info.get("plan", {})),
                         mode, n, spent, info)


def _stats(episodes: list[EpisodeResult]) -> dict[str, float]:
    lat = np.array([x for e in episodes for x in e.latency_ms])
    en = np.array([e.energy_mj for e in episodes])
    decisions = sum(e.decisions for e in episodes)
    return {"latency_ms_mean": float(lat.mean()), "latency_ms_p95": float(np.percentile(lat, 95)),
            "latency_ms_std": float(lat.std()), "energy_mj_mean": float(en.mean()),
            "requests": int(lat.size), "decision_us_mean": float(sum(e.decision_s for e in episodes) / decisions * 1e6)}


def transfer_note(policy_cfg: dict[str, Any] | None, env_id: str, env_kwargs: dict[str, Any]) -> str | None:
    """A note when a policy runs on another SoC profile than the one it was trained on (it was not trained
    for that hardware, and its placements there are usually poor); None otherwise (same profile, e.g. a
    sim-trained Host policy on the Host hw env)."""
    if not policy_cfg:
        return None
    from sparoa_env.envs import SPAROA_HW_IDS, SPAROA_IDS

    def profile_of(eid: str, kw: dict[str, Any]) -> str:
        p = kw.get("profile", {**SPAROA_IDS, **SPAROA_HW_IDS}.get(eid, {}).get("profile", "?"))
        return p if isinstance(p, str) else getattr(p, "name", "?")

    trained = profile_of(policy_cfg.get("env_id", ""), policy_cfg.get("env_kwargs", {}))
    now = profile_of(env_id, env_kwargs)
    if trained == now:
        return None
    return (f"note: the policy was trained on {policy_cfg.get('env_id')} (profile {trained}) and runs here on "
            f"{env_id} (profile {now}): another SoC than it was trained for")


def evaluation_env_kwargs(policy_cfg: dict[str, Any] | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """The policy's training kwargs (if any), updated with ``--set`` overrides."""
    kw = dict(policy_cfg.get("env_kwargs", {})) if policy_cfg else {}
    kw.update(overrides)
    return kw


def evaluate(env_id: str, env_kwargs: dict[str, Any], *, policies: Sequence[Policy] = (),
             baselines: str | Sequence[str] | None = "all", episodes: int = 10, seed: int = 0,
             oracle: bool = True, keep_episodes: bool = False) -> dict[str, Any]:
    """Run ``policies`` (e.g. the loaded SAC runner) and the named baselines on the same seeds.

    Returns the JSON-ready result: ``policies`` (name -> stats), ``lower_bound_ms`` (mean over episodes
    of the per-request bound), ``oracle`` (whether an exact optimum applies, and its latency when it
    does), ``speedup`` (policy -> baseline -> baseline mean latency / policy mean latency),
    ``gap_to_bound`` (policy -> mean latency / bound - 1) and the seeds.
    """
    from sparoa_env.envs import require_sparoa_id

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes!r}")
    names = parse_baselines(baselines) if isinstance(baselines, (str, type(None))) else list(baselines)
    env = gym.make(require_sparoa_id(env_id), **env_kwargs)
    u = env.unwrapped
    seeds = list(range(seed, seed + episodes))
    runs: dict[str, list[EpisodeResult]] = {}
    all_policies: list[Policy] = list(policies) + [make_baseline(b) for b in names]
    exact = oracle and exact_applicable(u)
    if exact:
        dp_cache: dict[str, np.ndarray] = {}

        def dp_plan(env_u: Any, mode: str) -> np.ndarray:
            if mode not in dp_cache:
                dp_cache[mode] = chain_dp(env_u.graph, env_u.cost_model, mode).lanes
            return dp_cache[mode]

        all_policies.append(PlanPolicy("oracle", dp_plan))
    for pol in all_policies:
        if pol.name in runs:
            raise ValueError(f"two policies are named {pol.name!r}")
        runs[pol.name] = [run_episode(env, pol, s) for s in seeds]
    # the bound of each episode, from its reset info (same for every policy: the mode is drawn at reset)
    bounds = []
    bound_cache: dict[str, float] = {}
    for s in seeds:
        _, info = env.reset(seed=s)
        key = info.get("power_mode", "")
        if key not in bound_cache:
            bound_cache[key] = episode_bound(u, info).lower_bound_ms
        bounds.append(bound_cache[key])
    env.close()
    lb = float(np.mean(bounds))
    stats = {name: _stats(eps) for name, eps in runs.items()}
    result: dict[str, Any] = {
        "env_id": env_id, "env_kwargs": {k: (v if _jsonable(v) else _short(v)) for k, v in env_kwargs.items()},
        "episodes": episodes, "seeds": seeds, "policies": stats, "lower_bound_ms": lb,
        "baselines": names,
        "oracle": {"exact": bool(exact), "latency_ms_mean": stats["oracle"]["latency_ms_mean"] if exact else None,
                   "note": ("exact: chain, one request, static state (chain_dp replayed)" if exact else
                            "no exact optimum here (branches, background load, mode switches or several "
                            "requests): lower_bound_ms is a bound, not an achievable latency")},
        "speedup": {p: {b: stats[b]["latency_ms_mean"] / stats[p]["latency_ms_mean"] for b in names}
                    for p in stats},
        "gap_to_bound": {p: stats[p]["latency_ms_mean"] / lb - 1.0 for p in stats},
    }
    if keep_episodes:
        result["_episodes"] = runs
    return result


def _short(v: Any) -> str:
    if hasattr(v, "nodes") and hasattr(v, "model"):
        return f"<OpGraph {v.model}, {len(v.nodes)} ops>"
    return repr(v)[:80]


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except TypeError:
        return False


def format_table(result: dict[str, Any]) -> str:
    """The text table: one row per policy, then the speedup matrix (rows: policy, columns: baseline)."""
    stats, names = result["policies"], result["baselines"]
    lb = result["lower_bound_ms"]
    kw = ", ".join(f"{k}={v}" for k, v in result["env_kwargs"].items())
    head = [f"{result['env_id']} ({kw})" if kw else result["env_id"],
            f"{result['episodes']} episodes, seeds {result['seeds'][0]}..{result['seeds'][-1]}; "
            f"latency per request, energy per inference"]
    w = max(len("policy"), *(len(p) for p in stats)) + (8 if "oracle" in stats else 0)
    rows = [f"{'policy':<{w}}  {'mean ms':>9}  {'p95 ms':>9}  {'energy mJ':>9}  {'vs bound':>8}"]
    order = sorted(stats, key=lambda p: stats[p]["latency_ms_mean"])
    for p in order:
        s = stats[p]
        label = p + (" (exact)" if p == "oracle" else "")
        rows.append(f"{label:<{w}}  {s['latency_ms_mean']:>9.3f}  {s['latency_ms_p95']:>9.3f}  "
                    f"{s['energy_mj_mean']:>9.2f}  {(s['latency_ms_mean'] / lb - 1) * 100:>+7.1f}%")
    rows.append(f"{'lower bound':<{w}}  {lb:>9.3f}  (a bound: {'' if result['oracle']['exact'] else 'not '}"
                f"reached by an exact oracle here)")
    out = head + [""] + rows
    if names:
        bw = max(8, *(len(b) for b in names))
        out += ["", "speedup over baseline (baseline mean / policy mean)",
                f"{'policy':<{w}}  " + "  ".join(f"{b:>{bw}}" for b in names)]
        for p in order:
            out.append(f"{p:<{w}}  " + "  ".join(f"{result['speedup'][p][b]:>{bw}.3f}x" for b in names))
    if "sac" in stats:
        out.append("")
        out.append(f"sac: {stats['sac']['decision_us_mean']:.1f} us per decision (numpy forward, mean over "
                   f"{sum(1 for _ in result['seeds'])} episodes)")
    return "\n".join(out)


def to_json(result: dict[str, Any]) -> str:
    from sparoa_env.jsonutil import dumps

    return dumps({k: v for k, v in result.items() if not k.startswith("_")}, indent=1)
