"""``sparoa graph MODEL [--batch N] [--json] [--plot FILE]``: a model's operator graph.

MODEL is a zoo spec (``mobilenet_v3_small``, ``resnet50@unstructured-0.9``), a path to an OpGraph JSON
file, or ``path/to/file.py:function`` returning ``(module, example_inputs)``. Without ``--json`` it prints
one row per operator; ``--json`` prints the OpGraph (``OpGraph.to_dict``: model, batch, meta, nodes with
every OpNode field, edges); ``--plot FILE`` draws the rho-I scatter (see :mod:`sparoa_env.plots`).
"""

from __future__ import annotations

import argparse
import sys

from sparoa_env.commands import positive_int
from sparoa_env.graph import OpGraph


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="zoo name (e.g. mobilenet_v3_small, resnet50@unstructured-0.9), a path to an OpGraph "
                             ".json, or path/to/file.py:function returning (module, example_inputs)")
    parser.add_argument("--batch", type=positive_int, default=None,
                        help="batch size (default: the shipped graph's, 1 for zoo models)")
    parser.add_argument("--json", action="store_true", help="print the OpGraph as JSON instead of a table")
    parser.add_argument("--plot", metavar="FILE", default=None,
                        help="draw the rho-I scatter of all operators to FILE (.png, .pdf, .svg)")
    parser.add_argument("--rho-threshold", type=float, default=0.5, help="rho quadrant line of the plot (default 0.5)")
    parser.add_argument("--i-threshold", type=float, default=None,
                        help="intensity quadrant line of the plot, FLOP/byte (default: geometric median of the "
                             "operators' positive intensities)")


def run(args: argparse.Namespace) -> int:
    from sparoa_env.modelspec import load_graph

    graph = load_graph(args.model, args.batch)
    if args.json:
        print(graph.to_json(indent=1))
    else:
        print(format_table(graph))
    if args.plot:
        from sparoa_env.plots import rho_intensity_scatter

        rho_intensity_scatter(graph, args.plot, rho_threshold=args.rho_threshold,
                              intensity_threshold=args.i_threshold)
        # stderr, so that `--json --plot f.png > g.json` keeps stdout pure JSON
        print(f"wrote rho-I plot of {graph.model} ({len(graph.nodes)} operators) to {args.plot}", file=sys.stderr)
    return 0


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape) if shape else "scalar"


def format_table(graph: OpGraph) -> str:
    """One row per operator, then totals; units in the header."""
    headers = ("#", "name", "op_type", "out_shape", "MFLOP", "in KB", "out KB", "w KB", "w_sp", "in_sp", "rho",
               "I", "pattern")
    rows = []
    for i, n in enumerate(graph.nodes):
        rows.append((str(i), n.name, n.op_type.removeprefix("aten."), _shape(n.out_shape), f"{n.flops / 1e6:.3f}",
                     f"{n.bytes_in / 1024:.1f}", f"{n.bytes_out / 1024:.1f}", f"{n.weight_bytes / 1024:.1f}",
                     f"{n.weight_sparsity:.3f}", f"{n.input_sparsity:.3f}", f"{n.sparsity:.3f}",
                     f"{n.intensity:.3g}", n.sparsity_pattern))
    widths = [max(len(h), *(len(r[j]) for r in rows)) if rows else len(h) for j, h in enumerate(headers)]
    left = {1, 2, 3, 12}

    def fmt(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if j in left else c.rjust(w)
                         for j, (c, w) in enumerate(zip(cells, widths))).rstrip()

    total_w = sum(n.weight_bytes for n in graph.nodes)
    out = [f"{graph.model}  batch {graph.batch}  {len(graph.nodes)} operators  {len(graph.edges)} edges",
           f"source: {graph.meta.get('source', 'unknown')}", "", fmt(headers), fmt(tuple("-" * w for w in widths))]
    out += [fmt(r) for r in rows]
    out += ["", f"total: {graph.total_flops / 1e9:.4f} GFLOP (FlopCounterMode convention), "
                f"{sum(n.aux_flops for n in graph.nodes) / 1e6:.2f} M elementwise ops, "
                f"weights {total_w / 2**20:.2f} MiB, "
                f"mean rho {sum(n.sparsity for n in graph.nodes) / max(len(graph.nodes), 1):.3f}"]
    return "\n".join(out)
