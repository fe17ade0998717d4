"""Run one of the hardening memory scenarios (docs/hardening.md) in a fresh process; print JSON.

Used by test_trust_costs.py: the peak RSS growth (VmHWM, reset through clear_refs;
tracemalloc does not see the native core's allocations) while the scenario runs,
its time, and the reason it failed with, if any. Inputs are built before the
measurement starts.

usage: trustprobe.py BACKEND SCENARIO
"""

from __future__ import annotations

import json
import struct
import sys
import time
import zlib

import numpy as np
from zlib_ng import zlib_ng

from memprobe import reset_hwm, status  # the same /proc/self/status readers
from ptth._engine import front_for

MiB = 1 << 20


def record_header(name: str, dims, code: int, data_len: int) -> bytes:
    raw = name.encode()
    return (
        struct.pack(">I", len(raw))
        + raw
        + struct.pack(">I", len(dims))
        + b"".join(struct.pack(">I", d) for d in dims)
        + struct.pack(">II", code, data_len)
    )


def zeros_upload(name: str, numel: int) -> bytes:
    """A zlib stream of a one-record float32 blob of zeros, compressed piece by piece."""
    c = zlib_ng.compressobj(1)
    out = [
        c.compress(b"PTTH" + struct.pack(">II", 1, 1) + record_header(name, [numel], 0, 4 * numel))
    ]
    zero = bytes(8 * MiB)
    left = 4 * numel
    while left:
        piece = zero[: min(left, len(zero))]
        out.append(c.compress(piece))
        left -= len(piece)
    out.append(c.flush())
    return b"".join(out)


def small_blob(mod) -> bytes:
    return mod.dumps({"w": np.arange(4, dtype=np.float32)})


def stored_blocks_stream(mod, total: int):
    """A zlib stream: `total` bytes of empty stored blocks, then the blob. Yields 1 MiB
    chunks; nothing comes out of inflate until the last one."""
    body = small_blob(mod)
    empty = b"\x00\x00\x00\xff\xff" * (MiB // 5)
    yield b"\x78\x01"
    sent = 0
    while sent < total:
        yield empty
        sent += len(empty)
    final = zlib.compressobj(0, zlib.DEFLATED, -15)
    yield final.compress(body) + final.flush() + struct.pack(">I", zlib.adler32(body))


def gzip_comment_stream(mod, total: int):
    """A gzip member whose header comment is `total` bytes long, then the blob."""
    body = small_blob(mod)
    yield b"\x1f\x8b\x08\x10" + bytes(4) + b"\x00\xff"
    chunk = b"x" * MiB
    sent = 0
    while sent < total:
        yield chunk
        sent += len(chunk)
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    yield b"\x00" + c.compress(body) + c.flush()
    yield struct.pack("<II", zlib.crc32(body), len(body))


def main() -> None:
    backend, scenario = sys.argv[1:3]
    mod = front_for(backend)
    mod.loads(mod.dumps({"w": [1.0]}, compress=6))  # warm up lazy imports and tables
    result = {"reason": None, "records": 0}
    run = None
    if scenario == "one_element_template":
        # 368 MB of zeros for a 1-element template: refused at the record header
        agg = mod.Aggregator({"w": np.zeros(1, np.float32)})
        upload = zeros_upload("w", 92 * 10**6)
        run = lambda: agg.add(upload)
    elif scenario == "shape_refused_at_header":
        # a template whose cap is large (800 MB): the record is refused by its header
        agg = mod.Aggregator(
            {"w": np.zeros(1, np.float32), "big": np.zeros(100 * 10**6, np.float16)},
            accumulate="float32",
        )
        upload = zeros_upload("w", 92 * 10**6)
        run = lambda: agg.add(upload)
    elif scenario in ("dumps_broadcast", "dumps_broadcast_float16"):
        n, dtype = (2**30, None) if scenario == "dumps_broadcast" else (2**31, "float16")
        x = np.broadcast_to(np.float32(1.0), (n,))
        run = lambda: mod.dumps({"x": x}, dtype=dtype)
    elif scenario in ("stored_blocks", "gzip_comment"):
        make = stored_blocks_stream if scenario == "stored_blocks" else gzip_comment_stream

        def run():
            dec = mod.Decoder()
            for chunk in make(mod, 100 * MiB):
                result["records"] += len(dec.feed(chunk))
            dec.close()

    else:
        raise SystemExit(f"unknown scenario {scenario}")
    reset_hwm()
    rss0 = status("VmRSS")
    t0 = time.perf_counter()
    try:
        run()
    except Exception as exc:
        result["reason"] = getattr(exc, "reason", type(exc).__name__)
    result["seconds"] = time.perf_counter() - t0
    result["hwm_growth"] = status("VmHWM") - rss0
    print(json.dumps(result))


if __name__ == "__main__":
    main()
