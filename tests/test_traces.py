"""Trace schema: round trip, validation errors that name file / column / row, machine checks."""

from __future__ import annotations

import json

import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

from sparoa_env.traces import (COLUMNS, TraceError, empty_row, machine_id, machine_info, read_trace,  # noqa: E402
                               read_traces, trace_id_for, trace_meta, write_trace)


def rows(machine: str = "test-machine-2c-8g-abcdef01", trace_id: str = "test.mlp.20260101T000000") -> list[dict]:
    out = []
    base = dict(trace_id=trace_id, machine_id=machine, processor="cpu", device_name="Test CPU", threads=1,
                cores="0", torch_version="2.13.0", model="mlp", batch=2, timestamp="2026-01-01T00:00:00Z",
                loadavg_1m=0.1)
    for i, (t, fl) in enumerate([("aten.addmm", 2e6), ("aten.relu", 0.0), ("aten.addmm", 1e6)]):
        r = empty_row()
        r.update(base, kind="op", op_name=f"op{i}", op_type=t, op_signature=f"{t}(f32[2,64])", in_shapes="[[2, 64]]",
                 out_shape="[2, 64]", dtype="float32", n_members=1, flops=fl, aux_flops=128.0, bytes_in=512.0,
                 bytes_out=512.0, weight_bytes=16384.0 if fl else 0.0, weight_sparsity=0.0, input_sparsity=0.1,
                 sparsity=0.1, sparsity_pattern="dense", latency_ms=0.01 * (i + 1), latency_p10_ms=0.009 * (i + 1),
                 latency_p90_ms=0.012 * (i + 1), n_samples=10, cv=0.05)
        out.append(r)
    r = empty_row()
    r.update(base, kind="e2e", n_ops=3, latency_ms=0.06, latency_p10_ms=0.055, latency_p90_ms=0.07, n_samples=10,
             cv=0.04, ops_sum_ms=0.062)
    out.append(r)
    return out


def test_round_trip(tmp_path):
    p = write_trace(rows(), tmp_path / "t.parquet", {"command": "test"})
    df = read_trace(p)
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == 4
    assert df.loc[0, "op_type"] == "aten.addmm" and df.loc[3, "kind"] == "e2e"
    assert df["batch"].dtype.kind == "i" and df["latency_ms"].dtype.kind == "f"
    assert df.loc[1, "latency_ms"] == pytest.approx(0.02)
    meta = trace_meta(p)
    assert meta["schema_version"] == 1 and meta["command"] == "test"


def test_never_overwrites_without_force(tmp_path):
    p = write_trace(rows(), tmp_path / "t.parquet", {})
    with pytest.raises(ValueError, match="--force"):
        write_trace(rows(), p, {})
    write_trace(rows(), p, {}, force=True)


def _write_raw(path, df, meta=None):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    if meta is not False:
        table = table.replace_schema_metadata({b"sparoa_trace": json.dumps(meta or {"schema_version": 1}).encode()})
    pq.write_table(table, path)


def test_missing_column_is_named(tmp_path):
    df = pd.DataFrame(rows()).drop(columns=["latency_p90_ms"])
    _write_raw(tmp_path / "bad.parquet", df)
    with pytest.raises(TraceError, match=r"bad\.parquet.*missing column\(s\) \['latency_p90_ms'\]"):
        read_trace(tmp_path / "bad.parquet")


def test_bad_value_names_file_column_row(tmp_path):
    r = rows()
    r[2]["latency_ms"] = -1.0
    r[2]["latency_p10_ms"] = -2.0
    _write_raw(tmp_path / "neg.parquet", pd.DataFrame(r))
    with pytest.raises(TraceError, match=r"neg\.parquet: column 'latency_ms' row 2: must be a finite number >= 0"):
        read_trace(tmp_path / "neg.parquet")


def test_non_numeric_and_unknown_kind(tmp_path):
    df = pd.DataFrame(rows())
    df["flops"] = [str(x) for x in df["flops"]]
    df.loc[1, "flops"] = "lots"
    _write_raw(tmp_path / "a.parquet", df)
    with pytest.raises(TraceError, match=r"column 'flops' row 1: expected a number, got 'lots'"):
        read_trace(tmp_path / "a.parquet")
    r = rows()
    r[0]["kind"] = "guess"
    _write_raw(tmp_path / "b.parquet", pd.DataFrame(r))
    with pytest.raises(TraceError, match=r"column 'kind' row 0: must be one of"):
        read_trace(tmp_path / "b.parquet")


def test_not_a_trace_and_missing_file(tmp_path):
    _write_raw(tmp_path / "plain.parquet", pd.DataFrame(rows()), meta=False)
    with pytest.raises(TraceError, match="not a sparoa trace"):
        read_trace(tmp_path / "plain.parquet")
    with pytest.raises(TraceError, match="not found"):
        read_trace(tmp_path / "nope.parquet")


def test_mixed_machines_refused_unless_allowed(tmp_path):
    a = write_trace(rows("machine-a-2c-8g-00000001", "a.x.1"), tmp_path / "a.parquet", {})
    b = write_trace(rows("machine-b-4c-8g-00000002", "b.x.1"), tmp_path / "b.parquet", {})
    with pytest.raises(TraceError, match="2 machines.*--allow-mixed"):
        read_traces([a, b])
    df = read_traces([a, b], allow_mixed=True)
    assert sorted(df["machine_id"].unique()) == ["machine-a-2c-8g-00000001", "machine-b-4c-8g-00000002"]
    with pytest.raises(TraceError, match="given twice"):
        read_traces([a, a])


def test_machine_id_is_stable_and_citable():
    info = machine_info()
    assert machine_id(info) == machine_id(info) == machine_id()
    tid = trace_id_for(machine_id(info), "resnet18@unstructured-0.9.cpu", 0.0)
    assert tid.endswith(".19700101T000000")
    import re

    assert re.fullmatch(r"[A-Za-z0-9_.:-]+", tid)
