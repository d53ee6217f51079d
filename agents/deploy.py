"""Deployment, SparOA's online phase: serve a model with the HybridEngine while the placement policy re-plans
from live telemetry whenever the hardware state changes.

    sparoa deploy mobilenet_v3_small --requests 300 --rate 20 --inject cpu0@4-10      # re-planning
    sparoa deploy mobilenet_v3_small --requests 300 --rate 20 --inject cpu0@4-10 --fixed

Pieces (each usable on its own):

* :class:`LiveHardwareState` reads telemetry and maps it to the per-lane hardware state with **the hw
  backend's own code** (:class:`~sparoa_env.hw.backend.TelemetrySampler` and
  :func:`~sparoa_env.hw.backend.lane_telemetry`): background share of each lane (utilisation of the lane's
  cores minus this process's own share of them, an estimate), clock fraction, power mode.
* :class:`Replanner` asks the policy for a plan for a hardware state: one deterministic rollout of the
  policy over the model's graph in the simulator environment the policy was trained on (``SparOA-Host-v0``
  for the shipped policy), with that state as the environment's background (``background={"lane_share":
  {lane: share}}``, shares rounded to 0.1) and power mode: what ``sparoa plan --set background=...``
  writes. A rollout is a few ms (one policy forward pass per op).
* :class:`Deployment` serves requests one at a time in arrival order (FIFO queue, open-loop arrivals) on the
  current engine. A monitor thread samples the live state every ``interval_ms``; when some lane's background
  share moved by at least ``hysteresis`` from the state of the last plan, for ``persist`` samples in a row,
  it re-plans; a different plan gets its engine built (or taken from the cache of engines built so far) and
  warmed up **in the monitor thread**, off the serving path, and the server takes the new engine before its
  next request (a request is never split across engines, none is dropped). ``replan=False`` is the fixed
  baseline: the plan of the first state, the same monitor sampling (so both pay its overhead), no re-planning.
* :class:`Injector` puts real background load on a lane: one busy-looping process per core of the lane,
  pinned there, on from ``t1`` to ``t2`` seconds after serving starts (``--inject cpu0@4-10``). The
  processes end themselves at ``t2`` or when this process dies, and are killed on exit (``finally``, atexit,
  Ctrl-C).
* :func:`train_deploy_policy` trains the load-aware policy shipped in ``sparoa_env/data/policies/host-deploy``:
  behaviour cloning, on observations of ``SparOA-Host-v0`` under per-lane background load, of the best
  static plan for each load state (see its docstring). The SAC trainer (``sparoa train``) clones the oracle
  plan of the *quiet* cost model, which ignores background load, so a policy trained that way does not react
  to lane load and re-planning would repeat the fixed plan.

Limits (docs/deploy.md): the background share is an estimate (utilisation of the lane's cores minus this
process's own CPU time on them, per thread on the core it last ran on); the simulator rollout does not use the
live clock fraction (the sim models clocks through power modes).
"""

from __future__ import annotations

import atexit
import json
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["HardwareState", "LiveHardwareState", "Replanner", "Deployment", "Injection", "Injector", "parse_inject",
           "deploy", "summarise", "quiet_state", "format_report", "train_deploy_policy", "DEFAULT_POLICY", "RequestRecord", "ReplanEvent"]

def _data_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("sparoa_env")
    return Path(spec.origin).parent / "data" if spec and spec.origin else Path("sparoa_env") / "data"


DEFAULT_POLICY = _data_dir() / "policies" / "host-deploy"
STATE_STEP = 0.1  # background shares are rounded to this before they reach the simulator (and the plan cache)


# ------------------------------------------------------------------------------------------------ state
@dataclass(frozen=True)
class HardwareState:
    """The live hardware state of the lanes: per lane the background share and clock fraction (HwBackend's
    ``background_frac`` and ``freq_frac``), the power mode when the machine reports one."""

    background: tuple[float, ...]
    freq: tuple[float, ...]
    power_mode: str | None = None
    t_ms: float = 0.0

    def key(self, step: float = STATE_STEP) -> tuple[float, ...]:
        return tuple(round(round(b / step) * step, 3) for b in self.background)

    def differs(self, other: "HardwareState | None", hysteresis: float) -> bool:
        if other is None:
            return True
        if self.power_mode != other.power_mode:
            return True
        return any(abs(a - b) >= hysteresis for a, b in zip(self.background, other.background))


