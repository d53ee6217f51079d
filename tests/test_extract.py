"""extract_graph on architectures it was never tuned on: FLOPs identity, folding, bytes, sparsities, errors."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from sparoa_env.extract import (  # noqa: E402
    PATTERN_ATTR, ExtractionError, UnanalysedOpWarning, export_program, extract_graph, group_nodes, is_zero_cost,
    reference_flops,
)
from sparoa_env.graph import OpGraph, OpNode  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import models_unseen  # noqa: E402

_CACHE: dict[str, tuple] = {}


def _extracted(name: str):
    """(module, inputs, graph, reference FLOPs), extracted once per test session."""
    if name not in _CACHE:
        module, inputs = models_unseen.UNSEEN[name]()
        _CACHE[name] = (module, inputs, extract_graph(module, inputs, name=name), reference_flops(module, inputs))
    return _CACHE[name]


UNSEEN = sorted(models_unseen.UNSEEN)


@pytest.mark.parametrize("name", UNSEEN)
def test_flops_identity_with_flop_counter(name):
    _, _, g, ref = _extracted(name)
    assert ref > 0
    assert abs(g.total_flops - ref) <= 0.01 * ref, (g.total_flops, ref)
    assert g.meta["flop_counter_total"] == g.total_flops


@pytest.mark.parametrize("name", UNSEEN)
def test_node_fields_follow_the_definitions(name):
    _, _, g, _ = _extracted(name)
    assert g.model == name and len(g) > 3
    for n in g.nodes:
        assert n.sparsity == OpNode.rho(n.weight_sparsity, n.input_sparsity)
        assert n.intensity == OpNode.arithmetic_intensity(n.flops, n.bytes_in, n.bytes_out, n.weight_bytes)
        assert n.bytes_out > 0, n  # every op hands a tensor on
        assert n.bytes_in > 0 or n.weight_bytes > 0 or n.flops == 0, n
        assert n.flops > 0 or n.aux_flops > 0, f"{n.name} ({n.op_type}) carries no work at all"
        assert n.members and n.members.count(n.name) == 1
        assert n.sparsity_pattern == "dense"
    idx = g.index
    assert all(idx[e.src] < idx[e.dst] and e.bytes > 0 for e in g.edges)


@pytest.mark.parametrize("name", UNSEEN)
def test_no_zero_cost_op_is_a_scheduling_step(name):
    _, _, g, _ = _extracted(name)
    zero_cost = {"aten.view", "aten._unsafe_view", "aten.permute", "aten.expand", "aten.t", "aten.transpose",
                 "aten.clone", "aten.alias", "aten.detach", "aten.unsqueeze", "aten.squeeze", "aten.slice",
                 "aten.select", "aten.split", "aten.split_with_sizes", "aten.unbind", "getitem",
                 "aten._assert_tensor_metadata", "aten.as_strided"}
    assert not [n.name for n in g.nodes if n.op_type in zero_cost]
    # ... and no constant-producing op either: arange/full/scalar_tensor are folded into their consumer
    assert not [n.name for n in g.nodes if n.op_type in ("aten.arange", "aten.full", "aten.scalar_tensor")]


def test_groups_partition_the_exported_graph():
    module, inputs = models_unseen.masked_attention()
    ep = export_program(module, inputs)
    groups = group_nodes(ep)
    assert group_nodes(ep) == groups
    call_nodes = [n.name for n in ep.graph_module.graph.nodes if n.op == "call_function"]
    members = [m for g in groups for m in g.members]
    assert sorted(members) == sorted(call_nodes)  # each call_function node in exactly one group
    assert len(set(members)) == len(members)
    by_name = {n.name: n for n in ep.graph_module.graph.nodes}
    for g in groups:
        assert g.name in g.members and not is_zero_cost(by_name[g.name])
    # core ATen after run_decompositions: linear is addmm, SDPA is bmm + softmax
    types = {g.op_type for g in groups}
    assert {"aten.addmm", "aten.bmm", "aten._softmax"} <= types
    # the graph (extracted from an export of its own: deterministic names) uses exactly these groups
    _, _, g, _ = _extracted("masked_attention")
    assert [n.name for n in g.nodes] == [grp.name for grp in groups]
    assert [n.members for n in g.nodes] == [grp.members for grp in groups]


def test_constant_subgraph_is_folded_into_its_first_consumer():
    _, _, g, _ = _extracted("masked_attention")
    owner = {m: n.name for n in g.nodes for m in n.members}
    # the causal mask (arange -> le -> bitwise_not) feeds masked_fill (where): folded into it
    assert owner["arange"] == owner["le"] == owner["bitwise_not"]
    assert g.node(owner["arange"]).op_type == "aten.where"


def test_views_fold_into_producer_or_consumer():
    _, _, g, _ = _extracted("parallel_mlp")
    owner = {m: n.name for n in g.nodes for m in n.members}
    first = g.nodes[0]
    # flatten + split of the graph input read no op's output: they join their first consumer
    assert first.op_type == "aten.addmm" and {"view", "split_with_sizes", "getitem"} <= set(first.members)
    # the transpose of each weight joins its matmul
    assert all(m.startswith(("permute", "view", "split", "getitem", "addmm")) for m in first.members)
    _, _, t, _ = _extracted("transformer_encoder")
    towner = {m: n.name for n in t.nodes for m in n.members}
    # getitem of native_layer_norm's (out, mean, rstd) joins the norm that produced it
    ln = [n for n in t.nodes if n.op_type == "aten.native_layer_norm"][0]
    assert any(towner[m] == ln.name and m.startswith("getitem") for m in towner)
    assert owner  # parallel towers: both towers present
    assert sum(1 for n in g.nodes if n.op_type == "aten.addmm") == 7


def test_extraction_is_deterministic():
    _, _, a, _ = _extracted("squeeze_excite")
    b = extract_graph(*models_unseen.squeeze_excite(), name="squeeze_excite")
    assert a.to_json() == b.to_json()


def test_batch_and_meta():
    _, inputs, g, _ = _extracted("residual_cnn")
    assert g.batch == inputs[0].shape[0] == 2
    assert g.meta["input_shapes"] == [[2, 3, 32, 32]]
    assert g.meta["torch_version"] == torch.__version__
    assert g.meta["source"].startswith("extracted with torch.export")
    _, _, mlp, _ = _extracted("parallel_mlp")
    module, inputs = models_unseen.parallel_mlp(batch=7)
    g7 = extract_graph(module, inputs)
    assert g7.batch == 7 and g7.total_flops == pytest.approx(7 / 4 * mlp.total_flops)


class _KnownSparsity(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 8)
        with torch.no_grad():
            self.fc2.weight[:, :16] = 0  # exactly half of fc2's weight

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def test_weight_and_input_sparsity_are_measured():
    torch.manual_seed(0)
    m = _KnownSparsity().eval()
    x = torch.randn(64, 16)
    g = extract_graph(m, (x,))
    fc2 = g.nodes[-1]
    assert fc2.op_type == "aten.addmm"
    assert fc2.weight_sparsity == 0.5
    expected_in = float((torch.relu(m.fc1(x)) == 0).float().mean())
    assert fc2.input_sparsity == pytest.approx(expected_in, abs=1e-9)
    assert 0.3 < fc2.input_sparsity < 0.7
    assert fc2.sparsity == pytest.approx(1 - 0.5 * (1 - expected_in))
    fc1 = g.nodes[0]
    assert fc1.weight_sparsity == 0.0 and fc1.input_sparsity == 0.0
    assert fc1.flops == 2 * 64 * 16 * 32
    assert fc1.weight_bytes == (16 * 32 + 32) * 4
    assert fc1.bytes_in == 64 * 16 * 4 and fc1.bytes_out == 64 * 32 * 4
    relu = g.nodes[1]
    assert relu.flops == 0 and relu.aux_flops == 64 * 32


def test_sparsity_pattern_comes_from_the_module():
    m = _KnownSparsity().eval()
    setattr(m, PATTERN_ATTR, {"fc2.weight": "2:4"})
    g = extract_graph(m, (torch.randn(4, 16),))
    assert [n.sparsity_pattern for n in g.nodes] == ["dense", "dense", "2:4"]


def test_bytes_count_shared_storage_once():
    class ViewTwice(nn.Module):
        def forward(self, x):
            y = torch.relu(x)
            return y.view(-1) * 2, y + 1

    g = extract_graph(ViewTwice(), (torch.randn(8, 8),))
    relu = g.node("relu")
    assert relu.bytes_out == 8 * 8 * 4  # y and view(y) share storage


# ------------------------------------------------------------------------------------- errors, fallbacks

@torch.library.custom_op("sparoa_test::mystery_matmul", mutates_args=())
def _mystery(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x @ w


@_mystery.register_fake
def _(x, w):
    return x.new_empty(x.shape[0], w.shape[1])


class _WithCustomOp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 4))
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.relu(_mystery(x, self.w)))


def test_unanalysable_op_is_a_documented_fallback_not_a_silent_zero():
    m, x = _WithCustomOp().eval(), (torch.randn(3, 8),)
    with pytest.warns(UnanalysedOpWarning, match="sparoa_test.mystery_matmul"):
        g = extract_graph(m, x)
    [fb] = g.meta["fallbacks"]
    assert fb["op_type"] == "sparoa_test.mystery_matmul" and "no FLOP formula" in fb["reason"]
    node = g.node(fb["group"])
    assert node.flops == 0 and node.aux_flops == 3 * 8  # one op per element of its (3, 8) input
    assert g.total_flops == reference_flops(m, x)  # the identity still holds
    with pytest.raises(ExtractionError, match="cannot analyse op mystery_matmul"):
        extract_graph(m, x, strict=True)


def test_clean_models_record_no_fallbacks():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnanalysedOpWarning)
        _, _, g, _ = _extracted("depthwise_cnn")
    assert g.meta["fallbacks"] == []


def test_not_a_module():
    with pytest.raises(ExtractionError, match="expected a torch.nn.Module.*got str"):
        extract_graph("resnet", (torch.zeros(1),))
    with pytest.raises(ExtractionError, match="expected example_inputs to be a tuple"):
        extract_graph(nn.Linear(2, 2), {"x": torch.zeros(2)})


def test_untraceable_module_gets_a_clear_error():
    class DataDependent(nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                return x * 2
            return x - 1

    with pytest.raises(ExtractionError, match="torch.export could not trace DataDependent"):
        extract_graph(DataDependent(), (torch.randn(4),))


def test_wrong_inputs_name_the_failing_op():
    m = _WithCustomOp().eval()
    with pytest.raises(ExtractionError, match="at node mystery_matmul"):
        extract_graph(m, (torch.randn(3, 5),))


def test_a_module_without_ops():
    class Identity(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ExtractionError, match="no operators"):
        extract_graph(Identity(), (torch.randn(2),))


def test_view_only_module_still_gets_one_group():
    class OnlyViews(nn.Module):
        def forward(self, x):
            return x.view(-1).t() if x.dim() == 2 else x.view(-1)

    g = extract_graph(OnlyViews(), (torch.randn(2, 3),))
    assert len(g) == 1 and g.nodes[0].flops == 0


def test_round_trip_of_an_extracted_graph():
    _, _, g, _ = _extracted("branching_cnn")
    assert OpGraph.from_json(g.to_json()) == g
