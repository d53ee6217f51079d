"""Traces: what ``sparoa profile`` measured on one machine, one Parquet file per recording.

A trace is a table with one row per measurement. Every row says where it was taken (machine id,
processor, threads, cores, clocks where readable, power mode, torch version, load average) and what it
measured. ``kind`` says which measurement it is:

==========  ========================================================================================
``op``      one operator (an OpGraph node = an op group of the exported program) timed *inside* real
            passes of the executor: the model is run as a chain of per-group compiled segments and each
            segment call is timed, so caches are as warm as in a real pass (not in isolation); carries
            the op's features (type, FLOPs, bytes, sparsity, shapes) so calibration needs neither torch
            nor the model
``e2e``     end-to-end passes of the project's executor (the whole graph as one compiled segment:
            :class:`sparoa_env.hw.program.Program`); ``cv`` is the machine's run-to-run noise
            (std / mean of the passes), ``ops_sum_ms`` the median sum of the in-pass op times
``probe``   the cost of the timing probe itself (one empty segment call between two clock reads),
            subtracted from ``op`` rows by calibration
``dispatch`` host time to issue one tiny op from compiled code (per-op dispatch / launch overhead);
            on a GPU also the device-side time of a tiny kernel (``launch`` rows)
``transfer`` handing ``nbytes`` from ``src`` to ``dst``: host<->device copies on a GPU; between two CPU
            core groups (worker threads) on a CPU-only machine
``peak``    a large matrix multiply, for the processor's attainable FLOP/s
==========  ========================================================================================

Latencies are milliseconds: ``latency_ms`` is the median over ``n_samples`` repeats after warm-up, with
``latency_p10_ms`` / ``latency_p90_ms`` beside it. Run-level facts (the command, machine details, the
noise summary) are in the Parquet key-value metadata under ``sparoa_trace`` (:func:`trace_meta`).

:func:`read_trace` validates a file and raises :class:`TraceError` naming the file, the column, the row
and the bad value. ``traces/README.md`` documents the schema for people; :data:`COLUMNS` is the truth.
pandas and pyarrow are imported lazily (``pip install 'sparoa-env[traces]'``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["TRACE_SCHEMA_VERSION", "COLUMNS", "KINDS", "TraceError", "machine_id", "machine_info",
           "write_trace", "read_trace", "read_traces", "trace_meta", "empty_row", "trace_id_for"]

TRACE_SCHEMA_VERSION = 1
META_KEY = b"sparoa_trace"
KINDS = ("op", "e2e", "probe", "dispatch", "launch", "transfer", "peak")

#: column -> (type, meaning). Types: "str", "int", "float", "bool".
COLUMNS: dict[str, tuple[str, str]] = {
    "trace_id": ("str", "id of the recording (one per file); profiles cite it in their provenance"),
    "machine_id": ("str", "stable id of the machine: CPU model, core count, memory and a hash of /etc/machine-id"),
    "kind": ("str", f"what the row measured: {', '.join(KINDS)}"),
    "processor": ("str", "'cpu' or 'cuda:N': where the measured work ran"),
    "device_name": ("str", "CPU model name or GPU name"),
    "threads": ("int", "intra-op threads of the CPU thread that ran the work"),
    "cores": ("str", "CPU cores the measuring thread was pinned to ('0-3'; '' = not pinned)"),
    "cpu_freq_mhz": ("float", "current CPU clock read before the measurement (NaN: not readable)"),
    "gpu_freq_mhz": ("float", "current GPU SM clock (NaN: no GPU or not readable)"),
    "clocks_pinned": ("str", "'yes' (jetson_clocks / fixed governor seen), 'no', or 'unknown'"),
    "power_mode": ("str", "nvpmodel mode on a Jetson (read through jtop); '' elsewhere"),
    "torch_version": ("str", "torch.__version__"),
    "model": ("str", "model spec (zoo name or file.py:function); '' for micro-benchmarks"),
    "batch": ("int", "batch size (0 for micro-benchmarks)"),
    "op_name": ("str", "OpGraph node name (op rows); '' otherwise"),
    "op_type": ("str", "ATen op type (aten.convolution, ...); '' otherwise"),
    "op_signature": ("str", "op type with input shapes and dtypes, e.g. 'aten.addmm(f32[1,512],f32[512,1000])'"),
    "in_shapes": ("str", "JSON list of the activation input shapes"),
    "out_shape": ("str", "JSON list: shape of the op's (first) output"),
    "dtype": ("str", "dtype of the op's output"),
    "n_members": ("int", "fx nodes in the op group (the op plus folded views)"),
    "flops": ("float", "FLOPs (torch.utils.flop_counter: 2 per MAC)"),
    "aux_flops": ("float", "elementwise work (one per element)"),
    "bytes_in": ("float", "activation bytes read"),
    "bytes_out": ("float", "activation bytes written"),
    "weight_bytes": ("float", "parameter / constant bytes read"),
    "weight_sparsity": ("float", "share of zero weights"),
    "input_sparsity": ("float", "share of zero activations on the example input"),
    "sparsity": ("float", "rho = 1 - (1 - weight_sparsity) * (1 - input_sparsity)"),
    "sparsity_pattern": ("str", "dense, unstructured, 2:4, structured"),
    "n_ops": ("int", "ops covered by the row (1 for op rows, the graph's op count for e2e rows)"),
    "nbytes": ("float", "bytes moved (transfer rows); NaN otherwise"),
    "src": ("str", "transfer source ('cpu:0', 'cpu', 'cuda:0'); '' otherwise"),
    "dst": ("str", "transfer destination; '' otherwise"),
    "latency_ms": ("float", "median latency over the repeats, ms"),
    "latency_p10_ms": ("float", "10th percentile, ms"),
    "latency_p90_ms": ("float", "90th percentile, ms"),
    "n_samples": ("int", "timed repeats behind the row"),
    "cv": ("float", "coefficient of variation (std / mean) of the repeats: the run-to-run noise"),
    "ops_sum_ms": ("float", "e2e rows: median over the op-timing passes of the sum of in-pass op times; NaN otherwise"),
    "loadavg_1m": ("float", "1-minute load average when the measurement started (other work on the machine)"),
    "timestamp": ("str", "UTC time the measurement started, ISO 8601"),
}
REQUIRED = tuple(COLUMNS)
_STR = [c for c, (t, _) in COLUMNS.items() if t == "str"]
_INT = [c for c, (t, _) in COLUMNS.items() if t == "int"]
_FLOAT = [c for c, (t, _) in COLUMNS.items() if t == "float"]
_TIMED_KINDS = ("op", "e2e", "probe", "dispatch", "launch", "transfer", "peak")


class TraceError(ValueError):
    """A trace file is missing, malformed, or does not fit with the others; the message says which file,
    column, row and value."""


def _need_pandas():
    try:
        import pandas as pd
        import pyarrow  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("traces need pandas and pyarrow: pip install 'sparoa-env[traces]'") from e
    return pd


# ------------------------------------------------------------------------------------------ machine
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown-cpu"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def machine_info() -> dict[str, Any]:
    """Facts about this machine stored with every trace (no user data)."""
    try:
        import psutil

        mem_gb = psutil.virtual_memory().total / 2**30
    except Exception:  # noqa: BLE001 - psutil is optional for this
        mem_gb = float("nan")
    try:
        raw_id = Path("/etc/machine-id").read_text().strip()
    except OSError:
        raw_id = socket.gethostname()
    return {"cpu_model": _cpu_model(), "logical_cpus": os.cpu_count() or 1,
            "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [],
            "memory_gb": round(mem_gb, 1) if mem_gb == mem_gb else None,
            "platform": platform.platform(), "python": platform.python_version(),
            "machine_hash": hashlib.sha256(raw_id.encode()).hexdigest()[:8]}


def machine_id(info: Mapping[str, Any] | None = None) -> str:
    """``<cpu model>-<N>c-<M>g-<hash>``: stable across runs on one machine, different across machines."""
    info = info or machine_info()
    mem = info.get("memory_gb")
    mem_s = f"{int(round(mem))}g" if isinstance(mem, (int, float)) and mem == mem else "xg"
    return f"{_slug(info['cpu_model'])[:32]}-{info['logical_cpus']}c-{mem_s}-{info['machine_hash']}"


def trace_id_for(machine: str, label: str, when: float | None = None) -> str:
    """``<machine>.<label>.<UTC yyyymmddThhmmss>``; only ``[A-Za-z0-9_.:-]`` so that a profile can cite it."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(when if when is not None else time.time()))
    return f"{_slug(machine)}.{re.sub(r'[^A-Za-z0-9_.:-]+', '-', label).strip('-')}.{stamp}"


