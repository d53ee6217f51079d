"""Train a Tianshou 2.x SAC placement policy on a SparOA environment (cleanrl-style: one dataclass of
arguments, a seeding block, a run name of env, experiment, seed and time).

    python -m agents.train --env SparOA-Orin-v0 --set background=dynamic --steps 60000 --seed 0 --out runs/sac
    sparoa train ...            # the same, through the CLI

What a run directory holds (``--out DIR``; an existing run is refused unless ``--force``):

* ``policy.pt``: the kept actor's ``state_dict`` (plain tensors: ``torch.load(..., weights_only=True)``): the
  best on the held-out test seeds, the behaviour-cloned start included; ``policy_bc.pt`` the cloned actor,
  ``policy_last.pt`` the last one;
* ``config.json``: the arguments, the env id and kwargs, observation/action shapes, hidden sizes, the run
  name, timings and the last test return; everything :func:`agents.policy.load_policy` needs;
* ``tb/<run name>/``: TensorBoard logs (``tensorboard --logdir DIR/tb``);
* ``model.json``: the OpGraph, when the env was given an in-memory graph rather than a name or a path.

Reward scaling: the environment's reward is minus milliseconds of request time; per op that is tens of
microseconds, so :class:`ScaledReward` multiplies it by ``reward_scale`` (``"auto"``: number of ops over
the accelerator-only latency from the cost model, which puts an op's share of the return near 1). The
return stays proportional to minus the sum of latencies, and ``gamma`` defaults to 1: the episode is
finite and a discount would make the agent myopic (a CPU placement costs the dispatcher nothing now and
the request's time later; measured: gamma = 0.97 sent every op to the CPU within 30k steps).

The SAC phase fine-tunes the cloned actor with a critic warm-up, an anchor to the cloned actor, 32-step
targets and a fixed small alpha: :mod:`agents.finetune` says why, docs/agents.md has the ablation.
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
BC_POLICY_FILE = "policy_bc.pt"  # the behaviour-cloned actor, before SAC


def run_name(args: Args) -> str:
    return f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"


class ScaledReward(gym.Wrapper):
    """The training view of the reward: scaled by a constant, optionally with potential-based shaping, and
    with ``info`` dropped (Tianshou stores infos in its replay buffer, and the env's ragged per-step
    lists do not stack). A module-level class, so subproc and Ray workers can pickle it.

    Shaping (``shaping=True``): ``r' = r + Phi(s') - Phi(s)`` with ``Phi(s) = -max`` over lanes of the
    observed time until the lane frees (ms; 0 at the end). Every op's effect on the queues shows in the
    step that places it, instead of at the episode's end. With the trainer's discount ``gamma`` the term is
    ``gamma * Phi(s') - Phi(s)``, so the discounted return changes by the constant ``-Phi(s_0)`` only and the
    optimal policy is unchanged (Ng, Harada and Russell, 1999).
    """

    def __init__(self, env: gym.Env, scale: float, shaping: bool = False, gamma: float = 1.0) -> None:
        super().__init__(env)
        self.scale = float(scale)
        self.shaping = bool(shaping)
        self.gamma = float(gamma)
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
            reward += self.gamma * phi - self._phi
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
             shaping: bool = False, gamma: float = 1.0) -> gym.Env:
    from sparoa_env.envs import require_sparoa_id  # registers the ids, also in a fresh worker process

    env = gym.make(require_sparoa_id(env_id), **env_kwargs)
    return ScaledReward(env, reward_scale, shaping, gamma) if reward_scale is not None else env


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


def check_run_dir(out: str | os.PathLike, force: bool) -> Path:
    """``out`` as a Path, or FileExistsError when it is a file, or a non-empty directory without ``force``.
    Changes nothing: call it before any other check, and :func:`prepare_run_dir` after them all."""
    run_dir = Path(out)
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"--out {run_dir} is a file, not a directory")
    if run_dir.exists() and any(run_dir.iterdir()) and not force:
        raise FileExistsError(f"run directory {run_dir} exists and is not empty; pass --force to overwrite it")
    return run_dir


def prepare_run_dir(out: str | os.PathLike, force: bool, files: Sequence[str] | None = None) -> Path:
    """Create ``out``; a non-empty one is refused unless ``force``, which removes only ``files`` (default:
    what a training run writes), so nothing else a user keeps there is lost."""
    run_dir = check_run_dir(out, force)
    if run_dir.exists() and any(run_dir.iterdir()):
        if files is None:
            files = (POLICY_FILE, LAST_POLICY_FILE, BC_POLICY_FILE, CONFIG_FILE, GRAPH_FILE, "tb")
        for name in files:
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


def demonstration_settings(env: gym.Env, env_kwargs: dict[str, Any], variants: bool) -> list[tuple[str, str | None]]:
    """(background, power-mode override) pairs for the demonstration episodes: the training env's own first;
    with ``variants``, also no background load (if it has some) and the profile's other power modes (if it
    has a fixed one), the states the scenario suite meets."""
    u = env.unwrapped
    bg = env_kwargs.get("background", "none")
    fixed_mode = u.power_mode in u.mode_names
    own = (bg if isinstance(bg, str) else json.dumps(bg), u.power_mode if fixed_mode else None)
    if not variants:
        return [own]
    bgs = [own[0]] + (["none"] if own[0] != "none" else [])
    modes = [own[1]] + ([m for m in u.mode_names if m != own[1]] if fixed_mode else [])
    return [own] + [(b, m) for b in bgs for m in modes if (b, m) != own]


def demonstrations(env_id: str, env_kwargs: dict[str, Any], episodes: int, seed: int,
                   flip_prob: float = 0.1, variants: bool = False, expert: str = "state",
                   actor: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Observations and lanes from episodes of an oracle-derived expert, with a share ``flip_prob`` of
    decisions flipped to a random lane so that the states near the expert's are covered too (the label
    stays the expert's lane). ``expert="state"`` (default): :func:`agents.oracle.state_expert`, which
    follows at each decision the DP plan of the linearised graph for the *observed* power mode and
    background shares (latency, or latency + ``energy_weight`` x energy when the env has one), so the
    actor learns state-dependent placement; ``"plan"``: the static plan of :func:`agents.oracle.chain_dp`
    on :func:`linearised` for the episode's initial mode (no load), the earlier default. With
    ``variants``, half of the episodes run in the training env and the rest cycle over
    :func:`demonstration_settings` (other power modes, no load). With ``actor`` (a numpy runner,
    :func:`agents.policy.runner_from_state_dict`) the episodes follow the actor instead and only the
    labels come from the expert (DAgger: the states the cloned actor actually reaches)."""
    from .oracle import chain_dp, state_expert

    if expert not in ("state", "plan"):
        raise ValueError(f"demo expert must be 'state' or 'plan', got {expert!r}")

    base = make_env(env_id, env_kwargs)
    settings = demonstration_settings(base, env_kwargs, variants)
    envs: dict[str, gym.Env] = {}
    plans: dict[str, np.ndarray] = {}
    rng = np.random.default_rng([seed, 0xDE70])
    obs_l, lane_l = [], []
    chain = linearised(base.unwrapped.graph)
    n = len(base.unwrapped.graph)
    own_eps = episodes if len(settings) == 1 else max(1, episodes // 2)
    sexp = state_expert(base) if expert == "state" else None  # one plan cache for every setting
    for ep in range(episodes):
        bg, mode_override = settings[0] if ep < own_eps else settings[1 + (ep - own_eps) % (len(settings) - 1)]
        if bg not in envs:
            envs[bg] = base if bg == settings[0][0] else make_env(env_id, {**env_kwargs, "background": bg})
        env = envs[bg]
        u = env.unwrapped
        ep_seed = seed * 7919 + ep
        obs, info = env.reset(seed=ep_seed, options={"power_mode": mode_override} if mode_override else None)
        mode = info.get("power_mode") or u.mode_names[0]
        if sexp is not None:
            sexp.reset(u, info, ep_seed)
        elif mode not in plans:
            plans[mode] = chain_dp(chain, u.cost_model, mode).lanes
        k = 0
        while True:
            label = u.lane_of(sexp.act(obs)) if sexp is not None else int(plans[mode][k % n])
            lane = u.lane_of(actor.act(obs)) if actor is not None else label
            lane = int(rng.integers(u.n_lanes)) if rng.random() < flip_prob else lane
            obs_l.append(obs)
            lane_l.append(label)  # the label is the expert's lane; the flip only moves the state
            obs, _, term, trunc, _ = env.step(u.score_of(lane))
            k += 1
            if term or trunc:
                break
    for env in envs.values():
        env.close()
    base.close()
    return np.asarray(obs_l, dtype=np.float32), np.asarray(lane_l, dtype=np.int64)


def behaviour_clone(actor: Any, obs: np.ndarray, lanes: np.ndarray, score_of: Callable[[int], np.ndarray],
                    steps: int, batch_size: int, seed: int, lr: float = 3e-3, cosine: bool = False) -> float:
    """Fit the actor's mean head to the demonstrated lanes (MSE in pre-tanh space towards
    ``atanh(0.9 * score)``; Adam, learning rate annealed to 0 on a cosine when ``cosine``); returns the share
    of demonstrated decisions the deterministic actor matches."""
    import torch

    targets = np.stack([np.arctanh(0.9 * np.clip(score_of(int(k)), -1, 1)) for k in range(int(lanes.max()) + 1)])
    y = torch.as_tensor(targets[lanes], dtype=torch.float32)
    x = torch.as_tensor(obs)
    opt = torch.optim.Adam(actor.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1)) if cosine else None
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=g)
        (mu, _), _ = actor(x[idx])
        loss = torch.nn.functional.mse_loss(mu, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
    with torch.no_grad():
        (mu, _), _ = actor(x)
    return float((torch.sign(mu) == torch.sign(y)).float().mean())


# ------------------------------------------------------------------------------------------------ training
def train(args: Args) -> dict[str, Any]:
    """Clone, then fine-tune with SAC; write the run directory; return the saved config (with timings).

    The loop (Tianshou's collector, replay buffer and ``SAC.update``; our own epochs so that the test is the
    deployed numpy actor on the raw env, see :mod:`agents.finetune`): warm-up collection with the cloned
    stochastic actor, then rounds of ``step_per_collect`` env steps and ``update_per_step`` gradient steps
    per env step (the first ``critic_warmup`` of them train only the critics); every ``epoch_steps`` env
    steps a test on the same held-out seeds, keeping the best actor (the cloned one is tested first).
    """
    import torch
    from torch.utils.tensorboard import SummaryWriter
    from tianshou.algorithm.modelfree.sac import AutoAlpha, SACPolicy
    from tianshou.algorithm.optim import AdamOptimizerFactory
    from tianshou.data import Collector, CollectStats, VectorReplayBuffer
    from tianshou.utils.net.common import Net
    from tianshou.utils.net.continuous import ContinuousCritic
    from tianshou.utils.torch_utils import policy_within_training_step, torch_train_mode

    from .finetune import make_anchored_sac, test_actor

    check_run_dir(args.out, args.force)
    # bad ids / kwargs raise the env's own error here, before the run directory is touched (a typo with
    # --force must not cost the run that is there)
    probe = make_env(args.env_id, args.env_kwargs)
    run_dir = prepare_run_dir(args.out, args.force)
    name = run_name(args)
    env_kwargs = resolve_env_kwargs(args.env_kwargs, run_dir)

    # --- seeding
    torch.set_num_threads(args.torch_threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # tianshou's replay sampling draws from numpy's global generator
    scale = auto_reward_scale(probe) if args.reward_scale == "auto" else float(args.reward_scale)
    obs_shape, act_shape = probe.observation_space.shape, probe.action_space.shape
    action_space = probe.action_space
    score_of = probe.unwrapped.score_of

    def env_fn() -> gym.Env:
        return make_env(args.env_id, env_kwargs, scale, args.shaping, args.gamma)

    t0 = time.perf_counter()
    train_envs = vector_env(args.vector, [env_fn] * args.workers)
    train_envs.seed([args.seed * 1000 + k for k in range(args.workers)])
    test_seeds = [100_000 + args.seed * 1000 + k for k in range(args.test_episodes)]

    config: dict[str, Any] = {
        "format": "sparoa-sac-policy/1", "run_name": name, "algorithm": "tianshou.algorithm.SAC",
        "env_id": args.env_id, "env_kwargs": env_kwargs, "obs_shape": list(obs_shape),
        "action_shape": list(act_shape), "hidden_sizes": list(args.hidden_sizes), "reward_scale": scale,
        "args": {**args.to_dict(), "env_kwargs": env_kwargs}, "policy_file": POLICY_FILE,
    }

    # --- behaviour cloning
    actor = build_actor(obs_shape, act_shape, args.hidden_sizes)
    bc_info: dict[str, Any] = {}
    test_env = make_env(args.env_id, env_kwargs) if args.test_episodes > 0 else None
    if args.pretrain == "oracle":
        from .finetune import test_actor
        from .policy import runner_from_state_dict

        tb = time.perf_counter()
        demo_obs, demo_lanes = demonstrations(args.env_id, env_kwargs, args.demo_episodes, args.seed,
                                              variants=args.demo_variants, expert=args.demo_expert)
        match = behaviour_clone(actor, demo_obs, demo_lanes, score_of, args.bc_steps, args.batch_size, args.seed,
                                lr=args.bc_lr)
        rounds: list[dict[str, Any]] = []
        kept: dict[str, Any] = {"return": -np.inf}

        def score_round(rnd: int, match: float) -> None:
            # keep the best clone of the rounds on the held-out test seeds (the same ones SAC's tests use)
            r = test_actor(actor, config, test_env, test_seeds) if test_env is not None else {"return": 0.0}
            rounds.append({"round": rnd, "match": round(match, 4), **{k: round(v, 4) for k, v in r.items()}})
            if r["return"] > kept["return"] or test_env is None:
                kept.update(r, state={k: v.detach().clone() for k, v in actor.state_dict().items()}, round=rnd,
                            match=match)

        score_round(0, match)
        for rnd in range(args.dagger_rounds):
            # DAgger: the clone's own episodes, labelled by the expert, added to the data; clone again
            runner = runner_from_state_dict({k: v.detach().cpu().numpy() for k, v in actor.state_dict().items()},
                                            {"obs_shape": list(obs_shape), "hidden_sizes": list(args.hidden_sizes)})
            o, l = demonstrations(args.env_id, env_kwargs, args.demo_episodes, args.seed + 7 * (rnd + 1),
                                  variants=args.demo_variants, expert=args.demo_expert, actor=runner)
            demo_obs, demo_lanes = np.concatenate([demo_obs, o]), np.concatenate([demo_lanes, l])
            steps = args.bc_steps // 4 if args.dagger_bc_steps is None else args.dagger_bc_steps
            match = behaviour_clone(actor, demo_obs, demo_lanes, score_of, steps, args.batch_size,
                                    args.seed + rnd + 1, lr=args.bc_lr)
            score_round(rnd + 1, match)
        actor.load_state_dict(kept["state"])
        bc_info = {"demo_decisions": int(len(demo_obs)), "bc_steps": args.bc_steps, "bc_match": round(kept["match"], 4),
                   "demo_expert": args.demo_expert, "dagger_rounds": args.dagger_rounds, "bc_rounds": rounds,
                   "bc_kept_round": kept["round"], "bc_wall_s": round(time.perf_counter() - tb, 2)}
        torch.save(actor.state_dict(), run_dir / BC_POLICY_FILE)

    # --- networks and algorithm (shared/STACK.md call sequence, SAC subclassed in agents.finetune)
    def critic() -> ContinuousCritic:
        return ContinuousCritic(preprocess_net=Net(state_shape=obs_shape, action_shape=act_shape,
                                                   hidden_sizes=list(args.hidden_sizes), concat=True))

    alpha: Any = float(args.init_alpha)
    if args.auto_alpha:
        target = -float(np.prod(act_shape)) if args.target_entropy is None else float(args.target_entropy)
        alpha = AutoAlpha(target_entropy=target, log_alpha=float(np.log(args.init_alpha)),
                          optim=AdamOptimizerFactory(lr=args.alpha_lr))
    anchored = args.pretrain == "oracle"
    algo = make_anchored_sac(
        policy=SACPolicy(actor=actor, action_space=action_space),
        policy_optim=AdamOptimizerFactory(lr=args.actor_lr),
        critic=critic(), critic_optim=AdamOptimizerFactory(lr=args.critic_lr),
        critic2=critic(), critic2_optim=AdamOptimizerFactory(lr=args.critic_lr),
        tau=args.tau, gamma=args.gamma, alpha=alpha, n_step_return_horizon=args.n_step,
        anchor=actor if anchored else None, bc_weight=args.bc_weight if anchored else 0.0,
        bc_final=args.bc_final if anchored else 0.0, bc_decay=args.bc_decay,
        critic_warmup=args.critic_warmup)
    buf = VectorReplayBuffer(total_size=args.buffer_size, buffer_num=args.workers)
    train_c = Collector[CollectStats](algo, train_envs, buf, exploration_noise=True)

    writer = SummaryWriter(str(run_dir / "tb" / name))
    writer.add_text("args", json.dumps(args.to_dict(), default=str))
    tests: list[dict[str, Any]] = []
    best: dict[str, Any] = {"return": -np.inf, "env_step": None}

    def run_test(env_step: int) -> None:
        if test_env is None:
            return
        r = test_actor(actor, config, test_env, test_seeds)
        tests.append({"env_step": env_step, "gradient_steps": algo.n_updates, **{k: round(v, 4) for k, v in r.items()}})
        for k, v in r.items():
            writer.add_scalar(f"test/{k}", v, env_step)
        if r["return"] > best["return"]:
            best.update(r, env_step=env_step)
            torch.save(actor.state_dict(), run_dir / POLICY_FILE)
        if args.progress:
            print(f"  test @ {env_step:>7} env steps, {algo.n_updates:>6} grad steps: return {r['return']:9.3f}  "
                  f"latency {r['latency_ms']:.4f} ms  energy {r['energy_mj']:.2f} mJ  (best @ {best['env_step']})",
                  flush=True)

    run_test(0)  # the starting actor (cloned, or random for --pretrain none)
    warm = min(args.start_steps, args.total_steps)
    train_c.reset()
    with policy_within_training_step(algo.policy), torch_train_mode(algo.policy, False):
        if warm > 0:
            # after behaviour cloning, warm up with the (stochastic) cloned actor rather than uniform noise
            train_c.collect(n_step=warm, random=not anchored)
    env_step, next_test, next_log, debt = warm, warm + args.epoch_steps, warm, 0.0
    t_update = 0.0
    while env_step < args.total_steps:
        n = min(args.step_per_collect, args.total_steps - env_step)
        with policy_within_training_step(algo.policy), torch_train_mode(algo.policy, False):
            st = train_c.collect(n_step=n)
        env_step += st.n_collected_steps
        debt += args.update_per_step * st.n_collected_steps
        tu = time.perf_counter()
        stat = None
        with policy_within_training_step(algo.policy):
            while debt >= 1.0:
                stat = algo.update(buffer=buf, sample_size=args.batch_size)
                debt -= 1.0
        t_update += time.perf_counter() - tu
        if stat is not None and env_step >= next_log:
            next_log += 1000
            for k in ("actor_loss", "critic1_loss", "critic2_loss", "alpha"):
                v = getattr(stat, k, None)
                if v is not None:
                    writer.add_scalar(f"train/{k}", v, env_step)
            writer.add_scalar("train/bc_weight", algo.current_bc_weight(), env_step)
        if env_step >= next_test or env_step >= args.total_steps:
            run_test(env_step)
            next_test += args.epoch_steps
    wall = time.perf_counter() - t0
    torch.save(actor.state_dict(), run_dir / LAST_POLICY_FILE)
    if best["env_step"] is None:  # no test: keep the last actor
        torch.save(actor.state_dict(), run_dir / POLICY_FILE)
    config["training"] = {
        "wall_s": round(wall, 2), "env_steps": int(env_step), "gradient_steps": int(algo.n_updates),
        "actor_updates": int(algo.n_actor_updates), "update_wall_s": round(t_update, 2),
        "test_seeds": test_seeds, "tests": tests,
        "best_test_return": None if best["env_step"] is None else float(best["return"]),
        "best_test_latency_ms": None if best["env_step"] is None else float(best["latency_ms"]),
        "best_at_env_step": best["env_step"],
        "kept": ("best held-out test return (policy.pt; env step 0 = the starting actor); the last actor is "
                 "policy_last.pt" if best["env_step"] is not None else "last"),
        "torch_threads": args.torch_threads, "workers": args.workers, "vector": args.vector, **bc_info,
    }
    (run_dir / CONFIG_FILE).write_text(json.dumps(config, indent=1, default=str) + "\n")
    writer.close()
    train_envs.close()
    probe.close()
    if test_env is not None:
        test_env.close()
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train SAC on a SparOA environment")
    add_arguments(parser)
    cfg = train(args_from_namespace(parser.parse_args(argv)))
    print(json.dumps({"out": cfg["args"]["out"], "training": cfg["training"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
