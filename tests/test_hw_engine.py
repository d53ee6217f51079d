"""HybridEngine: same outputs as eager for any plan, lanes, pipelining, bad input, OOM fallback, serving.

No timed assertions (colleagues share the machine): speed figures come from benchmarks/bench_engine.py.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from sparoa_env.hw.devices import DeviceMapError, parse_device_map, two_lane_cpu_map  # noqa: E402
from sparoa_env.hw.engine import HybridEngine, SegmentError, SegmentOOMError  # noqa: E402
from sparoa_env.hw.program import Program  # noqa: E402
from sparoa_env.plan import Plan, PlanError  # noqa: E402

CPU_TWO_LANES = {"cpu": "cpu:0", "gpu": "cpu:1"} if len(os.sched_getaffinity(0)) >= 2 else {"cpu": "cpu:0", "gpu": "cpu:0"}
needs_two_cores = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPU cores")


class Branchy(nn.Module):
    """Conv stem, two branches (conv+relu / conv+sigmoid), concat, a weight transpose (constant) and a
    tuple output: exercises cross-lane edges, getitem, folding and pytree outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x, y):
        h = torch.relu(self.bn(self.stem(x)))
        a, b = torch.relu(self.a(h)), torch.sigmoid(self.b(h))
        z = torch.cat([a, b], 1).mean((2, 3))
        mask = torch.arange(5, dtype=torch.float32) / 5.0  # a constant subgraph
        return self.fc(z) + mask + y, {"pooled": z}


def branchy(batch: int = 1):
    torch.manual_seed(0)
    m = Branchy()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-0.5, 0.5)
        m.bn.running_var.uniform_(0.5, 2.0)
    return m.eval(), (torch.randn(batch, 3, 12, 12), torch.randn(batch, 5))


@pytest.fixture(scope="module")
def model():
    m, x = branchy()
    return m, x, Program(m, x)


def assert_same(out, ref):
    o, r = torch.utils._pytree.tree_leaves(out), torch.utils._pytree.tree_leaves(ref)
    assert len(o) == len(r)
    for a, b in zip(o, r):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def random_plan(prog, seed: int) -> dict[str, str]:
    """Every op group on lane 'cpu' or 'gpu' at random (seeded)."""
    rng = np.random.default_rng(seed)
    return {g: ("cpu", "gpu")[int(rng.integers(2))] for g in prog.group_names}


