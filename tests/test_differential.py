"""Native and python side by side: identical bytes, arrays and errors."""

import random
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from zlib_ng import zlib_ng

from blobs import (
    WBITS,
    WRAPPERS,
    big_tensors,
    blob,
    describe,
    header,
    outcome,
    record,
    sample_tensors,
    u32,
)
from strategies import tensor_dicts
from test_rules import CASES


def same(native, pure, fn_name, *args, **kw):
    a = describe(outcome(getattr(native, fn_name), *args, **kw))
    b = describe(outcome(getattr(pure, fn_name), *args, **kw))
    assert a == b, (fn_name, kw)
    return a


def same_stream(native, pure, chunks, **kw):
    def run(mod):
        return describe(outcome(lambda: _feed_all(mod.Decoder(**kw), chunks)))

    a, b = run(native), run(pure)
    assert a == b
    return a


def _feed_all(dec, chunks):
    out = []
    for c in chunks:
        out += dec.feed(c)
    dec.close()
    return out


@given(tensor_dicts)
def test_dumps_identical(native, pure, tensors):
    assert native.dumps(tensors) == pure.dumps(tensors)


@given(tensor_dicts, st.sampled_from(WRAPPERS), st.integers(0, 9))
def test_dumps_compressed_identical(native, pure, tensors, wrapper, level):
    assert native.dumps(tensors, compress=level, wrapper=wrapper) == pure.dumps(
        tensors, compress=level, wrapper=wrapper
    )


def _same_engine(native):
    """Compressed bytes are equal across engines only when both run ISA-L (docs/compression.md)."""
    if native.build_info().get("deflate_engine") != "isal":
        pytest.skip("this core deflates with zlib-ng (no ISA-L): bytes differ from the fallback's")


@pytest.mark.parametrize("wrapper", WRAPPERS)
@pytest.mark.parametrize("make", [sample_tensors, big_tensors])
def test_every_level_identical_and_read_by_zlib(native, pure, make, wrapper):
    _same_engine(native)
    t = make()
    plain = native.dumps(t)
    assert pure.dumps(t) == plain
    wrong = []
    for level in range(10):
        want = pure.compress(plain, level, wrapper)
        assert zlib.decompress(want, WBITS[wrapper]) == plain
        got = {
            "native.dumps": native.dumps(t, compress=level, wrapper=wrapper),
            "python.dumps": pure.dumps(t, compress=level, wrapper=wrapper),
            "native.compress": native.compress(plain, level, wrapper),
            "native.compress threads=2": native.compress(plain, level, wrapper, threads=2),
        }
        wrong += [(who, level) for who, z in got.items() if z != want]
    assert not wrong, f"differ from the fallback's compress({len(plain)} bytes): {wrong}"


@pytest.mark.parametrize("size", [1_000, 60_000, 65_536, 140_000, 400_000, (1 << 20) + 7])
def test_compress_sizes_identical(native, pure, size):
    _same_engine(native)
    # low-entropy bytes: every level emits several blocks
    data = np.random.default_rng(size).integers(0, 4, size, dtype=np.uint8).tobytes()
    wrong = []
    for level in range(10):
        want = pure.compress(data, level, "zlib")
        assert zlib.decompress(want) == data
        wrong += [
            (mod.backend, level)
            for mod in (native, pure)
            if mod.compress(data, level, "zlib") != want
        ]
    assert not wrong, f"compress() of {size} bytes differs between the engines: {wrong}"


@given(tensor_dicts, st.sampled_from([None, "float16", "float32"]))
def test_dumps_dtype_identical(native, pure, tensors, dtype):
    same(native, pure, "dumps", tensors, dtype=dtype)
    assert native.dumps(tensors, dtype=dtype, saturate=True) == pure.dumps(
        tensors, dtype=dtype, saturate=True
    )


