"""SparOAEnv: place the operators of a DNN on the processors of an edge SoC, one operator per step."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ..backend import HW_STATE_FIELDS, Backend, Decision, RequestStream, make_backend
from ..graph import OpGraph
from .features import N_STATIC, STATIC_COLUMNS, static_op_features

__all__ = ["SparOAEnv", "ENV_KWARGS"]
assert len(HW_STATE_FIELDS) == 6, "SparOAEnv._observe unpacks six hardware-state fields per processor"

#: the environment's own keyword arguments; anything else is a backend option (checked by the backend)
ENV_KWARGS = ("model", "backend", "profile", "power_mode", "background", "energy_weight", "requests",
              "batch_size", "thresholds", "render_mode")
_TIME_SCALE = 5.0  # log10(1 + ms) / 5: 1 us .. 100 s maps into [0, 1]
OBS_HIGH = 10.0    # every entry is scaled to about [0, 2]; values are clipped to [0, OBS_HIGH]


class SparOAEnv(gym.Env):
    """
    ## Description

    SparOA's scheduling problem as a Gymnasium environment. A DNN (an :class:`~sparoa_env.graph.OpGraph`
    of ATen operators, each with its sparsity rho and arithmetic intensity I) serves one or more inference
    requests on an edge SoC. The backend (the SimPy SoC model, ``backend="sim"``, or real torch execution,
    ``backend="hw"``) runs until an operator can be dispatched, and the agent decides which processor
    runs it. One step places one operator; ops are asked in topological order, requests in arrival
    order, and the dispatcher never waits for execution (as an asynchronous CUDA stream does), so
    several ops may be asked at nearly the same time while earlier ones still run.

    ## Action Space

    ``Box(-1, 1, (1,), float32)``: a placement score. With two processors, a score ``< 0`` runs the op on
    the CPU (lane 0) and ``>= 0`` on the GPU (lane 1). With ``P`` processors, ``[-1, 1]`` is cut into ``P``
    equal bins in lane order (the last bin closed). NaN, infinite or wrongly shaped actions raise
    ``ValueError``; finite values outside ``[-1, 1]`` are clipped.

    ## Observation Space

    ``Box(0, 10, (n_obs,), float32)`` with ``n_obs = 20 + 7 * P + 5`` (39 for two processors, 46 for three). ``log(x)``
    below means ``log10(1 + x)``.

    | index | feature | unit / range |
    |---|---|---|
    | 0 | rho, the op's sparsity | [0, 1] |
    | 1 | weight sparsity | [0, 1] |
    | 2 | input (activation) sparsity | [0, 1] |
    | 3 | log(I) / 3, I = arithmetic intensity | FLOP/byte, ~[0, 1.5] |
    | 4 | log(FLOPs) / 10 | ~[0, 1.2] |
    | 5 | log(bytes in + out + weights) / 9 | ~[0, 1] |
    | 6 | log(elementwise work) / 9 | ~[0, 1] |
    | 7-13 | op category one-hot: conv, matmul, attention, norm, pool, elementwise, other | {0, 1} |
    | 14 | log(cost-model latency on the CPU, us) / 4, current power mode | ~[0, 1.5] |
    | 15 | log(cost-model latency on the fastest accelerator, us) / 4 | ~[0, 1.5] |
    | 16 | rho*, the sparsity threshold | [0, 1] |
    | 17 | log(I*) / 3, the intensity threshold | ~[0, 1.5] |
    | 18 | the threshold rule's verdict: 1 = CPU (rho >= rho* and I <= I*) | {0, 1} |
    | 19 | progress: the op's index / number of ops | [0, 1) |
    | 20 | share of the op's input bytes resident on each processor, P entries | [0, 1] |
    | 20+P .. | per processor, 6 entries each (lane order): utilisation, clock / max clock, available cores / cores, queue length / 16 (capped at 4), log(time until it frees, ms) / 5, background share | see :data:`~sparoa_env.backend.HW_STATE_FIELDS` |
    | -5 | (temperature - ambient) / (throttle start - ambient), 0 when unknown | ~[0, 1.2] |
    | -4 | log(time already spent on this request, ms) / 5 | [0, 1] |
    | -3 | unfinished requests / requests in the episode | [0, 1] |
    | -2 | power-mode index / (modes - 1), in the profile's order | [0, 1] |
    | -1 | 1 when the op's inputs all live on one processor | {0, 1} |

    The thresholds (16-18) come from ``thresholds``: ``"heuristic"`` (default: the cost-model fit of
    :func:`sparoa_env.thresholds.heuristic_thresholds`), ``"predicted"`` (the shipped Transformer-LSTM
    threshold predictor, :func:`predictors.predict_thresholds`, given the power mode, the ``background``
    argument and ``energy_weight``; imports torch on first use; without torch or the checkpoint it warns
    and uses ``"heuristic"``), or a fixed ``(rho*, I*)`` pair. They are computed once per power mode.

    ## Rewards

    ``r_t = -(area_t + energy_weight * energy_t)``, where ``area_t`` is the time (ms) since the previous
    decision multiplied by the number of unfinished requests (exactly: the integral of that number over
    the interval) and ``energy_t`` the SoC energy (mJ) spent in the interval. The last step also collects
    the time until the last request finishes. So the undiscounted return is exactly
    ``-(sum of the requests' end-to-end latencies in ms) - energy_weight * (total energy in mJ)``.

    ## Episode End

    Terminates when every request has completed (one step per op per request). No truncation.

    ## Info

    Every step: ``request``, ``op`` (op name), ``processor`` (name), ``dispatch_ms`` (time of the decision),
    ``transfer_ms`` (hand-off cost this placement incurs for the op's inputs), ``step_energy_mj``,
    ``executed`` (ops that finished during the step: request, op, processor, start_ms, end_ms,
    transfer_ms, energy_mj). At the end also: ``latency_ms`` (list, one per request), ``energy_mj``
    (energy per inference), ``plan`` (op name -> processor for the first request), ``makespan_ms``.

    ## Arguments

    ``gym.make("SparOA-Orin-v0", model="mobilenet_v3_small", backend="sim", profile="orin-agx",
    power_mode=None, background="none", energy_weight=0.0, requests=1, batch_size=1,
    thresholds="heuristic", render_mode=None, **backend_options)``

    * ``model``: a zoo name (``resnet50``, ``mobilenet_v3_small@unstructured-0.7``), a path to an OpGraph
      JSON, ``path/to/file.py:function`` returning ``(module, example_inputs)``, or an ``OpGraph``; left out:
      the hw backend's ``module`` + ``example_inputs`` when given, else ``mobilenet_v3_small``.
    * ``profile``: a shipped profile name or a profile JSON path. ``power_mode``: a mode of the profile
      (default: the profile's ``default_power_mode``, MAXN on orin-agx, 15W on orin-nano), ``"random"``
      (drawn each reset) or ``"switching"`` (random switches during the episode).
    * ``background``: ``"none"``, ``"light"``, ``"heavy"``, ``"dynamic"`` or a dict (see
      :class:`sparoa_env.sim.background.BackgroundSpec`). ``requests``: a count, or
      ``{"n", "interarrival_ms", "poisson"}``.
    * ``backend_options``: passed to the backend (sim: ``thermal``, ``initial_temp_c``, ``mode_dwell_ms``,
      ``record``; hw: ``device_map`` and its own). Unknown ones raise ``ValueError`` listing the valid ones.
    * ``reset(options={"power_mode": ...})`` overrides the power mode for one episode.

    ## Version History

    * v0: initial release.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(self, model: str | OpGraph | None = None, backend: str = "sim", profile: Any = "orin-agx",
                 power_mode: str | None = None, background: Any = "none", energy_weight: float = 0.0,
                 requests: Any = 1, batch_size: int = 1, thresholds: Any = "heuristic",
                 render_mode: str | None = None, **backend_options: Any) -> None:
        from ..costmodel import CostModel
        from ..profile import SocProfile, load_profile

        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(energy_weight, (int, float)) or not math.isfinite(energy_weight) or energy_weight < 0:
            raise ValueError(f"energy_weight must be a finite number >= 0, got {energy_weight!r}")
        self.render_mode = render_mode
        self.energy_weight = float(energy_weight)
        self.profile = profile if isinstance(profile, SocProfile) else load_profile(profile)
        self.cost_model = CostModel(self.profile)
        if model is None:
            # the hw backend's `module` + `example_inputs` name the model themselves; else the default zoo model
            module, inputs = backend_options.get("module"), backend_options.get("example_inputs")
            if module is not None and inputs is not None:
                from ..extract import extract_graph

                model = extract_graph(module, tuple(inputs), name=type(module).__name__)
            else:
                model = "mobilenet_v3_small"
        self.graph = self._load_graph(model, batch_size)
        self.model_spec = model if isinstance(model, str) else self.graph.model
        self.batch_size = batch_size
        self.requests = RequestStream.parse(requests)
        self.processors = tuple(self.profile.processor_names)
        P = self.n_lanes = len(self.processors)
        if P < 2:
            raise ValueError(f"profile {self.profile.name!r} has {P} processor(s); SparOAEnv needs at least two")
        self._thresholds_arg = thresholds
        self._validate_thresholds(thresholds)
        self.mode_names = tuple(self.profile.power_modes)
        if power_mode is None:
            power_mode = self.profile.default_power_mode
        self._mode_pos = {m: k / max(len(self.mode_names) - 1, 1) for k, m in enumerate(self.mode_names)}
        self.backend_name = backend
        self.backend: Backend = make_backend(
            backend, profile=self.profile, model=self.model_spec, batch=batch_size, power_mode=power_mode,
            background=background, requests=self.requests, cost_model=self.cost_model, **backend_options)
        self.power_mode = power_mode
        self.background = background
        self.action_space = spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
        self.n_obs = N_STATIC + P + len(HW_STATE_FIELDS) * P + 5
        self.observation_space = spaces.Box(0.0, OBS_HIGH, (self.n_obs,), dtype=np.float32)
        self._static: dict[str, np.ndarray] = {}
        self._thresholds: dict[str, tuple[float, float]] = {}
        self._decision: Decision | None = None
        self._episode_return = 0.0
        self._last_info: dict[str, Any] = {}
        th = self.profile.thermal
        self._temp_lo, self._temp_span = th.ambient_c, max(th.throttle_start_c - th.ambient_c, 1e-9)

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _load_graph(model: Any, batch_size: int) -> OpGraph:
        if isinstance(model, OpGraph):
            return model if model.batch == batch_size else model.with_batch_scaled(batch_size)
        if not isinstance(model, str):
            raise ValueError(f"model must be a zoo name, an OpGraph JSON path, 'file.py:function' or an OpGraph; got {model!r}")
        from ..modelspec import load_graph

        return load_graph(model, batch_size)

    @staticmethod
    def _validate_thresholds(value: Any) -> None:
        if isinstance(value, str):
            if value not in ("heuristic", "predicted"):
                raise ValueError(f"thresholds must be 'heuristic', 'predicted' or a (rho*, I*) pair, got {value!r}")
            return
        try:
            rho_s, i_s = (float(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(f"thresholds must be 'heuristic', 'predicted' or a (rho*, I*) pair, got {value!r}") from None
        if not (0.0 <= rho_s <= 1.0) or not (i_s >= 0.0) or not math.isfinite(i_s):
            raise ValueError(f"thresholds: rho* must be in [0, 1] and I* >= 0, got {value!r}")

    def thresholds_for(self, mode: str) -> tuple[float, float]:
        """(rho*, I*) used in the observation for a power mode."""
        th = self._thresholds.get(mode)
        if th is None:
            if isinstance(self._thresholds_arg, str) and self._thresholds_arg == "predicted":
                from predictors import predict_thresholds  # lazy: torch only when asked for

                th = predict_thresholds(self.graph, self.profile, mode, self.background, energy_weight=self.energy_weight)
            elif isinstance(self._thresholds_arg, str):
                from ..thresholds import heuristic_thresholds

                th = heuristic_thresholds(self.graph, self.cost_model.op_costs(self.graph, mode).nominal_ms)
            else:
                th = tuple(float(v) for v in self._thresholds_arg)
            self._thresholds[mode] = th
        return th

    def _static_for(self, mode: str) -> np.ndarray:
        s = self._static.get(mode)
        if s is None:
            nominal = self.cost_model.op_costs(self.graph, mode).nominal_ms
            s = self._static[mode] = static_op_features(self.graph, nominal, *self.thresholds_for(mode))
        return s

    # ------------------------------------------------------------------ gym API
    RESET_OPTIONS = ("power_mode",)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if options is not None:
            if not isinstance(options, dict):
                raise ValueError(f"reset options must be a dict, got {options!r}")
            unknown = sorted(set(options) - set(self.RESET_OPTIONS))
            if unknown:
                raise ValueError(f"reset options: unknown key(s) {unknown}; valid: {', '.join(self.RESET_OPTIONS)}")
        super().reset(seed=seed)
        self._decision = self.backend.reset(graph=self.graph, rng=self.np_random, options=options)
        self._episode_return = 0.0
        self._n_records = 0
        self._last_info = {}
        return self._observe(self._decision), {"processors": self.processors, "power_mode": self._decision.power_mode}

    def step(self, action):
        if self._decision is None:
            raise RuntimeError("step() called before reset() or after the episode ended; call reset()")
        lane = self.lane_of(action)
        out = self.backend.place(lane)
        reward = -(out.area_ms + self.energy_weight * out.energy_mj)
        self._episode_return += reward
        info = dict(out.op_info)
        info["step_energy_mj"] = info.pop("energy_mj", out.energy_mj)
        info["executed"] = self._new_records()
        self._decision = out.next
        terminated = out.next is None
        if terminated:
            info.update(out.final or {})
            obs = np.zeros(self.n_obs, dtype=np.float32)
        else:
            obs = self._observe(out.next)
        self._last_info = info
        return obs, float(reward), terminated, False, info

    def lane_of(self, action) -> int:
        a = np.asarray(action, dtype=np.float64)
        if a.shape not in ((1,), ()):
            raise ValueError(f"action must have shape (1,) (a placement score in [-1, 1]), got shape {a.shape}")
        score = float(a.reshape(-1)[0])
        if not math.isfinite(score):
            raise ValueError(f"action must be a finite number, got {score!r}")
        P = self.n_lanes
        if P == 2:
            return 1 if score >= 0.0 else 0
        score = min(max(score, -1.0), 1.0)
        return min(int((score + 1.0) / 2.0 * P), P - 1)

    def score_of(self, lane: int) -> np.ndarray:
        """An action that selects ``lane`` (for scripted policies)."""
        P = self.n_lanes
        if P == 2:
            return np.array([1.0 if lane == 1 else -1.0], dtype=np.float32)
        return np.array([-1.0 + (2.0 * lane + 1.0) / P], dtype=np.float32)

    def _new_records(self) -> list[dict[str, Any]]:
        new = self.backend.timeline(self._n_records)
        self._n_records += len(new)
        return new

    def _observe(self, d: Decision) -> np.ndarray:
        """The observation for a decision (layout in the class docstring); built from plain floats."""
        mode = d.power_mode
        mode_pos = self._mode_pos.get(mode)
        if mode_pos is None:  # a backend that cannot read the power mode
            mode, mode_pos = self.mode_names[0], 0.0
        ib = d.input_bytes_on
        if type(ib) is not list:
            ib = list(ib)
        tot = sum(ib)
        tail = [b / tot for b in ib] if tot > 0 else [0.0] * self.n_lanes
        hw = d.hw_state
        if type(hw) is not list:
            hw = np.asarray(hw).ravel().tolist()
        log10 = math.log10
        for j in range(0, len(hw), 6):  # HW_STATE_FIELDS per lane
            tail += (hw[j], hw[j + 1], hw[j + 2], min(hw[j + 3] / 16.0, 4.0),
                     min(log10(1.0 + max(hw[j + 4], 0.0)) / _TIME_SCALE, OBS_HIGH), hw[j + 5])
        t = d.temperature_c
        tail += (min(max((t - self._temp_lo) / self._temp_span, 0.0), OBS_HIGH) if t == t else 0.0,
                 log10(1.0 + max(d.request_elapsed_ms, 0.0)) / _TIME_SCALE,
                 d.active_requests / self.requests.n,
                 mode_pos,
                 1.0 if tot == 0 or max(ib) == tot else 0.0)
        obs = np.empty(self.n_obs, dtype=np.float32)
        obs[:N_STATIC] = self._static_for(mode)[d.op]
        obs[N_STATIC:] = tail  # every entry is in [0, OBS_HIGH] by construction (no np.clip: it is slow)
        return obs

    # ------------------------------------------------------------------ render
    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi' or 'rgb_array' to gym.make")
            return None
        from .render import gantt_ansi, gantt_rgb

        tl = self.backend.timeline(0)
        if self.render_mode == "ansi":
            return gantt_ansi(tl, self.processors, title=f"{self.graph.model} on {self.profile.name}")
        return gantt_rgb(tl, self.processors, title=f"{self.graph.model} on {self.profile.name}")

    def close(self) -> None:
        self.backend.close()

    # ------------------------------------------------------------------ pickling
    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        sim = getattr(self.backend, "sim", None)
        if sim is not None:  # the replayed backend owns the generator now: share it, as before pickling
            self._np_random = sim.rng

    @property
    def static_columns(self) -> tuple[str, ...]:
        return STATIC_COLUMNS
