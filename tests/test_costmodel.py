"""Cost model: formulae, the sparsity behaviour the field reports, and ResNet-50 sanity against the field.

The sanity figures (printed with ``-s``)::

    .venv/bin/python -m pytest tests/test_costmodel.py -k resnet50 -s

Field anchors: MLPerf Inference (edge, ResNet-50 SingleStream) on Jetson AGX Orin with TensorRT INT8: 0.63 ms;
eager PyTorch is several times slower than TensorRT (torch2trt README: ResNet-50 on Jetson Xavier, 17.9 ms
PyTorch vs 3.37 ms TensorRT); the SparOA paper reports CPU-only execution up to 50.7x slower than its schedule.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from sparoa_env.costmodel import CostModel, OpCosts
from sparoa_env.graph import Edge, OpGraph, OpNode
from sparoa_env.profile import load_profile

CPU, GPU = 0, 1
MLPERF_TRT_INT8_MS = 0.63
XAVIER_EAGER_MS = 17.9


@pytest.fixture(scope="module")
def agx() -> CostModel:
    return CostModel(load_profile("orin-agx"))


@pytest.fixture(scope="module")
def nano() -> CostModel:
    return CostModel(load_profile("orin-nano"))


# ------------------------------------------------------------------------ synthetic graphs (no torch)
F32 = 4


class _Builder:
    def __init__(self, batch: int):
        self.b = batch
        self.nodes: list[OpNode] = []
        self.edges: list[Edge] = []

    def add(self, op_type, name, inputs, flops, bytes_in, bytes_out, weight_bytes, out_shape, aux=0.0,
            weight_sparsity=0.0, pattern="dense"):
        total = bytes_in + bytes_out + weight_bytes
        self.nodes.append(OpNode(name=name, op_type=op_type, flops=float(flops), bytes_in=float(bytes_in),
                                 bytes_out=float(bytes_out), weight_bytes=float(weight_bytes),
                                 weight_sparsity=weight_sparsity, input_sparsity=0.0, sparsity=weight_sparsity,
                                 intensity=flops / total if total else 0.0, out_shape=tuple(out_shape),
                                 aux_flops=float(aux), sparsity_pattern=pattern))
        for src in inputs:
            self.edges.append(Edge(src, name, self._out_bytes(src)))
        return name

    def _out_bytes(self, name):
        return next(n.bytes_out for n in self.nodes if n.name == name)

    def conv(self, name, x, cin, cout, k, stride, hw_in, groups=1, weight_sparsity=0.0, pattern="dense"):
        hw_out = (hw_in + 2 * (k // 2) - k) // stride + 1
        out_elems = self.b * cout * hw_out * hw_out
        flops = 2 * (cin // groups) * k * k * out_elems
        self.add("aten.convolution", name, [x] if x else [], flops, self.b * cin * hw_in * hw_in * F32,
                 out_elems * F32, (cin // groups) * k * k * cout * F32, (self.b, cout, hw_out, hw_out),
                 weight_sparsity=weight_sparsity, pattern=pattern)
        return name, hw_out

    def eltwise(self, op_type, name, inputs, c, hw, aux_per_elem, weights=0.0):
        n = self.b * c * hw * hw
        return self.add(op_type, name, inputs, 0.0, len(inputs) * n * F32, n * F32, weights, (self.b, c, hw, hw),
                        aux=aux_per_elem * n)

    def graph(self, model):
        return OpGraph(model, self.b, tuple(self.nodes), tuple(self.edges), {"synthetic": True})


def resnet50(batch: int = 1) -> OpGraph:
    """torchvision ResNet-50 (v1.5) at 224x224 as eager ATen ops: conv, batch norm, relu, add, pools, addmm."""
    g = _Builder(batch)
    x, hw = g.conv("conv1", None, 3, 64, 7, 2, 224)
    x = g.eltwise("aten._native_batch_norm_legit_no_training", "bn1", [x], 64, hw, 2, 4 * 64 * F32)
    x = g.eltwise("aten.relu", "relu1", [x], 64, hw, 1)
    hw = hw // 2
    x = g.eltwise("aten.max_pool2d_with_indices", "maxpool", [x], 64, hw, 9)
    cin = 64
    for li, (width, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]):
        for bi in range(blocks):
            s = stride if bi == 0 else 1
            p = f"l{li + 1}.{bi}"
            y, h1 = g.conv(p + ".conv1", x, cin, width, 1, 1, hw)
            y = g.eltwise("aten._native_batch_norm_legit_no_training", p + ".bn1", [y], width, h1, 2, 4 * width * F32)
            y = g.eltwise("aten.relu", p + ".relu1", [y], width, h1, 1)
            y, h2 = g.conv(p + ".conv2", y, width, width, 3, s, h1)
            y = g.eltwise("aten._native_batch_norm_legit_no_training", p + ".bn2", [y], width, h2, 2, 4 * width * F32)
            y = g.eltwise("aten.relu", p + ".relu2", [y], width, h2, 1)
            y, h3 = g.conv(p + ".conv3", y, width, 4 * width, 1, 1, h2)
            y = g.eltwise("aten._native_batch_norm_legit_no_training", p + ".bn3", [y], 4 * width, h3, 2,
                          4 * 4 * width * F32)
            idn = x
            if bi == 0:
                idn, _ = g.conv(p + ".down", x, cin, 4 * width, 1, s, hw)
                idn = g.eltwise("aten._native_batch_norm_legit_no_training", p + ".downbn", [idn], 4 * width, h3, 2,
                                4 * 4 * width * F32)
            y = g.eltwise("aten.add", p + ".add", [y, idn], 4 * width, h3, 1)
            x = g.eltwise("aten.relu", p + ".relu3", [y], 4 * width, h3, 1)
            cin, hw = 4 * width, h3
    n = batch * 2048
    x = g.add("aten.mean", "avgpool", [x], 0.0, n * hw * hw * F32, n * F32, 0.0, (batch, 2048), aux=n * hw * hw)
    g.add("aten.addmm", "fc", [x], 2 * n * 1000, n * F32, batch * 1000 * F32, (2048 * 1000 + 1000) * F32,
          (batch, 1000), aux=batch * 1000)
    return g.graph("resnet50-synthetic")


def single_conv1x1(channels: int = 256, hw: int = 14, batch: int = 1, weight_sparsity: float = 0.0,
                   pattern: str = "dense") -> OpGraph:
    g = _Builder(batch)
    g.conv("conv", None, channels, channels, 1, 1, hw, weight_sparsity=weight_sparsity, pattern=pattern)
    return g.graph("conv1x1")


def depthwise_vs_dense(channels: int = 256, hw: int = 14) -> OpGraph:
    g = _Builder(1)
    g.conv("dw", None, channels, channels, 3, 1, hw, groups=channels)
    g.conv("dense", None, channels, channels, 3, 1, hw)
    return g.graph("dw-vs-dense")


def one_op(op_type: str = "aten.relu", dtype: str = "float32", **kw) -> OpGraph:
    fields = dict(name="x", op_type=op_type, flops=0.0, bytes_in=4e5, bytes_out=4e5, weight_bytes=0.0,
                  weight_sparsity=0.0, input_sparsity=0.0, sparsity=0.0, intensity=0.0, out_shape=(1, 100000),
                  aux_flops=1e5, dtype=dtype)
    fields.update(kw)
    return OpGraph("one", 1, (OpNode(**fields),), ())


@pytest.fixture(scope="module")
def r50() -> OpGraph:
    return resnet50(1)


def test_synthetic_resnet50_has_the_known_size(r50):
    assert 4.0e9 < r50.total_flops / 2 < 4.2e9          # ~4.1 GMACs
    n_conv = sum(n.op_type == "aten.convolution" for n in r50.nodes)
    assert n_conv == 53
    weights = sum(n.weight_bytes for n in r50.nodes) / 4
    assert 25.0e6 < weights < 26.0e6                    # ~25.5 M parameters


# ------------------------------------------------------------------------ op_costs
def test_op_costs_shapes_units_and_cache(agx, r50):
    c = agx.op_costs(r50, "MAXN")
    assert isinstance(c, OpCosts)
    for a in (c.compute_ms, c.memory_ms, c.fixed_ms, c.host_ms, c.nominal_ms, c.traffic_bytes):
        assert a.shape == (len(r50), 2) and a.dtype == np.float64 and not a.flags.writeable
        assert np.all(np.isfinite(a)) and np.all(a >= 0)
    assert c.processors == ("cpu", "gpu") and c.mode == "MAXN"
    assert agx.op_costs(r50, "MAXN") is c                 # cached per (graph, mode)
    assert agx.op_costs(r50, "15W") is not c
    np.testing.assert_allclose(c.nominal_ms, agx.combine(c.compute_ms, c.memory_ms, c.fixed_ms))
    # host cost: launch overhead of the GPU, dispatch overhead of the CPU, per op (ms)
    p = agx.profile.processors
    np.testing.assert_allclose(c.host_ms[:, GPU], p[GPU].launch_overhead_us / 1e3)
    np.testing.assert_allclose(c.host_ms[:, CPU], p[CPU].launch_overhead_us / 1e3)


def test_compute_time_follows_the_roofline_formula(agx):
    g = single_conv1x1(256, 14)
    c = agx.op_costs(g, "MAXN")
    n = g.nodes[0]
    spec = agx.profile.processors[GPU]
    amdahl = 1 / ((1 - spec.parallel_fraction) + spec.parallel_fraction / spec.cores)
    sat = n.flops / (n.flops + spec.half_efficiency_mflop * 1e6)
    rate = spec.peak_gflops / spec.cores * amdahl * spec.op_efficiency["aten.convolution"] * sat
    assert c.compute_ms[0, GPU] == pytest.approx(n.flops / (rate * 1e6))
    bw = spec.mem_bw_frac * agx.profile.memory.dram_bw_gbps
    traffic = n.bytes_in + n.bytes_out + n.weight_bytes
    hit = min(1.0, spec.cache_mb * 1e6 / traffic)
    assert c.memory_ms[0, GPU] == pytest.approx(traffic * (hit / (spec.cache_bw_gbps * 1e6) + (1 - hit) / (bw * 1e6)))
    assert c.traffic_bytes[0, GPU] == pytest.approx(traffic * (1 - hit))   # only the DRAM part contends


def _with(profile_name: str, **cpu_fields):
    from sparoa_env.profile import profile_from_dict

    d = load_profile(profile_name).to_dict()
    d["processors"][0].update(cpu_fields)
    return CostModel(profile_from_dict(d))


def test_two_memory_levels_working_set_against_cache():
    """An op whose traffic fits the cache runs at the cache bandwidth; a large one mostly at DRAM's; with
    ``cache_mb = 0`` every byte goes to DRAM (the one-level model)."""
    cm = _with("orin-agx", cache_mb=4.0, cache_bw_gbps=400.0)
    one = _with("orin-agx", cache_mb=0.0)
    bw = cm.achievable_bw_gbps(CPU, "MAXN")
    small = one_op(bytes_in=1e6, bytes_out=1e6)                # 2 MB: fits the 4 MB cache
    big = one_op(bytes_in=2e7, bytes_out=2e7)                  # 40 MB: a tenth fits
    cs, cb = cm.op_costs(small, "MAXN"), cm.op_costs(big, "MAXN")
    assert cs.memory_ms[0, CPU] == pytest.approx(2e6 / (400.0 * 1e6))
    assert cs.traffic_bytes[0, CPU] == 0.0
    assert cb.memory_ms[0, CPU] == pytest.approx(4e6 / (400.0 * 1e6) + 3.6e7 / (bw * 1e6))
    assert cb.traffic_bytes[0, CPU] == pytest.approx(3.6e7)
    assert one.op_costs(small, "MAXN").memory_ms[0, CPU] == pytest.approx(2e6 / (bw * 1e6))
    # effective bandwidth falls with the working set
    eff = [2 * x / cm.op_costs(one_op(bytes_in=x, bytes_out=x), "MAXN").memory_ms[0, CPU] / 1e6
           for x in (1e5, 1e6, 4e6, 1e7, 1e8)]
    assert all(a >= b for a, b in zip(eff, eff[1:])) and eff[0] == pytest.approx(400.0) and eff[-1] < 1.05 * bw


def test_per_type_elementwise_efficiency_with_default():
    cm = _with("orin-agx", aux_op_efficiency={"aten.gelu": 0.01, "aten.relu": 0.5}, cache_mb=0.0)
    spec = cm.profile.processors[CPU]
    g_per_core = spec.peak_gflops / spec.cores / ((1 - spec.parallel_fraction) + spec.parallel_fraction / spec.cores)
    for op_type, eff in (("aten.gelu.default", 0.01), ("aten.relu", 0.5), ("aten.sigmoid", spec.aux_efficiency)):
        c = cm.op_costs(one_op(op_type), "MAXN")
        assert c.compute_ms[0, CPU] == pytest.approx(1e5 / (g_per_core * 1e6 * eff)), op_type
    # the GPU keeps its own (empty) table
    agx = CostModel(load_profile("orin-agx"))
    np.testing.assert_allclose(cm.op_costs(one_op("aten.gelu"), "MAXN").compute_ms[:, GPU],
                               agx.op_costs(one_op("aten.gelu"), "MAXN").compute_ms[:, GPU])


def test_elementwise_ops_are_memory_bound(agx):
    c = agx.op_costs(one_op(), "MAXN")
    assert np.all(c.memory_ms > c.compute_ms)


def test_overload_names_fall_back_to_the_op_type_then_default(agx):
    conv = single_conv1x1(256, 14)
    renamed = OpGraph("x", 1, tuple(n.__class__(**{**n.to_dict(), "out_shape": n.out_shape, "members": (),
                                                   "op_type": "aten.convolution.default"}) for n in conv.nodes), ())
    a, b = agx.op_costs(conv, "MAXN"), agx.op_costs(renamed, "MAXN")
    np.testing.assert_allclose(a.compute_ms, b.compute_ms)
    odd = agx.op_costs(one_op("aten.some_new_op", flops=1e6), "MAXN")
    assert np.all(odd.compute_ms > 0)


def test_depthwise_convs_are_much_less_efficient_on_both(agx):
    g = depthwise_vs_dense(256, 14)
    c = agx.op_costs(g, "MAXN")
    per_flop = c.compute_ms / np.array([[n.flops] for n in g.nodes])
    assert np.all(per_flop[0] > 4 * per_flop[1])      # FLOP for FLOP, depthwise is several times slower


def test_dtype_factors_and_other_dtypes(agx):
    g32 = single_conv1x1(512, 28)
    g16 = OpGraph("h", 1, tuple(OpNode(**{**n.to_dict(), "out_shape": n.out_shape, "members": (),
                                          "dtype": "float16"}) for n in g32.nodes), ())
    a, b = agx.op_costs(g32, "MAXN"), agx.op_costs(g16, "MAXN")
    assert b.compute_ms[0, GPU] < a.compute_ms[0, GPU]
    for other in ("int64", "bool", "none", "torch.float32"):   # index / mask ops: priced at the float32 rate
        np.testing.assert_allclose(agx.op_costs(one_op(dtype=other), "MAXN").compute_ms,
                                   agx.op_costs(one_op(), "MAXN").compute_ms)


# ------------------------------------------------------------------------ sparsity (what the field measured)
def test_90pct_pruned_1x1_conv_is_cheaper_on_cpu_and_barely_on_gpu(agx):
    dense = agx.op_costs(single_conv1x1(256, 14), "MAXN").nominal_ms[0]
    sparse = agx.op_costs(single_conv1x1(256, 14, weight_sparsity=0.9, pattern="unstructured"), "MAXN").nominal_ms[0]
    speedup = dense / sparse
    print(f"\n90%-pruned 1x1 conv 256ch 14x14 batch 1, AGX MAXN: CPU {speedup[CPU]:.2f}x, GPU {speedup[GPU]:.2f}x")
    assert speedup[CPU] >= 1.3
    assert speedup[GPU] <= 1.1


def test_cpu_sparse_kernels_pay_only_above_70pct(agx):
    def cpu_speedup(ws):
        d = agx.op_costs(single_conv1x1(256, 14), "MAXN").nominal_ms[0, CPU]
        s = agx.op_costs(single_conv1x1(256, 14, weight_sparsity=ws, pattern="unstructured"), "MAXN").nominal_ms[0, CPU]
        return d / s
    assert cpu_speedup(0.5) == pytest.approx(1.0, abs=0.02)
    assert cpu_speedup(0.7) < 1.1
    gains = [cpu_speedup(w) for w in (0.8, 0.9, 0.95)]
    assert gains == sorted(gains) and 1.2 < gains[0] and gains[-1] < 2.6


def test_24_sparsity_on_gpu_needs_batch_and_channels(agx):
    def gpu_speedup(ch, batch):
        d = agx.op_costs(single_conv1x1(ch, 28, batch), "MAXN").nominal_ms[0, GPU]
        s = agx.op_costs(single_conv1x1(ch, 28, batch, weight_sparsity=0.5, pattern="2:4"), "MAXN").nominal_ms[0, GPU]
        return d / s
    assert gpu_speedup(512, 1) == pytest.approx(1.0)     # none at batch 1
    assert gpu_speedup(128, 8) == pytest.approx(1.0)     # none under 256 channels
    assert 1.05 < gpu_speedup(512, 8) <= 1.3             # ~1.1-1.3x where it pays


# ------------------------------------------------------------------------ modes and devices
def test_15w_is_slower_than_maxn_and_nano_slower_than_agx(agx, nano, r50):
    maxn, w15 = agx.op_costs(r50, "MAXN"), agx.op_costs(r50, "15W")
    assert np.all(w15.nominal_ms >= maxn.nominal_ms) and np.all(w15.host_ms > maxn.host_ms)
    assert np.all(w15.compute_ms[r50.features["flops"] > 0] > maxn.compute_ms[r50.features["flops"] > 0])
    for mode in ("15W", "7W"):
        n = nano.op_costs(r50, mode)
        assert np.all(n.nominal_ms > maxn.nominal_ms)
    assert np.all(nano.op_costs(r50, "7W").nominal_ms >= nano.op_costs(r50, "15W").nominal_ms)


def test_resnet50_sum_of_ops_sanity(agx, nano, r50):
    """CPU-only is many times slower than GPU-only on AGX MAXN; GPU-only eager FP32 is above TensorRT's."""
    fig = {}
    for label, cm, mode in (("agx MAXN", agx, "MAXN"), ("agx 15W", agx, "15W"), ("agx 30W", agx, "30W"),
                            ("agx 50W", agx, "50W"), ("nano 15W", nano, "15W"), ("nano 7W", nano, "7W")):
        c = cm.op_costs(r50, mode)
        fig[label] = (cm.serial_latency_ms(c, CPU), cm.serial_latency_ms(c, GPU))
    print("\nResNet-50 batch 1, eager FP32, ops in order on one processor (ms):")
    for label, (cpu, gpu) in fig.items():
        print(f"  {label:9s} CPU-only {cpu:7.1f}   GPU-only {gpu:6.2f}   CPU/GPU {cpu / gpu:5.1f}x")
    cpu, gpu = fig["agx MAXN"]
    assert gpu > 3 * MLPERF_TRT_INT8_MS                   # eager FP32 is several times TensorRT INT8
    assert gpu < XAVIER_EAGER_MS                          # and faster than eager on the older Xavier
    assert 5 < cpu / gpu < 60                             # many times slower; the paper: up to 50.7x
    for label, (c_, g_) in fig.items():
        assert 3 < c_ / g_ < 60, label
    # Orin Nano's CPU loses less to AGX than its GPU does: the gap shrinks
    assert fig["nano 15W"][0] / fig["nano 15W"][1] < cpu / gpu
    # 15W is slower on both. Its CPU/GPU gap is deliberately not asserted to shrink: from the spec caps
    # alone the CPU loses more (4 of 12 cores at half the clock) than the GPU (408 vs 1300 MHz, partly
    # hidden behind launch overhead), so a spec-derived model widens the gap; whether 15W also gates
    # GPU TPCs (which would narrow it) is a power-mode field to settle with nvpmodel.conf or traces.
    assert fig["agx 15W"][0] > cpu and fig["agx 15W"][1] > gpu


