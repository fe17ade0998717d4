"""float16 conversion and delta kernels: NumPy's semantics bit for bit, on both backends."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from ptth import PTTHError

ALL_HALVES = np.arange(1 << 16, dtype=np.uint16).view(np.float16)


def bits(a):
    a = np.asarray(a)
    return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def f16(x):
    """NumPy's own conversion, the reference (its overflow warning is expected)."""
    with np.errstate(all="ignore"):
        return np.asarray(x).astype(np.float16)


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(bits(a), bits(b))


@pytest.fixture(autouse=True)
def no_runtime_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def float32_probes():
    """Every half's value, its float32 neighbours, and the midpoints between halves."""
    finite = ALL_HALVES[np.isfinite(ALL_HALVES)].astype(np.float32)
    up = np.nextafter(finite, np.float32(np.inf))
    down = np.nextafter(finite, np.float32(-np.inf))
    pos = np.sort(finite[finite >= 0].astype(np.float64))
    mids = ((pos[:-1] + pos[1:]) / 2).astype(np.float32)  # exact in float32: ties
    extra = np.array(
        [
            65504,
            65519.996,
            65520,
            65536,
            1e6,
            np.inf,
            2.0**-25,
            2.0**-24 * 1.5,
            2.0**-26,
            1e-30,
            0.0,
        ],
        np.float32,
    )
    probes = np.concatenate(
        [
            finite,
            up,
            down,
            mids,
            np.nextafter(mids, np.float32(0)),
            np.nextafter(mids, np.float32(np.inf)),
            extra,
        ]
    )
    return np.concatenate([probes, -probes])


def test_to_float32_all_halves(backend):
    out = backend.to_float32(ALL_HALVES)
    ref = ALL_HALVES.astype(np.float32)
    nan = np.isnan(ref)
    assert out.dtype == np.float32 and out.shape == ALL_HALVES.shape
    assert np.array_equal(bits(out)[~nan], bits(ref)[~nan])
    assert np.isnan(out[nan]).all()
    assert np.array_equal(np.signbit(out[nan]), np.signbit(ref[nan]))


def test_to_float16_every_half_and_tie(backend):
    x = float32_probes()
    out = backend.to_float16(x)
    assert same_bits(out, f16(x))


def test_to_float16_from_float64_rounds_once(backend):
    # float64 values just above a float16 tie round up directly, but to the
    # tie (then to even) if rounded through float32 first.
    pos = np.sort(ALL_HALVES[np.isfinite(ALL_HALVES) & (ALL_HALVES >= 0)].astype(np.float64))
    mids = (pos[:-1] + pos[1:]) / 2
    x = np.concatenate([mids, np.nextafter(mids, np.inf), np.nextafter(mids, 0), pos])
    x = np.concatenate([x, -x])
    out = backend.to_float16(x)
    assert same_bits(out, f16(x))
    assert not same_bits(out, f16(x.astype(np.float32)))  # the test can tell


def test_halves_round_trip(backend):
    finite = ALL_HALVES[~np.isnan(ALL_HALVES)]
    assert same_bits(backend.to_float16(backend.to_float32(finite)), finite)


def test_nan_keeps_sign_and_stays_nan(backend):
    payloads = np.array(
        [0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FBFFFFF, 0x7FC02000, 0xFFFFFFFF],
        np.uint32,
    ).view(np.float32)
    out = backend.to_float16(payloads)
    assert np.isnan(out).all()
    assert np.array_equal(np.signbit(out), np.signbit(payloads))
    back = backend.to_float32(out)
    assert np.isnan(back).all() and np.array_equal(np.signbit(back), np.signbit(payloads))


def test_nan_bits_agree_between_backends(native, pure):
    rng = np.random.default_rng(7)
    nans = rng.integers(1, 1 << 23, 1000, dtype=np.uint32) | np.uint32(0x7F800000)
    nans[::2] |= np.uint32(0x80000000)
    x = nans.view(np.float32)
    assert same_bits(native.to_float16(x), pure.to_float16(x))
    h = (rng.integers(1, 1 << 10, 1000, dtype=np.uint16) | np.uint16(0x7C00)).view(np.float16)
    assert same_bits(native.to_float32(h), pure.to_float32(h))


