"""ptth.dask: uploads/s on 1 and 2 worker processes beside one process, and per-core figures.

Run: python -m pytest benchmarks/test_dask.py --benchmark-json=...
Every group times the same files in the same run: the baseline is one
process folding them with add_many (no Dask); the cases are
ptth.dask.aggregate on a LocalCluster of one and of two single-threaded
worker processes. Each also records the CPU seconds of the folding
(extra_info: fold_cpu_seconds, uploads_per_cpu_s), which a busy machine
does not inflate the way it does wall-clock time. The per-core groups give
the figures docs/dask.md's plan scales from: add_many per upload (float16 +
zlib, float32), the merge of two partial aggregates, and a partial's pickle
round trip. Nothing is asserted
about time; the machine's other load shows in the saved load average.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import ptth

distributed = pytest.importorskip("distributed")
import ptth.dask as pdask  # noqa: E402

PARAMS, UPLOADS = 2_000_000, 32


@pytest.fixture(scope="module")
def uploads(tmp_path_factory):
    return pdask._bench_uploads(str(tmp_path_factory.mktemp("dask-bench")), PARAMS, UPLOADS)


@pytest.fixture(scope="module")
def clients():
    """LocalClusters of 1 and 2 single-threaded worker processes, started once."""
    opened, stack = {}, []

    def get(workers):
        if workers not in opened:
            cluster = distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
            )
            client = distributed.Client(cluster, set_as_default=False)
            stack.extend([cluster, client])
            opened[workers] = client
        return opened[workers]

    yield get
    for thing in reversed(stack):
        thing.close()


@pytest.mark.parametrize("enc", ["f16-zlib", "f32"])
@pytest.mark.parametrize("runner", ["baseline-one-process", "1worker", "2workers"])
def test_round(benchmark, uploads, clients, enc, runner):
    """The same files folded by one process (add_many) or by aggregate on 1 or 2 workers."""
    template, paths = uploads
    files = paths[enc]
    benchmark.group = f"dask round {enc} {UPLOADS}x{PARAMS // 10**6}M params"
    size = sum(len(open(p, "rb").read()) for p in files)
    benchmark.extra_info.update(uploads=UPLOADS, bytes=size, params=PARAMS)
    if runner.startswith("baseline"):
        agg = benchmark.pedantic(pdask._local_round, (files, template), rounds=3, warmup_rounds=1)
        _, cpu = pdask._timed(lambda: pdask._local_round(files, template), 3)
    else:
        client = clients(int(runner[0]))
        agg = benchmark.pedantic(
            pdask.aggregate, (files, template), {"client": client}, rounds=3, warmup_rounds=1
        )
        _, cpu = pdask._timed(lambda: pdask.aggregate(files, template, client=client), 3)
        ref = pdask._local_round(files, template).mean(dtype="float64")
        got = agg.mean(dtype="float64")
        for k, v in ref.items():
            np.testing.assert_allclose(got[k], v, rtol=1e-12, atol=0)
    # CPU seconds of the folding itself (this thread's, or the workers' partitions'): what
    # other load on the machine does not change, unlike the wall-clock time above
    benchmark.extra_info["uploads_per_s"] = UPLOADS / benchmark.stats.stats.median
    benchmark.extra_info["fold_cpu_seconds"] = cpu
    benchmark.extra_info["uploads_per_cpu_s"] = UPLOADS / cpu
    assert agg.count == UPLOADS


@pytest.mark.parametrize("enc", ["f16-zlib", "f32"])
@pytest.mark.parametrize("how", ["baseline-8-adds", "add_many-8"])
def test_per_core_add(benchmark, uploads, enc, how):
    """One core folding 8 in-memory uploads: add_many beside 8 sequential adds."""
    template, paths = uploads
    blobs = [open(p, "rb").read() for p in paths[enc][:8]]
    agg = ptth.Aggregator(template)
    agg.add(blobs[0])  # the accumulators' pages are touched before timing
    benchmark.group = f"dask per-core add {enc}"
    benchmark.extra_info.update(params=PARAMS, uploads=8)
    if how == "add_many-8":
        benchmark(agg.add_many, blobs, None)
    else:
        benchmark(lambda: [agg.add(b) for b in blobs])
    benchmark.extra_info["elements_per_s"] = 8 * PARAMS / benchmark.stats.stats.median


@pytest.mark.parametrize("how", ["baseline-np.add", "partial+partial", "pickle-roundtrip"])
def test_per_core_partial(benchmark, uploads, how):
    """Merging two partial aggregates (float64 accumulators) and shipping one."""
    template, paths = uploads
    a, b = ptth.Aggregator(template), ptth.Aggregator(template)
    a.add(open(paths["f32"][0], "rb").read())
    b.add(open(paths["f32"][1], "rb").read())
    pa, pb = a.partial(), b.partial()
    benchmark.group = "dask per-core partial"
    benchmark.extra_info.update(params=PARAMS, bytes=pa.nbytes)
    if how == "partial+partial":
        benchmark(lambda: pa + pb)
    elif how == "pickle-roundtrip":

        def roundtrip():
            buffers = []
            data = pickle.dumps(pa, protocol=5, buffer_callback=buffers.append)
            return pickle.loads(data, buffers=[bytes(b.raw()) for b in buffers])

        back = benchmark(roundtrip)
        assert back.count == pa.count
    else:
        benchmark(lambda: [np.add(x, y) for x, y in zip(pa.accumulators, pb.accumulators)])
    benchmark.extra_info["bytes_per_s"] = pa.nbytes / benchmark.stats.stats.median
