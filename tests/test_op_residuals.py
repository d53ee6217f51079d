"""The learned per-op correction (``op_residuals``): profile round trip and errors, the cost model applies the
nearest traced residuals, and ``sparoa calibrate`` learns a shape effect the formula cannot express."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("scipy")

from sparoa_env.calibrate import calibrate, with_lane_cores  # noqa: E402
from sparoa_env.costmodel import RESIDUAL_FEATURES, CostModel, residual_features  # noqa: E402
from sparoa_env.profile import ProfileError, load_profile, profile_from_dict  # noqa: E402

from test_calibrate import _truth_profile, random_graph, synthetic_rows  # noqa: E402


def _features(node) -> list[float]:
    numel = float(math.prod(node.out_shape)) if node.out_shape else 0.0
    x = residual_features([node.flops], [node.aux_flops], [node.bytes_in], [node.bytes_out], [node.weight_bytes],
                          [numel])
    return [float(v) for v in x[0]]


def _with_table(profile, table):
    d = profile.to_dict()
    d["processors"][0]["op_residuals"] = table
    d["processors"][0]["sources"]["op_residuals"] = "assumption: a test table"
    return profile_from_dict(d, source="<test>")


def test_a_table_round_trips_and_bad_tables_name_the_field(tmp_path):
    prof = _truth_profile()
    graph = random_graph(np.random.default_rng(1), "g")
    relu = next(n for n in graph.nodes if n.op_type == "aten.relu")
    table = {"features": list(RESIDUAL_FEATURES), "neighbours": 3, "bandwidth": 0.5, "prior_weight": 0.1,
             "tables": {"1": {"aten.relu": [_features(relu) + [0.5]]}}}
    p = _with_table(prof, table)
    p.save(tmp_path / "p.json")
    back = load_profile(tmp_path / "p.json")
    assert back.processors[0].op_residuals == p.processors[0].op_residuals
    assert back.to_dict() == p.to_dict()
    # a profile without the table writes no op_residuals key (and no source for it)
    assert "op_residuals" not in prof.to_dict()["processors"][0]
    bad_cases = [
        ({**table, "features": ["log1p_flops"]}, "op_residuals.features"),
        ({**table, "tables": {"1": {"aten.relu": [[0.0, 1.0]]}}}, "op_residuals.tables.1.aten.relu[0]"),
        ({**table, "tables": {"one": {"aten.relu": [_features(relu) + [0.5]]}}}, "core count"),
        ({**table, "neighbours": 0}, "op_residuals.neighbours"),
        ({**table, "bandwidth": 0.0}, "op_residuals.bandwidth"),
    ]
    for bad, where in bad_cases:
        with pytest.raises(ProfileError, match=where.replace("[", r"\[").replace("]", r"\]")):
            _with_table(prof, bad)


def test_the_cost_model_applies_the_nearest_residual_to_its_key_only():
    prof = _truth_profile()
    graph = random_graph(np.random.default_rng(2), "g")
    relu = next(n for n in graph.nodes if n.op_type == "aten.relu")
    # one row, no shrinkage, a wide kernel: every relu gets exactly the row's residual, log(2)
    table = {"features": list(RESIDUAL_FEATURES), "neighbours": 4, "bandwidth": 100.0, "prior_weight": 0.0,
             "tables": {"1": {"aten.relu": [_features(relu) + [math.log(2.0)]]}}}
    for cores in (1, 4):   # 4 cores: the nearest table (1) is used
        a = CostModel(with_lane_cores(prof, {"cpu": cores})).op_costs(graph, "fidelity")
        b = CostModel(with_lane_cores(_with_table(prof, table), {"cpu": cores})).op_costs(graph, "fidelity")
        ta, tb = a.nominal_ms[:, 0] + a.host_ms[:, 0], b.nominal_ms[:, 0] + b.host_ms[:, 0]
        is_relu = np.array([n.op_type == "aten.relu" for n in graph.nodes])
        np.testing.assert_allclose(tb[is_relu], 2.0 * ta[is_relu], rtol=1e-9)
        np.testing.assert_array_equal(tb[~is_relu], ta[~is_relu])
        np.testing.assert_array_equal(b.host_ms, a.host_ms)
    # far from every row with a prior weight, the formula is left almost alone
    far = {**table, "bandwidth": 0.01, "prior_weight": 0.5,
           "tables": {"1": {"aten.relu": [[30.0] * len(RESIDUAL_FEATURES) + [math.log(2.0)]]}}}
    c = CostModel(with_lane_cores(_with_table(prof, far), {"cpu": 1})).op_costs(graph, "fidelity")
    a = CostModel(with_lane_cores(prof, {"cpu": 1})).op_costs(graph, "fidelity")
    np.testing.assert_allclose(c.nominal_ms, a.nominal_ms, rtol=1e-9)


def _small_ops_slow(rows, factor=3.0, band=(1e5, 1e6)):
    """Make elementwise ops whose traffic lies in a band of sizes ``factor`` times slower than the formula
    (a shape effect that no rate or overhead expresses: the ops below and above the band are not slowed);
    e2e rows follow their ops."""
    rows = [dict(r) for r in rows]
    sums: dict[tuple, float] = {}
    for r in rows:
        if r["kind"] == "op":
            if r["flops"] == 0 and band[0] <= r["bytes_in"] + r["bytes_out"] < band[1]:
                for c in ("latency_ms", "latency_p10_ms", "latency_p90_ms"):
                    r[c] *= factor
            key = (r["model"], r["threads"])
            sums[key] = sums.get(key, 0.0) + r["latency_ms"]
    for r in rows:
        if r["kind"] == "e2e":
            s = sums[(r["model"], r["threads"])]
            r.update(latency_ms=s, latency_p10_ms=s, latency_p90_ms=s, ops_sum_ms=s)
    return rows


def test_calibrate_learns_a_shape_effect_and_predicts_an_unseen_graph_better():
    prof = _truth_profile()
    rng = np.random.default_rng(3)
    graphs = [random_graph(rng, f"g{k}") for k in range(6)]
    df = pd.DataFrame(_small_ops_slow(synthetic_rows(prof, graphs, threads=(1, 2))))
    with_table = calibrate(df, name="learned")
    without = calibrate(df, name="formula", op_residuals=False)
    rep = with_table.reports["cpu"]["op_residuals"]
    assert rep["models"] == 6 and rep["passes"] == 12
    assert rep["cv_mean_abs_log_error"] < rep["formula_mean_abs_log_error"] and rep["kept"]
    table = with_table.profile.processors[0].op_residuals
    assert set(table["tables"]) == {"1", "2"} and table["features"] == list(RESIDUAL_FEATURES)
    assert with_table.profile.processors[1].op_residuals == table        # every CPU lane carries it
    assert "leave-one-model-out" in with_table.profile.processors[0].sources["op_residuals"]
    # a graph in no trace, with the same shape effect: its ops are priced much closer with the table
    unseen = random_graph(np.random.default_rng(99), "unseen")
    truth_rows = [r for r in _small_ops_slow(synthetic_rows(prof, [unseen], threads=(1,))) if r["kind"] == "op"]
    true_ms = np.array([r["latency_ms"] for r in truth_rows])
    errs = {}
    for name, res in (("table", with_table), ("formula", without)):
        c = CostModel(with_lane_cores(res.profile, {"cpu0": 1})).op_costs(unseen, "fidelity")
        pred = c.nominal_ms[:, 0] + c.host_ms[:, 0]
        errs[name] = (float(np.median(np.abs(np.log(pred / true_ms)))), abs(float(pred.sum() / true_ms.sum()) - 1.0))
    assert errs["table"][0] < 0.5 * errs["formula"][0], errs          # per op
    assert errs["table"][1] <= errs["formula"][1] + 0.01, errs        # and the pass no worse
    # written and read back, the profile prices the same
    d = json.loads(json.dumps(with_table.profile.to_dict()))
    again = profile_from_dict(d, source="<round trip>")
    a = CostModel(with_lane_cores(with_table.profile, {"cpu0": 2})).op_costs(unseen, "fidelity")
    b = CostModel(with_lane_cores(again, {"cpu0": 2})).op_costs(unseen, "fidelity")
    np.testing.assert_array_equal(a.nominal_ms, b.nominal_ms)


def test_auto_leaves_the_table_out_when_it_does_not_carry_over_to_other_models():
    """Each model's ops off the formula by a factor of its own (what a noisy machine does to whole traces):
    nothing a model's neighbours say carries over, cross-validation sees it, and 'auto' keeps the formula."""
    prof = _truth_profile()
    rng = np.random.default_rng(4)
    graphs = [random_graph(rng, f"g{k}") for k in range(6)]
    rows = synthetic_rows(prof, graphs, threads=(1,))
    factor = {g.model: f for g, f in zip(graphs, (0.6, 1.5, 0.7, 1.4, 0.8, 1.3))}
    for r in rows:
        if r["kind"] in ("op", "e2e"):
            for c in ("latency_ms", "latency_p10_ms", "latency_p90_ms", "ops_sum_ms"):
                if r.get(c) == r.get(c) and r.get(c) is not None:
                    r[c] *= factor[r["model"]]
    df = pd.DataFrame(rows)
    auto = calibrate(df, name="auto")
    rep = auto.reports["cpu"]["op_residuals"]
    assert not rep["kept"] and "left out" in rep["why"]
    assert rep["cv_mean_abs_log_error"] >= rep["formula_mean_abs_log_error"]
    assert all(not p.op_residuals for p in auto.profile.processors)
    forced = calibrate(df, name="forced", op_residuals=True)
    assert forced.reports["cpu"]["op_residuals"]["kept"] and forced.profile.processors[0].op_residuals
    with pytest.raises(ValueError, match="op_residuals"):
        calibrate(df, name="bad", op_residuals="sometimes")
