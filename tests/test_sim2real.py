"""`sparoa sim2real`: argument handling, kwarg routing, the hw fine-tune search, and one tiny end-to-end run
on the CPU-only host (two CPU core groups)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("tianshou")

from agents.sim2real import Sim2RealArgs, _perturb, prepare_out, reward_scale, split_kwargs  # noqa: E402
from sparoa_env.cli import build_parser, main as cli_main  # noqa: E402

MODEL = "tests/models_unseen.py:residual_cnn"


def test_cli_arguments_reach_the_command():
    ns = build_parser().parse_args(["sim2real", "--out", "x", "--model", MODEL, "--steps", "7", "--hw-steps", "9",
                                    "--episodes", "3", "--set", 'device_map={"cpu0": "cpu:0", "cpu1": "cpu:1"}',
                                    "--hw-set", "repeats=2", "--force", "--json"])
    assert (ns.steps, ns.hw_steps, ns.episodes, ns.force, ns.json, ns.model) == (7, 9, 3, True, True, MODEL)
    assert ns.hw_env == "SparOA-Host-hw-v0" and ns.sim_env == "SparOA-Host-v0"


def test_out_is_required():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sim2real"])


def test_refuses_a_non_empty_out_without_force(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("x")
    assert cli_main(["sim2real", "--out", str(tmp_path), "--steps", "10"]) == 2
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").exists()
    (tmp_path / "sim2real.json").write_text("{}")
    (tmp_path / "policy").mkdir()
    prepare_out(tmp_path, force=True)  # removes only what sim2real writes
    assert (tmp_path / "keep.txt").exists() and not (tmp_path / "sim2real.json").exists()
    assert not (tmp_path / "policy").exists()


def test_force_with_a_bad_model_keeps_the_results_there(tmp_path, capsys):
    (tmp_path / "sim2real.json").write_text('{"recorded": true}')
    (tmp_path / "plan_before.json").write_text("{}")
    assert cli_main(["sim2real", "--model", "resnet5O", "--force", "--out", str(tmp_path), "--steps", "10"]) == 2
    assert "unknown zoo model 'resnet5O'" in capsys.readouterr().err
    assert (tmp_path / "sim2real.json").read_text() == '{"recorded": true}' and (tmp_path / "plan_before.json").exists()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="episodes"):
        Sim2RealArgs(episodes=0)
    with pytest.raises(ValueError, match="hw-steps"):
        Sim2RealArgs(hw_steps=-1)


def test_hw_options_go_to_the_hw_env_only():
    a = Sim2RealArgs(model=MODEL, common={"device_map": {"cpu": "cpu", "gpu": "cuda:0"}, "background": "none"},
                     hw_set={"repeats": 2}, sim_set={"energy_weight": 0.1}, hw_env="SparOA-Orin-v0",
                     sim_env="SparOA-Orin-v0")
    sim_kw, hw_kw = split_kwargs(a)
    assert sim_kw == {"model": MODEL, "background": "none", "energy_weight": 0.1}
    assert hw_kw["device_map"] == {"cpu": "cpu", "gpu": "cuda:0"} and hw_kw["repeats"] == 2
    assert hw_kw["backend"] == "hw"  # a sim registration measured on hardware
    _, hw_kw = split_kwargs(Sim2RealArgs(model=MODEL))
    assert "backend" not in hw_kw  # SparOA-Host-hw-v0 is a hw registration already


def test_perturb_moves_one_block_to_another_lane():
    rng = np.random.default_rng(0)
    lanes = np.zeros(20, dtype=np.int64)
    for _ in range(50):
        new = _perturb(lanes, 2, rng)
        changed = np.flatnonzero(new != lanes)
        assert 1 <= len(changed) <= 4 and np.all(np.diff(changed) == 1)
        assert np.all(new[changed] == 1)


def test_reward_scale_on_a_cpu_only_profile():
    import gymnasium as gym

    import sparoa_env.envs  # noqa: F401

    env = gym.make("SparOA-Host-v0", model=MODEL)
    s = reward_scale(env)
    assert np.isfinite(s) and s > 0


@pytest.mark.slow
def test_end_to_end_on_the_two_lane_cpu_host(tmp_path, capsys):
    out = tmp_path / "s2r"
    rc = cli_main(["sim2real", "--model", MODEL, "--steps", "300", "--bc-steps", "200", "--workers", "2",
                   "--hw-steps", "400", "--repeats", "2", "--episodes", "2", "--out", str(out), "--json"])
    assert rc == 0
    r = json.loads(capsys.readouterr().out)
    assert r == json.loads((out / "sim2real.json").read_text())
    assert r["seeds"] == [1000, 1001] and r["processors"] == ["cpu0", "cpu1"]
    assert r["device_map"] == {"cpu0": "cpu:0", "cpu1": "cpu:1"}
    for stage in ("before_first", "before", "after", "reference_lane0"):
        s = r[stage]
        assert len(s["measured_ms"]) == len(s["predicted_ms"]) == 2
        assert all(x > 0 for x in s["measured_ms"] + s["predicted_ms"])
    f = r["finetune"]
    assert f["steps_used"] <= 400 and f["candidates"] >= 1
    for name in ("plan_before.json", "plan_after.json", "policy/policy.pt", "policy/config.json"):
        assert (out / name).exists()
    from agents.sim2real import format_report

    assert "sim-predicted" in format_report(r)
    # the same directory again: refused without --force
    assert cli_main(["sim2real", "--model", MODEL, "--out", str(out)]) == 2
