"""Strict JSON: what the package prints and writes parses with strict parsers (no NaN / Infinity)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sparoa_env.jsonutil import dumps, strict


def _strict_loads(text: str):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


def test_non_finite_floats_become_null_and_numpy_is_plain():
    obj = {"a": math.nan, "b": [1.0, math.inf, -math.inf], "c": (np.float32(1.5), np.int64(3)),
           "d": np.array([[1.0, np.nan]]), "e": np.float64("nan"), "f": "text", "g": None, "h": True}
    assert _strict_loads(dumps(obj)) == {"a": None, "b": [1.0, None, None], "c": [1.5, 3], "d": [[1.0, None]],
                                        "e": None, "f": "text", "g": None, "h": True}
    assert strict({"x": [1, 2]}) == {"x": [1, 2]}


def test_evaluate_json_without_an_energy_counter_is_strict(capsys):
    """The hw env on a machine without RAPL/NVML has NaN energy: printed as null, not NaN."""
    pytest.importorskip("torch")
    pytest.importorskip("psutil")
    import os

    from sparoa_env import cli

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("SparOA-Host-hw-v0 pins its two lanes to two cores")
    assert cli.main(["evaluate", "--env", "SparOA-Host-hw-v0", "--set", "model=tests/models_unseen.py:parallel_mlp",
                     "--baselines", "cpu_only", "--episodes", "1", "--no-oracle", "--json"]) == 0
    out = _strict_loads(capsys.readouterr().out)
    e = out["policies"]["cpu_only"]["energy_mj_mean"]
    assert e is None or e > 0  # None where no energy counter is readable (this VM), a number where one is
