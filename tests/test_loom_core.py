"""SparseLoom pieces: shipped tables, stitching in torch, latency tables, optimizer, preloader, simulator."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from sparoa_env.loom.catalog import DATA_DIR, load_catalog, pipelines
from sparoa_env.loom.optimizer import Problem, objective, solve_heuristic, solve_milp
from sparoa_env.loom.preloader import FullPreload, LRUCache, NoPreload, PinnedSet, hotness, select_hot

SMALL_TASKS = ("digits-cnn", "cancer-mlp", "wine-mlp")


@pytest.fixture(scope="module")
def orin():
    return load_catalog("orin-agx")


def test_shipped_accuracy_tables_are_measured_with_provenance(orin):
    for name in SMALL_TASKS:
        d = json.loads((DATA_DIR / "accuracy" / f"{name}.json").read_text())
        assert d["provenance"].startswith("measured on ") and "sparoa loom build" in d["provenance"]
        assert len(d["variants"]) >= 8 and len(d["correct"]) == len(d["variants"]) ** d["n_blocks"]
        assert {"dense", "fp16", "int8", "structured-0.5", "unstructured-0.2", "unstructured-0.9"} <= set(d["variants"])
        t = orin.task(name)
        assert t.acc(t.uniform(0)) > 0.9  # trained models learn their task
    for name in ("resnet50", "bert_base", "vit_small"):
        assert orin.task(name).accuracy is None  # random weights: latency only


def test_pipelines_enumerate_stage_orders():
    assert len(pipelines(4, 2)) == 8 and len(pipelines(4, 3)) == 39
    for pl in pipelines(4, 3):  # contiguous stages, each processor at most once
        stages = [k for k, _ in itertools.groupby(pl)]
        assert len(stages) == len(set(stages))
    assert (1, 0, 0, 2) in pipelines(4, 3)  # gpu -> cpu -> npu


def test_vectorised_latencies_match_the_stage_model(orin):
    rng = np.random.default_rng(0)
    for name in ("digits-cnn", "bert_base"):
        t = orin.task(name)
        for pl in pipelines(4, 2):
            lat = t.all_latencies(pl)
            for i in rng.integers(0, len(lat), 5):
                assert lat[i] == pytest.approx(t.solo_latency_ms(t.stitch_of(int(i)), pl))


def test_variants_change_simulated_cost_and_memory(orin):
    t = orin.task("resnet50")
    v = {n: i for i, n in enumerate(t.variants)}
    gpu = (1, 1, 1, 1)
    assert t.solo_latency_ms(t.uniform(v["int8"]), gpu) < t.solo_latency_ms(t.uniform(v["dense"]), gpu)
    assert t.memory_mb(t.uniform(v["int8"])) == pytest.approx(t.memory_mb(t.uniform(v["dense"])) / 4, rel=0.01)
    assert t.memory_mb(t.uniform(v["structured-0.5"])) < t.memory_mb(t.uniform(v["dense"]))


def test_stitched_models_reproduce_the_shipped_accuracy():
    torch = pytest.importorskip("torch")
    from sparoa_env.loom import stitch, tasks

    name = "cancer-mlp"
    model = tasks.load_trained(name)
    split = tasks.load_split(name)
    bank = stitch.BlockBank(model, split["x_train"])
    d = json.loads((DATA_DIR / "accuracy" / f"{name}.json").read_text())
    rng = np.random.default_rng(0)
    for i in [0, 9999, *rng.integers(0, 10_000, 6).tolist()]:
        s = stitch.variant_of(int(i), 4)
        c, n = tasks.evaluate_accuracy(stitch.StitchedModel(bank, s), split["x_test"], split["y_test"])
        assert c == d["correct"][i] and n == d["n_test"]
    # the prefix-tree measurement equals one-by-one runs (a 3-variant bank: 81 stitched variants)
    small = stitch.BlockBank(model, split["x_train"], variants=("unstructured-0.9", "int8", "fp16"))
    tree = stitch.measure_all(small, split["x_test"], split["y_test"])
    one_by_one = [tasks.evaluate_accuracy(stitch.StitchedModel(small, stitch.variant_of(i, 4, 3)), split["x_test"],
                                          split["y_test"])[0] for i in range(81)]
    assert tree == one_by_one and len(set(tree)) > 1
    assert torch.get_num_threads() >= 1


def test_int8_blocks_are_really_quantized_and_adapters_apply():
    torch = pytest.importorskip("torch")
    from sparoa_env.loom import stitch, tasks, variants

    model = tasks.load_trained("wine-mlp")
    split = tasks.load_split("wine-mlp")
    bank = stitch.BlockBank(model, split["x_train"])
    i8 = variants.VARIANTS.index("int8")
    layer = bank.blocks[1][i8].block[0]
    scale = layer.weight.abs().amax(dim=1, keepdim=True) / 127
    q = layer.weight / scale
    assert torch.allclose(q, q.round(), atol=1e-4)  # int8 grid per output channel
    x = torch.from_numpy(split["x_test"][:8])
    out = bank.run_block(x, 0, i8, "float32")
    s1 = bank.calibration.scales[1]
    assert torch.allclose(out / s1, (out / s1).round(), atol=1e-4)  # output requantized on the boundary grid
    assert variants.adapter_kind("float32", "int8") == "quantize" and variants.adapter_kind("int8", "int8") is None
    fp16 = bank.blocks[0][variants.VARIANTS.index("fp16")].block[0].weight
    assert torch.equal(fp16, fp16.half().float())


def test_milp_is_exact_on_a_tiny_instance_and_beats_or_ties_the_heuristic():
    rng = np.random.default_rng(1)
    T, C, P = 3, 5, 2
    busy = tuple(rng.uniform(0.1, 3.0, (C, P)) * (rng.random((C, P)) < 0.7) + 1e-3 for _ in range(T))
    lat = tuple(b.sum(axis=1) for b in busy)
    acc_bad = tuple(rng.random(C) < 0.3 for _ in range(T))
    prob = Problem(np.array([0.05, 0.08, 0.03]), busy, lat, acc_bad, np.array([3.0, 4.0, 2.5]))
    m, h = solve_milp(prob), solve_heuristic(prob)
    assert m.objective <= h.objective + 1e-9
    best = min(objective(prob, c)[0] for c in itertools.product(range(C), repeat=T))
    assert h.objective >= best - 1e-9 and m.objective >= best - 1e-9
    # with no queueing (tiny rates) the linearised MILP is exact
    prob0 = Problem(np.full(T, 1e-6), busy, lat, acc_bad, np.array([3.0, 4.0, 2.5]))
    best0 = min(objective(prob0, c)[0] for c in itertools.product(range(C), repeat=T))
    assert solve_milp(prob0).objective == pytest.approx(best0)


def test_memory_policies():
    b1, b2, b3 = ("t", 0, 0), ("t", 1, 0), ("t", 2, 0)
    lru = LRUCache(budget_mb=10, load_gbps=1.0)
    assert lru.acquire(b1, 6, 0) == 6.0 and lru.acquire(b1, 6, 0) == 0.0
    lru.release(b1, 6, 0)
    lru.release(b1, 6, 0)
    assert lru.acquire(b2, 6, 1) == 6.0  # evicts b1 (idle, over budget)
    lru.release(b2, 6, 1)
    assert b1 not in lru.cache and lru.peak_mb == 12
    none = NoPreload(2.0)
    assert none.acquire(b1, 4, 0) == 2.0
    none.release(b1, 4, 0)
    assert none.current_mb == 0
    full = FullPreload({b1: 4, b2: 4})
    assert full.acquire(b2, 4, 0) == 0 and full.peak_mb == 8
    pin = PinnedSet({b1: 4})
    assert pin.acquire(b1, 4, 0) == 0 and pin.acquire(b3, 2, 0) == 2.0


def test_hotness_prefers_indispensable_blocks(orin):
    t = orin.task("wine-mlp")
    st = np.array([[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 2, 0]])
    scores = hotness(t, st, np.array([0.9, 0.9, 0.5]), np.array([1.0, 1.0, 1.0]), [(2.0, 0.8), (2.0, None)])
    assert scores[("wine-mlp", 0, 0)] > scores[("wine-mlp", 1, 1)]
    kept = select_hot(scores, {b: 1.0 for b in scores}, 2.0)
    assert ("wine-mlp", 0, 0) in kept and len(kept) == 2


def test_simulator_contention_and_determinism(orin):
    from sparoa_env.loom.sim import LoomSimulator
    from sparoa_env.loom.workload import Request
    from sparoa_env.sim.background import background_spec

    def run(n_same_time, bg="none", seed=0):
        reqs = [Request(i, "resnet50", 0.0, 1e9, None) for i in range(n_same_time)]
        sim = LoomSimulator(catalog=orin, requests=reqs, rng=np.random.default_rng(seed), background=background_spec(bg),
                            memory=FullPreload({("resnet50", k, 0): 1.0 for k in range(4)}), load_gbps=1.0)
        return [r.latency_ms for r in sim.run_all(lambda req, s: ((0, 0, 0, 0), (1, 1, 1, 1)))]

    t = orin.task("resnet50")
    alone = run(1)[0]
    assert alone == pytest.approx(t.solo_latency_ms((0, 0, 0, 0), (1, 1, 1, 1)))
    two = run(2)
    assert max(two) > 1.8 * alone  # FIFO on the GPU: the second waits
    assert run(3, "dynamic", 5) == run(3, "dynamic", 5)


def _sim(catalog, reqs, bg="none", memory=None):
    from sparoa_env.loom.sim import LoomSimulator
    from sparoa_env.sim.background import background_spec

    return LoomSimulator(catalog=catalog, requests=reqs, rng=np.random.default_rng(0), background=background_spec(bg),
                         memory=memory or FullPreload({}), load_gbps=1.0)


def test_what_if_prediction_agrees_with_the_simulator(orin):
    """Hand-checkable: two ResNet-50 requests at t=0 on the GPU, no background: the second waits for each
    block of the first (FIFO, block by block), and the what-if run predicts both ends exactly."""
    from sparoa_env.loom.runtime import predict_ends
    from sparoa_env.loom.workload import Request

    t = orin.task("resnet50")
    s, gpu = (8, 8, 8, 8), (1, 1, 1, 1)
    reqs = [Request(0, "resnet50", 0.0, 1e9, None), Request(1, "resnet50", 0.0, 1e9, None)]
    sim = _sim(orin, reqs, memory=FullPreload({("resnet50", k, 8): 1.0 for k in range(4)}))
    sim.run_to_decision()
    assert predict_ends(sim, (t, s, gpu, 0.0))[-1] == pytest.approx(t.solo_latency_ms(s, gpu))  # idle SoC: alone
    sim.decide(s, gpu)
    sim.run_to_decision()
    pred = predict_ends(sim, (t, s, gpu, sim.now))
    sim.decide(s, gpu)
    sim.run_to_end()
    ends = {r.request.id: r.end_ms for r in sim.records}
    assert pred[0] == pytest.approx(ends[0]) and pred[-1] == pytest.approx(ends[1])
    work = [w for _, _, w in t.stages(s, gpu)[:-1]]
    # blocks alternate A1 B1 A2 B2 ...: the first waits for 3 blocks of the second, the second for all 4 of the first
    assert ends[0] == pytest.approx(t.solo_latency_ms(s, gpu) + sum(work[:3]))
    assert ends[1] == pytest.approx(t.solo_latency_ms(s, gpu) + sum(work))


def test_queue_aware_runtime_avoids_a_busy_gpu(orin):
    """digits-cnn on Orin: 0.4 ms on the GPU, >= 1 ms on the CPU. Behind a ResNet-50 on the GPU (ms of work)
    an SLO of 3x its reference sends it to the CPU; on an idle SoC a tight SLO keeps it on the GPU."""
    from sparoa_env.loom.policies import make_policy
    from sparoa_env.loom.workload import Request

    est = {"digits-cnn": orin.task("digits-cnn").accuracy}
    rates = {"digits-cnn": 20.0, "resnet50": 20.0}
    resnet = ((8, 8, 8, 8), (1, 1, 1, 1))

    def run(reqs):
        pol = make_policy("sparseloom", orin, rates, estimated_acc=est)
        every = {(n, k, v): 1.0 for n in rates for k in range(4) for v in range(10)}
        sim = _sim(orin, reqs, memory=FullPreload(every))
        return sim.run_all(lambda q, s_: resnet if q.task == "resnet50" else pol(q, s_))

    ref = 0.414
    busy = run([Request(0, "resnet50", 0.0, 1e9, None), Request(1, "digits-cnn", 0.01, 3 * ref, None)])
    assert busy[1].placement == (0, 0, 0, 0) and not busy[1].violated
    idle = run([Request(0, "digits-cnn", 0.0, 1.5 * ref, None)])
    assert 1 in idle[0].placement and not idle[0].violated  # the CPU alone cannot make 0.62 ms
    again = run([Request(0, "resnet50", 0.0, 1e9, None), Request(1, "digits-cnn", 0.01, 3 * ref, None)])
    assert [(r.stitch, r.placement, r.end_ms) for r in again] == [(r.stitch, r.placement, r.end_ms) for r in busy]


def test_memory_policies_report_what_a_request_would_load():
    b1, b2 = ("t", 0, 0), ("t", 1, 0)
    w = np.array([[3.0], [5.0]])
    pin = PinnedSet({b1: 3.0})
    assert pin.missing_mb([b1, b2], w) == 5.0
    pin.acquire(b2, 5.0, 0)  # in use by a request: a second one shares it
    assert pin.missing_mb([b1, b2], w) == 0.0
    assert FullPreload({b1: 3.0, b2: 5.0}).missing_mb([b1, b2], w) == 0.0 and NoPreload().missing_mb([b1], w) == 3.0


def test_hotness_top_counts_only_the_fastest_feasible(orin):
    t = orin.task("wine-mlp")
    st = np.array([[0, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2]])
    scores = hotness(t, st, None, np.array([3.0, 1.0, 2.0]), [(5.0, None)], top=1)
    assert set(scores) == {("wine-mlp", k, 1) for k in range(4)}


# ---------------------------------------------------------------------------------------- input validation
def _old_draw_requests(catalog, w, rng):
    """The original one-change-at-a-time draw, kept as the reference for ordinary workloads."""
    from sparoa_env.loom.workload import Request, reference_latency_ms, task_rates_per_s

    rates = task_rates_per_s(catalog, w)
    total = sum(rates.values())
    names = list(w.tasks)
    probs = np.array([rates[t] for t in names]) / total
    arrivals = np.cumsum(rng.exponential(1000.0 / total, size=w.n_requests))
    which = rng.choice(len(names), size=w.n_requests, p=probs)
    horizon = float(arrivals[-1]) + 1.0
    slo = {}
    for t in names:
        task = catalog.task(t)
        ref = reference_latency_ms(task)
        dense_acc = task.acc(task.uniform(0))
        now, changes = 0.0, []
        while now < horizon:
            lat = ref * float(rng.choice(w.latency_factors))
            acc = None if dense_acc is None else dense_acc - float(rng.choice(w.accuracy_drops)) - 1e-9
            changes.append((now, lat, acc))
            now += float(rng.exponential(w.slo_period_ms))
        slo[t] = changes
    out = []
    for i, (a, j) in enumerate(zip(arrivals.tolist(), which.tolist())):
        cur = [c for c in slo[names[j]] if c[0] <= a][-1]
        out.append(Request(i, names[j], a, cur[1], cur[2]))
    return out


def test_draw_requests_is_unchanged_for_ordinary_workloads(orin):
    from dataclasses import replace

    from sparoa_env.loom.workload import WORKLOADS, draw_requests

    for w in (WORKLOADS["default"], WORKLOADS["small"], replace(WORKLOADS["default"], rate_scale=3.0),
              replace(WORKLOADS["small"], slo_period_ms=5.0, n_requests=400)):
        for seed in (0, 3):
            r1, r2 = np.random.default_rng(seed), np.random.default_rng(seed)
            assert draw_requests(orin, w, r1) == _old_draw_requests(orin, w, r2)
            assert r1.bit_generator.state == r2.bit_generator.state  # the simulator draws on from the same state


def test_draw_requests_cost_does_not_grow_with_tiny_slo_periods_or_rates(orin):
    import time

    from sparoa_env.loom.workload import Workload, draw_requests, reference_latency_ms

    for kw in ({"slo_period_ms": 1e-6, "n_requests": 300}, {"slo_period_ms": 1e-3, "n_requests": 10},
               {"rate_scale": 1e-6}, {"rate_scale": 1e-4}):
        w = Workload(**kw)
        t0 = time.perf_counter()
        reqs = draw_requests(orin, w, np.random.default_rng(0))
        assert time.perf_counter() - t0 < 1.0, kw
        assert len(reqs) == w.n_requests
        for r in reqs:  # every SLO is still one of the workload's states
            t = orin.task(r.task)
            assert min(abs(r.slo_latency_ms / reference_latency_ms(t) - f) for f in w.latency_factors) < 1e-9
            if r.slo_accuracy is not None:
                dense = t.acc(t.uniform(0))
                assert min(abs(dense - d - 1e-9 - r.slo_accuracy) for d in w.accuracy_drops) < 1e-12
    # an SLO period far below the request gaps: nearly every request sees a fresh draw (3 of 4 differ)
    reqs = draw_requests(orin, Workload(slo_period_ms=1e-6), np.random.default_rng(0))
    same_task = [(a, b) for a, b in zip(reqs, reqs[1:]) if a.task == b.task]
    changed = sum(a.slo_latency_ms != b.slo_latency_ms for a, b in same_task) / len(same_task)
    assert 0.55 < changed < 0.95


def test_workload_fields_are_validated():
    from sparoa_env.loom.workload import Workload

    cases = [
        ({"tasks": ("digits-cnn", "digits-cnn")}, "workload: duplicate task 'digits-cnn'"),
        ({"tasks": "digits-cnn"}, "field 'tasks' must be a list of task names"),
        ({"tasks": ("digits-cnn", 3)}, "field 'tasks' must hold task names"),
        ({"latency_factors": (float("nan"),)}, "field 'latency_factors' must hold finite numbers > 0, got nan"),
        ({"latency_factors": (float("inf"),)}, "field 'latency_factors' must hold finite numbers > 0, got inf"),
        ({"latency_factors": "abc"}, "field 'latency_factors' must be a non-empty list of finite numbers > 0, got 'abc'"),
        ({"latency_factors": (1.5, 0.0)}, "field 'latency_factors' must hold finite numbers > 0, got 0.0"),
        ({"latency_factors": (True,)}, "field 'latency_factors' must hold finite numbers > 0, got True"),
        ({"latency_factors": ()}, "field 'latency_factors' must be a non-empty list"),
        ({"accuracy_drops": (float("nan"),)}, r"field 'accuracy_drops' must hold finite numbers in \[0, 1\), got nan"),
        ({"accuracy_drops": (2.0,)}, r"field 'accuracy_drops' must hold finite numbers in \[0, 1\), got 2.0"),
        ({"accuracy_drops": (-0.01,)}, r"field 'accuracy_drops' must hold finite numbers in \[0, 1\), got -0.01"),
        ({"slo_period_ms": 0.0}, "field 'slo_period_ms' must be a finite number > 0, got 0.0"),
        ({"slo_period_ms": float("nan")}, "field 'slo_period_ms' must be a finite number > 0, got nan"),
        ({"rate_scale": -1.0}, "field 'rate_scale' must be a finite number > 0, got -1.0"),
        ({"rate_scale": float("inf")}, "field 'rate_scale' must be a finite number > 0, got inf"),
    ]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg):
            Workload(**kw)
    assert Workload(latency_factors=(2,), accuracy_drops=(0,)).latency_factors == (2,)  # ints are numbers


def _problem(**kw):
    b = np.array([[1.0, 0.0], [0.0, 2.0]])
    args = dict(rates=np.array([0.1, 0.2]), busy=(b, b), lat=(np.array([1.0, 2.0]),) * 2,
                acc_bad=(np.array([False, True]),) * 2, slo_ms=np.array([3.0, 3.0]))
    args.update(kw)
    return Problem(**args)


def test_problem_validates_and_converts_its_input():
    ref = solve_heuristic(_problem())
    lists = _problem(rates=[0.1, 0.2], busy=[[[1.0, 0.0], [0.0, 2.0]]] * 2, lat=[[1.0, 2.0]] * 2,
                     acc_bad=[[0, 1]] * 2, slo_ms=[3.0, 3.0])
    assert isinstance(lists.rates, np.ndarray) and lists.busy[0].ndim == 2 and lists.acc_bad[0].dtype == bool
    assert solve_heuristic(lists).choice == ref.choice == solve_milp(lists).choice
    b = np.array([[1.0, 0.0], [0.0, 2.0]])
    cases = [
        ({"rates": np.zeros(2)}, r"rates \(requests per ms\) must be >= 0 with a positive sum, got \[0.0, 0.0\]"),
        ({"rates": np.array([-0.1, 0.2])}, r"rates \(requests per ms\) must be >= 0"),
        ({"rates": np.array([np.nan, 0.2])}, "problem: rates must be finite"),
        ({"lat": (np.array([np.nan, 2.0]), np.array([1.0, 2.0]))}, r"problem: lat\[0\] must be finite"),
        ({"busy": (b, np.ones((2, 3)))}, r"busy\[1\] has 3 processor columns, busy\[0\] 2"),
        ({"busy": (b, -b)}, "task 1: busy and lat must be >= 0"),
        ({"acc_bad": ([0.5, 1],) * 2}, r"acc_bad\[0\] must be a 1-D array of True / False"),
        ({"slo_ms": np.array([3.0, 0.0])}, "slo_ms must be > 0"),
        ({"slo_ms": [3.0, np.inf]}, "slo_ms must be finite"),
        ({"lat": (np.array([1.0]), np.array([1.0, 2.0]))}, "task 0 needs at least one candidate"),
        ({"rates": [0.1]}, "need one entry per task"),
        ({"guard": float("nan")}, "guard must be a finite number >= 0"),
        ({"busy": b}, "busy must be a list / tuple with one array per task"),
    ]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg):
            _problem(**kw)


def test_task_lookups_reject_invalid_stitches_and_placements(orin):
    t = orin.task("digits-cnn")
    assert t.index((0, 0, 0, 9)) == 9 and t.index((0, 0, 1, 0)) == 10  # (0, 0, 0, 10) no longer aliases 10
    for stitch, msg in (((0, 0, 0, 10), r"stitch \(0, 0, 0, 10\) out of range.*\[0, 10\), got 10"),
                        ((0, 0, -1, 0), r"out of range.*got -1"),
                        ((0, 0, 0), "has 4 blocks: stitch and placement need one entry each"),
                        ((0, 0, 0, 1.5), r"out of range.*got 1.5")):
        with pytest.raises(ValueError, match=msg):
            t.acc(stitch)
    with pytest.raises(ValueError, match="need one entry each"):
        t.solo_latency_ms((0, 0, 0, 0), (1,))
    with pytest.raises(ValueError, match=r"placement \(0, 0, 0, -1\) out of range.*\[0, 2\), got -1"):
        t.solo_latency_ms((0, 0, 0, 0), (0, 0, 0, -1))
    with pytest.raises(ValueError, match="out of range"):
        t.busy_ms((0, 0, 0, 0), (0, 0, 0, 2))
    with pytest.raises(ValueError, match="out of range"):
        t.all_latencies((0, 0, 0, 5))
    with pytest.raises(ValueError, match=r"stitched-variant index 10000 out of range \[0, 10000\)"):
        t.stitch_of(10000)
    # valid lookups unchanged (numpy integers too)
    assert t.acc(np.array([0, 0, 0, 0])) == t.acc((0, 0, 0, 0)) and t.stitch_of(t.index((1, 2, 3, 4))) == (1, 2, 3, 4)


def test_simulator_decide_uses_the_task_check(orin):
    from sparoa_env.loom.workload import Request

    sim = _sim(orin, [Request(0, "resnet50", 0.0, 1e9, None)])
    sim.run_to_decision()
    with pytest.raises(ValueError, match="has 4 blocks: stitch and placement need one entry each"):
        sim.decide((0, 0, 0, 0), (1, 1, 1))
    with pytest.raises(ValueError, match=r"placement \(1, 1, 1, -1\) out of range"):
        sim.decide((0, 0, 0, 0), (1, 1, 1, -1))
    sim.decide((0, 0, 0, 0), (1, 1, 1, 1))


def test_catalog_names_the_profiles_that_have_tables():
    with pytest.raises(ValueError, match="profile 'orin-nano' has no SparseLoom cost tables: `sparoa loom build` "
                                         "writes them for orin-agx, intel-core-ultra only"):
        load_catalog("orin-nano")
