"""The shipped SparseLoom tables as numpy arrays (no torch): what the optimizer, the preloader, the
simulator and the environment read.

``sparoa loom build`` writes ``sparoa_env/data/loom/{blocks.json, costs-<profile>.json, accuracy/*.json}``
(:mod:`sparoa_env.loom.build`); :func:`load_catalog` reads them for one profile and power mode.

* accuracy: measured held-out accuracy of every stitched variant of the small tasks (``None`` for the
  large zoo models, which have random weights: they carry latency and memory only);
* latency: simulated, from the cost model on each block variant's graph (:mod:`sparoa_env.loom.blocks`).

A *placement* gives the processor (lane) of each block. :func:`pipelines` lists the pipelines the
optimizer considers: the blocks cut into contiguous stages, each stage on a different processor, in any
processor order (``gpu -> cpu -> npu``...). :meth:`LoomTask.solo_latency_ms` is a request's latency alone
on the SoC, and :meth:`LoomTask.busy_ms` the time it occupies each processor; the simulator adds
queueing, contention and weight loading on top.
"""

from __future__ import annotations

import functools
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..costmodel import CostModel
from ..profile import SocProfile, load_profile

__all__ = ["LoomTask", "Catalog", "load_catalog", "pipelines", "DATA_DIR", "ADAPTER_KINDS", "PROFILES"]

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "loom"
ADAPTER_KINDS = ("quantize", "dequantize", "cast")
_DTYPE_BYTES = {"float32": 4, "float16": 2, "int8": 1}
#: the profiles ``sparoa loom build`` writes cost tables for
PROFILES = ("orin-agx", "intel-core-ultra")


def _adapter(src: str, dst: str) -> int:
    if src == dst:
        return -1
    if dst == "int8":
        return 0
    if src == "int8":
        return 1
    return 2


@functools.lru_cache(maxsize=16)
def pipelines(n_blocks: int, n_lanes: int) -> tuple[tuple[int, ...], ...]:
    """Placements whose blocks form contiguous stages on distinct processors, in every processor order."""
    out = []
    for n_stages in range(1, min(n_blocks, n_lanes) + 1):
        for cuts in itertools.combinations(range(1, n_blocks), n_stages - 1):
            bounds = (0,) + cuts + (n_blocks,)
            for lanes in itertools.permutations(range(n_lanes), n_stages):
                pl = []
                for s in range(n_stages):
                    pl += [lanes[s]] * (bounds[s + 1] - bounds[s])
                out.append(tuple(pl))
    return tuple(out)


