"""Every codec of the compression table on the same inputs in the same run.

Inputs (SIZES as elsewhere; 100MB = a 25M-parameter model): a float16 and a
float32 ~N(0, 1e-3) delta and the float32 weights of one 200-tensor model.
Groups "deflate <input> <size>" and "inflate <input> <size>" hold ptth's paths
beside zlib-ng's wheel (the baseline), python-isal, libdeflate through the
`deflate` package and zstd level 1 (reference only: not a zlib stream) when
the `zstandard` wheel is installed. extra_info records each case's ratio
(original / compressed). Targets (benchmarks/README.md; reported by the summary, never
asserted): loads of the zlib float16 delta >= 1.2x zlib_ng.decompress's
speed; one-core deflate >= 8x zlib_ng.compress(6) at its ratio (within 0.5%);
threads=2 >= 1.8x threads=1.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from zlib_ng import zlib_ng

import reference
from conftest import BACKENDS, SIZES

isal_zlib = pytest.importorskip("isal.isal_zlib")
libdeflate = pytest.importorskip("deflate")
try:
    import zstandard
except ImportError:  # reference only
    zstandard = None

pytestmark = pytest.mark.parametrize("size", list(SIZES))
INPUTS = ["f16 delta", "f32 delta", "weights"]
native = BACKENDS["native"]


@pytest.fixture(scope="session")
def compression_inputs():
    cache = {}

    def get(size):
        if size not in cache:
            tmpl = reference.model(SIZES[size])
            rng = np.random.default_rng(5)
            d32 = {
                k: rng.standard_normal(v.shape, dtype=np.float32) * np.float32(1e-3)
                for k, v in tmpl.items()
            }
            blobs = {
                "f16 delta": native.dumps(d32, dtype="float16"),
                "f32 delta": native.dumps(d32),
                "weights": native.dumps(tmpl),
            }
            cache[size] = SimpleNamespace(
                blobs=blobs, z6={k: zlib_ng.compress(v, 6) for k, v in blobs.items()}
            )
        return cache[size]

    return get


def _compressors():
    c = {
        "baseline-zlib-ng-6": lambda d: zlib_ng.compress(d, 6),
        "zlib-ng-1": lambda d: zlib_ng.compress(d, 1),
        "native-6-threads1": lambda d: native.compress(d, 6, threads=1),
        "native-6-threads2": lambda d: native.compress(d, 6, threads=2),
        "native-1-threads1": lambda d: native.compress(d, 1, threads=1),
        "native-9-threads1": lambda d: native.compress(d, 9, threads=1),
        "isal-1": lambda d: isal_zlib.compress(d, 1),
        "isal-2": lambda d: isal_zlib.compress(d, 2),
        "libdeflate-6": lambda d: libdeflate.zlib_compress(d, 6),
    }
    if zstandard is not None:
        c["zstd-1-reference"] = lambda d: zstandard.ZstdCompressor(level=1).compress(d)
    return c


COMPRESSORS = _compressors()


def _run(benchmark, size, fn, *args):
    # 100 MB cases take seconds each at zlib-ng's speed: a few rounds are enough
    if size == "100MB":
        return benchmark.pedantic(fn, args=args, rounds=3, warmup_rounds=1)
    return benchmark(fn, *args)


@pytest.mark.parametrize("what", INPUTS)
@pytest.mark.parametrize("impl", list(COMPRESSORS))
def test_deflate(benchmark, compression_inputs, size, what, impl):
    data = compression_inputs(size).blobs[what]
    benchmark.group = f"deflate {what} {size}"
    z = COMPRESSORS[impl](data)
    benchmark.extra_info.update(
        raw_bytes=len(data), compressed_bytes=len(z), ratio=len(data) / len(z)
    )
    _run(benchmark, size, COMPRESSORS[impl], data)


def _inflaters(raw_len):
    c = {
        "baseline-zlib-ng": zlib_ng.decompress,
        "native-decompress": native.decompress,
        "native-loads": native.loads,
        "isal": isal_zlib.decompress,
        "libdeflate": lambda z: libdeflate.zlib_decompress(z, raw_len),
    }
    return c


@pytest.mark.parametrize("what", INPUTS)
@pytest.mark.parametrize("impl", list(_inflaters(0)) + (["zstd-1-reference"] if zstandard else []))
def test_inflate(benchmark, compression_inputs, size, what, impl):
    inputs = compression_inputs(size)
    data = inputs.blobs[what]
    benchmark.group = f"inflate {what} {size}"
    benchmark.extra_info["raw_bytes"] = len(data)
    if impl == "zstd-1-reference":
        z = zstandard.ZstdCompressor(level=1).compress(data)
        fn = zstandard.ZstdDecompressor().decompress
    else:
        z, fn = inputs.z6[what], _inflaters(len(data))[impl]
    benchmark.extra_info["compressed_bytes"] = len(z)
    _run(benchmark, size, fn, z)
