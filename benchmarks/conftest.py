"""Shared inputs for the benchmarks and a summary of speed-ups against the baselines.

Run: python -m pytest benchmarks --benchmark-json=benchmarks/results/<date>-<machine>.json
Every case is paired with its baseline on the same input in the same run;
the summary at the end prints baseline_median / case_median per group, with
the target and whether it was met (reported, never asserted), the
peak-memory table, and loads' time at 1MB against 100MB. The saved JSON keeps
statistics only, plus the CPU, ptth's build and the load average.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest
from zlib_ng import zlib_ng

import ptth
import reference
from ptth._engine import front_for

#: float32 element counts: 1 MB and 100 MB of float32
SIZES = {"1MB": 1 << 18, "100MB": 25_000_000}
native_backend, pure_backend = front_for("native"), front_for("python")
BACKENDS = {"native": native_backend, "python": pure_backend}


@pytest.fixture(scope="session")
def float32_inputs():
    rng = np.random.default_rng(42)
    cache = {}

    def get(size):
        if size not in cache:
            n = SIZES[size]
            cache[size] = (
                rng.standard_normal(n, dtype=np.float32),
                rng.standard_normal(n, dtype=np.float32) * np.float32(0.01),
            )
        return cache[size]

    return get


_LOAD_AT_START = []


def pytest_sessionstart(session):
    if hasattr(os, "getloadavg"):
        _LOAD_AT_START.extend(os.getloadavg())


def pytest_benchmark_update_machine_info(config, machine_info):
    """What a saved run needs to be compared: the CPU, ptth's build, the load while measuring."""
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        machine_info["cpu_model"] = names[0] if names else None
    except OSError:
        pass
    machine_info["cores"] = os.cpu_count()
    machine_info["ptth_build"] = ptth.build_info()
    machine_info["numpy"] = np.__version__
    machine_info["zlib_ng_python"] = zlib_ng.ZLIBNG_VERSION
    machine_info["loadavg_at_start"] = _LOAD_AT_START or None
    if hasattr(os, "getloadavg"):
        machine_info["loadavg_at_end"] = os.getloadavg()


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Keep saved runs small: statistics only, not every round's time (some run 10^4 rounds)."""
    for bench in output_json["benchmarks"]:
        bench["stats"].pop("data", None)


#: the performance targets: (group, case) -> (kind, value). "speedup": baseline time /
#: case time must reach value; "time": case time / baseline time must stay within it.
TARGETS = {
    ("to_float16 100MB", "native-100MB"): ("speedup", 8.0),
    ("to_float16 100MB", "native-out-100MB"): ("speedup", 12.0),
    ("to_float32 100MB", "native-100MB"): ("speedup", 6.0),
    ("subtract->float16 100MB", "native-100MB"): ("speedup", 10.0),
    ("loads uncompressed 200 tensors 100MB", "native-100MB"): ("speedup", 100.0),
    ("loads zlib-6 100MB", "native-100MB"): ("time", 1.10),
    ("dumps compress=6 100MB", "native-100MB"): ("time", 1.05),
    ("Aggregator.add f16 100MB", "native-100MB"): ("speedup", 4.0),
    ("Aggregator.add threads", "2threads"): ("speedup", 1.7),
}


def verdict(kind: str, value: float, speedup: float) -> str:
    """'target >= 8x: met' for a speed-up target; 'time x1.040, target <= 1.10x: met' for a
    time one."""
    if kind == "speedup":
        return f"target >= {value:g}x: {'met' if speedup >= value else 'MISSED'}"
    return (
        f"time x{1 / speedup:.3f}, target <= {value:.2f}x: "
        f"{'met' if 1 / speedup <= value else 'MISSED'}"
    )


@pytest.fixture(scope="session")
def codec_inputs():
    """A 200-tensor model of SIZES[size] float32 elements and a client's upload of it.

    model: the float32 weights; blob_f32: them as an uncompressed blob;
    delta: a float16-quantized ~N(0, 1e-3) update; blob_f16: it uncompressed;
    blob_z6: it at zlib level 6, as zlib_ng.compress writes it.
    """
    cache = {}

    def get(size):
        if size not in cache:
            tmpl = reference.model(SIZES[size])
            delta = reference.delta(tmpl, seed=1)
            blob_f16 = native_backend.dumps(delta)
            cache[size] = SimpleNamespace(
                model=tmpl,
                blob_f32=native_backend.dumps(tmpl),
                delta=delta,
                blob_f16=blob_f16,
                blob_z6=zlib_ng.compress(blob_f16, 6),
            )
        return cache[size]

    return get


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.groups:
        return
    terminalreporter.section("ptth speed-up over the baseline (median times)")
    medians = {}
    for group, benches in session.groups:
        for b in benches:
            medians[(group, b["param"])] = b["median"]
        base = [b for b in benches if "baseline" in (b.get("param") or "")]
        if not base:
            continue
        ref = base[0]["median"]
        for b in benches:
            if b is base[0]:
                continue
            speedup = ref / b["median"]
            target = TARGETS.get((group, b["param"]))
            terminalreporter.write_line(
                f"{group:<36} {b['param']:<22} {b['median'] * 1e3:9.3f} ms   "
                f"baseline {ref * 1e3:9.3f} ms   {speedup:7.2f}x"
                + (f"   {verdict(*target, speedup)}" if target else "")
            )
    # peak memory (test_memory_peak.py): bytes above the process before aggregating
    for group, benches in session.groups:
        for b in benches:
            info = b.get("extra_info") or {}
            if "peak_total" in info:
                terminalreporter.write_line(
                    f"{group:<36} {b['param']:<22} peak {info['peak_total'] / 1e6:8.0f} MB "
                    f"({info['models']:6.1f} models; "
                    f"{info['peak_adds'] / 1e6:.0f} MB while adding), "
                    f"aggregation {info['seconds']:.2f} s"
                )
    # loads of uncompressed input makes views: its time should not grow with the payload
    for impl in ("native", "python", "baseline"):
        small = medians.get(("loads uncompressed 200 tensors 1MB", f"{impl}-1MB"))
        large = medians.get(("loads uncompressed 200 tensors 100MB", f"{impl}-100MB"))
        if small and large:
            terminalreporter.write_line(
                f"loads uncompressed 200 tensors, {impl}: 100MB {large * 1e6:.1f} us, "
                f"1MB {small * 1e6:.1f} us, ratio {large / small:.2f}"
            )
