"""``ptth bench``: the headline ratios measured on the machine at hand.

Each operation is timed beside its baseline on the same input, alternating
the two, and the median of the repeats is reported with the target and
whether it was met. It runs on the active backend (``PTTH_BACKEND``) and
needs nothing outside the installed package. The full suite with history is
``python -m pytest benchmarks`` in the source tree; this is the quick check.

The baselines are the same as the benchmark suite's (benchmarks/reference.py):
a reader built on ``struct`` + ``np.frombuffer`` of ``bytes`` slices, and a
Flower-style FedAvg that keeps a weighted float64 copy of every upload.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from functools import partial, reduce
from typing import Any

import numpy as np
from zlib_ng import zlib_ng

import ptth

# Re-exported: benchmarks/ and tests use them as ptth.bench.model and so on.
from ._bench_inputs import (  # noqa: F401
    _DTYPES,
    _once,
    _status,
    delta,
    model,
    pair,
    reference_loads,
)

# ---- baselines ---------------------------------------------------------------


def flower_decode(blob: bytes, weight: float) -> list:
    """One client's weighted float64 copy of its layers (Flower keeps one per client)."""
    return [v.astype(np.float64) * weight for v in reference_loads(blob).values()]


def flower_reduce(weighted: list, total_weight: float) -> list:
    return [reduce(np.add, layer) / total_weight for layer in zip(*weighted)]


# ---- inputs --------------------------------------------------------------------


# ---- timing --------------------------------------------------------------------


class Row:
    """One line of the table.

    kind "speedup": ratio = base / ours, met when >= target; "time": ratio =
    ours / base, met when <= target; "info": a speed-up with no target;
    "memory": bytes, ratio = base / ours, met when ours <= target x base (or
    as decided by the caller); "bound": bytes against a bound (base), ratio =
    ours / base, met when <= target (default 1); "rate": GB/s, ratio = ours / base, met as
    decided by the caller; "faults": page faults per call, met as decided by
    the caller. `baseline` names what the ratio is taken against, so the
    target reads as a ratio against it; `target_text` replaces the target
    cell of a row whose target is not a plain ratio.
    """

    def __init__(
        self,
        op,
        ours,
        base,
        kind,
        target=None,
        note="",
        met=None,
        baseline="baseline",
        target_text=None,
    ):
        self.op, self.ours, self.base, self.kind = op, ours, base, kind
        self.target, self.note = target, note
        self.baseline, self.target_text = baseline, target_text
        if kind == "bound" and target is None:
            target = 1.0
            self.target = target
        if kind in ("time", "rate", "bound"):
            self.ratio = ours / base if base else None
        else:
            self.ratio = base / ours if ours else None
        if met is None and target is not None and self.ratio is not None:
            if kind == "speedup":
                met = self.ratio >= target
            elif kind == "memory":
                met = ours <= target * base
            else:
                met = self.ratio <= target
        self.met = met

    def _target(self) -> str:
        if self.target_text is not None:
            return self.target_text
        if self.target is None:
            return f"none (vs {self.baseline})" if self.kind == "info" else "-"
        if self.kind == "time":
            return f"<= {self.target:.2f}x {self.baseline}"
        if self.kind in ("memory", "bound"):
            return f"<= {self.target:g}x {self.baseline}"
        return f">= {self.target:g}x {self.baseline}"

    def cells(self) -> list:
        r = self.ratio
        if self.kind in ("memory", "bound"):
            ours, base = f"{self.ours / 1e6:.0f} MB", f"{self.base / 1e6:.0f} MB"
            if self.kind == "bound":
                ratio = "-" if r is None else f"{r:.2f}x"
            else:
                ratio = "-" if r is None else f"{r:.1f}x less"
        elif self.kind == "rate":
            ours, base = f"{self.ours:.2f} GB/s", f"{self.base:.2f} GB/s"
            ratio = "-" if r is None else f"{r:.2f}x"
        elif self.kind == "faults":
            ours, base = f"{self.ours:.1f}/call", f"{self.base:.0f}/call"
            ratio = "-" if r is None else f"{r:.1f}x fewer"
        else:
            ours, base = f"{self.ours * 1e3:.2f} ms", f"{self.base * 1e3:.2f} ms"
            ratio = "-" if r is None else (f"{r:.2f}x time" if self.kind == "time" else f"{r:.1f}x")
        met = "-" if self.met is None else ("met" if self.met else "MISSED")
        return [self.op, ours, base, ratio, self._target(), met, self.note]

    def record(self) -> dict:
        return dict(
            zip(HEADER, self.cells()),
            kind=self.kind,
            ours=self.ours,
            baseline_value=self.base,
            ratio_value=self.ratio,
            met_value=self.met,
        )


class TextRow:
    """A row another module formatted itself (``ptth.dask.dask_rows``) or a table row
    without times (the compression table): its cells as given, its values for the JSON."""

    def __init__(self, cells: dict, values: dict | None = None):
        self._cells = [str(cells.get(k, "")) for k in HEADER]
        self.op = self._cells[0]
        self.values = values or {}

    def cells(self) -> list:
        return list(self._cells)

    def record(self) -> dict:
        return dict(zip(HEADER, self._cells), **self.values)


# ---- the measurements ------------------------------------------------------------


