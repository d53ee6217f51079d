"""Small OpGraphs built without torch, for simulator and environment tests."""

from __future__ import annotations

from sparoa_env.graph import Edge, OpGraph, OpNode


def op(name: str, flops: float, nbytes: float, *, op_type: str = "aten.convolution", weight_bytes: float = 0.0,
       weight_sparsity: float = 0.0, input_sparsity: float = 0.0, pattern: str = "dense",
       aux_flops: float = 0.0) -> OpNode:
    bytes_in = bytes_out = nbytes / 2
    return OpNode(name=name, op_type=op_type, flops=flops, bytes_in=bytes_in, bytes_out=bytes_out,
                  weight_bytes=weight_bytes, weight_sparsity=weight_sparsity, input_sparsity=input_sparsity,
                  sparsity=OpNode.rho(weight_sparsity, input_sparsity),
                  intensity=OpNode.arithmetic_intensity(flops, bytes_in, bytes_out, weight_bytes),
                  out_shape=(1, 64, 8, 8), aux_flops=aux_flops, sparsity_pattern=pattern)


def chain(n: int, flops: float = 2e8, nbytes: float = 4e5, name: str = "chain", **kw) -> OpGraph:
    nodes = [op(f"op{i}", flops, nbytes, **kw) for i in range(n)]
    edges = [Edge(f"op{i}", f"op{i + 1}", nbytes / 2) for i in range(n - 1)]
    return OpGraph(name, 1, nodes, edges, {"source": "synthetic chain for tests"})


def diamond(flops: float = 2e8, nbytes: float = 4e5) -> OpGraph:
    """a -> (b, c) -> d: two independent branches that can overlap on two processors."""
    nodes = [op(x, flops, nbytes) for x in "abcd"]
    edges = [Edge("a", "b", nbytes / 2), Edge("a", "c", nbytes / 2), Edge("b", "d", nbytes / 2), Edge("c", "d", nbytes / 2)]
    return OpGraph("diamond", 1, nodes, edges, {"source": "synthetic diamond for tests"})


def mixed(n_blocks: int = 6) -> OpGraph:
    """Conv / elementwise / pooled blocks with varied sizes and sparsity, with residual edges."""
    nodes, edges = [], []
    prev = None
    for b in range(n_blocks):
        big = 1e9 if b % 2 == 0 else 2e7
        names = [f"b{b}_conv", f"b{b}_relu", f"b{b}_add"]
        nodes.append(op(names[0], big, 8e5, weight_bytes=2e5, weight_sparsity=0.9 if b % 3 == 0 else 0.0,
                        pattern="unstructured" if b % 3 == 0 else "dense"))
        nodes.append(op(names[1], 0.0, 8e5, op_type="aten.relu", aux_flops=1e5))
        nodes.append(op(names[2], 0.0, 1.2e6, op_type="aten.add", aux_flops=1e5, input_sparsity=0.5))
        edges += [Edge(names[0], names[1], 4e5), Edge(names[1], names[2], 4e5)]
        if prev is not None:
            edges += [Edge(prev, names[0], 4e5), Edge(prev, names[2], 4e5)]
        prev = names[2]
    return OpGraph("mixed", 1, nodes, edges, {"source": "synthetic blocks for tests"})
