"""The threshold predictor: dataset generation (seeded, resumable), the network, checkpoints, training,
evaluation and the prediction entry point. Tiny synthetic graphs keep this under a minute."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

from predictors import dataset as ds  # noqa: E402
from sparoa_env.thresholds import RHO_GRID, threshold_rule  # noqa: E402
from synthetic import chain, mixed  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def graph_specs(tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("graphs")
    specs = []
    for g, name in ((mixed(4), "mixed4"), (mixed(6), "mixed6"), (chain(8, weight_sparsity=0.8, weight_bytes=1e5,
                                                                       pattern="unstructured"), "chain8")):
        p = d / f"{name}.json"
        g.save(p)
        specs.append(str(p))
    return specs


@pytest.fixture(scope="module")
def tiny_dataset(graph_specs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "t.parquet"
    # the last graph plays the held-out model: its base name is the spec itself
    ds.generate(out, models=graph_specs, heldout=(graph_specs[-1],), per_model=3, heldout_per_model=2, seed=0,
                log=None)
    return out


def test_rule_objective_matches_an_env_episode():
    """The generator's fast loop gives the latency the env reports for the same rule placement."""
    import gymnasium as gym

    import sparoa_env  # noqa: F401

    g = mixed(5)
    case = ds.Case(spec="<mixed5>", background="dynamic", power_mode="30W", seeds=(7,))
    obj, lat, en = ds.rule_objective(g, case, 0.5, 1e9)
    env = gym.make("SparOA-Orin-v0", model=g, background="dynamic", power_mode="30W").unwrapped
    env.reset(seed=7)
    cpu = threshold_rule(g.features["sparsity"], g.features["intensity"], 0.5, 1e9)
    done = False
    while not done:
        _, _, done, _, info = env.step(env.score_of(0 if cpu[env._decision.op] else 1))
    assert lat == info["latency_ms"][0]
    assert en == pytest.approx(info["energy_mj"])
    assert obj == lat  # energy weight 0


def test_dataset_rows_label_the_grid_optimum(tiny_dataset):
    df = ds.read_dataset(tiny_dataset)
    assert set(df["split"]) == {"train", "heldout"}
    assert len(df) == 2 * 3 + 2 and df["case_key"].is_unique
    R, K = len(RHO_GRID), len(ds.I_GRID)
    for row in df.to_dict("records"):
        lat = np.asarray(row["latency_grid"]).reshape(R, K)
        obj = lat + row["energy_weight"] * np.asarray(row["energy_grid"]).reshape(R, K)
        cell = ds.grid_cell(row["rho_star"], row["i_star"])
        assert cell is not None and obj[cell] == pytest.approx(obj.min(), rel=1e-6)
        assert row["best_objective"] == pytest.approx(obj.min(), rel=1e-6)
        assert np.asarray(row["op_features"]).size == row["n_ops"] * len(ds.OP_FEATURE_COLUMNS)
        assert len(row["hw_features"]) == len(ds.HW_FEATURE_COLUMNS)
        # the stored optimum replays in the simulator on the case's seeds
        case = ds.case_of_row(row)
        g = ds.load_case_graph(case.spec, case.batch)
        assert ds.rule_objective(g, case, row["rho_star"], row["i_star"])[0] == pytest.approx(row["best_objective"], rel=1e-5)


def test_generate_is_seeded_and_resumable(graph_specs, tiny_dataset, tmp_path):
    out = tmp_path / "r.parquet"
    kw = dict(models=graph_specs, heldout=(graph_specs[-1],), per_model=3, heldout_per_model=2, seed=0, log=None)
    assert ds.generate(out, max_cases=3, **kw) == 3
    assert ds.generate(out, **kw) == 5           # resumes: only the missing cases
    assert ds.generate(out, **kw) == 0           # nothing left; the file is kept
    a = ds.read_dataset(out).set_index("case_key").sort_index()
    b = ds.read_dataset(tiny_dataset).set_index("case_key").sort_index()
    assert list(a.index) == list(b.index)        # same seed, same cases
    for col in ("latency_grid", "op_features", "hw_features"):
        assert all(np.array_equal(x, y) for x, y in zip(a[col], b[col]))
    assert ds.generate(out, force=True, max_cases=1, **kw) == 1
    assert len(ds.read_dataset(out)) == 1        # --force starts afresh


def test_sample_cases_are_stable_prefixes():
    a = ds.sample_cases(["x.json"], 3, seed=4)
    b = ds.sample_cases(["x.json"], 5, seed=4)
    assert a == b[:3] and len({c.key for c in b}) == 5