def quiet_state(n_lanes: int) -> HardwareState:
    """No background load, full clocks: the state the offline plan (``sparoa plan``) is made for."""
    return HardwareState((0.0,) * n_lanes, (1.0,) * n_lanes)


class LiveHardwareState:
    """Telemetry -> :class:`HardwareState` with HwBackend's own mapping (module docstring).

    ``lanes``: the :class:`~sparoa_env.hw.devices.LaneSpec` of each processor in lane order. ``telemetry``:
    anything with ``sample()`` returning :meth:`sparoa_env.hw.telemetry.Telemetry.sample`'s dict (default: a
    new ``Telemetry``). Each :meth:`read` takes a fresh sample (sampler interval 0): psutil's per-core
    utilisation is then the average since the previous read.
    """

    def __init__(self, lanes: Sequence[Any], telemetry: Any = None, clock: Callable[[], float] = time.perf_counter) -> None:
        if telemetry is None:
            from sparoa_env.hw.telemetry import Telemetry

            telemetry = Telemetry(use_nvml=any(getattr(s, "is_cuda", False) for s in lanes))
        from sparoa_env.hw.backend import TelemetrySampler

        self.lanes = list(lanes)
        self.telemetry = telemetry
        self.sampler = TelemetrySampler(telemetry, interval_ms=0.0)
        self._clock = clock

    def read(self) -> HardwareState:
        from sparoa_env.hw.backend import lane_telemetry

        tel = self.sampler.sample()
        pairs = [lane_telemetry(spec, tel) for spec in self.lanes]
        return HardwareState(tuple(float(bg) for bg, _ in pairs), tuple(float(f) for _, f in pairs),
                             (tel or {}).get("power_mode"), self._clock() * 1e3)

    def close(self) -> None:
        close = getattr(self.telemetry, "close", None)
        if close is not None:
            close()


# ------------------------------------------------------------------------------------------------ planning
class Replanner:
    """A plan for a hardware state: one deterministic rollout of ``policy`` (anything with the evaluation
    protocol ``reset(env, info, seed)`` / ``act(obs)`` and a ``config`` with ``env_id`` and ``env_kwargs``)
    in the policy's simulator environment with ``model``, the state as background load and power mode."""

    def __init__(self, policy: Any, model: Any, *, env_id: str | None = None, env_kwargs: dict[str, Any] | None = None,
                 seed: int = 0) -> None:
        import gymnasium as gym

        import sparoa_env.envs  # noqa: F401
        from .evaluate import evaluation_env_kwargs

        self.policy = policy
        cfg = getattr(policy, "config", {}) or {}
        self.env_id = env_id or cfg.get("env_id") or "SparOA-Host-v0"
        kw = evaluation_env_kwargs(cfg, {"requests": 1, **(env_kwargs or {})})
        kw["model"] = model
        if kw.get("backend", "sim") != "sim":
            raise ValueError(f"the deploy policy re-plans in the simulator; its env uses backend={kw['backend']!r}")
        kw.pop("background", None)
        self.base_kwargs = kw
        self.seed = seed
        self._envs: dict[Any, Any] = {}
        probe = gym.make(self.env_id, **kw)
        u = probe.unwrapped
        self.processors: tuple[str, ...] = tuple(u.processors)
        self.mode_names: tuple[str, ...] = tuple(u.mode_names)
        self.model_name = u.graph.model
        self.batch = u.batch_size
        self._envs[(None, (0.0,) * len(self.processors))] = probe

    def env_kwargs_for(self, state: HardwareState) -> dict[str, Any]:
        key = state.key()
        if len(key) != len(self.processors):
            raise ValueError(f"hardware state has {len(key)} lane(s), the policy's env has {len(self.processors)} "
                             f"({', '.join(self.processors)})")
        kw = dict(self.base_kwargs)
        shares = {p: s for p, s in zip(self.processors, key) if s > 0}
        if shares:
            kw["background"] = {"lane_share": shares}
        if state.power_mode in self.mode_names:
            kw["power_mode"] = state.power_mode
        return kw

    def plan(self, state: HardwareState) -> tuple[Any, float]:
        """(the :class:`~sparoa_env.plan.Plan`, rollout wall time in ms) for ``state``."""
        import gymnasium as gym

        from sparoa_env.plan import Plan

        from .evaluate import run_episode

        mode = state.power_mode if state.power_mode in self.mode_names else None
        k = (mode, state.key())
        env = self._envs.get(k)
        if env is None:
            env = self._envs[k] = gym.make(self.env_id, **self.env_kwargs_for(state))
        t0 = time.perf_counter()
        ep = run_episode(env, self.policy, self.seed)
        ms = (time.perf_counter() - t0) * 1e3
        meta = {"env_id": self.env_id, "state_background": list(state.key()), "power_mode": ep.power_mode,
                "simulated_latency_ms": ep.latency_ms[0], "source": "agents.deploy.Replanner (policy rollout)"}
        return Plan(ep.plan, batch=self.batch, model=self.model_name, meta=meta), ms

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()


