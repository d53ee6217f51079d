"""``sparoa profiles``: list the shipped SoC profiles, or show one, with provenance.

    sparoa profiles                 # table: name, processors, power modes, provenance
    sparoa profiles --json          # the same as JSON
    sparoa profiles orin-agx        # one profile: processors, modes, sources of every value
    sparoa profiles orin-agx --json # the profile file as loaded (validated)
    sparoa profiles path/to/my.json # any profile file
"""

from __future__ import annotations

import argparse
import json


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="a shipped profile name or a profile JSON path; omit to list all")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args: argparse.Namespace) -> int:
    from ..profile import available_profiles, load_profile

    if args.name is None:
        rows = [_summary(load_profile(n)) for n in available_profiles()]
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(_table(rows))
        return 0
    profile = load_profile(args.name)
    print(profile.to_json() if args.json else _describe(profile))
    return 0


def _summary(p) -> dict:
    return {
        "name": p.name,
        "processors": [f"{x.name}:{x.kind}" for x in p.processors],
        "power_modes": list(p.power_modes),
        "default_power_mode": p.default_power_mode,
        "provenance": p.provenance,
    }


def _table(rows: list[dict]) -> str:
    cols = [("name", lambda r: r["name"]),
            ("processors", lambda r: ",".join(r["processors"])),
            ("power modes (default*)", lambda r: ",".join(m + ("*" if m == r["default_power_mode"] else "")
                                                           for m in r["power_modes"])),
            ("provenance", lambda r: r["provenance"])]
    cells = [[f(r) for _, f in cols] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (h, _) in enumerate(cols)]
    lines = ["  ".join(h.ljust(w) for (h, _), w in zip(cols, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def _describe(p) -> str:
    out = [f"{p.name}: {p.description}", f"provenance: {p.provenance}", "",
           f"memory: {p.memory.dram_bw_gbps:g} GB/s DRAM, {p.memory.capacity_gb:g} GB; transfer: {p.transfer.kind}, "
           f"{p.transfer.latency_us:g} us + bytes / {p.transfer.bandwidth_gbps:g} GB/s", ""]
    out.append("processors (lane order):")
    for x in p.processors:
        out.append(f"  {x.name} ({x.kind}): {x.cores} cores, {x.max_freq_mhz:g} MHz, {x.peak_gflops:g} GFLOP/s fp32 peak, "
                   f"{x.mem_bw_frac:g} of DRAM bw, launch {x.launch_overhead_us:g} us "
                   f"({'async' if x.async_dispatch else 'sync'}), fixed {x.fixed_overhead_us:g} us, "
                   f"power {x.static_power_w:g} + {x.dynamic_power_w:g} W")
    out.append("")
    out.append("power modes:")
    for m in p.power_modes.values():
        caps = ", ".join(f"{k} {m.cores[k]} cores <= {m.max_freq_mhz[k]:g} MHz" for k in m.cores)
        star = " (default)" if m.name == p.default_power_mode else ""
        out.append(f"  {m.name}{star}: {caps}; budget {m.budget_w:g} W")
        out.append(f"      source: {m.source}")
    out.append("")
    out.append("sources:")
    for x in p.processors:
        for k, v in x.sources.items():
            out.append(f"  processors.{x.name}.{k}: {v}")
        for pat, c in x.sparsity.items():
            out.append(f"  processors.{x.name}.sparsity.{pat}: {c.source}")
    for section in ("memory", "transfer", "thermal", "power", "cost_rules"):
        for k, v in getattr(p, section).sources.items():
            out.append(f"  {section}.{k}: {v}")
    out.append("")
    out.append("references:")
    out += [f"  [{k}] {v}" for k, v in p.references.items()]
    return "\n".join(out)