def kernels(x, repeat):
    b = x - np.float32(0.01)
    h = x.astype(np.float16)
    out16 = np.empty(x.shape, np.float16)
    return [
        Row(
            "to_float16",
            *pair(lambda: ptth.to_float16(x), lambda: x.astype(np.float16), repeat),
            "speedup",
            8,
            baseline="astype",
        ),
        Row(
            "to_float16 out=",
            *pair(lambda: ptth.to_float16(x, out=out16), lambda: x.astype(np.float16), repeat),
            "speedup",
            12,
            baseline="astype",
        ),
        Row(
            "to_float32",
            *pair(lambda: ptth.to_float32(h), lambda: h.astype(np.float32), repeat),
            "speedup",
            6,
            baseline="astype",
        ),
        Row(
            'subtract(dtype="float16")',
            *pair(
                lambda: ptth.subtract(x, b, dtype="float16"),
                lambda: (x - b).astype(np.float16),
                repeat,
            ),
            "speedup",
            10,
            baseline="(x-b).astype",
        ),
    ]


def codec(elements, repeat):
    big = model(elements)
    small = model(min(elements, 1 << 18))
    blob_big, blob_small = ptth.dumps(big), ptth.dumps(small)
    # loads touches only the headers: it is timed back to back, as the benchmark suite does
    t_big, base_big = pair(
        lambda: ptth.loads(blob_big), lambda: reference_loads(blob_big), repeat * 5, alternate=False
    )
    t_small, _ = pair(
        lambda: ptth.loads(blob_small),
        lambda: reference_loads(blob_small),
        repeat * 5,
        alternate=False,
    )
    upd = delta(big, seed=1)
    raw = ptth.dumps(upd)
    z6 = zlib_ng.compress(raw, 6)
    ours_z6 = ptth.dumps(upd, compress=6)
    rows = [
        Row(
            "loads, uncompressed, 200 tensors",
            t_big,
            base_big,
            "speedup",
            100,
            baseline="struct reader",
        ),
        Row(
            "  loads at this size vs at 1 MB",
            t_big,
            t_small,
            "time",
            2.0,
            "same 200 tensors: time independent of payload size",
            baseline="loads of 1 MB",
        ),
        Row(
            "loads, zlib level 6",
            *pair(lambda: ptth.loads(z6), lambda: zlib_ng.decompress(z6), repeat),
            "speedup",
            1.2,
            f"{len(raw) / 1e6:.0f} MB f16 delta, vs zlib_ng.decompress",
            baseline="zlib_ng",
        ),
        Row(
            "dumps(compress=6)",
            *pair(lambda: ptth.dumps(upd, compress=6), lambda: zlib_ng.compress(raw, 6), repeat),
            "speedup",
            8,
            # level 6 keeps zlib-ng level 6's ratio within 0.5% (docs/compression.md)
            f"size {len(ours_z6) / len(z6):.4f}x zlib-ng's"
            if len(ours_z6) <= 1.005 * len(z6)
            else f"SIZE {len(ours_z6)} > 1.005 x {len(z6)}",
            baseline="zlib_ng 6",
        ),
    ]
    return rows


def aggregator(x, repeat, clients=8):
    tmpl = {"w": x}
    blobs = [
        ptth.dumps({"w": (x * np.float32(1e-3 * (i + 1))).astype(np.float16)})
        for i in range(clients)
    ]
    agg = ptth.Aggregator(tmpl)
    agg.add(blobs[0], 2.0)  # the accumulator's pages are touched before timing
    acc = np.zeros(x.shape, np.float64)
    offset = len(blobs[0]) - 2 * x.size

    def fold():
        acc.__iadd__(2.0 * np.frombuffer(blobs[0], "<f2", x.size, offset).astype(np.float64))

    rows = [
        Row(
            "Aggregator.add, float16 delta",
            *pair(lambda: agg.add(blobs[0], 2.0), fold, repeat),
            "speedup",
            4,
            baseline="NumPy fold",
        )
    ]
    with cf.ThreadPoolExecutor(2) as pool:
        two = lambda: list(pool.map(agg.add, blobs))  # noqa: E731
        one = lambda: [agg.add(b) for b in blobs]  # noqa: E731
        rows.append(
            Row(
                "two threads calling add",
                *pair(two, one, repeat),
                "speedup",
                1.7,
                f"{clients} uploads; ratio = throughput gain",
                baseline="1 thread",
            )
        )
    return rows


