"""The model zoo: names, variants as real weight transforms, shipped graphs (fresh, torch-free, FLOPs)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from sparoa_env import zoo
from sparoa_env.graph import OpGraph
from sparoa_env.modelspec import load_graph, parse_model_spec, shipped_graph_path

REQUIRED_MODELS = {"mobilenet_v3_small", "mobilenet_v3_large", "mobilenet_v2", "efficientnet_b0", "resnet18",
                   "resnet50", "vit_tiny", "vit_small", "swin_tiny", "bert_tiny", "bert_base"}
REQUIRED_VARIANTS = {"mobilenet_v3_small@unstructured-0.7", "mobilenet_v3_small@unstructured-0.9",
                     "mobilenet_v3_small@2:4", "resnet50@unstructured-0.9", "resnet18@structured-0.5",
                     "bert_tiny@unstructured-0.8"}
#: zoo specs whose FLOPs identity runs in the fast suite (one per family); the rest are marked slow
FAST_IDENTITY = {"mobilenet_v3_small", "efficientnet_b0", "resnet18", "vit_tiny", "bert_tiny"}


def test_names():
    assert REQUIRED_MODELS <= set(zoo.MODELS)
    assert REQUIRED_VARIANTS <= set(zoo.SHIPPED_VARIANTS)
    assert set(zoo.SHIPPED) == set(zoo.MODELS) | set(zoo.SHIPPED_VARIANTS)


def test_spec_parsing():
    assert zoo.parse_spec("resnet50") == ("resnet50", None)
    assert zoo.parse_spec("resnet50@unstructured-0.90") == ("resnet50", "unstructured-0.9")
    assert zoo.parse_spec("mobilenet_v3_small@2:4") == ("mobilenet_v3_small", "2:4")
    assert zoo.canonical_spec("resnet18@structured-.5") == "resnet18@structured-0.5"
    assert zoo.graph_filename("mobilenet_v3_small@2:4") == "mobilenet_v3_small__2_4.json"
    assert zoo.graph_filename("resnet50@unstructured-0.9") == "resnet50__unstructured-0.9.json"


def test_unknown_names_and_variants_say_what_is_expected():
    with pytest.raises(ValueError) as err:
        zoo.parse_spec("resnet51")
    msg = str(err.value)
    assert "unknown zoo model 'resnet51'" in msg and "did you mean 'resnet50'" in msg
    assert all(name in msg for name in REQUIRED_MODELS)
    with pytest.raises(ValueError, match=r"unknown sparse variant 'sparse-0.5'.*unstructured-P, 2:4, structured-P"):
        zoo.parse_spec("resnet18@sparse-0.5")
    with pytest.raises(ValueError, match=r"fraction in \(0, 1\)"):
        zoo.parse_spec("resnet18@unstructured-1.5")
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        zoo.example_inputs("resnet18", 0)


def test_import_is_torch_free():
    code = textwrap.dedent("""
        import sys
        import sparoa_env, sparoa_env.zoo, sparoa_env.modelspec, sparoa_env.graph
        import sparoa_env.commands.graph, sparoa_env.commands.graphs
        assert "torch" not in sys.modules, "import pulled in torch"
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_load_graph_without_torch():
    """Shipped graphs load with torch unavailable; another batch is scaled, an unshipped variant refused."""
    code = textwrap.dedent("""
        import sys, json
        import sparoa_env.modelspec as ms
        ms.torch_available = lambda: False
        out = {}
        for spec in sys.argv[1:]:
            g = ms.load_graph(spec)
            out[spec] = [g.model, g.batch, len(g.nodes), g.total_flops]
        g4 = ms.load_graph("mobilenet_v3_small", batch=4)
        out["scaled"] = [g4.batch, g4.total_flops, g4.meta.get("batch_scaled_from")]
        try:
            ms.load_graph("resnet18@unstructured-0.33")
        except ValueError as e:
            out["unshipped"] = str(e)
        assert "torch" not in sys.modules, "loading a shipped graph imported torch"
        print(json.dumps(out))
    """)
    specs = list(zoo.SHIPPED)
    proc = subprocess.run([sys.executable, "-c", code, *specs], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for spec in specs:
        model, batch, n, flops = out[spec]
        assert model == spec and batch == 1 and n > 10 and flops > 0
    base = out["mobilenet_v3_small"][3]
    assert out["scaled"] == [4, 4 * base, 1]
    assert "no shipped graph for 'resnet18@unstructured-0.33'" in out["unshipped"]
    assert "torch is not installed" in out["unshipped"]


@pytest.mark.parametrize("spec", zoo.SHIPPED)
def test_shipped_graph_metadata(spec):
    path = shipped_graph_path(spec)
    assert path.is_file(), f"missing {path}: run `sparoa graphs regenerate`"
    g = OpGraph.load(path)
    assert g.model == spec and g.batch == 1
    assert g.meta["source"] == f"extracted with torch.export from zoo:{spec}, seed 0"
    assert g.meta["zoo"]["spec"] == spec and g.meta["zoo"]["seed"] == 0
    assert g.meta["input_shapes"] in ([[1, 3, 224, 224]], [[1, 128]])
    assert g.meta["torch_version"] and g.meta["fallbacks"] == []
    assert g.meta["flop_counter_total"] == g.total_flops


def test_shipped_variants_carry_their_patterns():
    dense = load_graph("mobilenet_v3_small")
    semi = load_graph("mobilenet_v3_small@2:4")
    unstr = load_graph("mobilenet_v3_small@unstructured-0.9")
    assert [n.name for n in semi.nodes] == [n.name for n in dense.nodes]
    assert semi.total_flops == dense.total_flops  # FlopCounterMode counts zeros too
    convs = [n for n in semi.nodes if n.op_type == "aten.convolution"]
    two_four = [n for n in convs if n.sparsity_pattern == "2:4"]
    assert two_four and all(n.weight_sparsity == 0.5 for n in two_four)
    # the RGB stem (3 input channels) and depthwise convs (1 per group) cannot be 2:4: left dense
    assert all(n.sparsity_pattern == "dense" and n.weight_sparsity < 0.01 for n in convs if n not in two_four)
    assert all(n.sparsity_pattern == "unstructured" and abs(n.weight_sparsity - 0.9) < 0.01
               for n in unstr.nodes if n.op_type in ("aten.convolution", "aten.addmm"))
    assert sum(n.sparsity for n in unstr.nodes) > sum(n.sparsity for n in dense.nodes)
    structured = load_graph("resnet18@structured-0.5")
    assert {n.sparsity_pattern for n in structured.nodes if n.op_type == "aten.convolution"} == {"structured"}
    bert = load_graph("bert_tiny@unstructured-0.8")
    assert all(abs(n.weight_sparsity - 0.8) < 1e-4 for n in bert.nodes if n.op_type == "aten.addmm")
    assert {n.sparsity_pattern for n in bert.nodes if n.op_type == "aten.embedding"} == {"dense"}


# ------------------------------------------------------------------------------------------- with torch

def _torch():
    return pytest.importorskip("torch")


def test_variants_transform_the_real_weights():
    torch = _torch()
    nn = torch.nn

    def layers(m):
        return [(n, mod) for n, mod in m.named_modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]

    m, _ = zoo.build("mobilenet_v3_small@unstructured-0.7")
    for name, mod in layers(m):
        w = mod.weight
        assert int((w == 0).sum()) == round(0.7 * w.numel()), name
    assert set(m._sparoa_sparsity_patterns.values()) == {"unstructured"}
    assert len(m._sparoa_sparsity_patterns) == len(layers(m))

    m, _ = zoo.build("mobilenet_v3_small@2:4")
    pruned = m._sparoa_sparsity_patterns
    for name, mod in layers(m):
        w = mod.weight
        if f"{name}.weight" in pruned:
            groups = w.movedim(1, -1).reshape(-1, 4)
            assert bool(((groups == 0).sum(1) >= 2).all()), name
        else:
            assert w.shape[1] % 4 != 0, name  # only layers that cannot be 2:4 are left alone

    m, _ = zoo.build("resnet18@structured-0.5")
    for name, mod in layers(m):
        rows = (mod.weight.flatten(1) == 0).all(1)
        assert int(rows.sum()) == round(0.5 * mod.weight.shape[0]), name


def test_build_is_seeded_and_leaves_the_callers_rng_alone():
    torch = _torch()
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    m1, x1 = zoo.build("bert_tiny")
    after = torch.rand(1)
    assert torch.equal(before, after)
    m2, x2 = zoo.build("bert_tiny")
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert torch.equal(x1[0], x2[0]) and x1[0].shape == (1, 128) and x1[0].dtype == torch.int64
    m3, _ = zoo.build("bert_tiny", seed=1)
    assert not torch.equal(next(iter(m1.parameters())), next(iter(m3.parameters())))
    _, x4 = zoo.build("mobilenet_v3_small", batch=4)
    assert x4[0].shape == (4, 3, 224, 224)


@pytest.mark.parametrize("spec", [s if s in FAST_IDENTITY else pytest.param(s, marks=pytest.mark.slow)
                                  for s in zoo.SHIPPED])
def test_flops_identity_of_shipped_graph(spec):
    """The shipped nodes' FLOPs sum to FlopCounterMode's total for the module's own forward (within 1%)."""
    _torch()
    from sparoa_env.extract import reference_flops

    module, inputs = zoo.build(spec)
    ref = reference_flops(module, inputs)
    total = load_graph(spec).total_flops
    assert abs(total - ref) <= 0.01 * ref, (spec, total, ref)


FAST_STALENESS = ["mobilenet_v3_small@2:4", "bert_tiny"]


@pytest.mark.parametrize("spec", FAST_STALENESS)
def test_shipped_graphs_are_fresh(spec):
    _torch()
    from sparoa_env.commands.graphs import check_one

    assert check_one(spec) == [], f"{spec}: shipped graph is stale, run `sparoa graphs regenerate`"


@pytest.mark.slow
@pytest.mark.parametrize("spec", [s for s in zoo.SHIPPED if s not in FAST_STALENESS])
def test_all_shipped_graphs_are_fresh(spec):
    _torch()
    from sparoa_env.commands.graphs import check_one

    assert check_one(spec, exact=True) == [], f"{spec}: shipped graph is stale, run `sparoa graphs regenerate`"


def test_load_graph_at_another_batch_extracts_with_torch():
    _torch()
    g1 = load_graph("mobilenet_v3_small")
    g2 = load_graph("mobilenet_v3_small", batch=2)
    assert g2.batch == 2 and "batch_scaled_from" not in g2.meta
    assert g2.total_flops == 2 * g1.total_flops
    assert [n.name for n in g2.nodes] == [n.name for n in g1.nodes]
    assert load_graph("mobilenet_v3_small", batch=2) is g2  # cached


def test_model_spec_forms(tmp_path):
    assert parse_model_spec("resnet50@unstructured-0.90").text == "resnet50@unstructured-0.9"
    assert parse_model_spec("graphs/x.json").kind == "json"
    s = parse_model_spec("tests/models_unseen.py:residual_cnn")
    assert (s.kind, str(s.path), s.function) == ("file", "tests/models_unseen.py", "residual_cnn")
    with pytest.raises(ValueError, match="names a Python file but no function"):
        parse_model_spec("tests/models_unseen.py")
    with pytest.raises(ValueError, match="path to an OpGraph .json"):
        parse_model_spec("alexnet")
    with pytest.raises(FileNotFoundError, match="OpGraph file not found"):
        load_graph(str(tmp_path / "none.json"))
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        load_graph("resnet18", batch=0)
