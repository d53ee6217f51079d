"""``sparoa graphs regenerate|check|list``: the OpGraph JSON shipped in ``sparoa_env/data/graphs``.

* ``regenerate [SPEC ...]`` rebuilds the zoo models (fixed seed), extracts them and writes the files
  (all of :data:`sparoa_env.zoo.SHIPPED` by default). On one machine the output is byte-identical run to
  run.
* ``check [SPEC ...] [--exact]`` re-extracts and compares with the shipped files; exit status 1 and a list
  of differences when they are stale. By default the fields measured on activations (``input_sparsity``,
  ``sparsity``) may differ by up to 1e-3 (another CPU's kernels may round a few values across zero) and
  ``meta`` ``*_version`` entries are ignored; everything else (names, members, FLOPs, bytes, shapes,
  weight sparsities, edges) must match exactly. ``--exact`` compares the file text byte for byte.
* ``list`` prints the shipped specs with their file, operator count and GFLOPs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

MEASURED_FIELDS = ("input_sparsity", "sparsity")
MEASURED_ATOL = 1e-3


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    regen = sub.add_parser("regenerate", help="re-extract and write the shipped graphs")
    regen.add_argument("specs", nargs="*", metavar="SPEC", help="zoo specs (default: every shipped one)")
    regen.add_argument("--out", default=None, help="directory to write to (default: the package's data/graphs)")
    check = sub.add_parser("check", help="re-extract and compare with the shipped graphs (exit 1 if stale)")
    check.add_argument("specs", nargs="*", metavar="SPEC", help="zoo specs (default: every shipped one)")
    check.add_argument("--exact", action="store_true", help="compare the JSON text byte for byte")
    sub.add_parser("list", help="list the shipped graphs")


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _list()
    specs = _specs(args.specs)
    if args.action == "regenerate":
        out_dir = Path(args.out) if args.out else None
        for spec in specs:
            t0 = time.perf_counter()
            path = regenerate_one(spec, out_dir)
            print(f"{spec:40s} -> {path}  ({time.perf_counter() - t0:.1f} s)", flush=True)
        return 0
    stale = 0
    for spec in specs:
        diffs = check_one(spec, exact=args.exact)
        print(f"{spec:40s} {'ok' if not diffs else 'STALE'}", flush=True)
        for d in diffs[:20]:
            print(f"    {d}")
        if len(diffs) > 20:
            print(f"    ... and {len(diffs) - 20} more differences")
        stale += bool(diffs)
    if stale:
        print(f"{stale} shipped graph(s) are stale: run `sparoa graphs regenerate` (or `make graphs`)", file=sys.stderr)
        return 1
    return 0


def _specs(given: list[str]) -> list[str]:
    from sparoa_env import zoo

    return [zoo.canonical_spec(s) for s in given] if given else list(zoo.SHIPPED)


def _list() -> int:
    from sparoa_env import zoo
    from sparoa_env.graph import OpGraph
    from sparoa_env.modelspec import shipped_graph_path

    for spec in zoo.SHIPPED:
        p = shipped_graph_path(spec)
        if p.is_file():
            g = OpGraph.load(p)
            print(f"{spec:40s} {p.name:45s} {len(g.nodes):4d} ops  {g.total_flops / 1e9:8.3f} GFLOP  batch {g.batch}")
        else:
            print(f"{spec:40s} {p.name:45s} MISSING")
    return 0


def regenerate_one(spec: str, out_dir: Path | None = None) -> Path:
    """Extract zoo spec ``spec`` at batch 1 and write its JSON; returns the path written."""
    from sparoa_env import zoo

    graph = zoo.extract_zoo_graph(spec, 1)
    out_dir = out_dir or zoo.GRAPH_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / zoo.graph_filename(spec)
    graph.save(path)
    return path


def check_one(spec: str, *, exact: bool = False) -> list[str]:
    """Differences between the shipped graph of ``spec`` and a fresh extraction (empty: up to date)."""
    from sparoa_env import zoo
    from sparoa_env.graph import OpGraph
    from sparoa_env.modelspec import shipped_graph_path

    path = shipped_graph_path(spec)
    if not path.is_file():
        return [f"missing shipped file {path}"]
    fresh = zoo.extract_zoo_graph(spec, 1)
    if exact:
        text = path.read_text()
        new = fresh.to_json() + "\n"
        if text == new:
            return []
        for i, (a, b) in enumerate(zip(text.splitlines(), new.splitlines())):
            if a != b:
                return [f"{path.name}: first difference at line {i + 1}: shipped {a.strip()!r} vs fresh {b.strip()!r}"]
        return [f"{path.name}: lengths differ ({len(text)} vs {len(new)} characters)"]
    return diff_graphs(OpGraph.load(path), fresh)


def diff_graphs(shipped: Any, fresh: Any, *, atol: float = MEASURED_ATOL) -> list[str]:
    """Field-by-field differences (see module docstring for what is compared loosely)."""
    a, b = shipped.to_dict(), fresh.to_dict()
    diffs: list[str] = []
    for key in ("schema_version", "model", "batch"):
        if a.get(key) != b.get(key):
            diffs.append(f"{key}: shipped {a.get(key)!r} vs fresh {b.get(key)!r}")
    ma = {k: v for k, v in a["meta"].items() if not k.endswith("_version")}
    mb = {k: v for k, v in b["meta"].items() if not k.endswith("_version")}
    for key in sorted(set(ma) | set(mb)):
        if ma.get(key) != mb.get(key):
            diffs.append(f"meta.{key}: shipped {ma.get(key)!r} vs fresh {mb.get(key)!r}")
    na, nb = a["nodes"], b["nodes"]
    if [n["name"] for n in na] != [n["name"] for n in nb]:
        diffs.append(f"node names/order differ ({len(na)} shipped vs {len(nb)} fresh nodes)")
    else:
        for x, y in zip(na, nb):
            for field in sorted(set(x) | set(y)):
                u, v = x.get(field), y.get(field)
                if field in MEASURED_FIELDS and isinstance(u, float) and isinstance(v, float):
                    if abs(u - v) > atol:
                        diffs.append(f"nodes[{x['name']}].{field}: shipped {u!r} vs fresh {v!r} (> {atol})")
                elif u != v:
                    diffs.append(f"nodes[{x['name']}].{field}: shipped {u!r} vs fresh {v!r}")
    if a["edges"] != b["edges"]:
        diffs.append(f"edges differ ({len(a['edges'])} shipped vs {len(b['edges'])} fresh)")
    return diffs
