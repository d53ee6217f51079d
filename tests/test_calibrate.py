"""Calibration: the fit recovers the cost model's own parameters (identity), the CLI refuses what it
must, and ``sparoa fidelity --json`` has the documented keys."""

from __future__ import annotations

import importlib
import json
import math
import os

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")
pytest.importorskip("scipy")

from sparoa_env.calibrate import FitData, calibrate, fit_processor, with_lane_cores  # noqa: E402
from sparoa_env.costmodel import CostModel  # noqa: E402
from sparoa_env.graph import Edge, OpGraph, OpNode  # noqa: E402
from sparoa_env.profile import load_profile  # noqa: E402
from sparoa_env.traces import empty_row, read_traces, write_trace  # noqa: E402

MACHINE = "synthetic-cpu-16c-32g-00000000"
TYPES = ("aten.convolution", "aten.addmm", "aten.bmm", "aten.relu", "aten.add", "aten.native_layer_norm")


def random_graph(rng: np.random.Generator, name: str, n: int = 60) -> OpGraph:
    nodes = []
    for i in range(n):
        t = TYPES[i % len(TYPES)]
        mac = t in TYPES[:3]
        flops = float(10 ** rng.uniform(4, 9)) if mac else 0.0
        nbytes = float(10 ** rng.uniform(3, 8.5))   # from cache-resident to far beyond a 24 MB cache
        aux = 0.0 if mac else nbytes / 8
        w = float(10 ** rng.uniform(3, 6)) if mac else 0.0
        nodes.append(OpNode(name=f"{name}_op{i}", op_type=t, flops=flops, bytes_in=nbytes / 2, bytes_out=nbytes / 2,
                            weight_bytes=w, weight_sparsity=0.0, input_sparsity=0.0, sparsity=0.0,
                            intensity=OpNode.arithmetic_intensity(flops, nbytes / 2, nbytes / 2, w),
                            out_shape=(1, 64, 8, 8), aux_flops=aux))
    edges = [Edge(nodes[i].name, nodes[i + 1].name, nodes[i].bytes_out) for i in range(n - 1)]
    return OpGraph(name, 1, nodes, edges, {"source": "synthetic for the identity test"})


def synthetic_rows(profile, graphs, threads=(1, 2, 4), trace_id="synthetic.identity.1") -> list[dict]:
    """Trace rows whose latencies are exactly what the cost model says (CPU lane: host + device time)."""
    out = []
    cpu = profile.processors[0]
    for n in threads:
        prof = with_lane_cores(profile, {cpu.name: n})
        cm = CostModel(prof)
        base = dict(trace_id=trace_id, machine_id=MACHINE, processor="cpu", device_name="synthetic", threads=n,
                    cores=f"0-{n - 1}" if n > 1 else "0", torch_version="synthetic", timestamp="2026-01-01T00:00:00Z")
        for g in graphs:
            c = cm.op_costs(g, "fidelity")
            lat = c.nominal_ms[:, 0] + c.host_ms[:, 0]
            for node, t in zip(g.nodes, lat):
                r = empty_row()
                r.update(base, kind="op", model=g.model, batch=1, op_name=node.name, op_type=node.op_type,
                         out_shape=json.dumps(list(node.out_shape)), dtype="float32", n_members=1, flops=node.flops,
                         aux_flops=node.aux_flops, bytes_in=node.bytes_in, bytes_out=node.bytes_out,
                         weight_bytes=node.weight_bytes, weight_sparsity=0.0, input_sparsity=0.0, sparsity=0.0,
                         sparsity_pattern="dense", latency_ms=float(t), latency_p10_ms=float(t), latency_p90_ms=float(t),
                         n_samples=1, cv=0.0)
                out.append(r)
            r = empty_row()
            r.update(base, kind="e2e", model=g.model, batch=1, n_ops=len(g.nodes), latency_ms=float(lat.sum()),
                     latency_p10_ms=float(lat.sum()), latency_p90_ms=float(lat.sum()), n_samples=1, cv=0.0,
                     ops_sum_ms=float(lat.sum()))
            out.append(r)
        r = empty_row()
        r.update(base, kind="dispatch", op_type="aten.add", latency_ms=cpu.launch_overhead_us / 1e3,
                 latency_p10_ms=cpu.launch_overhead_us / 1e3, latency_p90_ms=cpu.launch_overhead_us / 1e3, n_samples=1)
        out.append(r)
    return out


