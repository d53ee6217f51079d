"""``sparoa profile``: time a model's ops for real on this machine and write a trace (Parquet).

    sparoa profile resnet18 --device cpu --threads 1,2 --batch 1,8 --out traces/<machine>/resnet18.parquet
    sparoa profile tests/models_unseen.py:residual_cnn --threads 1 --out /tmp/rcnn.parquet
    sparoa profile mobilenet_v2 --device cuda --out mnv2-cuda.parquet      # needs an NVIDIA GPU

One row per op per (batch, threads), timed inside real passes of the executor; end-to-end passes with
their run-to-run noise; micro-benchmarks (dispatch, peak matmul, copy bandwidth, transfers over a sweep of
sizes; kernel launch on a GPU). Schema: traces/README.md. An existing file is replaced only with --force.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _int_list(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
    if not out or any(x < 1 for x in out):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return out


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="zoo name (resnet18, mobilenet_v3_small@unstructured-0.9) or path/file.py:function")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the ops run (default cpu)")
    parser.add_argument("--threads", type=_int_list, default=None,
                        help="intra-op CPU threads, comma-separated (default: every core this process may use)")
    parser.add_argument("--batch", type=_int_list, default=[1], help="batch sizes, comma-separated (default 1)")
    parser.add_argument("--repeats", type=int, default=10, help="timed passes per configuration (default 10; "
                        "fewer, at least 3, when they would run past --budget-s)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed passes first (default 3)")
    parser.add_argument("--budget-s", type=float, default=20.0, help="time budget per configuration (default 20 s)")
    parser.add_argument("--no-micro", action="store_true", help="skip the micro-benchmarks (dispatch, peak, transfers)")
    parser.add_argument("--out", required=True, help="output trace, FILE.parquet")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    parser.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from ..hw.devices import cuda_available
    from ..hw.profiler import prepare_model, record_micro, record_model
    from ..traces import machine_id, machine_info, trace_id_for, write_trace

    out = Path(args.out)
    if out.exists() and not args.force:
        raise ValueError(f"{out} exists; pass --force to overwrite it (traces are never replaced silently)")
    if out.suffix != ".parquet":
        raise ValueError(f"--out must end in .parquet, got {out}")
    if args.repeats < 1 or args.warmup < 0:
        raise ValueError("--repeats must be >= 1 and --warmup >= 0")
    device = "cpu"
    if args.device == "cuda":
        if not cuda_available():
            raise ValueError("--device cuda: CUDA is not available on this machine (torch.cuda.is_available() is "
                             "False); record CPU traces with --device cpu")
        device = f"cuda:{torch.cuda.current_device()}"
    ncores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = args.threads or [ncores]
    if max(threads) > ncores:
        raise ValueError(f"--threads {max(threads)}: this process may use only {ncores} core(s)")
    info = machine_info()
    mid = machine_id(info)
    started = time.time()
    tid = trace_id_for(mid, f"{_label(args.model)}.{args.device}", started)
    dev_name = info["cpu_model"] if device == "cpu" else torch.cuda.get_device_name(device)
    base = {"trace_id": tid, "machine_id": mid, "torch_version": torch.__version__, "device_name": dev_name}
    say = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    say(f"trace {tid}: {args.model} on {device}, batch {args.batch}, threads {threads}")
    rows = []
    configs = []
    for batch in args.batch:
        t0 = time.time()
        pm = prepare_model(args.model, batch)
        say(f"  batch {batch}: exported, {len(pm.graph.nodes)} ops ({time.time() - t0:.1f}s)")
        for th in threads:
            t0 = time.time()
            r = record_model(pm, threads=th, device=device, repeats=args.repeats, warmup=args.warmup,
                             budget_s=args.budget_s, base=base)
            e2e = next(x for x in r if x["kind"] == "e2e")
            configs.append({"batch": batch, "threads": th, "e2e_ms": e2e["latency_ms"], "cv": e2e["cv"],
                            "ops_sum_ms": e2e["ops_sum_ms"], "n": e2e["n_samples"], "loadavg_1m": e2e["loadavg_1m"]})
            say(f"    threads {th}: e2e {e2e['latency_ms']:.3f} ms (p10 {e2e['latency_p10_ms']:.3f}, p90 "
                f"{e2e['latency_p90_ms']:.3f}, cv {e2e['cv']:.3f}, n {e2e['n_samples']}); sum of in-pass ops "
                f"{e2e['ops_sum_ms']:.3f} ms; load {e2e['loadavg_1m']:.1f} ({time.time() - t0:.1f}s)")
            rows += r
    if not args.no_micro:
        t0 = time.time()
        rows += record_micro(device=device, threads_list=threads, base=base)
        say(f"  micro-benchmarks ({time.time() - t0:.1f}s)")
    meta = {"trace_id": tid, "machine_id": mid, "machine": info, "device": device, "device_name": dev_name,
            "model": args.model, "batches": args.batch, "threads": threads, "repeats": args.repeats,
            "warmup": args.warmup, "budget_s": args.budget_s, "command": " ".join(sys.argv),
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "duration_s": round(time.time() - started, 1), "configs": configs}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        meta["gpu"] = {"name": props.name, "sm_count": props.multi_processor_count,
                       "memory_gb": round(props.total_memory / 2**30, 1)}
    write_trace(rows, out, meta, force=args.force)
    say(f"wrote {out} ({len(rows)} rows, {time.time() - started:.0f}s)")
    return 0


def _label(model: str) -> str:
    if ":" in model and model.split(":")[0].endswith(".py"):
        path, fn = model.rsplit(":", 1)
        return f"{os.path.splitext(os.path.basename(path))[0]}-{fn}"
    return model.replace("@", "-at-").replace(":", "-")
