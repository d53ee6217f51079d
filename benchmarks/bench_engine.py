"""HybridEngine benchmarks (prints figures; no assertions).

    .venv/bin/python benchmarks/bench_engine.py                      # all sections, default models
    .venv/bin/python benchmarks/bench_engine.py --models small --quick

1. Overhead on one device: the engine running an all-CPU plan (``{"cpu": "cpu"}``, one segment, run in
   the caller's thread) against eager ``module(*inputs)``, both under ``torch.inference_mode`` with the
   same thread count. Target: engine / eager <= 1.10, also for small models (eager ~1 ms).
2. Random plans on a two-lane CPU map (``{"cpu": "cpu:0", "gpu": "cpu:1"}``, one core and one thread
   per lane): engine / eager with eager on all cores (the whole CPU) and with one thread (one lane's
   device). Every lane switch is a cross-thread hand-off, so this measures the engine's dispatch cost.
   Against all cores the runs alternate in blocks (``blocked``): eager's idle OpenMP threads spin for
   milliseconds after each call and would otherwise slow the next engine call; against one thread
   they interleave call by call.
3. Dynamic batching against batch-1 serving at a fixed p95 SLO (``--slo-factor`` x the batch-1 p95 at light load,
   default 3): the highest offered Poisson rate each mode sustains with p95 <= SLO (rates ``--rate-step`` apart),
   and the throughput there. The server runs ``--serve-threads`` torch threads (default 1).
4. With CUDA: hybrid plans against GPU-only and CPU-only eager at batch 1 and 8 (zoo models).

Timings interleave engine and eager runs and report medians of per-pair ratios, so that load from other
processes hits both sides alike; figures vary with the machine's load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparoa_env.hw.engine import HybridEngine  # noqa: E402
from sparoa_env.hw.program import Program  # noqa: E402
from sparoa_env.plan import Plan  # noqa: E402


class Small(torch.nn.Module):
    """A ~1 ms CNN at batch 1 on one laptop core: stem, two branches, concat, head."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.c1, self.b1 = nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16)
        self.c2, self.b2 = nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32)
        self.c3a, self.c3b = nn.Conv2d(32, 32, 3, padding=1), nn.Conv2d(32, 32, 1)
        self.c4 = nn.Conv2d(64, 64, 3, stride=2, padding=1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(self.b2(self.c2(x)))
        x = torch.cat([torch.relu(self.c3a(x)), torch.sigmoid(self.c3b(x))], 1)
        return self.fc(self.c4(x).mean((2, 3)))


def build(name: str, batch: int):
    if name == "small":
        torch.manual_seed(0)
        return Small().eval(), (torch.randn(batch, 3, 64, 64),)
    from sparoa_env.modelspec import load_module

    return load_module(name, batch)


def paired(f_a, f_b, n: int, warmup: int = 10):
    """Interleaved timings of two callables: (median a ms, median b ms, median of b/a)."""
    for _ in range(warmup):
        f_a()
        f_b()
    ta, tb = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        f_a()
        t1 = time.perf_counter()
        f_b()
        t2 = time.perf_counter()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
    return statistics.median(ta) * 1e3, statistics.median(tb) * 1e3, statistics.median(b / a for a, b in zip(ta, tb))


def blocked(f_a, f_b, n: int, block: int = 10, skip: int = 2):
    """Alternating blocks of ``block`` calls of each callable, the first ``skip`` of each block dropped:
    (median a ms, median b ms, median b / median a). For eager on a multi-threaded OpenMP team, whose
    idle threads keep spinning for a few ms after each call (libgomp's GOMP_SPINCOUNT): call-by-call
    interleaving would hand that tail to the next engine call, whose pinned lanes then share a core."""
    ta, tb = [], []
    while len(ta) < n:
        for f, out in ((f_a, ta), (f_b, tb)):
            for k in range(block + skip):
                t0 = time.perf_counter()
                f()
                if k >= skip:
                    out.append(time.perf_counter() - t0)
    a, b = statistics.median(ta) * 1e3, statistics.median(tb) * 1e3
    return a, b, b / a


def section_overhead(models, n):
    print("\n== 1. engine / eager on one device (all-CPU plan, {'cpu': 'cpu'}, %d threads) ==" % torch.get_num_threads())
    print(f"{'model':<22}{'ops':>5}{'eager ms':>10}{'engine ms':>11}{'ratio':>8}")
    for name in models:
        m, x = build(name, 1)
        prog = Program(m, x)
        with HybridEngine(m, x, Plan({g: "cpu" for g in prog.group_names}), program=prog) as eng, torch.inference_mode():
            e, g, r = paired(lambda: m(*x), lambda: eng(*x), n)
        print(f"{name:<22}{len(prog.group_names):>5}{e:>10.3f}{g:>11.3f}{r:>8.3f}")


def section_two_lanes(models, n, n_plans):
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        print("\n== 2. skipped: needs two CPU cores ==")
        return
    dmap = {"cpu": f"cpu:{cores[0]}", "gpu": f"cpu:{cores[1]}"}
    print(f"\n== 2. random plans on two CPU lanes {dmap} (1 thread per lane) ==")
    print(f"{'model':<22}{'plan':>5}{'segs':>6}{'eager-all ms':>14}{'engine ms':>11}{'ratio':>8}"
          f"{'eager-1thr ms':>15}{'ratio':>8}")
    threads = torch.get_num_threads()
    for name in models:
        m, x = build(name, 1)
        prog = Program(m, x)
        rng = np.random.default_rng(0)
        plans = [("all-lane0", {g: "cpu" for g in prog.group_names})]
        plans += [(f"rnd{k}", {g: ("cpu", "gpu")[int(rng.integers(2))] for g in prog.group_names}) for k in range(n_plans)]
        for label, plan in plans:
            with HybridEngine(m, x, plan, dmap, program=prog) as eng, torch.inference_mode():
                e_all, g1, r_all = blocked(lambda: m(*x), lambda: eng(*x), n)
                torch.set_num_threads(1)
                try:
                    e_one, g2, r_one = paired(lambda: m(*x), lambda: eng(*x), n)
                finally:
                    torch.set_num_threads(threads)
            print(f"{name:<22}{label:>5}{len(eng.segments):>6}{e_all:>14.3f}{g1:>11.3f}{r_all:>8.3f}{e_one:>15.3f}{r_one:>8.3f}")


def section_batching(name, n_requests, max_batch, slo_factor, step, threads):
    """Max offered Poisson rate each mode sustains with p95 <= SLO (geometric sweep, ``step`` apart)."""
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _section_batching(name, n_requests, max_batch, slo_factor, step)
    finally:
        torch.set_num_threads(old_threads)


def _section_batching(name, n_requests, max_batch, slo_factor, step):
    print(f"\n== 3. dynamic batching vs batch-1 serving at a fixed p95 SLO ({name}, all-CPU plan, "
          f"{torch.get_num_threads()} threads) ==")
    m, x = build(name, 1)
    prog = Program(m, x)
    with HybridEngine(m, x, Plan({g: "cpu" for g in prog.group_names}), program=prog) as eng:
        svc = {}
        with torch.inference_mode():
            for b in (1, max_batch):
                e = eng.for_batch(b)
                xb = tuple(torch.cat([t] * b, 0) for t in x)
                svc[b] = paired(lambda: None, lambda: e(*xb), 30)[1]
        light = eng.serve(n_requests, rate_per_s=0.2 * 1000.0 / svc[1], max_batch=1, seed=2, warmup=3)
        slo = slo_factor * light.p95_ms
        print(f"service time: batch 1 {svc[1]:.3f} ms, batch {max_batch} {svc[max_batch]:.3f} ms "
              f"({svc[max_batch] / max_batch:.3f} ms per request); batch-1 p95 at light load "
              f"({0.2 * 1000.0 / svc[1]:.0f} req/s) {light.p95_ms:.3f} ms")
        print(f"SLO: p95 <= {slo:.2f} ms = {slo_factor:g} x that light-load p95 (service time plus this machine's "
              f"scheduling jitter, so that the SLO is attainable here); a full batch of {max_batch} "
              f"{'fits' if svc[max_batch] < slo else 'does not fit'}; batches shrink to what meets the SLO")
        print(f"{n_requests} Poisson requests per point; rates {step:g}x apart; a point passes with p95 <= SLO")
        print(f"{'mode':<14}{'rate/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'thr req/s':>11}{'mean b':>8}{'ok':>4}")
        best = {}
        for mode, mb in (("batch-1", 1), (f"dynamic<={max_batch}", max_batch)):
            rate, fails = 0.3 * 1000.0 / svc[1], 0
            while fails < 2 and rate < 50 * 1000.0 / svc[1]:
                rep = eng.serve(n_requests, rate_per_s=rate, max_batch=mb, max_wait_ms=svc[1], slo_ms=slo, seed=1,
                                warmup=3)
                ok = rep.p95_ms <= slo and not rep.errors
                print(f"{mode:<14}{rate:>9.0f}{rep.p50_ms:>9.2f}{rep.p95_ms:>9.2f}{rep.p99_ms:>9.2f}"
                      f"{rep.throughput_rps:>11.1f}{rep.mean_batch:>8.2f}{'yes' if ok else 'no':>4}")
                if ok:
                    best[mode] = (rate, rep.throughput_rps, rep.p95_ms)
                    fails = 0
                else:
                    fails += 1
                rate *= step
        for mode, (rate, thr, p95) in best.items():
            print(f"max offered rate with p95 <= {slo:.2f} ms: {mode:<14} {rate:8.0f} req/s (served {thr:.0f} req/s, "
                  f"p95 {p95:.2f} ms)")
        b1 = best.get("batch-1")
        dyn = best.get(f"dynamic<={max_batch}")
        if b1 and dyn:
            print(f"dynamic batching sustains {dyn[0] / b1[0]:.2f}x the batch-1 rate at this SLO")
        else:
            print(f"a mode never met the SLO (even at the lowest rate): {sorted(set(['batch-1', f'dynamic<={max_batch}']) - set(best))}")


def section_gpu(models, n):
    if not torch.cuda.is_available():
        print("\n== 4. skipped: no CUDA on this machine ==")
        return
    print(f"\n== 4. hybrid plans vs GPU-only / CPU-only eager ({torch.cuda.get_device_name(0)}) ==")
    print(f"{'model':<22}{'batch':>6}{'cpu eager':>11}{'gpu eager':>11}{'eng gpu':>9}{'eng half':>10}{'eng rnd':>9}")
    for name in models:
        for batch in (1, 8):
            m, x = build(name, batch)
            prog = Program(m, x)
            names = prog.group_names
            with torch.inference_mode():
                cpu_ms = paired(lambda: None, lambda: m(*x), n)[1]
                mg = m.to("cuda")
                xg = tuple(t.to("cuda") for t in x)

                def gpu_eager():
                    mg(*xg)
                    torch.cuda.synchronize()

                gpu_ms = paired(lambda: None, gpu_eager, n)[1]
                m.to("cpu")
            rng = np.random.default_rng(0)
            row = []
            for plan in ({g: "gpu" for g in names},
                         {g: ("cpu" if k < len(names) // 2 else "gpu") for k, g in enumerate(names)},
                         {g: ("cpu", "gpu")[int(rng.integers(2))] for g in names}):
                with HybridEngine(m, x, plan, {"cpu": "cpu", "gpu": "cuda:0"}, program=prog) as eng:
                    row.append(paired(lambda: None, lambda: eng(*x), n)[1])
            print(f"{name:<22}{batch:>6}{cpu_ms:>11.3f}{gpu_ms:>11.3f}{row[0]:>9.3f}{row[1]:>10.3f}{row[2]:>9.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="small,mobilenet_v3_small,resnet18")
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--plans", type=int, default=3, help="random plans per model in section 2")
    ap.add_argument("--requests", type=int, default=300, help="requests per serving point in section 3")
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--slo-factor", type=float, default=3.0,
                    help="section 3: SLO = this x the batch-1 p95 latency at light load (20%% of capacity)")
    ap.add_argument("--rate-step", type=float, default=1.25, help="section 3: ratio between swept arrival rates")
    ap.add_argument("--serve-threads", type=int, default=1,
                    help="section 3: torch threads of the server (1: an OpenMP team is not stalled by other processes' load)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats, the small model only in sections 2-3")
    ap.add_argument("--sections", default="1,2,3,4")
    a = ap.parse_args()
    models = [s for s in a.models.split(",") if s]
    n = 50 if a.quick else a.repeats
    secs = set(a.sections.split(","))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cores {sorted(os.sched_getaffinity(0))}, "
          f"load average {os.getloadavg()[0]:.2f}")
    if "1" in secs:
        section_overhead(models, n)
    if "2" in secs:
        section_two_lanes(models[:1] if a.quick else models, n, 2 if a.quick else a.plans)
    if "3" in secs:
        section_batching(models[0], 100 if a.quick else a.requests, a.max_batch, a.slo_factor, a.rate_step,
                         a.serve_threads)
    if "4" in secs:
        section_gpu([m for m in models if m != "small"] or ["mobilenet_v3_small"], n)


if __name__ == "__main__":
    main()