def requests(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` random inputs of the ``branchy`` model."""
    return [(torch.randn(1, 3, 12, 12), torch.randn(1, 5)) for _ in range(n)]


def test_all_cpu_plan_matches_eager_and_runs_inline(model):
    m, x, prog = model
    with HybridEngine(m, x, Plan({g: "cpu" for g in prog.group_names}), program=prog) as eng:
        assert len(eng.segments) == 1 and "inline" in eng.describe()
        with torch.no_grad():
            assert_same(eng(*x), m(*x))
        assert "def segment_0" in eng._segs[0].compiled.source


@needs_two_cores
@pytest.mark.parametrize("seed", range(6))
def test_random_plans_on_two_cpu_lanes_match_eager(model, seed):
    m, x, prog = model
    plan = random_plan(prog, seed)
    with HybridEngine(m, x, plan, CPU_TWO_LANES, program=prog) as eng:
        with torch.no_grad():
            ref = m(*x)
        for _ in range(2):
            assert_same(eng(*x), ref)
        out, report = eng.run(*x)
        assert_same(out, ref)
        assert report.latency_ms > 0 and report.fallbacks == []


@needs_two_cores
def test_alternating_plan_segments_and_lanes(model):
    m, x, prog = model
    names = prog.group_names
    plan = {g: ("cpu", "gpu")[k % 2] for k, g in enumerate(names)}
    with HybridEngine(m, x, plan, CPU_TWO_LANES, program=prog) as eng:
        assert len(eng.segments) == len(names)
        assert [s.processor for s in eng.segments] == [plan[g] for g in names]
        assert sorted(op for s in eng.segments for op in s.ops) == sorted(names)
        with torch.no_grad():
            assert_same(eng(*x), m(*x))


@needs_two_cores
def test_consecutive_requests_overlap_and_stay_correct(model):
    m, x, prog = model
    plan = {g: ("cpu", "gpu")[k * 2 // len(prog.group_names)] for k, g in enumerate(prog.group_names)}
    inputs = requests(6)
    with HybridEngine(m, x, plan, CPU_TWO_LANES, program=prog) as eng:
        pend = [eng.submit(*inp) for inp in inputs]  # all in flight at once
        with torch.no_grad():
            for p, inp in zip(pend, inputs):
                assert_same(p.result(), m(*inp))


def _record_placement(eng):
    """Wrap every segment so that it records (thread id, CPU affinity, torch threads) when it runs."""
    seen = []
    for seg in eng._segs:
        real = seg.compiled.fn

        def fn(*args, real=real, seg=seg):
            seen.append((seg.index, seg.info.processor, threading.get_ident(), frozenset(os.sched_getaffinity(0)),
                         torch.get_num_threads()))
            return real(*args)

        seg.compiled.fn = fn
    return seen


@needs_two_cores
@pytest.mark.parametrize("spin_us", [None, 0])
def test_every_segment_runs_on_its_lanes_cores_and_threads(model, spin_us):
    """The caller runs the first segment's lane itself (pinned, that lane's thread count) and the
    other lane's worker the rest; placement is honoured either way and the caller's settings come back."""
    m, x, prog = model
    names = prog.group_names
    plan = {g: ("cpu", "gpu")[k % 2] for k, g in enumerate(names)}
    dmap = {"cpu": "cpu:0", "gpu": "cpu:1@1"}
    want = {"cpu": frozenset({0}), "gpu": frozenset({1})}
    before_aff, before_thr = os.sched_getaffinity(0), torch.get_num_threads()
    with HybridEngine(m, x, plan, dmap, program=prog, spin_us=spin_us) as eng:
        assert eng._caller_lane == 0 and "caller's thread" in eng.describe()
        seen = _record_placement(eng)
        with torch.no_grad():
            ref = m(*x)
        for _ in range(3):
            assert_same(eng(*x), ref)
            assert os.sched_getaffinity(0) == before_aff and torch.get_num_threads() == before_thr
        assert len(seen) == 3 * len(eng.segments)
        for idx, proc, tid, aff, thr in seen:
            assert aff == want[proc] and thr == 1, (idx, proc, aff, thr)
            assert (tid == threading.get_ident()) == (proc == "cpu"), (idx, proc)  # lane 'cpu' ran in the caller
        # submitted requests run on the workers only
        seen.clear()
        pend = [eng.submit(*x) for _ in range(3)]
        for p in pend:
            assert_same(p.result(), ref)
        assert seen and all(tid != threading.get_ident() and aff == want[proc] for _, proc, tid, aff, _ in seen)


@needs_two_cores
def test_blocking_calls_mixed_with_submitted_requests_stay_correct(model):
    m, x, prog = model
    plan = random_plan(prog, 7)
    inputs = requests(8)
    with HybridEngine(m, x, plan, CPU_TWO_LANES, program=prog) as eng, torch.no_grad():
        pend = [eng.submit(*inp) for inp in inputs[:4]]
        direct = [eng(*inp) for inp in inputs[4:]]   # the engine may be busy: these then queue like submit()
        for out, inp in zip([p.result() for p in pend] + direct, inputs):
            assert_same(out, m(*inp))


@needs_two_cores
def test_caller_runs_off_and_pinned_single_lane(model):
    m, x, prog = model
    names = prog.group_names
    plan = {g: ("cpu", "gpu")[k % 2] for k, g in enumerate(names)}
    with HybridEngine(m, x, plan, CPU_TWO_LANES, program=prog, caller_runs=False) as eng, torch.no_grad():
        seen = _record_placement(eng)
        assert eng._caller_lane is None
        assert_same(eng(*x), m(*x))
        assert all(tid != threading.get_ident() for _, _, tid, _, _ in seen)
    # every op on one pinned lane: the caller runs it, pinned, with no hand-off at all
    with HybridEngine(m, x, {g: "gpu" for g in names}, CPU_TWO_LANES, program=prog) as eng, torch.no_grad():
        seen = _record_placement(eng)
        assert_same(eng(*x), m(*x))
        assert [(p, tid, aff) for _, p, tid, aff, _ in seen] == [("gpu", threading.get_ident(), frozenset({1}))]
    with pytest.raises(ValueError, match="spin_us"):
        HybridEngine(m, x, plan, CPU_TWO_LANES, program=prog, spin_us=-1)


@needs_two_cores
def test_failure_before_the_callers_lane_runs_releases_the_other_lanes(model, monkeypatch):
    """If pinning the caller fails, the call raises, the other lane is not left waiting, and the
    engine keeps working."""
    m, x, prog = model
    plan = {g: ("cpu", "gpu")[k % 2] for k, g in enumerate(prog.group_names)}
    with HybridEngine(m, x, plan, CPU_TWO_LANES, program=prog) as eng, torch.no_grad():
        ref = m(*x)
        assert_same(eng(*x), ref)  # the workers are up
        real = os.sched_setaffinity
        main = threading.get_ident()

        def refuse(pid, cores):
            if threading.get_ident() == main:
                raise OSError("affinity refused (injected by the test)")
            return real(pid, cores)

        monkeypatch.setattr(os, "sched_setaffinity", refuse)
        with pytest.raises(OSError, match="injected"):
            eng(*x)
        monkeypatch.setattr(os, "sched_setaffinity", real)
        assert_same(eng(*x), ref)
        assert_same(eng.submit(*x).result(), ref)


def test_spin_handoff_helper_signals_and_wakes_sleepers():
    """The C hand-off: a flag set by one thread releases a spinning waiter and a sleeping one."""
    import ctypes

    from sparoa_env.hw import handoff

    lib = handoff.load()
    if lib is None:
        pytest.skip(f"spin-wait helper unavailable: {handoff.unavailable_reason()}")
    flags = (ctypes.c_int32 * 4)()
    base = ctypes.addressof(flags)
    idx = (ctypes.c_int32 * 2)(1, 2)
    slept = []
    t = threading.Thread(target=lambda: slept.append(lib.sp_step(None, -1, -1, base, ctypes.addressof(idx), 2, 0)))
    t.start()  # spin 0: sleeps on the futex at once
    lib.sp_step(base, 1, -1, None, None, 0, 0)
    assert t.is_alive()                     # still waits for flag 2
    lib.sp_step(base, 2, 0, None, None, 0, 0)
    t.join(5)
    assert not t.is_alive() and flags[0] == 1 and flags[1] == 1 and flags[2] == 1 and flags[3] == 0
    assert lib.sp_wait(base + 4, 10_000_000) == 1   # already set: returns at once, "seen while spinning"


def test_without_the_helper_the_engine_uses_blocking_latches(model, monkeypatch):
    from sparoa_env.hw import handoff

    def no_compiler():
        raise OSError("no C compiler (cc, gcc or clang) on PATH")

    monkeypatch.setattr(handoff, "_tried", False)
    monkeypatch.setattr(handoff, "_lib", None)
    monkeypatch.setattr(handoff, "_reason", None)
    monkeypatch.setattr(handoff, "_build", no_compiler)
    assert handoff.load() is None and "no C compiler" in handoff.unavailable_reason()
    m, x, prog = model
    plan = {g: ("cpu", "gpu")[k % 2] for k, g in enumerate(prog.group_names)}
    with HybridEngine(m, x, plan, CPU_TWO_LANES, program=prog) as eng, torch.no_grad():
        assert "blocking latches (could not build the spin-wait helper: OSError: no C compiler" in eng.describe()
        assert_same(eng(*x), m(*x))
        assert_same(eng.submit(*x).result(), m(*x))


def test_fast_bindings_off_gives_same_outputs():
    m, x = branchy()
    prog = Program(m, x, fast_bindings=False)
    assert not prog._fast
    with HybridEngine(m, x, {g: "cpu" for g in prog.group_names}, program=prog) as eng, torch.no_grad():
        assert_same(eng(*x), m(*x))


def test_plan_errors_name_the_problem(model):
    m, x, prog = model
    names = prog.group_names
    with pytest.raises(PlanError, match=r"misses 1 of the .*" + names[-1]):
        HybridEngine(m, x, {g: "cpu" for g in names[:-1]}, program=prog)
    bad = dict({g: "cpu" for g in names}, **{names[0]: "npu"})
    with pytest.raises(PlanError, match="unknown processor.*'npu'.*valid processors: cpu, gpu"):
        HybridEngine(m, x, bad, program=prog)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_says_how_to_map(model):
    m, x, prog = model
    with pytest.raises(DeviceMapError, match=r"CUDA is not available on this machine; map both processors to CPU "
                                             r"core groups, e.g. device_map=\{'cpu': 'cpu:0', 'gpu': 'cpu:1'\}"):
        HybridEngine(m, x, {g: "gpu" for g in prog.group_names}, {"cpu": "cpu", "gpu": "cuda:0"}, program=prog)
    # an all-CPU plan does not need the GPU the default map names
    with HybridEngine(m, x, {g: "cpu" for g in prog.group_names}, program=prog) as eng, torch.no_grad():
        assert_same(eng(*x), m(*x))


@pytest.mark.parametrize("dmap, match", [
    ({"cpu": "cpu", "gpu": "tpu:0"}, "unknown device"),
    ({"cpu": "cpu:9999", "gpu": "cpu"}, "not available to this process"),
    ({"cpu": "cpu:1-0", "gpu": "cpu"}, "empty"),
    ({"cpu": "cpu:0@0", "gpu": "cpu"}, "thread count"),
    ({"cpu": "cpu"}, "no device for processor"),
    ({"cpu": "cpu", "gpu": "cpu", "npu": "cpu"}, "unknown processor"),
    ("cpu=cpu;gpu", "processor=device"),
])
def test_device_map_errors(dmap, match):
    with pytest.raises(DeviceMapError, match=match):
        parse_device_map(dmap, ("cpu", "gpu"))


def test_device_map_syntax():
    lanes = parse_device_map("cpu=cpu:0;gpu=cpu", ("cpu", "gpu"))
    assert lanes["cpu"].cores == (0,) and lanes["cpu"].threads == 1 and lanes["gpu"].cores is None
    lanes = parse_device_map('{"cpu": "cpu:0@3", "gpu": "cpu"}', ("cpu", "gpu"))
    assert lanes["cpu"].threads == 3
    m = two_lane_cpu_map(("cpu", "gpu"))
    assert set(m) == {"cpu", "gpu"}
    if len(os.sched_getaffinity(0)) >= 2:
        with pytest.raises(DeviceMapError, match="share core"):
            parse_device_map({"cpu": "cpu:0", "gpu": "cpu:0"}, ("cpu", "gpu"))


def _raise_oom_once(seg):
    real = seg.compiled.fn
    state = {"n": 0}

    def fn(*args):
        state["n"] += 1
        if state["n"] == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected by the test)")
        return real(*args)

    seg.compiled.fn = fn


@needs_two_cores
def test_oom_in_a_segment_is_reported(model):
    m, x, prog = model
    plan = {g: ("cpu", "gpu")[k * 2 // len(prog.group_names)] for k, g in enumerate(prog.group_names)}
    with HybridEngine(m, x, plan, CPU_TWO_LANES, program=prog) as eng:
        seg = next(s for s in eng._segs if s.info.processor == "gpu")
        _raise_oom_once(seg)
        with pytest.raises(SegmentOOMError, match=r"out of memory in segment \d+ .* on 'gpu'.*oom_fallback='cpu'"):
            eng(*x)
        with torch.no_grad():  # the engine is still usable afterwards
            assert_same(eng(*x), m(*x))


@needs_two_cores
def test_oom_falls_back_to_cpu_without_losing_the_request(model):
    m, x, prog = model
    plan = {g: ("cpu", "gpu")[k * 2 // len(prog.group_names)] for k, g in enumerate(prog.group_names)}
    with HybridEngine(m, x, plan, CPU_TWO_LANES, program=prog, oom_fallback="cpu") as eng:
        seg = next(s for s in eng._segs if s.info.processor == "gpu")
        _raise_oom_once(seg)
        with pytest.warns(RuntimeWarning, match="out of memory"):
            out, report = eng.run(*x)
        with torch.no_grad():
            assert_same(out, m(*x))
        assert len(report.fallbacks) == 1 and report.fallbacks[0]["segment"] == seg.index
        assert report.fallbacks[0]["fallback"] == "cpu" and eng.fallbacks == report.fallbacks


def test_other_errors_name_the_segment(model):
    m, x, prog = model
    with HybridEngine(m, x, {g: "cpu" for g in prog.group_names}, {"cpu": "cpu:0", "gpu": "cpu"}, program=prog) as eng:
        def broken(*args):
            raise RuntimeError("kernel exploded")

        eng._segs[0].compiled.fn = broken
        with pytest.raises(SegmentError, match="segment 0 .*kernel exploded"):
            eng(*x)


def test_serve_with_dynamic_batching_returns_every_output(model):
    m, x, prog = model
    reqs = requests(10)
    with HybridEngine(m, x, {g: "cpu" for g in prog.group_names}, program=prog) as eng:
        rep = eng.serve(reqs, max_batch=4, max_wait_ms=2.0, return_outputs=True, warmup=1)
        assert rep.completed == 10 and not rep.errors
        assert sum(rep.batches) == 10 and max(rep.batches) <= 4 and rep.mean_batch > 1  # all queued at t=0
        assert rep.p50_ms <= rep.p95_ms <= rep.p99_ms and rep.throughput_rps > 0
        assert set(rep.service_ms) == {1, 2, 4}
        with torch.no_grad():
            for inp, out in zip(reqs, rep.outputs):
                assert_same(out, m(*inp))
        one = eng.serve(4, rate_per_s=500.0, max_batch=1, warmup=1)
        assert one.batches == [1, 1, 1, 1] and one.completed == 4
        assert "p95" in one.summary()
        with pytest.raises(ValueError, match="max_batch"):
            eng.serve(2, max_batch=0)


class BatchMean(torch.nn.Module):
    """Its output mixes the samples of a batch (a mean over dim 0 too)."""

    def __init__(self) -> None:
        super().__init__()
        self.l = torch.nn.Linear(4, 3)

    def forward(self, x):
        return (self.l(x) ** 2).mean()


class BatchOnDim1(torch.nn.Module):
    """Batch in, batch on dim 1 out."""

    def __init__(self) -> None:
        super().__init__()
        self.l = torch.nn.Linear(3, 3)

    def forward(self, x):
        return self.l(x).transpose(0, 1).contiguous()


@pytest.mark.parametrize("make, shape", [(lambda: (BatchMean(), (torch.randn(1, 4),)), "alone [], from the batch []"),
                                         (lambda: (BatchOnDim1(), (torch.randn(1, 2, 3),)),
                                          "alone [2, 1, 3], from the batch [1, 2, 3]")])
def test_batching_is_refused_where_it_would_give_wrong_outputs(make, shape):
    """Splitting a batch's outputs along dim 0 used to hand every request the batch's mean, or the wrong slice."""
    torch.manual_seed(0)
    m, x = make()
    m.eval()
    prog = Program(m, x)
    with HybridEngine(m, x, {g: "cpu" for g in prog.group_names}, program=prog) as eng:
        with pytest.raises(ValueError, match="dynamic batching .* does not fit this model") as e:
            eng.serve(4, max_batch=2, return_outputs=True, warmup=1)
        assert shape in str(e.value) and "Serve it with max_batch=1" in str(e.value)
        assert eng.serve(2, max_batch=1, warmup=1).completed == 2


def test_inputs_of_another_shape_or_dtype_are_refused(model):
    """The program is exported for the example inputs' shapes: other shapes used to run and return wrong values."""
    m, x, prog = model
    with HybridEngine(m, x, {g: "cpu" for g in prog.group_names}, program=prog) as eng:
        with pytest.raises(ValueError, match=r"input 0: expected float32\[1, 3, 12, 12\] like the example inputs, "
                                             r"got float32\[2, 3, 12, 12\]"):
            eng(torch.randn(2, 3, 12, 12), torch.randn(2, 5))
        with pytest.raises(ValueError, match=r"input 1: expected float32\[1, 5\] like the example inputs, got float64"):
            eng(x[0], x[1].double())
        assert_same(eng(*x), m(*x))


@needs_two_cores
def test_serve_on_two_lanes_returns_every_output(model):
    m, x, prog = model
    plan = random_plan(prog, 11)
    reqs = requests(6)
    with HybridEngine(m, x, plan, CPU_TWO_LANES, program=prog) as eng:
        rep = eng.serve(reqs, max_batch=2, max_wait_ms=1.0, return_outputs=True, warmup=1)
        assert rep.completed == 6 and not rep.errors
        with torch.no_grad():
            for inp, out in zip(reqs, rep.outputs):
                assert_same(out, m(*inp))


@pytest.mark.slow
def test_zoo_model_random_plan_matches_eager():
    from sparoa_env.modelspec import load_module

    m, x = load_module("mobilenet_v3_small", 1)
    prog = Program(m, x)
    plan = random_plan(prog, 3)
    with HybridEngine(m, x, plan, CPU_TWO_LANES, program=prog) as eng, torch.no_grad():
        assert_same(eng(*x), m(*x))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("seed", range(3))
def test_hybrid_cpu_gpu_matches_eager(model, seed):
    m, x, prog = model
    plan = random_plan(prog, seed)
    with HybridEngine(m, x, plan, {"cpu": "cpu", "gpu": "cuda:0"}, program=prog) as eng, torch.no_grad():
        ref = m(*x)
        for _ in range(3):
            assert_same(eng(*x), ref)
        pend = [eng.submit(*x) for _ in range(4)]
        for p in pend:
            assert_same(p.result(), ref)


class MutatesItsInput(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l = torch.nn.Linear(4, 4)

    def forward(self, x):
        y = self.l(x)
        x.add_(1.0)
        return y + x


def test_a_model_that_mutates_its_input_is_refused_with_the_reason():
    from sparoa_env.hw.program import ProgramError

    with pytest.raises(ProgramError, match="mutates an input in place .*: work on a copy"):
        Program(MutatesItsInput().eval(), (torch.randn(1, 4),))
