"""``ptth bench``: DESIGN.md's headline ratios measured on the machine at hand.

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
import struct
import subprocess
import sys
import tempfile
import time
from functools import partial, reduce

import numpy as np
from zlib_ng import zlib_ng

import ptth

_DTYPES = {0: np.dtype("<f4"), 1: np.dtype("<f8"), 2: np.dtype("<i4"), 3: np.dtype("<f2")}


# ---- baselines ---------------------------------------------------------------


def reference_loads(blob: bytes) -> dict:
    """A PTTH reader as one writes it by hand: struct on the header, frombuffer on payloads."""
    magic, version, count = struct.unpack(">4sII", blob[:12])
    if magic != b"PTTH" or version != 1:
        raise ValueError("not a PTTH v1 blob")
    pos, out = 12, {}
    for _ in range(count):
        (name_len,) = struct.unpack(">I", blob[pos : pos + 4])
        name = blob[pos + 4 : pos + 4 + name_len].decode("utf-8")
        pos += 4 + name_len
        (ndim,) = struct.unpack(">I", blob[pos : pos + 4])
        dims = struct.unpack(f">{ndim}I", blob[pos + 4 : pos + 4 + 4 * ndim])
        pos += 4 + 4 * ndim
        code, data_len = struct.unpack(">II", blob[pos : pos + 8])
        payload = blob[pos + 8 : pos + 8 + data_len]
        pos += 8 + data_len
        out[name] = np.frombuffer(payload, _DTYPES[code]).reshape(dims)
    if pos != len(blob):
        raise ValueError("trailing bytes" if pos < len(blob) else "truncated")
    return out


def flower_decode(blob: bytes, weight: float) -> list:
    """One client's weighted float64 copy of its layers (Flower keeps one per client)."""
    return [v.astype(np.float64) * weight for v in reference_loads(blob).values()]


def flower_reduce(weighted: list, total_weight: float) -> list:
    return [reduce(np.add, layer) / total_weight for layer in zip(*weighted)]


# ---- inputs --------------------------------------------------------------------


def model(elements: int, tensors: int = 200, seed: int = 0) -> dict:
    """A float32 model of `tensors` parameters (weight matrices and their biases)."""
    rng = np.random.default_rng(seed)
    layers = tensors // 2
    shares = [1 + i % 4 for i in range(layers)]
    unit = elements / sum(shares)
    cols = 64 if elements < 1 << 22 else 512
    out = {}
    for i, share in enumerate(shares):
        rows = max(1, int(unit * share) // (cols + 1))
        out[f"layers.{i}.weight"] = rng.standard_normal(
            (rows, cols), dtype=np.float32
        ) * np.float32(0.05)
        out[f"layers.{i}.bias"] = rng.standard_normal(rows, dtype=np.float32) * np.float32(0.05)
    return out


def delta(template: dict, seed: int) -> dict:
    """A quantized client update: ~N(0, 1e-3) per element as float16 (compresses like real ones)."""
    rng = np.random.default_rng(seed)
    return {
        k: (rng.standard_normal(v.shape, dtype=np.float32) * np.float32(1e-3)).astype(np.float16)
        for k, v in template.items()
    }


# ---- timing --------------------------------------------------------------------


def _once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def pair(ours, base, repeat: int, alternate: bool = True) -> tuple:
    """Median times of `ours` and `base` after one warm-up call each.

    Alternating spreads a shared machine's drift over both; `alternate=False`
    runs each back to back, so a cache-sized operation is not timed right
    after a baseline that streamed 100 MB through the caches.
    """
    ours()
    base()
    if not alternate:
        return (
            float(np.median([_once(ours) for _ in range(repeat)])),
            float(np.median([_once(base) for _ in range(repeat)])),
        )
    t_ours, t_base = [], []
    for _ in range(repeat):
        t_base.append(_once(base))
        t_ours.append(_once(ours))
    return float(np.median(t_ours)), float(np.median(t_base))


class Row:
    """One line of the table.

    kind "speedup": ratio = base / ours, met when >= target; "time": ratio =
    ours / base, met when <= target; "info": a speed-up with no target;
    "memory": bytes, ratio = base / ours, met as decided by the caller.
    """

    def __init__(self, op, ours, base, kind, target=None, note="", met=None):
        self.op, self.ours, self.base, self.kind = op, ours, base, kind
        self.target, self.note = target, note
        self.ratio = ours / base if kind == "time" else base / ours
        if met is None and target is not None:
            met = self.ratio >= target if kind == "speedup" else self.ratio <= target
        self.met = met

    def cells(self) -> list:
        if self.kind == "memory":
            ours, base = f"{self.ours / 1e6:.0f} MB", f"{self.base / 1e6:.0f} MB"
            ratio, target = f"{self.ratio:.1f}x less", "flat in N"
        else:
            ours, base = f"{self.ours * 1e3:.2f} ms", f"{self.base * 1e3:.2f} ms"
            ratio = f"{self.ratio:.2f}x time" if self.kind == "time" else f"{self.ratio:.1f}x"
            if self.kind == "time":
                target = f"<= {self.target:.2f}x time"
            elif self.kind == "speedup":
                target = f">= {self.target:g}x"
            else:
                target = "-"
        met = "-" if self.met is None else ("met" if self.met else "MISSED")
        return [self.op, ours, base, ratio, target, met, self.note]


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
        ),
        Row(
            "to_float16 out=",
            *pair(lambda: ptth.to_float16(x, out=out16), lambda: x.astype(np.float16), repeat),
            "speedup",
            12,
        ),
        Row(
            "to_float32",
            *pair(lambda: ptth.to_float32(h), lambda: h.astype(np.float32), repeat),
            "speedup",
            6,
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
        Row("loads, uncompressed, 200 tensors", t_big, base_big, "speedup", 100),
        Row(
            "  loads at this size vs at 1 MB",
            t_big,
            t_small,
            "time",
            2.0,
            "same 200 tensors: time independent of payload size",
        ),
        Row(
            "loads, zlib level 6",
            *pair(lambda: ptth.loads(z6), lambda: zlib_ng.decompress(z6), repeat),
            "speedup",
            1.2,
            f"{len(raw) / 1e6:.0f} MB f16 delta, vs zlib_ng.decompress",
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
        )
    ]