@given(tensor_dicts, st.booleans(), st.sampled_from(["<", ">", "auto"]), st.booleans())
def test_loads_identical(native, pure, tensors, copy, byteorder, relabel):
    data = native.dumps(tensors)
    for buf in (data, bytearray(data)):
        same(native, pure, "loads", buf, copy=copy, byteorder=byteorder, relabel_float32=relabel)


def test_golden_identical(native, pure, golden):
    for data in golden.values():
        for bo in ("<", ">", "auto"):
            for copy in (False, True):
                same(native, pure, "loads", data, byteorder=bo, copy=copy)
            same_stream(native, pure, [data], byteorder=bo)


@pytest.mark.parametrize("wrapper", (None,) + WRAPPERS)
def test_every_prefix_same_error(native, pure, golden, wrapper):
    plain = native.dumps(sample_tensors())
    data = plain if wrapper is None else native.compress(plain, 6, wrapper)
    for n in range(len(data) + 1):
        r = same(native, pure, "loads", data[:n])
        assert (r[0] == "ok") == (n == len(data))
        same_stream(native, pure, [data[:n]])
        if wrapper is not None:
            same(native, pure, "decompress", data[:n])


@pytest.mark.parametrize("data", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_rule_violation_same_error(native, pure, data):
    for copy in (False, True):
        assert same(native, pure, "loads", data, copy=copy)[0] == "error"
    for wrapper in WRAPPERS:
        same(native, pure, "loads", native.compress(data, 6, wrapper))
    same_stream(native, pure, [data[i : i + 5] for i in range(0, len(data), 5)])


def test_random_single_byte_corruptions(native, pure):
    rng = random.Random(1234)
    plain = native.dumps(sample_tensors())
    for _ in range(400):
        data = bytearray(plain)
        i = rng.randrange(len(data))
        data[i] = rng.choice([rng.randrange(256), data[i] ^ 0x80, data[i] ^ 1, 0, 0xFF])
        same(native, pure, "loads", bytes(data))
        same(native, pure, "loads", bytes(data), copy=True, byteorder="auto")


def test_random_corruptions_of_compressed(native, pure):
    rng = random.Random(99)
    plain = native.dumps(sample_tensors())
    for wrapper in WRAPPERS:
        z = native.compress(plain, 6, wrapper)
        for _ in range(150):
            data = bytearray(z)
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            same(native, pure, "loads", bytes(data))
            same(native, pure, "decompress", bytes(data))


@given(st.binary(max_size=64))
def test_arbitrary_bytes_same_outcome(native, pure, data):
    for prefix in (b"", b"PTTH\x00\x00\x00\x01"):
        same(native, pure, "loads", prefix + data)
        same(native, pure, "decompress", prefix + data)
        same(native, pure, "detect_wrapper", prefix + data)


@given(st.binary(min_size=0, max_size=300), st.sampled_from(WRAPPERS), st.integers(0, 9))
def test_compress_identical(native, pure, data, wrapper, level):
    z = native.compress(data, level, wrapper)
    if native.build_info().get("deflate_engine") == "isal":
        assert z == pure.compress(data, level, wrapper)
    assert zlib_ng.decompress(z, WBITS[wrapper]) == data
    assert native.decompress(z) == pure.decompress(z) == data


@pytest.mark.parametrize("max_size", [0, 1, 11, 12, 13, 40, 41, 1000])
def test_max_size_same_error(native, pure, golden, max_size):
    data = golden["vector1_float32"]
    for wrapper in WRAPPERS:
        z = native.compress(data, 6, wrapper)
        same(native, pure, "loads", z, max_size=max_size)
        same(native, pure, "decompress", z, max_size=max_size)
    same_stream(native, pure, [data], max_size=max_size)


def test_zero_dim_beside_overflowing_dims_same_outcome(native, pure):
    data = blob(record("z", [0, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF], 0, b""))
    same(native, pure, "loads", data)
    same_stream(native, pure, [data])


def test_header_only_variants_same(native, pure):
    for data in (header(0), header(1), header(0) + u32(0), header(2, version=3)):
        same(native, pure, "loads", data)
