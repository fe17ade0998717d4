"""Peak memory while aggregating N uploads, recorded in extra_info (see memory.py).

Each case runs one fresh process that reads N float16 delta uploads of a
4M-parameter model from disk one at a time and averages them: ptth's
Aggregator on either backend, or the Flower-style list-then-reduce. The timed
figure is that whole process (start-up included); the numbers that matter
are extra_info's peak_adds / peak_total (bytes above the process before
aggregating) and models (peak_total / the float32 model size). the
target: ptth about one model plus accumulators, flat in N; the baseline grows
with N. Nothing here asserts a size or a time; the summary prints them.
"""

from __future__ import annotations

import shutil

import pytest

import memory

PARAMS = 4_000_000
CLIENTS = [8, 32, 128]


@pytest.fixture(scope="module")
def upload_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("uploads")
    yield memory.make_uploads(d, PARAMS, max(CLIENTS))
    shutil.rmtree(d, ignore_errors=True)  # 1 GB of uploads; pytest would keep three runs' worth


@pytest.fixture(scope="module")
def results():
    return []


@pytest.mark.parametrize("clients", CLIENTS)
@pytest.mark.parametrize("impl", list(memory.IMPLS))
def test_peak_memory(benchmark, upload_dir, results, impl, clients):
    benchmark.group = f"peak memory, {clients} uploads"
    row = benchmark.pedantic(memory.run_child, (impl, clients, upload_dir), rounds=1, iterations=1)
    benchmark.extra_info.update(
        {k: row[k] for k in ("peak_adds", "peak_total", "hwm", "seconds", "model_bytes", "clients")}
    )
    benchmark.extra_info["models"] = round(row["peak_total"] / row["model_bytes"], 2)
    results.append(row)
    memory.check(results)  # every implementation's mean agrees for the same N