# ---- peak memory (fresh processes) -------------------------------------------------


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


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
    )
    return [row], ""


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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--size-mb",
        type=float,
        default=100.0,
        help="float32 size of the arrays and models timed (default 100, as DESIGN.md)",
    )
    p.add_argument("--repeat", type=int, default=5, help="timed runs per operation (median)")
    p.add_argument(
        "--quick", action="store_true", help="4 MB, 3 repeats, small memory run (seconds)"
    )
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")


def run(args) -> int:
    size_mb, repeat = (4.0, 3) if args.quick else (args.size_mb, args.repeat)
    elements = max(1024, int(size_mb * 1e6 / 4))
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
        f"inputs: {size_mb:g} MB of float32 ({elements:,} elements), median of {repeat} runs\n",
        flush=True,
    )
    print(format_table([]), flush=True)
    rows = []

    def show(new):
        for r in new:
            print(format_line(r.cells()), flush=True)
        rows.extend(new)

    x = np.random.default_rng(0).standard_normal(elements, dtype=np.float32)
    show(kernels(x, repeat))
    show(codec(elements, repeat))
    show(aggregator(x, repeat))
    del x
    show(fedavg(elements, repeat))
    if not args.no_memory:
        counts = (2, 8) if args.quick else (4, 32)
        params = 250_000 if args.quick else 2_000_000
        mem_rows, note = memory(params, counts)
        show(mem_rows)
        if note:
            print(note)
    print(
        f"\n{time.perf_counter() - t0:.0f} s; targets from DESIGN.md (100 MB of float32). "
        "Full suite: python -m pytest benchmarks"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": m,
                    "size_mb": size_mb,
                    "repeat": repeat,
                    "rows": [
                        dict(
                            zip(HEADER, r.cells()),
                            ours=r.ours,
                            baseline_value=r.base,
                            ratio_value=r.ratio,
                            met_value=r.met,
                        )
                        for r in rows
                    ],
                },
                f,
                indent=1,
            )
    return 0


HEADER = ["operation", "ptth", "baseline", "ratio", "target", "met", "note"]
WIDTHS = [34, 10, 10, 12, 14, 6]


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
    p = argparse.ArgumentParser(prog="ptth bench", description=__doc__.split("\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())


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

    codecs = [
        ("ptth.compress 6", lambda d: ptth.compress(d, 6), ptth.decompress, True),
        ("ptth.compress 6, threads=0", lambda d: ptth.compress(d, 6, threads=0), None, True),
        ("zlib-ng wheel, level 6", lambda d: zlib_ng.compress(d, 6), zlib_ng.decompress, True),
        ("zlib-ng wheel, level 1", lambda d: zlib_ng.compress(d, 1), zlib_ng.decompress, True),
    ]
    rows = []
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
        import deflate as libdeflate

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
