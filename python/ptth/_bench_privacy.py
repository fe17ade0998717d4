"""Measurements of the private and robust aggregation, for ``ptth bench`` and ``benchmarks/``.

- Clipping in the fold: ``add(blob, clip_norm=C)`` beside a plain ``add`` of the
  same upload (the target: <= 1.1x its time) and beside what a server
  does without it: decode, take the norm with NumPy, then add with the factor.
- Robust statistics: :func:`ptth.median` / :func:`ptth.trimmed_mean` of N
  uploads beside a stack-based NumPy version (what Flower's FedMedian and
  FedTrimmedAvg do: decode every upload into a list, then per layer stack the
  N copies and call ``np.median`` / a partition-based trimmed mean), each in a
  fresh process that reports its time and its peak memory above the uploads'
  own bytes (``VmHWM``, reset through ``/proc/self/clear_refs``).

Nothing here asserts a time; the rows say what was measured.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

import ptth
from ptth._bench_inputs import _status, delta, model, pair, reference_loads

#: the trimmed mean's proportion in every measurement
PROPORTION = 0.1


# ---- clipping in the fold -----------------------------------------------------------------


def clip_inputs(elements: int) -> tuple[dict[str, np.ndarray], bytes, float]:
    """A 200-tensor float32 model, one float16 delta of it (uncompressed) and a clip bound
    half its norm (so the add does scale)."""
    tmpl = model(elements)
    d = delta(tmpl, seed=1)
    norm = math.sqrt(sum(float(np.sum(v.astype(np.float64) ** 2)) for v in d.values()))
    return tmpl, ptth.dumps(d), norm / 2


def numpy_clip_add(agg: ptth.Aggregator, blob: bytes, clip: float, weight: float = 1.0) -> None:
    """A server without clipping in the fold: decode, NumPy norm, then add with the factor."""
    arrays = ptth.loads(blob)  # views; the norm needs float64 values
    sumsq = 0.0
    for a in arrays.values():
        v = a.astype(np.float64).ravel()
        # einsum, not np.dot: OpenBLAS's threads on a shared 2-core machine made dot 25x slower
        sumsq += float(np.einsum("i,i->", v, v))
    norm = math.sqrt(sumsq)
    agg.add(blob, weight * min(1.0, clip / norm) if norm else weight)


def clip_rows(elements: int, repeat: int) -> list[dict[str, Any]]:
    tmpl, blob, clip = clip_inputs(elements)
    agg = ptth.Aggregator(tmpl)
    agg.add(blob)  # the accumulators' pages are touched before timing
    clipped, plain = pair(lambda: agg.add(blob, clip_norm=clip), lambda: agg.add(blob), repeat)
    _, numpy_way = pair(
        lambda: agg.add(blob, clip_norm=clip), lambda: numpy_clip_add(agg, blob, clip), repeat
    )
    what = f"{elements / 1e6:.0f}M-param float16 delta"
    return [
        {
            "op": "add(clip_norm=)",
            "ours": clipped,
            "base": plain,
            "kind": "time",
            "target": 1.10,
            "note": f"vs add alone, {what}",
        },
        {
            "op": "  vs decode + NumPy norm + add",
            "ours": clipped,
            "base": numpy_way,
            "kind": "info",
            "note": "the clip without ptth's fused norm; no target",
        },
    ]


# ---- robust statistics -----------------------------------------------------------------------


def make_uploads(directory: str, params: int, clients: int) -> None:
    """template.ptth and upload-NNNN.ptth (uncompressed float16 deltas) in `directory`."""
    tmpl = model(params)
    ptth.dump(tmpl, os.path.join(directory, "template.ptth"))
    for i in range(clients):
        path = os.path.join(directory, f"upload-{i:04d}.ptth")
        if not os.path.exists(path):
            ptth.dump(delta(tmpl, seed=1000 + i), path)


def stack_median(uploads: list[bytes]) -> dict[str, np.ndarray]:
    """Flower's FedMedian: every upload decoded into a list, then per layer a stacked median."""
    models = [reference_loads(u) for u in uploads]  # a copy of each payload
    return {
        name: np.median(np.stack([m[name] for m in models]).astype(np.float64), axis=0)
        for name in models[0]
    }


def stack_trimmed_mean(uploads: list[bytes], proportion: float) -> dict[str, np.ndarray]:
    """Flower's FedTrimmedAvg: the same list, then per layer partition and mean (scipy's way)."""
    models = [reference_loads(u) for u in uploads]
    out = {}
    for name in models[0]:
        stack = np.stack([m[name] for m in models]).astype(np.float64)
        n = stack.shape[0]
        cut = int(proportion * n)
        part = np.partition(stack, (cut, n - cut - 1), axis=0)
        out[name] = np.mean(part[cut : n - cut], axis=0)
    return out