def _truth_profile():
    """The Core Ultra profile with a per-type elementwise table, a fast cache and an op-size-dependent
    parallel speedup on its CPU lane, so that the identity fit has every parameter of the cost model to
    recover."""
    from sparoa_env.profile import profile_from_dict

    d = load_profile("intel-core-ultra").to_dict()
    cpu = d["processors"][0]
    cpu["aux_op_efficiency"] = {"aten.relu": 0.4, "aten.native_layer_norm": 0.03}
    cpu["cache_mb"] = 24.0
    cpu["parallel_half_mflop"] = 0.5       # small ops get only part of the Amdahl speedup
    cpu["cache_bw_gbps"] = 3.0 * cpu["mem_bw_frac"] * d["memory"]["dram_bw_gbps"]
    return profile_from_dict(d, source="<identity truth>")


@pytest.fixture(scope="module")
def truth():
    """The Core Ultra CPU lane as ground truth (a known parameter set, with a per-type elementwise table
    and a cache), graphs of varied op sizes."""
    prof = _truth_profile()
    rng = np.random.default_rng(0)
    graphs = [random_graph(rng, f"g{k}") for k in range(3)]
    return prof, graphs


def test_identity_fit_recovers_the_cost_model(truth):
    prof, graphs = truth
    df = pd.DataFrame(synthetic_rows(prof, graphs))
    res = calibrate(df, name="identity")
    cpu_true, cpu_fit = prof.processors[0], res.profile.processors[0]
    fit = res.fits["cpu"]
    assert fit.parallel_fraction == pytest.approx(cpu_true.parallel_fraction, rel=1e-3)
    assert fit.parallel_half_mflop == pytest.approx(cpu_true.parallel_half_mflop, rel=2e-2)
    assert cpu_fit.parallel_half_mflop == pytest.approx(cpu_true.parallel_half_mflop, rel=2e-2)
    assert fit.unhidden_frac == pytest.approx(prof.cost_rules.unhidden_frac, abs=1e-3)
    assert fit.half_mflop == pytest.approx(cpu_true.half_efficiency_mflop, rel=1e-2)
    assert fit.overhead_ms * 1e3 == pytest.approx(cpu_true.launch_overhead_us + cpu_true.fixed_overhead_us, rel=1e-2)
    assert cpu_fit.launch_overhead_us == pytest.approx(cpu_true.launch_overhead_us, rel=1e-6)
    # rates per core (peak / cores * efficiency): what the cost model multiplies out
    per_core_true = cpu_true.peak_gflops / cpu_true.cores
    per_core_fit = cpu_fit.peak_gflops / cpu_fit.cores
    for key in ("aten.convolution", "aten.addmm", "aten.bmm"):
        true_rate = per_core_true * cpu_true.op_efficiency[key]
        assert per_core_fit * cpu_fit.op_efficiency[key] == pytest.approx(true_rate, rel=1e-2), key
    # per-type elementwise rates (aten.add has no entry in the truth: it runs at the default)
    assert set(cpu_fit.aux_op_efficiency) == {"aten.relu", "aten.add", "aten.native_layer_norm"}
    for key in ("aten.relu", "aten.native_layer_norm"):
        assert per_core_fit * cpu_fit.aux_op_efficiency[key] == pytest.approx(
            per_core_true * cpu_true.aux_op_efficiency[key], rel=2e-2), key
    assert per_core_fit * cpu_fit.aux_op_efficiency["aten.add"] == pytest.approx(
        per_core_true * cpu_true.aux_efficiency, rel=2e-2)
    # two memory levels: DRAM bandwidth, cache size and cache bandwidth
    lane_bw_true = cpu_true.mem_bw_frac * prof.memory.dram_bw_gbps
    assert cpu_fit.mem_bw_frac * res.profile.memory.dram_bw_gbps == pytest.approx(lane_bw_true, rel=1e-2)
    assert cpu_fit.cache_mb == pytest.approx(cpu_true.cache_mb, rel=2e-2)
    assert cpu_fit.cache_bw_gbps == pytest.approx(cpu_true.cache_bw_gbps, rel=2e-2)
    # and the fitted profile, through the cost model and the simulator's all-CPU sum, gives the same latencies
    for n in (1, 2, 4):
        want = CostModel(with_lane_cores(prof, {"cpu": n}))
        got = CostModel(with_lane_cores(res.profile, {"cpu0": n}))
        for g in graphs:
            a = want.op_costs(g, "fidelity")
            b = got.op_costs(g, "fidelity")
            np.testing.assert_allclose(b.nominal_ms[:, 0] + b.host_ms[:, 0], a.nominal_ms[:, 0] + a.host_ms[:, 0],
                                       rtol=2e-2)
    assert res.reports["cpu"]["e2e_max_abs_error"] < 1e-3
    assert res.profile.provenance == "measured:synthetic.identity.1"


