"""No silent wrong results: one regression test per finding, both engines.

Each test states the finding it covers and asserts what the old code (f37ddaf) got
wrong; docs/hardening.md lists which of them were run against that commit. The
property tests are in test_trust_properties.py, the time and memory bounds in
test_trust_costs.py.
"""

from __future__ import annotations

import io
import pickle
import sys
import threading
import time

import numpy as np
import pytest

from blobs import blob, check_arg_error, error_of, header, record

# ---- helpers ------------------------------------------------------------------------


def f32_record(name, values, *, code=0, order="<", dims=None):
    """A record holding float32 bytes under any code (the iOS SDK keeps the original code)."""
    v = np.asarray(values, np.float32)
    return record(
        name, list(v.shape) if dims is None else dims, code, v.astype(order + "f4").tobytes()
    )


def int32_record(name, values):
    v = np.asarray(values, np.int32)
    return record(name, list(v.shape), 2, v.astype("<i4").tobytes())


def state(agg):
    """Everything an add may change, as bytes."""
    p = agg.partial()
    return pickle.dumps((p.count, p.total_weight, p.empty, p.weight_sums, p.accumulators))


# ---- 1. payload labels decided, not assumed ------------------------------------------


def test_relabel_auto_keeps_a_genuine_int32_counter(backend):
    """relabel_float32=True read an int32 counter of 103 as the float32 1.4e-43."""
    data = blob(int32_record("steps", [103]))
    assert backend.loads(data, relabel_float32=True)["steps"].dtype == np.float32  # as asked
    got = backend.loads(data, relabel_float32="auto")["steps"]
    assert got.dtype == np.int32 and got.tolist() == [103]


def test_aggregator_refuses_a_relabelled_int32_counter(backend):
    """The aggregator folded the relabelled 1.4e-43 into an int32 counter (new value 0)."""
    agg = backend.Aggregator({"steps": np.array([100], np.int32)})
    data = blob(int32_record("steps", [103]))
    before = state(agg)
    err = error_of(agg.add, data, relabel_float32=True)
    assert (err.reason, err.name) == ("dtype_mismatch", "steps")
    assert state(agg) == before
    agg.add(data)  # the defaults ("auto") read it as the int32 it is
    assert agg.apply()["steps"].tolist() == [203]


def test_ios_float_counter_is_read_as_float_and_folded(backend):
    """The iOS SDK writes an int32 counter as float32 103.0 under code 2, a float64
    parameter as float32 under code 1; read without relabelling they were garbage."""
    tmpl = {"steps": np.array([100], np.int32), "scale": np.array([0.5], np.float64)}
    agg = backend.Aggregator(tmpl)
    data = blob(f32_record("steps", [103.0], code=2), f32_record("scale", [0.25], code=1))
    result = agg.add(data)
    assert result.relabelled == 2 and result.byteorder == "<"
    new = agg.apply()
    assert new["steps"].tolist() == [203] and new["scale"].tolist() == [0.75]


def test_non_integral_values_for_an_int32_parameter(backend):
    agg = backend.Aggregator({"steps": np.array([1, 2], np.int32)})
    err = error_of(agg.add, {"steps": np.array([1.0, 2.5], np.float32)})
    assert (err.reason, err.name) == ("dtype_mismatch", "steps")
    err = error_of(agg.add, {"steps": np.array([1.0, 3e9], np.float64)})  # out of range
    assert err.reason == "dtype_mismatch"
    agg.add({"steps": np.array([1.0, 2.5], np.float32)}, allow_cast=True)
    assert agg.count == 1


def test_int32_update_for_a_float_parameter(backend):
    agg = backend.Aggregator({"w": np.zeros(2, np.float32)})
    err = error_of(agg.add, blob(int32_record("w", [1, 2])), relabel_float32=False)
    assert (err.reason, err.name) == ("dtype_mismatch", "w")
    assert "int32" in err.message and "float32" in err.message  # both sides named
    agg.add({"w": np.array([1, 2], np.int32)}, allow_cast=True)
    assert agg.mean()["w"].tolist() == [1.0, 2.0]