def robust_child(stat: str, impl: str, directory: str, clients: int) -> dict[str, Any]:
    """Read the uploads into memory, reset the high-water mark, compute; time and peak above it."""
    uploads = []
    for i in range(clients):
        with open(os.path.join(directory, f"upload-{i:04d}.ptth"), "rb") as f:
            uploads.append(f.read())
    tiny = [ptth.dumps({"w": np.zeros(4, np.float16)})] * 3
    stack_median(tiny), ptth.median(tiny), stack_trimmed_mean(tiny, PROPORTION)  # warm up
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    rss0 = _status("VmRSS")
    t0 = time.perf_counter()
    if impl == "ptth":
        result = (
            ptth.median(uploads) if stat == "median" else ptth.trimmed_mean(uploads, PROPORTION)
        )
    elif stat == "median":
        result = stack_median(uploads)
    else:
        result = stack_trimmed_mean(uploads, PROPORTION)
    seconds = time.perf_counter() - t0
    peak = _status("VmHWM") - rss0
    names = list(result)
    return {
        "seconds": seconds,
        "peak": peak,
        "result_bytes": sum(v.nbytes for v in result.values()),
        "checksum": [float(np.sum(result[n])) for n in names[:: max(1, len(names) // 8)]],
        "input_bytes": sum(len(u) for u in uploads),
    }


def run_robust(stat: str, impl: str, directory: str, clients: int) -> dict[str, Any]:
    """One fresh process: ``python -m ptth._bench_privacy --child ...`` (glibc returns freed
    arrays at once, so memory freed before the reset cannot be reused unseen)."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ptth._bench_privacy",
            "--child",
            stat,
            impl,
            directory,
            str(clients),
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def same_result(stat: str, ours: dict[str, Any], base: dict[str, Any]) -> bool:
    """The checksums agree: exactly for the median, to rounding for the trimmed mean."""
    if stat == "median":
        return bool(ours["checksum"] == base["checksum"])
    return bool(np.allclose(ours["checksum"], base["checksum"], rtol=1e-9, atol=1e-12))


def robust_rows(params: int, clients: int, directory: str | None = None) -> list[dict[str, Any]]:
    if not os.path.exists("/proc/self/clear_refs"):
        return []
    with tempfile.TemporaryDirectory(prefix="ptth-bench-robust-") as tmp:
        d = directory or tmp
        make_uploads(d, params, clients)
        model_bytes = 4 * sum(v.size for v in model(params).values())
        rows = []
        for stat in ("median", "trimmed_mean"):
            ours = run_robust(stat, "ptth", d, clients)
            base = run_robust(stat, "stack", d, clients)
            agree = "" if same_result(stat, ours, base) else "; RESULTS DIFFER"
            mb = {
                k: f"{v / 1e6:.0f} MB"
                for k, v in (
                    ("ours", ours["peak"]),
                    ("base", base["peak"]),
                    ("result", ours["result_bytes"]),
                    ("models", clients * model_bytes),
                )
            }
            note = (
                f"peak {mb['ours']} vs stacked {mb['base']} (result {mb['result']}; "
                f"N x model {mb['models']} as float32); {params / 1e6:g}M-param float16 deltas"
            )
            rows.append(
                {
                    "op": f"{stat}, {clients} uploads",
                    "ours": ours["seconds"],
                    "base": base["seconds"],
                    "kind": "info",
                    "note": note + agree,
                }
            )
        return rows


def privacy_rows(quick: bool) -> list[dict[str, Any]]:
    """The rows ``ptth bench`` prints for clipping and the robust statistics.

    Each dict holds ``ptth.bench.Row``'s arguments: ``op``, ``ours`` and ``base``
    (seconds), ``kind`` ("time": ours / base against ``target``; "info": a
    speed-up without a target), ``target``, ``note``. ``quick``: a 1M-parameter
    clip and 8 uploads of 1M parameters (seconds); otherwise the 8M-parameter
    clip of the targets and 32 uploads of 4M parameters (about a minute; the
    benchmark suite's 25M-parameter case is ``benchmarks/test_privacy.py``).

    Example:
        >>> rows = privacy_rows(quick=True)  # doctest: +SKIP
        >>> [r["op"] for r in rows][:2]  # doctest: +SKIP
        ['add(clip_norm=)', '  vs decode + NumPy norm + add']
    """
    if quick:
        return clip_rows(1_000_000, 5) + robust_rows(1_000_000, 8)
    return clip_rows(8_000_000, 7) + robust_rows(4_000_000, 32)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        stat, impl, directory, clients = argv[1:5]
        print(json.dumps(robust_child(stat, impl, directory, int(clients))))
        return 0
    quick = "--quick" in argv
    for row in privacy_rows(quick):
        ratio = row["ours"] / row["base"] if row["kind"] == "time" else row["base"] / row["ours"]
        print(
            f"{row['op']:<34} {row['ours'] * 1e3:10.2f} ms {row['base'] * 1e3:10.2f} ms "
            f"{ratio:6.2f}{'x time' if row['kind'] == 'time' else 'x'}  {row.get('note', '')}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