@dataclass(eq=False)
class LoomTask:
    """One task's block variants on one SoC in one power mode. Arrays: ``(K, V, P)`` unless noted."""

    name: str
    kind: str                      # "small" (measured accuracy) | "large" (latency only)
    variants: tuple[str, ...]
    dtypes: tuple[str, ...]
    lat_ms: np.ndarray             # block variant alone on each processor (host + device)
    compute_ms: np.ndarray
    memory_ms: np.ndarray
    fixed_ms: np.ndarray
    traffic_mb: np.ndarray
    weight_mb: np.ndarray          # (K, V) resident weights
    sparsity: np.ndarray           # (K, V) weight sparsity of the block's MAC layers
    boundary_bytes: np.ndarray     # (K + 1,) float32 bytes entering block k (k = K: the output)
    adapter_ms: np.ndarray         # (K + 1, 3, P): quantize / dequantize / cast in front of block k
    accuracy: np.ndarray | None    # (V ** K,) measured held-out accuracy, index = stitch.index_of
    n_test: int
    cm: CostModel = field(repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def n_blocks(self) -> int:
        return self.lat_ms.shape[0]

    @property
    def n_variants(self) -> int:
        return self.lat_ms.shape[1]

    @property
    def n_lanes(self) -> int:
        return self.lat_ms.shape[2]

    def check(self, stitch: Sequence[int], placement: Sequence[int] | None = None) -> None:
        """Raise ``ValueError`` unless ``stitch`` has one variant index in ``[0, n_variants)`` per block and
        ``placement`` (if given) one processor index in ``[0, n_lanes)`` per block. Length and range checks
        only: cheap enough for the loops of the optimizer and the estimator."""
        K = self.lat_ms.shape[0]
        if len(stitch) != K or (placement is not None and len(placement) != K):
            raise ValueError(f"task {self.name!r} has {K} blocks: stitch and placement need one entry each, got stitch "
                             f"{tuple(stitch)}" + ("" if placement is None else f" and placement {tuple(placement)}"))
        V = self.lat_ms.shape[1]
        for v in stitch:
            if not (isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and 0 <= v < V):
                raise ValueError(f"task {self.name!r}: stitch {tuple(stitch)} out of range: variant indices are "
                                 f"integers in [0, {V}), got {v!r}")
        if placement is not None:
            P = self.lat_ms.shape[2]
            for p in placement:
                if not (isinstance(p, (int, np.integer)) and not isinstance(p, (bool, np.bool_)) and 0 <= p < P):
                    raise ValueError(f"task {self.name!r}: placement {tuple(placement)} out of range: processor "
                                     f"indices are integers in [0, {P}), got {p!r}")

    def index(self, stitch: Sequence[int]) -> int:
        """Index of a stitched variant (validated, :meth:`check`) in the ``V ** K`` tables."""
        self.check(stitch)
        i = 0
        for v in stitch:
            i = i * self.n_variants + int(v)
        return i

    def stitch_of(self, index: int) -> tuple[int, ...]:
        if not (isinstance(index, (int, np.integer)) and 0 <= index < self.n_variants ** self.n_blocks):
            raise ValueError(f"task {self.name!r}: stitched-variant index {index!r} out of range "
                             f"[0, {self.n_variants ** self.n_blocks})")
        out = []
        for _ in range(self.n_blocks):
            index, r = divmod(int(index), self.n_variants)
            out.append(r)
        return tuple(reversed(out))

    def acc(self, stitch: Sequence[int]) -> float | None:
        return None if self.accuracy is None else float(self.accuracy[self.index(stitch)])

    def uniform(self, v: int) -> tuple[int, ...]:
        return (v,) * self.n_blocks

    def memory_mb(self, stitch: Sequence[int]) -> float:
        return float(sum(self.weight_mb[k, v] for k, v in enumerate(stitch)))

    def _xfer(self, nbytes: float, src: int, dst: int) -> float:
        return self.cm.transfer_ms(nbytes, src, dst)

    def stages(self, stitch: Sequence[int], placement: Sequence[int]) -> list[tuple[int, float, float]]:
        """Per block: (lane, transfer ms before it, adapter + block ms on its lane) when run alone; the
        output's adapter and hand-back to lane 0 are in a last entry ``(-1, transfer, adapter)``."""
        self.check(stitch, placement)
        out = []
        loc, dtype = 0, "float32"
        for k, (v, lane) in enumerate(zip(stitch, placement)):
            nbytes = self.boundary_bytes[k] * _DTYPE_BYTES[dtype] / 4.0
            xfer = self._xfer(nbytes, loc, lane)
            a = _adapter(dtype, self.dtypes[v])
            work = self.lat_ms[k, v, lane] + (self.adapter_ms[k, a, lane] if a >= 0 else 0.0)
            out.append((int(lane), float(xfer), float(work)))
            loc, dtype = lane, self.dtypes[v]
        a = _adapter(dtype, "float32")
        tail = self.adapter_ms[self.n_blocks, a, loc] if a >= 0 else 0.0
        out.append((-1, float(self._xfer(self.boundary_bytes[-1], loc, 0)), float(tail)))
        return out

    def solo_latency_ms(self, stitch: Sequence[int], placement: Sequence[int]) -> float:
        return float(sum(x + w for _, x, w in self.stages(stitch, placement)))

    def busy_ms(self, stitch: Sequence[int], placement: Sequence[int]) -> np.ndarray:
        """Time the request occupies each processor (its blocks and adapters; the output adapter on the last)."""
        busy = np.zeros(self.n_lanes)
        st = self.stages(stitch, placement)
        for lane, _, w in st[:-1]:
            busy[lane] += w
        busy[st[-2][0]] += st[-1][2]
        return busy

    def all_latencies(self, placement: Sequence[int]) -> np.ndarray:
        """Solo latency of every stitched variant (``(V ** K,)``, index order) under one placement (cached)."""
        key = ("lat", tuple(placement))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        self.check(self.uniform(0), placement)
        K, V = self.n_blocks, self.n_variants
        # prefix by prefix: a prefix's output dtype is that of its last block (index % V)
        lat = np.zeros(1)
        loc_prev = 0
        for k in range(K):
            lane = placement[k]
            last = np.arange(lat.size) % V if k > 0 else np.zeros(1, dtype=int)
            src_dtypes = list(self.dtypes) if k > 0 else ["float32"]
            new = np.empty((lat.size, V))
            for v in range(V):
                add = np.empty(lat.size)
                for j, sd in enumerate(src_dtypes):
                    nbytes = self.boundary_bytes[k] * _DTYPE_BYTES[sd] / 4.0
                    a = _adapter(sd, self.dtypes[v])
                    add[last == j] = self._xfer(nbytes, loc_prev, lane) + self.lat_ms[k, v, lane] + (
                        self.adapter_ms[k, a, lane] if a >= 0 else 0.0)
                new[:, v] = lat + add
            lat = new.reshape(-1)
            loc_prev = lane
        last = np.arange(lat.size) % V
        for j in range(V):
            a = _adapter(self.dtypes[j], "float32")
            tail = (self.adapter_ms[K, a, loc_prev] if a >= 0 else 0.0) + self._xfer(self.boundary_bytes[-1], loc_prev, 0)
            lat[last == j] += tail
        lat.setflags(write=False)
        self._cache[key] = lat
        return lat

    def all_memory(self) -> np.ndarray:
        hit = self._cache.get("mem")
        if hit is None:
            m = np.zeros(1)
            for k in range(self.n_blocks):
                m = (m[:, None] + self.weight_mb[k][None, :]).reshape(-1)
            m.setflags(write=False)
            hit = self._cache["mem"] = m
        return hit


@dataclass(eq=False)
class Catalog:
    profile: SocProfile
    mode: str
    tasks: dict[str, LoomTask]
    cm: CostModel
    provenance: dict[str, str]

    @property
    def processors(self) -> tuple[str, ...]:
        return self.profile.processor_names

    def task(self, name: str) -> LoomTask:
        try:
            return self.tasks[name]
        except KeyError:
            raise ValueError(f"unknown loom task {name!r}; valid: {', '.join(self.tasks)}") from None


def _read(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"SparseLoom table {path} is missing; regenerate with `sparoa loom build` "
                                f"(it writes the tables of profiles {', '.join(PROFILES)})")
    return json.loads(path.read_text())


@functools.lru_cache(maxsize=8)
def _load_raw(profile: str, data_dir: str) -> tuple[Any, Any, dict]:
    d = Path(data_dir)
    blocks = _read(d / "blocks.json")
    costs = _read(d / f"costs-{profile}.json")
    acc = {name: _read(d / "accuracy" / f"{name}.json") for name, t in blocks["tasks"].items() if t["kind"] == "small"}
    return blocks, costs, acc


def load_catalog(profile: str = "orin-agx", mode: str | None = None, *, tasks: Sequence[str] | None = None,
                 data_dir: Path = DATA_DIR) -> Catalog:
    """The loom tables of ``profile`` (a shipped profile name) at power ``mode`` (default: the profile's)."""
    prof = load_profile(profile)
    if prof.name not in PROFILES and not (Path(data_dir) / f"costs-{prof.name}.json").is_file():
        raise ValueError(f"profile {prof.name!r} has no SparseLoom cost tables: `sparoa loom build` writes them for "
                         f"{', '.join(PROFILES)} only (SparseLoom-Orin-v0, SparseLoom-CoreUltra-v0)")
    mode = mode or prof.default_power_mode
    prof.mode(mode)  # raises naming the valid modes
    blocks, costs, accs = _load_raw(prof.name, str(data_dir))
    cm = CostModel(prof)
    names = list(tasks) if tasks is not None else list(blocks["tasks"])
    out = {}
    P = len(prof.processors)
    for name in names:
        if name not in blocks["tasks"]:
            raise ValueError(f"unknown loom task {name!r}; valid: {', '.join(blocks['tasks'])}")
        b, c = blocks["tasks"][name], costs["tasks"][name]
        K, V = len(b["blocks"]), len(blocks["variants"])

        def arr(key: str) -> np.ndarray:
            return np.array([[c["blocks"][k][v][mode][key] for v in range(V)] for k in range(K)], dtype=np.float64)

        adapters = np.array([[c["adapters"][k][kind][mode] for kind in ADAPTER_KINDS] for k in range(K + 1)])
        a = accs.get(name)
        accuracy = None if a is None else np.asarray(a["correct"], dtype=np.float64) / a["n_test"]
        out[name] = LoomTask(
            name=name, kind=b["kind"], variants=tuple(blocks["variants"]),
            dtypes=tuple(b["blocks"][0]["variants"][v]["dtype"] for v in range(V)),
            lat_ms=arr("lat_ms"), compute_ms=arr("compute_ms"), memory_ms=arr("memory_ms"),
            fixed_ms=arr("fixed_ms"), traffic_mb=arr("traffic_mb"),
            weight_mb=np.array([[b["blocks"][k]["variants"][v]["weight_mb"] for v in range(V)] for k in range(K)]),
            sparsity=np.array([[b["blocks"][k]["variants"][v]["weight_sparsity"] for v in range(V)] for k in range(K)]),
            boundary_bytes=np.array([b["input_bytes"]] + list(b["boundary_bytes"]) + [b["output_bytes"]], dtype=np.float64),
            adapter_ms=adapters.reshape(K + 1, len(ADAPTER_KINDS), P), accuracy=accuracy,
            n_test=0 if a is None else int(a["n_test"]), cm=cm)
    prov = {"blocks": blocks["provenance"], "latency": costs["source"]}
    prov.update({f"accuracy:{n}": a["provenance"] for n, a in accs.items()})
    return Catalog(prof, mode, out, cm, prov)
