"""The Backend protocol: what :class:`sparoa_env.envs.SparOAEnv` calls, whichever backend it holds.

The environment never asks which backend it has (DESIGN section 5, STYLE 1). A backend runs one
episode as a sequence of *decisions*: it advances (simulated or real) time until an operator of some
request can be dispatched, reports that operator and the hardware state as a :class:`Decision`, and
waits for :meth:`Backend.place` to say on which processor it runs.

Reward bookkeeping is the backend's job, because only it knows the exact time line: every
:class:`StepOutcome` carries ``area_ms``, the integral of the number of unfinished (arrived, not
completed) requests over the interval since the previous decision (ms x requests), and ``energy_mj``,
the energy spent in that interval. The environment's reward is ``-(area_ms + energy_weight *
energy_mj)``; summed over an episode the first term is exactly minus the sum of the requests'
end-to-end latencies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from .graph import OpGraph

__all__ = ["Decision", "StepOutcome", "Backend", "RequestStream", "HW_STATE_FIELDS", "make_backend", "BACKENDS",
           "option_number", "option_bool"]

#: Per-processor hardware-state entries, in the order a backend writes them into ``Decision.hw_state``
#: (a ``(n_processors, len(HW_STATE_FIELDS))`` float array). Units in the names; fractions in [0, 1].
HW_STATE_FIELDS = (
    "utilisation",       # share of the last window the processor was busy (ours or background)
    "freq_frac",         # current clock / the profile's highest clock for that processor
    "cores_frac",        # active cores available to us / the processor's cores (1 for a GPU)
    "queue_len",         # ops dispatched to it and not finished
    "time_to_free_ms",   # until its queue of already-dispatched work drains (estimate)
    "background_frac",   # share of its capacity taken by other applications
)


@dataclass(slots=True)  # built once per step: not frozen, whose __init__ costs ~2 us more
class Decision:
    """An operator waiting for a processor, and the state of the machine at that moment."""

    request: int                  # request id (0-based, in arrival order)
    op: int                       # index of the node in the graph
    now_ms: float                 # current (simulated or measured) time since the episode began
    request_elapsed_ms: float     # now - arrival of this request
    input_bytes_on: Sequence[float]  # (n_processors,) bytes of this op's inputs resident on each processor
    hw_state: Sequence[float] | np.ndarray  # HW_STATE_FIELDS per processor: a (n_processors, n_fields)
                                  # array, or the same flattened lane-major (a list is cheapest)
    power_mode: str = ""
    temperature_c: float = float("nan")
    active_requests: int = 1      # requests arrived and not yet finished


@dataclass(slots=True)
class StepOutcome:
    """What happened between one decision and the next (or the end of the episode)."""

    next: Decision | None         # None when every request has completed
    area_ms: float                # integral of unfinished requests over the interval (ms x requests)
    energy_mj: float              # energy spent in the interval, all processors, mJ
    op_info: dict[str, Any]       # the op just placed: processor, start_ms, end_ms, transfer_ms, energy_mj
    final: dict[str, Any] | None = None  # at the end: latency_ms (per request), energy_mj (per inference), plan, ...
    events: list[tuple] = field(default_factory=list)  # optional event log entries in the interval


@runtime_checkable
class Backend(Protocol):
    """Runs episodes of one model on one SoC; the environment's only view of the hardware."""

    #: processor names in lane order (lane 0 is the CPU, lane 1 the accelerator)
    processors: tuple[str, ...]
    #: True when the same seed cannot replay the same trajectory (real hardware)
    nondeterministic: bool

    def reset(self, *, graph: OpGraph, rng: np.random.Generator, options: dict[str, Any] | None = None) -> Decision:
        """Start an episode; return the first decision."""
        ...

    def place(self, processor: int) -> StepOutcome:
        """Dispatch the pending decision's op to ``processors[processor]`` and run to the next decision."""
        ...

    def timeline(self, start: int = 0) -> list[dict[str, Any]]:
        """Executed ops so far, from the ``start``-th on, in completion order: dicts with request, op,
        processor, start_ms, end_ms, transfer_ms, energy_mj (for info and render)."""
        ...

    def close(self) -> None:
        ...


