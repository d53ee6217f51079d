"""SparOA's threshold predictor: from a model's operator sequence and the hardware state, the sparsity
and intensity thresholds (rho*, I*) of :func:`sparoa_env.thresholds.threshold_rule` that split its ops
best between the CPU and the GPU.

* :mod:`predictors.dataset`: labelled cases from the simulator (grid search of the rule), Parquet.
* :mod:`predictors.model`: the Transformer-encoder + LSTM network and the pooled-MLP comparator (torch).
* :mod:`predictors.train` / :mod:`predictors.evaluate`: training and regret evaluation.
* :func:`predict_thresholds`: the entry point for the environment's observation and for the
  ``predicted_threshold`` baseline.

``import predictors`` is cheap: torch and pandas are imported only when a function needs them.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

__all__ = ["predict_thresholds", "load_predictor", "shipped_checkpoint", "PredictorUnavailable"]


class PredictorUnavailable(RuntimeError):
    """torch or the checkpoint is missing (callers fall back to the heuristic thresholds)."""


def shipped_checkpoint(arch: str = "transformer_lstm") -> Path:
    """Path stem of the checkpoint shipped in ``sparoa_env/data/predictor`` (``.pt`` + ``.json``)."""
    names = {"transformer_lstm": "threshold_predictor", "pooled_mlp": "pooled_mlp"}
    if arch not in names:
        raise ValueError(f"arch must be one of {sorted(names)}, got {arch!r}")
    return Path(__file__).resolve().parent.parent / "sparoa_env" / "data" / "predictor" / names[arch]


_LOADED: dict[str, Any] = {}


def load_predictor(checkpoint: str | Path | None = None):
    """The :class:`predictors.model.ThresholdPredictor` for a checkpoint stem (default: the shipped
    Transformer-LSTM), loaded once per process. Raises :class:`PredictorUnavailable` without torch or
    without the files."""
    path = Path(checkpoint).with_suffix("") if checkpoint is not None else shipped_checkpoint()
    key = str(path)
    pred = _LOADED.get(key)
    if pred is None:
        try:
            from .model import ThresholdPredictor
        except ImportError as e:
            raise PredictorUnavailable(f"the threshold predictor needs torch ({e}); pip install 'sparoa-env[torch]'") from e
        if not path.with_suffix(".pt").exists() or not path.with_suffix(".json").exists():
            raise PredictorUnavailable(f"no predictor checkpoint at {path}.pt / .json "
                                       "(train one with `sparoa predictor train`)")
        pred = _LOADED[key] = ThresholdPredictor.load(path)
    return pred


def predict_thresholds(graph, profile, mode: str, hw_state: Any = None, *, energy_weight: float = 0.0,
                       checkpoint: str | Path | None = None, fallback: bool = True) -> tuple[float, float]:
    """(rho*, I*) for ``graph`` (an :class:`~sparoa_env.graph.OpGraph`, at its own batch size) on
    ``profile`` (a :class:`~sparoa_env.profile.SocProfile` or a shipped profile name) in power mode ``mode``.

    ``hw_state`` is the background load the model shares the SoC with: ``None`` (none), a preset name
    (``"light"``, ``"heavy"``, ``"dynamic"``), a dict of :class:`sparoa_env.sim.background.BackgroundSpec`
    fields or a ``BackgroundSpec``. ``energy_weight`` is the env's weight of energy (mJ) against latency
    (ms) in the objective the thresholds were searched for.

    Uses the shipped Transformer-LSTM checkpoint (or ``checkpoint``). When torch or the checkpoint is
    unavailable and ``fallback`` is true, warns once and returns
    :func:`sparoa_env.thresholds.heuristic_thresholds` (the cost-model fit) instead; with
    ``fallback=False`` it raises :class:`PredictorUnavailable`.
    """
    from sparoa_env.profile import SocProfile, load_profile

    prof = profile if isinstance(profile, SocProfile) else load_profile(profile)
    try:
        pred = load_predictor(checkpoint)
    except PredictorUnavailable as e:
        if not fallback:
            raise
        _warn_once(f"predicted thresholds unavailable ({e}); using the heuristic thresholds instead")
        from sparoa_env.costmodel import CostModel
        from sparoa_env.thresholds import heuristic_thresholds

        return heuristic_thresholds(graph, CostModel(prof).op_costs(graph, mode).nominal_ms)
    return pred.predict(graph, prof, mode, hw_state, energy_weight=energy_weight)


_WARNED: set[str] = set()


def _warn_once(msg: str) -> None:
    if msg not in _WARNED:
        _WARNED.add(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
