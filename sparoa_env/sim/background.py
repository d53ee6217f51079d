"""Background load: other applications on the SoC taking CPU cores, GPU time and memory bandwidth.

A load is a set of *bursts*. Each burst takes a share of the CPU's cores, a share of the GPU's time and
some DRAM bandwidth until it ends. Static presets hold one burst for the whole episode; the ``dynamic``
preset draws bursts as a Poisson process (Decima-style random arrivals), each with an exponential
duration, and starts every episode in the process's stationary state, so that even a one-request episode
sees a random, realistic load. These are workload parameters, not hardware ones, so they live here and
not in the SoC profile; a custom load is a dict with the fields of :class:`BackgroundSpec`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..presets import from_preset_or_dict

__all__ = ["BackgroundSpec", "BACKGROUND_PRESETS", "background_spec", "Burst", "BackgroundLoad"]


@dataclass(frozen=True)
class BackgroundSpec:
    """Units in the names. Shares are fractions of a processor's capacity; the total is capped at ``max_share``."""

    static_cpu_share: float = 0.0       # cores taken for the whole episode (fraction of active cores)
    static_gpu_share: float = 0.0       # GPU time taken for the whole episode (time-slicing share)
    static_bw_frac: float = 0.0         # DRAM bandwidth taken for the whole episode (fraction of the SoC's)
    burst_rate_per_s: float = 0.0       # arrivals of random bursts (Poisson)
    burst_mean_ms: float = 20.0         # mean burst duration (exponential)
    burst_share_min: float = 0.2        # each burst's share drawn uniformly in [min, max] ...
    burst_share_max: float = 0.8
    burst_cpu_prob: float = 0.5         # ... on the CPU only, the GPU only, or both
    burst_gpu_prob: float = 0.3
    burst_bw_frac_per_share: float = 0.25  # DRAM bandwidth a burst takes per unit of share
    max_share: float = 0.9              # a processor is never fully taken: the OS still schedules us
    # extra static share of named processors only (a dict processor name -> share, e.g. {"cpu1": 0.5}: another
    # application pinned to that lane's cores); added to the CPU / GPU share above, capped at ``max_share``
    lane_share: Any = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "lane_share", _lane_share_pairs(self.lane_share))
        for f in dataclasses.fields(self):
            if f.name == "lane_share":
                continue
            v = getattr(self, f.name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v) or v < 0:
                raise ValueError(f"background: field {f.name!r} must be a finite number >= 0, got {v!r}")
        for name in ("static_cpu_share", "static_gpu_share", "static_bw_frac", "burst_share_min",
                     "burst_share_max", "burst_cpu_prob", "burst_gpu_prob", "max_share"):
            if getattr(self, name) > 1:
                raise ValueError(f"background: field {name!r} must be in [0, 1], got {getattr(self, name)!r}")
        if self.max_share >= 1:
            raise ValueError(f"background: field 'max_share' must be < 1 (a processor is never fully taken: the OS "
                             f"still schedules us, and a full share leaves our op no capacity), got {self.max_share!r}")
        if self.burst_share_min > self.burst_share_max:
            raise ValueError(f"background: burst_share_min ({self.burst_share_min}) > burst_share_max ({self.burst_share_max})")
        if self.burst_cpu_prob + self.burst_gpu_prob > 1:
            raise ValueError("background: burst_cpu_prob + burst_gpu_prob must be <= 1 (the rest hits both)")
        if self.burst_rate_per_s > 0 and self.burst_mean_ms <= 0:
            raise ValueError("background: burst_mean_ms must be > 0 when burst_rate_per_s > 0")

    @property
    def dynamic(self) -> bool:
        return self.burst_rate_per_s > 0

    def lane_extra(self, processors: Any) -> list[float]:
        """The ``lane_share`` of each of ``processors`` (names, lane order); an unknown name is an error."""
        names = list(processors)
        unknown = sorted(set(dict(self.lane_share)) - set(names))
        if unknown:
            raise ValueError(f"background: lane_share names unknown processor(s) {unknown}; processors: {', '.join(names)}")
        d = dict(self.lane_share)
        return [float(d.get(n, 0.0)) for n in names]


