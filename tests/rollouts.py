"""One rollout helper for the environment tests (SparOA and SparseLoom ids alike)."""

from __future__ import annotations


def rollout(env, seed, policy=None, options=None):
    """Run one episode from ``reset(seed)``; actions from ``policy(obs)`` or the action space seeded with
    ``seed``. Returns ``([obs0, (obs, reward), ...], return, last info)``."""
    obs, _ = env.reset(seed=seed, options=options)
    env.action_space.seed(seed)
    traj, ret = [obs], 0.0
    while True:
        a = policy(obs) if policy else env.action_space.sample()
        obs, r, term, trunc, info = env.step(a)
        traj.append((obs, r))
        ret += r
        if term or trunc:
            return traj, ret, info


def assert_replays(make_env, seed):
    """Two environments from ``make_env()`` run the same episode from ``seed``: equal observations,
    rewards, return and per-request latencies, exactly. Returns the first environment and its rollout."""
    import numpy as np

    a, b = make_env(), make_env()
    ta, ra, ia = rollout(a, seed)
    tb, rb, ib = rollout(b, seed)
    assert ra == rb and ia["latency_ms"] == ib["latency_ms"]
    assert np.array_equal(ta[0], tb[0])
    for x, y in zip(ta[1:], tb[1:]):
        assert np.array_equal(x[0], y[0]) and x[1] == y[1]
    return a, (ta, ra, ia)
