"""Spin-then-block hand-offs between lane threads, without the GIL.

Why: on the machines this was measured on, waking a thread that sleeps on an idle core costs about
20-25 us (futex wake-up of a halted vCPU, measured in C: 44 us per round trip), and migrating the
running thread to the other core with ``os.sched_setaffinity`` costs about the same (28 us), because
both wait for the idle core to come out of halt. A thread that *spins* on its core sees a flag within
~0.1 us. A Python-level spin cannot be used: it holds the GIL that the producing thread needs. So the
waits are done in a few lines of C, called through :mod:`ctypes` (which releases the GIL for the call):

* ``sp_step(sig, s0, s1, wait, widx, nw, spin_ns)``: set flags ``sig[s0]`` and ``sig[s1]`` (``-1`` = none),
  waking sleepers, then wait until every ``wait[widx[i]]`` is set: spin up to ``spin_ns``, then sleep on
  a futex. (No ``sched_yield`` while spinning: under load, a yield hands the core to another process for
  a whole time slice, milliseconds, and the hand-off waits for it; the scheduler still preempts a
  spinner whose share is used up.)
  Signalling and waiting in *one* GIL-free call matters: a thread that signals and then takes the GIL
  back would contend with the thread it just woke (two sleeps on the GIL's condition variable, each
  another ~20 us wake-up).
* A flag is an ``int32`` in a per-request ``ctypes`` array: 0 = not set, 1 = set, 2 = not set and
  someone sleeps on it.

The library is compiled once with the system C compiler (``cc``/``gcc``) into
``$XDG_CACHE_HOME/sparoa_env`` (or ``~/.cache/sparoa_env``) and loaded with ctypes. Without a compiler,
or with ``SPAROA_SPIN=0``, :func:`load` returns ``None`` and the engine uses blocking Python latches.
Linux only (futex); elsewhere also ``None``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

__all__ = ["load", "unavailable_reason", "C_SOURCE"]

C_SOURCE = r"""
#define _GNU_SOURCE
#include <stdint.h>
#include <limits.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/futex.h>

static inline int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

void sp_signal(int32_t *f) {
    if (__atomic_exchange_n(f, 1, __ATOMIC_SEQ_CST) == 2)
        syscall(SYS_futex, f, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* returns 1 if the flag was seen while spinning, 0 if the thread had to sleep */
int sp_wait(int32_t *f, int64_t spin_ns) {
    if (__atomic_load_n(f, __ATOMIC_ACQUIRE) == 1) return 1;
    if (spin_ns > 0) {
        int64_t start = now_ns();
        for (;;) {
            for (int i = 0; i < 64; i++) {
                if (__atomic_load_n(f, __ATOMIC_ACQUIRE) == 1) return 1;
                cpu_relax();
            }
            if (now_ns() - start >= spin_ns) break;
        }
    }
    for (;;) {
        int32_t v = __atomic_load_n(f, __ATOMIC_ACQUIRE);
        if (v == 1) return 0;
        if (v == 0) {
            int32_t expected = 0;
            if (!__atomic_compare_exchange_n(f, &expected, 2, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) continue;
        }
        syscall(SYS_futex, f, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
    }
}

/* signal sig[s0], sig[s1] (-1: none), then wait for wait[widx[0..nw-1]]; returns how many waits slept */
int sp_step(int32_t *sig, int32_t s0, int32_t s1, int32_t *wait, const int32_t *widx, int32_t nw, int64_t spin_ns) {
    if (s0 >= 0) sp_signal(sig + s0);
    if (s1 >= 0) sp_signal(sig + s1);
    int slept = 0;
    for (int32_t i = 0; i < nw; i++) slept += !sp_wait(wait + widx[i], spin_ns);
    return slept;
}
"""

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_reason: str | None = None
_tried = False


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sparoa_env"


def _build() -> ctypes.CDLL:
    # the key names the architecture: a home directory shared by x86_64 and aarch64 hosts keeps one library each
    tag = hashlib.sha256((C_SOURCE + sys.platform + platform.machine()).encode()).hexdigest()[:16]
    out = _cache_dir() / f"handoff-{tag}.so"
    if not out.exists():
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        if not cc:
            raise OSError("no C compiler (cc, gcc or clang) on PATH")
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            src = Path(tmp) / "handoff.c"
            src.write_text(C_SOURCE)
            so = Path(tmp) / "handoff.so"
            r = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(so), str(src)], capture_output=True, text=True,
                               timeout=120)
            if r.returncode != 0:
                raise OSError(f"{cc} failed: {(r.stderr or r.stdout).strip()[:400]}")
            os.replace(so, out)  # atomic: concurrent builders end with the same file
    lib = ctypes.CDLL(str(out))
    i32p, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.sp_signal.argtypes, lib.sp_signal.restype = [i32p], None
    lib.sp_wait.argtypes, lib.sp_wait.restype = [i32p, i64], ctypes.c_int
    lib.sp_step.argtypes = [i32p, ctypes.c_int32, ctypes.c_int32, i32p, i32p, ctypes.c_int32, i64]
    lib.sp_step.restype = ctypes.c_int
    return lib


def load() -> ctypes.CDLL | None:
    """The compiled hand-off library, or ``None`` (see :func:`unavailable_reason`)."""
    global _lib, _reason, _tried
    if _tried:
        return _lib
    with _lock:
        if not _tried:
            if os.environ.get("SPAROA_SPIN", "1").strip().lower() in ("0", "false", "no", "off"):
                _reason = "disabled by SPAROA_SPIN=0"
            elif not sys.platform.startswith("linux"):
                _reason = f"needs Linux futexes (this is {sys.platform})"
            else:
                try:
                    _lib = _build()
                except Exception as e:  # noqa: BLE001 - any build/load failure means: use blocking latches
                    _reason = f"could not build the spin-wait helper: {type(e).__name__}: {e}"
            _tried = True
    return _lib


def unavailable_reason() -> str | None:
    load()
    return _reason
