"""Load a trained SAC placement policy for inference.

A run directory (written by :func:`agents.train.train`) holds ``policy.pt`` (the actor's ``state_dict``)
and ``config.json`` (shapes, hidden sizes, env id and kwargs). :func:`load_policy` reads the weights
with ``torch.load(..., weights_only=True)`` (plain tensors, no pickled code) and turns the actor into a
numpy forward pass: at evaluation SAC acts deterministically, ``action = tanh(mu(obs))`` (the mode of
the squashed Gaussian, what Tianshou's ``SACPolicy(deterministic_eval=True)`` returns), so the sigma
head is not needed. One decision is a few small matrix-vector products: microseconds, no torch call.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SACPolicyRunner", "load_policy", "runner_from_state_dict", "load_config", "load_actor", "decision_time_us"]


def load_config(run_dir: str | Path) -> dict[str, Any]:
    d = Path(run_dir)
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{d} is not a trained policy directory: {cfg_path} is missing "
                                f"(train one with `sparoa train --out {d}`)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{cfg_path} is not valid JSON ({e})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != "sparoa-sac-policy/1":
        cfg = cfg if isinstance(cfg, dict) else {}
        raise ValueError(f"{cfg_path}: unknown policy format {cfg.get('format')!r} (expected 'sparoa-sac-policy/1')")
    return cfg


def _state_dict(run_dir: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    try:
        import torch
    except ImportError as e:  # pragma: no cover
        raise ImportError("loading a policy needs torch: pip install 'sparoa-env[agents]'") from e
    path = run_dir / cfg.get("policy_file", "policy.pt")
    if not path.is_file():
        raise FileNotFoundError(f"policy weights not found: {path}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (torch raises several types for a damaged file)
        raise ValueError(f"{path} is not a readable policy state_dict ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(sd, dict):
        raise ValueError(f"{path} holds a {type(sd).__name__}, not a policy state_dict")
    return sd


def load_actor(run_dir: str | Path):
    """The Tianshou actor module with the trained weights (for checks against the numpy forward)."""
    from .train import build_actor

    d = Path(run_dir)
    cfg = load_config(d)
    actor = build_actor(cfg["obs_shape"], cfg["action_shape"], cfg["hidden_sizes"])
    actor.load_state_dict(_state_dict(d, cfg))
    actor.eval()
    return actor


class SACPolicyRunner:
    """The deterministic SAC actor as numpy: ReLU MLP, then ``tanh`` of the mean head."""

    name = "sac"

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]], mu: tuple[np.ndarray, np.ndarray],
                 config: dict[str, Any]) -> None:
        # weights stored transposed and float64 -> float32 contiguous: obs @ W is the fastest numpy path
        self._layers = [(np.ascontiguousarray(w.T, dtype=np.float32), b.astype(np.float32)) for w, b in layers]
        self._mu = (np.ascontiguousarray(mu[0].T, dtype=np.float32), mu[1].astype(np.float32))
        self.config = config
        self.obs_dim = int(np.prod(config["obs_shape"]))
        self.run_dir: str | None = None

    # the evaluation protocol (agents.baselines.Policy)
    def reset(self, env: Any, info: dict[str, Any], seed: int) -> None:
        n = int(np.prod(env.observation_space.shape))
        if n != self.obs_dim:
            raise ValueError(f"policy {self.run_dir or ''} was trained on observations of size {self.obs_dim}, "
                             f"but this env gives {n} (a profile with another number of processors?)")

    def act(self, obs: np.ndarray) -> np.ndarray:
        h = obs
        for w, b in self._layers:
            h = h @ w
            h += b
            np.maximum(h, 0.0, out=h)
        return np.tanh(h @ self._mu[0] + self._mu[1])

    def act_batch(self, obs_BD: np.ndarray) -> np.ndarray:
        return self.act(np.asarray(obs_BD, dtype=np.float32))


def load_policy(run_dir: str | Path) -> SACPolicyRunner:
    d = Path(run_dir)
    cfg = load_config(d)
    sd = {k: v.detach().cpu().numpy() for k, v in _state_dict(d, cfg).items()}
    try:
        runner = runner_from_state_dict(sd, cfg)
    except ValueError as e:
        raise ValueError(f"{d}: {e}") from None
    runner.run_dir = str(d)
    return runner


def runner_from_state_dict(sd: dict[str, np.ndarray], cfg: dict[str, Any]) -> SACPolicyRunner:
    """The numpy runner from an actor ``state_dict`` (numpy arrays) and a config with ``obs_shape`` and
    ``hidden_sizes`` (what the trainer's held-out test deploys, identical to :func:`load_policy`)."""
    n_hidden = len(cfg["hidden_sizes"])
    layers = []
    for k in range(n_hidden):
        prefix = f"preprocess.model.model.{2 * k}"
        try:
            layers.append((sd[f"{prefix}.weight"], sd[f"{prefix}.bias"]))
        except KeyError:
            raise ValueError(f"policy weights do not match hidden sizes {cfg['hidden_sizes']} "
                             f"(missing {prefix}.weight)") from None
    if "mu.model.0.weight" not in sd or "mu.model.0.bias" not in sd:
        raise ValueError("policy weights have no mean head (mu.model.0.weight / .bias): not a SAC actor state_dict")
    return SACPolicyRunner(layers, (sd["mu.model.0.weight"], sd["mu.model.0.bias"]), cfg)


def decision_time_us(policy: SACPolicyRunner, obs: np.ndarray, repeats: int = 2000) -> float:
    """Median over 5 runs of the mean time of one ``act`` call (microseconds), after a warm-up."""
    obs = np.asarray(obs, dtype=np.float32)
    for _ in range(200):
        policy.act(obs)
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeats):
            policy.act(obs)
        runs.append((time.perf_counter() - t0) / repeats * 1e6)
    return float(np.median(runs))
