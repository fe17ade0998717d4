"""float16 conversion and delta kernels beside NumPy on the same inputs.

Targets (benchmarks/README.md, 100 MB of float32): to_float16 >= 8x astype (>= 12x with
out=), to_float32 >= 6x, subtract(dtype="float16") >= 10x.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import BACKENDS, SIZES

pytestmark = pytest.mark.parametrize("size", list(SIZES))
IMPLS = ["baseline", "native", "native-out", "python"]


def _setup(benchmark, group, size):
    benchmark.group = f"{group} {size}"
    benchmark.extra_info["elements"] = SIZES[size]


@pytest.mark.parametrize("impl", IMPLS)
def test_to_float16(benchmark, float32_inputs, size, impl):
    x, _ = float32_inputs(size)
    _setup(benchmark, "to_float16", size)
    if impl == "baseline":
        benchmark(x.astype, np.float16)
    elif impl == "native-out":
        out = np.empty(x.shape, np.float16)
        benchmark(BACKENDS["native"].to_float16, x, out=out)
    else:
        benchmark(BACKENDS[impl].to_float16, x)


@pytest.mark.parametrize("impl", IMPLS)
def test_to_float32(benchmark, float32_inputs, size, impl):
    h = float32_inputs(size)[0].astype(np.float16)
    _setup(benchmark, "to_float32", size)
    if impl == "baseline":
        benchmark(h.astype, np.float32)
    elif impl == "native-out":
        out = np.empty(h.shape, np.float32)
        benchmark(BACKENDS["native"].to_float32, h, out=out)
    else:
        benchmark(BACKENDS[impl].to_float32, h)


@pytest.mark.parametrize("impl", IMPLS)
def test_subtract_float16(benchmark, float32_inputs, size, impl):
    u, d = float32_inputs(size)
    b = u - d
    _setup(benchmark, "subtract->float16", size)
    if impl == "baseline":
        benchmark(lambda: (u - b).astype(np.float16))
    elif impl == "native-out":
        out = np.empty(u.shape, np.float16)
        benchmark(BACKENDS["native"].subtract, u, b, dtype="float16", out=out)
    else:
        benchmark(BACKENDS[impl].subtract, u, b, dtype="float16")


@pytest.mark.parametrize("impl", ["baseline", "native", "python"])
def test_subtract_float32(benchmark, float32_inputs, size, impl):
    u, d = float32_inputs(size)
    b = u - d
    _setup(benchmark, "subtract float32", size)
    if impl == "baseline":
        benchmark(np.subtract, u, b)
    else:
        benchmark(BACKENDS[impl].subtract, u, b)


@pytest.mark.parametrize("impl", ["baseline", "native", "python"])
def test_apply_delta_float16(benchmark, float32_inputs, size, impl):
    base, d = float32_inputs(size)
    delta = d.astype(np.float16)
    _setup(benchmark, "apply_delta f16 delta", size)
    if impl == "baseline":
        benchmark(lambda: base + np.float32(0.5) * delta.astype(np.float32))
    else:
        benchmark(BACKENDS[impl].apply_delta, {"w": base}, {"w": delta}, scale=0.5)
