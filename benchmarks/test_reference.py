"""The baselines decode what ptth decodes: checked once, outside any timing."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

import reference
from conftest import BACKENDS

GOLDEN = pathlib.Path(__file__).resolve().parent.parent / "tests" / "golden"


def _same(got: dict, want: dict):
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        assert got[name].shape == want[name].shape, name
        np.testing.assert_array_equal(got[name], want[name])


@pytest.mark.parametrize("impl", list(BACKENDS))
def test_reference_reader_matches_loads(impl, codec_inputs):
    loads = BACKENDS[impl].loads
    inputs = codec_inputs("1MB")
    blobs = [p.read_bytes() for p in sorted(GOLDEN.glob("vector[123]_*.ptth"))]
    blobs += [inputs.blob_f32, inputs.blob_f16]
    for blob in blobs:
        _same(reference.reference_loads(blob), loads(blob))
    _same(reference.reference_loads(inputs.blob_f16), inputs.delta)


def test_reference_reader_rejects_what_it_cannot_read():
    blob = (GOLDEN / "vector1_float32.ptth").read_bytes()
    for bad in (blob[:-1], blob + b"\0", b"PTTX" + blob[4:]):
        with pytest.raises(ValueError):
            reference.reference_loads(bad)


def test_flower_fedavg_is_the_weighted_mean(codec_inputs):
    tmpl = codec_inputs("1MB").model
    deltas = [reference.delta(tmpl, seed=s) for s in range(3)]
    uploads = [BACKENDS["native"].dumps(d) for d in deltas]
    weights = [1.0, 2.0, 5.0]
    got = reference.flower_fedavg(uploads, weights)
    for i, name in enumerate(tmpl):
        want = sum(w * d[name].astype(np.float64) for w, d in zip(weights, deltas)) / sum(weights)
        np.testing.assert_allclose(got[i], want, rtol=1e-14)


def test_realistic_deltas_compress_like_quantized_updates(codec_inputs):
    """Neither all-zeros (~0%) nor random bits (~100%): float16 N(0, 1e-3) keeps ~75-95%."""
    inputs = codec_inputs("1MB")
    ratio = len(inputs.blob_z6) / len(inputs.blob_f16)
    assert 0.5 < ratio < 0.97


def test_ptth_bench_model_has_this_layout():
    """`ptth bench` builds its model itself (it ships without benchmarks/)."""
    from ptth import bench

    assert list(bench.model(1 << 18)) == [name for name, _ in reference.layout(1 << 18)]
    for name, shape in reference.layout(1 << 18):
        assert bench.model(1 << 18)[name].shape == shape
