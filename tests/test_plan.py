"""Plan: JSON round trip and validation against a graph (DESIGN section 4)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparoa_env.plan import Plan, PlanError

from synthetic import chain


def test_round_trip_file(tmp_path):
    g = chain(5)
    plan = Plan.random(g, ("cpu", "gpu"), np.random.default_rng(0), meta={"agent": "random"})
    path = tmp_path / "plan.json"
    plan.save(path)
    back = Plan.load(path)
    assert back == plan
    assert back.to_dict()["schema_version"] == 1
    back.validate(g, ("cpu", "gpu"))
    assert set(back.placement) == {n.name for n in g.nodes}
    assert back.lanes(g, ("cpu", "gpu")).tolist() == [("cpu", "gpu").index(back[n.name]) for n in g.nodes]


def test_uniform_and_from_lanes():
    g = chain(4)
    assert Plan.uniform(g, "gpu").counts() == {"gpu": 4}
    p = Plan.from_lanes(g, ("cpu", "gpu"), [0, 1, 1, 0])
    assert p.counts() == {"cpu": 2, "gpu": 2} and p.batch == g.batch and p.model == g.model
    with pytest.raises(PlanError, match="out of range"):
        Plan.from_lanes(g, ("cpu", "gpu"), [0, 1, 2, 0])
    with pytest.raises(PlanError, match="3 lane"):
        Plan.from_lanes(g, ("cpu", "gpu"), [0, 1, 1])


def test_missing_ops_are_named():
    g = chain(5)
    names = [n.name for n in g.nodes]
    plan = Plan({n: "cpu" for n in names[:3]})
    with pytest.raises(PlanError) as e:
        plan.validate(g, ("cpu", "gpu"))
    msg = str(e.value)
    assert "misses 2 of the 5" in msg and repr(names[3]) in msg and repr(names[4]) in msg


def test_unknown_processors_and_ops_are_named():
    g = chain(3)
    names = [n.name for n in g.nodes]
    plan = Plan({names[0]: "npu", names[1]: "cpu", names[2]: "tpu", "ghost": "cpu"})
    with pytest.raises(PlanError) as e:
        plan.validate(g, ("cpu", "gpu"))
    msg = str(e.value)
    assert "'npu'" in msg and "'tpu'" in msg and "valid processors: cpu, gpu" in msg
    assert "'ghost'" in msg and "does not have" in msg


def test_validate_against_names_only():
    Plan({"a": "cpu", "b": "gpu"}).validate(["a", "b"])
    with pytest.raises(PlanError, match="misses 1"):
        Plan({"a": "cpu"}).validate(["a", "b"])


@pytest.mark.parametrize("doc, match", [
    ([1, 2], "JSON object"),
    ({"placement": {"a": "cpu"}, "extra": 1}, "unknown field"),
    ({"batch": 1}, "missing field 'placement'"),
    ({"placement": {"a": 3}}, "processor names"),
    ({"placement": {"a": "cpu"}, "batch": 0}, "positive integer"),
    ({"placement": {"a": "cpu"}, "schema_version": 9}, "schema_version"),
    ({"placement": ["a"]}, "must be an object"),
])
def test_malformed_documents(doc, match):
    with pytest.raises(PlanError, match=match):
        Plan.from_json(json.dumps(doc), source="p.json")


def test_bad_json_and_missing_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(PlanError, match="not valid JSON"):
        Plan.load(p)
    with pytest.raises(FileNotFoundError, match="plan file not found"):
        Plan.load(tmp_path / "nope.json")


def test_coerce():
    assert Plan.coerce({"a": "cpu"}).placement == {"a": "cpu"}
    assert Plan.coerce({"placement": {"a": "gpu"}, "batch": 2}).batch == 2
    p = Plan({"a": "cpu"})
    assert Plan.coerce(p) is p
    with pytest.raises(PlanError):
        Plan.coerce(3)
