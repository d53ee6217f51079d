"""SparseLoom-Orin-v0 / SparseLoom-CoreUltra-v0: the Gymnasium checks the SparOA ids pass."""

from __future__ import annotations

import pickle
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sparoa_env  # noqa: F401  (registers the ids)
from sparoa_env.loom import LOOM_IDS

from rollouts import assert_replays, rollout

IDS = sorted(LOOM_IDS)
SMALL = {"tasks": ["digits-cnn", "cancer-mlp", "resnet50"], "n_requests": 25}


@pytest.mark.parametrize("env_id", IDS)
def test_check_env(env_id):
    env = gym.make(env_id, workload=SMALL)
    check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_trajectory(env_id):
    a, (_, _, ia) = assert_replays(lambda: gym.make(env_id, workload=SMALL), 4)
    _, _, ic = rollout(a, 5)
    assert ic["latency_ms"] != ia["latency_ms"]


@pytest.mark.parametrize("env_id", IDS)
def test_return_counts_violations_and_info(env_id):
    env = gym.make(env_id, workload=SMALL)
    _, ret, info = rollout(env, 0)
    n = SMALL["n_requests"]
    assert len(info["latency_ms"]) == n
    assert ret == pytest.approx(-info["slo_violation_rate"] * n)
    assert info["throughput_rps"] > 0 and info["memory_mb"] > 0


def test_pickle_mid_episode_resumes_exactly():
    env = gym.make("SparseLoom-CoreUltra-v0", workload=SMALL)
    env.reset(seed=2)
    for _ in range(6):
        env.step(np.array([3, 5]))
    clone = pickle.loads(pickle.dumps(env))
    rng = np.random.default_rng(0)
    while True:
        a = np.array([rng.integers(16), rng.integers(39)])
        o1, r1, t1, _, i1 = env.step(a)
        o2, r2, t2, _, i2 = clone.step(a)
        assert np.array_equal(o1, o2) and r1 == r2 and t1 == t2
        if t1:
            break
    assert i1["latency_ms"] == i2["latency_ms"]


def test_spaces_and_docstring():
    env = gym.make("SparseLoom-CoreUltra-v0", workload=SMALL).unwrapped
    assert env.catalog.processors == ("cpu", "gpu", "npu")
    assert len(env.placements) == 39 and env.placements[0] == (0, 0, 0, 0)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert obs.shape == (3 + 3 + 4 * 3 + 2 * 16,)
    for section in ("## Description", "## Action Space", "## Observation Space", "## Rewards", "## Episode End",
                    "## Arguments", "## Version History"):
        assert section in type(env).__doc__
    orin = gym.make("SparseLoom-Orin-v0", workload=SMALL).unwrapped
    assert len(orin.placements) == 8


def test_bad_arguments_and_actions():
    with pytest.raises(ValueError, match="unknown workload 'huge'"):
        gym.make("SparseLoom-Orin-v0", workload="huge")
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['rate'\]"):
        gym.make("SparseLoom-Orin-v0", workload={"rate": 3})
    with pytest.raises(ValueError, match="unknown loom task 'mnist'"):
        gym.make("SparseLoom-Orin-v0", workload={"tasks": ["mnist"]})
    with pytest.raises(ValueError, match="unknown power mode|TURBO"):
        gym.make("SparseLoom-Orin-v0", power_mode="TURBO")
    with pytest.raises(ValueError, match="lane_share.*not modelled by the SparseLoom simulator"):
        gym.make("SparseLoom-Orin-v0", workload=SMALL, background={"lane_share": {"cpu": 0.5}}).reset(seed=0)
    env = gym.make("SparseLoom-Orin-v0", workload=SMALL).unwrapped
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.array([0, 0]))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside"):
        env.step(np.array([16, 0]))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.array([1, 2, 3]))


def test_import_and_make_stay_torch_and_sklearn_free():
    code = ("import sys, sparoa_env, gymnasium as gym; e = gym.make('SparseLoom-CoreUltra-v0'); e.reset(seed=0); "
            "print('torch' in sys.modules, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_workload_errors_name_the_field_and_value():
    cases = [
        ({"tasks": ["digits-cnn", "digits-cnn"], "n_requests": 5}, "workload: duplicate task 'digits-cnn'"),
        ({"latency_factors": [float("nan")]}, "workload: field 'latency_factors' must hold finite numbers > 0, got nan"),
        ({"latency_factors": [float("inf")]}, "workload: field 'latency_factors' must hold finite numbers > 0, got inf"),
        ({"latency_factors": "abc"}, "workload: field 'latency_factors' must be a non-empty list.*got 'abc'"),
        ({"accuracy_drops": [float("nan")]}, r"workload: field 'accuracy_drops' must hold finite numbers in \[0, 1\)"),
        ({"accuracy_drops": [2.0]}, r"workload: field 'accuracy_drops' must hold finite numbers in \[0, 1\), got 2.0"),
        ({"slo_period_ms": -1}, "workload: field 'slo_period_ms' must be a finite number > 0, got -1"),
    ]
    for w, msg in cases:
        with pytest.raises(ValueError, match=msg):
            gym.make("SparseLoom-Orin-v0", workload=w).reset(seed=0)


def test_tiny_slo_period_or_rate_resets_quickly():
    import time

    for w in ({"slo_period_ms": 1e-6, "n_requests": 10}, {"slo_period_ms": 1e-3, "n_requests": 10},
              {"rate_scale": 1e-6, "n_requests": 10, "background": "none"}):
        env = gym.make("SparseLoom-Orin-v0", workload=w)
        t0 = time.perf_counter()
        obs, _ = env.reset(seed=0)
        assert time.perf_counter() - t0 < 2.0, w
        assert np.all(np.isfinite(obs)) and env.observation_space.contains(obs)


def test_actions_must_be_integers_and_missing_tables_are_named():
    env = gym.make("SparseLoom-Orin-v0", workload=SMALL).unwrapped
    env.reset(seed=0)
    for bad in ([0.9, 1.9], ["a", "b"], [True, False], [np.nan, 0]):
        with pytest.raises(ValueError, match=r"two finite integers.*not rounded"):
            env.step(bad)
    env.step([1.0, 2.0])  # integer values are integers, whatever the dtype
    env.step(np.array([1, 2]))
    with pytest.raises(ValueError, match="profile 'orin-nano' has no SparseLoom cost tables.*orin-agx, intel-core-ultra"):
        gym.make("SparseLoom-Orin-v0", profile="orin-nano")