def empty_row() -> dict[str, Any]:
    """A row with every column at its neutral value (strings '', numbers NaN, ints 0)."""
    row: dict[str, Any] = {}
    for c, (t, _) in COLUMNS.items():
        row[c] = "" if t == "str" else (0 if t == "int" else math.nan)
    row["clocks_pinned"] = "unknown"
    row["n_ops"] = 1
    return row


# ------------------------------------------------------------------------------------------ writing
def write_trace(rows: Sequence[Mapping[str, Any]], path: str | Path, meta: Mapping[str, Any], *,
                force: bool = False) -> Path:
    """Validate ``rows`` and write them to ``path`` (Parquet) with ``meta`` in the key-value metadata.
    An existing file is never replaced unless ``force``."""
    pd = _need_pandas()
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if path.exists() and not force:
        raise ValueError(f"{path} exists; pass --force to overwrite it (traces are never replaced silently)")
    if path.suffix != ".parquet":
        raise TraceError(f"{path}: a trace file must end in .parquet")
    df = pd.DataFrame([{c: r.get(c, empty_row()[c]) for c in COLUMNS} for r in rows], columns=list(COLUMNS))
    df = _coerce(df, str(path))
    _validate(df, str(path))
    table = pa.Table.from_pandas(df, preserve_index=False)
    full_meta = {"schema_version": TRACE_SCHEMA_VERSION, **dict(meta)}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           META_KEY: json.dumps(full_meta, default=str).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------------------ reading