def test_shipped_resnet50_graph_if_present(agx):
    modelspec = pytest.importorskip("sparoa_env.modelspec", reason="sparoa_env.modelspec not written yet")
    if not modelspec.shipped_graph_path("resnet50").is_file():   # don't extract (torch, seconds) in a unit test
        pytest.skip("shipped resnet50 graph absent (sparoa graphs has not generated it yet)")
    g = modelspec.load_graph("resnet50")
    c = agx.op_costs(g, "MAXN")
    cpu, gpu = agx.serial_latency_ms(c, CPU), agx.serial_latency_ms(c, GPU)
    print(f"\nshipped resnet50 on AGX MAXN: CPU-only {cpu:.1f} ms, GPU-only {gpu:.2f} ms ({cpu / gpu:.1f}x)")
    assert gpu > MLPERF_TRT_INT8_MS and 3 < cpu / gpu < 60


# ------------------------------------------------------------------------ per-op calls of the simulator
def test_combine_scalars_stay_floats_and_match_arrays(agx):
    u = agx.profile.cost_rules.unhidden_frac
    t = agx.combine(2.0, 1.0, 0.1)
    assert type(t) is float and t == pytest.approx(2.0 + u * 1.0 + 0.1)
    assert agx.combine(2.0, 1.0, 0.1, speed=0.5) == pytest.approx(4.0 + u * 1.0 + 0.1)     # compute stretched
    assert agx.combine(2.0, 1.0, 0.1, bw_share=0.25) == pytest.approx(4.0 + u * 2.0 + 0.1)  # memory-bound now
    arr = agx.combine(np.array([2.0, 0.5]), np.array([1.0, 1.0]), 0.1, speed=np.array([1.0, 0.5]))
    np.testing.assert_allclose(arr, [2.0 + u + 0.1, 1.0 + u * 1.0 + 0.1])