def _plan_key(plan: Any) -> tuple:
    return tuple(sorted(plan.placement.items()))


def plan_label(plan: Any, processors: Sequence[str]) -> str:
    """A short name for a plan: its op counts per processor, e.g. ``cpu0=230`` or ``cpu0=200,cpu1=30``."""
    c = plan.counts()
    return ",".join(f"{p}={c[p]}" for p in processors if c.get(p))


# ------------------------------------------------------------------------------------------------ injection
@dataclass(frozen=True)
class Injection:
    """Busy-loop the cores of ``lane`` from ``start_s`` to ``end_s`` seconds after serving starts."""

    lane: str
    start_s: float
    end_s: float


def parse_inject(spec: str, processors: Sequence[str]) -> list[Injection]:
    """``"cpu0@4-10"`` or several, comma-separated: ``"cpu0@2-5,cpu1@6-9"`` (lane@start-end, seconds)."""
    out = []
    for item in filter(None, (x.strip() for x in str(spec).split(","))):
        lane, sep, window = item.partition("@")
        a, dash, b = window.partition("-")
        try:
            if not sep or not dash:
                raise ValueError
            t1, t2 = float(a), float(b)
        except ValueError:
            raise ValueError(f"--inject {spec!r}: expected LANE@START-END in seconds (e.g. cpu0@4-10), got {item!r}") from None
        if lane not in processors:
            raise ValueError(f"--inject {spec!r}: unknown lane {lane!r}; lanes: {', '.join(processors)}")
        if not (math.isfinite(t1) and math.isfinite(t2) and 0 <= t1 < t2):
            raise ValueError(f"--inject {spec!r}: the window must satisfy 0 <= START < END, got {t1:g}-{t2:g}")
        out.append(Injection(lane, t1, t2))
    if not out:
        raise ValueError(f"--inject {spec!r}: no injection given (expected LANE@START-END, e.g. cpu0@4-10)")
    return out


_HOG = r"""
import os, sys, time
cores = [int(c) for c in sys.argv[1].split(",")]
t1, t2, parent = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
try:
    os.sched_setaffinity(0, cores)
except (AttributeError, OSError):
    pass
while time.time() < t1:
    if os.getppid() != parent:
        sys.exit(0)
    time.sleep(max(min(0.02, t1 - time.time()), 0.0))
n = 0
while time.time() < t2:
    n += 1
    if n % 200000 == 0 and os.getppid() != parent:
        break
"""


class Injector:
    """Real background load (:class:`Injection` s) as busy-looping processes pinned to the lanes' cores.

    :meth:`start` spawns them at once, each waiting for its window (absolute times, so spawning costs
    nothing inside the window); they exit at the window's end or when this process dies. :meth:`stop` kills
    whatever is left and is registered with ``atexit``; use it as a context manager."""

    def __init__(self, injections: Sequence[Injection], lane_cores: dict[str, Sequence[int]]) -> None:
        self.injections = list(injections)
        self.lane_cores = {k: list(v) for k, v in lane_cores.items()}
        self.procs: list[subprocess.Popen] = []
        self.t0_unix: float | None = None
        self._registered = False

    def start(self, t0_unix: float | None = None) -> None:
        self.t0_unix = time.time() if t0_unix is None else t0_unix
        if not self._registered:
            atexit.register(self.stop)
            self._registered = True
        for inj in self.injections:
            cores = self.lane_cores[inj.lane]
            for c in cores:  # one process per core: a lane of k cores is fully taken
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-c", _HOG, str(c), repr(self.t0_unix + inj.start_s),
                     repr(self.t0_unix + inj.end_s), str(os.getpid())],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover - a kill is not refused
                pass

    def __enter__(self) -> "Injector":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def windows_ms(self) -> list[tuple[float, float]]:
        return [(i.start_s * 1e3, i.end_s * 1e3) for i in self.injections]


