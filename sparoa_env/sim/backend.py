"""SimBackend: the :class:`~sparoa_env.backend.Backend` protocol over the SimPy SoC model."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from ..backend import Decision, RequestStream, StepOutcome, option_bool, option_number
from ..graph import OpGraph
from .background import BackgroundSpec, background_spec
from .soc import ModeTables, PowerModePolicy, SocSimulator

__all__ = ["SimBackend", "SIM_OPTIONS"]

#: options the sim backend accepts besides the environment's own kwargs (name -> meaning)
SIM_OPTIONS = {
    "thermal": "model heating and thermal throttling (default True)",
    "initial_temp_c": "starting temperature; default drawn between ambient and 90% of the throttle point",
    "mode_dwell_ms": "mean time between power-mode switches when power_mode='switching' (default 30)",
    "record": "keep the executed-op timeline for render and info (default True)",
}

POWER_MODE_CHOICES = ("random", "switching")


class SimBackend:
    """Runs episodes on the simulated SoC. Deterministic: the same generator state replays exactly.

    Pickling keeps the configuration, the generator state at the last reset and the placements made
    since, and replays them on load, so a pickled environment resumes mid-episode exactly.
    """

    nondeterministic = False

    def __init__(self, *, profile, model: str | None = None, batch: int = 1, power_mode: str = "MAXN",
                 background: str | dict | BackgroundSpec = "none", requests: RequestStream | int | dict = 1,
                 cost_model=None, **options: Any) -> None:
        from ..costmodel import CostModel

        unknown = set(options) - set(SIM_OPTIONS)
        if unknown:
            raise ValueError(f"sim backend: unknown option(s) {sorted(unknown)}; valid options: "
                             + "; ".join(f"{k} ({v})" for k, v in SIM_OPTIONS.items()))
        self.profile = profile
        self.processors = tuple(profile.processor_names)
        self.cm = cost_model if cost_model is not None else CostModel(profile)
        modes = tuple(profile.power_modes)
        if power_mode not in modes and power_mode not in POWER_MODE_CHOICES:
            raise ValueError(f"unknown power_mode {power_mode!r} for profile {profile.name!r}; valid: "
                             f"{', '.join(modes + POWER_MODE_CHOICES)}")
        self.power_mode = power_mode
        self.background = background_spec(background)
        self.background.lane_extra(profile.processor_names)  # a lane_share naming an unknown processor fails here
        self.requests = RequestStream.parse(requests)
        own = "sim backend"
        self.thermal = option_bool(options, "thermal", True, own)
        th = profile.thermal
        self.initial_temp_c = option_number(options, "initial_temp_c", None, own, lo=th.ambient_c,
                                            hi=th.throttle_full_c)  # the thermal model's range (ambient..full throttle)
        self.mode_dwell_ms = option_number(options, "mode_dwell_ms", 30.0, own, lo=0.0, lo_open=True)
        self.record = option_bool(options, "record", True, own)
        self.sim: SocSimulator | None = None
        self._graph: OpGraph | None = None
        self._reset_state: dict | None = None
        self._options: dict | None = None
        self._actions: list[int] = []
        self._costs: dict[str, Any] = {}

    # ------------------------------------------------------------------ protocol
    def reset(self, *, graph: OpGraph, rng: np.random.Generator, options: dict[str, Any] | None = None) -> Decision:
        self._reset_state = (type(rng.bit_generator), copy.deepcopy(rng.bit_generator.state))
        self._options = dict(options or {})
        self._actions = []
        self._switched: set[int] = set()
        if graph is not self._graph:
            self._graph, self._costs = graph, {}
        modes = tuple(self.profile.power_modes)
        mode = self._options.get("power_mode", self.power_mode)
        switching = mode == "switching"
        if mode in POWER_MODE_CHOICES:
            mode = modes[int(rng.integers(len(modes)))]
        elif mode not in modes:
            raise ValueError(f"unknown power_mode {mode!r}; valid: {', '.join(modes + POWER_MODE_CHOICES)}")
        policy = PowerModePolicy(initial=mode, modes=modes, switching=switching, mean_dwell_ms=self.mode_dwell_ms)
        self.sim = SocSimulator(graph=graph, cost_model=self.cm, costs_for_mode=self._costs_for, power=policy,
                                background=self.background, requests=self.requests, rng=rng,
                                thermal=self.thermal, initial_temp_c=self.initial_temp_c, record=self.record)
        self._last_area = self._last_energy = 0.0
        self.sim.run_to_decision()
        return self._decision()

    def place(self, processor: int) -> StepOutcome:
        sim = self.sim
        if sim is None or sim.pending is None:
            raise RuntimeError("place() called with no pending decision: reset() the episode first")
        r, i = sim.pending
        lane = int(processor)
        t = sim.now
        transfer = self._handoff_ms(self._inputs_on, lane)
        if (sim.first_switch_ms and sim.in_edges[i] and r not in self._switched
                and any(sim.loc[r * sim.n_ops + p] != lane for p, _ in sim.in_edges[i])):
            # the request's first hand-off between lanes (profile's first_switch_us); the simulator charges it to
            # the first such op that starts, which is this one unless lanes start ops out of dispatch order
            self._switched.add(r)
            transfer += sim.first_switch_ms
        sim.place(lane)
        self._actions.append(lane)
        sim.run_to_decision()
        area, energy = sim.area_acc - self._last_area, sim.energy_acc - self._last_energy
        self._last_area, self._last_energy = sim.area_acc, sim.energy_acc
        info = {"request": r, "op": sim.graph.nodes[i].name, "processor": self.processors[lane],
                "dispatch_ms": t, "transfer_ms": transfer, "energy_mj": energy}
        final = None
        if sim.finished:
            final = self._final()
            nxt = None
        else:
            nxt = self._decision()
        return StepOutcome(next=nxt, area_ms=area, energy_mj=energy, op_info=info, final=final)

    def timeline(self, start: int = 0) -> list[dict[str, Any]]:
        if self.sim is None:
            return []
        names = self.sim.graph.nodes
        return [{"request": e.request, "op": names[e.op].name, "processor": self.processors[e.lane],
                 "dispatch_ms": e.dispatch_ms, "start_ms": e.start_ms, "end_ms": e.end_ms,
                 "transfer_ms": e.transfer_ms, "energy_mj": e.energy_mj} for e in self.sim.records[start:]]

    def close(self) -> None:
        self.sim = None

    # ------------------------------------------------------------------ helpers
    def _costs_for(self, mode: str) -> ModeTables:
        c = self._costs.get(mode)
        if c is None:
            c = self._costs[mode] = ModeTables(self.cm.op_costs(self._graph, mode))
        return c

    def _decision(self) -> Decision:
        sim = self.sim
        r, i = sim.pending
        self._inputs_on = inputs_on = sim.input_bytes_on(r, i)
        return Decision(request=r, op=i, now_ms=sim.now, request_elapsed_ms=sim.now - sim.arrivals[r],
                        input_bytes_on=inputs_on, hw_state=sim.hw_state(),
                        power_mode=sim.mode, temperature_c=sim.temp_c, active_requests=sim.n_active)

    def _handoff_ms(self, inputs_on: list[float], lane: int) -> float:
        """Hand-off cost this placement incurs for the op's inputs (cost model, at dispatch)."""
        return sum(self.cm.transfer_ms(b, src, lane) for src, b in enumerate(inputs_on) if src != lane and b > 0)

    def _final(self) -> dict[str, Any]:
        sim = self.sim
        lat = sim.latencies_ms()
        plan = {}
        N = sim.n_ops
        for k, lane in enumerate(sim.loc[:N]):  # the first request's placement is "the plan"
            plan[sim.graph.nodes[k].name] = self.processors[lane]
        return {"latency_ms": lat, "energy_mj": sim.energy_acc / sim.n_requests,
                "energy_total_mj": sim.energy_acc, "plan": plan, "power_mode_end": sim.mode,
                "makespan_ms": sim.now, "temperature_c": sim.temp_c}

    # ------------------------------------------------------------------ pickling by replay
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["sim"] = None
        state["_replay"] = self.sim is not None
        return state

    def __setstate__(self, state: dict) -> None:
        replay = state.pop("_replay", False)
        self.__dict__.update(state)
        if replay and self._graph is not None and self._reset_state is not None:
            bitgen_cls, bitgen_state = self._reset_state
            rng = np.random.Generator(bitgen_cls())
            rng.bit_generator.state = copy.deepcopy(bitgen_state)
            actions = self._actions
            self.reset(graph=self._graph, rng=rng, options=self._options)
            for a in actions:
                self.place(a)
