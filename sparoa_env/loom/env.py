"""SparseLoomEnv: serve several DNN tasks at once on one SoC, choosing a stitched variant and a processor
pipeline for every request. Torch-free: it reads the shipped tables (:mod:`sparoa_env.loom.catalog`)."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ..sim.background import background_spec
from .catalog import load_catalog, pipelines
from .preloader import FullPreload
from .sim import LoomSimulator
from .workload import draw_requests, reference_latency_ms
from .workload import workload as parse_workload

__all__ = ["SparseLoomEnv", "LOOM_IDS", "register_loom_envs"]

OBS_HIGH = 10.0

#: id -> registration kwargs
LOOM_IDS: dict[str, dict] = {
    "SparseLoom-Orin-v0": {"profile": "orin-agx"},
    "SparseLoom-CoreUltra-v0": {"profile": "intel-core-ultra"},
}


def register_loom_envs() -> None:
    for env_id, kwargs in LOOM_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="sparoa_env.loom.env:SparseLoomEnv", kwargs=kwargs)


def _log(x: float) -> float:
    return math.log10(1.0 + max(x, 0.0))


class SparseLoomEnv(gym.Env):
    """
    ## Description

    SparseLoom's serving problem. Several tasks (by default three small models trained on scikit-learn
    data, with measured accuracy, and ResNet-50, BERT-base and ViT-small with random weights, latency only)
    send requests to one SoC; each task's SLO (a latency bound and, for the small tasks, an accuracy floor)
    changes over time (:mod:`sparoa_env.loom.workload`). At every request arrival the agent picks, for that
    request, a stitched variant from the task's menu (the (accuracy, latency) Pareto front of its ``10 ** 4``
    stitched variants, ``menu_size`` entries) and a pipeline of processors for its 4 blocks. The SimPy SoC
    (:mod:`sparoa_env.loom.sim`: the profile's cost model, FIFO processors shared by all tasks, DRAM
    contention, background load) runs until the next arrival. Latencies are simulated; accuracies are
    measured held-out accuracies.

    ## Action Space

    ``MultiDiscrete([menu_size, n_pipelines])``: the menu entry (0 = fastest, last = most accurate) and the
    pipeline index into :func:`sparoa_env.loom.catalog.pipelines` (``env.unwrapped.placements``: 8 on the
    two-processor Orin, 39 on the three-processor Core Ultra; index 0 runs every block on the CPU).

    ## Observation Space

    ``Box(0, 10, (n_obs,), float32)``, ``n_obs = T + 3 + 4 * P + 2 * menu_size`` (T tasks, P processors);
    ``log(x)`` is ``log10(1 + x)``.

    | index | feature | range |
    |---|---|---|
    | 0 .. T-1 | the request's task, one-hot | {0, 1} |
    | T | latency SLO / the task's reference latency (dense, alone, fastest processor) / 5 | ~[0, 1] |
    | T+1 | accuracy SLO (0 for latency-only tasks) | [0, 1] |
    | T+2 | requests decided so far / requests in the episode | [0, 1] |
    | then per processor (4 each) | blocks waiting or running / 16, log(queued ms) / 3, log(ms until the running block ends) / 3, background share | ~[0, 1] |
    | then menu_size | measured accuracy of each menu entry (0 for latency-only tasks) | [0, 1] |
    | then menu_size | its latency alone on the fastest processor / the latency SLO (clipped at 10) | [0, 10] |

    ## Rewards

    ``-1`` for every request that completes during the step and misses its SLO (latency above the SLO in
    force at its arrival, or accuracy below it). The return is minus the number of violations.

    ## Episode End

    Terminates once every request (``workload.n_requests``) has been decided; the last step runs the
    simulation to the end and collects the remaining violations. No truncation.

    ## Info

    Every step: ``task``, ``stitch`` (variant names per block), ``placement`` (processor names per block),
    ``completed`` (requests finished in the step: task, latency_ms, violated). At the end also
    ``slo_violation_rate``, ``throughput_rps`` (completed / simulated seconds), ``latency_ms`` (list),
    ``memory_mb`` (weights preloaded: the menus' blocks).

    ## Arguments

    ``gym.make("SparseLoom-Orin-v0", profile="orin-agx", power_mode=None, workload="default",
    background=None, menu_size=16)``: ``workload`` is a preset (``default``, ``small``) or a dict of
    :class:`~sparoa_env.loom.workload.Workload` fields; ``background`` overrides its background preset.

    ## Version History

    * v0: initial release.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, profile: str = "orin-agx", power_mode: str | None = None, workload: Any = "default",
                 background: Any = None, menu_size: int = 16, render_mode: str | None = None) -> None:
        from .policies import pareto_stitches

        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        if isinstance(menu_size, bool) or not isinstance(menu_size, int) or menu_size < 1:
            raise ValueError(f"menu_size must be a positive integer, got {menu_size!r}")
        self.render_mode = render_mode
        self.workload = workload_ = parse_workload(workload)
        self.background = background_spec(background if background is not None else workload_.background)
        self.catalog = load_catalog(profile, power_mode, tasks=workload_.tasks)
        self.task_names = list(workload_.tasks)
        first = self.catalog.task(self.task_names[0])
        self.P = first.n_lanes
        self.placements = list(pipelines(first.n_blocks, self.P))
        self.menu_size = menu_size
        self.menus: dict[str, np.ndarray] = {}
        self.ref_ms: dict[str, float] = {}
        self.menu_acc: dict[str, np.ndarray] = {}
        self.menu_lat: dict[str, np.ndarray] = {}
        blocks: dict = {}
        for n in self.task_names:
            t = self.catalog.task(n)
            m = pareto_stitches(t, t.accuracy, menu_size)
            m = np.concatenate([m, np.repeat(m[-1:], menu_size - len(m), axis=0)]) if len(m) < menu_size else m
            self.menus[n] = m
            self.ref_ms[n] = reference_latency_ms(t)
            self.menu_acc[n] = np.array([t.acc(s) or 0.0 for s in m])
            self.menu_lat[n] = np.array([min(t.solo_latency_ms(s, (p,) * t.n_blocks) for p in range(self.P)) for s in m])
            for s in m:
                for k, v in enumerate(s):
                    blocks[(n, k, int(v))] = float(t.weight_mb[k, v])
        self._blocks = blocks
        T = len(self.task_names)
        self.n_obs = T + 3 + 4 * self.P + 2 * menu_size
        self.action_space = spaces.MultiDiscrete([menu_size, len(self.placements)])
        self.observation_space = spaces.Box(0.0, OBS_HIGH, (self.n_obs,), dtype=np.float32)
        self.sim: LoomSimulator | None = None
        self._actions: list[tuple[int, int]] = []
        self._reset_state: dict | None = None

    # ------------------------------------------------------------------ episode
    def _start(self) -> None:
        self._reset_state = self.np_random.bit_generator.state
        reqs = draw_requests(self.catalog, self.workload, self.np_random)
        self.sim = LoomSimulator(catalog=self.catalog, requests=reqs, rng=self.np_random, background=self.background,
                                 memory=FullPreload(self._blocks, self.workload.load_gbps),
                                 load_gbps=self.workload.load_gbps)
        self._actions = []
        self._n_completed_seen = 0
        self.sim.run_to_decision()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._start()
        return self._obs(), {"task": self.sim.pending.task}

    def step(self, action):
        if self.sim is None or self.sim.pending is None:
            raise RuntimeError("no request is waiting: call reset() first (or after the episode ended)")
        a = np.asarray(action)
        if a.shape != (2,) or a.dtype.kind not in "iuf" or not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(f"action must be two finite integers (menu entry, pipeline), shape (2,), got {action!r} "
                             "(non-integer values are rejected, not rounded)")
        m, p = int(a[0]), int(a[1])
        if not (0 <= m < self.menu_size and 0 <= p < len(self.placements)):
            raise ValueError(f"action {action!r} outside {self.action_space}")
        return self._apply(m, p)

    def _apply(self, m: int, p: int):
        sim = self.sim
        req = sim.pending
        stitch = tuple(int(v) for v in self.menus[req.task][m])
        placement = self.placements[p]
        sim.decide(stitch, placement)
        self._actions.append((m, p))
        if len(self._actions) == len(sim.requests):
            sim.run_to_end()
        else:
            sim.run_to_decision()
        done = sim.finished and sim.pending is None
        new = sim.completed[self._n_completed_seen:]
        self._n_completed_seen = len(sim.completed)
        reward = -float(sum(r.violated for r in new))
        task = self.catalog.task(req.task)
        names = self.catalog.processors
        info: dict[str, Any] = {
            "task": req.task, "stitch": [task.variants[v] for v in stitch], "placement": [names[q] for q in placement],
            "completed": [{"task": r.request.task, "latency_ms": r.latency_ms, "violated": r.violated} for r in new]}
        if done:
            recs = sim.completed
            span = (max(r.end_ms for r in recs) - min(r.request.arrival_ms for r in recs)) / 1000.0
            info.update(slo_violation_rate=sum(r.violated for r in recs) / len(recs),
                        throughput_rps=len(recs) / span if span > 0 else 0.0,
                        latency_ms=[r.latency_ms for r in recs], memory_mb=sim.memory.peak_mb)
        obs = self._obs() if not done else np.zeros(self.n_obs, dtype=np.float32)
        return obs, reward, done, False, info

    def _obs(self) -> np.ndarray:
        sim = self.sim
        req = sim.pending
        T = len(self.task_names)
        o = np.zeros(self.n_obs, dtype=np.float64)
        if req is None:
            return o.astype(np.float32)
        ti = self.task_names.index(req.task)
        o[ti] = 1.0
        o[T] = req.slo_latency_ms / self.ref_ms[req.task] / 5.0
        o[T + 1] = req.slo_accuracy or 0.0
        o[T + 2] = len(self._actions) / len(sim.requests)
        ls = sim.lane_state()
        i = T + 3
        for p in range(self.P):
            o[i:i + 4] = (ls[p, 0] / 16.0, _log(ls[p, 1]) / 3.0, _log(ls[p, 2]) / 3.0, ls[p, 3])
            i += 4
        M = self.menu_size
        o[i:i + M] = self.menu_acc[req.task]
        o[i + M:i + 2 * M] = self.menu_lat[req.task] / req.slo_latency_ms
        return np.clip(o, 0.0, OBS_HIGH).astype(np.float32)

    def render(self):
        if self.render_mode != "ansi" or self.sim is None:
            return None
        lines = [f"t={self.sim.now:.2f} ms, decided {len(self._actions)}/{len(self.sim.requests)}"]
        for r in self.sim.completed[-10:]:
            lines.append(f"  {r.request.task:<12} {r.latency_ms:8.2f} ms (SLO {r.request.slo_latency_ms:.2f})"
                         f"{'  VIOLATED' if r.violated else ''}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ pickling by replay
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["sim"] = None
        state["_replay"] = self.sim is not None
        return state

    def __setstate__(self, state: dict) -> None:
        replay = state.pop("_replay", False)
        self.__dict__.update(state)
        if replay and self._reset_state is not None:
            actions = list(self._actions)
            self.np_random.bit_generator.state = self._reset_state
            self._start()
            for m, p in actions:
                self._apply(m, p)