def test_speed_factor(agx):
    assert agx.speed_factor(GPU, "MAXN") == 1.0
    assert agx.speed_factor(GPU, "MAXN", freq_mhz=650.0) == pytest.approx(0.5)
    half = agx.speed_factor(CPU, "MAXN", cores=6)
    assert 0.5 < half < 1.0                          # Amdahl: half the cores, more than half the speed
    assert agx.speed_factor(CPU, "15W", cores=4) == pytest.approx(1.0)
    assert agx.speed_factor(GPU, "MAXN", cores=8) == pytest.approx(0.5, abs=0.02)
    with pytest.raises(ValueError, match="cores must be > 0"):
        agx.speed_factor(CPU, "MAXN", cores=0)
    assert agx.host_speed_factor("MAXN", freq_mhz=1100.8) == pytest.approx(0.5)


def test_transfer(agx):
    assert agx.transfer_ms(1e6, GPU, GPU) == 0.0
    small, big = agx.transfer_ms(1e3, CPU, GPU), agx.transfer_ms(1e7, GPU, CPU)
    t = agx.profile.transfer
    assert small == pytest.approx(t.latency_us / 1e3 + 1e3 / (t.bandwidth_gbps * 1e6))
    assert big > small > 0 and t.kind == "unified"


def test_memory_bandwidth_demand_and_contention(agx, r50):
    c = agx.op_costs(r50, "MAXN")
    relu = next(i for i, n in enumerate(r50.nodes) if n.op_type == "aten.relu")
    conv = next(i for i, n in enumerate(r50.nodes) if n.name == "l3.0.conv2")
    d_relu_gpu = agx.bandwidth_demand_gbps(c, relu, GPU)
    d_relu_cpu = agx.bandwidth_demand_gbps(c, relu, CPU)
    d_conv_cpu = agx.bandwidth_demand_gbps(c, conv, CPU)
    assert d_relu_gpu <= agx.achievable_bw_gbps(GPU, "MAXN") + 1e-9 and d_conv_cpu < d_relu_cpu
    assert agx.bandwidth_shares("MAXN", [d_relu_gpu, d_conv_cpu]) == [1.0, 1.0]   # a compute-bound op hurts no one
    heavy = [agx.achievable_bw_gbps(GPU, "MAXN"), agx.achievable_bw_gbps(CPU, "MAXN")]
    s = agx.bandwidth_shares("MAXN", heavy)
    assert s[0] == s[1] == pytest.approx(agx.dram_bw_gbps("MAXN") / sum(heavy)) and s[0] < 1
    assert agx.combine(0.0, 1.0, 0.0, bw_share=s[0]) > agx.combine(0.0, 1.0, 0.0)