def test_network_shapes_decode_and_checkpoint_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    from predictors.model import (ARCHS, PredictorConfig, build_model, collate, decode, load_checkpoint,
                                  pool_tokens, save_checkpoint)

    feats = [np.random.default_rng(0).random((n, 17), dtype=np.float32) for n in (5, 300)]
    hw = [np.zeros(10, np.float32), np.ones(10, np.float32)]
    assert pool_tokens(feats[1], 128).shape == (128, 17)
    assert np.allclose(pool_tokens(feats[1], 128).mean(0), feats[1].mean(0), atol=0.02)
    for arch in ARCHS:
        cfg = PredictorConfig(arch=arch)
        model = build_model(cfg).eval()
        b = collate(feats, hw, cfg)
        rho_l, i_l = model(**b)
        assert rho_l.shape == (2, len(cfg.rho_grid)) and i_l.shape == (2, len(cfg.rho_grid), len(cfg.i_grid))
        out = decode(rho_l, i_l, cfg)
        assert all(r in cfg.rho_grid and i in cfg.i_grid for r, i in out)
        # padding does not change an entry's prediction
        alone = model(**collate(feats[:1], hw[:1], cfg))
        assert torch.allclose(alone[0], rho_l[:1], atol=1e-5)
        save_checkpoint(tmp_path / arch, model, cfg, {"note": "test"})
        assert set(torch.load(tmp_path / f"{arch}.pt", weights_only=True)) == set(model.state_dict())
        m2, cfg2, meta = load_checkpoint(tmp_path / arch)
        assert cfg2 == cfg and meta == {"note": "test"}
        assert torch.equal(m2(**b)[1], i_l)
    with pytest.raises(ValueError, match="unknown key"):
        PredictorConfig.from_dict({"arch": "transformer_lstm", "d_modle": 8})


def test_train_evaluate_and_predict(tiny_dataset, graph_specs, tmp_path):
    pytest.importorskip("torch")
    import predictors
    from predictors.evaluate import evaluate, format_table
    from predictors.train import TrainConfig, train

    stems = {}
    for arch in ("transformer_lstm", "pooled_mlp"):
        s = train(TrainConfig(arch=arch, data=str(tiny_dataset), out=str(tmp_path / arch), epochs=3), log=None)
        assert s["epochs_run"] == 3 and Path(s["checkpoint"]).exists()
        stems[arch] = tmp_path / arch
    meta = json.loads((tmp_path / "transformer_lstm.json").read_text())["meta"]
    assert meta["dataset"]["heldout_models"] == [graph_specs[-1]]
    assert meta["fixed_rule"]["rho_star"] in RHO_GRID

    doc = evaluate(None, checkpoint=stems["transformer_lstm"], mlp_checkpoint=stems["pooled_mlp"], data=tiny_dataset)
    assert [e["model"] for e in doc["per_model"]] == [graph_specs[-1]]  # default: the held-out models
    assert set(doc["regret_mean_by_method"]) == {"transformer_lstm", "pooled_mlp", "fixed", "heuristic"}
    for e in doc["per_model"]:
        assert e["cases"] == 2
        for m in doc["regret_mean_by_method"]:
            assert e[f"regret_{m}"] >= -1e-9  # the searched grid optimum is a lower bound for on-grid picks
    assert doc["regret_mean"] == pytest.approx(np.mean([e["regret"] for e in doc["per_model"]]))
    assert "mean" in format_table(doc)

    # an unseen model (not in the dataset) is searched on the spot
    unseen = tmp_path / "unseen.json"
    mixed(3).save(unseen)
    doc2 = evaluate([str(unseen)], checkpoint=stems["transformer_lstm"], mlp_checkpoint=stems["pooled_mlp"],
                    data=tiny_dataset, per_model=1)
    assert doc2["per_model"][0]["cases"] == 1

    g = mixed(4)
    rho, i = predictors.predict_thresholds(g, "orin-agx", "MAXN", "heavy", checkpoint=stems["transformer_lstm"])
    assert rho in RHO_GRID and i in ds.I_GRID


def test_predict_thresholds_falls_back_to_the_heuristic(tmp_path):
    import predictors
    from sparoa_env.costmodel import CostModel
    from sparoa_env.profile import load_profile
    from sparoa_env.thresholds import heuristic_thresholds

    g = mixed(4)
    with pytest.warns(RuntimeWarning, match="heuristic"):
        got = predictors.predict_thresholds(g, "orin-agx", "15W", checkpoint=tmp_path / "missing")
    assert got == heuristic_thresholds(g, CostModel(load_profile("orin-agx")).op_costs(g, "15W").nominal_ms)
    with pytest.raises(predictors.PredictorUnavailable):
        predictors.predict_thresholds(g, "orin-agx", "15W", checkpoint=tmp_path / "missing", fallback=False)


