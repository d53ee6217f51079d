"""Operator graphs: the torch-free description of a DNN that the simulator, the environments and the
agents work on.

An :class:`OpGraph` is what :func:`sparoa_env.extract.extract_graph` produces from a real torch model
(ATen-level ops from ``torch.export``), and what ships as JSON under ``sparoa_env/data/graphs`` so that
``gym.make`` never needs torch. Nodes are kept in a topological order; ``edges`` carry the bytes of the
tensor that flows from ``src`` to ``dst``.

Definitions (DESIGN section 4):

* ``sparsity`` (rho) = 1 - (1 - weight_sparsity) * (1 - input_sparsity): the share of multiply-accumulates
  with a zero operand, zeros counted on the real weights and on the activations of a sample input.
* ``intensity`` (I) = flops / (bytes_in + bytes_out + weight_bytes), FLOP per byte (roofline arithmetic
  intensity). ``flops`` follows ``torch.utils.flop_counter`` (2 FLOPs per MAC for matmul/conv, 0 for
  elementwise ops); elementwise work is counted separately in ``aux_flops``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["OpNode", "Edge", "OpGraph", "GraphFormatError", "SPARSITY_PATTERNS"]

SCHEMA_VERSION = 1
SPARSITY_PATTERNS = ("dense", "unstructured", "2:4", "structured")


class GraphFormatError(ValueError):
    """A graph file or dict is malformed; the message names the file, the field and the value."""


@dataclass(frozen=True)
class OpNode:
    """One schedulable operator (an ATen op, with the zero-cost view ops around it folded in).

    Units: FLOPs, bytes; sparsities are fractions in [0, 1]; intensity in FLOP/byte.
    """

    name: str
    op_type: str
    flops: float
    bytes_in: float
    bytes_out: float
    weight_bytes: float
    weight_sparsity: float
    input_sparsity: float
    sparsity: float
    intensity: float
    out_shape: tuple[int, ...]
    aux_flops: float = 0.0
    sparsity_pattern: str = "dense"
    dtype: str = "float32"
    members: tuple[str, ...] = ()

    @staticmethod
    def rho(weight_sparsity: float, input_sparsity: float) -> float:
        return 1.0 - (1.0 - weight_sparsity) * (1.0 - input_sparsity)

    @staticmethod
    def arithmetic_intensity(flops: float, bytes_in: float, bytes_out: float, weight_bytes: float) -> float:
        total = bytes_in + bytes_out + weight_bytes
        return flops / total if total > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["out_shape"] = list(self.out_shape)
        d["members"] = list(self.members)
        return d


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    bytes: float


_NODE_FIELDS = {f.name: f for f in dataclasses.fields(OpNode)}
_REQUIRED_NODE_FIELDS = [n for n, f in _NODE_FIELDS.items()
                         if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
_FRACTION_FIELDS = ("weight_sparsity", "input_sparsity", "sparsity")
_NONNEG_FIELDS = ("flops", "bytes_in", "bytes_out", "weight_bytes", "intensity", "aux_flops")


@dataclass(frozen=True)
class OpGraph:
    """A model's operators in topological order plus the tensor edges between them."""

    model: str
    batch: int
    nodes: tuple[OpNode, ...]
    edges: tuple[Edge, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "edges", tuple(self.edges))
        object.__setattr__(self, "meta", dict(self.meta))
        self.validate()

    # ------------------------------------------------------------------ structure
    def __len__(self) -> int:
        return len(self.nodes)

    @cached_property
    def index(self) -> dict[str, int]:
        return {n.name: i for i, n in enumerate(self.nodes)}

    @cached_property
    def predecessors(self) -> tuple[tuple[int, ...], ...]:
        preds: list[list[int]] = [[] for _ in self.nodes]
        for e in self.edges:
            preds[self.index[e.dst]].append(self.index[e.src])
        return tuple(tuple(p) for p in preds)

    @cached_property
    def successors(self) -> tuple[tuple[int, ...], ...]:
        succs: list[list[int]] = [[] for _ in self.nodes]
        for e in self.edges:
            succs[self.index[e.src]].append(self.index[e.dst])
        return tuple(tuple(s) for s in succs)

    @cached_property
    def edge_bytes(self) -> dict[tuple[int, int], float]:
        return {(self.index[e.src], self.index[e.dst]): e.bytes for e in self.edges}

    def node(self, name: str) -> OpNode:
        try:
            return self.nodes[self.index[name]]
        except KeyError:
            raise KeyError(f"graph {self.model!r} has no op named {name!r}") from None

    @cached_property
    def features(self) -> dict[str, np.ndarray]:
        """Per-node numeric columns as float64 arrays (cached; used by the cost model and observations)."""
        cols = ("flops", "aux_flops", "bytes_in", "bytes_out", "weight_bytes", "weight_sparsity",
                "input_sparsity", "sparsity", "intensity")
        return {c: np.array([getattr(n, c) for n in self.nodes], dtype=np.float64) for c in cols}

    @property
    def total_flops(self) -> float:
        return float(sum(n.flops for n in self.nodes))

    def to_networkx(self):
        """A ``networkx.DiGraph`` view: node attributes are the OpNode fields, edges carry ``bytes``."""
        import networkx as nx

        g = nx.DiGraph(model=self.model, batch=self.batch)
        for n in self.nodes:
            g.add_node(n.name, **n.to_dict())
        for e in self.edges:
            g.add_edge(e.src, e.dst, bytes=e.bytes)
        return g

    # ------------------------------------------------------------------ validation
    def validate(self, source: str = "<graph>") -> None:
        where = f"{source}: " if source != "<graph>" else ""
        if not isinstance(self.batch, int) or self.batch < 1:
            raise GraphFormatError(f"{where}field 'batch' must be a positive integer, got {self.batch!r}")
        seen: dict[str, int] = {}
        for i, n in enumerate(self.nodes):
            if n.name in seen:
                raise GraphFormatError(f"{where}duplicate node name {n.name!r} (nodes[{seen[n.name]}] and nodes[{i}])")
            seen[n.name] = i
            for f in _NONNEG_FIELDS:
                v = getattr(n, f)
                if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                    raise GraphFormatError(f"{where}nodes[{i}] ({n.name}): field {f!r} must be a finite number >= 0, got {v!r}")
            for f in _FRACTION_FIELDS:
                v = getattr(n, f)
                if not isinstance(v, (int, float)) or not (0.0 <= v <= 1.0):
                    raise GraphFormatError(f"{where}nodes[{i}] ({n.name}): field {f!r} must be in [0, 1], got {v!r}")
            if n.sparsity_pattern not in SPARSITY_PATTERNS:
                raise GraphFormatError(f"{where}nodes[{i}] ({n.name}): field 'sparsity_pattern' must be one of "
                                       f"{SPARSITY_PATTERNS}, got {n.sparsity_pattern!r}")
        for j, e in enumerate(self.edges):
            for end in ("src", "dst"):
                if getattr(e, end) not in seen:
                    raise GraphFormatError(f"{where}edges[{j}]: field {end!r} names unknown node {getattr(e, end)!r}")
            if seen[e.src] >= seen[e.dst]:
                raise GraphFormatError(f"{where}edges[{j}]: {e.src!r} -> {e.dst!r} goes against the topological "
                                       f"order of 'nodes' (nodes must be listed in topological order)")
            if not math.isfinite(e.bytes) or e.bytes < 0:
                raise GraphFormatError(f"{where}edges[{j}]: field 'bytes' must be a finite number >= 0, got {e.bytes!r}")

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "batch": self.batch,
            "meta": dict(self.meta),
            "nodes": [n.to_dict() for n in self.nodes],
            "edges": [{"src": e.src, "dst": e.dst, "bytes": e.bytes} for e in self.edges],
        }

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "<graph>") -> "OpGraph":
        where = f"{source}: "
        if not isinstance(d, Mapping):
            raise GraphFormatError(f"{where}expected a JSON object with 'model', 'batch', 'nodes', 'edges', got {type(d).__name__}")
        for key in ("model", "batch", "nodes", "edges"):
            if key not in d:
                raise GraphFormatError(f"{where}missing field {key!r}")
        unknown = set(d) - {"schema_version", "model", "batch", "meta", "nodes", "edges"}
        if unknown:
            raise GraphFormatError(f"{where}unknown field(s) {sorted(unknown)}")
        nodes = [cls._node_from_dict(nd, i, where) for i, nd in enumerate(_as_list(d["nodes"], "nodes", where))]
        edges = []
        for j, ed in enumerate(_as_list(d["edges"], "edges", where)):
            if not isinstance(ed, Mapping) or set(ed) != {"src", "dst", "bytes"}:
                raise GraphFormatError(f"{where}edges[{j}] must be an object with exactly 'src', 'dst', 'bytes', got {ed!r}")
            edges.append(Edge(str(ed["src"]), str(ed["dst"]), _number(ed["bytes"], f"edges[{j}].bytes", where)))
        batch = d["batch"]
        if isinstance(batch, bool) or not isinstance(batch, int):
            raise GraphFormatError(f"{where}field 'batch' must be a positive integer, got {batch!r}")
        g = object.__new__(cls)
        object.__setattr__(g, "model", str(d["model"]))
        object.__setattr__(g, "batch", batch)
        object.__setattr__(g, "nodes", tuple(nodes))
        object.__setattr__(g, "edges", tuple(edges))
        object.__setattr__(g, "meta", dict(d.get("meta") or {}))
        g.validate(source)
        return g

    @staticmethod
    def _node_from_dict(nd: Any, i: int, where: str) -> OpNode:
        if not isinstance(nd, Mapping):
            raise GraphFormatError(f"{where}nodes[{i}] must be an object, got {nd!r}")
        missing = [k for k in _REQUIRED_NODE_FIELDS if k not in nd]
        if missing:
            raise GraphFormatError(f"{where}nodes[{i}] ({nd.get('name', '?')}): missing field(s) {missing}")
        unknown = set(nd) - set(_NODE_FIELDS)
        if unknown:
            raise GraphFormatError(f"{where}nodes[{i}] ({nd.get('name', '?')}): unknown field(s) {sorted(unknown)}")
        kw: dict[str, Any] = {}
        for k, v in nd.items():
            if k in ("name", "op_type", "sparsity_pattern", "dtype"):
                if not isinstance(v, str):
                    raise GraphFormatError(f"{where}nodes[{i}]: field {k!r} must be a string, got {v!r}")
                kw[k] = v
            elif k == "out_shape":
                if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
                    raise GraphFormatError(f"{where}nodes[{i}] ({nd['name']}): field 'out_shape' must be a list of integers, got {v!r}")
                kw[k] = tuple(v)
            elif k == "members":
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    raise GraphFormatError(f"{where}nodes[{i}] ({nd['name']}): field 'members' must be a list of strings, got {v!r}")
                kw[k] = tuple(v)
            else:
                kw[k] = _number(v, f"nodes[{i}].{k}", where)
        return OpNode(**kw)

    @classmethod
    def from_json(cls, text: str, source: str = "<graph>") -> "OpGraph":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise GraphFormatError(f"{source}: not valid JSON ({e})") from None
        return cls.from_dict(d, source)

    @classmethod
    def load(cls, path: str | Path) -> "OpGraph":
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"OpGraph file not found: {p}")
        return cls.from_json(p.read_text(), source=str(p))

    def with_batch_scaled(self, batch: int) -> "OpGraph":
        """The same graph at another batch size, scaling activations and FLOPs linearly (weights fixed).

        An approximation for shipped graphs; extract at the real batch size when torch is at hand.
        """
        if batch == self.batch:
            return self
        s = batch / self.batch
        nodes = []
        for n in self.nodes:
            flops, bin_, bout = n.flops * s, n.bytes_in * s, n.bytes_out * s
            shape = n.out_shape
            if shape and shape[0] == self.batch:
                shape = (batch,) + tuple(shape[1:])
            nodes.append(dataclasses.replace(
                n, flops=flops, aux_flops=n.aux_flops * s, bytes_in=bin_, bytes_out=bout, out_shape=shape,
                intensity=OpNode.arithmetic_intensity(flops, bin_, bout, n.weight_bytes)))
        edges = [Edge(e.src, e.dst, e.bytes * s) for e in self.edges]
        meta = dict(self.meta, batch_scaled_from=self.batch)
        return OpGraph(self.model, batch, tuple(nodes), tuple(edges), meta)


def _as_list(v: Any, name: str, where: str) -> list:
    if not isinstance(v, list):
        raise GraphFormatError(f"{where}field {name!r} must be a list, got {type(v).__name__}")
    return v


def _number(v: Any, name: str, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise GraphFormatError(f"{where}field {name!r} must be a number, got {v!r}")
    return float(v)


def graphs_equal(a: OpGraph, b: OpGraph) -> bool:
    return a.to_dict() == b.to_dict()


