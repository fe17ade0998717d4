"""The memory path: copies, streaming reads, page faults and passes over the accumulators.

Each case runs beside its baseline on the same input in the same run (the
inputs and helpers are ``ptth.bench``'s, which ``ptth bench --sections
memory_path`` also prints). Targets (reported in extra_info and by the
summary's ratio, never asserted):

- ``loads(blob, copy=True)`` of a 200-tensor 100 MB float32 model: <= 1.0x the
  time of ``safetensors.numpy.load`` of the same tensors (bytes).
- ``iter_load(path)`` (default arguments) of a 2 GB file of 20 records, warm in
  the page cache: >= 4 GB/s, beside a plain ``readinto`` loop over the same file
  into one reused 1 MiB buffer; peak RSS of a fresh process iterating it <= the
  largest record + 64 MiB (extra_info of the peak case).
- ``to_float16`` / ``to_float32`` / ``subtract(dtype="float16")`` into fresh
  arrays: test_kernels.py's groups (not repeated here).
- ``Aggregator.add_many`` of 8 uncompressed float32 deltas (25M parameters,
  float64 accumulators): <= 0.5x the time of 8 ``add`` calls, each on a fresh
  aggregator.
- A stream of float16 zlib-6 deltas into one aggregator: 0 minor page faults per
  add after the first (extra_info), beside ``ptth.loads`` + a NumPy
  multiply-add into float64 accumulators.
- ``mean()`` / ``apply(lr=1.0)`` of 25M parameters (float32 template): <= 2x the
  time of one prefaulted ``np.copyto`` of the float64 accumulators; peak memory
  of a fresh process (extra_info) against accumulators + result.

Sizes: PTTH_BENCH_MEMORY_PARAMS (default 25M) and PTTH_BENCH_ITER_BYTES
(default 2e9) shrink them for a quick run.
"""

from __future__ import annotations

import os
import shutil
from functools import partial

import numpy as np
import pytest

from conftest import BACKENDS
from ptth import bench as pb

PARAMS = int(os.environ.get("PTTH_BENCH_MEMORY_PARAMS", "25000000"))
ITER_BYTES = int(float(os.environ.get("PTTH_BENCH_ITER_BYTES", "2e9")))
CLIENTS = 8
native = BACKENDS["native"]
SIZE = f"{PARAMS * 4 / 1e6:.0f}MB"


@pytest.fixture(scope="module")
def template():
    return pb.model(PARAMS)


@pytest.mark.parametrize("impl", ["baseline-safetensors", "native"])
def test_loads_copy(benchmark, template, impl):
    st = pytest.importorskip("safetensors.numpy")
    benchmark.group = f"loads copy=True 200 tensors {SIZE}"
    if impl.startswith("baseline"):
        data = st.save(template)
        benchmark(st.load, data)
    else:
        blob = native.dumps(template)
        benchmark(partial(native.loads, copy=True), blob)
        benchmark.extra_info["target"] = "<= 1.0x safetensors.numpy.load's time"


@pytest.fixture(scope="module")
def records_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("iter_load")
    path = str(d / "records.ptth")
    largest = pb.write_records_file(path, ITER_BYTES)
    pb.readinto_consume(path)  # warm: the page cache holds it before any timing
    yield path, largest
    shutil.rmtree(d, ignore_errors=True)  # 2 GB; pytest would keep three runs' worth


@pytest.mark.parametrize("impl", ["baseline-readinto", "native"])
def test_iter_load(benchmark, records_file, impl):
    path, _ = records_file
    size = os.path.getsize(path)
    benchmark.group = f"iter_load {size / 1e9:.1f}GB warm"
    fn = pb.readinto_consume if impl.startswith("baseline") else pb.iter_load_consume
    benchmark.pedantic(fn, (path,), rounds=5, warmup_rounds=1)
    benchmark.extra_info["gbps_median"] = size / benchmark.stats.stats.median / 1e9
    if impl == "native":
        benchmark.extra_info["target"] = ">= 4 GB/s"


def test_iter_load_peak_rss(benchmark, records_file):
    path, largest = records_file
    benchmark.group = "iter_load peak RSS"
    child = benchmark.pedantic(pb._child, ("--_iter-load-child", path), rounds=1, iterations=1)
    bound = largest + 64 * 2**20
    peak = max(child["growth"], child["above_start"])
    benchmark.extra_info.update(
        dict(child, largest_record=largest, bound=bound, peak=peak, met=peak <= bound)
    )


@pytest.fixture(scope="module")
def f32_deltas(template):
    return pb.float32_deltas(template, CLIENTS)


@pytest.mark.parametrize("impl", ["baseline-8adds", "native-add_many"])
def test_add_many(benchmark, template, f32_deltas, impl):
    benchmark.group = f"Aggregator.add_many {CLIENTS} f32 deltas {SIZE}"
    weights = [float(i + 1) for i in range(CLIENTS)]

    def fresh():  # construction is not timed; both start from untouched accumulators
        return (native.Aggregator(template),), {}

    if impl.startswith("baseline"):

        def run(agg):
            for b, w in zip(f32_deltas, weights):
                agg.add(b, w)

    else:

        def run(agg):
            agg.add_many(f32_deltas, weights)

        benchmark.extra_info["target"] = "<= 0.5x the time of 8 add calls"
    benchmark.pedantic(run, setup=fresh, rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("impl", ["baseline-loads-numpy", "native"])
def test_compressed_add_faults(benchmark, template, impl, adds=8, distinct=4):
    benchmark.group = f"compressed add stream {SIZE}"
    blobs = [native.dumps(pb.delta(template, seed=30 + i), compress=6) for i in range(distinct)]
    stream = [blobs[i % distinct] for i in range(adds)]
    if impl.startswith("baseline"):
        acc = {k: np.zeros(v.shape, np.float64) for k, v in template.items()}

        def step(b):
            for k, v in native.loads(b).items():
                acc[k] += 2.0 * v.astype(np.float64)

    else:
        agg = native.Aggregator(template)
        step = partial(agg.add, weight=2.0)

    def run():
        faults = []
        for b in stream:
            f0 = pb._minflt()
            step(b)
            faults.append(pb._minflt() - f0)
        return faults

    faults = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(
        faults=faults, faults_per_add_after_first=float(np.mean(faults[1:])), adds=adds
    )
    if impl == "native":
        benchmark.extra_info["target"] = "0 faults per add after the first"


@pytest.fixture(scope="module")
def round_case(template):
    agg = native.Aggregator(template)
    agg.add(native.dumps(pb.delta(template, seed=1)))
    acc = np.full(sum(v.size for v in template.values()), 1e-3, np.float64)
    prefaulted = np.empty_like(acc)
    np.copyto(prefaulted, acc)
    return agg, acc, prefaulted


@pytest.mark.parametrize("impl", ["baseline-copyto", "native"])
@pytest.mark.parametrize("op", ["mean", "apply"])
def test_round(benchmark, round_case, op, impl):
    agg, acc, prefaulted = round_case
    benchmark.group = f"agg.{op} {SIZE}"
    if impl.startswith("baseline"):
        benchmark(np.copyto, prefaulted, acc)
        return
    benchmark(agg.mean if op == "mean" else partial(agg.apply, lr=1.0))
    benchmark.extra_info["target"] = "<= 2x the time of the prefaulted accumulator copy"
    if os.path.exists("/proc/self/clear_refs"):
        c = pb._child("--_round-child", op, PARAMS)
        bound = acc.nbytes + c["result_bytes"]
        benchmark.extra_info.update(
            dict(c, accumulators_plus_result=bound, peak_over_bound=c["peak"] / bound)
        )
