"""Thread stress: 8 threads push a mix of valid and invalid uploads into one
Aggregator while a ninth takes snapshots (mean, pickling). Nothing crashes,
every valid update counts exactly once, every invalid one is rejected with
PTTHError (and its reason), and the result equals the sequential one over the
valid updates up to the order of floating-point additions.
"""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest
from zlib_ng import zlib_ng

from blobs import WBITS, blob, header, record
from ptth.errors import PTTHError

THREADS = 8
PER_THREAD = 24


def make_template():
    rng = np.random.default_rng(11)
    return {
        "conv.weight": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
        "fc.weight": rng.standard_normal((512, 256)).astype(np.float32),  # adds drop the GIL
        "fc.bias": rng.standard_normal(128),
        "emb": rng.standard_normal(1000).astype(np.float16),
        "steps": np.array(7, np.int32),
    }


def make_uploads(backend, template):
    """[(label, data, weight, kind, reason)]: reason None for a valid upload."""
    rng = np.random.default_rng(5)

    def update(seed, subset=None, dtype=None):
        r = np.random.default_rng(seed)
        out = {}
        for k, v in template.items():
            if subset is not None and k not in subset:
                continue
            if v.dtype.kind == "i":
                out[k] = np.array(r.integers(-3, 4), np.int32)
            else:
                out[k] = (r.standard_normal(v.shape) * 0.01).astype(dtype or v.dtype)
        return out

    def z(data, wrapper, level=1):
        return zlib_ng.compress(data, level, WBITS[wrapper])

    uploads = []
    for i in range(THREADS * PER_THREAD):
        u = update(100 + i)
        plain = backend.dumps(u)
        w = float(rng.integers(1, 50))
        case = i % 16
        if case == 0:
            item = ("plain", plain, w, "delta", None)
        elif case == 1:
            item = ("float16", backend.dumps(u, dtype="float16"), w, "delta", None)
        elif case == 2:
            item = ("zlib", z(plain, "zlib"), w, "delta", None)
        elif case == 3:
            item = ("gzip-f16", z(backend.dumps(u, dtype="float16"), "gzip"), w, "delta", None)
        elif case == 4:
            item = (
                "deflate-partial",
                z(backend.dumps(update(100 + i, ["fc.weight", "steps"])), "deflate"),
                w,
                "delta",
                None,
            )
        elif case == 5:
            full = {
                k: (np.asarray(template[k]) + v).astype(template[k].dtype) for k, v in u.items()
            }
            item = ("full", backend.dumps(full), w, "full", None)
        elif case == 6:
            item = ("mapping", u, w, "delta", None)
        elif case == 7:
            item = ("truncated", plain[: len(plain) - 1 - i % 50], w, "delta", "truncated")
        elif case == 8:
            zz = bytearray(z(plain, "zlib"))
            zz[-1] ^= 0x01  # Adler-32
            item = ("bad-checksum", bytes(zz), w, "delta", "bad_checksum")
        elif case == 9:
            zz = z(plain, "gzip")
            item = ("stream-cut", zz[: len(zz) // 2], w, "delta", "stream_truncated")
        elif case == 10:
            bad = dict(u, **{"fc.weight.extra": np.ones(2, np.float32)})
            item = ("unknown-name", backend.dumps(bad), w, "delta", "unknown_name")
        elif case == 11:
            bad = dict(u)
            bad["fc.bias"] = bad["fc.bias"].copy()
            bad["fc.bias"][i % 128] = np.nan
            item = ("nan", backend.dumps(bad), w, "delta", "nonfinite")
        elif case == 12:
            bad = dict(u, **{"conv.weight": np.zeros((8, 3, 3, 2), np.float32)})
            item = ("shape", backend.dumps(bad), w, "delta", "shape_mismatch")
        elif case == 13:
            bad = dict(u)
            bad["emb"] = bad["emb"].copy()
            bad["emb"][3] = np.inf
            item = ("inf-f16-zlib", z(backend.dumps(bad), "zlib"), w, "delta", "nonfinite")
        elif case == 14:
            item = ("trailing", plain + b"\0\0", w, "delta", "trailing_bytes")
        else:
            # a lying data_len: a 4 GiB payload claimed by a few bytes
            item = (
                "lying-length",
                blob(record("fc.bias", [128], 1, b"\0" * 16, data_len=0xFFFFFFF8)) + b"\0" * 8,
                w,
                "delta",
                "length_mismatch",
            )
        uploads.append(item)
    uploads.append(("header-only", header(0), 3.0, "delta", None))  # touches nothing, not counted
    return uploads


def check_snapshot(agg, most_valid):
    """A snapshot taken while adds run is a state some prefix of adds produced."""
    state = pickle.loads(pickle.dumps(agg)).partial()
    assert 0 <= state.count <= most_valid
    assert all(0.0 <= s <= state.total_weight + 1e-9 for s in state.weight_sums)
    agg.mean(allow_empty=True)


@pytest.mark.parametrize("accumulate", ["float64", "float32"])
def test_threads_mixed_uploads(backend, accumulate):
    template = make_template()
    uploads = make_uploads(backend, template)
    valid = [u for u in uploads if u[4] is None]

    seq = backend.Aggregator(template, accumulate=accumulate)
    for _, data, w, kind, _ in valid:
        seq.add(data, w, kind=kind)

    agg = backend.Aggregator(template, accumulate=accumulate)
    results = [None] * len(uploads)
    start = threading.Barrier(THREADS + 1)
    done = threading.Event()
    monitor_errors = []

    def worker(indices):
        start.wait()
        for i in indices:
            _, data, w, kind, _ = uploads[i]
            try:
                agg.add(data, w, kind=kind)
                results[i] = ("ok",)
            except PTTHError as exc:
                results[i] = ("PTTHError", exc.reason)
            except BaseException as exc:
                results[i] = (type(exc).__name__, repr(exc))

    def monitor():
        start.wait()
        try:
            while not done.is_set():
                check_snapshot(agg, len(valid))
        except BaseException as exc:
            monitor_errors.append(exc)

    order = np.random.default_rng(3).permutation(len(uploads))
    threads = [threading.Thread(target=worker, args=(order[k::THREADS],)) for k in range(THREADS)]
    watcher = threading.Thread(target=monitor)
    for t in threads + [watcher]:
        t.start()
    for t in threads:
        t.join(timeout=120)
    done.set()
    watcher.join(timeout=60)
    assert not any(t.is_alive() for t in threads + [watcher]), "a thread hung"
    assert not monitor_errors, monitor_errors

    for (label, _, _, _, reason), got in zip(uploads, results):
        want = ("ok",) if reason is None else ("PTTHError", reason)
        assert got == want, label
    assert agg.count == seq.count == len(valid) - 1  # the header-only upload does not count
    assert agg.empty_updates == seq.empty_updates == 1
    assert agg.total_weight == pytest.approx(seq.total_weight, rel=1e-12)
    rtol = 1e-12 if accumulate == "float64" else 1e-5
    got, want = agg.mean(dtype="float64"), seq.mean(dtype="float64")
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=rtol * 1e-3, err_msg=k)
    state_got, state_want = agg.partial(), seq.partial()
    np.testing.assert_allclose(state_got.weight_sums, state_want.weight_sums, rtol=1e-12)