def test_power_model(agx):
    p = agx.profile.processors[GPU]
    assert agx.power_w(GPU, "MAXN", 0.0, 1.0) == pytest.approx(p.static_power_w)
    assert agx.power_w(GPU, "MAXN", 1.0, 1.0) == pytest.approx(p.static_power_w + p.dynamic_power_w)
    assert agx.power_w(GPU, "MAXN", 0.5, 1.0) < agx.power_w(GPU, "MAXN", 1.0, 1.0)
    assert agx.power_w(GPU, "MAXN", 1.0, 0.5) < agx.power_w(GPU, "MAXN", 1.0, 1.0)
    assert agx.power_w(CPU, "15W", 1.0, 1.0) == pytest.approx(agx.power_w(CPU, "MAXN", 1.0, 1.0) / 3)  # 4/12 online
    assert agx.idle_power_w("MAXN") > 0
    for mode in agx.profile.power_modes:            # full load at the mode's caps fits the mode's budget
        m = agx.profile.mode(mode)
        total = agx.idle_power_w(mode) + sum(agx.power_w(i, mode, 1.0, agx.nominal_freq_frac(i, mode))
                                             for i in range(agx.n_processors))
        assert total <= m.budget_w, mode


def test_thermal(agx):
    th = agx.profile.thermal
    assert agx.throttle_freq_frac(th.ambient_c) == 1.0
    assert agx.throttle_freq_frac(th.throttle_full_c + 5) == th.throttle_min_freq_frac
    mid = agx.throttle_freq_frac((th.throttle_start_c + th.throttle_full_c) / 2)
    assert th.throttle_min_freq_frac < mid < 1.0
    t1 = agx.thermal_step(th.ambient_c, 40.0, th.time_constant_s)
    target = th.ambient_c + 40.0 * th.resistance_c_per_w
    assert t1 == pytest.approx(target + (th.ambient_c - target) * math.exp(-1))


