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
