"""Scripted baselines: each acts through the env, is deterministic per seed and places what it says."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import sparoa_env  # noqa: F401
from agents.baselines import (BASELINES, PlanPolicy, greedy_lanes, heft_lanes, isolated_ms, make_baseline,
                              parse_baselines, threshold_lanes)
from agents.evaluate import run_episode
from sparoa_env.thresholds import threshold_rule

from synthetic import chain, diamond, mixed


def _env(**kw):
    return gym.make("SparOA-Orin-v0", **{"model": mixed(4), **kw})


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_finishes_and_is_deterministic(name):
    env = _env(background="dynamic")
    a = run_episode(env, make_baseline(name), 3)
    b = run_episode(env, make_baseline(name), 3)
    assert a.latency_ms == b.latency_ms and a.plan == b.plan
    assert a.decisions == len(env.unwrapped.graph)
    assert all(x > 0 for x in a.latency_ms)


def test_cpu_only_and_gpu_only_place_everything_on_one_processor():
    env = _env()
    assert set(run_episode(env, make_baseline("cpu_only"), 0).plan.values()) == {"cpu"}
    assert set(run_episode(env, make_baseline("gpu_only"), 0).plan.values()) == {"gpu"}


def test_plan_policies_replay_their_lanes_over_several_requests():
    env = _env(requests=3)
    pol = make_baseline("heft")
    ep = run_episode(env, pol, 0)
    u = env.unwrapped
    assert ep.decisions == 3 * len(u.graph)
    assert ep.plan == {n.name: u.processors[k] for n, k in zip(u.graph.nodes, pol.lanes)}


def test_greedy_takes_the_fastest_isolated_lane():
    env = _env()
    u = env.unwrapped
    costs = u.cost_model.op_costs(u.graph, "MAXN")
    t = isolated_ms(costs, [p.async_dispatch for p in u.profile.processors])
    lanes = greedy_lanes(u.graph, costs, u.profile)
    assert np.array_equal(t[np.arange(len(lanes)), lanes], t.min(axis=1))


def test_isolated_time_is_host_plus_device_on_sync_and_max_on_async():
    env = _env()
    u = env.unwrapped
    c = u.cost_model.op_costs(u.graph, "MAXN")
    t = isolated_ms(c, [False, True])
    assert np.allclose(t[:, 0], c.host_ms[:, 0] + c.nominal_ms[:, 0])
    assert np.allclose(t[:, 1], np.maximum(c.host_ms[:, 1], c.nominal_ms[:, 1]))


def test_threshold_uses_the_shared_rule():
    env = _env()
    u = env.unwrapped
    rs, i_s = u.thresholds_for("MAXN")
    lanes = threshold_lanes(u.graph, rs, i_s, 1)
    f = u.graph.features
    assert np.array_equal(lanes == 0, threshold_rule(f["sparsity"], f["intensity"], rs, i_s))
    # an extreme rule sends everything light to the CPU
    assert (threshold_lanes(u.graph, 0.0, 1e12, 1) == 0).all()


def test_heft_is_valid_and_no_worse_than_its_own_single_lane_estimates():
    for g in (chain(6), diamond(), mixed(5)):
        env = gym.make("SparOA-Orin-v0", model=g)
        u = env.unwrapped
        costs = u.cost_model.op_costs(g, "MAXN")
        lanes = heft_lanes(g, costs, u.cost_model)
        assert lanes.shape == (len(g),) and set(lanes.tolist()) <= {0, 1}


def test_heft_prefers_the_cheap_processor_when_transfers_are_free():
    # huge ops: the GPU is far faster; HEFT must put them there
    g = chain(4, flops=5e10, nbytes=1e3)
    env = gym.make("SparOA-Orin-v0", model=g)
    u = env.unwrapped
    assert (heft_lanes(g, u.cost_model.op_costs(g, "MAXN"), u.cost_model) == 1).all()


def test_random_policy_is_seeded_per_episode():
    env = _env()
    a = run_episode(env, make_baseline("random"), 5).plan
    b = run_episode(env, make_baseline("random"), 5).plan
    c = run_episode(env, make_baseline("random"), 6).plan
    assert a == b and a != c


def test_parse_baselines():
    assert parse_baselines("all") == list(BASELINES)
    assert parse_baselines("heft,greedy") == ["heft", "greedy"]
    assert parse_baselines("none") == []
    with pytest.raises(ValueError, match="unknown baseline 'hefty'"):
        parse_baselines("hefty")


def test_plan_policy_caches_per_mode():
    calls = []

    def fn(env, mode):
        calls.append(mode)
        return np.zeros(len(env.graph), dtype=np.int64)

    env = _env(power_mode="random")
    pol = PlanPolicy("p", fn)
    for s in range(6):
        run_episode(env, pol, s)
    assert len(calls) == len(set(calls)) <= 4


def test_accelerator_lane_on_a_cpu_only_profile_is_the_last_lane():
    from sparoa_env.profile import load_profile

    from agents.baselines import accelerator_lane

    assert accelerator_lane(load_profile("host")) == 1
    assert accelerator_lane(load_profile("orin-agx")) == 1


def test_predicted_threshold_places_by_the_shared_rule_with_the_predictor_s_thresholds():
    from predictors import predict_thresholds

    env = gym.make("SparOA-Orin-v0", model="resnet18", background="heavy")
    u = env.unwrapped
    result = run_episode(env, make_baseline("predicted_threshold"), 0)
    rs, i_s = predict_thresholds(u.graph, u.profile, "MAXN", "heavy")
    f = u.graph.features
    cpu = threshold_rule(f["sparsity"], f["intensity"], rs, i_s)
    assert [result.plan[n.name] == "cpu" for n in u.graph.nodes] == cpu.tolist()
