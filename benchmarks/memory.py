"""Peak memory while aggregating N uploads: ptth's Aggregator against a Flower-style reduce.

    python benchmarks/memory.py [--params 4000000] [--clients 8,32,128] [--json FILE]

The uploads (float16 deltas of one 200-tensor model, uncompressed, as the iOS
client would send them quantized) are written to a temporary directory first.
Each (implementation, N) then runs in a fresh Python process that loads the
float32 template, resets its high-water mark, reads the uploads from disk one
at a time (each upload's bytes are dropped after it is folded in, so the
uploads never pile up) and computes the weighted mean:

- ptth: ``Aggregator(template)``, ``add(blob, weight)`` per upload, ``mean()``;
- flower: a weighted float64 copy of every upload's layers kept in a list
  (reference.flower_decode), one ``reduce(np.add)`` per layer at the end.

Peak = VmHWM (from /proc/self/status) minus VmRSS just before aggregating:
what the aggregation itself costs. It is reported in MB and in models (the
float32 model's size); "adds" is the peak before ``mean()``, "total" includes
the result (float64 like the accumulators). Every run's mean is checked
against the first one's.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import reference  # noqa: E402

IMPLS = {"ptth-native": "native", "ptth-python": "python", "flower": None}


def weight(i: int) -> float:
    """Client i's sample count."""
    return float(10 + i % 50)


def make_uploads(directory, params: int, clients: int) -> pathlib.Path:
    """Write template.ptth and upload-NNNN.ptth (float16 deltas) into `directory`."""
    import ptth as native

    d = pathlib.Path(directory)
    tmpl = reference.model(params)
    native.dump(tmpl, d / "template.ptth")
    for i in range(clients):
        path = d / f"upload-{i:04d}.ptth"
        if not path.exists():
            native.dump(reference.delta(tmpl, seed=1000 + i), path)
    return d


# ---- the measured process ------------------------------------------------------


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def _read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def child(impl: str, clients: int, directory: str) -> dict:
    d = pathlib.Path(directory)
    uploads = [d / f"upload-{i:04d}.ptth" for i in range(clients)]
    from ptth._engine import front_for

    native = front_for("native")
    tmpl = native.load(d / "template.ptth", copy=True)
    backend = front_for(IMPLS[impl]) if IMPLS[impl] else None
    # Warm up lazy imports, allocator pools and code paths on a tiny round.
    tiny = {"w": np.zeros(4, np.float32)}
    if backend:
        agg = backend.Aggregator(tiny)
        agg.add(native.dumps(tiny, dtype="float16"), 1.0)
        agg.mean(dtype="float64")
    else:
        reference.flower_fedavg([native.dumps(tiny, dtype="float16")], [1.0])
    del tiny

    reset = _reset_hwm()
    rss0 = _status("VmRSS")
    t0 = time.perf_counter()
    if backend:
        agg = backend.Aggregator(tmpl)
        for i, path in enumerate(uploads):
            agg.add(_read(path), weight(i))
        hwm_adds = _status("VmHWM")
        mean = list(agg.mean(dtype="float64").values())
    else:
        weighted = []
        for i, path in enumerate(uploads):
            weighted.append(reference.flower_decode(_read(path), weight(i)))
        hwm_adds = _status("VmHWM")
        mean = reference.flower_reduce(weighted, sum(weight(i) for i in range(clients)))
    seconds = time.perf_counter() - t0
    hwm = _status("VmHWM")
    return {
        "impl": impl,
        "clients": clients,
        "rss_before": rss0,
        "hwm": hwm,
        "peak_adds": hwm_adds - rss0,
        "peak_total": hwm - rss0,
        "seconds": seconds,
        "hwm_reset": reset,
        "checksum": [float(np.sum(m)) for m in mean[:8]],
        "model_bytes": sum(v.nbytes for v in tmpl.values()),
    }


def run_child(impl: str, clients: int, directory) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", impl, str(clients), str(directory)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- the table -----------------------------------------------------------------


def measure(params: int, clients, impls=tuple(IMPLS), directory=None, log=None) -> list:
    """One fresh process per (impl, N); uploads are generated once, for the largest N."""
    with tempfile.TemporaryDirectory(prefix="ptth-memory-") as tmp:
        d = make_uploads(directory or tmp, params, max(clients))
        rows = []
        for n in clients:
            for impl in impls:
                row = run_child(impl, n, d)
                rows.append(row)
                if log:
                    log(format_row(row))
    check(rows)
    return rows


def check(rows) -> None:
    """Every implementation computed the same mean for the same N."""
    for n in {r["clients"] for r in rows}:
        same_n = [r for r in rows if r["clients"] == n]
        for r in same_n[1:]:
            np.testing.assert_allclose(
                r["checksum"],
                same_n[0]["checksum"],
                rtol=1e-9,
                atol=1e-9,
                err_msg=f"{r['impl']} N={n}",
            )


def format_row(r) -> str:
    model = r["model_bytes"]
    return (
        f"{r['impl']:<12} N={r['clients']:<4} peak adds {r['peak_adds'] / 1e6:8.1f} MB "
        f"({r['peak_adds'] / model:5.2f} models)  total {r['peak_total'] / 1e6:8.1f} MB "
        f"({r['peak_total'] / model:5.2f} models)  {r['seconds']:6.2f} s"
    )


def format_table(rows) -> str:
    """Markdown: one line per N; per implementation the peak while adding and with mean()."""
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    model = rows[0]["model_bytes"]
    head = " | ".join(f"{i}: adds / with mean()" for i in impls)
    lines = [
        f"model: {model // 4:,} float32 parameters = {model / 1e6:.1f} MB; peak memory "
        "above the process before aggregating, MB (models)",
        "",
        f"| N | {head} | " + " | ".join(f"{i} time" for i in impls) + " |",
        "|---:|" + "---:|" * (2 * len(impls)),
    ]

    def mb(v):
        return f"{v / 1e6:.0f} ({v / model:.1f})"

    for n in sorted({r["clients"] for r in rows}):
        by = {r["impl"]: r for r in rows if r["clients"] == n}
        peaks = [f"{mb(by[i]['peak_adds'])} / {mb(by[i]['peak_total'])}" for i in impls]
        times = [f"{by[i]['seconds']:.2f} s" for i in impls]
        lines.append(f"| {n} | " + " | ".join(peaks) + " | " + " | ".join(times) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--params", type=int, default=4_000_000, help="float32 parameters of the model")
    p.add_argument("--clients", default="8,32,128", help="comma-separated N")
    p.add_argument("--impls", default=",".join(IMPLS))
    p.add_argument("--dir", default=None, help="keep the uploads here instead of a temp dir")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    p.add_argument("--child", nargs=3, metavar=("IMPL", "N", "DIR"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        impl, n, d = args.child
        print(json.dumps(child(impl, int(n), d)))
        return 0
    clients = [int(c) for c in args.clients.split(",")]
    if args.dir:
        os.makedirs(args.dir, exist_ok=True)
    t0 = time.perf_counter()
    rows = measure(args.params, clients, args.impls.split(","), args.dir, log=print)
    print()
    print(format_table(rows))
    print(f"\n{time.perf_counter() - t0:.0f} s in all; means agree across implementations")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
