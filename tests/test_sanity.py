"""The simulated SoCs against what the field has measured (issue: sim backend, "Sanity against the field").

These run whole episodes through the environment (not sums of per-op costs), with the shipped
spec-derived profiles; the figures they check are printed by ``python tests/test_sanity.py``.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import pytest

import sparoa_env  # noqa: F401
from sparoa_env.graph import Edge, OpGraph

from synthetic import op


def all_on(env_id: str, lane: int, model="resnet50", **kw) -> float:
    env = gym.make(env_id, model=model, thermal=False, **kw).unwrapped
    env.reset(seed=0)
    action = env.score_of(lane)
    while True:
        _, _, done, _, info = env.step(action)
        if done:
            return info["latency_ms"][0]


@pytest.fixture(scope="module")
def resnet50():
    return {(env_id, mode): (all_on(env_id, 0, power_mode=mode), all_on(env_id, 1, power_mode=mode))
            for env_id, mode in [("SparOA-Orin-v0", "MAXN"), ("SparOA-Orin-v0", "15W"),
                                 ("SparOA-OrinNano-v0", "15W")]}


def test_cpu_only_resnet50_is_many_times_slower_than_gpu_only_on_agx(resnet50):
    cpu, gpu = resnet50[("SparOA-Orin-v0", "MAXN")]
    assert cpu / gpu > 10  # the paper: CPU-only up to 50.7x slower than its schedule


def test_gap_shrinks_on_nano(resnet50):
    agx = resnet50[("SparOA-Orin-v0", "MAXN")]
    nano = resnet50[("SparOA-OrinNano-v0", "15W")]
    assert nano[0] / nano[1] < agx[0] / agx[1]


def test_15w_is_slower_on_both_processors(resnet50):
    # Under the nvpmodel caps 15W keeps 4 of 12 CPU cores at half the clock, which hurts the CPU more
    # than the GPU's clock cap: the CPU/GPU gap *widens* in 15W with the spec-derived profile (see
    # docs/profiles.md); the issue expected it to shrink. Only calibration on a device can settle it.
    maxn, w15 = resnet50[("SparOA-Orin-v0", "MAXN")], resnet50[("SparOA-Orin-v0", "15W")]
    assert w15[0] > 2 * maxn[0] and w15[1] > 1.5 * maxn[1]


def test_gpu_only_resnet50_sits_above_tensorrt_int8(resnet50):
    _, gpu = resnet50[("SparOA-Orin-v0", "MAXN")]
    # MLPerf TensorRT INT8: 0.63 ms; eager FP32 is several times slower (torch2trt: 17.9 vs 3.37 ms on Xavier)
    assert 3 * 0.63 < gpu < 17.9


def one_conv(weight_sparsity: float) -> OpGraph:
    # a 1x1 conv, 256 -> 256 channels on 14x14, batch 1 (FLOPs counted on dense shapes)
    flops = 2 * 256 * 256 * 14 * 14
    node = op("conv", flops, 2 * 256 * 14 * 14 * 4, weight_bytes=256 * 256 * 4, weight_sparsity=weight_sparsity,
              pattern="unstructured" if weight_sparsity else "dense")
    node = dataclasses.replace(node, out_shape=(1, 256, 14, 14))
    return OpGraph("conv1x1", 1, [node], [], {"source": "test"})


@pytest.mark.parametrize("lane, lo, hi", [(0, 1.3, 3.0), (1, 0.95, 1.1)])
def test_pruned_1x1_conv_gets_cheaper_on_cpu_barely_on_gpu(lane, lo, hi):
    dense = all_on("SparOA-Orin-v0", lane, model=one_conv(0.0))
    sparse = all_on("SparOA-Orin-v0", lane, model=one_conv(0.9))
    assert lo <= dense / sparse <= hi


if __name__ == "__main__":
    for env_id, modes in [("SparOA-Orin-v0", ["MAXN", "50W", "30W", "15W"]), ("SparOA-OrinNano-v0", ["15W", "7W"])]:
        for m in modes:
            c, g = all_on(env_id, 0, power_mode=m), all_on(env_id, 1, power_mode=m)
            print(f"{env_id:20} {m:5} ResNet-50 b1  CPU-only {c:8.2f} ms  GPU-only {g:7.2f} ms  ratio {c / g:5.1f}x")
    for lane, name in [(0, "CPU"), (1, "GPU")]:
        d, s = all_on("SparOA-Orin-v0", lane, model=one_conv(0.0)), all_on("SparOA-Orin-v0", lane, model=one_conv(0.9))
        print(f"1x1 conv 256ch 14x14, 90% unstructured pruning on the {name}: {d:.4f} -> {s:.4f} ms ({d / s:.2f}x)")