def test_cost_model_pickles_and_every_profile_costs_a_graph(r50):
    for name in ("orin-agx", "orin-nano", "intel-core-ultra"):
        cm = CostModel(load_profile(name))
        cm.op_costs(r50, cm.profile.default_power_mode)
        cm2 = pickle.loads(pickle.dumps(cm))
        for mode in cm.profile.power_modes:
            np.testing.assert_allclose(cm2.op_costs(r50, mode).nominal_ms, cm.op_costs(r50, mode).nominal_ms)
            assert cm.op_costs(r50, mode).nominal_ms.shape == (len(r50), len(cm.profile.processors))


def test_depthwise_rule_finds_the_depthwise_convs_of_extracted_graphs(agx):
    """With torch at hand: the reduction-length rule marks exactly the convs with groups == in_channels."""
    torch = pytest.importorskip("torch")
    import warnings

    from sparoa_env import zoo

    model = "mobilenet_v3_small"   # 3x3 and 5x5 depthwise convs, and 1x1 convs with 16-24 input channels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = zoo.extract_zoo_graph(model)
    module = zoo.build_module(model)
    expected = sum(1 for m in module.modules() if isinstance(m, torch.nn.Conv2d)
                   and m.groups > 1 and m.groups == m.in_channels)
    detected = agx._graph_base(g)["depthwise"]
    assert expected > 0 and int(detected.sum()) == expected
    dense_conv = [i for i, n in enumerate(g.nodes) if n.op_type == "aten.convolution" and not detected[i]]
    assert len(dense_conv) > 0


