"""OpGraph: exact JSON round trip, networkx view, validation errors that name file, field and value."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import pytest

from sparoa_env.graph import Edge, GraphFormatError, OpGraph, OpNode, graphs_equal

GRAPH_DIR = Path(__file__).resolve().parents[1] / "sparoa_env" / "data" / "graphs"
SHIPPED_FILES = sorted(GRAPH_DIR.glob("*.json"))


def _node(name: str, flops: float = 1.0e6, ws: float = 0.25, ins: float = 0.1, **kw) -> OpNode:
    bytes_in, bytes_out, wb = 4096.0, 2048.0, 1000.0
    return OpNode(name=name, op_type=kw.pop("op_type", "aten.convolution"), flops=flops, bytes_in=bytes_in,
                  bytes_out=bytes_out, weight_bytes=wb, weight_sparsity=ws, input_sparsity=ins,
                  sparsity=OpNode.rho(ws, ins), intensity=OpNode.arithmetic_intensity(flops, bytes_in, bytes_out, wb),
                  out_shape=kw.pop("out_shape", (1, 8, 4, 4)), **kw)


def _toy() -> OpGraph:
    nodes = (_node("a", aux_flops=12.5, members=("view", "a")), _node("b", ws=1 / 3, ins=0.1 + 0.2),
             _node("c", flops=0.0, op_type="aten.add", sparsity_pattern="2:4", dtype="float16"),
             _node("d", out_shape=()))
    edges = (Edge("a", "b", 2048.0), Edge("a", "c", 2048.0), Edge("b", "c", 1e-7 + 2048.0), Edge("c", "d", 3.0))
    return OpGraph("toy", 2, nodes, edges, {"source": "hand-written", "nested": {"k": [1, 2.5, None]}})


def test_round_trip_is_exact():
    g = _toy()
    text = g.to_json()
    back = OpGraph.from_json(text)
    assert back == g
    assert back.to_json() == text
    assert graphs_equal(back, g)
    # awkward floats survive bit for bit
    assert back.node("b").weight_sparsity == 1 / 3
    assert back.node("b").input_sparsity == 0.1 + 0.2
    assert back.node("d").out_shape == ()


def test_save_load_round_trip(tmp_path):
    g = _toy()
    p = tmp_path / "toy.json"
    g.save(p)
    back = OpGraph.load(p)
    assert back == g
    back.save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == p.read_text()


@pytest.mark.parametrize("path", SHIPPED_FILES, ids=[p.stem for p in SHIPPED_FILES])
def test_shipped_files_round_trip_byte_for_byte(path):
    g = OpGraph.load(path)
    assert g.to_json() + "\n" == path.read_text()


def test_networkx_view():
    g = _toy()
    d = g.to_networkx()
    assert isinstance(d, nx.DiGraph)
    assert list(d.nodes) == [n.name for n in g.nodes]
    assert d.number_of_edges() == len(g.edges)
    assert nx.is_directed_acyclic_graph(d)
    assert d.edges["b", "c"]["bytes"] == 1e-7 + 2048.0
    assert d.nodes["c"]["op_type"] == "aten.add" and d.nodes["c"]["sparsity_pattern"] == "2:4"
    assert d.nodes["a"]["members"] == ["view", "a"]
    assert d.graph == {"model": "toy", "batch": 2}
    pos = {n: i for i, n in enumerate(d.nodes)}
    assert all(pos[u] < pos[v] for u, v in d.edges)  # nodes are in a topological order


def test_networkx_view_of_a_shipped_graph():
    g = OpGraph.load(GRAPH_DIR / "resnet18.json")
    d = g.to_networkx()
    assert nx.is_directed_acyclic_graph(d)
    assert d.number_of_nodes() == len(g) and d.number_of_edges() == len(g.edges)
    order = list(nx.topological_sort(d))
    assert set(order) == set(g.index)
    # residual connections: some op has two predecessors
    assert max(len(p) for p in g.predecessors) >= 2


def test_structure_helpers():
    g = _toy()
    assert g.index == {"a": 0, "b": 1, "c": 2, "d": 3}
    assert g.predecessors[2] == (0, 1) and g.successors[0] == (1, 2)
    assert g.edge_bytes[(2, 3)] == 3.0
    assert g.total_flops == 3.0e6
    with pytest.raises(KeyError, match="no op named 'zz'"):
        g.node("zz")
    assert g.features["flops"].tolist() == [1e6, 1e6, 0.0, 1e6]


def test_with_batch_scaled():
    g = _toy()
    s = g.with_batch_scaled(4)
    assert s.batch == 4 and s.meta["batch_scaled_from"] == 2
    assert s.node("a").flops == 2 * g.node("a").flops
    assert s.node("a").weight_bytes == g.node("a").weight_bytes
    assert s.edges[0].bytes == 2 * g.edges[0].bytes
    assert g.with_batch_scaled(2) is g


# ------------------------------------------------------------------------------------------- validation

def _write(tmp_path: Path, d) -> Path:
    p = tmp_path / "broken.json"
    p.write_text(json.dumps(d) if not isinstance(d, str) else d)
    return p


def _good() -> dict:
    return _toy().to_dict()


def _set(path: str, value):
    def mutate(d: dict) -> dict:
        keys = path.split(".")
        target = d
        for k in keys[:-1]:
            target = target[int(k)] if k.isdigit() else target[k]
        last = keys[-1]
        if value is _DELETE:
            del target[int(last) if last.isdigit() else last]
        else:
            target[int(last) if last.isdigit() else last] = value
        return d
    return mutate


_DELETE = object()

BROKEN = [
    ("missing-nodes", _set("nodes", _DELETE), ["missing field 'nodes'"]),
    ("unknown-top-field", _set("colour", "red"), ["unknown field(s) ['colour']"]),
    ("nodes-not-list", _set("nodes", {"a": 1}), ["field 'nodes' must be a list", "dict"]),
    ("batch-zero", _set("batch", 0), ["'batch'", "positive integer", "0"]),
    ("batch-string", _set("batch", "1"), ["'batch'", "'1'"]),
    ("node-missing-flops", _set("nodes.1.flops", _DELETE), ["nodes[1] (b)", "missing field(s) ['flops']"]),
    ("node-unknown-field", _set("nodes.0.latency", 3), ["nodes[0] (a)", "unknown field(s) ['latency']"]),
    ("weight-sparsity-range", _set("nodes.2.weight_sparsity", 1.5), ["nodes[2] (c)", "'weight_sparsity'", "[0, 1]", "1.5"]),
    ("negative-flops", _set("nodes.0.flops", -5), ["nodes[0] (a)", "'flops'", ">= 0", "-5"]),
    ("flops-string", _set("nodes.0.flops", "many"), ["nodes[0].flops", "'many'"]),
    ("bad-shape", _set("nodes.3.out_shape", [1, "x"]), ["nodes[3] (d)", "'out_shape'", "[1, 'x']"]),
    ("bad-pattern", _set("nodes.2.sparsity_pattern", "3:7"), ["nodes[2] (c)", "'sparsity_pattern'", "'3:7'"]),
    ("duplicate-name", _set("nodes.1.name", "a"), ["duplicate node name 'a'", "nodes[0]", "nodes[1]"]),
    ("edge-unknown-node", _set("edges.0.dst", "nope"), ["edges[0]", "'dst'", "'nope'"]),
    ("edge-backwards", _set("edges.3", {"src": "d", "dst": "a", "bytes": 1.0}), ["edges[3]", "'d' -> 'a'", "topological"]),
    ("edge-extra-key", _set("edges.0.weight", 1), ["edges[0]", "'src', 'dst', 'bytes'"]),
    ("edge-negative-bytes", _set("edges.1.bytes", -1.0), ["edges[1]", "'bytes'", "-1.0"]),
]


@pytest.mark.parametrize("mutate,expected", [(m, e) for _, m, e in BROKEN], ids=[i for i, _, _ in BROKEN])
def test_malformed_files_get_clear_errors(tmp_path, mutate, expected):
    p = _write(tmp_path, mutate(_good()))
    with pytest.raises(GraphFormatError) as err:
        OpGraph.load(p)
    msg = str(err.value)
    assert str(p) in msg, msg
    for fragment in expected:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"


def test_not_json_and_not_an_object(tmp_path):
    with pytest.raises(GraphFormatError, match="broken.json: not valid JSON"):
        OpGraph.load(_write(tmp_path, "{nodes: ]"))
    with pytest.raises(GraphFormatError, match="expected a JSON object .* got list"):
        OpGraph.load(_write(tmp_path, "[1, 2]"))


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="OpGraph file not found: .*nowhere.json"):
        OpGraph.load(tmp_path / "nowhere.json")


def test_constructor_validates_too():
    with pytest.raises(GraphFormatError, match="duplicate node name 'a'"):
        OpGraph("bad", 1, (_node("a"), _node("a")), ())
    with pytest.raises(GraphFormatError, match="positive integer"):
        OpGraph("bad", 0, (_node("a"),), ())
