"""loads and dumps beside the baselines a server would otherwise use, on the same blobs.

Targets (benchmarks/README.md, 100 MB of float32 = 25M elements in 200 tensors):
- loads of an uncompressed blob >= 100x the reference reader (struct +
  np.frombuffer on bytes slices), its time independent of the payload size
  (compare the 1MB and 100MB groups: same 200 tensors);
- loads of a zlib level 6 blob <= 1.10x the time of zlib_ng.decompress alone;
- dumps(compress=6) <= 1.05x the time of zlib_ng.compress of the raw blob, and
  the same size.
The compressed rows use a float16-quantized ~N(0, 1e-3) delta (50 MB raw at
100MB), the upload a client would send.
"""

from __future__ import annotations

import pytest
from zlib_ng import zlib_ng

from conftest import BACKENDS, SIZES
from reference import reference_loads

pytestmark = pytest.mark.parametrize("size", list(SIZES))
IMPLS = ["baseline", "native", "python"]


def _setup(benchmark, group, size, blob):
    benchmark.group = f"{group} {size}"
    benchmark.extra_info["elements"] = SIZES[size]
    benchmark.extra_info["blob_bytes"] = len(blob)


@pytest.mark.parametrize("impl", IMPLS)
def test_loads_uncompressed(benchmark, codec_inputs, size, impl):
    blob = codec_inputs(size).blob_f32
    _setup(benchmark, "loads uncompressed 200 tensors", size, blob)
    if impl == "baseline":
        benchmark(reference_loads, blob)
    else:
        benchmark(BACKENDS[impl].loads, blob)


@pytest.mark.parametrize("impl", IMPLS)
def test_loads_zlib6(benchmark, codec_inputs, size, impl):
    blob = codec_inputs(size).blob_z6
    _setup(benchmark, "loads zlib-6", size, blob)
    benchmark.extra_info["raw_bytes"] = len(codec_inputs(size).blob_f16)
    if impl == "baseline":
        benchmark(zlib_ng.decompress, blob)
    else:
        benchmark(BACKENDS[impl].loads, blob)


@pytest.mark.parametrize("impl", IMPLS)
def test_dumps_compress6(benchmark, codec_inputs, size, impl):
    inputs = codec_inputs(size)
    _setup(benchmark, "dumps compress=6", size, inputs.blob_f16)
    benchmark.extra_info["compressed_bytes"] = len(inputs.blob_z6)
    if impl == "baseline":
        benchmark(zlib_ng.compress, inputs.blob_f16, 6)
    else:
        # same size as zlib_ng.compress (the tests check the bytes are identical)
        assert len(BACKENDS[impl].dumps(inputs.delta, compress=6)) == len(inputs.blob_z6)
        benchmark(BACKENDS[impl].dumps, inputs.delta, compress=6)
