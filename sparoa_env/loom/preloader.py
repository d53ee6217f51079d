"""Which block variants stay in memory: hotness-based preloading under a budget, and the alternatives.

A *block* is ``(task, k, v)``: block ``k`` of ``task`` in variant ``v``, with its resident weight memory
(:mod:`sparoa_env.loom.blocks`). A block that is not resident when a request needs it is read from
storage first (``mb / load_gbps`` ms on one storage channel, in the simulator).

Hotness (the paper's hot-subgraph preloading). Over a set of SLO states (every combination of the
workload's latency factors and accuracy drops, per task) the *SLO-feasible* stitched variants are those
of the task's candidate set whose predicted accuracy meets the SLO and whose latency alone on some
candidate pipeline meets it. For a block ``b``:

* ``freq(b)``: the share of (state, feasible variant) pairs whose variant uses ``b``;
* ``uniq(b)``: the share of states in which *every* feasible variant uses ``b`` (nothing can replace it);

``hot(b) = freq(b) + uniq(b)``. :func:`select_hot` keeps blocks in decreasing ``hot / mb`` order (ties:
higher hotness) while they fit in the budget. Blocks of no feasible variant are never kept.

Memory policies (what :class:`~sparoa_env.loom.sim.LoomSimulator` calls, ``acquire`` / ``release`` per
block use): :class:`FullPreload` (everything resident), :class:`NoPreload` (load on every use, free after),
:class:`LRUCache` (load on miss, evict the least recently used idle block over the budget),
:class:`PinnedSet` (a fixed preloaded set, e.g. the hot blocks; misses are loaded for the request and freed).
Each tracks ``peak_mb``: the most weight memory resident at once (preloaded, cached and in-flight).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterable, Mapping

import numpy as np

__all__ = ["FullPreload", "NoPreload", "LRUCache", "PinnedSet", "hotness", "select_hot"]

Block = tuple[str, int, int]


class _Policy:
    def __init__(self, load_gbps: float) -> None:
        self.load_gbps = float(load_gbps)
        self.current_mb = 0.0
        self.peak_mb = 0.0
        self.loads = 0
        self.loaded_mb = 0.0

    def _grow(self, mb: float) -> None:
        self.current_mb += mb
        self.peak_mb = max(self.peak_mb, self.current_mb)

    def has(self, block: Block) -> bool:
        """Whether ``acquire(block)`` would cost no loading now (no side effect)."""
        raise NotImplementedError

    def missing_mb(self, blocks: Iterable[Block], weight_mb: np.ndarray) -> float:
        """MB that acquiring ``blocks`` (of one task, ``weight_mb[k, v]``) would load now."""
        return float(sum(weight_mb[b[1], b[2]] for b in blocks if not self.has(b)))

    def _load_ms(self, mb: float) -> float:
        self.loads += 1
        self.loaded_mb += mb
        return mb / self.load_gbps  # MB / (GB/s) = ms


class FullPreload(_Policy):
    def __init__(self, blocks: Mapping[Block, float], load_gbps: float = 1.0) -> None:
        super().__init__(load_gbps)
        self.resident = dict(blocks)
        self._grow(sum(self.resident.values()))

    def has(self, block: Block) -> bool:
        return block in self.resident

    def acquire(self, block: Block, mb: float, now: float) -> float:
        if block in self.resident:
            return 0.0
        self.resident[block] = mb  # outside the preloaded set: load once, keep
        self._grow(mb)
        return self._load_ms(mb)

    def release(self, block: Block, mb: float, now: float) -> None:
        pass


class NoPreload(_Policy):
    def __init__(self, load_gbps: float = 1.0) -> None:
        super().__init__(load_gbps)
        self.in_use: dict[Block, int] = {}

    def has(self, block: Block) -> bool:
        return block in self.in_use

    def acquire(self, block: Block, mb: float, now: float) -> float:
        n = self.in_use.get(block, 0)
        self.in_use[block] = n + 1
        if n:
            return 0.0  # another request is using (has loaded) it
        self._grow(mb)
        return self._load_ms(mb)

    def release(self, block: Block, mb: float, now: float) -> None:
        n = self.in_use[block] - 1
        if n:
            self.in_use[block] = n
        else:
            del self.in_use[block]
            self.current_mb -= mb


class LRUCache(_Policy):
    def __init__(self, budget_mb: float, load_gbps: float = 1.0) -> None:
        super().__init__(load_gbps)
        self.budget_mb = float(budget_mb)
        self.cache: OrderedDict[Block, float] = OrderedDict()
        self.in_use: dict[Block, int] = {}

    def has(self, block: Block) -> bool:
        return block in self.cache

    def acquire(self, block: Block, mb: float, now: float) -> float:
        self.in_use[block] = self.in_use.get(block, 0) + 1
        if block in self.cache:
            self.cache.move_to_end(block)
            return 0.0
        self.cache[block] = mb
        self._grow(mb)
        self._evict()
        return self._load_ms(mb)

    def release(self, block: Block, mb: float, now: float) -> None:
        n = self.in_use[block] - 1
        if n:
            self.in_use[block] = n
        else:
            del self.in_use[block]
        self._evict()

    def _evict(self) -> None:
        for b in list(self.cache):
            if self.current_mb <= self.budget_mb:
                break
            if b not in self.in_use:
                self.current_mb -= self.cache.pop(b)


class PinnedSet(NoPreload):
    """The pinned blocks stay resident; every other block is loaded on demand and freed when unused."""

    def __init__(self, pinned: Mapping[Block, float], load_gbps: float = 1.0) -> None:
        super().__init__(load_gbps)
        self.pinned = dict(pinned)
        self._grow(sum(self.pinned.values()))

    def has(self, block: Block) -> bool:
        return block in self.pinned or block in self.in_use

    def acquire(self, block: Block, mb: float, now: float) -> float:
        return 0.0 if block in self.pinned else super().acquire(block, mb, now)

    def release(self, block: Block, mb: float, now: float) -> None:
        if block not in self.pinned:
            super().release(block, mb, now)


def hotness(task: Any, stitches: np.ndarray, acc_pred: np.ndarray | None, latency_ms: np.ndarray,
            slo_states: Iterable[tuple[float, float | None]], top: int | None = None) -> dict[Block, float]:
    """``freq + uniq`` per block of ``task`` (module docstring). ``latency_ms[i]``: the best latency alone of
    stitched variant ``stitches[i]`` over the candidate pipelines; ``acc_pred[i]`` its predicted accuracy.
    ``top``: count, per state, only the ``top`` fastest feasible variants (those a latency-minded runtime
    picks under contention) instead of every feasible one."""
    K = task.n_blocks
    freq: dict[Block, float] = {}
    uniq: dict[Block, float] = {}
    n_pairs = 0
    states = list(slo_states)
    for lat_slo, acc_slo in states:
        ok = latency_ms <= lat_slo
        if acc_slo is not None and acc_pred is not None:
            ok &= acc_pred >= acc_slo
        idx = np.flatnonzero(ok)
        if top is not None:
            idx = idx[np.argsort(latency_ms[idx], kind="stable")[:top]]
        feas = stitches[idx]
        if len(feas) == 0:
            continue
        n_pairs += len(feas)
        for k in range(K):
            vs, counts = np.unique(feas[:, k], return_counts=True)
            for v, c in zip(vs.tolist(), counts.tolist()):
                b = (task.name, k, v)
                freq[b] = freq.get(b, 0.0) + c
                if c == len(feas):
                    uniq[b] = uniq.get(b, 0.0) + 1
    out = {}
    for b, f in freq.items():
        out[b] = f / max(n_pairs, 1) + uniq.get(b, 0.0) / max(len(states), 1)
    return out


def select_hot(scores: Mapping[Block, float], sizes_mb: Mapping[Block, float], budget_mb: float) -> dict[Block, float]:
    """Greedy knapsack: blocks by decreasing hotness per MB while they fit."""
    order = sorted(scores, key=lambda b: (-scores[b] / max(sizes_mb[b], 1e-6), -scores[b], b))
    kept: dict[Block, float] = {}
    used = 0.0
    for b in order:
        if scores[b] <= 0:
            continue
        if used + sizes_mb[b] <= budget_mb:
            kept[b] = sizes_mb[b]
            used += sizes_mb[b]
    return kept
