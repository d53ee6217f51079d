"""Commands that write results refuse to overwrite what is there unless --force, before any long work."""

from __future__ import annotations

import pytest

from sparoa_env import cli


def _err(capsys) -> str:
    return capsys.readouterr().err


def test_plan_refuses_an_existing_out(tmp_path, capsys):
    out = tmp_path / "plan.json"
    out.write_text('{"recorded": true}\n')
    assert cli.main(["plan", "--policy", str(tmp_path / "no-policy"), "--out", str(out)]) == 2
    assert f"{out} exists; pass --force" in _err(capsys)
    assert out.read_text() == '{"recorded": true}\n'


@pytest.mark.parametrize("name", ["suite.json", "suite.txt", "suite_speedup.png"])
def test_scenarios_refuses_a_directory_with_a_suite(tmp_path, capsys, name):
    (tmp_path / name).write_text("recorded\n")
    assert cli.main(["scenarios", "--only", "MAXN/static", "--episodes", "1", "--out", str(tmp_path)]) == 2
    err = _err(capsys)
    assert f"{tmp_path} holds a scenario suite already ({name})" in err and "--force" in err
    assert (tmp_path / name).read_text() == "recorded\n"


def test_demo_refuses_a_directory_with_a_demo_run(tmp_path, capsys):
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "config.json").write_text("old\n")
    (tmp_path / "table.txt").write_text("old\n")
    assert cli.main(["demo", "--quick", "--out", str(tmp_path)]) == 2
    err = _err(capsys)
    assert f"{tmp_path} holds a demo run already (policy, table.txt)" in err and "--force" in err
    assert (tmp_path / "table.txt").read_text() == "old\n"
    assert (tmp_path / "policy" / "config.json").read_text() == "old\n"
