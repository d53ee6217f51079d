"""Hardware telemetry from whatever this machine offers; a missing source is reported, never a crash.

Sources (each read defensively; :meth:`Telemetry.availability` says which ones answered and why not):

=========  ==========================================================================================
``psutil``  per-core CPU utilisation (since the previous sample), per-core clocks and their maxima where
            the kernel exposes them, load average, memory, temperatures where sensors exist
``nvml``    (``pynvml`` from nvidia-ml-py) per GPU: utilisation, SM / memory clocks and their maxima,
            power draw, the total-energy counter (mJ, Volta and newer), temperature, memory in use.
            ``NVMLError_LibraryNotFound`` (no driver) and every other NVML error mean "unavailable".
``jtop``    (jetson-stats) on a Jetson only: nvpmodel power mode, CPU / GPU clocks, GPU load, power
            rails and total board power, temperatures. Off a Jetson (no ``/etc/nv_tegra_release``)
            it is not even imported; ``JtopException`` / ``OSError`` (no jtop service) mean unavailable.
``rapl``    Intel / AMD RAPL package energy counters, ``/sys/class/powercap/intel-rapl:N/energy_uj``, where
            readable (root-only on Linux >= 5.10), with wrap-around handled.
=========  ==========================================================================================

:meth:`Telemetry.sample` returns a plain dict (JSON-serialisable)::

    {"time_unix": ..., "available": {"psutil": True, "nvml": False, ...},
     "reasons": {"nvml": "NVMLError_LibraryNotFound: NVML Shared Library Not Found", ...},
     "cpu": {"util_percpu": [...], "freq_mhz_percpu": [...], "max_freq_mhz_percpu": [...], ...},
     "gpus": [{"util": 0.3, "sm_clock_mhz": ..., "max_sm_clock_mhz": ..., "power_w": ..., ...}],
     "jetson": {"power_mode": "MAXN", "power_w": ..., "rails": {...}, ...} | None,
     "energy_mj": {"rapl": ..., "nvml": ..., "jetson": ...},     # cumulative counters, None if absent
     "temperature_c": float | None, "power_mode": str | None}

:meth:`Telemetry.energy_mj` reads the cumulative energy counters only (cheap) for interval energy.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["Telemetry", "RaplReader", "is_jetson"]

RAPL_ROOT = Path("/sys/class/powercap")


def is_jetson() -> bool:
    if Path("/etc/nv_tegra_release").exists():
        return True
    try:
        return "jetson" in Path("/proc/device-tree/model").read_text(errors="ignore").lower()
    except OSError:
        return False


def _reason(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


class RaplReader:
    """Package-level RAPL energy counters under ``root`` (zones ``intel-rapl:N``, not their sub-zones,
    which the package already contains). Keeps the last raw value per zone to unwrap the counter."""

    def __init__(self, root: Path | str = RAPL_ROOT) -> None:
        self.root = Path(root)
        self.zones: list[tuple[Path, float]] = []
        self.reason = ""
        self._last: dict[Path, float] = {}
        self._acc: dict[Path, float] = {}
        if not self.root.is_dir():
            self.reason = f"no {self.root} (no RAPL powercap interface on this machine)"
            return
        zones = sorted(p for p in self.root.glob("intel-rapl:*") if p.name.count(":") == 1)
        if not zones:
            self.reason = f"no package zones intel-rapl:N under {self.root}"
            return
        errors = []
        for z in zones:
            try:
                rng = float((z / "max_energy_range_uj").read_text().strip()) if (z / "max_energy_range_uj").exists() else 2.0 ** 32
                val = float((z / "energy_uj").read_text().strip())
            except (OSError, ValueError) as e:
                errors.append(f"{z.name}: {_reason(e)}")
                continue
            self.zones.append((z, rng))
            self._last[z] = val
            self._acc[z] = 0.0
        if not self.zones:
            self.reason = "RAPL counters not readable (" + "; ".join(errors) + "); reading them needs root on Linux >= 5.10"

    @property
    def available(self) -> bool:
        return bool(self.zones)

    def read_mj(self) -> float | None:
        """Energy since this reader was created, all packages, mJ (None if unreadable)."""
        if not self.zones:
            return None
        total = 0.0
        for z, rng in self.zones:
            try:
                val = float((z / "energy_uj").read_text().strip())
            except (OSError, ValueError):
                return None
            d = val - self._last[z]
            if d < 0:  # the counter wrapped
                d += rng
            self._last[z] = val
            self._acc[z] += d
            total += self._acc[z]
        return total / 1000.0


class Telemetry:
    """Samples the sources in the module docstring. Cheap to construct; close() releases NVML / jtop."""

    def __init__(self, *, use_nvml: bool = True, use_jtop: bool = True, use_rapl: bool = True,
                 rapl_root: Path | str = RAPL_ROOT) -> None:
        self.available: dict[str, bool] = {}
        self.reasons: dict[str, str] = {}
        self._psutil = None
        self._nvml = None
        self._nvml_handles: list[Any] = []
        self._jtop = None
        self._rapl: RaplReader | None = None
        self._init_psutil()
        if use_nvml:
            self._init_nvml()
        else:
            self._off("nvml", "disabled")
        if use_jtop:
            self._init_jtop()
        else:
            self._off("jtop", "disabled")
        if use_rapl:
            self._rapl = RaplReader(rapl_root)
            self.available["rapl"] = self._rapl.available
            if not self._rapl.available:
                self.reasons["rapl"] = self._rapl.reason
        else:
            self._off("rapl", "disabled")

    def _off(self, name: str, why: str) -> None:
        self.available[name] = False
        self.reasons[name] = why

    # ------------------------------------------------------------------ init
    def _init_psutil(self) -> None:
        try:
            import psutil

            psutil.cpu_percent(percpu=True)  # primes the per-core counters (the first call returns 0s)
            self._psutil = psutil
            self.available["psutil"] = True
        except Exception as e:  # noqa: BLE001 - ImportError or a broken /proc
            self._off("psutil", _reason(e) + " (pip install psutil)")

    def _init_nvml(self) -> None:
        try:
            import pynvml
        except ImportError as e:
            self._off("nvml", _reason(e) + " (pip install nvidia-ml-py)")
            return
        try:
            pynvml.nvmlInit()
            n = pynvml.nvmlDeviceGetCount()
            self._nvml_handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(n)]
            self._nvml = pynvml
            self.available["nvml"] = True
        except Exception as e:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
            self._off("nvml", _reason(e))

    def _init_jtop(self) -> None:
        if not is_jetson():
            self._off("jtop", "not a Jetson (no /etc/nv_tegra_release)")
            return
        try:
            from jtop import JtopException, jtop
        except ImportError as e:
            self._off("jtop", _reason(e) + " (pip install jetson-stats)")
            return
        try:
            j = jtop()
            j.start()
            self._jtop = j
            self.available["jtop"] = True
        except (JtopException, OSError) as e:
            self._off("jtop", _reason(e))
        except Exception as e:  # noqa: BLE001 - any other failure of the jtop service is also "unavailable"
            self._off("jtop", _reason(e))

    # ------------------------------------------------------------------ reading
    def availability(self) -> dict[str, str]:
        """source -> "available" or the reason it is not."""
        return {k: ("available" if v else self.reasons.get(k, "unavailable")) for k, v in self.available.items()}

    def sample(self) -> dict[str, Any]:
        out: dict[str, Any] = {"time_unix": time.time(), "available": dict(self.available), "reasons": dict(self.reasons),
                               "cpu": self._cpu(), "gpus": self._gpus(), "jetson": self._jetson(),
                               "energy_mj": self.energy_mj()}
        temps = [g.get("temperature_c") for g in out["gpus"]] + [out["cpu"].get("temperature_c")]
        if out["jetson"]:
            temps.append(out["jetson"].get("temperature_c"))
        temps = [t for t in temps if isinstance(t, (int, float)) and math.isfinite(t)]
        out["temperature_c"] = max(temps) if temps else None
        out["power_mode"] = out["jetson"].get("power_mode") if out["jetson"] else None
        return out

    def energy_mj(self) -> dict[str, float | None]:
        """Cumulative energy counters (mJ): RAPL since this object was made, NVML's total-energy counter
        summed over GPUs, jtop's total power is instantaneous (not a counter, so None here)."""
        e: dict[str, float | None] = {"rapl": None, "nvml": None}
        if self._rapl is not None and self._rapl.available:
            e["rapl"] = self._rapl.read_mj()
        if self._nvml is not None:
            try:
                e["nvml"] = float(sum(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._nvml_handles))
            except Exception:  # noqa: BLE001 - pre-Volta GPUs lack the counter
                e["nvml"] = None
        return e

    def _cpu(self) -> dict[str, Any]:
        ps = self._psutil
        if ps is None:
            return {}
        d: dict[str, Any] = {}
        try:
            d["util_percpu"] = [x / 100.0 for x in ps.cpu_percent(percpu=True)]
        except Exception:  # noqa: BLE001
            d["util_percpu"] = []
        try:
            freqs = ps.cpu_freq(percpu=True) or []
            d["freq_mhz_percpu"] = [float(f.current) for f in freqs]
            d["max_freq_mhz_percpu"] = [float(f.max) if f.max else math.nan for f in freqs]
        except Exception:  # noqa: BLE001 - containers often lack cpufreq
            d["freq_mhz_percpu"], d["max_freq_mhz_percpu"] = [], []
        try:
            d["loadavg"] = list(os.getloadavg())
        except OSError:
            d["loadavg"] = []
        try:
            d["mem_used_frac"] = ps.virtual_memory().percent / 100.0
        except Exception:  # noqa: BLE001
            pass
        try:
            temps = ps.sensors_temperatures() if hasattr(ps, "sensors_temperatures") else {}
            vals = [t.current for entries in temps.values() for t in entries if t.current]
            d["temperature_c"] = max(vals) if vals else None
        except Exception:  # noqa: BLE001
            d["temperature_c"] = None
        return d

    def _gpus(self) -> list[dict[str, Any]]:
        nv = self._nvml
        if nv is None:
            return []
        out = []
        for h in self._nvml_handles:
            g: dict[str, Any] = {}
            for key, fn in (("util", lambda: nv.nvmlDeviceGetUtilizationRates(h).gpu / 100.0),
                            ("mem_util", lambda: nv.nvmlDeviceGetUtilizationRates(h).memory / 100.0),
                            ("sm_clock_mhz", lambda: float(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM))),
                            ("max_sm_clock_mhz", lambda: float(nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_SM))),
                            ("mem_clock_mhz", lambda: float(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM))),
                            ("power_w", lambda: nv.nvmlDeviceGetPowerUsage(h) / 1000.0),
                            ("temperature_c", lambda: float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))),
                            ("mem_used_frac", lambda: (lambda m: m.used / m.total)(nv.nvmlDeviceGetMemoryInfo(h)))):
                try:
                    g[key] = fn()
                except Exception:  # noqa: BLE001 - a reading this GPU does not support
                    g[key] = None
            out.append(g)
        return out

    def _jetson(self) -> dict[str, Any] | None:
        j = self._jtop
        if j is None:
            return None
        d: dict[str, Any] = {}
        try:
            d["power_mode"] = str(getattr(j.nvpmodel, "name", j.nvpmodel))
        except Exception:  # noqa: BLE001
            d["power_mode"] = None
        try:
            p = j.power
            d["power_w"] = float(p["tot"]["power"]) / 1000.0
            d["rails"] = {k: float(v.get("power", math.nan)) / 1000.0 for k, v in p.get("rail", {}).items()}
        except Exception:  # noqa: BLE001
            d["power_w"], d["rails"] = None, {}
        try:
            gpu = next(iter(j.gpu.values()))
            d["gpu_util"] = float(gpu["status"]["load"]) / 100.0
            d["gpu_freq_mhz"] = float(gpu["freq"]["cur"]) / 1000.0
            d["gpu_max_freq_mhz"] = float(gpu["freq"]["max"]) / 1000.0
        except Exception:  # noqa: BLE001
            pass
        try:
            temps = [float(v["temp"]) for v in j.temperature.values() if v.get("online", True) and v.get("temp", -256) > -100]
            d["temperature_c"] = max(temps) if temps else None
        except Exception:  # noqa: BLE001
            d["temperature_c"] = None
        return d

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass
            self._nvml = None
        if self._jtop is not None:
            try:
                self._jtop.close()
            except Exception:  # noqa: BLE001
                pass
            self._jtop = None

    def __enter__(self) -> "Telemetry":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
