"""SoC profiles: shipped files load, validation names the field and the value, round trips are exact."""

from __future__ import annotations

import argparse
import copy
import json

import pytest

from sparoa_env.profile import (PROFILE_DIR, ProfileError, SocProfile, available_profiles, load_profile,
                                profile_from_dict)

SHIPPED = ("orin-agx", "orin-nano", "intel-core-ultra")


def raw(name: str = "orin-agx") -> dict:
    return json.loads((PROFILE_DIR / f"{name}.json").read_text())


def error_of(d: dict, source: str = "<dict>") -> str:
    with pytest.raises(ProfileError) as e:
        profile_from_dict(d, source=source)
    return str(e.value)


# ------------------------------------------------------------------------------------------ shipped
def test_available_profiles_lists_the_shipped_ones():
    assert set(SHIPPED) <= set(available_profiles())


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_profile_loads_and_says_it_is_spec_derived(name):
    p = load_profile(name)
    assert isinstance(p, SocProfile) and p.name == name
    assert p.provenance.startswith("spec-derived:")
    assert not p.is_measured
    assert "not measured" in p.description
    kinds = [x.kind for x in p.processors]
    assert kinds[:2] == ["cpu", "gpu"] and p.processor_names[0] == "cpu"
    assert p.default_power_mode in p.power_modes
    for proc in p.processors:  # every field has a source, every curve too
        assert "launch_overhead_us" in proc.sources and all(c.source for c in proc.sparsity.values())


def test_orin_agx_matches_the_spec_sheet():
    p = load_profile("orin-agx")
    cpu, gpu = p.processors
    assert (cpu.cores, gpu.cores * 128) == (12, 2048)
    assert gpu.peak_gflops == pytest.approx(5300, rel=0.01)
    assert p.memory.dram_bw_gbps == 204.8
    assert set(p.power_modes) == {"MAXN", "15W", "30W", "50W"}
    m15 = p.mode("15W")
    assert m15.cores["cpu"] == 4 and m15.max_freq_mhz["cpu"] <= 1110 * 1.01 and m15.max_freq_mhz["gpu"] <= 408
    assert p.mode("30W").cores["cpu"] == 8 and p.mode("50W").max_freq_mhz["gpu"] == 816
    nano = load_profile("orin-nano")
    assert set(nano.power_modes) == {"7W", "15W"} and nano.memory.dram_bw_gbps == 68
    assert load_profile("intel-core-ultra").processor_names == ("cpu", "gpu", "npu")


def test_load_by_path_and_unknown_name(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(raw()))
    assert load_profile(str(path)).name == "orin-agx"
    with pytest.raises(ProfileError, match="unknown profile 'orin-agx-typo'.*orin-agx"):
        load_profile("orin-agx-typo")


# ------------------------------------------------------------------------------------------ round trip
@pytest.mark.parametrize("name", SHIPPED)
def test_round_trip_to_dict_from_dict(name, tmp_path):
    p = load_profile(name)
    d = p.to_dict()
    assert d == raw(name)                      # the file is exactly what to_dict writes
    q = profile_from_dict(copy.deepcopy(d))
    assert q == p and q.to_dict() == d
    p.save(tmp_path / "p.json")
    assert load_profile(str(tmp_path / "p.json")) == p


def test_a_calibrated_profile_can_say_it_is_measured():
    d = raw()
    d["provenance"] = "measured:trace-2025-01-orin-01"
    assert profile_from_dict(d).is_measured


# ------------------------------------------------------------------------------------------ validation
def test_missing_field_is_named_with_its_path(tmp_path):
    d = raw()
    del d["processors"][1]["launch_overhead_us"]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ProfileError) as e:
        load_profile(str(path))
    msg = str(e.value)
    assert str(path) in msg and "missing field processors.gpu.launch_overhead_us" in msg


def test_unknown_keys_are_rejected_at_every_level():
    d = raw()
    d["processors"][0]["launch_overhead_ms"] = 3
    msg = error_of(d)
    assert "processors.cpu" in msg and "launch_overhead_ms" in msg and "unknown" in msg
    d = raw()
    d["colour"] = "green"
    assert "unknown field(s) ['colour']" in error_of(d)
    d = raw()
    d["power_modes"]["MAXN"]["gpu_tpc"] = 8
    assert "power_modes.MAXN" in error_of(d) and "gpu_tpc" in error_of(d)
    d = raw()
    d["processors"][1]["sparsity"]["2:4"]["min_chanels"] = 3
    msg = error_of(d)
    assert "processors.gpu.sparsity.2:4" in msg and "min_chanels" in msg
    d = raw()
    d["thermal"]["sources"]["fan_rpm"] = "assumption: x"
    assert "thermal.sources" in error_of(d) and "fan_rpm" in error_of(d)


