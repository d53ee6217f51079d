"""``sparoa graph`` and ``sparoa graphs``: table, JSON, plot, the three MODEL forms and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparoa_env import cli, zoo
from sparoa_env.graph import OpGraph
from sparoa_env.modelspec import shipped_graph_path

TESTS = Path(__file__).resolve().parent
UNSEEN = TESTS / "models_unseen.py"
NODE_KEYS = {"name", "op_type", "flops", "bytes_in", "bytes_out", "weight_bytes", "weight_sparsity",
             "input_sparsity", "sparsity", "intensity", "out_shape"}


@pytest.fixture(autouse=True)
def only_graph_commands(monkeypatch):
    """Exercise cli.main with just these two commands, independent of the other command modules."""
    monkeypatch.setattr(cli, "COMMANDS", {k: v for k, v in cli.COMMANDS.items() if k in ("graph", "graphs")})


def sparoa(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_table(capsys):
    rc, out, err = sparoa(capsys, "graph", "mobilenet_v3_small")
    assert rc == 0, err
    g = OpGraph.load(shipped_graph_path("mobilenet_v3_small"))
    lines = out.splitlines()
    assert lines[0].startswith(f"mobilenet_v3_small  batch 1  {len(g)} operators")
    assert "source: extracted with torch.export from zoo:mobilenet_v3_small, seed 0" in out
    header = next(line for line in lines if line.lstrip().startswith("#"))
    for col in ("name", "op_type", "out_shape", "MFLOP", "in KB", "out KB", "w KB", "w_sp", "in_sp", "rho", "I"):
        assert col in header
    assert sum(1 for line in lines if " convolution " in line) == sum(
        1 for n in g.nodes if n.op_type == "aten.convolution")
    assert f"total: {g.total_flops / 1e9:.4f} GFLOP" in out


def test_json_is_the_opgraph(capsys):
    rc, out, _ = sparoa(capsys, "graph", "resnet18@structured-0.5", "--json")
    assert rc == 0
    d = json.loads(out)
    assert {"model", "batch", "nodes", "edges"} <= set(d)
    assert d["model"] == "resnet18@structured-0.5" and d["batch"] == 1
    assert all(NODE_KEYS <= set(n) for n in d["nodes"])
    assert all(set(e) == {"src", "dst", "bytes"} for e in d["edges"])
    assert OpGraph.from_dict(d) == OpGraph.load(shipped_graph_path("resnet18@structured-0.5"))


def test_plot_with_json_keeps_stdout_clean(capsys, tmp_path):
    png = tmp_path / "rho_i.png"
    rc, out, err = sparoa(capsys, "graph", "mobilenet_v3_small", "--json", "--plot", str(png))
    assert rc == 0
    json.loads(out)
    assert f"to {png}" in err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_plot_figure_contents():
    pytest.importorskip("matplotlib")
    from sparoa_env.plots import default_intensity_threshold, rho_intensity_scatter

    g = OpGraph.load(shipped_graph_path("mobilenet_v3_small@unstructured-0.7"))
    fig = rho_intensity_scatter(g, rho_threshold=0.6, intensity_threshold=2.0)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(label.startswith("convolution (") for label in labels)
    quadrant_texts = [t.get_text() for t in ax.texts if "bound" in t.get_text()]
    assert len(quadrant_texts) == 4
    assert sum(int(t.rsplit("(", 1)[1].rstrip(")")) for t in quadrant_texts) == len(g)
    assert sum(len(c.get_offsets()) for c in ax.collections) == len(g)  # every op drawn once
    assert default_intensity_threshold(g) > 0
    with pytest.raises(ValueError, match="rho threshold must be in"):
        rho_intensity_scatter(g, rho_threshold=2.0)


def test_json_file_as_model(capsys, tmp_path):
    p = tmp_path / "mine.json"
    OpGraph.load(shipped_graph_path("bert_tiny")).save(p)
    rc, out, _ = sparoa(capsys, "graph", str(p), "--json")
    assert rc == 0 and json.loads(out)["model"] == "bert_tiny"


def test_python_function_as_model(capsys):
    pytest.importorskip("torch")
    rc, out, err = sparoa(capsys, "graph", f"{UNSEEN}:parallel_mlp", "--batch", "3", "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["model"] == "models_unseen.py:parallel_mlp" and d["batch"] == 3
    assert d["meta"]["input_shapes"] == [[3, 8, 8]]


@pytest.mark.parametrize("argv,expected", [
    (["graph", "mobilenet_v4"], ["unknown zoo model 'mobilenet_v4'", "mobilenet_v3_small", "bert_base",
                                 "OpGraph .json"]),
    (["graph", "resnet18@pruned"], ["unknown sparse variant 'pruned'", "unstructured-P"]),
    (["graph", "no/such/graph.json"], ["OpGraph file not found: no/such/graph.json"]),
    (["graph", "no_such_file.py:build"], ["model file not found: no_such_file.py", "(module, example_inputs)"]),
    (["graph", f"{UNSEEN}:nope"], ["has no function 'nope'", "residual_cnn"]),
    (["graph", f"{UNSEEN}:returns_a_string"], ["returns_a_string must return (module, example_inputs)",
                                               "torch.nn.Module first; got str"]),
    (["graph", f"{UNSEEN}:returns_one_thing"], ["must return (module, example_inputs)", "Linear"]),
    (["graph", str(UNSEEN)], ["names a Python file but no function"]),
    (["graph", f"{UNSEEN}:"], ["names a Python file but no function"]),
    (["graph", f"{UNSEEN}:raises_inside"], ["calling ", "models_unseen.py:raises_inside() failed: "
                                            "RuntimeError: no weights for this batch"]),
    (["graph", f"{UNSEEN}:NOT_A_FUNCTION"], ["'NOT_A_FUNCTION' is not a function (it is of type int)",
                                             "residual_cnn"]),
])
def test_bad_models_say_what_was_expected(capsys, argv, expected):
    if any(".py:" in a for a in argv):
        pytest.importorskip("torch")
    rc, out, err = sparoa(capsys, *argv)
    assert rc == 2 and out == ""
    assert err.startswith("sparoa graph: error: ")
    for fragment in expected:
        assert fragment in err, f"{fragment!r} not in {err!r}"


def test_bad_batch_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as ex:
        cli.main(["graph", "resnet18", "--batch", "0"])
    assert ex.value.code == 2
    assert "expected a positive integer, got '0'" in capsys.readouterr().err


def test_graphs_list(capsys):
    rc, out, _ = sparoa(capsys, "graphs", "list")
    assert rc == 0
    assert len(out.splitlines()) == len(zoo.SHIPPED) and "MISSING" not in out


def test_regeneration_is_byte_identical(capsys, tmp_path):
    pytest.importorskip("torch")
    rc, out, err = sparoa(capsys, "graphs", "regenerate", "mobilenet_v3_small", "--out", str(tmp_path))
    assert rc == 0, err
    fresh = tmp_path / "mobilenet_v3_small.json"
    assert fresh.read_text() == shipped_graph_path("mobilenet_v3_small").read_text()


def test_graphs_check_reports_stale_files(capsys, monkeypatch, tmp_path):
    from sparoa_env.commands import graphs

    g = OpGraph.load(shipped_graph_path("bert_tiny"))
    d = g.to_dict()
    d["nodes"][3]["flops"] += 1.0
    stale = tmp_path / zoo.graph_filename("bert_tiny")
    stale.write_text(json.dumps(d, indent=1) + "\n")
    monkeypatch.setattr(zoo, "GRAPH_DIR", tmp_path)
    monkeypatch.setattr(zoo, "extract_zoo_graph", lambda spec, batch=1: g)  # the "fresh" graph: no torch needed
    rc, out, err = sparoa(capsys, "graphs", "check", "bert_tiny")
    assert rc == 1
    assert "STALE" in out and f"nodes[{d['nodes'][3]['name']}].flops" in out
    assert "sparoa graphs regenerate" in err
    assert graphs.diff_graphs(g, g) == []


def test_a_model_that_fails_on_its_inputs_is_one_line(capfd):
    """torch's fake-tensor logger used to print a 20-line traceback before the one-line error."""
    pytest.importorskip("torch")
    assert cli.main(["graph", f"{UNSEEN}:wrong_input_width"]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "could not trace Linear with inputs (float32[1, 5])" in err
