"""No leaks: 10^4 rounds of loads/dumps/compress/decompress/Decoder/Aggregator.add,
successes and failures, keep the resident set flat (leakprobe.py, in a fresh
process: the native core's memory is invisible to tracemalloc)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).with_name("leakprobe.py")
ROUNDS = 10_000
WARMUP = 300
# Flat means: less than ~200 bytes per round over 10^4 rounds (a 100-byte leak
# per round shows as ~1 MiB; measured growth without one is 0).
SLACK = 2 << 20

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc"),
    # ASan's quarantine holds freed memory on purpose: RSS says nothing there.
    pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""), reason="under ASan"),
]


def test_memory_stays_flat(backend):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run(
        [sys.executable, str(PROBE), backend.backend, str(ROUNDS), str(WARMUP)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["growth"] < SLACK, (
        f"{backend.backend}: RSS grew {r['growth'] / 1024:.0f} KiB over {ROUNDS} rounds "
        f"({r['growth'] / ROUNDS:.0f} B/round; second half {r['second_half'] / 1024:.0f} KiB)"
    )
