"""One FedAvg round beside a Flower-style aggregation of the same uploads.

8 clients each upload an uncompressed float16 delta of the 200-tensor model.
The baseline (reference.flower_fedavg) keeps a weighted float64 copy of every
client's layers and reduces them at the end; ptth creates an Aggregator, adds
every upload and takes the mean. No time target is set for this row
(its target is peak memory: see memory.py); the ratio is reported.
"""

from __future__ import annotations

import numpy as np
import pytest

import reference
from conftest import BACKENDS, SIZES

CLIENTS = 8
WEIGHTS = [float(10 * (i + 1)) for i in range(CLIENTS)]  # sample counts


@pytest.fixture(scope="module")
def round_inputs(codec_inputs):
    cache = {}

    def get(size):
        if size not in cache:
            tmpl = codec_inputs(size).model
            cache[size] = (
                tmpl,
                [
                    BACKENDS["native"].dumps(reference.delta(tmpl, seed=100 + i))
                    for i in range(CLIENTS)
                ],
            )
        return cache[size]

    return get


def ptth_round(backend, template, uploads, weights):
    agg = backend.Aggregator(template)
    for blob, w in zip(uploads, weights):
        agg.add(blob, w)
    return agg.mean(dtype="float64")


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("impl", ["baseline", "native", "python"])
def test_fedavg_round(benchmark, round_inputs, size, impl):
    tmpl, uploads = round_inputs(size)
    benchmark.group = f"FedAvg round {CLIENTS} uploads {size}"
    benchmark.extra_info.update(clients=CLIENTS, elements=SIZES[size], upload_bytes=len(uploads[0]))
    rounds = 3 if size == "100MB" else 20
    if impl == "baseline":
        benchmark.pedantic(reference.flower_fedavg, (uploads, WEIGHTS), rounds=rounds)
    else:
        benchmark.pedantic(ptth_round, (BACKENDS[impl], tmpl, uploads, WEIGHTS), rounds=rounds)


def test_fedavg_baseline_matches(round_inputs):
    """The baseline computes the same mean as the Aggregator (checked outside any timing)."""
    tmpl, uploads = round_inputs("1MB")
    ref = reference.flower_fedavg(uploads, WEIGHTS)
    got = ptth_round(BACKENDS["native"], tmpl, uploads, WEIGHTS)
    assert list(got) == list(tmpl)
    for r, g in zip(ref, got.values()):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-18)
