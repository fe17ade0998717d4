"""Structured mutations of valid blobs (mutations.py) through both backends.

Every entry point that reads untrusted bytes -- loads, Decoder, decompress,
Aggregator.add -- must raise nothing but PTTHError, and the two backends must
give the same result or the same (reason, offset, record) for every input.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from blobs import bits, describe, outcome
from mutations import cases, chunkings, split

# {}: each entry point's defaults (the Aggregator's are "auto" for both)
OPTIONS = st.one_of(
    st.just({}),
    st.fixed_dictionaries(
        {
            "byteorder": st.sampled_from(["<", ">", "auto"]),
            "relabel_float32": st.sampled_from([False, True, "auto"]),
        }
    ),
)
BOUNDS = st.fixed_dictionaries(
    {},
    optional={
        "clip_norm": st.sampled_from([0.5, 1e6]),
        "max_norm": st.sampled_from([1.0, 1e6]),
        "allow_cast": st.booleans(),
        "count_empty": st.booleans(),
    },
)
# None is the default (512 MiB); small limits cut through headers, names and payloads.
MAX_SIZES = st.one_of(st.none(), st.integers(0, 400))


def same(native, pure, fn, *args, **kw):
    """Both backends' outcome of fn(*args, **kw); only PTTHError may escape (outcome())."""
    a = describe(outcome(getattr(native, fn), *args, **kw))
    b = describe(outcome(getattr(pure, fn), *args, **kw))
    assert a == b, (fn, kw, a[:4] if a[0] == "error" else "ok", b[:4] if b[0] == "error" else "ok")
    return a


def stream(mod, chunks, **kw):
    dec = mod.Decoder(**kw)
    out = []
    for c in chunks:
        out += dec.feed(c)
    dec.close()
    return out


def values_of(arrays):
    """(name, (shape, native dtype, bits)): views and owned arrays of equal values compare equal."""
    return [(k, (a.shape, a.dtype.newbyteorder("=").str, bits(a).tobytes())) for k, a in arrays]


@given(case=cases(), options=OPTIONS, copy=st.booleans(), max_size=MAX_SIZES)
def test_loads(native, pure, case, options, copy, max_size):
    data = case[3]
    same(native, pure, "loads", data, copy=copy, max_size=max_size, **options)


@given(case=cases(), options=OPTIONS, max_size=MAX_SIZES, data=st.data())
def test_decoder_any_chunking(native, pure, case, options, max_size, data):
    _, _, label, bad = case
    chunks = split(bad, data.draw(chunkings(len(bad)), label="cuts"))
    a = outcome(stream, native, chunks, max_size=max_size, **options)
    b = outcome(stream, pure, chunks, max_size=max_size, **options)
    assert describe(a) == describe(b), label
    # any chunking gives the result of one feed of everything
    assert describe(outcome(stream, native, [bad], max_size=max_size, **options)) == describe(a)
    if max_size is None and a[1] != "too_large":
        # and of loads: the same records (owned here, views there) or the same error;
        # loads ignores max_size for plain input, the Decoder does not (too_large)
        whole = outcome(native.loads, bad, **options)
        got = a if a[0] == "error" else ("ok", values_of(a[1]))
        want = whole if whole[0] == "error" else ("ok", values_of(whole[1].items()))
        assert got == want, label


@given(
    case=cases(),
    wrapper=st.sampled_from(["auto", "zlib", "gzip", "deflate", "none"]),
    max_size=MAX_SIZES,
)
def test_decompress(native, pure, case, wrapper, max_size):
    data = case[3]
    same(native, pure, "decompress", data, wrapper=wrapper, max_size=max_size)
    same(native, pure, "detect_wrapper", data)


def aggregator_state(agg):
    """counts, weight sums and the accumulators: NaN payloads aside, bit for bit."""
    p = agg.partial()
    return (
        p.count,
        p.total_weight,
        p.empty,
        p.weight_sums,
        [
            (k, v.dtype.str, np.where(np.isnan(v), np.nan, v).tobytes())
            for k, v in zip(p.names, p.accumulators)
        ],
    )


@given(
    case=cases(),
    kind=st.sampled_from(["delta", "full"]),
    accumulate=st.sampled_from(["float64", "float32"]),
    options=OPTIONS,
    bounds=BOUNDS,
    allow_nonfinite=st.booleans(),
)
def test_aggregator_add(native, pure, case, kind, accumulate, options, bounds, allow_nonfinite):
    tensors, valid, label, bad = case
    aggs = [mod.Aggregator(tensors, accumulate=accumulate) for mod in (native, pure)]
    kw = dict(kind=kind, allow_nonfinite=allow_nonfinite, **options, **bounds)
    for blob in (valid, bad):  # a valid update first, so an atomic failure has state to keep
        results = []
        for agg in aggs:
            before = aggregator_state(agg)
            r = outcome(agg.add, blob, 0.5, **kw)
            if r[0] == "error":
                assert aggregator_state(agg) == before, (label, r)  # nothing changed
            results.append(r[:1] if r[0] == "ok" else r)
        assert results[0] == results[1], label
    assert aggregator_state(aggs[0]) == aggregator_state(aggs[1]), label


# ---- inputs the fuzzers found (csrc/fuzz, csrc/tests/test_fuzz_regressions.cpp) -----


def test_decompress_limit_before_checksum(native, pure):
    # zlib stream of a 41-byte blob with a wrong Adler-32: zlib-ng emits byte 41
    # and reports the checksum in the same step. Output past max_size came first.
    z = bytes.fromhex("789c0b0809f16060606084e17228838901027818181aec81f4010043250349")
    assert same(native, pure, "decompress", z, max_size=40) == ("error", "too_large", 40, None)
    assert same(native, pure, "decompress", z, max_size=41)[:3] == ("error", "bad_checksum", 41)
    for max_size in (None, 0, 12, 40):
        same(native, pure, "loads", z, max_size=max_size)


@pytest.mark.parametrize("wrapper", ["zlib", "gzip", "deflate"])
def test_every_small_limit_same_outcome(native, pure, wrapper):
    # the same race for every limit and every injury of the stream's last bytes
    data = bytes.fromhex(
        "5054544800000001000000010000000177000000010000000200000000000000080000803f000000c0"
    )
    z = native.compress(data, 6, wrapper)
    for i in range(1, min(9, len(z))):
        hurt = bytearray(z)
        hurt[-i] ^= 0x10
        for max_size in range(0, len(data) + 2):
            same(native, pure, "decompress", bytes(hurt), max_size=max_size)
            same(native, pure, "loads", bytes(hurt), max_size=max_size)
