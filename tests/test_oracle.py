"""The oracle: the chain DP is exact (its plan replays to the same latency in the simulator) and never
worse than any plan; the lower bound is below every policy's latency."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest

import sparoa_env  # noqa: F401
from agents.baselines import BASELINES, PlanPolicy, make_baseline
from agents.evaluate import evaluate, run_episode
from agents.oracle import chain_dp, enumerate_plans, exact_applicable, is_chain, lower_bound
from agents.train import linearised

from synthetic import chain, diamond, mixed


def _replay(env, lanes, seed=0):
    return run_episode(env, PlanPolicy("plan", lambda e, m: np.asarray(lanes)), seed).latency_ms[0]


@pytest.mark.parametrize("mode", ["MAXN", "15W"])
def test_chain_dp_replays_exactly_and_beats_every_plan(mode):
    g = chain(7, flops=3e6, nbytes=2e5)
    env = gym.make("SparOA-Orin-v0", model=g, power_mode=mode)
    u = env.unwrapped
    sol = chain_dp(g, u.cost_model, mode)
    assert _replay(env, sol.lanes) == pytest.approx(sol.latency_ms, rel=1e-12)
    best = min(_replay(env, lanes) for lanes in itertools.product((0, 1), repeat=len(g)))
    assert sol.latency_ms == pytest.approx(best, rel=1e-12)


def test_chain_dp_on_a_linearised_mixed_graph_matches_the_simulator():
    g = linearised(mixed(6))
    assert is_chain(g)
    env = gym.make("SparOA-Orin-v0", model=g)
    sol = chain_dp(g, env.unwrapped.cost_model, "MAXN")
    assert _replay(env, sol.lanes, seed=4) == pytest.approx(sol.latency_ms, rel=1e-12)


def test_chain_dp_refuses_non_chains():
    assert not is_chain(diamond())
    env = gym.make("SparOA-Orin-v0", model=diamond())
    with pytest.raises(ValueError, match="needs a chain"):
        chain_dp(diamond(), env.unwrapped.cost_model, "MAXN")


def test_exact_only_under_a_static_state():
    assert exact_applicable(gym.make("SparOA-Orin-v0", model=chain(4)).unwrapped)
    assert not exact_applicable(gym.make("SparOA-Orin-v0", model=chain(4), background="dynamic").unwrapped)
    assert not exact_applicable(gym.make("SparOA-Orin-v0", model=chain(4), background="light").unwrapped)
    one_lane = {"lane_share": {"cpu": 0.5}}  # a load pinned to one lane is a static state the DP does not model
    assert not exact_applicable(gym.make("SparOA-Orin-v0", model=chain(4), background=one_lane).unwrapped)
    # the host profile prices a request's first hand-off between lanes, which the DP does not model
    assert not exact_applicable(gym.make("SparOA-Host-v0", model=chain(4)).unwrapped)
    assert not exact_applicable(gym.make("SparOA-Orin-v0", model=chain(4), power_mode="switching").unwrapped)
    assert not exact_applicable(gym.make("SparOA-Orin-v0", model=chain(4), requests=2).unwrapped)
    assert not exact_applicable(gym.make("SparOA-Orin-v0", model=diamond()).unwrapped)


@pytest.mark.parametrize("kw", [dict(), dict(background="dynamic"), dict(power_mode="switching", background="heavy"),
                                dict(power_mode="15W")])
def test_lower_bound_is_below_every_policy(kw):
    for g in (mixed(5), diamond(), chain(5)):
        env = gym.make("SparOA-Orin-v0", model=g, **kw)
        r = evaluate("SparOA-Orin-v0", {"model": g, **kw}, baselines="all", episodes=3)
        for name, s in r["policies"].items():
            assert min(x for x in [s["latency_ms_mean"]]) >= r["lower_bound_ms"] * (1 - 1e-9), (name, kw)


def test_lower_bound_parts():
    g = mixed(4)
    env = gym.make("SparOA-Orin-v0", model=g)
    u = env.unwrapped
    b = lower_bound(g, u.cost_model, "MAXN")
    assert b.lower_bound_ms == max(b.critical_path_ms, b.work_ms) and b.critical_path_ms > 0
    # more modes can only lower the bound (a switch may speed things up)
    assert lower_bound(g, u.cost_model, list(u.mode_names)).lower_bound_ms <= b.lower_bound_ms + 1e-12


def test_enumeration_finds_the_best_static_plan_of_a_diamond():
    env = gym.make("SparOA-Orin-v0", model=diamond(flops=4e6, nbytes=1e5))
    sol = enumerate_plans(env, seed=0)
    for name in ("cpu_only", "gpu_only", "greedy", "heft"):
        assert sol.latency_ms <= run_episode(env, make_baseline(name), 0).latency_ms[0] + 1e-12
    assert _replay(env, sol.lanes) == pytest.approx(sol.latency_ms)


def test_evaluate_lists_the_oracle_only_where_exact():
    r = evaluate("SparOA-Orin-v0", {"model": chain(6, flops=3e6)}, baselines="heft", episodes=2)
    assert r["oracle"]["exact"] and "oracle" in r["policies"]
    assert r["policies"]["oracle"]["latency_ms_mean"] <= r["policies"]["heft"]["latency_ms_mean"] + 1e-12
    r = evaluate("SparOA-Orin-v0", {"model": mixed(3)}, baselines="heft", episodes=2)
    assert not r["oracle"]["exact"] and "oracle" not in r["policies"]


# ------------------------------------------------------------------------------ state-aware and energy-aware DP
from agents.oracle import chain_weighted, state_costs, state_expert  # noqa: E402

STATIC_LOAD = {"static_cpu_share": 0.5, "static_gpu_share": 0.4, "static_bw_frac": 0.125}


def _replay_full(env, lanes, seed=0):
    ep = run_episode(env, PlanPolicy("plan", lambda e, m: np.asarray(lanes)), seed)
    return ep.latency_ms[0], ep.energy_mj


def test_state_costs_without_load_are_the_mode_costs():
    env = gym.make("SparOA-Orin-v0", model=chain(5))
    u = env.unwrapped
    c = u.cost_model.op_costs(u.graph, "30W")
    sc = state_costs(u.cost_model, u.graph, "30W")
    assert np.allclose(sc.nominal_ms, c.nominal_ms, rtol=1e-12) and np.allclose(sc.host_ms, c.host_ms, rtol=1e-12)


@pytest.mark.parametrize("mode", ["MAXN", "15W"])
def test_chain_dp_under_a_static_load_replays_exactly(mode):
    g = chain(7, flops=3e6, nbytes=2e5)
    env = gym.make("SparOA-Orin-v0", model=g, power_mode=mode, background=STATIC_LOAD)
    u = env.unwrapped
    sol = chain_dp(g, u.cost_model, mode, state_costs(u.cost_model, g, mode, 0.5, 0.4, 0.125))
    assert _replay(env, sol.lanes) == pytest.approx(sol.latency_ms, rel=1e-9)
    best = min(_replay(env, lanes) for lanes in itertools.product((0, 1), repeat=len(g)))
    assert sol.latency_ms == pytest.approx(best, rel=1e-9)


@pytest.mark.parametrize("energy_weight", [0.05, 1.0])
def test_chain_weighted_minimises_latency_plus_weighted_energy(energy_weight):
    g = chain(7, flops=3e6, nbytes=2e5)
    env = gym.make("SparOA-Orin-v0", model=g, power_mode="MAXN", background=STATIC_LOAD)
    u = env.unwrapped
    sc = state_costs(u.cost_model, g, "MAXN", 0.5, 0.4, 0.125)
    sol = chain_weighted(g, u.cost_model, sc, sc.idle_w + 1.0 / energy_weight, grid=None)
    lat, en = _replay_full(env, sol.lanes)
    assert (lat, en) == (pytest.approx(sol.latency_ms, rel=1e-9), pytest.approx(sol.energy_mj, rel=1e-9))
    best = min(sum(x * w for x, w in zip(_replay_full(env, lanes), (1.0, energy_weight)))
               for lanes in itertools.product((0, 1), repeat=len(g)))
    assert lat + energy_weight * en == pytest.approx(best, rel=1e-9)
    # the merged-state default and the relaxed bound bracket the exact optimum
    approx = chain_weighted(g, u.cost_model, sc, sc.idle_w + 1.0 / energy_weight)
    low = chain_weighted(g, u.cost_model, sc, sc.idle_w + 1.0 / energy_weight, relax=True)
    obj = lambda f: f.latency_ms + energy_weight * f.energy_mj  # noqa: E731
    assert obj(low) <= obj(sol) + 1e-9 <= obj(approx) + 2e-9


def test_state_expert_follows_the_plan_of_the_observed_load():
    g = chain(7, flops=3e6, nbytes=2e5)
    env = gym.make("SparOA-Orin-v0", model=g, power_mode="MAXN", background=STATIC_LOAD)
    u = env.unwrapped
    want = chain_dp(g, u.cost_model, "MAXN", state_costs(u.cost_model, g, "MAXN", 0.5, 0.4, 0.125)).lanes
    ep = run_episode(env, state_expert(env), 0)
    assert [ep.plan[n.name] for n in g.nodes] == [u.processors[k] for k in want]
    assert ep.latency_ms[0] == pytest.approx(_replay(env, want), rel=1e-12)


def test_ceilings_order_the_expert_the_clairvoyant_choices_and_the_energy_bound():
    from agents.scenarios import DYNAMIC, ceilings

    res = ceilings(mixed(3), episodes=1, rollout=True, energy_weights=(1.0,), progress=False)
    for scen in DYNAMIC:
        row = res["dynamic"][scen]
        # both clairvoyant figures include the expert's own choice, so they are never worse than it
        assert row["best_of_plans_ms"] <= row["state_dp_ms"] + 1e-9
        assert row["rollout_ms"] <= row["state_dp_ms"] + 1e-9
    e = res["energy"]["MAXN/static chain"]
    assert e["min_energy_bound_mj"] <= e["min_energy_plan"]["energy_mj"] + 1e-9
    assert e["min_energy_plan"]["energy_mj"] <= min(e["gpu_only"]["energy_mj"], e["heft"]["energy_mj"]) + 1e-6