def test_small_ops_get_a_smaller_share_of_the_parallel_speedup():
    """``parallel_half_mflop``: an op of that much work gets half of the Amdahl speedup over one core; a
    large op nearly all of it; with 0 every op gets the whole speedup (pure Amdahl)."""
    cm = _with("orin-agx", parallel_half_mflop=1.0, cache_mb=0.0)
    pure = CostModel(load_profile("orin-agx"))
    spec = cm.profile.processors[CPU]
    S = lambda n: 1 / ((1 - spec.parallel_fraction) + spec.parallel_fraction / n)  # noqa: E731
    n_mode = cm.profile.mode("MAXN").cores["cpu"]
    for work, share in ((1e6, 0.5), (1e9, 1e9 / (1e9 + 1e6))):
        g = one_op("aten.relu", aux_flops=work, bytes_in=1.0, bytes_out=1.0)
        c = cm.op_costs(g, "MAXN").compute_ms[0, CPU]
        one_core = work / (spec.peak_gflops / spec.cores * spec.aux_efficiency * 1e6)
        assert c == pytest.approx(one_core / (1 + (S(n_mode) - 1) * share))
        assert pure.op_costs(g, "MAXN").compute_ms[0, CPU] == pytest.approx(one_core / S(n_mode))
    # the 15W mode (4 cores) relative to MAXN: a large op slows down as Amdahl says, a small one less
    big, small = one_op("aten.relu", aux_flops=1e10), one_op("aten.relu", aux_flops=1e4)
    r_big = cm.op_costs(big, "15W").compute_ms[0, CPU] / cm.op_costs(big, "MAXN").compute_ms[0, CPU]
    r_small = cm.op_costs(small, "15W").compute_ms[0, CPU] / cm.op_costs(small, "MAXN").compute_ms[0, CPU]
    f = cm.profile.mode("MAXN").max_freq_mhz["cpu"] / cm.profile.mode("15W").max_freq_mhz["cpu"]
    assert r_big == pytest.approx(f * S(n_mode) / S(cm.profile.mode("15W").cores["cpu"]), rel=1e-3)
    assert f <= r_small < r_big
