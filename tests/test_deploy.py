"""Deployment (agents/deploy.py, ``sparoa deploy``): CLI errors, the telemetry -> state mapping is HwBackend's,
engine swaps serve every request exactly once with correct outputs, the injector is cleaned up, and a
lane-load flip makes the policy re-plan. No timing assertions (the figures are in benchmarks/bench_deploy.py)."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("psutil")

from agents import deploy as D  # noqa: E402
from sparoa_env import cli  # noqa: E402
from sparoa_env.hw import backend as hb  # noqa: E402
from sparoa_env.hw.devices import parse_device_map  # noqa: E402

TOY = "tests/models_unseen.py:parallel_mlp"
PROCS = ("cpu0", "cpu1")
DMAP = {"cpu0": "cpu:0", "cpu1": "cpu:1"} if len(os.sched_getaffinity(0)) >= 2 else {"cpu0": "cpu", "cpu1": "cpu"}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class LaneLoadStub:
    """A deterministic stand-in for a trained policy (the evaluation protocol: reset / act, a config): every op
    goes to the lane with the smaller observed background share (lane 0 on ties). Tests only."""

    name = "stub"
    config = {"env_id": "SparOA-Host-v0", "env_kwargs": {}}

    def reset(self, env, info, seed):
        from sparoa_env.backend import HW_STATE_FIELDS
        from sparoa_env.envs.features import N_STATIC

        self.env = env
        P, nf = env.n_lanes, len(HW_STATE_FIELDS)
        self.bg_idx = [N_STATIC + P + k * nf + HW_STATE_FIELDS.index("background_frac") for k in range(P)]

    def act(self, obs):
        bg = [obs[i] for i in self.bg_idx]
        return self.env.score_of(int(np.argmin(np.asarray(bg) + 1e-6 * np.arange(len(bg)))))


class ScriptedTelemetry:
    """Telemetry.sample()'s dict with per-core utilisation from a list the test sets (8 entries, so that this
    process's own share, spread over them by the sampler's estimate, stays small)."""

    def __init__(self) -> None:
        self.util = [0.0] * 8

    def sample(self):
        return {"cpu": {"util_percpu": list(self.util)}, "gpus": [], "jetson": None, "power_mode": None}

    def close(self):
        pass


@pytest.fixture
def scripted(monkeypatch):
    """With scripted telemetry, this test process's own per-core CPU share (real, from /proc) would be subtracted
    from the scripted utilisation; use the even spread over the 8 scripted cores instead (at most 2/8 here)."""
    monkeypatch.setattr(hb, "_thread_cpu", lambda: None)


@pytest.fixture(scope="module")
def toy():
    from sparoa_env.modelspec import load_module

    from sparoa_env.hw.program import Program

    module, inputs = load_module(TOY, 1)
    return module, inputs, Program(module, inputs)


@pytest.fixture(scope="module")
def replanner():
    r = D.Replanner(LaneLoadStub(), TOY)
    yield r
    r.close()


# ------------------------------------------------------------------------------------------------ CLI errors
@pytest.mark.parametrize("argv, needle", [
    (["deploy", "no_such_model", "--requests", "2"], "unknown zoo model 'no_such_model'"),
    (["deploy", "mobilenet_v3_small", "--policy", "/nonexistent/policy"], "--policy /nonexistent/policy: no such directory"),
    (["deploy", "mobilenet_v3_small", "--inject", "cpu0"], "expected LANE@START-END"),
    (["deploy", "mobilenet_v3_small", "--inject", "gpu@1-2"], "unknown lane 'gpu'; lanes: cpu0, cpu1"),
    (["deploy", "mobilenet_v3_small", "--inject", "cpu1@5-2"], "0 <= START < END"),
    (["deploy", "mobilenet_v3_small", "--requests", "0"], "--requests must be a positive integer"),
])
def test_cli_errors_name_the_bad_input(argv, needle, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("sparoa deploy: error:") and needle in err


def test_cli_refuses_an_out_with_a_deploy_run(tmp_path, capsys):
    (tmp_path / "plan_1.json").write_text("{}")                  # a plan of an earlier run, no deploy.json
    assert cli.main(["deploy", "mobilenet_v3_small", "--out", str(tmp_path), "--requests", "2"]) == 2
    assert f"{tmp_path} holds a deploy run already (plan_1.json); pass --force" in capsys.readouterr().err
    assert (tmp_path / "plan_1.json").read_text() == "{}"
    assert cli.main(["deploy", "mobilenet_v3_small", "--rate", "-3"]) == 2
    assert "--rate must be >= 0" in capsys.readouterr().err


def test_cli_refuses_a_directory_that_is_not_a_policy(tmp_path, capsys):
    assert cli.main(["deploy", "mobilenet_v3_small", "--policy", str(tmp_path)]) == 2
    assert "config.json is missing" in capsys.readouterr().err


def test_parse_inject():
    assert D.parse_inject("cpu0@1-2.5, cpu1@3-4", PROCS) == [D.Injection("cpu0", 1.0, 2.5), D.Injection("cpu1", 3.0, 4.0)]


# ------------------------------------------------------------------------------------------------ state mapping
def test_state_mapping_is_hwbackends_own_code(scripted):
    tel = ScriptedTelemetry()
    tel.util[:2] = [0.95, 0.05]
    specs = parse_device_map({"cpu0": "cpu:0", "cpu1": "cpu:1"}, PROCS, check=[])
    live = D.LiveHardwareState([specs[p] for p in PROCS], tel)
    assert type(live.sampler) is hb.TelemetrySampler and live.sampler.interval_ms == 0.0
    s = live.read()
    want = [hb.lane_telemetry(specs[p], live.sampler.latest) for p in PROCS]
    assert s.background == tuple(b for b, _ in want) and s.freq == tuple(f for _, f in want)
    assert s.background[0] > 0.5 > s.background[1]


def test_own_share_is_subtracted_per_core():
    spec0, spec1 = (parse_device_map({"cpu0": "cpu:0", "cpu1": "cpu:1"}, PROCS, check=[])[p] for p in PROCS)
    tel = {"cpu": {"util_percpu": [0.9, 0.1]}, "own_cpu_frac": 0.3, "own_cpu_percpu": [0.6, 0.0]}
    assert hb.lane_telemetry(spec0, tel)[0] == pytest.approx(0.3)   # our pinned lane's own work
    assert hb.lane_telemetry(spec1, tel)[0] == pytest.approx(0.1)
    del tel["own_cpu_percpu"]                                       # no /proc: spread evenly
    assert hb.lane_telemetry(spec0, tel)[0] == pytest.approx(0.6)
    threads = hb._thread_cpu()
    assert threads is not None and threading.get_native_id() in threads
    assert all(sec >= 0 and core >= 0 for sec, core in threads.values())


def test_own_share_is_not_a_clock_tick_over_a_short_window(monkeypatch):
    """CPU time comes in 10 ms ticks: two samples 1 ms apart with one tick between them must not read as this
    process filling the cores (what made a lane under full scripted load look idle); over a long window the
    share is the plain rate."""
    cpu = {"proc": 1.0, "threads": {1: (1.0, 0)}}
    now = [0.0]
    monkeypatch.setattr(hb, "_process_cpu_s", lambda: cpu["proc"])
    monkeypatch.setattr(hb, "_thread_cpu", lambda: dict(cpu["threads"]))
    tel = ScriptedTelemetry()
    sampler = hb.TelemetrySampler(tel, interval_ms=0.0, clock=lambda: now[0])
    assert sampler.sample()["own_cpu_frac"] == 0.0                  # nothing to compare with yet
    now[0], cpu["proc"], cpu["threads"] = 0.001, 1.01, {1: (1.01, 0)}
    s = sampler.sample()
    assert s["own_cpu_percpu"][0] == pytest.approx(0.1) and s["own_cpu_frac"] == pytest.approx(0.1 / 8)
    now[0], cpu["proc"], cpu["threads"] = 0.5, 1.41, {1: (1.41, 0)}  # 0.4 s of one core since the 1 ms sample
    s = sampler.sample()
    assert s["own_cpu_percpu"][0] == pytest.approx(0.4 / 0.499) and s["own_cpu_frac"] == pytest.approx(0.4 / 0.499 / 8)
    now[0], cpu["proc"], cpu["threads"] = 0.55, 1.46, {1: (1.46, 0)}  # baseline: the snapshot >= 100 ms old
    assert sampler.sample()["own_cpu_percpu"][0] == pytest.approx(0.45 / 0.549)
    with pytest.raises(ValueError, match="interval_ms and own_window_ms must be >= 0"):
        hb.TelemetrySampler(tel, interval_ms=-1)


def test_sampler_caches_for_its_interval():
    now = [0.0]
    tel = ScriptedTelemetry()
    sampler = hb.TelemetrySampler(tel, interval_ms=50.0, clock=lambda: now[0])
    first = sampler.sample()
    tel.util[0] = 1.0
    now[0] = 0.04
    assert sampler.sample() is first
    now[0] = 0.06
    assert sampler.sample()["cpu"]["util_percpu"][0] == 1.0
    assert hb.TelemetrySampler(None).sample() is None


# ------------------------------------------------------------------------------------------------ re-planning

def _deployment(toy, replanner, **kw):
    """Scripted telemetry, the live state read through it, and a Deployment of the toy model on DMAP."""
    module, inputs, program = toy
    tel = ScriptedTelemetry()
    specs = parse_device_map(DMAP, PROCS, check=[])
    live = D.LiveHardwareState([specs[p] for p in PROCS], tel)
    return tel, live, D.Deployment(module, inputs, replanner, live, device_map=DMAP, program=program, **kw)


def test_lane_load_flip_makes_the_policy_replan(toy, replanner, scripted):
    tel, live, dep = _deployment(toy, replanner, persist=2, interval_ms=1e6, warmup=1)
    try:
        dep.start(settle_ms=0)
        assert set(dep.plans[dep.current_plan].placement.values()) == {"cpu0"}
        tel.util[:2] = [1.0, 0.0]                          # lane cpu0 taken by another program
        assert dep.observe(live.read()) is None           # one sample is not enough (persist=2)
        ev = dep.observe(live.read())
        assert ev is not None and ev.swapped
        assert set(dep.plans[dep.current_plan].placement.values()) == {"cpu1"}
        assert dep.observe(live.read()) is None           # within the hysteresis of the new plan's state
        tel.util[:2] = [0.0, 0.0]
        dep.observe(live.read())
        ev = dep.observe(live.read())
        assert ev is not None and ev.swapped and ev.build_ms == 0.0  # back to the first plan: its engine is cached
        assert set(dep.plans[dep.current_plan].placement.values()) == {"cpu0"}
        assert len(dep.plans) == 2
    finally:
        dep.close()


def test_fixed_mode_never_replans(toy, replanner, scripted):
    tel, live, dep = _deployment(toy, replanner, replan=False, persist=1, interval_ms=1e6, warmup=0)
    try:
        dep.start(settle_ms=0, initial=D.quiet_state(2))
        tel.util[:2] = [1.0, 0.0]
        for _ in range(3):
            assert dep.observe(live.read()) is None
        assert len(dep.plans) == 1 and len(dep.states) == 3
    finally:
        dep.close()


def test_swaps_serve_every_request_once_with_eager_outputs(toy, replanner, scripted):
    module, inputs, program = toy
    tel, live, dep = _deployment(toy, replanner, persist=1, interval_ms=1e6, warmup=1)
    g = torch.Generator().manual_seed(0)
    reqs = [tuple(torch.randn(x.shape, generator=g) for x in inputs) for _ in range(24)]
    stop = threading.Event()

    def flipper():  # flips the lane load as fast as re-planning allows, while requests are served
        k = 0
        while not stop.is_set():
            tel.util[:2] = [1.0, 0.0] if k % 2 == 0 else [0.0, 0.0]
            dep.observe(live.read())
            k += 1

    try:
        dep.start(settle_ms=0)
        outs = dep.serve(reqs[:8], [0.0] * 8, keep_outputs=True)      # plan A
        tel.util[:2] = [1.0, 0.0]
        assert dep.observe(live.read()).swapped                       # plan B, between requests
        outs += dep.serve(reqs[8:12], [0.0] * 4, keep_outputs=True)
        t = threading.Thread(target=flipper)
        t.start()
        try:
            outs += dep.serve(reqs[12:], [0.0] * 12, keep_outputs=True)   # swaps racing with serving
        finally:
            stop.set()
            t.join()
    finally:
        dep.close()
    assert len(outs) == len(reqs) == len(dep.records)
    assert {r.plan for r in dep.records[:12]} == {0, 1} and all(r.plan == 0 for r in dep.records[:8])
    with torch.inference_mode():
        for x, y in zip(reqs, outs):
            ref = module(*x)
            torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------------ injector
def test_injector_processes_are_gone_after_stop():
    inj = D.Injector([D.Injection("cpu1", 0.0, 60.0)], {"cpu1": [sorted(os.sched_getaffinity(0))[-1]]})
    with inj:
        inj.start()
        time.sleep(0.2)
        assert inj.pids and all(_alive(p) for p in inj.pids)
    assert not any(_alive(p) for p in inj.pids)


def test_deploy_cleans_up_the_injector_even_on_ctrl_c(monkeypatch, replanner):
    made = []
    real_start = D.Injector.start

    def start(self, t0_unix=None):
        made.append(self)
        real_start(self, t0_unix)

    def interrupted(self, *a, **k):
        time.sleep(0.1)
        assert made and all(_alive(p) for p in made[-1].pids)
        raise KeyboardInterrupt

    monkeypatch.setattr(D.Injector, "start", start)
    monkeypatch.setattr(D.Deployment, "serve", interrupted)
    with pytest.raises(KeyboardInterrupt):
        D.deploy(TOY, LaneLoadStub(), device_map=DMAP, requests=3, inject="cpu1@0-60", interval_ms=50)
    assert made[-1].pids and not any(_alive(p) for p in made[-1].pids)


def test_deploy_end_to_end_reports_every_request(replanner):
    res = D.deploy(TOY, LaneLoadStub(), device_map=DMAP, requests=6, rate=None, inject="cpu1@0-0.2", interval_ms=50)
    assert res["requests"] == 6 and len(res["requests_detail"]) == 6
    assert sorted(r["index"] for r in res["requests_detail"]) == list(range(6))
    assert sum(res["served_by_plan"].values()) == 6
    assert not any(_alive(p) for p in res["injector_pids"])


# ------------------------------------------------------------------------------------------------ shipped policy
def test_shipped_policy_moves_off_a_loaded_lane():
    from agents.policy import load_policy

    r = D.Replanner(load_policy(D.DEFAULT_POLICY), "mobilenet_v3_small")
    try:
        quiet, _ = r.plan(D.quiet_state(2))
        loaded0, _ = r.plan(D.HardwareState((0.9, 0.0), (1.0, 1.0)))
        loaded1, _ = r.plan(D.HardwareState((0.0, 0.9), (1.0, 1.0)))
    finally:
        r.close()
    assert quiet.counts() == {"cpu0": len(quiet)} and loaded1.counts() == {"cpu0": len(quiet)}
    assert loaded0.counts() == {"cpu1": len(quiet)}


def test_lane_share_background_slows_only_that_lane():
    import gymnasium as gym

    import sparoa_env.envs  # noqa: F401

    lat = {}
    for bg in ({}, {"cpu0": 0.5}):
        env = gym.make("SparOA-Host-v0", model="mobilenet_v3_small", background={"lane_share": bg}, thermal=False)
        u = env.unwrapped
        for lane in (0, 1):
            lat[(tuple(bg), lane)] = D._replay(env, np.full(len(u.graph.nodes), lane), seed=0)
        env.close()
    assert lat[(("cpu0",), 0)] > 1.3 * lat[((), 0)]
    assert lat[(("cpu0",), 1)] == pytest.approx(lat[((), 1)])
    with pytest.raises(ValueError, match="lane_share names unknown processor"):
        gym.make("SparOA-Host-v0", model="mobilenet_v3_small", background={"lane_share": {"gpu": 0.5}})