def test_fit_is_robust_to_a_disturbed_pass(truth):
    """One pass hit by other work (5x slower e2e) barely moves the fit (robust loss)."""
    prof, graphs = truth
    rows = synthetic_rows(prof, graphs)
    e2e = [r for r in rows if r["kind"] == "e2e"]
    e2e[0]["latency_ms"] *= 5
    e2e[0]["latency_p10_ms"] *= 5
    e2e[0]["latency_p90_ms"] *= 5
    d = FitData.from_frame(pd.DataFrame(rows))
    f = fit_processor(d)
    assert f.parallel_fraction == pytest.approx(prof.processors[0].parallel_fraction, rel=0.05)
    rep_rates = f.rates["aten.convolution"] / 1e6
    true = prof.processors[0].peak_gflops / prof.processors[0].cores * prof.processors[0].op_efficiency["aten.convolution"]
    assert rep_rates == pytest.approx(true, rel=0.1)


def test_two_lane_host_profile_works_in_the_environment(truth):
    gym = pytest.importorskip("gymnasium")
    import sparoa_env.envs  # noqa: F401

    prof, graphs = truth
    res = calibrate(pd.DataFrame(synthetic_rows(prof, graphs)), name="host-test")
    assert res.profile.processor_names == ("cpu0", "cpu1")
    env = gym.make("SparOA-Orin-v0", model=graphs[0], profile=res.profile)
    obs, info = env.reset(seed=0)
    done = False
    while not done:
        obs, r, done, trunc, info = env.step(env.action_space.sample())
    assert info["latency_ms"][0] > 0


# ----------------------------------------------------------------------------------------------- CLI
def sparoa(argv):
    """Run the CLI in-process, with only the subcommands whose modules exist (others may be in progress)."""
    from sparoa_env import cli

    saved = cli.COMMANDS
    cli.COMMANDS = {k: v for k, v in saved.items() if importlib.util.find_spec(v[0]) is not None}
    try:
        return cli.main([str(a) for a in argv])
    finally:
        cli.COMMANDS = saved


def test_calibrate_cli_writes_profile_and_prints_fit_error(truth, tmp_path, capsys):
    prof, graphs = truth
    t = write_trace(synthetic_rows(prof, graphs), tmp_path / "syn.parquet", {"command": "test"})
    out = tmp_path / "p.json"
    assert sparoa(["calibrate", t, "--out", out]) == 0
    text = capsys.readouterr().out
    assert "end-to-end (all-CPU passes): median |err|" in text
    p = load_profile(out)
    assert p.provenance == "measured:synthetic.identity.1" and p.is_measured
    assert sparoa(["calibrate", t, "--out", out]) == 2          # exists: refused without --force
    assert "--force" in capsys.readouterr().err
    assert sparoa(["calibrate", t, "--out", out, "--force"]) == 0


def test_calibrate_cli_refuses_mixed_machines_and_malformed_traces(truth, tmp_path, capsys):
    prof, graphs = truth
    rows_a = synthetic_rows(prof, graphs[:1], threads=(1, 2), trace_id="a.1")
    rows_b = synthetic_rows(prof, graphs[1:2], threads=(1, 2), trace_id="b.1")
    for r in rows_b:
        r["machine_id"] = "another-machine-4c-8g-11111111"
    a = write_trace(rows_a, tmp_path / "a.parquet", {})
    b = write_trace(rows_b, tmp_path / "b.parquet", {})
    assert sparoa(["calibrate", a, b, "--out", tmp_path / "m.json"]) == 2
    assert "--allow-mixed" in capsys.readouterr().err
    assert sparoa(["calibrate", a, b, "--out", tmp_path / "m.json", "--allow-mixed"]) == 0
    df = pd.read_parquet(a).drop(columns=["op_type"])
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata(pq.read_schema(a).metadata)
    pq.write_table(table, tmp_path / "bad.parquet")
    assert sparoa(["calibrate", tmp_path / "bad.parquet", "--out", tmp_path / "x.json"]) == 2
    err = capsys.readouterr().err
    assert "bad.parquet" in err and "op_type" in err