@pytest.mark.parametrize("n", [0, 1, 7, 15, 16, 17, 63, 64, 65, 1000, 100_003])
@pytest.mark.parametrize("offset", [0, 1, 2, 3])
def test_unaligned_and_tails(backend, n, offset):
    rng = np.random.default_rng(n + offset)
    x = rng.standard_normal(n).astype(np.float32) * 1000
    # an unaligned float32 view: a byte offset into a uint8 buffer
    u8 = np.zeros(n * 4 + 4, np.uint8)
    u8[offset : offset + n * 4] = x.view(np.uint8)
    unaligned = np.ndarray((n,), np.float32, u8.data, offset)
    assert n == 0 or offset == 0 or unaligned.ctypes.data % 4 != 0
    assert same_bits(backend.to_float16(unaligned), f16(x))
    assert same_bits(backend.subtract(unaligned, x, dtype="float16"), np.zeros(n, np.float16))


def test_out_is_filled_and_returned(backend):
    x = np.linspace(-70000, 70000, 1001, dtype=np.float32)
    out = np.full(x.shape, 7, np.float16)
    assert backend.to_float16(x, out=out) is out
    assert same_bits(out, f16(x))
    o32 = np.empty(x.shape, np.float32)
    assert backend.to_float32(out, out=o32) is o32
    assert same_bits(o32, out.astype(np.float32))


@pytest.mark.parametrize(
    "bad_out, exc",
    [
        (np.empty(5, np.float16), ValueError),
        (np.empty(10, np.float32), TypeError),
        (np.empty(10, np.float16).astype(">f2"), TypeError),
        (np.empty(20, np.float16)[::2], ValueError),
        ([0.0] * 10, TypeError),
    ],
)
def test_bad_out(backend, bad_out, exc):
    with pytest.raises(exc) as err:
        backend.to_float16(np.ones(10, np.float32), out=bad_out)
    assert not isinstance(err.value, PTTHError) and "out" in str(err.value)


def test_unsupported_dtypes(backend):
    with pytest.raises(PTTHError) as err:
        backend.to_float16(np.ones(3, np.int32))
    assert err.value.reason == "unsupported_dtype"
    with pytest.raises(PTTHError) as err:
        backend.to_float32(np.ones(3, np.float32))
    assert err.value.reason == "unsupported_dtype"
    with pytest.raises(PTTHError) as err:
        backend.subtract(np.ones(3, np.float32), np.ones(3, np.float64))
    assert err.value.reason == "unsupported_dtype"
    with pytest.raises(PTTHError) as err:
        backend.subtract(np.ones(3, np.float32), np.ones(4, np.float32))
    assert err.value.reason == "shape_mismatch"


