"""Training arguments and their command line, kept free of heavy imports so that ``sparoa --help`` and
``sparoa train --help`` stay fast (gymnasium, torch and tianshou load only when a run starts)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

__all__ = ["Args", "VECTOR_KINDS", "parse_set", "add_arguments", "args_from_namespace"]

VECTOR_KINDS = ("dummy", "subproc", "ray")


@dataclass(frozen=True)
class Args:
    """Every knob of a training run. Defaults are the demo's (mobilenet_v3_small, ~3-5 min on 2 cores)."""

    env_id: str = "SparOA-Orin-v0"
    env_kwargs: dict = field(default_factory=dict)
    exp_name: str = "sac"
    seed: int = 0
    total_steps: int = 30_000         # environment steps
    hidden_sizes: tuple[int, ...] = (128, 128)
    actor_lr: float = 3e-5            # small: SAC fine-tunes the behaviour-cloned actor
    critic_lr: float = 1e-3
    alpha_lr: float = 3e-4
    init_alpha: float = 0.001         # entropy coefficient (fixed by default, see auto_alpha)
    auto_alpha: bool = False          # auto-tuning drove alpha up and the means towards the lane boundary
    gamma: float = 1.0
    tau: float = 0.005
    reward_scale: float | str = "auto"
    shaping: bool = True              # potential-based shaping (ScaledReward); the optimum is unchanged
    pretrain: str = "oracle"          # "oracle": behaviour-clone the actor from oracle-plan demonstrations
                                      # first (agents.train.demonstrations); "none": SAC from scratch
    demo_episodes: int = 96
    demo_variants: bool = True        # demonstrations also in the profile's other power modes and without
                                      # background load (the scenario suite's states), not only the training env's
    demo_expert: str = "state"        # "state": the per-state DP expert (agents.oracle.state_expert, reads the
                                      # observed load); "plan": the static chain-DP plan of the initial mode
    dagger_rounds: int = 2            # DAgger rounds after cloning: the clone's own episodes labelled by the expert
    dagger_bc_steps: int | None = None  # cloning steps after each DAgger round (None: bc_steps // 4)
    bc_steps: int = 20_000
    bc_lr: float = 3e-3               # behaviour cloning's Adam learning rate (constant)
    # --- SAC fine-tuning of the cloned actor (agents/finetune.py; docs/agents.md has the ablation)
    critic_warmup: int = 3_000        # gradient steps that train only the critics, on the cloned actor's data
    bc_weight: float = 2.0            # anchor to the frozen cloned actor: lambda * (tanh mu - tanh mu_bc)^2 ...
    bc_final: float = 1.0             # ... decaying linearly to this ...
    bc_decay: int = 0                 # ... over this many actor updates (0: no decay, bc_weight throughout)
    n_step: int = 32                  # n-step TD targets (gamma = 1, ~230-step episodes)
    target_entropy: float | None = None  # auto-alpha target; None: -dim(A) = -1
    buffer_size: int = 100_000
    batch_size: int = 256
    start_steps: int = 2_000          # uniformly random actions before learning starts
    step_per_collect: int = 40        # env steps between update rounds (summed over the workers)
    update_per_step: float = 0.25     # gradient steps per env step
    epoch_steps: int = 5_000          # env steps per epoch (one test and one log line per epoch)
    test_episodes: int = 10           # per epoch, the same held-out seeds each time; 0 to skip
    workers: int = 8                  # training envs (a batched forward pass serves them all)
    vector: str = "dummy"             # dummy | subproc | ray
    torch_threads: int = 1
    out: str = "runs/sac"
    force: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.bc_weight < 0 or self.bc_final < 0 or self.critic_warmup < 0 or self.n_step < 1:
            raise ValueError("bc_weight, bc_final and critic_warmup must be >= 0 and n_step >= 1")
        if self.pretrain not in ("oracle", "none"):
            raise ValueError(f"pretrain must be 'oracle' or 'none', got {self.pretrain!r}")
        if self.dagger_rounds < 0 or (self.dagger_bc_steps is not None and self.dagger_bc_steps < 0):
            raise ValueError("dagger_rounds and dagger_bc_steps must be >= 0")
        if self.demo_expert not in ("state", "plan"):
            raise ValueError(f"demo_expert must be 'state' or 'plan', got {self.demo_expert!r}")
        if self.vector not in VECTOR_KINDS:
            raise ValueError(f"vector must be one of {', '.join(VECTOR_KINDS)}, got {self.vector!r}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers!r}")
        if self.total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {self.total_steps!r}")
        if self.torch_threads < 1:
            raise ValueError(f"torch_threads must be >= 1, got {self.torch_threads!r}")
        if not (isinstance(self.reward_scale, (int, float)) and self.reward_scale > 0) and self.reward_scale != "auto":
            raise ValueError(f"reward_scale must be a positive number or 'auto', got {self.reward_scale!r}")
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Args":
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - valid
        if unknown:
            raise ValueError(f"unknown training argument(s) {sorted(unknown)}; valid: {', '.join(sorted(valid))}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        return d


# ------------------------------------------------------------------------------------------------ helpers
def parse_set(items: Sequence[str] | None) -> dict[str, Any]:
    """``["background=dynamic", "requests={\\"n\\": 2}", "energy_weight=0.1"]`` -> kwargs; values are JSON
    when they parse as JSON (numbers, dicts, lists, true/false/null), strings otherwise."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = Args()
    parser.add_argument("--env", default=d.env_id, help=f"a registered id (default {d.env_id})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an env kwarg (repeatable); VALUE is JSON when it parses, else a string")
    parser.add_argument("--steps", type=int, default=d.total_steps, help=f"environment steps (default {d.total_steps})")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--out", default=d.out, help="run directory (refused if it exists, unless --force)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing run directory")
    parser.add_argument("--vector", choices=VECTOR_KINDS, default=d.vector, help="vector env (default dummy)")
    parser.add_argument("--workers", type=int, default=d.workers, help=f"training envs (default {d.workers})")
    parser.add_argument("--exp-name", default=d.exp_name)
    parser.add_argument("--hidden", default=",".join(map(str, d.hidden_sizes)), help="hidden sizes, e.g. 64,64")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--update-per-step", type=float, default=d.update_per_step)
    parser.add_argument("--step-per-collect", type=int, default=d.step_per_collect)
    parser.add_argument("--start-steps", type=int, default=d.start_steps)
    parser.add_argument("--epoch-steps", type=int, default=d.epoch_steps)
    parser.add_argument("--test-episodes", type=int, default=d.test_episodes)
    parser.add_argument("--gamma", type=float, default=d.gamma)
    parser.add_argument("--reward-scale", default=str(d.reward_scale), help="a number or 'auto'")
    parser.add_argument("--no-shaping", action="store_true", help="train on the raw (scaled) reward")
    parser.add_argument("--pretrain", choices=("oracle", "none"), default=d.pretrain,
                        help="'oracle': behaviour-clone the actor from oracle-plan demonstrations before SAC")
    parser.add_argument("--init-alpha", type=float, default=d.init_alpha, help="initial entropy coefficient")
    parser.add_argument("--critic-warmup", type=int, default=d.critic_warmup,
                        help=f"gradient steps training only the critics before the actor moves (default {d.critic_warmup})")
    parser.add_argument("--bc-weight", type=float, default=d.bc_weight,
                        help=f"weight of the anchor to the cloned actor in the actor loss (default {d.bc_weight}; 0: plain SAC)")
    parser.add_argument("--bc-final", type=float, default=d.bc_final, help=f"anchor weight after the decay (default {d.bc_final})")
    parser.add_argument("--bc-decay", type=int, default=d.bc_decay,
                        help=f"actor updates over which the anchor weight decays linearly (default {d.bc_decay}; 0: constant)")
    parser.add_argument("--n-step", type=int, default=d.n_step, help=f"n-step TD targets (default {d.n_step})")
    parser.add_argument("--actor-lr", type=float, default=d.actor_lr)
    parser.add_argument("--critic-lr", type=float, default=d.critic_lr)
    parser.add_argument("--target-entropy", type=float, default=None, help="auto-alpha's target (default -dim(A))")
    parser.add_argument("--auto-alpha", action="store_true", help="auto-tune alpha (default: fixed at --init-alpha)")
    parser.add_argument("--bc-steps", type=int, default=d.bc_steps, help=f"behaviour-cloning steps (default {d.bc_steps})")
    parser.add_argument("--bc-lr", type=float, default=d.bc_lr, help=f"behaviour-cloning learning rate (default {d.bc_lr})")
    parser.add_argument("--demo-episodes", type=int, default=d.demo_episodes)
    parser.add_argument("--demo-expert", choices=("state", "plan"), default=d.demo_expert,
                        help="who the actor is cloned from: 'state' (DP plan for the observed mode and load, "
                             "default) or 'plan' (the static DP plan of the initial mode)")
    parser.add_argument("--dagger-rounds", type=int, default=d.dagger_rounds,
                        help=f"DAgger rounds after cloning (default {d.dagger_rounds}; 0: plain cloning)")
    parser.add_argument("--dagger-bc-steps", type=int, default=None, help="cloning steps after each DAgger round (default: --bc-steps / 4)")
    parser.add_argument("--no-demo-variants", action="store_true",
                        help="demonstrations only in the training env (not also its other power modes / no load)")
    parser.add_argument("--torch-threads", type=int, default=d.torch_threads)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(h) for h in text.split(",") if h.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise ValueError(f"--hidden expects positive layer widths separated by commas (e.g. 64,64), got {text!r}")
    return sizes


def args_from_namespace(ns: argparse.Namespace) -> Args:
    rs = ns.reward_scale
    try:
        rs = rs if rs == "auto" else float(rs)
    except ValueError:
        raise ValueError(f"--reward-scale expects a positive number or 'auto', got {rs!r}") from None
    if ns.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {ns.seed}")
    return Args(env_id=ns.env, env_kwargs=parse_set(ns.set), exp_name=ns.exp_name, seed=ns.seed,
                total_steps=ns.steps, hidden_sizes=_hidden(ns.hidden),
                batch_size=ns.batch_size, update_per_step=ns.update_per_step, step_per_collect=ns.step_per_collect,
                start_steps=ns.start_steps, epoch_steps=ns.epoch_steps, test_episodes=ns.test_episodes,
                gamma=ns.gamma, reward_scale=rs, workers=ns.workers,
                vector=ns.vector, out=ns.out, force=ns.force, progress=not ns.no_progress,
                shaping=not ns.no_shaping, torch_threads=ns.torch_threads, pretrain=ns.pretrain,
                init_alpha=ns.init_alpha, critic_warmup=ns.critic_warmup, bc_weight=ns.bc_weight,
                bc_final=ns.bc_final, bc_decay=ns.bc_decay, n_step=ns.n_step, actor_lr=ns.actor_lr,
                critic_lr=ns.critic_lr, target_entropy=ns.target_entropy, auto_alpha=ns.auto_alpha,
                bc_steps=ns.bc_steps, bc_lr=ns.bc_lr, demo_episodes=ns.demo_episodes,
                demo_expert=getattr(ns, "demo_expert", "state"), dagger_rounds=getattr(ns, "dagger_rounds", 2),
                dagger_bc_steps=getattr(ns, "dagger_bc_steps", None), demo_variants=not ns.no_demo_variants)


