"""End-to-end smoke tests (``make test`` runs them after the fast suite): ``sparoa train`` with a tiny budget
in a subprocess, then ``sparoa evaluate --json`` and ``sparoa plan`` on the result. The numbers mean
nothing at this budget; the test checks that the pipeline runs and its outputs have the documented form."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _sparoa(*args: str, timeout: int = 170) -> subprocess.CompletedProcess:
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "sparoa_env.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


@pytest.mark.slow
def test_train_then_evaluate_json_then_plan(tmp_path):
    out = tmp_path / "run"
    r = _sparoa("train", "--env", "SparOA-Orin-v0", "--set", "model=mobilenet_v3_small", "--set", "background=dynamic",
                "--steps", "1200", "--seed", "1", "--out", str(out), "--workers", "2", "--epoch-steps", "600",
                "--start-steps", "300", "--test-episodes", "1", "--hidden", "32,32", "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "policy.pt").is_file() and (out / "config.json").is_file()
    assert list((out / "tb").glob("*/events.out.tfevents.*"))

    again = _sparoa("train", "--set", "model=mobilenet_v3_small", "--steps", "10", "--out", str(out))
    assert again.returncode == 2 and "--force" in again.stderr

    r = _sparoa("evaluate", "--policy", str(out), "--episodes", "2", "--baselines", "all", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    assert {"sac", "cpu_only", "gpu_only", "greedy", "heft", "threshold", "random"} <= set(res["policies"])
    for s in res["policies"].values():
        assert {"latency_ms_mean", "latency_ms_p95", "energy_mj_mean"} <= set(s)
        assert s["latency_ms_mean"] >= res["lower_bound_ms"] > 0

    plan = tmp_path / "plan.json"
    r = _sparoa("plan", "--policy", str(out), "--out", str(plan))
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads(plan.read_text())
    assert d["model"] == "mobilenet_v3_small" and len(d["placement"]) == 230
    assert set(d["placement"].values()) <= {"cpu", "gpu"}
