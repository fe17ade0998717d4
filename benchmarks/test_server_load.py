"""ptth serve on loopback beside Aggregator.add alone and a FastAPI + NumPy server.

One bounded load run (benchmarks/server_load.py: a fixed number of uploads per
mode, a time limit per mode) recorded as a pytest-benchmark case; the figures
of every mode and the ratios to the performance targets land in extra_info and are
printed. Nothing is asserted about time.

    PTTH_SERVER_BENCH_PARAMS=25000000 PTTH_SERVER_BENCH_COUNT=8 python -m pytest \
        benchmarks/test_server_load.py -s
"""

from __future__ import annotations

import os

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("ptth.server")

import server_load  # after the skips: it needs the server extra


def test_server_load(benchmark):
    params = int(os.environ.get("PTTH_SERVER_BENCH_PARAMS", "25000000"))
    count = int(os.environ.get("PTTH_SERVER_BENCH_COUNT", "8"))
    results = {}

    def once():
        results.update(
            server_load.run(
                params,
                count,
                concurrency=4,
                time_limit=90.0,
                distinct=3,
                modes=server_load.ALL_MODES,
            )
        )

    benchmark.pedantic(once, rounds=1, iterations=1)
    benchmark.extra_info.update(results)
    print()
    print(server_load.report(results))