# ------------------------------------------------------------------------------------------------ serving
@dataclass
class RequestRecord:
    index: int
    arrival_ms: float    # all times relative to the start of serving
    start_ms: float
    end_ms: float
    plan: int            # index into Deployment.plans

    @property
    def latency_ms(self) -> float:
        return self.end_ms - self.arrival_ms


@dataclass
class ReplanEvent:
    t_ms: float
    background: list[float]
    plan: int             # the plan the policy gave (index into Deployment.plans)
    rollout_ms: float     # the policy rollout
    build_ms: float       # engine build + warm-up (0 when the plan is unchanged or its engine was cached)
    swapped: bool         # the plan differs from the serving one, so the engine was swapped


class Deployment:
    """Serve ``module`` under the policy's plan for the live state, re-planning on changes (module docstring)."""

    def __init__(self, module: Any, example_inputs: Sequence[Any], replanner: Replanner, live: LiveHardwareState, *,
                 device_map: Any = None, replan: bool = True, hysteresis: float = 0.3, persist: int = 2,
                 interval_ms: float = 100.0, warmup: int = 3, program: Any = None) -> None:
        from sparoa_env.hw.program import Program

        if not (0 < hysteresis <= 1):
            raise ValueError(f"hysteresis must be in (0, 1], got {hysteresis!r}")
        if persist < 1 or interval_ms <= 0:
            raise ValueError(f"persist must be >= 1 and interval_ms > 0, got {persist!r}, {interval_ms!r}")
        self.module = module
        self.example_inputs = tuple(example_inputs)
        self.program = program if program is not None else Program(module, self.example_inputs)  # exported once
        self.replanner = replanner
        self.live = live
        self.processors = replanner.processors
        self.device_map = device_map
        self.replan_enabled = bool(replan)
        self.hysteresis = float(hysteresis)
        self.persist = int(persist)
        self.interval_ms = float(interval_ms)
        self.warmup = int(warmup)
        self.plans: list[Any] = []
        self._plan_ids: dict[tuple, int] = {}
        self._engines: dict[int, Any] = {}
        self.events: list[ReplanEvent] = []
        self.states: list[tuple[float, list[float]]] = []
        self.records: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._current: int | None = None
        self._planned: HardwareState | None = None
        self._streak = 0
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self._t0 = time.perf_counter()
        self.monitor_error: BaseException | None = None

    # ---------------------------------------------------------------- engines
    def _plan_id(self, plan: Any) -> int:
        key = _plan_key(plan)
        pid = self._plan_ids.get(key)
        if pid is None:
            pid = self._plan_ids[key] = len(self.plans)
            self.plans.append(plan)
        return pid

    def engine(self, pid: int) -> tuple[Any, float]:
        """The engine of plan ``pid`` (built and warmed up on first use) and the build time in ms (0 if cached)."""
        eng = self._engines.get(pid)
        if eng is not None:
            return eng, 0.0
        from sparoa_env.hw.engine import HybridEngine

        t0 = time.perf_counter()
        eng = HybridEngine(self.module, self.example_inputs, self.plans[pid], self.device_map,
                           processors=self.processors, program=self.program)
        for _ in range(self.warmup):
            eng(*self.example_inputs)
        self._engines[pid] = eng
        return eng, (time.perf_counter() - t0) * 1e3

    @property
    def current_plan(self) -> int | None:
        return self._current

    def now_ms(self) -> float:
        return (time.perf_counter() - self._t0) * 1e3

    # ---------------------------------------------------------------- lifecycle
    def start(self, settle_ms: float | None = None, initial: HardwareState | None = None) -> None:
        """Plan for the current live state (sampled over ``settle_ms``, default ``interval_ms``) or for
        ``initial`` when given (the fixed baseline plans for the quiet state), build its engine, start the
        monitor. Serving time 0 is the end of this call."""
        self.live.read()  # starts psutil's averaging window
        time.sleep((self.interval_ms if settle_ms is None else settle_ms) / 1e3)
        state = self.live.read() if initial is None else initial
        plan, ms = self.replanner.plan(state)
        pid = self._plan_id(plan)
        _, build = self.engine(pid)
        self._planned = state
        self._current = pid
        self.initial = ReplanEvent(0.0, list(state.background), pid, ms, build, True)
        self._t0 = time.perf_counter()
        self._monitor = threading.Thread(target=self._monitor_loop, name="sparoa-deploy-monitor", daemon=True)
        self._monitor.start()

    def _monitor_loop(self) -> None:
        try:
            while not self._stop.wait(self.interval_ms / 1e3):
                self.observe(self.live.read())
        except BaseException as e:  # noqa: BLE001 - reported by serve(), never swallowed
            self.monitor_error = e

    def observe(self, state: HardwareState) -> ReplanEvent | None:
        """One monitor sample: record it; re-plan when it left the planned state (hysteresis, persistence)."""
        t = self.now_ms()
        self.states.append((t, [round(b, 4) for b in state.background]))
        if not self.replan_enabled:
            return None
        if not state.differs(self._planned, self.hysteresis):
            self._streak = 0
            return None
        self._streak += 1
        if self._streak < self.persist:
            return None
        self._streak = 0
        plan, rollout = self.replanner.plan(state)
        self._planned = state
        pid = self._plan_id(plan)
        swapped = pid != self._current
        build = 0.0
        if swapped:
            _, build = self.engine(pid)  # built and warmed here, off the serving path
            with self._lock:
                self._current = pid
        ev = ReplanEvent(t, [round(b, 4) for b in state.background], pid, rollout, build, swapped)
        self.events.append(ev)
        return ev

    def serve(self, inputs: Sequence[Sequence[Any]], arrivals_ms: Sequence[float],
              keep_outputs: bool = False) -> list[Any]:
        """Serve ``inputs[i]`` arriving at ``arrivals_ms[i]`` (ms after serving time 0, non-decreasing), one
        at a time; returns the outputs when ``keep_outputs``. Records go to :attr:`records`."""
        if len(inputs) != len(arrivals_ms):
            raise ValueError(f"{len(inputs)} request(s) but {len(arrivals_ms)} arrival time(s)")
        outs = []
        for i, (x, a) in enumerate(zip(inputs, arrivals_ms)):
            wait = a - self.now_ms()
            if wait > 0:
                time.sleep(wait / 1e3)
            if self.monitor_error is not None:
                raise RuntimeError(f"the deploy monitor failed: {self.monitor_error!r}") from self.monitor_error
            with self._lock:  # the swap point: a request runs start to end on one engine
                pid = self._current
            eng = self._engines[pid]
            start = self.now_ms()
            y = eng(*x)
            end = self.now_ms()
            self.records.append(RequestRecord(i, float(a), start, end, pid))
            if keep_outputs:
                outs.append(y)
        return outs

    def close(self) -> None:
        self._stop.set()
        if self._monitor is not None:
            self._monitor.join(timeout=10)
        for eng in self._engines.values():
            eng.close()
        self._engines.clear()


