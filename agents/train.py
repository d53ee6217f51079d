"""Train a Tianshou 2.x SAC placement policy on a SparOA environment (cleanrl-style: one dataclass of
arguments, a seeding block, a run name of env, experiment, seed and time).

    python -m agents.train --env SparOA-Orin-v0 --set background=dynamic --steps 60000 --seed 0 --out runs/sac
    sparoa train ...            # the same, through the CLI

What a run directory holds (``--out DIR``; an existing run is refused unless ``--force``):

* ``policy.pt``: the actor's ``state_dict`` (plain tensors: ``torch.load(..., weights_only=True)``);
* ``config.json``: the arguments, the env id and kwargs, observation/action shapes, hidden sizes, the run
  name, timings and the last test return; everything :func:`agents.policy.load_policy` needs;
* ``tb/<run name>/``: TensorBoard logs (``tensorboard --logdir DIR/tb``);
* ``model.json``: the OpGraph, when the env was given an in-memory graph rather than a name or a path.

Reward scaling: the environment's reward is minus milliseconds of request time; per op that is tens of
microseconds, so :class:`ScaledReward` multiplies it by ``reward_scale`` (``"auto"``: number of ops over
the accelerator-only latency from the cost model, which puts an op's share of the return near 1). The
return stays proportional to minus the sum of latencies, and ``gamma`` defaults to 1: the episode is
finite and a discount would make the agent myopic (a CPU placement costs the dispatcher nothing now and
the request's time later).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np

from .config import VECTOR_KINDS, Args, add_arguments, args_from_namespace, parse_set

__all__ = ["Args", "train", "make_env", "ScaledReward", "run_name", "parse_set", "VECTOR_KINDS", "main"]
POLICY_FILE, LAST_POLICY_FILE, CONFIG_FILE, GRAPH_FILE = "policy.pt", "policy_last.pt", "config.json", "model.json"


def run_name(args: Args) -> str:
    return f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"


class ScaledReward(gym.Wrapper):
    """The training view of the reward: scaled by a constant, optionally with potential-based shaping, and
    with ``info`` dropped (Tianshou stores infos in its replay buffer, and the env's ragged per-step
    lists do not stack). A module-level class, so subproc and Ray workers can pickle it.

    Shaping (``shaping=True``): ``r' = r + Phi(s') - Phi(s)`` with ``Phi(s) = -max`` over lanes of the
    observed time until the lane frees (ms; 0 at the end). Every op's effect on the queues shows in the
    step that places it, instead of at the episode's end, and for ``gamma = 1`` the return changes by the
    constant ``-Phi(s_0)`` only, so the optimal policy is unchanged (Ng, Harada and Russell, 1999).
    """

    def __init__(self, env: gym.Env, scale: float, shaping: bool = False) -> None:
        super().__init__(env)
        self.scale = float(scale)
        self.shaping = bool(shaping)
        u = env.unwrapped
        from sparoa_env.backend import HW_STATE_FIELDS
        from sparoa_env.envs.features import N_STATIC

        nf = len(HW_STATE_FIELDS)
        base = N_STATIC + u.n_lanes
        self._free_idx = np.array([base + j * nf + HW_STATE_FIELDS.index("time_to_free_ms") for j in range(u.n_lanes)])
        self._phi = 0.0

    def _potential(self, obs: np.ndarray) -> float:
        # the observation holds log10(1 + ms) / 5 (see the env's table); invert it
        v = float(np.max(obs[self._free_idx]))
        return -(10.0 ** (5.0 * v) - 1.0)

    def reset(self, **kwargs: Any):
        obs, _ = self.env.reset(**kwargs)
        self._phi = self._potential(obs) if self.shaping else 0.0
        return obs, {}

    def step(self, action):
        obs, reward, term, trunc, _ = self.env.step(action)
        if self.shaping:
            phi = 0.0 if term else self._potential(obs)
            reward += phi - self._phi
            self._phi = phi
        return obs, reward * self.scale, term, trunc, {}


def auto_reward_scale(env: gym.Env) -> float:
    """Number of ops over the accelerator-only serial latency (cost model, the env's first listed mode
    when the power mode is drawn): about 1 per op of the return."""
    from .baselines import accelerator_lane

    u = env.unwrapped
    mode = u.power_mode if u.power_mode in u.mode_names else u.profile.default_power_mode
    costs = u.cost_model.op_costs(u.graph, mode)
    lat = u.cost_model.serial_latency_ms(costs, accelerator_lane(u.profile))
    return len(u.graph) / max(lat, 1e-9)


def make_env(env_id: str, env_kwargs: dict[str, Any], reward_scale: float | None = None,
             shaping: bool = False) -> gym.Env:
    import sparoa_env.envs  # noqa: F401  (registers the ids, also in a fresh worker process)

    env = gym.make(env_id, **env_kwargs)
    return ScaledReward(env, reward_scale, shaping) if reward_scale is not None else env


def resolve_env_kwargs(env_kwargs: dict[str, Any], run_dir: Path | None = None) -> dict[str, Any]:
    """JSON-safe kwargs: an in-memory OpGraph model is written to ``run_dir/model.json`` and named by path."""
    from sparoa_env.graph import OpGraph

    kw = dict(env_kwargs)
    if isinstance(kw.get("model"), OpGraph):
        if run_dir is None:
            raise ValueError("an OpGraph model needs a run directory to be saved in")
        path = run_dir / GRAPH_FILE
        kw["model"].save(path)
        kw["model"] = str(path.resolve())
    return kw


def vector_env(kind: str, fns: list[Callable[[], gym.Env]]):
    from tianshou.env import DummyVectorEnv, RayVectorEnv, SubprocVectorEnv

    if kind == "dummy":
        return DummyVectorEnv(fns)
    if kind == "subproc":
        return SubprocVectorEnv(fns)
    if kind == "ray":
        try:
            import ray
        except ImportError as e:  # pragma: no cover
            raise ImportError("--vector ray needs ray: pip install 'ray==2.60.0'") from e
        if not ray.is_initialized():
            # joins a running cluster (`ray start --head` / `ray start --address=...`) when RAY_ADDRESS is
            # set or one runs locally; otherwise starts a local one
            ray.init(address=os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True, log_to_driver=False)
        return RayVectorEnv(fns)
    raise ValueError(f"vector must be one of {', '.join(VECTOR_KINDS)}, got {kind!r}")


def build_actor(obs_shape: Sequence[int], act_shape: Sequence[int], hidden_sizes: Sequence[int]):
    from tianshou.utils.net.common import Net
    from tianshou.utils.net.continuous import ContinuousActorProbabilistic

    return ContinuousActorProbabilistic(preprocess_net=Net(state_shape=tuple(obs_shape), hidden_sizes=list(hidden_sizes)),
                                        action_shape=tuple(act_shape), unbounded=True, conditioned_sigma=True)


def prepare_run_dir(out: str | os.PathLike, force: bool) -> Path:
    run_dir = Path(out)
    if run_dir.exists() and any(run_dir.iterdir()):
        if not force:
            raise FileExistsError(f"run directory {run_dir} exists and is not empty; pass --force to overwrite it")
        for name in (POLICY_FILE, LAST_POLICY_FILE, CONFIG_FILE, GRAPH_FILE, "tb"):
            p = run_dir / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


class SeedCycle(gym.Wrapper):
    """Resets with seeds ``seeds[0], seeds[1], ...`` in turn, from the start again after :meth:`rewind`: the
    test episodes of every epoch then meet the same hardware dynamics, so epochs compare fairly."""

    def __init__(self, env: gym.Env, seeds: Sequence[int]) -> None:
        super().__init__(env)
        self.seeds = list(seeds)
        self.pos = 0

    def rewind(self) -> None:
        self.pos = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        seed = self.seeds[self.pos % len(self.seeds)]
        self.pos += 1
        return self.env.reset(seed=seed, options=options)


def linearised(graph: Any) -> Any:
    """The graph's ops as one chain in graph (topological) order, each edge carrying the producer's output."""
    from sparoa_env.graph import Edge, OpGraph

    nodes = graph.nodes
    edges = [Edge(nodes[i].name, nodes[i + 1].name, nodes[i].bytes_out) for i in range(len(nodes) - 1)]
    return OpGraph(f"{graph.model}-linearised", graph.batch, nodes, edges, {"source": "agents.train.linearised"})


def demonstrations(env_id: str, env_kwargs: dict[str, Any], episodes: int, seed: int,
                   flip_prob: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Observations and lanes from episodes of the *oracle plan of the linearised graph*
    (:func:`agents.oracle.chain_dp` on :func:`linearised`, per power mode at reset; exact only for a true
    chain, a strong static plan otherwise), with a share ``flip_prob`` of decisions flipped to a random
    lane so that the states near the plan are covered too."""
    from .oracle import chain_dp

    env = make_env(env_id, env_kwargs)
    u = env.unwrapped
    chain = linearised(u.graph)
    plans: dict[str, np.ndarray] = {}
    rng = np.random.default_rng([seed, 0xDE70])
    obs_l, lane_l = [], []
    n = len(u.graph)
    for ep in range(episodes):
        obs, info = env.reset(seed=seed * 7919 + ep)
        mode = info.get("power_mode") or u.mode_names[0]
        if mode not in plans:
            plans[mode] = chain_dp(chain, u.cost_model, mode).lanes
        plan = plans[mode]
        k = 0
        while True:
            lane = int(plan[k % n])
            if rng.random() < flip_prob:
                lane = int(rng.integers(u.n_lanes))
            obs_l.append(obs)
            lane_l.append(int(plan[k % n]))  # the label is the plan's lane; the flip only moves the state
            obs, _, term, trunc, _ = env.step(u.score_of(lane))
            k += 1
            if term or trunc:
                break
    env.close()
    return np.asarray(obs_l, dtype=np.float32), np.asarray(lane_l, dtype=np.int64)