def special_values(dtype):
    v = [0.0, -0.0, 1.0, -1.5, np.inf, -np.inf, 65504.0, 65520.0, 1e-8, -6e-8, 3.4e38, 1e-45]
    return np.array(v, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("target", [None, "float16", "float32", "float64"])
def test_subtract_matches_numpy(backend, dtype, target):
    rng = np.random.default_rng(3)
    u = np.concatenate([rng.standard_normal(5000).astype(dtype) * 100, special_values(dtype)])
    b = np.concatenate([rng.standard_normal(5000).astype(dtype), special_values(dtype)[::-1]])
    with np.errstate(all="ignore"):
        ref = u - b
        ref = ref if target is None else ref.astype(target)
    out = backend.subtract(u, b, dtype=target)
    nan = np.isnan(ref)
    assert out.dtype == ref.dtype
    assert np.array_equal(bits(out)[~nan], bits(ref)[~nan]) and np.isnan(out[nan]).all()


def test_subtract_out_and_aliasing(backend):
    u = np.arange(100, dtype=np.float32)
    b = np.full(100, 0.5, np.float32)
    out = np.empty(100, np.float16)
    assert backend.subtract(u, b, dtype="float16", out=out) is out
    assert same_bits(out, f16(u - b))
    acc = u.copy()
    backend.subtract(acc, b, out=acc)  # out may alias an input
    assert same_bits(acc, u - b)


def test_compute_and_apply_delta(backend):
    rng = np.random.default_rng(11)
    base = {
        "w": rng.standard_normal((30, 20)).astype(np.float32),
        "b": rng.standard_normal(20),
        "steps": np.array(5, np.int32),
    }
    updated = {
        "w": base["w"] + np.float32(0.25),
        "b": base["b"] * 2,
        "steps": np.array(9, np.int32),
    }
    delta = backend.compute_delta(updated, base)
    assert same_bits(delta["w"], updated["w"] - base["w"])
    assert same_bits(delta["b"], updated["b"] - base["b"])
    assert delta["steps"].dtype == np.int32 and delta["steps"] == 4
    d16 = backend.compute_delta(updated, base, dtype="float16")
    assert same_bits(d16["w"], f16(updated["w"] - base["w"]))
    assert d16["steps"].dtype == np.int32

    applied = backend.apply_delta(base, d16, scale=0.5)
    assert list(applied) == list(base)
    assert same_bits(applied["w"], base["w"] + np.float32(0.5) * d16["w"].astype(np.float32))
    assert same_bits(applied["b"], base["b"] + 0.5 * d16["b"].astype(np.float64))
    assert applied["steps"] == 9  # counters are added unscaled
    partial = backend.apply_delta(base, {"w": delta["w"]})
    assert partial["b"] is base["b"]
    with pytest.raises(PTTHError) as err:
        backend.apply_delta(base, {"nope": delta["w"]})
    assert err.value.reason == "unknown_name"
    with pytest.raises(PTTHError) as err:
        backend.compute_delta({"nope": base["w"]}, base)
    assert err.value.reason == "unknown_name"


def test_dumps_quantizes_to_float16(backend):
    rng = np.random.default_rng(5)
    t = {
        "a": rng.standard_normal(1000).astype(np.float32) * 1e4,
        "b": rng.standard_normal((3, 4)),
        "c": np.arange(4, dtype=np.int32),
        "d": np.ones(2, np.float16),
    }
    expected = {"a": f16(t["a"]), "b": f16(t["b"]), "c": t["c"], "d": t["d"]}
    assert backend.dumps(t, dtype="float16") == backend.dumps(expected)
    big = dict(t, a=t["a"] * 10)  # beyond 65504: an error, or clipped when asked
    with pytest.raises(PTTHError) as err:
        backend.dumps(big, dtype="float16")
    assert err.value.reason == "overflow" and err.value.name == "a"
    clipped = dict(expected, a=np.clip(f16(big["a"]), -65504, 65504).astype(np.float16))
    assert backend.dumps(big, dtype="float16", saturate=True) == backend.dumps(clipped)
    narrowed = dict(t, b=t["b"].astype(np.float32))
    assert backend.dumps(t, dtype="float32") == backend.dumps(narrowed)


def test_backends_agree_on_kernels(native, pure):
    rng = np.random.default_rng(9)
    x = np.concatenate(
        [rng.standard_normal(10_000).astype(np.float32) * 3e4, special_values(np.float32)]
    )
    y = np.roll(x, 1)
    assert same_bits(native.to_float16(x), pure.to_float16(x))
    assert same_bits(native.subtract(x, y, dtype="float16"), pure.subtract(x, y, dtype="float16"))
    h = native.to_float16(x)
    assert same_bits(native.to_float32(h), pure.to_float32(h))
    a = native.apply_delta({"w": y}, {"w": h}, scale=-0.3)["w"]
    b = pure.apply_delta({"w": y}, {"w": h}, scale=-0.3)["w"]
    assert same_bits(a, b)


@pytest.mark.parametrize("tier", ["scalar", "avx2", "avx512"])
def test_forced_simd_tier(tier):
    """PTTH_SIMD forces a tier (or falls back to one the CPU has) with the same results."""
    code = (
        "import numpy as np, ptth\n"
        "info = ptth.build_info()\n"
        "x = np.random.default_rng(1).standard_normal(100_003).astype(np.float32) * 7e4\n"
        "with np.errstate(all='ignore'): ref = x.astype(np.float16)\n"
        "assert np.array_equal(ptth.to_float16(x).view(np.uint16), ref.view(np.uint16))\n"
        "h = np.arange(65536, dtype=np.uint16).view(np.float16)\n"
        "r, ref = ptth.to_float32(h), h.astype(np.float32)\n"
        "m = ~np.isnan(ref)\n"
        "assert np.array_equal(r[m].view(np.uint32), ref[m].view(np.uint32))\n"
        "print(info['simd'], ' '.join(info['simd_available']))\n"
    )
    env = dict(os.environ, PTTH_SIMD=tier, PTTH_BACKEND="native")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    active, *available = res.stdout.split()
    assert active == (tier if tier in available else active)
    assert active in available
    if tier in available:
        assert active == tier
