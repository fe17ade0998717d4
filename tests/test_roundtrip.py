"""Round trips: loads(dumps(t)) keeps names, order, dtype, shape and every bit."""

import io
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from blobs import (
    WRAPPERS,
    assert_same_tensors,
    bits,
    check_arg_error,
    check_error,
    f16_like_ptth,
    sample_tensors,
)
from strategies import arrays, tensor_dicts


@given(tensor_dicts)
def test_roundtrip_plain(backend, tensors):
    data = backend.dumps(tensors)
    assert isinstance(data, bytes)
    assert_same_tensors(backend.loads(data), tensors)
    assert_same_tensors(backend.loads(data, copy=True), tensors)


@given(tensor_dicts, st.integers(0, 9), st.sampled_from(WRAPPERS))
def test_roundtrip_compressed(backend, tensors, level, wrapper):
    data = backend.dumps(tensors, compress=level, wrapper=wrapper)
    assert backend.detect_wrapper(data) == wrapper
    assert_same_tensors(backend.loads(data), tensors)
    assert backend.decompress(data) == backend.dumps(tensors)


@given(tensor_dicts)
def test_roundtrip_decoder(backend, tensors):
    data = backend.dumps(tensors)
    dec = backend.Decoder()
    got = dec.feed(data)
    dec.close()
    assert_same_tensors(dict(got), tensors)


def test_sample_roundtrip_every_level_and_wrapper(backend):
    t = sample_tensors()
    for wrapper in WRAPPERS:
        for level in range(10):
            assert_same_tensors(backend.loads(backend.dumps(t, compress=level, wrapper=wrapper)), t)


def test_dump_load_path_and_file(backend, tmp_path):
    t = sample_tensors()
    path = tmp_path / "t.ptth"
    backend.dump(t, path)
    assert path.read_bytes() == backend.dumps(t)
    assert_same_tensors(backend.load(path), t)
    assert_same_tensors(backend.load(str(path)), t)
    buf = io.BytesIO()
    backend.dump(t, buf, compress=6, wrapper="gzip")
    assert_same_tensors(backend.load(io.BytesIO(buf.getvalue())), t)
    with open(path, "rb") as f:
        assert_same_tensors(backend.load(f), t)


@given(arrays())
def test_writer_normalizes_byte_order_and_strides(backend, arr):
    want = backend.dumps({"x": arr})
    assert backend.dumps({"x": arr.astype(arr.dtype.newbyteorder(">"))}) == want
    if arr.ndim >= 2:
        t = np.ascontiguousarray(arr.T)
        assert backend.dumps({"x": arr.T}) == backend.dumps({"x": t})
    if arr.ndim >= 1:
        assert backend.dumps({"x": arr[::-1]}) == backend.dumps({"x": arr[::-1].copy()})
        assert backend.dumps({"x": arr[::2]}) == backend.dumps({"x": arr[::2].copy()})


def test_writer_keeps_caller_order(backend):
    t = {"b": np.float32(1), "a": np.float32(2), "c": np.float32(3)}
    assert list(backend.loads(backend.dumps(t))) == ["b", "a", "c"]


def test_writer_scalars_and_numbers(backend):
    got = backend.loads(
        backend.dumps({"f": 1.5, "s": np.float32(2.5), "i": np.int32(-3), "h": np.float16(0.5)})
    )
    assert [(k, v.dtype.name, v.shape) for k, v in got.items()] == [
        ("f", "float64", ()),
        ("s", "float32", ()),
        ("i", "int32", ()),
        ("h", "float16", ()),
    ]
    assert [v[()] for v in got.values()] == [1.5, 2.5, -3, 0.5]


@pytest.mark.parametrize(
    "value",
    [
        np.zeros(2, np.int64),
        np.zeros(2, np.uint32),
        np.zeros(2, bool),
        np.zeros(2, np.complex64),
        np.zeros(2, np.int16),
        np.array(["a"]),
        3,
    ],
)
def test_writer_unsupported_dtype(backend, value):
    # a Python int becomes int64 through np.asarray
    check_error(backend.dumps, {"x": value}, reason="unsupported_dtype")


