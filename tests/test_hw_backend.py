"""Backend contract: the same assertions on the sim and hw backends (STYLE 12), plus hw-only checks.

The hw backend runs on two CPU core groups here (``{"cpu": "cpu:0", "gpu": "cpu:1"}``); on a CUDA machine
the GPU variant runs too.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import sparoa_env  # noqa: F401 - registers the ids
from sparoa_env.backend import HW_STATE_FIELDS, make_backend

torch = pytest.importorskip("torch")

CORES = sorted(os.sched_getaffinity(0))
CPU_MAP = {"cpu": f"cpu:{CORES[0]}", "gpu": f"cpu:{CORES[-1]}"} if len(CORES) >= 2 else {"cpu": "cpu", "gpu": "cpu"}


def tiny(batch: int = 1):
    """A small branchy CNN (the model this file hands to the env as 'tests/test_hw_backend.py:tiny')."""
    nn = torch.nn

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.a = nn.Conv2d(8, 8, 3, padding=1)
            self.b = nn.Conv2d(8, 8, 1)
            self.fc = nn.Linear(16, 4)

        def forward(self, x):
            h = torch.relu(self.stem(x))
            z = torch.cat([torch.relu(self.a(h)), torch.sigmoid(self.b(h))], 1).mean((2, 3))
            return self.fc(z)

    torch.manual_seed(0)
    return Tiny().eval(), (torch.randn(batch, 3, 16, 16),)


MODEL = f"{Path(__file__).resolve()}:tiny"
BACKENDS = [pytest.param("sim", {}, id="sim"), pytest.param("hw", {"device_map": CPU_MAP}, id="hw-cpu-groups")]
if torch.cuda.is_available():
    BACKENDS.append(pytest.param("hw", {"device_map": {"cpu": "cpu", "gpu": "cuda:0"}}, id="hw-cuda",
                                 marks=pytest.mark.gpu))

_ENVS: dict = {}


def make(kind, opts, **kw):
    key = repr((kind, sorted(opts.items(), key=str), sorted(kw.items(), key=str)))
    if key not in _ENVS:  # building the hw backend exports the model: share one env per configuration
        _ENVS[key] = gym.make("SparOA-Orin-v0", model=MODEL, backend=kind, **opts, **kw)
    return _ENVS[key]


def rollout(env, seed):
    obs, info0 = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    ret, steps, step_energy, infos = 0.0, 0, 0.0, []
    while True:
        assert env.observation_space.contains(obs)
        obs, r, term, trunc, info = env.step(rng.uniform(-1, 1, (1,)).astype(np.float32))
        ret, steps, step_energy = ret + r, steps + 1, step_energy + info["step_energy_mj"]
        infos.append(info)
        if term or trunc:
            return ret, steps, step_energy, infos, info0


@pytest.mark.parametrize("kind, opts", BACKENDS)
def test_spaces_info_keys_and_return_identity(kind, opts):
    env = make(kind, opts, requests={"n": 3, "interarrival_ms": 0.5, "poisson": False})
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
    assert env.observation_space.shape == (env.unwrapped.n_obs,)
    n_ops = len(env.unwrapped.graph.nodes)
    ret, steps, step_energy, infos, info0 = rollout(env, seed=1)
    assert steps == 3 * n_ops
    assert info0["processors"] == ("cpu", "gpu")
    for info in infos:
        for key in ("request", "op", "processor", "dispatch_ms", "transfer_ms", "step_energy_mj", "executed"):
            assert key in info, key
        assert info["processor"] in ("cpu", "gpu") and info["transfer_ms"] >= 0
        for e in info["executed"]:
            assert {"request", "op", "processor", "start_ms", "end_ms", "transfer_ms", "energy_mj"} <= set(e)
            assert e["end_ms"] >= e["start_ms"]
    final = infos[-1]
    for key in ("latency_ms", "energy_mj", "plan", "makespan_ms"):
        assert key in final, key
    assert len(final["latency_ms"]) == 3 and all(x > 0 for x in final["latency_ms"])
    assert set(final["plan"]) == {n.name for n in env.unwrapped.graph.nodes}
    assert set(final["plan"].values()) <= {"cpu", "gpu"}
    # the return identity: exact on the backend's own clock (energy_weight is 0 here)
    assert ret == pytest.approx(-sum(final["latency_ms"]), rel=1e-9, abs=1e-9)
    if math.isnan(final["energy_mj"]):
        assert "energy_reason" in final and step_energy == 0.0
    else:
        assert final["energy_mj"] * 3 == pytest.approx(step_energy, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("kind, opts", BACKENDS)
def test_energy_weighted_return_identity(kind, opts):
    env = make(kind, opts, requests=2, energy_weight=0.1)
    ret, _, step_energy, infos, _ = rollout(env, seed=4)
    assert ret == pytest.approx(-sum(infos[-1]["latency_ms"]) - 0.1 * step_energy, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("kind, opts", BACKENDS)
def test_decisions_carry_hardware_state(kind, opts):
    env = make(kind, opts, requests=2)
    backend = env.unwrapped.backend
    env.reset(seed=0)
    d = env.unwrapped._decision
    hw = np.asarray(d.hw_state, dtype=float).reshape(2, len(HW_STATE_FIELDS))  # an array or lane-major flat list
    assert np.isfinite(hw).all() and (hw >= 0).all()
    ib = np.asarray(d.input_bytes_on, dtype=float)
    assert ib.shape == (2,) and ib[0] > 0  # the graph input starts in host memory
    assert backend.nondeterministic == (kind == "hw")
    assert hw[:, 0].max() <= 1.0 and hw[:, 1].max() <= 1.0 and hw[:, 5].max() <= 1.0


def test_hw_timeline_is_measured_and_consistent():
    env = make("hw", {"device_map": CPU_MAP}, requests={"n": 3, "interarrival_ms": 0.5, "poisson": False})
    _, _, _, infos, _ = rollout(env, seed=2)
    tl = env.unwrapped.backend.timeline()
    n_ops = len(env.unwrapped.graph.nodes)
    assert len(tl) == 3 * n_ops
    assert [e for info in infos for e in info["executed"]] == tl
    by_lane: dict = {}
    for e in tl:
        assert e["end_ms"] > e["start_ms"] >= e["dispatch_ms"] >= 0.0  # real ops take time
        by_lane.setdefault(e["processor"], []).append(e)
    for ops in by_lane.values():  # a lane runs one op at a time, FIFO
        for a, b in zip(ops, ops[1:]):
            assert b["start_ms"] >= a["end_ms"] - 1e-9
    lat = infos[-1]["latency_ms"]
    arrivals = [0.0, 0.5, 1.0]
    ends = [max(e["end_ms"] for e in tl if e["request"] == r) for r in range(3)]
    assert lat == pytest.approx([d - a for d, a in zip(ends, arrivals)])


def test_hw_backend_rejects_bad_options():
    from sparoa_env.profile import load_profile

    prof = load_profile("orin-agx")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['devicemap'\].*device_map"):
        make_backend("hw", profile=prof, model=MODEL, devicemap=CPU_MAP)
    with pytest.raises(ValueError, match="cannot change the machine's power mode"):
        make_backend("hw", profile=prof, model=MODEL, power_mode="switching", device_map=CPU_MAP)
    with pytest.raises(ValueError, match="hw backend: repeats must be an integer >= 1, got 'x'"):
        make_backend("hw", profile=prof, model=MODEL, device_map=CPU_MAP, repeats="x")
    with pytest.raises(ValueError, match="hw backend: warmup must be true or false, got 'yes'"):
        make_backend("hw", profile=prof, model=MODEL, device_map=CPU_MAP, warmup="yes")
    with pytest.warns(UserWarning, match="background='heavy' adds no load"):
        make_backend("hw", profile=prof, model=MODEL, device_map=CPU_MAP, background="heavy", telemetry=False).close()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"CUDA is not available on this machine; map both processors to CPU core "
                                             r"groups, e.g. device_map=\{'cpu': 'cpu:0', 'gpu': 'cpu:1'\}"):
            gym.make("SparOA-Orin-v0", model=MODEL, backend="hw", device_map={"cpu": "cpu", "gpu": "cuda:0"})


def test_module_without_model_names_the_graph(tmp_path):
    """`module` + `example_inputs` alone used to be checked against the default zoo model and refused."""
    m, x = tiny()
    env = gym.make("SparOA-Orin-v0", backend="hw", module=m, example_inputs=x, device_map=CPU_MAP, telemetry=False)
    try:
        u = env.unwrapped
        assert u.graph.model == type(m).__name__ and len(u.graph.nodes) > 0
        env.reset(seed=0)
        done, ret = False, 0.0
        while not done:
            _, r, done, _, info = env.step(np.zeros(1, dtype=np.float32))
            ret += r
        assert ret == pytest.approx(-sum(info["latency_ms"]))
    finally:
        env.close()


def test_hw_graph_must_match_the_module():
    from sparoa_env.profile import load_profile
    from synthetic import chain

    b = make_backend("hw", profile=load_profile("orin-agx"), model=MODEL, device_map=CPU_MAP, telemetry=False)
    try:
        with pytest.raises(ValueError, match="does not match the exported program"):
            b.reset(graph=chain(3), rng=np.random.default_rng(0))
    finally:
        b.close()
