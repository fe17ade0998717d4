"""The aggregator on both backends: FedAvg against plain NumPy, atomic adds, threads, pickling."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blobs import bits

WRAPPERS = (None, "zlib", "gzip", "deflate")


def make_template(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "fc.weight": rng.standard_normal((64, 33)).astype(np.float32),
        "fc.bias": np.zeros(64, np.float32),
        "scale": np.float64(1.5),
        "steps": np.array(10, np.int32),
    }


def make_update(template, seed, *, subset=None, dtype=np.float32):
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in template.items():
        if subset is not None and k not in subset:
            continue
        if v.dtype.kind == "i":
            out[k] = np.array(rng.integers(0, 5), np.int32)
        else:
            out[k] = (rng.standard_normal(np.shape(v)) * 0.01).astype(dtype)
    return out


def numpy_fedavg(template, updates, accumulate=np.float64, full=False):
    """The reference: weighted sum per parameter in the accumulate dtype, then / weight sum."""
    acc = {k: np.zeros(np.shape(v), accumulate) for k, v in template.items()}
    wsum = dict.fromkeys(template, 0.0)
    for upd, w in updates:
        for k, x in upd.items():
            xt = np.asarray(x).astype(accumulate)
            if full:
                xt = xt - np.asarray(template[k]).astype(accumulate)
            acc[k] = acc[k] + accumulate(w) * xt
            wsum[k] += w
    return {k: acc[k] / accumulate(wsum[k]) if wsum[k] else np.zeros_like(acc[k]) for k in acc}


def state(agg):
    """Everything an add may change, as bytes: must be identical after a failed add."""
    return pickle.dumps(
        (
            agg.count,
            agg.total_weight,
            agg.empty_updates,
            agg.weight_sums(),
            agg.mean(dtype="float64", allow_empty=True),
            agg.partial().accumulators,
        )
    )


def assert_close(got, want, rtol=1e-12):
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=1e-15, err_msg=k)


@pytest.mark.parametrize("wrapper", WRAPPERS)
@pytest.mark.parametrize("dtype", [None, "float16"])
def test_fedavg_matches_numpy(backend, wrapper, dtype):
    tmpl = make_template()
    agg = backend.Aggregator(tmpl)
    ups = []
    for i in range(5):
        upd = make_update(tmpl, i, subset=None if i % 2 else ["fc.weight", "steps"])
        blob = backend.dumps(
            upd, dtype=dtype, compress=None if wrapper is None else 6, wrapper=wrapper
        )
        w = float(10 * (i + 1))
        agg.add(blob, w)
        ups.append((backend.loads(blob), w))
    assert agg.count == 5 and agg.total_weight == 150.0
    assert_close(agg.mean(dtype="float64"), numpy_fedavg(tmpl, ups))


def test_mapping_updates_and_full_kind(backend):
    tmpl = make_template(1)
    agg = backend.Aggregator(tmpl)
    ups = [(make_update(tmpl, i, dtype=np.float16), float(i + 1)) for i in range(3)]
    for upd, w in ups:
        full = {
            k: np.asarray(tmpl[k]) + np.asarray(v).astype(np.asarray(tmpl[k]).dtype)
            for k, v in upd.items()
        }
        agg.add(full, w, kind="full")
    fulls = [
        (
            {
                k: np.asarray(tmpl[k]) + np.asarray(v).astype(np.asarray(tmpl[k]).dtype)
                for k, v in u.items()
            },
            w,
        )
        for u, w in ups
    ]
    assert_close(agg.mean(dtype="float64"), numpy_fedavg(tmpl, fulls, full=True))


def test_float32_accumulator(backend):
    tmpl = make_template(2)
    agg = backend.Aggregator(tmpl, accumulate="float32")
    ups = [(make_update(tmpl, i), 0.5 + i) for i in range(4)]
    for upd, w in ups:
        agg.add(backend.dumps(upd), w)
    want = numpy_fedavg(tmpl, ups, accumulate=np.float32)
    got = agg.mean(dtype="float32")
    for k in want:
        assert got[k].dtype == np.float32
        assert np.array_equal(bits(got[k]), bits(want[k])), k


def test_apply_and_partial_weight_sums(backend):
    tmpl = make_template(3)
    agg = backend.Aggregator(tmpl)
    agg.add({"fc.bias": np.ones(64, np.float32)}, 2.0)
    agg.add({"fc.bias": np.full(64, 3, np.float32), "steps": np.array(4, np.int32)}, 2.0)
    mean = agg.mean()
    assert np.all(mean["fc.bias"] == 2.0) and mean["steps"] == 4.0
    assert np.all(mean["fc.weight"] == 0.0)  # no update touched it
    model = agg.apply(lr=0.5)
    assert np.all(model["fc.bias"] == 1.0) and model["fc.bias"].dtype == np.float32
    assert model["steps"] == 12 and model["steps"].dtype == np.int32
    assert np.array_equal(model["fc.weight"], tmpl["fc.weight"])


def test_quirk_options_pass_through(backend):
    tmpl = {"w": np.zeros(4, np.float32)}
    agg = backend.Aggregator(tmpl)
    x = np.array([1.0, -2.0, 0.5, 4.0], np.float32)
    be = (
        b"PTTH"
        + (1).to_bytes(4, "big")
        + (1).to_bytes(4, "big")
        + (1).to_bytes(4, "big")
        + b"w"
        + (1).to_bytes(4, "big")
        + (4).to_bytes(4, "big")
        + (0).to_bytes(4, "big")
        + (16).to_bytes(4, "big")
        + x.astype(">f4").tobytes()
    )
    agg.add(be, byteorder=">")
    agg.add(be, byteorder="auto")
    ios = be[:-24] + (1).to_bytes(4, "big") + (16).to_bytes(4, "big") + x.astype("<f4").tobytes()
    agg.add(ios, relabel_float32=True)
    np.testing.assert_array_equal(agg.mean(dtype="float64")["w"], x.astype(np.float64))


# ---- atomicity: every failure leaves the aggregator exactly as it was -----------


def failing_updates(backend, tmpl):
    good = make_update(tmpl, 7)
    blob = backend.dumps(good)
    zblob = backend.dumps(good, compress=6)
    cases = []
    for cut in sorted({1, 11, 12, 40, len(blob) // 2, len(blob) - 1}):
        cases.append((f"truncated@{cut}", blob[:cut], {}, "truncated"))
    cases.append(("stream_truncated", zblob[:-7], {}, "stream_truncated"))
    bad_sum = bytearray(zblob)
    bad_sum[-1] ^= 0xFF
    cases.append(("bad_checksum", bytes(bad_sum), {}, "bad_checksum"))
    cases.append(
        (
            "unknown_name",
            backend.dumps({**good, "nope": np.ones(2, np.float32)}),
            {},
            "unknown_name",
        )
    )
    cases.append(
        ("shape", backend.dumps({**good, "fc.bias": np.ones(63, np.float32)}), {}, "shape_mismatch")
    )
    code = bytearray(blob)
    code[12 + 4 + len("conv.weight") + 4 + 16 + 3] = 9  # conv.weight's dtype code
    cases.append(("bad_dtype", bytes(code), {}, "bad_dtype"))
    nan = dict(good)
    nan["fc.weight"] = good["fc.weight"].copy()
    nan["fc.weight"][5, 5] = np.nan
    cases.append(("nonfinite", backend.dumps(nan), {}, "nonfinite"))
    inf = dict(good, scale=np.float64(np.inf))
    cases.append(("nonfinite-inf", backend.dumps(inf, compress=1), {}, "nonfinite"))
    cases.append(("nonfinite-mapping", nan, {}, "nonfinite"))
    cases.append(("unknown-mapping", {"nope": np.ones(1, np.float32)}, {}, "unknown_name"))
    cases.append(("dtype-mapping", {"fc.bias": np.ones(64, np.int64)}, {}, "unsupported_dtype"))
    for w in (0.0, -1.0, float("nan"), float("inf"), "1", None):
        cases.append((f"weight={w}", blob, {"weight": w}, None))
    cases.append(("kind", blob, {"kind": "other"}, None))
    cases.append(("too_large", zblob, {"max_size": 100}, "too_large"))
    return cases


def test_failed_adds_change_nothing(backend):
    tmpl = make_template(4)
    agg = backend.Aggregator(tmpl)
    agg.add(backend.dumps(make_update(tmpl, 1), dtype="float16"), 3.0)
    before = state(agg)
    for label, update, kw, reason in failing_updates(backend, tmpl):
        with pytest.raises((TypeError, ValueError)) as err:
            agg.add(update, **kw)
        if reason is None:  # a bad argument: a plain TypeError or ValueError, not bad data
            assert not isinstance(err.value, backend.PTTHError), label
        else:
            assert isinstance(err.value, backend.PTTHError), label
            assert err.value.reason == reason, label
        assert state(agg) == before, label
    assert agg.count == 1


def test_nonfinite_accepted_on_request(backend):
    tmpl = {"w": np.zeros(3, np.float32)}
    agg = backend.Aggregator(tmpl)
    agg.add({"w": np.array([1.0, np.inf, 2.0], np.float32)}, allow_nonfinite=True)
    assert np.isinf(agg.mean(allow_nonfinite=True)["w"][1])
    with pytest.raises(backend.PTTHError) as err:
        agg.mean()
    assert err.value.reason == "overflow" and err.value.name == "w"


def test_every_truncation_is_atomic(backend):
    tmpl = {"a": np.zeros(3, np.float32), "b": np.zeros(2, np.float16)}
    agg = backend.Aggregator(tmpl)
    blob = backend.dumps({"a": np.ones(3, np.float32), "b": np.ones(2, np.float16)})
    before = state(agg)
    for cut in range(len(blob)):
        with pytest.raises(ValueError):
            agg.add(blob[:cut])
    assert state(agg) == before
    agg.add(blob)
    assert agg.count == 1


def test_backends_agree(native, pure):
    tmpl = make_template(5)
    aggs = [native.Aggregator(tmpl), pure.Aggregator(tmpl)]
    for i in range(4):
        upd = make_update(tmpl, 20 + i, subset=None if i else ["fc.weight"])
        for agg, be in zip(aggs, (native, pure)):
            agg.add(be.dumps(upd, dtype="float16", compress=6), 1.0 + i)
            agg.add(upd, 0.25, kind="full")
    a, b = (agg.mean() for agg in aggs)
    for k in a:
        assert np.array_equal(bits(a[k]), bits(b[k])), k
    a, b = (agg.apply(0.7) for agg in aggs)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(bits(a[k]), bits(b[k])), k


@settings(max_examples=25)
@given(weights=st.lists(st.floats(0.01, 1000), min_size=1, max_size=6), seed=st.integers(0, 99))
def test_hypothesis_fedavg(backend, weights, seed):
    tmpl = {"w": np.zeros((5, 7), np.float32), "b": np.zeros(7, np.float64)}
    agg = backend.Aggregator(tmpl)
    ups = [(make_update(tmpl, seed + i, dtype=np.float16), w) for i, w in enumerate(weights)]
    for upd, w in ups:
        agg.add(backend.dumps(upd), w)
    assert_close(agg.mean(dtype="float64"), numpy_fedavg(tmpl, ups))


# ---- threads, pickling, merge ---------------------------------------------------


def test_threads_give_the_sequential_result(backend):
    tmpl = {"big": np.zeros(3_000_000, np.float32), "small": np.zeros(10, np.float32)}
    blobs = [
        (
            backend.dumps(
                make_update(tmpl, i), dtype="float16", compress=1 if i % 3 == 0 else None
            ),
            1.0 + i,
        )
        for i in range(16)
    ]
    seq = backend.Aggregator(tmpl)
    for b, w in blobs:
        seq.add(b, w)
    par = backend.Aggregator(tmpl)
    errors = []

    def worker(chunk):
        try:
            for b, w in chunk:
                par.add(b, w)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(blobs[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert par.count == seq.count and par.total_weight == seq.total_weight
    assert_close(par.mean(dtype="float64"), seq.mean(dtype="float64"), rtol=1e-12)


def test_pickle_and_merge(backend):
    tmpl = make_template(6)
    a, b, whole = (backend.Aggregator(tmpl) for _ in range(3))
    ups = [(make_update(tmpl, 30 + i), 1.0 + i) for i in range(6)]
    for i, (u, w) in enumerate(ups):
        (a if i < 3 else b).add(u, w)
        whole.add(u, w)
    restored = pickle.loads(pickle.dumps(a))
    assert restored.count == 3 and restored.total_weight == a.total_weight
    for k, v in a.mean(dtype="float64").items():
        assert np.array_equal(bits(restored.mean(dtype="float64")[k]), bits(v))
    restored.merge(b)
    assert restored.count == 6
    assert_close(restored.mean(dtype="float64"), whole.mean(dtype="float64"))
    restored.add(ups[0][0], 1.0)  # a restored aggregator keeps working
    assert restored.count == 7
    other = backend.Aggregator({"x": np.zeros(2, np.float32)})
    with pytest.raises(backend.PTTHError) as err:
        restored.merge(other)
    assert err.value.reason == "shape_mismatch"


def test_add_many_reports_each_bad_update_and_folds_the_rest(backend):
    """Bad data in one update (a blob or a mapping) is that update's outcome; the others
    are folded exactly as sequential adds would fold them."""
    tmpl = make_template(8)
    good = [make_update(tmpl, 40 + i) for i in range(3)]
    batch = [
        backend.dumps(good[0]),
        {"fc.bias": np.ones(64, np.int64)},
        good[1],
        b"junk",
        backend.dumps(good[2], compress=6),
    ]
    agg = backend.Aggregator(tmpl)
    out = agg.add_many(batch, [1.0, 2.0, 3.0, 4.0, 5.0])
    assert [type(r).__name__ for r in out] == [
        "AddResult",
        "PTTHError",
        "AddResult",
        "PTTHError",
        "AddResult",
    ]
    assert out[1].reason == "unsupported_dtype" and out[3].reason == "not_ptth"
    seq = backend.Aggregator(tmpl)
    for u, w in ((good[0], 1.0), (good[1], 3.0), (good[2], 5.0)):
        seq.add(u, w)
    assert agg.count == 3 and agg.total_weight == seq.total_weight
    for a, b in zip(agg.partial().accumulators, seq.partial().accumulators):
        assert np.array_equal(bits(a), bits(b))
    with pytest.raises(TypeError):  # an update of the wrong type is a bad argument
        agg.add_many([backend.dumps(good[0]), 12])
    assert agg.count == 3