def test_android_upload_read_in_its_order_by_default(backend):
    """Without byteorder= a big-endian upload was read little-endian: -4.29e8 and the like."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal(64) * 0.01).astype(np.float32)
    agg = backend.Aggregator({"w": np.zeros(64, np.float32)})
    result = agg.add(blob(f32_record("w", w, order=">")))
    assert np.array_equal(agg.mean()["w"], w)
    assert result.byteorder == ">"


# 0x3e999941: both readings are plausible floats (0.29999 as ">", 19.2 as "<").
TIE = bytes.fromhex("3e999941")


def test_android_decision_holds_for_the_records_before_it(backend):
    """A first record that reads plausibly both ways was taken little-endian even when
    a later record showed the upload is big-endian: a silently wrong bias."""
    w = np.array([1.5, -2.25], np.float32)
    agg = backend.Aggregator({"b": np.zeros(1, np.float32), "w": np.zeros(2, np.float32)})
    data = blob(record("b", [1], 0, TIE), f32_record("w", w, order=">"))
    result = agg.add(data)
    mean = agg.mean()
    assert mean["b"].tolist() == np.frombuffer(TIE, ">f4").tolist()
    assert mean["w"].tolist() == w.tolist()
    assert result.byteorder == ">"


def test_undecidable_byte_order_is_refused(backend):
    """An upload whose payloads read plausibly in both orders cannot be decided: guessing
    little-endian gave a garbage model for Android clients half of the time."""
    agg = backend.Aggregator({"b": np.zeros(1, np.float32)})
    data = blob(record("b", [1], 0, TIE))
    before = state(agg)
    err = error_of(agg.add, data)
    assert (err.reason, err.name, err.record) == ("ambiguous_byteorder", "b", 0)
    assert "byteorder='<'" in err.message and state(agg) == before
    assert agg.add(data, byteorder=">").byteorder == ">"  # the caller decides
    assert agg.mean()["b"].tolist() == np.frombuffer(TIE, ">f4").tolist()
    agg.add(blob(record("b", [1], 0, bytes(4))))  # zeros read the same either way


def test_inspect_shows_the_decided_byte_order(backend, tmp_path):
    """`ptth inspect --byteorder auto` printed float32 whichever order it picked."""
    from test_cli import run

    path = tmp_path / "android.ptth"
    path.write_bytes(blob(f32_record("w", np.linspace(-1, 1, 32), order=">")))
    out = run(backend, "inspect", path, "--byteorder", "auto")
    assert out.returncode == 0, out.stderr
    assert "big-endian (decided from the bit patterns)" in out.stdout


# ---- 2. rounds that cannot quietly go wrong -------------------------------------------


def test_empty_round_raises_unless_asked(backend):
    """mean() of an empty round returned zeros and apply() the old model, silently."""
    tmpl = {"w": np.array([1.0, 2.0], np.float32)}
    agg = backend.Aggregator(tmpl)
    for fn in (agg.mean, agg.apply):
        assert error_of(fn).reason == "no_contributions"
    assert error_of(agg.sum).reason == "no_contributions"
    assert agg.mean(allow_empty=True)["w"].tolist() == [0.0, 0.0]
    assert agg.apply(allow_empty=True)["w"].tolist() == [1.0, 2.0]


def test_lr_must_be_finite(backend):
    """apply(lr=nan) returned an all-NaN model."""
    agg = backend.Aggregator({"w": np.zeros(2, np.float32)})
    agg.add({"w": np.ones(2, np.float32)})
    for lr in (float("nan"), float("inf"), -float("inf")):
        check_arg_error(agg.apply, lr, exc=ValueError, names="lr")


def test_weight_times_update_overflow_is_refused(backend):
    """weight=1e300 overflowed the sum to inf: the mean came out inf or NaN."""
    agg = backend.Aggregator({"w": np.zeros(2, np.float64)})
    agg.add({"w": np.ones(2, np.float64)})
    before = state(agg)
    err = error_of(agg.add, {"w": np.array([1e10, 1.0])}, weight=1e300)
    assert err.reason == "overflow" and state(agg) == before
    agg.add({"w": np.ones(2)}, weight=1e307)
    err = error_of(agg.add, {"w": np.ones(2)}, weight=1.7e308)  # total weight overflows
    assert err.reason == "overflow"
    assert np.isfinite(agg.mean()["w"]).all()


def test_result_overflow_names_the_parameter(backend):
    agg = backend.Aggregator({"h": np.zeros(2, np.float16), "w": np.zeros(2, np.float32)})
    agg.add({"h": np.array([1e5, 1.0], np.float32), "w": np.ones(2, np.float32)})
    err = error_of(agg.apply)
    assert (err.reason, err.name) == ("overflow", "h")
    assert np.isinf(agg.apply(allow_nonfinite=True)["h"][0])


def test_header_only_upload_is_not_a_contribution(backend):
    """A 0-record upload (iOS: nothing updatable) counted as a client."""
    agg = backend.Aggregator({"w": np.zeros(2, np.float32)})
    result = agg.add(header(0), weight=50)
    assert (agg.count, agg.total_weight) == (0, 0.0)
    assert (result.counted, result.parameters, agg.empty_updates) == (False, 0, 1)
    assert error_of(agg.mean).reason == "no_contributions"
    assert agg.add(header(0), count_empty=True).counted and agg.count == 1


@pytest.mark.parametrize("dtype, value, top", [("float16", 1e6, 65504.0), ("float32", 1e300, None)])
def test_narrowing_overflow_names_the_tensor(backend, dtype, value, top):
    """dumps(dtype="float16") turned 1e6 into inf without a word."""
    tensors = {"ok": np.ones(2), "big": np.array([1.0, value])}
    err = error_of(backend.dumps, tensors, dtype=dtype)
    assert (err.reason, err.name) == ("overflow", "big")
    got = backend.loads(backend.dumps(tensors, dtype=dtype, saturate=True))["big"]
    want = np.finfo(dtype).max if top is None else top
    assert got.tolist() == [1.0, float(np.asarray(want, dtype))]


def test_wrapper_without_compress_is_refused(backend):
    """dumps(t, wrapper="gzip") without compress wrote an uncompressed blob."""
    t = {"w": np.ones(3, np.float32)}
    check_arg_error(backend.dumps, t, wrapper="gzip", exc=ValueError, names="compress")
    assert backend.detect_wrapper(backend.dumps(t, wrapper="gzip", compress=6)) == "gzip"


def test_accumulate_float32_checks_weights_in_float32(backend):
    """accumulate="float32" took weight=1e39 (inf in float32) or 1e-46 (0): a NaN mean."""
    agg = backend.Aggregator({"w": np.zeros(2, np.float32)}, accumulate="float32")
    for w in (1e39, 1e-46):
        check_arg_error(agg.add, {"w": np.ones(2, np.float32)}, weight=w, exc=ValueError)
    agg.add({"w": np.ones(2, np.float32)}, weight=3e38)
    assert agg.mean()["w"].tolist() == [1.0, 1.0]


def test_merge_refuses_overflowing_weight_sums(backend):
    """Two valid partial rounds whose weights add past float64: every mean would be 0."""
    tmpl = {"w": np.zeros(2, np.float64)}
    a, b = backend.Aggregator(tmpl), backend.Aggregator(tmpl)
    a.add({"w": np.ones(2)}, weight=1e308)
    b.add({"w": np.ones(2)}, weight=1e308)
    before = state(a)
    assert error_of(a.merge, b).reason == "overflow" and state(a) == before
    assert error_of(a.merge, b.partial()).reason == "overflow" and state(a) == before


# ---- 3. limits a user can live with ---------------------------------------------------


def test_too_large_names_the_limit_and_how_to_lift_it(backend):
    """The message said neither the limit nor how to raise it."""
    z = backend.dumps({"w": np.zeros(1000, np.float32)}, compress=6)
    for err in (
        error_of(backend.loads, z, max_size=100),
        error_of(backend.Decoder(max_size=100).feed, z),
        error_of(backend.Decoder, max_size=3),
    ):
        assert err.reason == "too_large"
        assert "max_size (" in err.message and "bytes)" in err.message, err.message
        assert "ptth.UNLIMITED" in err.message
    assert len(backend.loads(z, max_size=backend.UNLIMITED)["w"]) == 1000


def test_max_size_none_is_the_default_and_unlimited_lifts_it(backend):
    """A stream claiming more than DEFAULT_MAX_SIZE fails at the claim under None; a
    documented constant lifts the bound (None meant the default with no way out)."""
    claim = header(1) + record("w", [150 << 20], 0, b"", data_len=600 << 20)
    err = error_of(backend.Decoder(max_size=None).feed, claim)
    assert err.reason == "too_large" and str(backend.DEFAULT_MAX_SIZE) in err.message
    dec = backend.Decoder(max_size=backend.UNLIMITED)
    assert dec.feed(claim) == []  # waits for the payload
    assert error_of(dec.close).reason == "truncated"


def test_aggregator_caps_a_compressed_upload_by_its_template(backend):
    """An aggregator decoded whatever max_size allowed, whatever its template."""
    agg = backend.Aggregator({"w": np.zeros(1, np.float32)})
    z = backend.dumps({"w": np.zeros(1, np.float32), "pad": np.zeros(10_000)}, compress=9)
    err = error_of(agg.add, z)
    assert err.reason == "too_large" and err.offset <= 41
    assert "41 bytes" in err.message and "template" in err.message
    # max_size cannot lift the template's cap
    assert error_of(agg.add, z, max_size=backend.UNLIMITED).reason == "too_large"


def test_inspect_takes_sizes_with_units(backend, tmp_path):
    """--max-size took only a plain integer."""
    from test_cli import run

    path = tmp_path / "u.ptth"
    path.write_bytes(backend.dumps({"w": np.zeros(1000, np.float32)}, compress=6))
    out = run(backend, "inspect", path, "--max-size", "1KiB")
    assert out.returncode == 1 and "too_large" in out.stderr and "1024 bytes" in out.stderr
    assert "--max-size" in out.stderr
    assert run(backend, "inspect", path, "--max-size", "512MiB").returncode == 0
    assert run(backend, "inspect", path, "--max-size", "unlimited").returncode == 0


# ---- 4. errors that tell the operator what happened -----------------------------------


def _npz_bytes():
    buf = io.BytesIO()
    np.savez(buf, w=np.zeros(3, np.float32))
    return buf.getvalue()


@pytest.mark.parametrize(
    "data, start",
    [
        (_npz_bytes(), "50 4b 03 04"),
        (b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>", '"<!DO"'),
        (b"just some text, not a model\n", '"just"'),
    ],
    ids=["npz", "html", "text"],
)
def test_foreign_input_is_not_ptth(backend, data, start):
    """An .npz, an HTML error page or a text file was a raw-DEFLATE error
    (stream_corrupt: invalid stored block lengths)."""
    err = error_of(backend.loads, data)
    assert (err.reason, err.offset) == ("not_ptth", 0)
    assert start in err.message, err.message
    agg = backend.Aggregator({"w": np.zeros(3, np.float32)})
    assert error_of(agg.add, data).reason == "not_ptth"


def test_mismatches_name_both_sides_and_the_parameter(backend):
    agg = backend.Aggregator({"fc.weight": np.zeros((3, 1), np.float32)})
    err = error_of(agg.add, backend.dumps({"fc.weight": np.ones(3, np.float32)}))
    assert (err.reason, err.name) == ("shape_mismatch", "fc.weight")
    assert "(3,)" in err.message and "(3, 1)" in err.message
    err = error_of(agg.add, {"fc.weight": np.ones((3, 1), np.int32)})
    assert (err.reason, err.name) == ("dtype_mismatch", "fc.weight")


# ---- 6. every finding above, fixed ---------------------------------------------------


def test_merge_both_ways_on_two_threads(backend):
    """The fallback's merge locked self, then other: a.merge(b) || b.merge(a) deadlocked."""
    tmpl = {"w": np.zeros(1000, np.float32)}
    errors = []

    def work(x, y):
        # 2 x 400 merges grow the weight sums like Fibonacci numbers (about 1e167): no
        # overflow, so every merge runs and a failed one fails the test, not just its thread
        try:
            for _ in range(400):
                x.merge(y)
        except Exception as exc:
            errors.append(exc)

    # Switch threads between almost every bytecode, so the window between two
    # lock acquisitions is hit (the old code deadlocked within a second this way).
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(5):  # fresh aggregators per round: 4000 merges in all
            a, b = backend.Aggregator(tmpl), backend.Aggregator(tmpl)
            a.add({"w": np.ones(1000, np.float32)})
            b.add({"w": np.ones(1000, np.float32)})
            threads = [
                threading.Thread(target=work, args=(a, b), daemon=True),
                threading.Thread(target=work, args=(b, a), daemon=True),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert not any(t.is_alive() for t in threads), "a.merge(b) || b.merge(a) deadlocked"
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert np.isfinite(a.total_weight) and a.count > 0


def _adders(backend, agg, stop, n=8):
    blob_ = backend.dumps({"w": np.ones(1 << 20, np.float32)})
    errors = []

    def add():
        try:
            while not stop.is_set():
                agg.add(blob_)
        except Exception as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=add, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    return threads, errors


def test_reads_and_snapshots_do_not_starve_behind_adders(backend):
    """With 8 threads adding, one `count` read waited 3.9 s (snapshots took the lock
    exclusively and queued behind every adder)."""
    agg = backend.Aggregator({"w": np.zeros(1 << 20, np.float32)})
    stop = threading.Event()
    threads, errors = _adders(backend, agg, stop)
    try:
        while agg.count < 16:
            time.sleep(0.01)
        worst = 0.0
        for _ in range(50):
            t0 = time.perf_counter()
            _ = agg.count, agg.total_weight
            worst = max(worst, time.perf_counter() - t0)
        # A snapshot waits for the adds in flight only, never for new ones.
        t0 = time.perf_counter()
        for _ in range(3):
            mean = agg.mean()
        snapshots = time.perf_counter() - t0
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors[0]
    assert worst < 0.5, f"a count read waited {worst:.3f} s"
    assert snapshots < 30, f"3 snapshots took {snapshots:.1f} s beside 8 adders"
    assert np.all(mean["w"] == 1.0)


def test_add_documents_that_a_writable_buffer_is_read_twice(backend):
    """add() reads a caller's mutable buffer twice (check, then fold): documented."""
    doc = backend.Aggregator.add.__doc__
    assert "read twice" in doc and "bytes" in doc
