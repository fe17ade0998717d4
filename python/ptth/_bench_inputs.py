"""The inputs, reference reader and timing helpers every ``ptth bench`` section shares.

``ptth.bench`` prints the table; the component row functions (``ptth.flower.bench``,
``ptth.dask.dask_rows``, ``ptth._bench_privacy``) measure with these, so no section
imports the table's module.
"""

from __future__ import annotations

import struct
import time
from typing import Any

import numpy as np

_DTYPES: dict[int, np.dtype[Any]] = {
    0: np.dtype("<f4"),
    1: np.dtype("<f8"),
    2: np.dtype("<i4"),
    3: np.dtype("<f2"),
}


# ---- the baseline reader ------------------------------------------------------


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


# ---- inputs ----------------------------------------------------------------------


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
    t_ours: list[float] = []
    t_base: list[float] = []
    for _ in range(repeat):
        t_base.append(_once(base))
        t_ours.append(_once(ours))
    return float(np.median(t_ours)), float(np.median(t_base))


# ---- memory ----------------------------------------------------------------------


def _status(field: str) -> int:
    """A /proc/self/status value in bytes (VmRSS, VmHWM, ...)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)
