"""Clipping in the fold and the robust statistics, each beside its baseline in the same run.

- ``add(clip_norm=C)`` of an 8M-parameter float16 delta (uncompressed, 200
  tensors; C half its norm, so it scales) beside a plain ``add`` of the same
  upload (the target: <= 1.1x its time), and beside a server that
  decodes, takes the norm with NumPy and adds with the factor.
- ``ptth.median`` / ``ptth.trimmed_mean(0.1)`` of 32 float16 delta uploads of a
  25M-parameter model beside a stack-based NumPy version (Flower's FedMedian /
  FedTrimmedAvg: every upload decoded into a list, then per layer a stack of the
  N copies), each in a fresh process: extra_info holds the in-process seconds
  and the peak memory above the uploads' own bytes. The timed figure is the
  whole process (start-up and reading the uploads included).

Nothing here asserts a time. The inputs and baselines are ptth._bench_privacy's,
which ``ptth bench`` also prints.
"""

from __future__ import annotations

import os
import shutil

import pytest

from conftest import BACKENDS
from ptth import _bench_privacy as bp

CLIP_ELEMENTS = 8_000_000
ROBUST_PARAMS = int(os.environ.get("PTTH_BENCH_ROBUST_PARAMS", "25000000"))
ROBUST_CLIENTS = 32


@pytest.fixture(scope="module")
def clip_case():
    return bp.clip_inputs(CLIP_ELEMENTS)


@pytest.mark.parametrize(
    "impl", ["baseline-add", "native-clip", "python-baseline-add", "python-clip"]
)
def test_clip_vs_add(benchmark, clip_case, impl):
    """Clipping in the fold against the same add without it, per engine."""
    tmpl, blob, clip = clip_case
    engine = "python" if impl.startswith("python") else "native"
    benchmark.group = f"add clip_norm f16 8M {engine}"
    agg = BACKENDS[engine].Aggregator(tmpl)
    agg.add(blob)  # the accumulators' pages are touched before timing
    if impl.endswith("clip"):
        result = agg.add(blob, clip_norm=clip)
        assert result.factor < 1  # it does clip
        benchmark(agg.add, blob, clip_norm=clip)
    else:
        benchmark(agg.add, blob)


@pytest.mark.parametrize("impl", ["baseline-numpy-norm", "native-clip"])
def test_clip_vs_numpy_norm(benchmark, clip_case, impl):
    """Clipping in the fold against decode + NumPy norm + add (12.5x before it was fused)."""
    tmpl, blob, clip = clip_case
    benchmark.group = "add clip vs numpy norm f16 8M"
    agg = BACKENDS["native"].Aggregator(tmpl)
    agg.add(blob)
    if impl == "native-clip":
        benchmark(agg.add, blob, clip_norm=clip)
    else:
        benchmark(bp.numpy_clip_add, agg, blob, clip)


@pytest.fixture(scope="module")
def robust_dir(tmp_path_factory):
    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("needs Linux /proc for the peak memory")
    d = tmp_path_factory.mktemp("robust")
    bp.make_uploads(str(d), ROBUST_PARAMS, ROBUST_CLIENTS)
    yield str(d)
    shutil.rmtree(d, ignore_errors=True)  # 1.6 GB of uploads


@pytest.fixture(scope="module")
def robust_results():
    return {}


@pytest.mark.parametrize("stat", ["median", "trimmed_mean"])
@pytest.mark.parametrize("impl", ["baseline-stack", "ptth"])
def test_robust(benchmark, robust_dir, robust_results, stat, impl):
    benchmark.group = f"{stat} {ROBUST_CLIENTS}x{ROBUST_PARAMS / 1e6:g}M f16"
    row = benchmark.pedantic(
        bp.run_robust,
        (stat, "stack" if impl.startswith("baseline") else "ptth", robust_dir, ROBUST_CLIENTS),
        rounds=1,
        iterations=1,
    )
    model_bytes = 4 * ROBUST_PARAMS
    benchmark.extra_info.update(
        {
            "seconds": row["seconds"],  # the statistic alone, in the child
            "peak": row["peak"],  # bytes above the uploads' own, in the child
            "peak_models": round(row["peak"] / model_bytes, 2),  # in float32 models
            "result_bytes": row["result_bytes"],
            "input_bytes": row["input_bytes"],
        }
    )
    robust_results[stat, impl] = row
    other = robust_results.get((stat, "ptth" if impl.startswith("baseline") else "baseline-stack"))
    if other is not None:  # outside the timing: both computed the same statistic
        assert bp.same_result(stat, row, other)
