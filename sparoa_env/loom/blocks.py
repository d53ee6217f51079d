"""Block graphs and their simulated costs (numpy only, no torch).

* :func:`segment` cuts a model's :class:`~sparoa_env.graph.OpGraph` into ``K`` aligned blocks: contiguous
  runs of its topological order with about equal FLOPs. The bytes that cross cut ``k`` (every edge from
  a block ``<= k`` to a block ``> k``, residual edges included) are what moves when block ``k`` and block
  ``k + 1`` run on different processors.
* :func:`variant_graph` turns a dense block graph into the graph of one variant: the MAC ops (FLOPs and
  weights) get the variant's ``weight_sparsity`` and ``sparsity_pattern`` (the measured fraction of
  zeros for the small tasks; for the large zoo models the pruning level, which is what
  :func:`sparoa_env.zoo.apply_variant` produces on every conv/linear weight), and a float16 / int8
  variant sets ``OpNode.dtype`` on every op and scales activation and weight bytes by the element size
  (2 or 1 byte instead of 4). The cost model then prices it (sparsity curves, ``dtype_speedup``).
* :func:`adapter_graph`: the one-op graph of a dtype adapter (quantize / dequantize / cast) at a boundary.
* :func:`block_costs`: per processor, the block's latency alone at a power mode's nominal state
  (:meth:`CostModel.serial_latency_ms`: host dispatch and device time, op after op) and the sums of its
  compute / memory / fixed components, from which the simulator re-rates it under contention.

Weight memory of a block variant (what the preloader keeps resident): the dtype's bytes; a structured
variant stores the surviving channels only (``1 - P``); an unstructured one is stored compressed (values
plus 16-bit indices: ``(1 - sparsity) * 1.5`` of the dense bytes, when that is smaller). These are
storage assumptions, stated here and in ``docs/loom.md``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from ..graph import Edge, OpGraph, OpNode

__all__ = ["segment", "variant_graph", "adapter_graph", "block_costs", "weight_mb", "DTYPE_BYTES", "is_mac"]

DTYPE_BYTES = {"float32": 4, "float16": 2, "int8": 1}
ADAPTER_OPS = {"quantize": "aten.quantize_per_tensor", "dequantize": "aten.dequantize", "cast": "aten._to_copy"}


def is_mac(n: OpNode) -> bool:
    return n.flops > 0 and n.weight_bytes > 0


def segment(graph: OpGraph, k: int) -> tuple[list[OpGraph], list[float]]:
    """``k`` block graphs of about equal FLOPs and the bytes crossing each of the ``k - 1`` cuts."""
    n = len(graph)
    if not 1 <= k <= n:
        raise ValueError(f"cannot cut a graph of {n} ops into {k} blocks")
    w = np.array([max(nd.flops, 1.0) for nd in graph.nodes])
    cum = np.cumsum(w) / w.sum()
    cuts = [0]
    for j in range(1, k):
        c = int(np.searchsorted(cum, j / k)) + 1
        c = min(max(c, cuts[-1] + 1), n - (k - j))
        cuts.append(c)
    cuts.append(n)
    block_of = np.zeros(n, dtype=int)
    for b in range(k):
        block_of[cuts[b]:cuts[b + 1]] = b
    blocks = []
    for b in range(k):
        names = {nd.name for nd in graph.nodes[cuts[b]:cuts[b + 1]]}
        edges = [e for e in graph.edges if e.src in names and e.dst in names]
        blocks.append(OpGraph(f"{graph.model}[block {b}]", graph.batch, graph.nodes[cuts[b]:cuts[b + 1]], edges,
                              {"source": f"block {b} of {k} of {graph.model}"}))
    crossing = [0.0] * (k - 1)
    idx = graph.index
    for e in graph.edges:
        a, z = block_of[idx[e.src]], block_of[idx[e.dst]]
        for c in range(a, z):
            crossing[c] += e.bytes
    return blocks, crossing


def variant_graph(block: OpGraph, *, dtype: str, pattern: str, weight_sparsity: float) -> OpGraph:
    """The block's graph for one variant (module docstring)."""
    scale = DTYPE_BYTES[dtype] / 4.0
    nodes = []
    for nd in block.nodes:
        kw: dict[str, Any] = {}
        if is_mac(nd) and pattern != "dense":
            kw["weight_sparsity"] = float(weight_sparsity)
            kw["sparsity_pattern"] = pattern
            kw["sparsity"] = OpNode.rho(weight_sparsity, nd.input_sparsity)
        if dtype != "float32" and nd.dtype in ("float32", "float"):
            kw.update(dtype=dtype, bytes_in=nd.bytes_in * scale, bytes_out=nd.bytes_out * scale,
                      weight_bytes=nd.weight_bytes * scale)
        if kw:
            nd = dataclasses.replace(nd, **kw)
            nd = dataclasses.replace(nd, intensity=OpNode.arithmetic_intensity(nd.flops, nd.bytes_in, nd.bytes_out,
                                                                             nd.weight_bytes))
        nodes.append(nd)
    edges = [Edge(e.src, e.dst, e.bytes * scale) for e in block.edges]
    return OpGraph(block.model, block.batch, nodes, edges, dict(block.meta))


def adapter_graph(kind: str, nbytes_fp32: float, batch: int) -> OpGraph:
    """One adapter op converting a boundary tensor of ``nbytes_fp32`` float32 bytes."""
    numel = nbytes_fp32 / 4.0
    src, dst = {"quantize": (4, 1), "dequantize": (1, 4), "cast": (4, 2)}[kind]
    bin_, bout = numel * src, numel * dst
    nd = OpNode(name=f"adapter_{kind}", op_type=ADAPTER_OPS[kind], flops=0.0, bytes_in=bin_, bytes_out=bout,
                weight_bytes=0.0, weight_sparsity=0.0, input_sparsity=0.0, sparsity=0.0, intensity=0.0,
                out_shape=(batch, max(int(numel // max(batch, 1)), 1)), aux_flops=numel,
                dtype="int8" if kind == "quantize" else "float32")
    return OpGraph(f"adapter-{kind}", batch, (nd,), (), {"source": "loom adapter"})


def block_costs(cm: Any, graph: OpGraph, mode: str) -> dict[str, list[float]]:
    """Per processor: ``lat_ms`` alone (host + device, op after op) and the summed components."""
    costs = cm.op_costs(graph, mode)
    P = cm.n_processors
    return {
        "lat_ms": [cm.serial_latency_ms(costs, p) for p in range(P)],
        "compute_ms": costs.compute_ms.sum(axis=0).tolist(),
        "memory_ms": costs.memory_ms.sum(axis=0).tolist(),
        "fixed_ms": costs.fixed_ms.sum(axis=0).tolist(),
        "traffic_mb": (costs.traffic_bytes.sum(axis=0) / 1e6).tolist(),
    }


def weight_mb(block: OpGraph, *, dtype: str, pattern: str, weight_sparsity: float, level: float) -> float:
    """Resident weight memory of one block variant in MB (module docstring)."""
    total = 0.0
    for nd in block.nodes:
        b = nd.weight_bytes * DTYPE_BYTES[dtype] / 4.0
        if is_mac(nd):
            if pattern == "structured":
                b *= 1.0 - level
            elif pattern == "unstructured":
                b *= min(1.0, (1.0 - weight_sparsity) * 1.5)
        total += b
    return total / 1e6


def boundary_mb(nbytes_fp32: float, dtype: str) -> float:
    return nbytes_fp32 * DTYPE_BYTES[dtype] / 4.0 / 1e6


def _finite(xs: Sequence[float]) -> bool:
    return all(math.isfinite(x) for x in xs)