def test_command_line(tiny_dataset, graph_specs, tmp_path, capsys):
    pytest.importorskip("torch")
    import argparse

    from sparoa_env.commands import predictor as cmd

    parser = argparse.ArgumentParser()
    cmd.register(parser)
    out = tmp_path / "g.parquet"
    assert cmd.run(parser.parse_args(["generate", "--out", str(out), "--models", graph_specs[0],
                                      "--per-model", "1"])) == 0
    assert len(ds.read_dataset(out)) == 1
    stem = tmp_path / "ck"
    assert cmd.run(parser.parse_args(["train", "--arch", "transformer_lstm", "--data", str(tiny_dataset),
                                      "--out", str(stem), "--epochs", "1"])) == 0
    meta = json.loads(stem.with_suffix(".json").read_text())["meta"]
    assert meta["command"].startswith("sparoa predictor train --arch transformer_lstm --epochs 1")
    capsys.readouterr()
    assert cmd.run(parser.parse_args(["evaluate", "--checkpoint", str(stem), "--mlp-checkpoint", str(tmp_path / "none"),
                                      "--data", str(tiny_dataset), "--json"])) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"per_model", "regret_mean"} <= set(doc) and doc["per_model"][0]["model"] == graph_specs[-1]


def test_shipped_checkpoint_loads_and_predicts():
    pytest.importorskip("torch")
    import predictors
    from predictors.model import ThresholdPredictor

    stem = predictors.shipped_checkpoint()
    if not stem.with_suffix(".pt").exists():
        pytest.skip("no shipped checkpoint yet")
    pred = ThresholdPredictor.load(stem)
    assert pred.meta["command"].startswith("sparoa predictor train")
    rho, i = predictors.predict_thresholds(mixed(6), "orin-nano", "7W", "light", fallback=False)
    assert rho in RHO_GRID and i in ds.I_GRID


def test_import_predictors_and_sparoa_env_stay_torch_free():
    code = ("import sys, predictors, sparoa_env, gymnasium as gym; "
            "env = gym.make('SparOA-Orin-v0', model=__import__('synthetic').mixed(2)); env.reset(seed=0); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_env_observation_carries_predicted_thresholds(tmp_path):
    pytest.importorskip("torch")
    import gymnasium as gym

    import predictors
    import sparoa_env  # noqa: F401

    g = mixed(4)
    env = gym.make("SparOA-Orin-v0", model=g, thresholds="predicted", background="heavy", power_mode="15W").unwrapped
    obs, _ = env.reset(seed=0)
    th = env.thresholds_for("15W")
    if predictors.shipped_checkpoint().with_suffix(".pt").exists():
        assert th == predictors.predict_thresholds(g, env.profile, "15W", "heavy", fallback=False)
    cols = env.static_columns
    assert obs[cols.index("rho_star")] == pytest.approx(th[0])
    assert obs[cols.index("log_i_star")] == pytest.approx(np.log10(1 + th[1]) / 3)
    with pytest.raises(ValueError, match="predicted"):
        gym.make("SparOA-Orin-v0", model=g, thresholds="learned")


def test_fast_predict_path_matches_the_batched_network_on_heldout_cases():
    """``ThresholdPredictor.predict`` (the single-case fast path with its per-graph cache) gives the same
    (rho*, I*) as the batched module path (``collate`` + ``model`` + ``decode``) on every held-out case of
    the shipped dataset, for both shipped checkpoints, cached and uncached."""
    pytest.importorskip("torch")
    import predictors
    from predictors.model import ThresholdPredictor
    from sparoa_env.profile import load_profile

    if not Path(ds.DEFAULT_DATASET).exists():
        pytest.skip("no shipped dataset")
    rows = [r for r in ds.read_dataset(ds.DEFAULT_DATASET).to_dict("records") if r["split"] == "heldout"]
    assert rows
    profiles: dict = {}
    for arch in ("transformer_lstm", "pooled_mlp"):
        pred = predictors.load_predictor(predictors.shipped_checkpoint(arch))
        cold = ThresholdPredictor(pred.model, pred.cfg, pred.meta, cache_size=0)
        for row in rows:
            case = ds.case_of_row(row)
            prof = profiles.get(case.profile) or profiles.setdefault(case.profile, load_profile(case.profile))
            g = ds.load_case_graph(case.spec, case.batch)
            ops, hw = pred.features(g, prof, case.power_mode, case.background_value, case.energy_weight)
            want = pred.predict_features([ops], [hw])[0]
            for p in (pred, cold):
                got = p.predict(g, prof, case.power_mode, case.background_value, energy_weight=case.energy_weight)
                assert got == want, (arch, case)
            # the cached per-graph part is the same object on the next call, and keyed on the power mode
            assert pred.static(g, prof, case.power_mode) is pred.static(g, prof, case.power_mode)
        assert not cold._static


# ------------------------------------------------------------------------------------- refusals (bad input)

def _parser():
    import argparse

    from sparoa_env.commands import predictor as cmd

    parser = argparse.ArgumentParser()
    cmd.register(parser)
    return parser, cmd


def _cli(argv: list[str]) -> tuple[int, str]:
    """rc and stderr of ``sparoa predictor ARGV`` through the real entry point (one error line, rc 2)."""
    import contextlib
    import io

    from sparoa_env.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["predictor", *argv])
    return rc, err.getvalue()


