"""``sparoa loom build``: train the small tasks, measure every variant's accuracy, price every block.

Writes, under ``sparoa_env/data/loom/`` (all deterministic for a given torch / scikit-learn build, except
the provenance line's date and machine):

* ``models/<task>.pt``: trained weights of the small tasks (state dicts, KBs);
* ``accuracy/<task>.json``: held-out correct counts of all ``V ** K`` stitched variants, measured in torch
  (:func:`sparoa_env.loom.stitch.measure_all`), the uniform (zoo) variants' accuracies, per-block measured
  weight sparsity, and provenance "measured on <machine>, <date>, command ...";
* ``blocks.json``: per task and block, each variant's dtype, sparsity pattern, weight sparsity, weight
  memory, and the bytes crossing each block boundary;
* ``costs-<profile>.json``: simulated latency (cost model on the variant's block graph) of every block
  variant and every adapter on every processor in every power mode of the profile.

The large zoo models' graphs come from :func:`sparoa_env.modelspec.load_graph` (the shipped JSON when it
exists, else extracted with torch.export, random weights).
"""

from __future__ import annotations

import datetime
import json
import platform
import time
from pathlib import Path
from typing import Any

from .blocks import adapter_graph, block_costs, segment, variant_graph, weight_mb
from .catalog import PROFILES  # the profiles written (the reader names them when one is missing)
from .tasks import DATA_DIR, LARGE_TASKS, N_BLOCKS, REQUEST_BATCH, SMALL_TASKS
from .variants import VARIANTS, variant_spec

__all__ = ["build_all", "PROFILES", "provenance"]


def provenance(command: str) -> str:
    import sklearn
    import torch

    return (f"measured on {platform.node() or 'unknown host'} ({platform.machine()}, {platform.system()}), "
            f"{datetime.date.today().isoformat()}, command `{command}`, torch {torch.__version__}, "
            f"scikit-learn {sklearn.__version__}")