def test_negative_value_names_field_and_value():
    d = raw()
    d["processors"][1]["launch_overhead_us"] = -12.5
    msg = error_of(d, source="orin-agx.json")
    assert msg.startswith("orin-agx.json: processors.gpu.launch_overhead_us must be >= 0")
    assert "-12.5" in msg
    d = raw()
    d["memory"]["dram_bw_gbps"] = 0
    assert "memory.dram_bw_gbps must be > 0, got 0" in error_of(d)
    d = raw()
    d["processors"][0]["op_efficiency"]["aten.convolution"] = 1.5
    assert "processors.cpu.op_efficiency.aten.convolution must be <= 1, got 1.5" in error_of(d)


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["processors"][0].__setitem__("cores", "twelve"), "processors.cpu.cores must be an integer, got 'twelve'"),
    (lambda d: d["processors"][1].__setitem__("kind", "tpu"), "processors.gpu.kind must be one of"),
    (lambda d: d["power_modes"]["15W"]["cores"].__setitem__("cpu", 16), "power_modes.15W.cores.cpu must be <= 12, got 16"),
    (lambda d: d["power_modes"]["15W"]["max_freq_mhz"].__setitem__("gpu", 2000.0), "power_modes.15W.max_freq_mhz.gpu must be <= 1300"),
    (lambda d: d["power_modes"]["30W"]["cores"].pop("gpu"), "power_modes.30W.cores must give every processor"),
    (lambda d: d.__setitem__("default_power_mode", "60W"), "default_power_mode must be one of the power modes"),
    (lambda d: d.__setitem__("provenance", "made up"), "provenance must be 'spec-derived:<sources>'"),
    (lambda d: d["processors"].reverse(), "lane order must be cpu first"),
    (lambda d: d["processors"][0]["sparsity"]["unstructured"].__setitem__("rho", [0.0, 0.9, 0.8, 0.95, 0.99, 1.0]),
     "processors.cpu.sparsity.unstructured.rho must be strictly increasing"),
    (lambda d: d["processors"][0]["sparsity"].pop("2:4"), "processors.cpu.sparsity must have exactly one curve per pattern"),
    (lambda d: d["processors"][0]["dtype_speedup"].pop("int8"), "processors.cpu.dtype_speedup must give exactly the dtypes"),
    (lambda d: d["processors"][1]["op_efficiency"].pop("default"), "processors.gpu.op_efficiency must have a 'default' entry"),
    (lambda d: d["processors"][1]["sources"].pop("mem_bw_frac"), "processors.gpu.sources: no source for field(s) ['mem_bw_frac']"),
    (lambda d: d["processors"][1]["sources"].__setitem__("mem_bw_frac", "I think so"),
     "processors.gpu.sources.mem_bw_frac must cite a reference id"),
    (lambda d: d["memory"]["sources"].__setitem__("capacity_gb", "[nowhere] p. 3"), "cites unknown reference id(s) ['nowhere']"),
    (lambda d: d["thermal"].__setitem__("throttle_full_c", 50.0), "thermal.throttle_full_c must be above throttle_start_c"),
    (lambda d: d["transfer"].__setitem__("kind", "nvlink"), "transfer.kind must be one of ['unified', 'pcie'], got 'nvlink'"),
    (lambda d: d["processors"][0].__setitem__("async_dispatch", "no"), "processors.cpu.async_dispatch must be true or false"),
    (lambda d: d["processors"][1].__setitem__("peak_gflops", float("nan")), "processors.gpu.peak_gflops must be a finite number"),
])
def test_bad_values_are_named(mutate, expected):
    d = raw()
    mutate(d)
    assert expected in error_of(d)


def test_bad_mode_name_lists_the_valid_modes():
    p = load_profile("orin-agx")
    with pytest.raises(ProfileError, match=r"no power mode '60W'; valid modes: MAXN, 15W, 30W, 50W"):
        p.mode("60W")
    from sparoa_env.costmodel import CostModel

    with pytest.raises(ProfileError, match="valid modes"):
        CostModel(p).speed_factor(0, "60W")


def test_invalid_json_names_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ProfileError, match="bad.json: not valid JSON"):
        load_profile(str(path))


# ------------------------------------------------------------------------------------------ CLI
def _cli(argv):
    from sparoa_env.commands import profiles

    parser = argparse.ArgumentParser()
    profiles.register(parser)
    return profiles.run(parser.parse_args(argv))


def test_cli_lists_profiles_with_provenance(capsys):
    assert _cli([]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        assert name in out
    assert "spec-derived:" in out and "MAXN*" in out
    assert _cli(["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    agx = next(r for r in rows if r["name"] == "orin-agx")
    assert agx["processors"] == ["cpu:cpu", "gpu:gpu"] and agx["power_modes"] == ["MAXN", "15W", "30W", "50W"]


def test_cli_shows_one_profile_with_sources(capsys):
    assert _cli(["orin-agx"]) == 0
    out = capsys.readouterr().out
    assert "provenance: spec-derived:" in out
    assert "processors.gpu.launch_overhead_us: assumption:" in out and "[ds-agx-orin]" in out
    assert _cli(["orin-nano", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == raw("orin-nano")
    with pytest.raises(ProfileError):
        _cli(["no-such-soc"])


def test_cache_and_elementwise_table_fields_are_validated():
    d = raw()
    d["processors"][0]["aux_op_efficiency"]["default"] = 0.2
    assert "processors.cpu.aux_op_efficiency" in error_of(d) and "'default'" in error_of(d)
    d = raw()
    d["processors"][1]["aux_op_efficiency"]["aten.gelu"] = 1.5
    assert "processors.gpu.aux_op_efficiency.aten.gelu" in error_of(d)
    d = raw()
    d["processors"][0]["cache_mb"] = -1
    assert "processors.cpu.cache_mb" in error_of(d)
    d = raw()
    d["processors"][0]["cache_bw_gbps"] = 0
    assert "processors.cpu.cache_bw_gbps" in error_of(d)
    d = raw()
    del d["processors"][0]["sources"]["cache_mb"]
    assert "cache_mb" in error_of(d)
    for name in SHIPPED:   # every shipped processor states its cache and the table, with a source
        for p in load_profile(name).processors:
            assert p.cache_mb >= 0 and p.cache_bw_gbps > 0
            assert {"cache_mb", "cache_bw_gbps", "aux_op_efficiency"} <= set(p.sources)
