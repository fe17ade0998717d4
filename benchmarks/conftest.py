"""Shared inputs for the benchmarks and a summary of speed-ups against the baselines.

Run: python -m pytest benchmarks --benchmark-json=benchmarks/results/<name>.json
Every case is paired with its baseline on the same input in the same run;
the summary at the end prints baseline_median / case_median per group.
"""

from __future__ import annotations

import numpy as np
import pytest

import ptth._native_api as native_backend
import ptth._pure as pure_backend

#: float32 element counts: 1 MB and 100 MB of float32
SIZES = {"1MB": 1 << 18, "100MB": 25_000_000}
BACKENDS = {"native": native_backend, "python": pure_backend}


@pytest.fixture(scope="session")
def float32_inputs():
    rng = np.random.default_rng(42)
    cache = {}

    def get(size):
        if size not in cache:
            n = SIZES[size]
            cache[size] = (rng.standard_normal(n, dtype=np.float32),
                           rng.standard_normal(n, dtype=np.float32) * np.float32(0.01))
        return cache[size]
    return get


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.groups:
        return
    terminalreporter.section("ptth speed-up over the baseline (median times)")
    for group, benches in session.groups:
        base = [b for b in benches if "baseline" in (b.get("param") or "")]
        if not base:
            continue
        ref = base[0]["median"]
        for b in benches:
            if b is base[0]:
                continue
            terminalreporter.write_line(
                f"{group:<28} {b['param']:<22} {b['median'] * 1e3:9.3f} ms   "
                f"baseline {ref * 1e3:9.3f} ms   {ref / b['median']:6.2f}x")