def behaviour_clone(actor: Any, obs: np.ndarray, lanes: np.ndarray, score_of: Callable[[int], np.ndarray],
                    steps: int, batch_size: int, seed: int, lr: float = 1e-3) -> float:
    """Fit the actor's mean head to the demonstrated lanes (MSE in pre-tanh space towards
    ``atanh(0.9 * score)``); returns the share of demonstrated decisions the deterministic actor matches."""
    import torch

    targets = np.stack([np.arctanh(0.9 * np.clip(score_of(int(k)), -1, 1)) for k in range(int(lanes.max()) + 1)])
    y = torch.as_tensor(targets[lanes], dtype=torch.float32)
    x = torch.as_tensor(obs)
    opt = torch.optim.Adam(actor.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=g)
        (mu, _), _ = actor(x[idx])
        loss = torch.nn.functional.mse_loss(mu, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        (mu, _), _ = actor(x)
    return float((torch.sign(mu) == torch.sign(y)).float().mean())


# ------------------------------------------------------------------------------------------------ training
def train(args: Args) -> dict[str, Any]:
    """Run SAC; write the run directory; return the saved config (with timings)."""
    import torch
    from torch.utils.tensorboard import SummaryWriter
    from tianshou.algorithm import SAC
    from tianshou.algorithm.modelfree.sac import AutoAlpha, SACPolicy
    from tianshou.algorithm.optim import AdamOptimizerFactory
    from tianshou.data import Collector, CollectStats, VectorReplayBuffer
    from tianshou.trainer import OffPolicyTrainerParams
    from tianshou.utils import TensorboardLogger
    from tianshou.utils.net.common import Net
    from tianshou.utils.net.continuous import ContinuousCritic

    run_dir = prepare_run_dir(args.out, args.force)
    name = run_name(args)
    env_kwargs = resolve_env_kwargs(args.env_kwargs, run_dir)

    # --- seeding
    torch.set_num_threads(args.torch_threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # tianshou's replay sampling draws from numpy's global generator

    probe = make_env(args.env_id, env_kwargs)  # raises the env's own error for bad kwargs, before any work
    scale = auto_reward_scale(probe) if args.reward_scale == "auto" else float(args.reward_scale)
    obs_shape, act_shape = probe.observation_space.shape, probe.action_space.shape
    action_space = probe.action_space
    probe.close()

    def env_fn() -> gym.Env:
        return make_env(args.env_id, env_kwargs, scale, args.shaping)

    cycles: list[SeedCycle] = []

    def test_env_fn() -> gym.Env:
        w = SeedCycle(env_fn(), [100_000 + args.seed * 1000 + k for k in range(max(args.test_episodes, 1))])
        cycles.append(w)
        return w

    t0 = time.perf_counter()
    train_envs = vector_env(args.vector, [env_fn] * args.workers)
    test_envs = vector_env("dummy", [test_env_fn]) if args.test_episodes > 0 else None
    train_envs.seed([args.seed * 1000 + k for k in range(args.workers)])

    # --- networks and algorithm (shared/STACK.md call sequence)
    actor = build_actor(obs_shape, act_shape, args.hidden_sizes)
    bc_info: dict[str, Any] = {}
    if args.pretrain == "oracle":
        tb = time.perf_counter()
        demo_obs, demo_lanes = demonstrations(args.env_id, env_kwargs, args.demo_episodes, args.seed)
        probe_u = make_env(args.env_id, env_kwargs).unwrapped
        match = behaviour_clone(actor, demo_obs, demo_lanes, probe_u.score_of, args.bc_steps, args.batch_size, args.seed)
        bc_info = {"demo_decisions": int(len(demo_obs)), "bc_steps": args.bc_steps, "bc_match": round(match, 4),
                   "bc_wall_s": round(time.perf_counter() - tb, 2)}

    def critic() -> ContinuousCritic:
        return ContinuousCritic(preprocess_net=Net(state_shape=obs_shape, action_shape=act_shape,
                                                   hidden_sizes=list(args.hidden_sizes), concat=True))

    alpha: Any = args.init_alpha
    if args.auto_alpha:
        alpha = AutoAlpha(target_entropy=-float(np.prod(act_shape)), log_alpha=float(np.log(args.init_alpha)),
                          optim=AdamOptimizerFactory(lr=args.alpha_lr))
    algo = SAC(policy=SACPolicy(actor=actor, action_space=action_space),
               policy_optim=AdamOptimizerFactory(lr=args.actor_lr),
               critic=critic(), critic_optim=AdamOptimizerFactory(lr=args.critic_lr),
               critic2=critic(), critic2_optim=AdamOptimizerFactory(lr=args.critic_lr),
               tau=args.tau, gamma=args.gamma, alpha=alpha)
    buf = VectorReplayBuffer(total_size=args.buffer_size, buffer_num=args.workers)
    train_c = Collector[CollectStats](algo, train_envs, buf, exploration_noise=True)
    test_c = Collector[CollectStats](algo, test_envs) if test_envs is not None else None

    writer = SummaryWriter(str(run_dir / "tb" / name))
    writer.add_text("args", json.dumps(args.to_dict(), default=str))
    logger = TensorboardLogger(writer, training_interval=1000, update_interval=1000)

    config: dict[str, Any] = {
        "format": "sparoa-sac-policy/1", "run_name": name, "algorithm": "tianshou.algorithm.SAC",
        "env_id": args.env_id, "env_kwargs": env_kwargs, "obs_shape": list(obs_shape),
        "action_shape": list(act_shape), "hidden_sizes": list(args.hidden_sizes), "reward_scale": scale,
        "args": {**args.to_dict(), "env_kwargs": env_kwargs}, "policy_file": POLICY_FILE,
    }
    saved = {"best": False}

    def save_best(algorithm: Any = None) -> None:
        torch.save(actor.state_dict(), run_dir / POLICY_FILE)
        saved["best"] = True

    def test_fn(epoch: int, step: int | None) -> None:
        for w in cycles:  # the same test seeds every epoch (see SeedCycle)
            w.rewind()
        test_c.reset(reset_stats=False)

    warm = min(args.start_steps, args.total_steps)
    train_c.reset()
    if warm > 0:
        # after behaviour cloning, warm up with the (stochastic) pretrained actor rather than uniform noise
        train_c.collect(n_step=warm, random=args.pretrain == "none")
    if test_c is not None:
        test_c.reset()
    steps_left = max(args.total_steps - warm, 0)
    epoch_steps = min(args.epoch_steps, max(steps_left, 1))
    epochs = max(1, -(-steps_left // epoch_steps))
    result = None
    if steps_left > 0:
        result = algo.run_training(OffPolicyTrainerParams(
            training_collector=train_c, test_collector=test_c, max_epochs=epochs, epoch_num_steps=epoch_steps,
            collection_step_num_env_steps=args.step_per_collect,
            update_step_num_gradient_steps_per_sample=args.update_per_step,
            test_step_num_episodes=max(args.test_episodes, 1), batch_size=args.batch_size,
            test_fn=test_fn if test_c is not None else None, save_best_fn=save_best if test_c is not None else None,
            test_in_training=False, logger=logger, show_progress=args.progress, verbose=args.progress))
    wall = time.perf_counter() - t0
    torch.save(actor.state_dict(), run_dir / LAST_POLICY_FILE)
    if not saved["best"]:
        torch.save(actor.state_dict(), run_dir / POLICY_FILE)
    config["training"] = {
        "wall_s": round(wall, 2), "env_steps": int(warm + (result.train_step if result is not None else 0)),
        "epochs": epochs if result is not None else 0,
        "best_test_return": None if result is None or result.best_reward is None else float(result.best_reward),
        "gradient_steps": None if result is None else int(result.update_step),
        "kept": "best test return (policy.pt); the last actor is policy_last.pt" if saved["best"] else "last",
        "torch_threads": args.torch_threads, "workers": args.workers, "vector": args.vector, **bc_info,
    }
    (run_dir / CONFIG_FILE).write_text(json.dumps(config, indent=1, default=str) + "\n")
    writer.close()
    train_envs.close()
    if test_envs is not None:
        test_envs.close()
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train SAC on a SparOA environment")
    add_arguments(parser)
    cfg = train(args_from_namespace(parser.parse_args(argv)))
    print(json.dumps({"out": cfg["args"]["out"], "training": cfg["training"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
