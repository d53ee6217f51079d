"""A hand-checkable SoC for simulator tests: constant op times, no thermal or bandwidth effects.

Duck-types the parts of SocProfile / CostModel that the simulator reads, so that event logs can be
asserted to the microsecond (SimPy's own tests assert on logs the same way).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np


@dataclass
class FakeCosts:
    compute_ms: np.ndarray
    memory_ms: np.ndarray
    fixed_ms: np.ndarray
    host_ms: np.ndarray

    @property
    def nominal_ms(self) -> np.ndarray:
        return np.maximum(self.compute_ms, self.memory_ms) + self.fixed_ms


@dataclass
class FakeSoc:
    """CPU (synchronous worker) + GPU (async stream). Per-op device time ``dev_ms[lane]``, host cost
    ``host_ms[lane]``, hand-off ``xfer_ms`` per cross-lane transfer (plus ``first_switch_ms`` at a request's
    first), power ``busy_w`` per busy lane."""

    dev_ms: tuple[float, float] = (2.0, 1.0)
    host_ms: tuple[float, float] = (0.01, 0.02)
    xfer_ms: float = 0.05
    first_switch_ms: float = 0.0
    idle_w: float = 1.0
    busy_w: tuple[float, float] = (2.0, 4.0)
    modes: dict = field(default_factory=lambda: {"FAST": 1.0, "SLOW": 0.5})

    def __post_init__(self):
        procs = (SimpleNamespace(name="cpu", kind="cpu", cores=4, max_freq_mhz=1000.0, async_dispatch=False),
                 SimpleNamespace(name="gpu", kind="gpu", cores=1, max_freq_mhz=1000.0, async_dispatch=True))
        self.profile = SimpleNamespace(
            name="fake", processors=procs, processor_names=("cpu", "gpu"),
            power_modes={m: None for m in self.modes},
            thermal=SimpleNamespace(ambient_c=25.0, throttle_start_c=90.0),
            cost_rules=SimpleNamespace(host_freq_exponent=1.0),
            mode=lambda m: SimpleNamespace(cores={"cpu": 4, "gpu": 1},
                                           max_freq_mhz={"cpu": 1000.0 * self.modes[m], "gpu": 1000.0 * self.modes[m]}))

    # --- CostModel surface
    def op_costs(self, graph, mode):
        n = len(graph.nodes)
        f = self.modes[mode]
        comp = np.tile(np.array(self.dev_ms) / f, (n, 1))
        return FakeCosts(comp, np.zeros((n, 2)), np.zeros((n, 2)), np.tile(np.array(self.host_ms), (n, 1)))

    def dram_bw_gbps(self, mode):
        return 1e9

    def achievable_bw_gbps(self, proc, mode):
        return 1.0

    def combine(self, compute_ms, memory_ms, fixed_ms, speed=1.0, bw_share=1.0):
        return max(compute_ms / speed, memory_ms / bw_share) + fixed_ms

    def speed_factor(self, proc, mode, freq_mhz=None, cores=None):
        s = 1.0 if freq_mhz is None else freq_mhz / (1000.0 * self.modes[mode])
        if cores is not None:
            s *= cores / 4.0
        return s

    def transfer_ms(self, nbytes, src, dst):
        return 0.0 if src == dst else self.xfer_ms

    def power_w(self, proc, mode, util, freq_frac):
        return self.busy_w[proc] * util

    def idle_power_w(self, mode):
        return self.idle_w

    def thermal_step(self, temp_c, power_w, dt_s):
        return temp_c

    def throttle_freq_frac(self, temp_c):
        return 1.0