@pytest.mark.parametrize(
    "tensors, reason",
    [
        ({1: np.float32(0)}, TypeError),
        ({b"x": np.float32(0)}, TypeError),
        ({"\ud800": np.float32(0)}, "bad_name"),
        ({"x": np.zeros((0, 2**32), np.float32)}, "not_representable"),
        ({"x": np.broadcast_to(np.float32(1), (2**30 + 1, 4))}, "not_representable"),
        ([("x", np.float32(0))], TypeError),
    ],
)
def test_writer_rejects(backend, tensors, reason):
    if isinstance(reason, str):
        err = check_error(backend.dumps, tensors, reason=reason)
        if reason == "not_representable":
            assert err.name == "x"
    else:
        check_arg_error(backend.dumps, tensors, exc=reason, names="tensor")


def test_writer_accepts_64_dims_and_max_u32_dim(backend):
    t = {"x": np.zeros((1,) * 64, np.float32), "y": np.zeros((0, 2**32 - 1), np.int32)}
    assert_same_tensors(backend.loads(backend.dumps(t)), t)


@pytest.mark.parametrize(
    "kw, exc",
    [
        ({"compress": 10}, ValueError),
        ({"compress": -1}, ValueError),
        ({"compress": 1.5}, TypeError),
        ({"compress": True}, TypeError),
        ({"compress": 6, "wrapper": "none"}, ValueError),
        ({"compress": 6, "wrapper": "lzma"}, ValueError),
        ({"wrapper": "gzip"}, ValueError),
        ({"dtype": "int8"}, ValueError),
        ({"dtype": "float64x"}, ValueError),
        ({"dtype": object()}, TypeError),
        ({"saturate": 1}, TypeError),
    ],
)
def test_dumps_bad_arguments(backend, kw, exc):
    check_arg_error(backend.dumps, sample_tensors(), exc=exc, names=list(kw)[-1], **kw)


def test_dumps_wrapper_needs_compress(backend):
    """A wrapper without compress= would silently write an uncompressed blob: refused."""
    err = check_arg_error(backend.dumps, sample_tensors(), exc=ValueError, wrapper="gzip")
    assert "compress" in str(err)
    assert (
        backend.detect_wrapper(backend.dumps(sample_tensors(), compress=6, wrapper="gzip"))
        == "gzip"
    )


@pytest.mark.parametrize(
    "dtype, value", [("float16", 1e6), ("float16", -65520.0), ("float32", 1e39)]
)
def test_narrowing_overflow_raises_or_saturates(backend, dtype, value):
    src = np.array([1.0, value, np.inf, np.nan], np.float64 if dtype == "float32" else np.float32)
    if dtype == "float32":
        src = src.astype(np.float64)
    t = {"big": src}
    err = check_error(backend.dumps, t, dtype=dtype, reason="overflow")
    assert err.name == "big" and "element 1" in err.message
    got = backend.loads(backend.dumps(t, dtype=dtype, saturate=True))["big"]
    top = float(np.finfo(np.dtype(dtype)).max)
    assert got[0] == 1 and float(got[1]) == math.copysign(top, value)
    assert np.isposinf(got[2]) and np.isnan(got[3])  # infinities and NaN stay what they were


@given(arrays(dtype=np.float32), arrays(dtype=np.float64))
def test_dumps_float16_quantizes_like_numpy(backend, f32, f64):
    t = {"a": f32, "b": f64, "i": np.arange(3, dtype=np.int32), "h": np.float16([1, 2])}
    want = {
        k: f16_like_ptth(v) if v.dtype.itemsize > 2 and v.dtype.kind == "f" else v
        for k, v in t.items()
    }
    check_quantized(backend, t, want, "float16")


def check_quantized(backend, t, want, dtype):
    """NumPy's rounding where it fits; where a finite value overflows, an error naming it."""
    over = [k for k in t if np.any(np.isinf(want[k]) & np.isfinite(np.asarray(t[k])))]
    if over:
        err = check_error(backend.dumps, t, dtype=dtype, reason="overflow")
        assert err.name == over[0]
    else:
        assert_same_tensors(backend.loads(backend.dumps(t, dtype=dtype)), want)


@given(arrays(dtype=np.float64))
def test_dumps_float32_narrows_float64_only(backend, f64):
    t = {"d": f64, "h": np.float16([1.5]), "i": np.int32(4)}
    with np.errstate(all="ignore"):
        want = {"d": f64.astype(np.float32), "h": t["h"], "i": np.asarray(t["i"])}
    check_quantized(backend, t, want, "float32")


def test_special_values_bitwise(backend):
    vals = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 5e-324, -5e-324], np.float64)
    t = {"d": vals, "f": vals.astype(np.float32), "h": vals.astype(np.float16)}
    got = backend.loads(backend.dumps(t, compress=1))
    for k in t:
        assert np.array_equal(bits(got[k]), bits(t[k])), k