def trace_meta(path: str | Path) -> dict[str, Any]:
    """The run-level metadata of a trace file (command, machine, noise summary)."""
    import pyarrow.parquet as pq

    md = pq.read_schema(path).metadata or {}
    if META_KEY not in md:
        raise TraceError(f"{path}: not a sparoa trace (no '{META_KEY.decode()}' metadata); record traces with "
                         "'sparoa profile MODEL --out FILE.parquet'")
    try:
        return json.loads(md[META_KEY])
    except json.JSONDecodeError as e:
        raise TraceError(f"{path}: the '{META_KEY.decode()}' metadata is not valid JSON ({e})") from None


def read_trace(path: str | Path) -> "pd.DataFrame":
    """Read and validate one trace file."""
    pd = _need_pandas()
    path = Path(path)
    if not path.is_file():
        raise TraceError(f"trace file not found: {path}")
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise TraceError(f"{path}: cannot be read as Parquet ({type(e).__name__}: {e})") from None
    meta = trace_meta(path)
    v = meta.get("schema_version")
    if v != TRACE_SCHEMA_VERSION:
        raise TraceError(f"{path}: trace schema_version {v!r} is not supported (this package reads "
                         f"{TRACE_SCHEMA_VERSION})")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise TraceError(f"{path}: missing column(s) {missing}; see traces/README.md for the schema")
    df = _coerce(df[list(COLUMNS)], str(path))
    _validate(df, str(path))
    return df


def read_traces(paths: Iterable[str | Path], *, allow_mixed: bool = False) -> "pd.DataFrame":
    """Read several traces into one table; traces of different machines are refused unless
    ``allow_mixed`` (a profile describes one machine), and a trace id may appear only once."""
    pd = _need_pandas()
    frames, seen = [], {}
    for p in paths:
        df = read_trace(p)
        tid = str(df["trace_id"].iloc[0]) if len(df) else str(p)
        if tid in seen:
            raise TraceError(f"{p}: trace id {tid!r} is also in {seen[tid]} (the same recording given twice?)")
        seen[tid] = str(p)
        df = df.assign(_file=str(p))
        frames.append(df)
    if not frames:
        raise TraceError("no trace files given")
    out = pd.concat(frames, ignore_index=True)
    machines = sorted(out["machine_id"].unique())
    if len(machines) > 1 and not allow_mixed:
        by = {m: sorted(out.loc[out["machine_id"] == m, "_file"].unique()) for m in machines}
        detail = "; ".join(f"{m}: {', '.join(fs)}" for m, fs in by.items())
        raise TraceError(f"traces come from {len(machines)} machines ({detail}); a profile describes one machine. "
                         "Pass --allow-mixed to fit them together anyway")
    return out


