"""``sparoa run``: a plan runs on this machine; host plans (cpu0/cpu1) need no --processors; bad input is
one line."""

from __future__ import annotations

import json
import os

import pytest

torch = pytest.importorskip("torch")

from sparoa_env import cli  # noqa: E402
from sparoa_env.modelspec import load_graph  # noqa: E402
from sparoa_env.plan import Plan  # noqa: E402

MODEL = "tests/models_unseen.py:parallel_mlp"
two_cores = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="two CPU lanes need two cores")


def _run(capsys, *argv):
    rc = cli.main(["run", MODEL, *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_all_on_the_cpu_with_serving_prints_strict_json(capsys):
    rc, out, err = _run(capsys, "--plan", "all:cpu", "--repeats", "2", "--warmup", "1", "--requests", "4",
                        "--max-batch", "2", "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["plan_counts"] == {"cpu": d["ops"]} and d["serve"]["completed"] == 4
    assert d["engine_ms"]["n"] == 2 and d["engine_over_eager"] > 0


@two_cores
def test_a_host_plan_runs_without_processors(tmp_path, capsys):
    """A plan from `sparoa deploy --out` / `sparoa plan` on SparOA-Host-v0 names cpu0/cpu1: the processors and
    one core group per lane come from the profile its meta names (it used to need --processors)."""
    g = load_graph(MODEL, 1)
    plan = Plan({n.name: ("cpu0", "cpu1")[k % 2] for k, n in enumerate(g.nodes)}, batch=1, model=MODEL,
                meta={"env_id": "SparOA-Host-v0"})
    path = tmp_path / "plan.json"
    plan.save(path)
    rc, out, err = _run(capsys, "--plan", str(path), "--repeats", "2", "--warmup", "1", "--no-eager", "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert set(d["lanes"]) == {"cpu0", "cpu1"} and set(d["plan_counts"]) == {"cpu0", "cpu1"}


def test_bad_input_is_one_line(tmp_path, capsys):
    g = load_graph(MODEL, 1)
    path = tmp_path / "odd.json"
    Plan({n.name: "npu7" for n in g.nodes}, batch=1, model=MODEL).save(path)
    for argv, needle in ((["--plan", str(path)], "its meta names no profile: pass --processors"),
                         (["--plan", "all:cpu", "--requests", "2", "--rate", "-3"], "--rate must be > 0"),
                         (["--plan", "all:cpu", "--batch", "0"], "--batch must be positive"),
                         (["--plan", "all:tpu"], "unknown processor 'tpu'")):
        rc, _, err = _run(capsys, *argv)
        assert rc == 2 and needle in err, (argv, err)