# ------------------------------------------------------------------------------------------------ figures
def latency_stats(xs: Sequence[float]) -> dict[str, Any]:
    """``n``, mean, p50 and p95 (ms, rounded to 1 us) of latencies; None figures when there are none."""
    a = np.asarray(list(xs), dtype=np.float64)
    if a.size == 0:
        return {"n": 0, "mean_ms": None, "p50_ms": None, "p95_ms": None}
    return {"n": int(a.size), "mean_ms": round(float(a.mean()), 3), "p50_ms": round(float(np.percentile(a, 50)), 3),
            "p95_ms": round(float(np.percentile(a, 95)), 3)}


def summarise(dep: Deployment, windows_ms: Sequence[tuple[float, float]] = ()) -> dict[str, Any]:
    """Latency overall and for requests arriving inside the injection windows; plans served; re-plans."""
    recs = dep.records
    inside = [r for r in recs if any(a <= r.arrival_ms < b for a, b in windows_ms)]
    outside = [r for r in recs if not any(a <= r.arrival_ms < b for a, b in windows_ms)]
    served: dict[str, int] = {}
    for r in recs:
        lab = plan_label(dep.plans[r.plan], dep.processors)
        served[lab] = served.get(lab, 0) + 1
    ev = dep.events
    return {
        "mode": "replan" if dep.replan_enabled else "fixed",
        "requests": len(recs),
        "latency": latency_stats(r.latency_ms for r in recs),
        "latency_injected": latency_stats(r.latency_ms for r in inside),
        "latency_outside": latency_stats(r.latency_ms for r in outside),
        "service_ms_mean": round(float(np.mean([r.end_ms - r.start_ms for r in recs])), 3) if recs else None,
        "plans": [plan_label(p, dep.processors) for p in dep.plans],
        "served_by_plan": served,
        "initial_plan": {"state": dep.initial.background, "plan": dep.initial.plan,
                         "rollout_ms": round(dep.initial.rollout_ms, 3), "build_ms": round(dep.initial.build_ms, 1)},
        "replans": len(ev),
        "swaps": sum(e.swapped for e in ev),
        "replan_rollout_ms_mean": round(float(np.mean([e.rollout_ms for e in ev])), 3) if ev else None,
        "replan_rollout_ms_max": round(float(max(e.rollout_ms for e in ev)), 3) if ev else None,
        "swap_build_ms": [round(e.build_ms, 1) for e in ev if e.swapped],
        "events": [asdict(e) for e in ev],
        "windows_ms": [list(w) for w in windows_ms],
        "samples": len(dep.states),
        "states": [[round(t, 1), bg] for t, bg in dep.states],
    }


