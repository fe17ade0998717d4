"""ptth.flower.FedAvg beside stock Flower FedAvg on the same replies (the Flower row).

Target: <= stock's time and peak memory on 8 full-weight float32 replies of a
95 MB model; on float16 PTTH replies, half the bytes held and exact float64
results. Measured and reported (the summary at the end of the run and each
case's extra_info), never asserted. The inputs and the peak-memory child
process are ptth.flower.bench's, which ``ptth bench`` uses too.
"""

from __future__ import annotations

import pytest

from ptth.flower import bench

SCENARIOS = {
    "f32": ["stock", "ptth", "ptth-f32acc"],
    "f16": ["stock"],
    "ptth-f16": ["ptth"],
    "ptth-f16-zlib": ["ptth"],
}
_cache: dict = {}
_lines: list = []


def inputs(name):
    """One scenario's replies at a time: 8 replies of a 95 MB model are ~0.8 GB."""
    if name not in _cache:
        _cache.clear()
        _cache[name] = bench.scenario(name, bench.MODEL_BYTES)
    return _cache[name]


CASES = [(name, impl) for name, impls in SCENARIOS.items() for impl in impls]
# "baseline" in a case id makes the suite's summary print every case's ratio to it.
IDS = [f"{n}-{'baseline-' if i == 'stock' else ''}{i}" for n, i in CASES]


@pytest.mark.parametrize("name, impl", CASES, ids=IDS)
def test_flower_round(benchmark, name, impl):
    glob, msgs, ref, held = inputs(name)
    fn, kw = bench.IMPLS[impl]
    benchmark.group = (
        "flower FedAvg 8 float32 replies 95MB"
        if name == "f32"
        else "flower FedAvg 8 float16 replies 95MB"
    )
    result = benchmark.pedantic(fn, (glob, msgs), kw, rounds=3, warmup_rounds=1)
    err, ulp = bench.max_error(result, ref), bench.max_ulps(result, ref)
    benchmark.extra_info.update(
        scenario=name, impl=impl, bytes_held=held, max_error=err, max_ulps=ulp
    )
    extra = ""
    if name == "f32" and impl != "stock":
        fold, apply_s = bench.apply_share(glob, msgs, kw["accumulate"])
        benchmark.extra_info.update(fold_seconds=fold, apply_seconds=apply_s)
        extra = f"; of a like round: folds {fold * 1e3:.0f} ms, apply() {apply_s * 1e3:.0f} ms"
    _lines.append(
        f"{name:<14} {impl:<12} median {benchmark.stats.stats.median * 1e3:7.0f} ms  "
        f"bytes held {held / 1e6:5.0f} MB  max error {err:.1e}"
        + (f" ({ulp:.2f} ulp)" if ulp < 2 else "")  # in ulps where that says something
        + extra
    )


@pytest.mark.skipif(not bench.memory_available(), reason="needs Linux /proc/self/clear_refs")
@pytest.mark.parametrize("name, impl", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_flower_peak_memory(benchmark, name, impl):
    """Peak memory of aggregate_train in a fresh process (VmHWM above VmRSS before the call)."""
    _cache.clear()
    benchmark.group = "flower FedAvg peak memory (fresh process; time incl. set-up)"
    row = benchmark.pedantic(
        bench.peak_memory, (name, impl, bench.MODEL_BYTES), rounds=1, iterations=1
    )
    # the keys the suite's summary prints peak memory from
    model = bench.MODEL_BYTES
    benchmark.extra_info.update(
        row, peak_total=row["peak"], peak_adds=row["peak"], models=row["peak"] / model
    )
    _lines.append(
        f"{name:<14} {impl:<12} peak {row['peak'] / 1e6:7.0f} MB above the replies "
        f"({row['held'] / 1e6:.0f} MB held); that call {row['seconds'] * 1e3:.0f} ms"
    )


def test_flower_float16_error_200_uploads(benchmark):
    """The overflow case: 200 float16 uploads around 1.0, stock in float16 against ptth."""
    benchmark.group = "flower float16 error, 200 uploads"
    out = benchmark.pedantic(bench.float16_error_200, rounds=1, iterations=1)
    benchmark.extra_info.update(out)
    _lines.append(
        f"200 f16 uploads around 1.0 ({out['elements']:,} elements): max error stock "
        f"{out['stock']:.1e}, ptth {out['ptth_float64_model']:.1e} (float64 model), "
        f"{out['ptth_float32_model']:.1e} = {out['ptth_float32_model_ulps']:.2f} ulp "
        "(float32 model)"
    )


def test_flower_summary(capsys):
    """Prints what the cases above measured (runs last: pytest keeps the file's order)."""
    with capsys.disabled():
        print("\n-- ptth.flower.FedAvg vs stock Flower FedAvg (same replies) --")
        for line in _lines:
            print(line)
    _cache.clear()
