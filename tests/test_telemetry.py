"""Telemetry: every source missing is reported, never a crash; RAPL counters unwrap; timing helpers."""

from __future__ import annotations

import json
import math
import os
import sys
import types

import pytest

from sparoa_env.hw import telemetry as tm
from sparoa_env.hw.telemetry import RaplReader, Telemetry
from sparoa_env.hw.timing import measure, percentiles, summarize, thread_settings, time_call

torch = pytest.importorskip("torch")


def test_sample_on_this_machine_is_complete_and_serialisable():
    with Telemetry() as t:
        s = t.sample()
        av = t.availability()
    assert set(s["available"]) == {"psutil", "nvml", "jtop", "rapl"}
    assert set(av) == set(s["available"])
    for src, ok in s["available"].items():
        assert ok or s["reasons"][src]  # an unavailable source always says why
    assert s["available"]["psutil"]
    assert all(0.0 <= u <= 1.0 for u in s["cpu"]["util_percpu"])
    assert set(s["energy_mj"]) == {"rapl", "nvml"}
    json.dumps(s)


def test_nvml_library_missing_is_unavailable(monkeypatch):
    pynvml = pytest.importorskip("pynvml")

    def boom():
        raise pynvml.NVMLError_LibraryNotFound(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", boom)
    t = Telemetry(use_jtop=False, use_rapl=False)
    assert not t.available["nvml"] and "LibraryNotFound" in t.reasons["nvml"]
    assert t.sample()["gpus"] == []


def test_nvml_readings_through_a_fake_library(monkeypatch):
    fake = types.SimpleNamespace(
        NVML_CLOCK_SM=1, NVML_CLOCK_MEM=2, NVML_TEMPERATURE_GPU=0,
        nvmlInit=lambda: None, nvmlShutdown=lambda: None, nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=40, memory=10),
        nvmlDeviceGetClockInfo=lambda h, k: 900 if k == 1 else 5000,
        nvmlDeviceGetMaxClockInfo=lambda h, k: 1800,
        nvmlDeviceGetPowerUsage=lambda h: 35000,
        nvmlDeviceGetTotalEnergyConsumption=lambda h: 123456,
        nvmlDeviceGetTemperature=lambda h, k: 61,
        nvmlDeviceGetMemoryInfo=lambda h: (_ for _ in ()).throw(RuntimeError("not supported")),
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    t = Telemetry(use_jtop=False, use_rapl=False)
    s = t.sample()
    g = s["gpus"][0]
    assert g["util"] == pytest.approx(0.4) and g["sm_clock_mhz"] / g["max_sm_clock_mhz"] == pytest.approx(0.5)
    assert g["power_w"] == pytest.approx(35.0) and g["mem_used_frac"] is None  # a failing reading is None
    assert s["energy_mj"]["nvml"] == pytest.approx(123456.0) and s["temperature_c"] >= 61
    t.close()


def test_jtop_service_missing_is_unavailable(monkeypatch):
    class JtopException(Exception):
        pass

    class Broken:
        def start(self):
            raise JtopException("The jtop.service is not active")

    monkeypatch.setitem(sys.modules, "jtop", types.SimpleNamespace(jtop=Broken, JtopException=JtopException))
    monkeypatch.setattr(tm, "is_jetson", lambda: True)
    t = Telemetry(use_nvml=False, use_rapl=False)
    assert not t.available["jtop"] and "jtop.service" in t.reasons["jtop"]

    class OsBroken:
        def start(self):
            raise PermissionError(13, "Permission denied")

    monkeypatch.setitem(sys.modules, "jtop", types.SimpleNamespace(jtop=OsBroken, JtopException=JtopException))
    t = Telemetry(use_nvml=False, use_rapl=False)
    assert not t.available["jtop"] and "Permission" in t.reasons["jtop"]


def test_jtop_off_a_jetson_is_not_imported(monkeypatch):
    monkeypatch.setattr(tm, "is_jetson", lambda: False)
    monkeypatch.setitem(sys.modules, "jtop", None)  # importing it would raise
    t = Telemetry(use_nvml=False, use_rapl=False)
    assert t.reasons["jtop"].startswith("not a Jetson")


def _zone(root, name, energy_uj, max_uj=1000):
    z = root / name
    z.mkdir()
    (z / "energy_uj").write_text(f"{energy_uj}\n")
    (z / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return z


def test_rapl_counts_and_unwraps(tmp_path):
    z0 = _zone(tmp_path, "intel-rapl:0", 900)
    _zone(tmp_path, "intel-rapl:0:0", 5)  # a sub-zone: inside the package, not counted again
    z1 = _zone(tmp_path, "intel-rapl:1", 100)
    r = RaplReader(tmp_path)
    assert r.available and len(r.zones) == 2
    (z0 / "energy_uj").write_text("100\n")  # wrapped: +200 uJ
    (z1 / "energy_uj").write_text("400\n")  # +300 uJ
    assert r.read_mj() == pytest.approx(0.5)
    (z0 / "energy_uj").write_text("300\n")  # +200 uJ
    assert r.read_mj() == pytest.approx(0.7)


def test_rapl_missing_or_unreadable(tmp_path):
    assert not RaplReader(tmp_path / "none").available
    z = _zone(tmp_path, "intel-rapl:0", 1)
    (z / "energy_uj").unlink()
    (z / "energy_uj").mkdir()  # reading a directory fails like a root-only file does
    r = RaplReader(tmp_path)
    assert not r.available and "not readable" in r.reason and r.read_mj() is None
    t = Telemetry(use_nvml=False, use_jtop=False, rapl_root=tmp_path)
    assert not t.available["rapl"] and t.energy_mj()["rapl"] is None


def test_percentiles_and_summary():
    xs = [float(i) for i in range(1, 101)]
    assert percentiles(xs, (0, 50, 100)) == [1.0, 50.5, 100.0]
    s = summarize(xs)
    assert s.median_ms == pytest.approx(50.5) and s.p10_ms == pytest.approx(10.9) and s.n == 100
    assert math.isnan(percentiles([], (50,))[0])
    with pytest.raises(ValueError):
        summarize([])


def test_measure_and_time_call_on_cpu():
    calls = []
    s = measure(lambda: calls.append(1), warmup=2, repeats=5)
    assert s.n == 5 and len(calls) == 7 and s.min_ms <= s.median_ms <= s.max_ms
    out, ms = time_call(lambda: 42)
    assert out == 42 and ms >= 0.0
    with pytest.raises(ValueError):
        measure(lambda: None, repeats=0)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")
def test_thread_settings_restore():
    before_cores, before_threads = os.sched_getaffinity(0), torch.get_num_threads()
    core = min(before_cores)
    with thread_settings(1, [core]):
        assert os.sched_getaffinity(0) == {core} and torch.get_num_threads() == 1
    assert os.sched_getaffinity(0) == before_cores and torch.get_num_threads() == before_threads


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_event_timing():
    x = torch.randn(1024, 1024, device="cuda")
    s = measure(lambda: x @ x, device="cuda", warmup=2, repeats=5)
    assert s.n == 5 and s.median_ms > 0
