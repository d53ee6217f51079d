"""The SimPy SoC model, on a hand-checkable fake SoC: exact event times, async launch hiding,
hand-offs, branch overlap, request streams, background load and the accounting identities."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparoa_env.backend import RequestStream
from sparoa_env.sim.background import BackgroundSpec, background_spec
from sparoa_env.sim.soc import PowerModePolicy, SocSimulator

from fakes import FakeSoc
from synthetic import chain, diamond


def make_sim(graph, soc=None, *, requests=1, background=BackgroundSpec(), seed=0, mode="FAST", switching=False):
    soc = soc or FakeSoc()
    return SocSimulator(graph=graph, cost_model=soc, costs_for_mode=lambda m: soc.op_costs(graph, m),
                        power=PowerModePolicy(initial=mode, modes=tuple(soc.modes), switching=switching),
                        background=background, requests=RequestStream.parse(requests),
                        rng=np.random.default_rng(seed), thermal=False, initial_temp_c=30.0)


def run(sim, placement):
    """Place with ``placement(request, op) -> lane`` until the end; return the decision log."""
    log = []
    sim.run_to_decision()
    while not sim.finished:
        r, i = sim.pending
        log.append((r, i, round(sim.now, 9)))
        sim.place(placement(r, i))
        sim.run_to_decision()
    return log


def timeline(sim):
    return [(e.request, e.op, e.lane, round(e.start_ms, 9), round(e.end_ms, 9)) for e in sim.records]


def test_gpu_chain_launches_hide_behind_kernels():
    sim = make_sim(chain(3))
    log = run(sim, lambda r, i: 1)
    # decisions come every launch (0.02 ms): the host runs ahead of the GPU
    assert log == [(0, 0, 0.0), (0, 1, 0.02), (0, 2, 0.04)]
    # op0 launched at 0.02, its input copied from host memory (0.05); the rest queue behind it
    assert timeline(sim) == [(0, 0, 1, 0.07, 1.07), (0, 1, 1, 1.07, 2.07), (0, 2, 1, 2.07, 3.07)]
    assert sim.latencies_ms() == [pytest.approx(3.12)]  # + copy of the output back to host memory


def test_small_gpu_ops_are_launch_bound():
    soc = FakeSoc(dev_ms=(2.0, 0.005), host_ms=(0.01, 0.02))
    sim = make_sim(chain(10), soc)
    run(sim, lambda r, i: 1)
    # each kernel waits for its own launch: the chain takes about 10 launches, not 10 kernels
    # (the first op's input copy overlaps later launches): last launch + its kernel + output copy
    assert sim.latencies_ms()[0] == pytest.approx(10 * 0.02 + 0.005 + 0.05)


def test_cpu_to_gpu_handoff_waits_for_the_producer():
    sim = make_sim(chain(2))
    run(sim, lambda r, i: i)  # op0 on CPU, op1 on GPU
    # CPU worker pays its dispatch (0.01) inside the op; GPU waits for op0, then the hand-off (0.05)
    assert timeline(sim) == [(0, 0, 0, 0.0, 2.01), (0, 1, 1, 2.06, 3.06)]
    assert sim.latencies_ms() == [pytest.approx(3.11)]


def test_independent_branches_overlap_on_two_processors():
    serial = make_sim(diamond())
    run(serial, lambda r, i: 1)
    split = make_sim(diamond())
    run(split, lambda r, i: 0 if i == 2 else 1)  # branch c on the CPU while b runs on the GPU
    t = {e.op: (e.start_ms, e.end_ms) for e in split.records}
    assert t[2][0] < t[1][1] and t[1][0] < t[2][1]  # b and c overlap in time
    soc = FakeSoc(dev_ms=(1.0, 1.0))
    a, b = make_sim(diamond(), soc), make_sim(diamond(), soc)
    run(a, lambda r, i: 1)
    run(b, lambda r, i: 0 if i == 2 else 1)
    assert b.latencies_ms()[0] < a.latencies_ms()[0]


def test_request_stream_overlaps_and_latency_counts_from_arrival():
    sim = make_sim(chain(2), requests={"n": 3, "interarrival_ms": 0.5, "poisson": False})
    log = run(sim, lambda r, i: 1)
    assert [x[:2] for x in log] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert log[2][2] == pytest.approx(0.5) and log[4][2] == pytest.approx(1.0)  # asked at arrival
    lat = sim.latencies_ms()
    assert len(lat) == 3 and all(l > 0 for l in lat)
    # requests queue behind each other on the GPU: later ones wait longer
    assert lat[0] < lat[1] < lat[2]


def test_area_is_the_sum_of_latencies_and_energy_integrates_power():
    sim = make_sim(chain(4), requests={"n": 3, "interarrival_ms": 1.0, "poisson": True}, seed=3)
    run(sim, lambda r, i: (r + i) % 2)
    sim.advance()
    assert sim.area_acc == pytest.approx(sum(sim.latencies_ms()), rel=1e-12)
    soc = FakeSoc()
    busy = sum((e.end_ms - e.start_ms) * soc.busy_w[e.lane] for e in sim.records)
    assert sim.energy_acc == pytest.approx(soc.idle_w * sim.now + busy, rel=1e-9)


def test_power_mode_slows_ops():
    fast, slow = make_sim(chain(3), mode="FAST"), make_sim(chain(3), mode="SLOW")
    run(fast, lambda r, i: 1)
    run(slow, lambda r, i: 1)
    assert slow.latencies_ms()[0] > 1.9 * fast.latencies_ms()[0] - 0.2


def test_background_load_takes_cpu_cores_and_gpu_time():
    quiet = make_sim(chain(3))
    run(quiet, lambda r, i: 0)
    busy = make_sim(chain(3), background=background_spec("heavy"))
    run(busy, lambda r, i: 0)
    assert busy.latencies_ms()[0] > 1.5 * quiet.latencies_ms()[0]
    g_quiet, g_busy = make_sim(chain(3)), make_sim(chain(3), background=background_spec("heavy"))
    run(g_quiet, lambda r, i: 1)
    run(g_busy, lambda r, i: 1)
    assert g_busy.latencies_ms()[0] > 1.5 * g_quiet.latencies_ms()[0]


def test_dynamic_background_and_mode_switches_are_seeded():
    def go(seed):
        sim = make_sim(chain(30), requests={"n": 4, "interarrival_ms": 3.0}, seed=seed,
                       background=background_spec("dynamic"), switching=True)
        log = run(sim, lambda r, i: i % 2)
        return log, timeline(sim), sim.latencies_ms()

    assert go(7) == go(7)
    assert go(7) != go(8)


def test_place_without_pending_decision_is_an_error():
    sim = make_sim(chain(1))
    run(sim, lambda r, i: 1)
    with pytest.raises(RuntimeError, match="no decision is pending"):
        sim.place(0)


def test_background_spec_validation_names_the_field():
    with pytest.raises(ValueError, match="unknown background 'medium'.*none, light, heavy, dynamic"):
        background_spec("medium")
    with pytest.raises(ValueError, match="unknown field.*'burst_rate'"):
        background_spec({"burst_rate": 3})
    with pytest.raises(ValueError, match="static_cpu_share"):
        background_spec({"static_cpu_share": 1.5})


def test_step_transfer_ms_is_what_the_op_paid_first_switch_included():
    """The step info's transfer_ms left out the profile's first_switch_us that the simulator charges to a
    request's first hand-off between lanes (host profile: 70 us on top of 7 us)."""
    import gymnasium as gym

    import sparoa_env.envs  # noqa: F401

    checked = 0
    for seed in range(3):
        env = gym.make("SparOA-Host-v0", model="mobilenet_v3_small", requests={"n": 2, "interarrival_ms": 0.5})
        u = env.unwrapped
        assert u.profile.transfer.first_switch_us > 0
        env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        said, paid, done = {}, {}, False
        while not done:
            _, _, done, _, info = env.step(u.score_of(int(rng.integers(2))))
            said[(info["request"], info["op"])] = info["transfer_ms"]
            paid.update({(e["request"], e["op"]): e["transfer_ms"] for e in info["executed"]})
        assert said.keys() == paid.keys()
        assert all(abs(said[k] - paid[k]) < 1e-9 for k in said)
        checked += sum(v > u.profile.transfer.first_switch_us / 1e3 for v in said.values())
    assert checked >= 3  # the first switch of each request was among them


def test_throttling_slows_host_side_launch_work():
    """Host work (launches, CPU-lane dispatch) is priced at the power mode's CPU clock, and a hot die lowers
    that clock too: an all-on-NPU resnet50 on Core Ultra (launch-bound) used to take the same 26.3 ms at a
    0.4 throttle as cool. Now it slows by about 1 / throttle ** host_freq_exponent."""
    import gymnasium as gym

    import sparoa_env.envs  # noqa: F401

    def npu_only(temp):
        env = gym.make("SparOA-CoreUltra-v0", model="resnet50", initial_temp_c=temp)
        u = env.unwrapped
        env.reset(seed=0)
        done = False
        while not done:
            _, _, done, _, info = env.step(u.score_of(2))
        return info["latency_ms"][0], u.backend.sim.throttle, u.profile.cost_rules.host_freq_exponent

    cool, t_cool, _ = npu_only(25.0)
    hot, t_hot, exp = npu_only(110.0)
    assert t_cool == 1.0 and t_hot < 0.5
    assert hot > 2.0 * cool
    assert hot <= cool / t_hot ** exp * 1.05