@dataclass(frozen=True)
class RequestStream:
    """The inference requests of one episode: ``n`` requests, the first at t=0, the rest arriving with
    exponential (``poisson=True``) or fixed inter-arrival gaps of mean ``interarrival_ms``."""

    n: int = 1
    interarrival_ms: float = 0.0
    poisson: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"requests: 'n' must be a positive integer, got {self.n!r}")
        ia = self.interarrival_ms
        if isinstance(ia, bool) or not isinstance(ia, (int, float)) or not (ia >= 0.0) or ia == float("inf"):
            raise ValueError(f"requests: 'interarrival_ms' must be a finite number >= 0, got {self.interarrival_ms!r}")
        if not isinstance(self.poisson, (bool, np.bool_)):
            raise ValueError(f"requests: 'poisson' must be true or false, got {self.poisson!r}")

    def arrivals_ms(self, rng: np.random.Generator) -> np.ndarray:
        if self.n == 1 or self.interarrival_ms == 0.0:
            return np.zeros(self.n)
        gaps = rng.exponential(self.interarrival_ms, self.n - 1) if self.poisson else np.full(self.n - 1, self.interarrival_ms)
        return np.concatenate([[0.0], np.cumsum(gaps)])

    @classmethod
    def parse(cls, value: "int | dict | RequestStream") -> "RequestStream":
        """``4`` -> 4 back-to-back requests; ``{"n": 8, "interarrival_ms": 5.0, "poisson": False}``."""
        if isinstance(value, RequestStream):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(n=value)
        if isinstance(value, dict):
            unknown = set(value) - {"n", "interarrival_ms", "poisson"}
            if unknown:
                raise ValueError(f"requests: unknown key(s) {sorted(unknown)}; valid keys: n, interarrival_ms, poisson")
            return cls(**value)
        raise ValueError(f"requests must be a positive int or a dict with keys n, interarrival_ms, poisson; got {value!r}")


BACKENDS = ("sim", "hw")


def option_number(options: dict[str, Any], key: str, default: Any, owner: str, *, integer: bool = False,
                  lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Any:
    """``options[key]`` (or ``default``) checked to be a finite number (an int with ``integer``) in
    ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``); a ValueError naming ``owner``, the option and the value."""
    v = options.get(key, default)
    if v is None:
        return None
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if integer:
        ok = ok and float(v).is_integer()
    rng = ""
    if ok and lo is not None and (v <= lo if lo_open else v < lo):
        ok = False
    if ok and hi is not None and v > hi:
        ok = False
    if not ok:
        kind = "an integer" if integer else "a finite number"
        if lo is not None or hi is not None:
            rng = (f" {'>' if lo_open else '>='} {lo:g}" if lo is not None else "") + \
                  (f"{' and' if lo is not None else ''} <= {hi:g}" if hi is not None else "")
        raise ValueError(f"{owner}: {key} must be {kind}{rng}, got {v!r}")
    return int(v) if integer else float(v)


def option_bool(options: dict[str, Any], key: str, default: bool, owner: str) -> bool:
    """``options[key]`` (or ``default``) checked to be True or False."""
    v = options.get(key, default)
    if not isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{owner}: {key} must be true or false, got {v!r}")
    return bool(v)


def make_backend(kind: str, **kwargs: Any) -> Backend:
    """Build a backend by name: ``"sim"`` (SimPy SoC model) or ``"hw"`` (real torch ops).

    The environment calls it as ``make_backend(kind, profile=SocProfile, model=<model spec str>,
    batch=int, power_mode=str, background=str, requests=RequestStream, **backend_options)``; each backend
    takes what it needs (the hw backend also ``device_map``) and rejects unknown options with a clear error.
    """
    if kind == "sim":
        from .sim.backend import SimBackend

        return SimBackend(**kwargs)
    if kind == "hw":
        from .hw.backend import HwBackend

        return HwBackend(**kwargs)
    raise ValueError(f"unknown backend {kind!r}; valid backends: {', '.join(BACKENDS)}")
