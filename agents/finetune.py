"""SAC fine-tuning of a behaviour-cloned actor: critic warm-up, a decaying anchor to the cloned actor, and a
fast held-out test that keeps the best actor.

Why these pieces (docs/agents.md has the measured ablation):

* **Critic warm-up** (``critic_warmup`` gradient steps): right after cloning, the critics are random, so the
  first actor updates follow noise and walk the actor away from a good plan before Q means anything (the
  earlier runs got worse with every epoch). During the warm-up only the two critics (and their targets)
  learn, on transitions of the cloned actor's own stochastic rollouts; the actor and alpha stay fixed.
* **Anchor to the cloned actor** (``bc_weight``, constant by default, or decaying linearly to ``bc_final`` over ``bc_decay`` actor
  updates): the actor loss is SAC's ``alpha * log pi - min(Q1, Q2)`` plus
  ``lambda * (tanh(mu(s)) - tanh(mu_bc(s)))^2`` on the replay states, where ``mu_bc`` is a frozen copy of
  the cloned actor (TD3+BC-style, Fujimoto and Gu 2021, with the cloned actor as the reference rather than
  the buffer's actions, because exploration noise is in the buffer). The reward is scaled to about one unit
  per op, so ``lambda`` reads directly: the actor leaves the cloned lane of a state only where the critics'
  Q slope over the action outweighs ``2 * lambda`` times the distance already moved, i.e. where the critic
  sees a clear gain. Keeping ``bc_final > 0`` keeps the actor near the plan in states the SAC phase never
  visits (other power modes and loads than the training env's).
* **Held-out test** (:func:`test_actor`): the deterministic actor (numpy forward, as deployed) on the same
  seeds every ``epoch_steps`` env steps, scored by the env's *raw* return (minus the sum of request
  latencies minus ``energy_weight`` times energy): the true objective, not the shaped, scaled training
  reward. The cloned actor is tested first (epoch 0), so the kept ``policy.pt`` is fine-tuned only if a
  fine-tuned actor scored better on those seeds.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import gymnasium as gym
import numpy as np

__all__ = ["make_anchored_sac", "test_actor", "linear_schedule"]


def linear_schedule(start: float, end: float, span: int, t: int) -> float:
    """``start`` at ``t = 0``, ``end`` from ``t = span`` on, linear between; ``span == 0`` means no decay
    (``start`` forever), ``span < 0`` means ``end`` at once."""
    if span == 0:
        return float(start)
    if span < 0 or t >= span:
        return float(end)
    return float(start + (end - start) * t / span)


def make_anchored_sac(**kwargs: Any):
    """An :class:`AnchoredSAC` (the class is built lazily so that importing this module does not import
    torch and tianshou)."""
    return _anchored_sac_class()(**kwargs)


_CLASS: Any = None


def _anchored_sac_class():
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    import torch
    from tianshou.algorithm import SAC
    from tianshou.algorithm.modelfree.sac import SACTrainingStats
    from tianshou.utils.conversion import to_optional_float

    class _AnchoredSAC(SAC):
        """Tianshou's SAC with a critic warm-up and an anchor to a frozen reference actor (module docstring).

        ``anchor``: the reference actor (a frozen deep copy is kept) or ``None``; ``bc_weight``,
        ``bc_final``, ``bc_decay``: the anchor's weight over actor updates (:func:`linear_schedule`);
        ``critic_warmup``: gradient steps that update only the critics.
        """

        def __init__(self, *, anchor: Any = None, bc_weight: float = 0.0, bc_final: float = 0.0,
                     bc_decay: int = 0, critic_warmup: int = 0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._anchor = None
            if anchor is not None and (bc_weight > 0 or bc_final > 0):
                self._anchor = copy.deepcopy(anchor).eval()
                for p in self._anchor.parameters():
                    p.requires_grad_(False)
            self.bc_weight, self.bc_final, self.bc_decay = float(bc_weight), float(bc_final), int(bc_decay)
            self.critic_warmup = int(critic_warmup)
            self.n_updates = 0          # every gradient step
            self.n_actor_updates = 0    # the ones that moved the actor

        @property
        def anchored(self) -> bool:
            return self._anchor is not None

        def current_bc_weight(self) -> float:
            if self._anchor is None:
                return 0.0
            return linear_schedule(self.bc_weight, self.bc_final, self.bc_decay, self.n_actor_updates)

        def _update_with_batch(self, batch: Any):  # type: ignore[override]
            td1, critic1_loss = self._minimize_critic_squared_loss(batch, self.critic, self.critic_optim)
            td2, critic2_loss = self._minimize_critic_squared_loss(batch, self.critic2, self.critic2_optim)
            batch.weight = (td1 + td2) / 2.0
            self.n_updates += 1
            if self.n_updates <= self.critic_warmup:
                # critics only: the actor (and alpha) wait until Q has been fitted to the cloned policy's data
                self._update_lagged_network_weights()
                return SACTrainingStats(actor_loss=0.0, critic1_loss=critic1_loss.item(),
                                        critic2_loss=critic2_loss.item(), alpha=to_optional_float(self.alpha.value),
                                        alpha_loss=None)
            obs_result = self.policy(batch)
            act = obs_result.act
            q = torch.min(self.critic(batch.obs, act).flatten(), self.critic2(batch.obs, act).flatten())
            actor_loss = (self.alpha.value * obs_result.log_prob.flatten() - q).mean()
            lam = self.current_bc_weight()
            if lam > 0:
                mu = obs_result.logits[0]
                with torch.no_grad():
                    (mu_ref, _), _ = self._anchor(batch.obs)
                actor_loss = actor_loss + lam * torch.mean((torch.tanh(mu) - torch.tanh(mu_ref)) ** 2)
            self.policy_optim.step(actor_loss)
            self.n_actor_updates += 1
            alpha_loss = self.alpha.update(-obs_result.log_prob.detach())
            self._update_lagged_network_weights()
            return SACTrainingStats(actor_loss=actor_loss.item(), critic1_loss=critic1_loss.item(),
                                    critic2_loss=critic2_loss.item(), alpha=to_optional_float(self.alpha.value),
                                    alpha_loss=to_optional_float(alpha_loss))

    _CLASS = _AnchoredSAC
    return _CLASS


def test_actor(actor: Any, config: dict[str, Any], env: gym.Env, seeds: Sequence[int]) -> dict[str, float]:
    """The deterministic actor (numpy forward, exactly what :func:`agents.policy.load_policy` deploys) on
    ``env`` (the raw env, no reward wrapper) for each seed; returns the mean raw return per episode, the
    mean request latency and the mean energy per inference."""
    from .evaluate import run_episode
    from .policy import runner_from_state_dict

    runner = runner_from_state_dict({k: v.detach().cpu().numpy() for k, v in actor.state_dict().items()}, config)
    u = env.unwrapped
    lat, en, ret = [], [], []
    for s in seeds:
        ep = run_episode(env, runner, int(s))
        lat.extend(ep.latency_ms)
        en.append(ep.energy_mj)
        ret.append(-(sum(ep.latency_ms) + u.energy_weight * ep.energy_mj * len(ep.latency_ms)))
    return {"return": float(np.mean(ret)), "latency_ms": float(np.mean(lat)), "energy_mj": float(np.mean(en))}
