"""Aggregator.add beside a NumPy fold of the same upload, and two threads against one.

Targets (benchmarks/README.md): add of an uncompressed float16 delta >= 4x NumPy
(frombuffer + astype + multiply-add into a float64 accumulator); two threads
calling add >= 1.7x the throughput of one.
"""

from __future__ import annotations

import concurrent.futures as cf

import numpy as np
import pytest

from conftest import BACKENDS, SIZES


@pytest.fixture(scope="module")
def uploads(float32_inputs):
    cache = {}

    def get(size, n=1):
        key = (size, n)
        if key not in cache:
            _, d = float32_inputs(size)
            cache[key] = [
                BACKENDS["native"].dumps({"w": d * np.float32(i + 1)}, dtype="float16")
                for i in range(n)
            ]
        return cache[key]

    return get


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("impl", ["baseline", "native", "python"])
def test_add_float16_delta(benchmark, float32_inputs, uploads, size, impl):
    x, _ = float32_inputs(size)
    blob = uploads(size)[0]
    benchmark.group = f"Aggregator.add f16 {size}"
    if impl == "baseline":
        acc = np.zeros(x.shape, np.float64)
        offset = len(blob) - 2 * x.size

        def fold():
            h = np.frombuffer(blob, "<f2", x.size, offset)
            acc.__iadd__(2.0 * h.astype(np.float64))

        benchmark(fold)
    else:
        agg = BACKENDS[impl].Aggregator({"w": x})
        agg.add(blob, 2.0)  # first touch of the accumulator pages happens outside the timing
        benchmark(agg.add, blob, 2.0)


@pytest.mark.parametrize("impl", ["baseline-1thread", "2threads"])
def test_add_threads(benchmark, float32_inputs, uploads, impl):
    """8 uploads of 100 MB-of-float32 models (float16, uncompressed) per round."""
    x, _ = float32_inputs("100MB")
    blobs = uploads("100MB", 8)
    agg = BACKENDS["native"].Aggregator({"w": x})
    agg.add(blobs[0])
    threads = 1 if impl.startswith("baseline") else 2
    benchmark.group = "Aggregator.add threads"
    with cf.ThreadPoolExecutor(threads) as pool:
        benchmark.pedantic(lambda: list(pool.map(agg.add, blobs)), rounds=5, warmup_rounds=1)