MLP_SOURCE = '''
import torch
from torch import nn

def mlp(batch=1):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8)).eval()
    return net, (torch.randn(batch, 32),)
'''


@pytest.fixture(scope="module")
def mlp_spec(tmp_path_factory):
    pytest.importorskip("torch")
    d = tmp_path_factory.mktemp("models")
    (d / "tiny.py").write_text(MLP_SOURCE)
    return f"{d / 'tiny.py'}:mlp"


def test_profile_cli_records_ops_and_passes(mlp_spec, tmp_path):
    out = tmp_path / "mlp.parquet"
    assert sparoa(["profile", mlp_spec, "--threads", "1", "--batch", "1,4", "--repeats", "3", "--warmup", "1",
                   "--no-micro", "--out", out, "--quiet"]) == 0
    df = read_traces([out])
    ops = df[df["kind"] == "op"]
    assert len(ops) == 2 * 5 and set(ops["batch"]) == {1, 4}   # 3 addmm + 2 relu, per batch
    assert set(ops["op_type"]) == {"aten.addmm", "aten.relu"}
    e2e = df[df["kind"] == "e2e"]
    assert len(e2e) == 2 and (e2e["latency_ms"] > 0).all() and (e2e["ops_sum_ms"] > 0).all()
    assert (df["torch_version"] != "").all() and df["machine_id"].nunique() == 1
    assert sparoa(["profile", mlp_spec, "--out", out, "--quiet"]) == 2    # never overwritten silently


def test_fidelity_json_has_the_documented_keys(truth, mlp_spec, tmp_path, capsys):
    prof, graphs = truth
    res = calibrate(pd.DataFrame(synthetic_rows(prof, graphs)), name="fid-test",
                    cpu_lanes=2 if len(os.sched_getaffinity(0)) >= 2 else 1)
    path = tmp_path / "fid.json"
    res.profile.save(path)
    plans = 2 if len(res.profile.processors) > 1 else 1
    assert sparoa(["fidelity", "--profile", path, "--models", mlp_spec, "--plans", plans, "--repeats", "3",
                   "--warmup", "1", "--threads", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"cases", "within_5pct", "within_10pct"} <= set(out)
    assert len(out["cases"]) == plans
    for c in out["cases"]:
        assert {"model", "plan", "measured_ms", "predicted_ms", "error"} <= set(c)
        assert c["measured_ms"] > 0 and c["predicted_ms"] > 0
        assert c["error"] == pytest.approx(c["predicted_ms"] / c["measured_ms"] - 1)
    assert 0.0 <= out["within_5pct"] <= out["within_10pct"] <= 1.0
    assert not math.isnan(out["within_10pct"])


def test_profile_cli_cuda_without_a_gpu_is_a_clear_error(mlp_spec, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert sparoa(["profile", mlp_spec, "--device", "cuda", "--out", tmp_path / "g.parquet", "--quiet"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "g.parquet").exists()


@pytest.mark.gpu
def test_profile_cli_on_cuda_records_ops_and_launch_rows(mlp_spec, tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    out = tmp_path / "g.parquet"
    assert sparoa(["profile", mlp_spec, "--device", "cuda", "--threads", "1", "--repeats", "3", "--out", out,
                   "--quiet"]) == 0
    df = read_traces([out])
    assert (df[df["kind"] == "op"]["processor"].str.startswith("cuda")).all()
    assert {"launch", "transfer", "dispatch"} <= set(df["kind"])
    res = calibrate(df, name="cuda-test")
    assert res.profile.processor_names == ("cpu", "gpu")




def test_make_plans_labels_and_lanes(truth):
    from sparoa_env.calibrate import make_plans

    g = truth[1][0]
    plans = make_plans(g, ("cpu0", "cpu1"), ("cpu", "cpu"), 3)
    assert [p[0] for p in plans] == ["all-cpu0", "mixed-2", "mixed-4"]
    assert set(plans[0][1]) == {0} and set(plans[1][1]) == {0, 1}
    n = len(g.nodes)
    assert plans[1][1] == [0] * ((n + 1) // 2) + [1] * (n - (n + 1) // 2)
    gpu = make_plans(g, ("cpu", "gpu"), ("cpu", "gpu"), 3)
    assert [p[0] for p in gpu] == ["all-cpu", "all-gpu", "mixed-2"]
    assert make_plans(g, ("cpu",), ("cpu",), 3) == [("all-cpu", [0] * n)]