def fedavg(elements, repeat, clients=4):
    tmpl = model(elements)
    uploads = [ptth.dumps(delta(tmpl, seed=10 + i)) for i in range(clients)]
    weights = [float(10 * (i + 1)) for i in range(clients)]

    def ours():
        agg = ptth.Aggregator(tmpl)
        for b, w in zip(uploads, weights):
            agg.add(b, w)
        return agg.mean(dtype="float64")

    def base():
        return flower_reduce([flower_decode(b, w) for b, w in zip(uploads, weights)], sum(weights))

    got, want = ours(), base()
    same = all(np.allclose(g, w, rtol=1e-12, atol=0) for g, w in zip(got.values(), want))
    return [
        Row(
            f"FedAvg round, {clients} uploads",
            *pair(ours, base, max(1, repeat // 2)),
            "info",
            note="vs Flower-style list-then-reduce; no time target"
            + ("" if same else "; MEANS DIFFER"),
            baseline="Flower-style",
        )
    ]


# ---- peak memory (fresh processes) -------------------------------------------------


def _memory_child(impl, clients, directory):
    """Aggregate the uploads in `directory` one file at a time; print the peak above the start."""
    tmpl = ptth.load(os.path.join(directory, "template.ptth"), copy=True)
    paths = [os.path.join(directory, f"upload-{i:04d}.ptth") for i in range(clients)]
    weights = [float(10 + i % 50) for i in range(clients)]
    flower_reduce([flower_decode(ptth.dumps({"w": np.zeros(2, np.float16)}), 1.0)], 1.0)  # warm-up
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    rss0 = _status("VmRSS")
    t0 = time.perf_counter()
    if impl == "ptth":
        agg = ptth.Aggregator(tmpl)
        for path, w in zip(paths, weights):
            with open(path, "rb") as f:
                agg.add(f.read(), w)
        mean = list(agg.mean(dtype="float64").values())
    else:
        weighted = []
        for path, w in zip(paths, weights):
            with open(path, "rb") as f:
                weighted.append(flower_decode(f.read(), w))
        mean = flower_reduce(weighted, sum(weights))
    print(
        json.dumps(
            {
                "peak": _status("VmHWM") - rss0,
                "seconds": time.perf_counter() - t0,
                "checksum": float(sum(float(m.sum()) for m in mean)),
            }
        )
    )


def memory(params, counts):
    """Peak memory of ptth and the Flower-style baseline for each N in `counts`."""
    if not os.path.exists("/proc/self/clear_refs"):
        return [], "peak memory: skipped (needs Linux /proc)"
    results = {}
    with tempfile.TemporaryDirectory(prefix="ptth-bench-") as d:
        tmpl = model(params)
        ptth.dump(tmpl, os.path.join(d, "template.ptth"))
        for i in range(max(counts)):
            ptth.dump(delta(tmpl, seed=1000 + i), os.path.join(d, f"upload-{i:04d}.ptth"))
        for n in counts:
            for impl in ("ptth", "flower"):
                out = subprocess.run(
                    [sys.executable, "-m", "ptth.bench", "--_memory-child", impl, str(n), d],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                results[impl, n] = json.loads(out.stdout.strip().splitlines()[-1])
    model_bytes = 4 * sum(v.size for v in tmpl.values())
    lo, hi = min(counts), max(counts)
    ok = abs(results["ptth", hi]["checksum"] - results["flower", hi]["checksum"]) <= 1e-6 * (
        1 + abs(results["flower", hi]["checksum"])
    )
    # flat: N=lo to N=hi adds less than a quarter of a model
    flat = results["ptth", hi]["peak"] - results["ptth", lo]["peak"] < 0.25 * model_bytes
    row = Row(
        f"peak memory, N={hi} uploads",
        results["ptth", hi]["peak"],
        results["flower", hi]["peak"],
        "memory",
        met=flat and ok,
        note=f"N={lo}: ptth {results['ptth', lo]['peak'] / 1e6:.0f} MB, "
        f"baseline {results['flower', lo]['peak'] / 1e6:.0f} MB; "
        f"model {model_bytes / 1e6:.0f} MB as float32" + ("" if ok else "; MEANS DIFFER"),
        baseline="Flower-style",
        target_text=f"N={hi} - N={lo} < 0.25x model",
    )
    return [row], ""


# ---- the memory path (section memory_path) ------------------------------------------


def _children_env() -> dict:
    # glibc returns arrays above 64 KiB to the kernel when freed, so what the measured
    # step allocates cannot come from memory freed before the reset, unseen
    return dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")


def _child(*args) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "ptth.bench", *map(str, args)],
        capture_output=True,
        text=True,
        check=True,
        env=_children_env(),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _maxrss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _minflt() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _trim() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def loads_copy_row(elements: int, repeat: int) -> list:
    """``ptth.loads(blob, copy=True)`` of a 200-tensor float32 model beside
    ``safetensors.numpy.load`` of the same tensors (both return owned copies)."""
    try:
        from safetensors.numpy import load as st_load
        from safetensors.numpy import save as st_save
    except ImportError:
        return ["loads(copy=True): skipped, safetensors is not installed (pip install safetensors)"]
    tensors = model(elements)
    blob, st = ptth.dumps(tensors), st_save(tensors)
    got, want = ptth.loads(blob, copy=True), st_load(st)
    same = all(np.array_equal(got[k], want[k]) for k in tensors)
    del got, want
    t_ours, t_base = pair(lambda: ptth.loads(blob, copy=True), lambda: st_load(st), repeat)
    return [
        Row(
            "loads(copy=True), 200 tensors",
            t_ours,
            t_base,
            "time",
            1.0,
            f"{len(blob) / 1e6:.0f} MB float32; vs safetensors.numpy.load(bytes)"
            + ("" if same else "; ARRAYS DIFFER"),
            baseline="safetensors",
        )
    ]


def write_records_file(path: str, total_bytes: int, records: int = 20) -> int:
    """`records` float32 records of total_bytes / records each; returns the largest's bytes."""
    n = max(1, total_bytes // records // 4)
    chunk = np.random.default_rng(3).standard_normal(n, dtype=np.float32)
    ptth.dump({f"r{i:02d}": chunk for i in range(records)}, path)
    return chunk.nbytes


def iter_load_consume(path: str) -> int:
    """Every record of `path` through ``ptth.iter_load`` (defaults), each dropped before the
    next is decoded; returns the bytes seen."""
    seen = 0
    for _, a in ptth.iter_load(path):
        seen += a.nbytes
        del a
    return seen


def readinto_consume(path: str, chunk: int = 1 << 20) -> int:
    """A plain ``f.readinto`` loop over `path` into one reused buffer (the read floor)."""
    buf = bytearray(chunk)
    view = memoryview(buf)
    seen = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(view):
            seen += n
    return seen


def _iter_load_child(path: str) -> None:
    """ru_maxrss after - before the iteration, and VmHWM above VmRSS at its start (the
    high-water mark reset, so the imports' own peak cannot hide the iteration's)."""
    _trim()
    reset = os.path.exists("/proc/self/clear_refs")
    if reset:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := VmRSS
        rss0 = _status("VmRSS")
    before = _maxrss()
    iter_load_consume(path)
    growth = _maxrss() - before
    hwm = _status("VmHWM") - rss0 if reset else growth
    print(json.dumps({"growth": growth, "above_start": hwm, "maxrss_before": before}))


def iter_load_rows(total_bytes: int, repeat: int, no_memory: bool) -> list:
    """``iter_load`` of a file of 20 records, warm in the page cache, beside readinto."""
    rows: list = []
    with tempfile.TemporaryDirectory(prefix="ptth-bench-iter-") as d:
        path = os.path.join(d, "records.ptth")
        largest = write_records_file(path, total_bytes)
        size = os.path.getsize(path)
        readinto_consume(path)  # the page cache holds the file before timing
        t_ours, t_base = pair(
            lambda: iter_load_consume(path), lambda: readinto_consume(path), max(3, repeat // 2)
        )
        ours, base = size / t_ours / 1e9, size / t_base / 1e9
        rows.append(
            Row(
                f"iter_load, {size / 1e9:.1f} GB file, warm",
                ours,
                base,
                "rate",
                met=ours >= 4.0,
                note=f"20 records of {largest / 1e6:.0f} MB, copy=True (the default); readinto "
                "of 1 MiB into one reused buffer; target is absolute",
                baseline="readinto",
                target_text=">= 4 GB/s",
            )
        )
        if not no_memory:
            child = _child("--_iter-load-child", path)
            bound = largest + 64 * 2**20
            peak = max(child["growth"], child["above_start"])
            rows.append(
                Row(
                    "  iter_load peak RSS",
                    peak,
                    bound,
                    "bound",
                    note=f"fresh process; ru_maxrss after - before {child['growth'] / 1e6:.0f} "
                    f"MB, VmHWM above the start {child['above_start'] / 1e6:.0f} MB (the larger "
                    f"shown); largest record {largest / 1e6:.0f} MB, dropped before the next",
                    baseline="record+64MiB",
                )
            )
    return rows


def kernel_reference(core_ran: bool, x, repeat) -> list:
    """to_float16 / to_float32 / subtract into fresh arrays are core's kernel rows: referenced
    when core ran in this invocation, else measured by the same function."""
    if core_ran:
        return [
            "to_float16, to_float32, subtract(dtype=float16) into fresh arrays: "
            f"the core section's kernel rows above (same targets, same {x.size:,}-element input)"
        ]
    return [r for r in kernels(x, repeat) if r.op != "to_float16 out="]


def float32_deltas(tmpl: dict, count: int, seed: int = 20) -> list:
    """`count` uncompressed float32 ~N(0, 1e-3) delta blobs of `tmpl`."""
    rng = np.random.default_rng(seed)
    return [
        ptth.dumps(
            {
                k: rng.standard_normal(v.shape, dtype=np.float32) * np.float32(1e-3)
                for k, v in tmpl.items()
            }
        )
        for _ in range(count)
    ]


def add_many_row(params: int, repeat: int, clients: int = 8) -> list:
    """``add_many`` of 8 float32 deltas beside 8 ``add`` calls, each on a fresh aggregator."""
    tmpl = model(params)
    blobs = float32_deltas(tmpl, clients)
    weights = [float(i + 1) for i in range(clients)]

    def ours(agg):
        agg.add_many(blobs, weights)

    def base(agg):
        for b, w in zip(blobs, weights):
            agg.add(b, w)

    a, b = ptth.Aggregator(tmpl), ptth.Aggregator(tmpl)
    results = a.add_many(blobs, weights)
    base(b)
    bad = [r for r in results if isinstance(r, Exception)]
    ma, mb = a.mean(dtype="float64"), b.mean(dtype="float64")
    identical = all(np.array_equal(ma[k], mb[k]) for k in ma)
    del a, b, ma, mb
    t_ours: list[float] = []
    t_base: list[float] = []
    for _ in range(repeat):
        for fn, times in ((base, t_base), (ours, t_ours)):
            agg = ptth.Aggregator(tmpl)  # fresh: construction is not timed
            times.append(_once(partial(fn, agg)))
            del agg
    return [
        Row(
            f"add_many, {clients} f32 deltas",
            float(np.median(t_ours)),
            float(np.median(t_base)),
            "time",
            0.5,
            f"{params / 1e6:g}M params, float64 accumulators, fresh aggregators"
            + ("" if identical else "; NOT BIT-IDENTICAL to add")
            + (f"; {len(bad)} REFUSED" if bad else ""),
            baseline=f"{clients} x add",
        )
    ]


def fault_rows(params: int, adds: int = 8, distinct: int = 4) -> list:
    """Minor page faults per compressed add after the first, beside loads + NumPy."""
    tmpl = model(params)
    blobs = [ptth.dumps(delta(tmpl, seed=30 + i), compress=6) for i in range(distinct)]
    stream = [blobs[i % distinct] for i in range(adds)]

    def faults(step):
        out, secs = [], []
        for b in stream:
            f0, t0 = _minflt(), time.perf_counter()
            step(b)
            secs.append(time.perf_counter() - t0)
            out.append(_minflt() - f0)
        return out, secs

    agg = ptth.Aggregator(tmpl)
    ours, t_ours = faults(lambda b: agg.add(b, 2.0))
    acc = {k: np.zeros(v.shape, np.float64) for k, v in tmpl.items()}

    def numpy_add(b):
        for k, v in ptth.loads(b).items():
            acc[k] += 2.0 * v.astype(np.float64)

    base, t_base = faults(numpy_add)
    mo, mb = float(np.mean(ours[1:])), float(np.mean(base[1:]))
    got = agg.mean(dtype="float64")
    total = 2.0 * adds
    same = all(np.allclose(got[k], acc[k] / total, rtol=1e-12, atol=0) for k in acc)
    zlen = sum(len(b) for b in blobs) / distinct
    return [
        Row(
            "compressed add, faults after 1st",
            mo,
            mb,
            "faults",
            met=mo < 1.0,
            note=f"{params / 1e6:g}M-param f16 zlib-6 deltas ({zlen / 1e6:.0f} MB), {adds} adds; "
            f"first {ours[0]} vs {base[0]}, max after {max(ours[1:])} vs {max(base[1:])}; "
            f"median add {np.median(t_ours[1:]) * 1e3:.0f} ms vs {np.median(t_base[1:]) * 1e3:.0f}"
            " ms; met = mean rounds to 0" + ("" if same else "; MEANS DIFFER"),
            baseline="loads+NumPy",
            target_text="0/add (vs loads+NumPy)",
        )
    ]


def _round_child(kind: str, params: int) -> None:
    """Peak memory of ``agg.mean()`` / ``agg.apply()`` above the process before the
    aggregator existed: expected the accumulators plus the result."""
    tmpl = model(params)
    blob = ptth.dumps(delta(tmpl, seed=1))
    _trim()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    rss0 = _status("VmRSS")
    agg = ptth.Aggregator(tmpl)
    agg.add(blob)
    after_add = _status("VmRSS") - rss0
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    out = agg.mean() if kind == "mean" else agg.apply(lr=1.0)
    peak = _status("VmHWM") - rss0
    print(
        json.dumps(
            {
                "peak": peak,
                "after_add": after_add,
                "result_bytes": sum(v.nbytes for v in out.values()),
            }
        )
    )


def round_rows(params: int, repeat: int, no_memory: bool) -> list:
    """``mean()`` and ``apply(lr=1.0)`` beside one prefaulted copy of the accumulators."""
    tmpl = model(params)
    agg = ptth.Aggregator(tmpl)
    agg.add(ptth.dumps(delta(tmpl, seed=1)))
    n = sum(v.size for v in tmpl.values())
    acc = np.full(n, 1e-3, np.float64)
    prefaulted = np.empty_like(acc)
    np.copyto(prefaulted, acc)
    rows: list = []
    for kind, fn in (("mean", agg.mean), ("apply", partial(agg.apply, lr=1.0))):
        t_ours, t_base = pair(fn, lambda: np.copyto(prefaulted, acc), repeat)
        rows.append(
            Row(
                f"agg.{kind}(){'' if kind == 'mean' else ', lr=1.0'}",
                t_ours,
                t_base,
                "time",
                2.0,
                f"{params / 1e6:g}M params, float32 template, fresh result arrays; vs "
                f"np.copyto of {acc.nbytes / 1e6:.0f} MB float64",
                baseline="acc copyto",
            )
        )
        if not no_memory and os.path.exists("/proc/self/clear_refs"):
            c = _child("--_round-child", kind, params)
            bound = 8 * n + c["result_bytes"]
            rows.append(
                Row(
                    f"  {kind}() peak memory",
                    c["peak"],
                    bound,
                    "bound",
                    target=1.05,
                    note=f"fresh process, VmHWM above the start; accumulators "
                    f"{8 * n / 1e6:.0f} MB (after add {c['after_add'] / 1e6:.0f} MB) "
                    f"+ result {c['result_bytes'] / 1e6:.0f} MB",
                    baseline="acc+result",
                )
            )
    return rows


def memory_path(quick: bool, repeat: int, x, core_ran: bool, no_memory: bool):
    """The memory-path rows, a list at a time (strings are notes to print)."""
    params = 2_000_000 if quick else 25_000_000
    yield loads_copy_row(x.size, repeat)
    yield iter_load_rows(200_000_000 if quick else 2_000_000_000, repeat, no_memory)
    yield kernel_reference(core_ran, x, repeat)
    yield add_many_row(params, repeat)
    yield fault_rows(params)
    yield round_rows(params, repeat, no_memory)


# ---- machine ---------------------------------------------------------------------


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            info = dict(line.split(":", 1) for line in f if ":" in line)
        info = {k.strip(): v.strip() for k, v in info.items()}
        cpu = info.get("model name", cpu)
        if "cpu family" in info:
            cpu += f" (family {info['cpu family']}, model {info.get('model', '?')})"
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    bi = ptth.build_info()
    # prefaulted copy of 100 MB: what the memory system gives one core
    src = np.ones(25_000_000, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    copy_s = min(_once(lambda: np.copyto(dst, src)) for _ in range(5))
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": mem,
        "simd": bi.get("simd", "n/a (no native core)"),
        "backend": ptth.backend,
        "zlib_ng": bi.get("zlib_ng", "n/a"),
        "zlib_ng_python": zlib_ng.ZLIBNG_VERSION,
        "compiler": bi.get("compiler", "n/a"),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "memcpy_gbps": src.nbytes / copy_s / 1e9,
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


# ---- entry points ----------------------------------------------------------------

#: every section, in the order they run
SECTIONS = ("core", "memory_path", "compression", "flower", "dask", "privacy")
#: what each section measures, for its heading
_ABOUT = {
    "core": "kernels, codec, aggregator, FedAvg, peak memory",
    "memory_path": "copies, streaming reads, page faults and passes over the accumulators",
    "compression": "the codecs' table (MB/s of uncompressed bytes) and the compression targets",
    "flower": "ptth.flower.FedAvg beside stock Flower FedAvg",
    "dask": "ptth.dask.aggregate on local worker processes",
    "privacy": "clipping in the fold, median and trimmed mean",
}


def _sections(text: str) -> list:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in SECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown section(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {','.join(SECTIONS)}"
        )
    return [s for s in SECTIONS if s in names]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--size-mb",
        type=float,
        default=100.0,
        help="float32 size of the arrays and models timed (default 100, the targets' size)",
    )
    p.add_argument("--repeat", type=int, default=5, help="timed runs per operation (median)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="4 MB, 3 repeats, small memory run; every section at its small size (minutes)",
    )
    p.add_argument(
        "--sections",
        type=_sections,
        default=list(SECTIONS),
        metavar="LIST",
        help=f"comma list of sections to run (default all: {','.join(SECTIONS)})",
    )
    p.add_argument(
        "--no-memory",
        action="store_true",
        help="skip the peak-memory processes of core and memory_path",
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")


def _core(x, elements, repeat, args):
    yield kernels(x, repeat)
    yield codec(elements, repeat)
    yield aggregator(x, repeat)
    yield fedavg(elements, repeat)
    if not args.no_memory:
        counts = (2, 8) if args.quick else (4, 32)
        params = 250_000 if args.quick else 2_000_000
        mem_rows, note = memory(params, counts)
        yield mem_rows + ([note] if note else [])


#: what each compression target is timed against
_COMPRESSION_BASELINES = {
    "loads, zlib level 6": "zlib_ng",
    "decompress (whole-buffer inflate)": "zlib_ng",
    "deflate level 6, one core": "zlib_ng 6",
    "deflate level 6, threads=2 vs 1": "threads=1",
}
_COMPRESSION_BASE_CODEC = "zlib-ng wheel, level 6"


def _compression(quick):
    raw = compression_rows(quick)
    base = {
        r["input"]: r for r in raw if r["kind"] == "codec" and r["codec"] == _COMPRESSION_BASE_CODEC
    }
    out = []
    for r in raw:
        if r["kind"] == "skipped":
            out.append(f"compression: {r['codec']} left out ({r['note']})")
        elif r["kind"] == "codec":
            b = base.get(r["input"])
            speed = r["deflate_mbps"] / b["deflate_mbps"] if b else None
            inflate = "-" if r["inflate_mbps"] is None else f"{r['inflate_mbps']:.0f}"
            note = f"ratio {r['ratio']:.3f}; inflate {inflate} MB/s"
            if b:
                note += f" (zlib-ng 6: ratio {b['ratio']:.3f}, inflate {b['inflate_mbps']:.0f})"
            if not r["standard_stream"]:
                note += "; not a zlib stream"
            out.append(
                TextRow(
                    {
                        "operation": f"{r['input']}: {r['codec']}",
                        "ptth": f"{r['deflate_mbps']:.0f} MB/s",
                        "baseline": f"{b['deflate_mbps']:.0f} MB/s" if b else "-",
                        "ratio": "-" if speed is None else f"{speed:.2f}x",
                        "target": "none (vs zlib-ng 6)",
                        "met": "-",
                        "note": "deflate speed; " + note,
                    },
                    dict(r, ours=r["deflate_mbps"], ratio_value=speed, met_value=None),
                )
            )
        else:
            kind = "info" if r["target"] is None else "speedup"
            out.append(
                Row(
                    r["op"],
                    r["ours"],
                    r["base"],
                    kind,
                    r["target"],
                    r["note"],
                    met=r["met"],
                    baseline=_COMPRESSION_BASELINES.get(r["op"], "baseline"),
                )
            )
    yield out


def _flower(quick):
    try:
        from ptth.flower.bench import flower_rows
    except ImportError as exc:
        yield [f'flower: skipped, flwr is not importable ({exc}); pip install "ptth[flower]"']
        return
    import logging

    flwr_log = logging.getLogger("flwr")
    level = flwr_log.level
    flwr_log.setLevel(logging.WARNING)  # not an INFO line per aggregate_train in the table
    try:
        raw = flower_rows(quick)
    finally:
        flwr_log.setLevel(level)
    rows = []
    for r in raw:
        r = dict(r)
        if r["kind"] == "memory" and r.get("target") is None:
            r["target"] = 1.0  # its met: ours <= stock's
        rows.append(Row(**r, baseline="stock FedAvg"))
    yield rows


def _dask(quick):
    try:
        from ptth.dask import dask_rows
    except ImportError as exc:
        yield [
            f'dask: skipped, dask.distributed is not importable ({exc}); pip install "ptth[dask]"'
        ]
        return
    rows = []
    for r in dask_rows(quick):
        cells = dict(r)
        if cells.get("target") in (None, "-"):
            cells["target"] = "none (vs 1 process)"
        rows.append(TextRow(cells, {k: r[k] for k in r if k not in HEADER}))
    yield rows


_PRIVACY_BASELINES = {
    "add(clip_norm=)": "add alone",
    "  vs decode + NumPy norm + add": "NumPy clip",
}


def _privacy(quick):
    from ptth._bench_privacy import privacy_rows

    yield [
        Row(**r, baseline=_PRIVACY_BASELINES.get(r["op"], "NumPy stack"))
        for r in privacy_rows(quick)
    ]


def run(args) -> int:
    size_mb, repeat = (4.0, 3) if args.quick else (args.size_mb, args.repeat)
    elements = max(1024, int(size_mb * 1e6 / 4))
    sections = getattr(args, "sections", None) or list(SECTIONS)
    t0 = time.perf_counter()
    m = machine()
    simd = m["simd"] if m["backend"] == "native" else f"unused (the native core has {m['simd']})"
    print(
        f"ptth bench: backend {m['backend']}, SIMD {simd}, zlib-ng {m['zlib_ng']} "
        f"(zlib_ng module {m['zlib_ng_python']}), {m['compiler']}"
    )
    print(
        f"machine: {m['cpu']}, {m['cores']} cores"
        + (f", {m['memory_bytes'] / 2**30:.0f} GiB" if m["memory_bytes"] else "")
        + f"; prefaulted 100 MB copy {m['memcpy_gbps']:.1f} GB/s on one core"
        + (f"; load average {m['loadavg'][0]:.2f}" if m["loadavg"] else "")
    )
    print(
        f"inputs: {size_mb:g} MB of float32 ({elements:,} elements), median of {repeat} runs; "
        f"sections {','.join(sections)}\n",
        flush=True,
    )
    print(format_table([]), flush=True)
    rows, notes, timing = [], [], {}

    def show(section, new):
        for r in new:
            if isinstance(r, str):
                print(f"  {r}", flush=True)
                notes.append({"section": section, "note": r})
            else:
                print(format_line(r.cells()), flush=True)
                rows.append((section, r))

    x = np.random.default_rng(0).standard_normal(elements, dtype=np.float32)
    for section in sections:
        print(f"\n[{section}] {_ABOUT[section]}", flush=True)
        ts = time.perf_counter()
        if section == "core":
            parts = _core(x, elements, repeat, args)
        elif section == "memory_path":
            parts = memory_path(args.quick, repeat, x, "core" in sections, args.no_memory)
        elif section == "compression":
            parts = _compression(args.quick)
        elif section == "flower":
            parts = _flower(args.quick)
        elif section == "dask":
            parts = _dask(args.quick)
        else:
            parts = _privacy(args.quick)
        for part in parts:
            show(section, part)
        timing[section] = time.perf_counter() - ts
    del x
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(
        f"\n{time.perf_counter() - t0:.0f} s ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in timing.items())
        + ")"
        + (f"; load average at the end {load[0]:.2f}" if load else "")
        + "; targets as in benchmarks/README.md (100 MB of float32). "
        + "Times on a shared machine are noisy: "
        "read each beside its baseline of the same run. Full suite: python -m pytest benchmarks"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": m,
                    "size_mb": size_mb,
                    "repeat": repeat,
                    "sections": sections,
                    "section_seconds": timing,
                    "loadavg_at_end": load,
                    "rows": [dict(r.record(), section=s) for s, r in rows],
                    "notes": notes,
                },
                f,
                indent=1,
            )
    return 0


HEADER = ["operation", "ptth", "baseline", "ratio", "target", "met", "note"]
WIDTHS = [40, 11, 11, 12, 24, 6]


def format_line(cells) -> str:
    """Fixed widths, so rows can be printed as they are measured."""
    text = "  ".join(
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, WIDTHS))
    )
    return text + (f"  {cells[6]}" if len(cells) > 6 and cells[6] else "")


def format_table(rows) -> str:
    lines = [format_line(HEADER[:6]), format_line(["-" * w for w in WIDTHS])]
    return "\n".join(lines + [format_line(r.cells()) for r in rows])


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--_memory-child"]:
        _memory_child(argv[1], int(argv[2]), argv[3])
        return 0
    if argv[:1] == ["--_iter-load-child"]:
        _iter_load_child(argv[1])
        return 0
    if argv[:1] == ["--_round-child"]:
        _round_child(argv[1], int(argv[2]))
        return 0
    p = argparse.ArgumentParser(prog="ptth bench", description=__doc__.split("\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


# ---- compression (the codecs' table) -------------------------------------------------


def _libdeflate_inflate(module, z, size):
    return module.zlib_decompress(z, size)


def compression_rows(quick: bool) -> list[dict]:
    """Every codec of the compression table, and the compression targets, on the same inputs.

    Inputs: a float16 and a float32 ~N(0, 1e-3) delta and float32 model
    weights of one 200-tensor model (4M parameters when ``quick``, else 25M).
    Each codec row is ``{"kind": "codec", "codec", "input", "ratio",
    "deflate_mbps", "inflate_mbps", "standard_stream"}`` (MB/s of uncompressed
    bytes, medians); each target row is ``{"kind": "target", "op", "ours",
    "base", "ratio", "target", "met", "note"}`` (seconds; ratio = base / ours).
    Peers that are not installed (``isal``, ``deflate``, ``zstandard``) are
    left out with a ``{"kind": "skipped", ...}`` row. Times are taken on the
    machine as it is: read them beside their baselines, which ran in the same call.

    Example::

        for row in ptth.bench.compression_rows(quick=True):
            print(row)
    """
    repeat = 3 if quick else 5
    params = 4_000_000 if quick else 25_000_000
    tmpl = model(params)
    rng = np.random.default_rng(5)
    d32 = {
        k: rng.standard_normal(v.shape, dtype=np.float32) * np.float32(1e-3)
        for k, v in tmpl.items()
    }
    inputs = {
        "f16 delta": ptth.dumps(d32, dtype="float16"),
        "f32 delta": ptth.dumps(d32),
        "weights": ptth.dumps(tmpl),
    }
    del tmpl, d32

    def median(fn, n=repeat):
        fn()
        return float(np.median([_once(fn) for _ in range(n)]))

    codecs: list[tuple[str, Any, Any, bool]] = [
        ("ptth.compress 6", lambda d: ptth.compress(d, 6), ptth.decompress, True),
        ("ptth.compress 6, threads=0", lambda d: ptth.compress(d, 6, threads=0), None, True),
        ("zlib-ng wheel, level 6", lambda d: zlib_ng.compress(d, 6), zlib_ng.decompress, True),
        ("zlib-ng wheel, level 1", lambda d: zlib_ng.compress(d, 1), zlib_ng.decompress, True),
    ]
    rows: list[dict[str, Any]] = []
    try:
        from isal import isal_zlib

        codecs += [
            (
                f"python-isal, level {lv}",
                lambda d, lv=lv: isal_zlib.compress(d, lv),
                isal_zlib.decompress,
                True,
            )
            for lv in (1, 2)
        ]
    except ImportError:
        rows.append({"kind": "skipped", "codec": "python-isal", "note": "isal not installed"})
    try:
        import deflate as libdeflate_module

        libdeflate: Any = libdeflate_module

        codecs.append(
            (
                "libdeflate (deflate), level 6",
                lambda d: libdeflate.zlib_compress(d, 6),
                "libdeflate",
                True,
            )
        )
    except ImportError:
        libdeflate = None
        rows.append({"kind": "skipped", "codec": "libdeflate", "note": "deflate not installed"})
    try:
        import zstandard

        codecs.append(
            (
                "zstd level 1 (reference only)",
                lambda d: zstandard.ZstdCompressor(level=1).compress(d),
                lambda z: zstandard.ZstdDecompressor().decompress(z),
                False,
            )
        )
    except ImportError:
        rows.append({"kind": "skipped", "codec": "zstd", "note": "zstandard not installed"})

    for name, data in inputs.items():
        for codec, comp, decomp, standard in codecs:
            z = comp(data)
            t_c = median(partial(comp, data))
            if decomp == "libdeflate":
                decomp = partial(_libdeflate_inflate, libdeflate, size=len(data))
            t_d = median(partial(decomp, z)) if decomp else None
            rows.append(
                {
                    "kind": "codec",
                    "codec": codec,
                    "input": name,
                    "ratio": len(data) / len(z),
                    "deflate_mbps": len(data) / t_c / 1e6,
                    "inflate_mbps": len(data) / t_d / 1e6 if t_d else None,
                    "standard_stream": standard,
                }
            )

    data = inputs["f16 delta"]
    z = zlib_ng.compress(data, 6)

    def target(op, fn_ours, fn_base, goal, note=""):
        ours, base = pair(fn_ours, fn_base, repeat)
        rows.append(
            {
                "kind": "target",
                "op": op,
                "ours": ours,
                "base": base,
                "ratio": base / ours,
                "target": goal,
                "met": None if goal is None else base / ours >= goal,
                "note": note,
            }
        )

    mb = f"{len(data) / 1e6:.0f} MB f16 delta"
    target(
        "loads, zlib level 6",
        lambda: ptth.loads(z),
        lambda: zlib_ng.decompress(z),
        1.2,
        mb + "; speed-up over zlib_ng.decompress",
    )
    target(
        "decompress (whole-buffer inflate)",
        lambda: ptth.decompress(z),
        lambda: zlib_ng.decompress(z),
        None,
        mb + "; the inflate loads and Aggregator.add get once wired; includes the copy to bytes",
    )
    ours6 = ptth.compress(data, 6)
    ratio_note = (
        f"ratio {len(data) / len(ours6):.4f} vs zlib-ng 6 {len(data) / len(z):.4f} "
        f"({(len(ours6) / len(z) - 1) * 100:+.2f}% size)"
    )
    target(
        "deflate level 6, one core",
        lambda: ptth.compress(data, 6, threads=1),
        lambda: zlib_ng.compress(data, 6),
        8.0,
        mb + "; " + ratio_note,
    )
    big = inputs["weights"]
    target(
        "deflate level 6, threads=2 vs 1",
        lambda: ptth.compress(big, 6, threads=2),
        lambda: ptth.compress(big, 6, threads=1),
        1.8,
        f"{len(big) / 1e6:.0f} MB float32 weights; cores here: {os.cpu_count()}",
    )
    return rows


if __name__ == "__main__":
    sys.exit(main())