def _small_task(name: str, log: Any) -> tuple[dict, list]:
    import torch

    from sparoa_env.extract import extract_graph

    from . import stitch, tasks, variants

    t0 = time.perf_counter()
    model = tasks.train_task(name, seed=0)
    tasks.save_trained(name, model)
    split = tasks.load_split(name)
    bank = stitch.BlockBank(model, split["x_train"])
    correct = stitch.measure_all(bank, split["x_test"], split["y_test"])
    n_test = int(len(split["y_test"]))
    K = len(model)
    uniform = {v: correct[stitch.index_of(stitch.uniform(i, K))] / n_test for i, v in enumerate(VARIANTS)}
    sparsity = variants.variant_sparsities(model, bank.calibration)
    acc = {
        "task": name, "dataset": split["source"], "n_train": int(len(split["y_train"])), "n_test": n_test,
        "variants": list(VARIANTS), "n_blocks": K, "uniform_accuracy": uniform,
        "order": "index = sum(v_k * V ** (K - 1 - k)): block 0 most significant",
        "correct": correct,
        "provenance": provenance("sparoa loom build"),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    log(f"{name}: trained and measured {len(correct)} stitched variants in {acc['seconds']} s; "
        f"dense {uniform['dense']:.3f}")
    # block graphs: each dense block extracted on real activations of REQUEST_BATCH training samples
    graphs = []
    x = torch.from_numpy(split["x_train"][:REQUEST_BATCH])
    with torch.no_grad():
        for k, block in enumerate(model):
            g = extract_graph(block, (x,), name=f"{name}[block {k}]",
                              meta={"source": f"block {k} of loom task {name}, trained weights"})
            graphs.append(g)
            x = block(x)
    blocks = []
    for k, g in enumerate(graphs):
        vs = []
        for i, v in enumerate(VARIANTS):
            spec = variant_spec(v)
            vs.append({"dtype": spec.dtype, "pattern": spec.pattern, "weight_sparsity": sparsity[k][i],
                       "level": spec.level})
        blocks.append({"variants": vs})
    return {"kind": "small", "accuracy": acc, "blocks": blocks, "batch": REQUEST_BATCH}, graphs


def _large_task(name: str, log: Any) -> tuple[dict, list, list]:
    from sparoa_env.modelspec import load_graph

    g = load_graph(name)
    graphs, crossing = segment(g, N_BLOCKS)
    blocks = []
    for _ in graphs:
        vs = []
        for v in VARIANTS:
            spec = variant_spec(v)
            vs.append({"dtype": spec.dtype, "pattern": spec.pattern, "weight_sparsity": spec.level,
                       "level": spec.level})
        blocks.append({"variants": vs})
    log(f"{name}: {len(g)} ops, {g.total_flops / 1e9:.2f} GFLOP, cut into {N_BLOCKS} blocks of "
        f"{[len(b) for b in graphs]} ops")
    return {"kind": "large", "blocks": blocks, "batch": g.batch, "graph_source": g.meta.get("source", "")}, graphs, crossing


def _io_bytes(graph) -> tuple[float, float]:
    preds, succs = graph.predecessors, graph.successors
    b_in = sum(n.bytes_in for n, p in zip(graph.nodes, preds) if not p)
    b_out = sum(n.bytes_out for n, s in zip(graph.nodes, succs) if not s)
    return b_in, b_out


def build_all(out_dir: Path = DATA_DIR, *, tasks_: tuple[str, ...] | None = None, log: Any = print) -> dict[str, Path]:
    from sparoa_env.costmodel import CostModel
    from sparoa_env.profile import load_profile

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "accuracy").mkdir(exist_ok=True)
    names = tasks_ or (tuple(SMALL_TASKS) + LARGE_TASKS)
    info: dict[str, Any] = {}
    graphs: dict[str, list] = {}
    for name in names:
        if name in SMALL_TASKS:
            rec, gs = _small_task(name, log)
            acc = rec.pop("accuracy")
            (out_dir / "accuracy" / f"{name}.json").write_text(json.dumps(acc, separators=(",", ":")) + "\n")
            crossing = [_io_bytes(g)[1] for g in gs[:-1]]
        else:
            rec, gs, crossing = _large_task(name, log)
        rec["input_bytes"], _ = _io_bytes(gs[0])
        rec["output_bytes"] = _io_bytes(gs[-1])[1]
        rec["boundary_bytes"] = crossing
        for k, g in enumerate(gs):
            for vrec in rec["blocks"][k]["variants"]:
                vrec["weight_mb"] = weight_mb(g, dtype=vrec["dtype"], pattern=vrec["pattern"],
                                              weight_sparsity=vrec["weight_sparsity"], level=vrec["level"])
            rec["blocks"][k]["n_ops"] = len(g)
            rec["blocks"][k]["gflops"] = g.total_flops / 1e9
        info[name] = rec
        graphs[name] = gs
    written = {}
    blocks_doc = {"n_blocks": N_BLOCKS, "variants": list(VARIANTS), "tasks": info,
                  "provenance": provenance("sparoa loom build"),
                  "note": "small tasks: trained weights, measured sparsity; large tasks: random weights, latency only"}
    p = out_dir / "blocks.json"
    p.write_text(json.dumps(blocks_doc, indent=1) + "\n")
    written["blocks"] = p
    for prof_name in PROFILES:
        prof = load_profile(prof_name)
        cm = CostModel(prof)
        doc: dict[str, Any] = {"profile": prof_name, "processors": list(prof.processor_names),
                               "modes": list(prof.power_modes), "default_mode": prof.default_power_mode,
                               "source": "simulated: sparoa_env.costmodel.CostModel on each block variant's OpGraph "
                                         f"(profile provenance: {prof.provenance})", "tasks": {}}
        for name, gs in graphs.items():
            rec = info[name]
            blocks_out = []
            for k, g in enumerate(gs):
                vs = []
                for vrec in rec["blocks"][k]["variants"]:
                    vg = variant_graph(g, dtype=vrec["dtype"], pattern=vrec["pattern"],
                                       weight_sparsity=vrec["weight_sparsity"])
                    vs.append({m: block_costs(cm, vg, m) for m in prof.power_modes})
                blocks_out.append(vs)
            bounds = [rec["input_bytes"]] + list(rec["boundary_bytes"]) + [rec["output_bytes"]]
            adapters = []
            for nbytes in bounds:  # adapters[k]: in front of block k; adapters[K]: the output back to float32
                adapters.append({kind: {m: block_costs(cm, adapter_graph(kind, nbytes, rec["batch"]), m)["lat_ms"]
                                        for m in prof.power_modes} for kind in ("quantize", "dequantize", "cast")})
            doc["tasks"][name] = {"blocks": blocks_out, "adapters": adapters}
        p = out_dir / f"costs-{prof_name}.json"
        p.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
        written[prof_name] = p
        log(f"wrote {p}")
    return written