def _coerce(df: "pd.DataFrame", source: str) -> "pd.DataFrame":
    pd = _need_pandas()
    df = df.copy()
    for c in _STR:
        bad = df[c].map(lambda v: not (isinstance(v, str)))
        if bad.any():
            i = int(bad.idxmax())
            raise TraceError(f"{source}: column {c!r} row {i}: expected a string, got {df[c].iloc[i]!r}")
    for c in _FLOAT:
        try:
            df[c] = pd.to_numeric(df[c], errors="raise").astype("float64")
        except (ValueError, TypeError):
            conv = pd.to_numeric(df[c], errors="coerce")
            i = int((conv.isna() & df[c].notna()).idxmax())
            raise TraceError(f"{source}: column {c!r} row {i}: expected a number, got {df[c].iloc[i]!r}") from None
    for c in _INT:
        conv = pd.to_numeric(df[c], errors="coerce")
        bad = conv.isna() | (conv != conv.round())
        if bad.any():
            i = int(bad.idxmax())
            raise TraceError(f"{source}: column {c!r} row {i}: expected an integer, got {df[c].iloc[i]!r}")
        df[c] = conv.astype("int64")
    return df


def _validate(df: "pd.DataFrame", source: str) -> None:
    def fail(col: str, i: Any, problem: str) -> None:
        raise TraceError(f"{source}: column {col!r} row {i}: {problem}, got {df[col].loc[i]!r}")

    if len(df) == 0:
        raise TraceError(f"{source}: the trace has no rows")
    ids = df["trace_id"].unique()
    if len(ids) != 1 or not ids[0]:
        raise TraceError(f"{source}: column 'trace_id' must hold one non-empty id for the whole file, got {list(ids)[:4]}")
    if not re.fullmatch(r"[A-Za-z0-9_.:-]+", ids[0]):
        raise TraceError(f"{source}: column 'trace_id' must use only letters, digits and _.:- "
                         f"(profiles cite it), got {ids[0]!r}")
    for c in ("machine_id", "processor", "torch_version", "timestamp"):
        empty = df[c] == ""
        if empty.any():
            fail(c, empty.idxmax(), "must not be empty")
    bad = ~df["kind"].isin(KINDS)
    if bad.any():
        fail("kind", bad.idxmax(), f"must be one of {list(KINDS)}")
    bad = ~df["clocks_pinned"].isin(("yes", "no", "unknown"))
    if bad.any():
        fail("clocks_pinned", bad.idxmax(), "must be 'yes', 'no' or 'unknown'")
    bad = df["threads"] < 1
    if bad.any():
        fail("threads", bad.idxmax(), "must be >= 1")
    timed = df["kind"].isin(_TIMED_KINDS)
    for c in ("latency_ms", "latency_p10_ms", "latency_p90_ms"):
        v = df[c]
        bad = timed & ~(v.apply(lambda x: math.isfinite(x)) & (v >= 0))
        if bad.any():
            fail(c, bad.idxmax(), "must be a finite number >= 0 (ms)")
    eps = 1e-9
    bad = timed & ((df["latency_p10_ms"] > df["latency_ms"] + eps) | (df["latency_ms"] > df["latency_p90_ms"] + eps))
    if bad.any():
        fail("latency_ms", bad.idxmax(), "must lie between latency_p10_ms and latency_p90_ms")
    bad = timed & (df["n_samples"] < 1)
    if bad.any():
        fail("n_samples", bad.idxmax(), "must be >= 1")
    model_rows = df["kind"].isin(("op", "e2e"))
    bad = model_rows & ((df["batch"] < 1) | (df["model"] == ""))
    if bad.any():
        fail("batch" if (df["batch"] < 1)[bad].any() else "model", bad.idxmax(), "op and e2e rows need a model and a batch >= 1")
    ops = df["kind"] == "op"
    bad = ops & ((df["op_name"] == "") | (df["op_type"] == ""))
    if bad.any():
        fail("op_name", bad.idxmax(), "op rows need op_name and op_type")
    for c in ("flops", "aux_flops", "bytes_in", "bytes_out", "weight_bytes"):
        v = df[c]
        bad = ops & ~(v.apply(lambda x: math.isfinite(x)) & (v >= 0))
        if bad.any():
            fail(c, bad.idxmax(), "must be a finite number >= 0 on op rows")
    for c in ("weight_sparsity", "input_sparsity", "sparsity"):
        v = df[c]
        bad = ops & ~((v >= 0) & (v <= 1))
        if bad.any():
            fail(c, bad.idxmax(), "must be in [0, 1] on op rows")
    xfer = df["kind"] == "transfer"
    bad = xfer & ~((df["nbytes"] > 0) & (df["src"] != "") & (df["dst"] != ""))
    if bad.any():
        fail("nbytes", bad.idxmax(), "transfer rows need nbytes > 0, src and dst")