def _arrivals(n: int, rate: float | None, seed: int) -> list[float]:
    if rate is None:
        return [0.0] * n
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"--rate must be a positive number of requests per second, got {rate!r}")
    gaps = np.random.default_rng([seed, 0xDE91]).exponential(1000.0 / rate, size=n)
    return np.cumsum(gaps).tolist()


def lane_cores(lane_specs: dict[str, Any]) -> dict[str, list[int]]:
    """The cores of each CPU lane (all of this process's cores for an unpinned ``cpu`` lane)."""
    from sparoa_env.hw.devices import _available_cores

    allc = sorted(_available_cores())
    return {p: (list(s.cores) if s.cores is not None else allc) for p, s in lane_specs.items() if not s.is_cuda}


def deploy(model: str, policy: str | Path | Any = DEFAULT_POLICY, *, device_map: Any = None, requests: int = 200,
           rate: float | None = 20.0, inject: str | None = None, replan: bool = True, seed: int = 0,
           hysteresis: float = 0.3, persist: int = 2, interval_ms: float = 100.0, telemetry: Any = None,
           progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Serve ``requests`` requests of ``model`` (Poisson arrivals at ``rate``/s, all at once when None) under the
    policy, with ``inject`` background load; returns :func:`summarise`'s figures (plus the setup)."""
    import torch

    from sparoa_env.hw.devices import parse_device_map, two_lane_cpu_map
    from sparoa_env.modelspec import load_module

    from .policy import load_policy

    if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
        raise ValueError(f"--requests must be a positive integer, got {requests!r}")
    pol = load_policy(policy) if isinstance(policy, (str, Path)) else policy
    replanner = Replanner(pol, model, seed=seed)
    procs = replanner.processors
    dm = device_map
    if dm is None:
        dm = two_lane_cpu_map(procs) if all(p.startswith("cpu") for p in procs) else None
    specs = parse_device_map(dm, procs)
    injections = parse_inject(inject, procs) if inject else []
    cores = lane_cores(specs)
    for inj in injections:
        if inj.lane not in cores:
            raise ValueError(f"--inject: lane {inj.lane!r} is a GPU lane ({specs[inj.lane].spec}); only CPU lanes can be loaded")
    module, inputs = load_module(model, replanner.batch)
    live = LiveHardwareState([specs[p] for p in procs], telemetry)
    dep = Deployment(module, inputs, replanner, live, device_map=dm, replan=replan, hysteresis=hysteresis,
                     persist=persist, interval_ms=interval_ms)
    arrivals = _arrivals(requests, rate, seed)
    injector = Injector(injections, cores)
    try:
        with torch.inference_mode():
            # the fixed baseline is the offline plan: the policy's plan for the quiet state (no background)
            dep.start(initial=None if replan else quiet_state(len(procs)))
            if progress:
                progress(f"initial plan {plan_label(dep.plans[dep.current_plan], procs)} for lane background "
                         f"{dep.initial.background}; serving {requests} requests")
            injector.start(time.time() - dep.now_ms() / 1e3)  # windows relative to serving time 0
            dep.serve([inputs] * requests, arrivals)
    finally:
        injector.stop()
        dep.close()
        live.close()
        replanner.close()
    out = summarise(dep, injector.windows_ms())
    out.update({"model": model, "policy": str(getattr(pol, "run_dir", policy)), "device_map": {p: s.spec for p, s in specs.items()},
                "rate_per_s": rate, "inject": inject, "seed": seed, "hysteresis": hysteresis, "persist": persist,
                "interval_ms": interval_ms, "injector_pids": injector.pids, "plan_json": [pl.to_dict() for pl in dep.plans],
                "requests_detail": [{**asdict(r), "latency_ms": round(r.latency_ms, 3)} for r in dep.records]})
    return out


def format_report(res: dict[str, Any]) -> str:
    def row(name: str, s: dict[str, Any]) -> str:
        if not s["n"]:
            return f"  {name:<22} (no requests)"
        return f"  {name:<22} n={s['n']:>4}  mean {s['mean_ms']:8.2f} ms  p50 {s['p50_ms']:8.2f} ms  p95 {s['p95_ms']:8.2f} ms"

    lines = [f"sparoa deploy {res['model']} ({res['mode']}): {res['requests']} requests at "
             f"{res['rate_per_s'] or 'back-to-back'} req/s, inject {res['inject'] or 'none'}; lanes "
             + ", ".join(f"{p}={d}" for p, d in res["device_map"].items()),
             row("all requests", res["latency"])]
    if res["windows_ms"]:
        lines += [row("arrived while injected", res["latency_injected"]), row("arrived outside", res["latency_outside"])]
    lines.append(f"  plans: " + "; ".join(f"#{k} {p}" for k, p in enumerate(res["plans"]))
                 + "  served: " + ", ".join(f"{p}: {n}" for p, n in res["served_by_plan"].items()))
    ip = res["initial_plan"]
    lines.append(f"  initial plan #{ip['plan']} for lane background {ip['state']} (rollout {ip['rollout_ms']:.1f} ms, "
                 f"engine build {ip['build_ms']:.0f} ms)")
    if res["mode"] == "replan":
        lines.append(f"  re-plans: {res['replans']} (policy rollout mean {res['replan_rollout_ms_mean'] or 0:.1f} ms, "
                     f"max {res['replan_rollout_ms_max'] or 0:.1f} ms), engine swaps: {res['swaps']} "
                     f"(build + warm-up off the serving path: {res['swap_build_ms']} ms)")
        for e in res["events"]:
            lines.append(f"    t={e['t_ms'] / 1e3:6.2f} s  background {e['background']} -> plan #{e['plan']}"
                         f"{' (swap)' if e['swapped'] else ' (unchanged)'}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ training
def _candidate_plans(u: Any) -> dict[str, np.ndarray]:
    """Static plans to choose from per load state: the chain-DP oracle plan of the quiet cost model
    (linearised graph, as the SAC trainer's demonstrations), every relabelling of its lanes, and every lane alone."""
    import itertools

    from .oracle import chain_dp
    from .train import linearised

    dp = chain_dp(linearised(u.graph), u.cost_model, u.power_mode).lanes
    P, n = u.n_lanes, len(u.graph.nodes)
    out = {f"all-{u.processors[k]}": np.full(n, k, dtype=np.int64) for k in range(P)}
    for perm in itertools.permutations(range(P)):
        out[f"dp{list(perm)}"] = np.asarray(perm, dtype=np.int64)[dp]
    return out


def _replay(env: Any, lanes: np.ndarray, seed: int) -> float:
    """Mean simulated latency of the static plan ``lanes`` in one episode of ``env``."""
    from .baselines import PlanPolicy
    from .evaluate import run_episode

    return float(np.mean(run_episode(env, PlanPolicy("static", lambda env, mode: lanes), seed).latency_ms))


def train_deploy_policy(out: str | Path, *, models: Sequence[str] = ("mobilenet_v3_small", "resnet18"),
                        env_id: str = "SparOA-Host-v0", shares: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9),
                        episodes: int = 2, flip_prob: float = 0.1, bc_steps: int = 4000, hidden: Sequence[int] = (64, 64),
                        seed: int = 0, force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train the load-aware deploy policy: behaviour cloning of the best static plan per load state.

    For each model and each per-lane background state (every combination of ``shares`` on the lanes, as
    ``background={"lane_share": {...}}`` of ``env_id``), the label plan is the best of :func:`_candidate_plans`
    by simulated latency in that state; ``episodes`` rollouts of it per state (a share ``flip_prob`` of the
    decisions moved to a random lane so that states off the plan are covered, labels unchanged) give the
    observations. The actor (the SAC actor network, :func:`agents.train.build_actor`) is fit with
    :func:`agents.train.behaviour_clone`. Writes ``policy.pt`` and ``config.json`` (format
    ``sparoa-sac-policy/1``, read by :func:`agents.policy.load_policy`); returns the config."""
    import itertools

    import gymnasium as gym
    import torch

    import sparoa_env.envs  # noqa: F401

    from .train import behaviour_clone, build_actor, prepare_run_dir

    run_dir = prepare_run_dir(out, force, ("policy.pt", "config.json"))
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    obs_l, lane_l, labels = [], [], []
    rng = np.random.default_rng([seed, 0xDE71])
    probe = None
    for model in models:
        base = gym.make(env_id, model=model)
        u0 = base.unwrapped
        cands = _candidate_plans(u0)
        procs = u0.processors
        for combo in itertools.product(shares, repeat=u0.n_lanes):
            bg = {p: float(s) for p, s in zip(procs, combo) if s > 0}
            env = gym.make(env_id, model=model, background={"lane_share": bg}) if bg else base
            u = env.unwrapped
            lat = {name: _replay(env, lanes, seed) for name, lanes in cands.items()}
            best = min(lat, key=lat.get)
            labels.append({"model": model, "lane_share": bg, "best": best, "latency_ms": round(lat[best], 3),
                           "quiet_plan_ms": round(lat["dp[" + ", ".join(map(str, range(u.n_lanes))) + "]"], 3)})
            plan = cands[best]
            for ep in range(episodes):
                obs, _ = env.reset(seed=seed * 7919 + ep)
                k = 0
                while True:
                    lane = int(plan[k])
                    if rng.random() < flip_prob:
                        lane = int(rng.integers(u.n_lanes))
                    obs_l.append(obs)
                    lane_l.append(int(plan[k]))
                    obs, _, term, trunc, _ = env.step(u.score_of(lane))
                    k += 1
                    if term or trunc:
                        break
            if env is not base:
                env.close()
            if progress:
                print(f"  {model} lane_share {bg or 'none'}: best {best} {lat[best]:.2f} ms", flush=True)
        if probe is None:
            probe = base
        else:
            base.close()
    obs_a, lanes_a = np.asarray(obs_l, dtype=np.float32), np.asarray(lane_l, dtype=np.int64)
    u = probe.unwrapped
    obs_shape, act_shape = probe.observation_space.shape, probe.action_space.shape
    actor = build_actor(obs_shape, act_shape, hidden)
    match = behaviour_clone(actor, obs_a, lanes_a, u.score_of, bc_steps, 256, seed)
    torch.save(actor.state_dict(), run_dir / "policy.pt")
    probe.close()
    config = {
        "format": "sparoa-sac-policy/1", "run_name": f"{env_id}__deploy-bc__{seed}",
        "algorithm": "behaviour cloning of the best static plan per lane-load state (agents.deploy.train_deploy_policy)",
        "env_id": env_id, "env_kwargs": {"model": models[0]}, "obs_shape": list(obs_shape),
        "action_shape": list(act_shape), "hidden_sizes": list(hidden), "policy_file": "policy.pt",
        "training": {"models": list(models), "shares": list(shares), "episodes": episodes, "flip_prob": flip_prob,
                     "bc_steps": bc_steps, "seed": seed, "decisions": int(len(obs_a)), "bc_match": round(match, 4),
                     "wall_s": round(time.perf_counter() - t0, 2), "labels": labels},
    }
    (run_dir / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    return config


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m agents.deploy", description="train the load-aware deploy policy "
                                "(sparoa deploy serves with it)")
    p.add_argument("--out", default=str(DEFAULT_POLICY))
    p.add_argument("--models", default="mobilenet_v3_small,resnet18")
    p.add_argument("--shares", default="0,0.2,0.4,0.6,0.8,0.9")
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--bc-steps", type=int, default=4000)
    p.add_argument("--hidden", default="64,64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true")
    a = p.parse_args(argv)
    cfg = train_deploy_policy(a.out, models=[m for m in a.models.split(",") if m],
                              shares=[float(s) for s in a.shares.split(",")], episodes=a.episodes, bc_steps=a.bc_steps,
                              hidden=[int(h) for h in a.hidden.split(",")], seed=a.seed, force=a.force)
    print(json.dumps({k: v for k, v in cfg["training"].items() if k != "labels"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