def test_train_refuses_to_overwrite_without_force(tiny_dataset, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from predictors import train as tr

    parser, cmd = _parser()
    stem = tmp_path / "ck"
    argv = ["train", "--arch", "pooled_mlp", "--data", str(tiny_dataset), "--out", str(stem), "--epochs", "1"]
    assert cmd.run(parser.parse_args(argv)) == 0
    before = {p: p.read_bytes() for p in (stem.with_suffix(".pt"), stem.with_suffix(".json"))}
    called = []
    monkeypatch.setattr(tr, "read_dataset", lambda *a, **k: called.append(1))  # refused before any training
    with pytest.raises(FileExistsError, match="--force"):
        cmd.run(parser.parse_args(argv))
    assert not called and {p: p.read_bytes() for p in before} == before
    stem.with_suffix(".pt").unlink()  # one file left over is protected too
    with pytest.raises(FileExistsError, match="ck.json"):
        cmd.run(parser.parse_args(argv))
    monkeypatch.undo()
    assert cmd.run(parser.parse_args(argv + ["--force"])) == 0
    meta = json.loads(stem.with_suffix(".json").read_text())["meta"]
    assert meta["command"].endswith("--force") and stem.with_suffix(".pt").exists()
    # the API refuses as well
    with pytest.raises(FileExistsError):
        tr.train(tr.TrainConfig(arch="pooled_mlp", data=str(tiny_dataset), out=str(stem), epochs=1), log=None)


def test_train_without_out_needs_force_for_the_shipped_checkpoints(tiny_dataset, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from predictors import train as tr

    fake = tmp_path / "shipped"  # stands in for sparoa_env/data/predictor: the real files are never touched
    fake.mkdir()
    monkeypatch.setattr(tr, "CHECKPOINT_DIR", fake)
    for name in ("pooled_mlp.pt", "pooled_mlp.json"):
        (fake / name).write_text("shipped")
    parser, cmd = _parser()
    argv = ["train", "--arch", "both", "--data", str(tiny_dataset), "--epochs", "1"]
    with pytest.raises(FileExistsError, match="shipped checkpoint.*--force"):
        cmd.run(parser.parse_args(argv))
    # checked for every arch before training the first one
    assert sorted(p.name for p in fake.iterdir()) == ["pooled_mlp.json", "pooled_mlp.pt"]
    assert (fake / "pooled_mlp.pt").read_text() == "shipped"
    assert cmd.run(parser.parse_args(argv + ["--force"])) == 0
    assert (fake / "pooled_mlp.pt").read_bytes() != b"shipped" and (fake / "threshold_predictor.pt").exists()
    assert "--force" in json.loads((fake / "pooled_mlp.json").read_text())["meta"]["command"]


@pytest.mark.parametrize("argv, match", [
    (["--epochs", "0"], "--epochs must be a positive integer, got 0"),
    (["--epochs", "-1"], "--epochs must be a positive integer, got -1"),
    (["--threads", "0"], "--threads must be a positive integer, got 0"),
    (["--out", ""], "--out is empty"),
])
def test_train_rejects_bad_options(argv, match, tmp_path):
    rc, err = _cli(["train", "--arch", "pooled_mlp", "--out", str(tmp_path / "ck"), *argv])
    assert rc == 2 and match in err and err.startswith("sparoa predictor: error:"), err
    assert not list(tmp_path.iterdir())


def test_train_validates_val_models_and_data(tiny_dataset, graph_specs, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "ck"
    base = ["train", "--arch", "pooled_mlp", "--epochs", "1", "--out", str(out)]
    rc, err = _cli(base + ["--data", str(tiny_dataset), "--val-models", "foo"])
    assert rc == 2 and "--val-models" in err and "'foo'" in err and graph_specs[0] in err, err
    rc, err = _cli(base + ["--data", str(tiny_dataset), "--val-models", graph_specs[-1]])  # held out
    assert rc == 2 and "held out" in err, err
    bad = tmp_path / "bad.parquet"
    bad.write_text("junk")
    rc, err = _cli(base + ["--data", str(bad)])
    assert rc == 2 and str(bad) in err and "Parquet" in err, err
    rc, err = _cli(base + ["--data", str(tmp_path / "missing.parquet")])
    assert rc == 2 and "missing.parquet" in err, err
    import pandas as pd

    other = tmp_path / "other.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(other)
    rc, err = _cli(base + ["--data", str(other)])
    assert rc == 2 and str(other) in err and "case_key" in err, err
    assert not out.with_suffix(".pt").exists() and not out.with_suffix(".json").exists()
    from predictors.train import TrainConfig

    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="threads"):
        TrainConfig(threads=0)


@pytest.fixture(scope="module")
def tiny_checkpoints(tiny_dataset, tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("torch")
    from predictors.train import TrainConfig, train

    d = tmp_path_factory.mktemp("ck")
    for arch in ("transformer_lstm", "pooled_mlp"):
        train(TrainConfig(arch=arch, data=str(tiny_dataset), out=str(d / arch), epochs=1), log=None)
    return {a: d / a for a in ("transformer_lstm", "pooled_mlp")}


def test_evaluate_rejects_bad_options(tiny_dataset, tiny_checkpoints, tmp_path):
    ck, mlp = str(tiny_checkpoints["transformer_lstm"]), str(tiny_checkpoints["pooled_mlp"])
    common = ["--data", str(tiny_dataset), "--json"]
    rc, err = _cli(["evaluate", "--checkpoint", str(tmp_path / "nope"), *common])
    assert rc == 2 and "--checkpoint" in err and str(tmp_path / "nope.pt") in err, err
    for n in ("0", "-2"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "Mean of empty slice"
            rc, err = _cli(["evaluate", "--checkpoint", ck, "--mlp-checkpoint", mlp, "--per-model", n, *common])
        assert rc == 2 and f"--per-model must be a positive integer, got {n}" in err, err
    # a checkpoint of the other architecture is refused, not labelled transformer_lstm
    rc, err = _cli(["evaluate", "--checkpoint", mlp, "--mlp-checkpoint", mlp, *common])
    assert rc == 2 and "pooled_mlp checkpoint" in err and "--mlp-checkpoint" in err, err
    rc, err = _cli(["evaluate", "--checkpoint", ck, "--mlp-checkpoint", ck, *common])
    assert rc == 2 and "transformer_lstm checkpoint" in err, err
    rc, err = _cli(["evaluate", "--checkpoint", ck, "--data", str(tmp_path / "none.parquet")])
    assert rc == 2 and "--data" in err and "none.parquet" in err, err
    from predictors.evaluate import evaluate

    with pytest.raises(ValueError, match="--models"):
        evaluate([], checkpoint=ck, mlp_checkpoint=mlp, data=tiny_dataset)
    # a corrupt checkpoint names its file
    bad = tmp_path / "bad"
    bad.with_suffix(".json").write_text("{not json")
    bad.with_suffix(".pt").write_bytes(b"junk")
    rc, err = _cli(["evaluate", "--checkpoint", str(bad), *common])
    assert rc == 2 and "bad.json" in err, err


def test_readme_predictor_line_matches_the_cli():
    """Every option the README's `sparoa predictor` line shows for an action is accepted by that action."""
    import re

    line = next(ln for ln in (ROOT / "README.md").read_text().splitlines() if ln.startswith("sparoa predictor "))
    parser, _ = _parser()
    sub = next(a for a in parser._actions if a.dest == "predictor_command")
    for part in line[len("sparoa predictor "):].split(" | "):
        action, *rest = part.split()
        opts = set(sub.choices[action]._option_string_actions)
        for opt in re.findall(r"--[a-z-]+", " ".join(rest)):
            assert opt in opts, (action, opt)
