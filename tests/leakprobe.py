"""Run ROUNDS rounds of every decode/encode/aggregate call in a fresh process and
print the resident-set growth as JSON. Used by test_leaks.py.

A round calls loads (views, copies, compressed), dumps (plain, compressed,
float16), compress/decompress, a Decoder over chunks, Aggregator.add (blob,
compressed blob, mapping, kind="full") and, as often, the error path of each:
a leak on the way out of a failing call is as real as one on success.
RSS is read from /proc/self/status after a warm-up (allocator pools, lazy
imports and caches fill up) and at the end.

usage: leakprobe.py BACKEND ROUNDS WARMUP
"""

from __future__ import annotations

import gc
import json
import sys
import time

import numpy as np

from ptth._engine import front_for


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise KeyError("VmRSS")


def make_round(mod):
    from ptth.errors import PTTHError

    rng = np.random.default_rng(0)
    template = {
        "fc.weight": rng.standard_normal((64, 64)).astype(np.float32),
        "fc.bias": np.zeros(64, np.float64),
        "emb": rng.standard_normal(512).astype(np.float16),
        "steps": np.array(3, np.int32),
    }
    update = {k: (v * 0.5).astype(v.dtype) for k, v in template.items()}
    plain = mod.dumps(update)
    packed = mod.dumps(update, dtype="float16", compress=1, wrapper="gzip")
    z = mod.compress(plain, 1)
    corrupt = bytearray(z)
    corrupt[len(z) // 2] ^= 0x55
    bad_blobs = [plain[:-3], packed[:-5], bytes(corrupt), plain + b"\0"]
    unknown = mod.dumps({"nope": np.ones(3, np.float32)})
    nonfinite = {"fc.bias": np.full(64, np.nan)}
    state = {"agg": mod.Aggregator(template), "i": 0}

    def expect_error(fn, *args, **kw):
        try:
            fn(*args, **kw)
        except PTTHError:
            return
        raise AssertionError(f"{fn} did not fail")

    def one_round():
        state["i"] += 1
        if state["i"] % 100 == 0:  # aggregators come and go too
            state["agg"].mean()
            state["agg"] = mod.Aggregator(template)
        agg = state["agg"]
        mod.loads(plain)
        mod.loads(plain, copy=True, byteorder="auto")
        mod.loads(packed)
        mod.dumps(update)
        mod.dumps(update, dtype="float16", compress=1)
        mod.decompress(mod.compress(plain, 1))
        dec = mod.Decoder()
        for k in range(0, len(plain), 4096):
            dec.feed(plain[k : k + 4096])
        dec.close()
        agg.add(plain, 1.0)
        agg.add(packed, 2.0, kind="full")
        agg.add(update, 0.5)
        for b in bad_blobs:
            expect_error(mod.loads, b)
        expect_error(mod.decompress, bytes(corrupt))
        expect_error(agg.add, unknown)
        expect_error(agg.add, nonfinite)
        expect_error(agg.add, bad_blobs[1])
        dec = mod.Decoder()
        dec.feed(plain[:100])
        expect_error(dec.close)
        expect_error(dec.feed, plain[100:])

    return one_round


def main() -> None:
    backend, rounds, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    mod = front_for(backend)
    one_round = make_round(mod)
    for _ in range(warmup):
        one_round()
    gc.collect()
    start_rss, t0 = rss(), time.perf_counter()
    half = None
    for i in range(rounds):
        one_round()
        if i == rounds // 2:
            gc.collect()
            half = rss()
    gc.collect()
    end_rss = rss()
    print(
        json.dumps(
            {
                "rounds": rounds,
                "start": start_rss,
                "half": half,
                "end": end_rss,
                "growth": end_rss - start_rss,
                "second_half": end_rss - half,
                "seconds": time.perf_counter() - t0,
            }
        )
    )


if __name__ == "__main__":
    main()