def _lane_share_pairs(value: Any) -> tuple[tuple[str, float], ...]:
    """``lane_share`` as sorted (name, share) pairs (hashable) from a dict or pairs; shares in [0, 1]."""
    try:
        items = list(value.items()) if isinstance(value, Mapping) else [tuple(x) for x in value]
        pairs = [(str(k), v) for k, v in items]
    except (TypeError, ValueError):
        raise ValueError(f"background: field 'lane_share' must be a dict processor name -> share, got {value!r}") from None
    for k, v in pairs:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0.0 <= v <= 1.0):
            raise ValueError(f"background: lane_share[{k!r}] must be a share in [0, 1], got {v!r}")
    return tuple(sorted((k, float(v)) for k, v in pairs))


BACKGROUND_PRESETS: dict[str, BackgroundSpec] = {
    "none": BackgroundSpec(),
    # a media/UI process: a quarter of the cores, some GPU composition
    "light": BackgroundSpec(static_cpu_share=0.25, static_gpu_share=0.15, static_bw_frac=0.1),
    # a second DNN or a SLAM pipeline sharing the SoC
    "heavy": BackgroundSpec(static_cpu_share=0.5, static_gpu_share=0.45, static_bw_frac=0.3),
    # random bursts: on average ~1.3 bursts active at any moment, changing every few ms
    "dynamic": BackgroundSpec(burst_rate_per_s=66.0, burst_mean_ms=20.0),
}


def background_spec(value: str | Mapping[str, Any] | BackgroundSpec) -> BackgroundSpec:
    return from_preset_or_dict(value, BackgroundSpec, BACKGROUND_PRESETS, "background")


@dataclass(frozen=True)
class Burst:
    cpu_share: float
    gpu_share: float
    bw_frac: float
    duration_ms: float


def draw_burst(spec: BackgroundSpec, rng: np.random.Generator, duration_ms: float | None = None) -> Burst:
    share = rng.uniform(spec.burst_share_min, spec.burst_share_max)
    u = rng.random()
    on_cpu = u < spec.burst_cpu_prob or u >= spec.burst_cpu_prob + spec.burst_gpu_prob
    on_gpu = u >= spec.burst_cpu_prob
    dur = rng.exponential(spec.burst_mean_ms) if duration_ms is None else duration_ms
    return Burst(share if on_cpu else 0.0, share if on_gpu else 0.0, share * spec.burst_bw_frac_per_share, dur)


class BackgroundLoad:
    """The load other applications put on the SoC over an episode, as SimPy processes.

    ``cpu`` and ``gpu`` are the shares of the CPU's cores and of accelerator time taken, ``bw_frac`` the
    share of DRAM bandwidth; each is capped at ``spec.max_share``. A simulator starts :meth:`start` and
    is called back around every change: ``before()`` while the old load still holds (to integrate its
    accounting up to now), ``after()`` once the new shares are set.
    """

    def __init__(self, spec: BackgroundSpec) -> None:
        self.spec = spec
        self.bursts: list[Burst] = []
        self.cpu = self.gpu = self.bw_frac = 0.0
        self._recompute()

    @property
    def active(self) -> bool:
        s = self.spec
        return s.dynamic or bool(s.static_cpu_share or s.static_gpu_share or s.static_bw_frac)

    def _recompute(self) -> None:
        s, b = self.spec, self.bursts
        self.cpu = min(s.static_cpu_share + sum(x.cpu_share for x in b), s.max_share)
        self.gpu = min(s.static_gpu_share + sum(x.gpu_share for x in b), s.max_share)
        self.bw_frac = min(s.static_bw_frac + sum(x.bw_frac for x in b), s.max_share)

    def start(self, env, rng: np.random.Generator, before=lambda: None, after=lambda: None,
              keep_going=lambda: True) -> None:
        if self.spec.dynamic:
            env.process(self._arrivals(env, rng, before, after, keep_going))

    def _arrivals(self, env, rng, before, after, keep_going):
        spec = self.spec
        # stationary start: the bursts alive at t=0 of an M/M/inf process, remaining durations exponential
        for _ in range(rng.poisson(spec.burst_rate_per_s * spec.burst_mean_ms / 1000.0)):
            env.process(self._burst(env, draw_burst(spec, rng), before, after))
        mean_gap_ms = 1000.0 / spec.burst_rate_per_s
        while keep_going():
            yield env.timeout(rng.exponential(mean_gap_ms))
            env.process(self._burst(env, draw_burst(spec, rng), before, after))

    def _burst(self, env, burst: Burst, before, after):
        before()
        self.bursts.append(burst)
        self._recompute()
        after()
        yield env.timeout(burst.duration_ms)
        before()
        self.bursts.remove(burst)
        self._recompute()
        after()
